"""Policy classes with shared parameters (issue 9): they start at the prior, the transformer's logits are
those of each prefix run alone, every class runs every update rule, the exact step is the Jacobian
pull-back, resume, and the bad combinations."""

import json
import math

import numpy as np
import pytest
import torch

import controllers as C
import theory
from sim import models, policies
from sim import tree as tr
from sim.envs import make_token_tree
from sim.run import SimConfig, Simulator, read_metrics, run
from tests.sim.helpers import fast_vs_slow, run_interrupted

TREE = {"n_prompts": 3, "vocab": 3, "horizon": 3, "fork_frac": 0.4, "correct_frac": 0.3, "seed": 4}
PARAMETRIC = ("loglinear", "lowrank", "mlp", "transformer")


def _cfg(**kw):
    base = {"env": "token_tree", "env_kwargs": TREE, "update": "grpo", "runs": 2, "steps": 3, "lr": 0.5}
    return SimConfig(**{**base, **kw})


@pytest.mark.parametrize("name", policies.POLICIES)
def test_every_class_starts_at_the_prior(name):
    sim = Simulator(_cfg(policy=name))
    s = sim.init_state()
    torch.testing.assert_close(s.z, sim.prior[None].expand_as(s.z), rtol=0, atol=0)


def test_transformer_logits_are_each_prefix_run_alone():
    spec = make_token_tree(n_prompts=2, vocab=3, horizon=3, seed=1)
    m = models.model(spec, torch.device("cpu"), torch.float64)
    prior = torch.as_tensor(spec.prior, dtype=torch.float64)
    pol = policies.build("transformer", m, prior, {"d": 8, "heads": 2, "layers": 2})
    p = pol.params(1)
    p["head"] = torch.randn(p["head"].shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = pol.logits(p)[0] - prior
    for t in range(3):
        sl = m.shape.level_slice(t)
        for k in range(2 * 3**t):
            prompt, prefix = k // 3**t, k % 3**t
            ys = [(prefix // 3 ** (t - 1 - j)) % 3 for j in range(t)]
            seq = torch.tensor([prompt] + [2 + y for y in ys])[None, None]  # (P=1, n=1, t+1)
            alone = policies.Transformer.__new__(policies.Transformer)
            alone.kw, alone.V, alone.prior = pol.kw, 3, torch.zeros(1, 3, dtype=torch.float64)
            alone.seq, alone.pick = seq, torch.tensor([t])
            alone.causal = torch.triu(torch.ones(t + 1, t + 1, dtype=torch.bool), 1)
            pp = {**p, "pos": p["pos"][:, : t + 1]}
            torch.testing.assert_close(z[sl.start + k], alone.logits(pp)[0, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", PARAMETRIC)
@pytest.mark.parametrize(
    ("update", "controllers", "optimizer"),
    [
        ("exact_pg", (), "sgd"),
        ("exact_npg", (), "sgd"),
        ("grpo", ("grpo",), "sgd"),
        ("ppo", ("grpo", "ppo_clip", "clip_cov"), "adam"),
    ],
)
def test_every_class_runs_every_update_rule(name, update, controllers, optimizer):
    cfg = _cfg(policy=name, update=update, controllers=controllers, optimizer=optimizer, epochs=2, steps=4,
               lr=0.05 if optimizer == "adam" else 1.0)  # fmt: skip
    sim = Simulator(cfg)
    s = sim.init_state()
    for _ in range(cfg.steps):
        m = sim.step(s)
    assert all(d is None for d in s.dead)
    assert not torch.equal(s.z, sim.prior[None].expand_as(s.z))  # it learned something
    torch.testing.assert_close(s.z, sim.policy.logits(s.params).detach())
    assert bool(torch.isfinite(m["entropy"]).all())


@pytest.mark.parametrize("name", PARAMETRIC)
def test_exact_step_is_the_jacobian_pull_back_of_the_logit_gradient(name):
    """θ' = θ + η·Jᵀ·(d·π·A), J the autograd Jacobian of the logits (``param_jacobian``), which is itself
    checked against the log-linear features Φ."""
    sim = Simulator(_cfg(policy=name, update="exact_pg", controllers=(), runs=1, lr=0.3))
    s = sim.init_state()
    if name == "lowrank":  # W = 0 at the start makes ∂z/∂U vanish: move off it first
        sim.step(s)
    keys = list(s.params)
    flat0 = torch.cat([s.params[k].detach().reshape(-1) for k in keys])
    J = sim.param_jacobian(s, 0)[0].reshape(-1, flat0.numel())
    if name == "loglinear":
        torch.testing.assert_close(J, sim.policy.phi.reshape(-1, flat0.numel()))
    g = tr.pg_dz(sim.model.exact(s.z.detach()))[0].reshape(-1)
    sim.step(s)
    flat1 = torch.cat([s.params[k].detach().reshape(-1) for k in keys])
    torch.testing.assert_close(flat1 - flat0, 0.3 * J.T @ g, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ("loglinear", "transformer"))
def test_kernel_prediction_of_the_entropy_change_is_first_order(name):
    """Per state, realised ΔH vs theory.kernel_first_order_dH with the autograd Jacobian: the gap falls
    ~η² while ΔH falls ~η."""
    gaps = []
    for lr in (1e-2, 1e-3):
        sim = Simulator(
            _cfg(policy=name, update="exact_pg", controllers=(), runs=1, lr=lr, policy_kwargs={"scale": 2.0})
        )
        s = sim.init_state()
        J = sim.param_jacobian(s, 0)[0].reshape(s.z[0].numel(), -1).numpy()
        z0 = s.z.detach()[0].numpy()
        g = tr.pg_dz(sim.model.exact(s.z.detach()))[0].numpy()
        pred = theory.kernel_first_order_dH(z0, J, g, lr)
        sim.step(s)
        real = theory.entropy(s.z.detach()[0].numpy()) - theory.entropy(z0)
        gaps.append((np.abs(real - pred).max(), np.abs(real).max()))
    (g1, r1), (g2, r2) = gaps
    assert r1 > 0 and r2 > 0
    assert g2 / r2 < g1 / r1 / 5  # relative gap ~ η: ten times smaller per decade (up to noise)


def test_fast_path_and_resume_with_a_parametric_policy(tmp_path, monkeypatch):
    cfg = _cfg(policy="mlp", controllers=("grpo", "ppo_clip"), update="ppo", epochs=2, runs=3)
    assert fast_vs_slow(cfg, 2)
    long = _cfg(
        policy="lowrank", controllers=("grpo",), steps=5, checkpoint_every=2, optimizer="adam", lr=0.05
    )
    full = read_metrics(run(long, tmp_path / "a", progress=False))
    run_interrupted(monkeypatch, long, tmp_path / "b", at_call=4)
    assert read_metrics(run(long, tmp_path / "b", progress=False)) == full


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        (
            {"env": "bandit", "env_kwargs": {}, "policy": "transformer"},
            r"^policy: got 'transformer' on bandit; allowed there: tabular, loglinear, lowrank, mlp$",
        ),
        (
            {"env": "FrozenLake-v1", "env_kwargs": {}, "policy": "mlp"},
            r"^policy: got 'mlp' on FrozenLake-v1; allowed there: tabular, loglinear, lowrank$",
        ),
        ({"policy": "cnn"}, r"^policy: got 'cnn'; allowed: tabular, loglinear, lowrank, mlp, transformer$"),
        (
            {"policy": "lowrank", "policy_kwargs": {"d": 3}},
            r"^policy_kwargs: unknown \['d'\] for lowrank; allowed: rank, scale, seed$",
        ),
        (
            {"policy": "transformer", "policy_kwargs": {"d": 6, "heads": 4}},
            r"^policy_kwargs.d: got 6; allowed: a multiple of heads = 4$",
        ),
        (
            {"policy": "loglinear", "update": "exact_npg", "controllers": (), "optimizer": "adam"},
            r"^optimizer: got 'adam'; allowed: sgd with exact_npg and a parametric policy",
        ),
        (
            {"policy": "mlp", "policy_kwargs": {"hidden": 0}},
            r"^policy_kwargs.hidden: got 0; allowed: an integer >= 1$",
        ),
        (
            {"policy": "mlp", "calibrate_lr": True, "optimizer": "adam"},
            r"^calibrate_lr: got True; allowed: False unless optimizer is sgd and update is exact_pg, grpo or ppo",
        ),
        (
            {"policy": "mlp", "calibrate_lr": True, "update": "exact_npg", "controllers": ()},
            r"^calibrate_lr: got True; allowed: False unless optimizer is sgd",
        ),
        ({"calibrate_lr": 1}, r"^calibrate_lr: got 1; allowed: True or False$"),
    ],
)
def test_bad_policy_combinations_fail_before_any_work(kw, needle):
    with pytest.raises(ValueError, match=needle):
        _cfg(**kw)


def test_structured_features_share_a_correctness_direction():
    sim = Simulator(_cfg(policy="loglinear", policy_kwargs={"features": "structured", "d": 4}))
    phi = sim.policy.phi[..., 0]
    best = sim.model.qstar.max(-1, keepdim=True).values
    want = ((sim.model.qstar >= best - 1e-12) & (best > 0)).to(phi.dtype)
    torch.testing.assert_close(phi, want)
    assert math.isclose(float(phi.sum()), float(want.sum())) and 0 < float(want.mean()) < 1


@pytest.mark.parametrize("name", [n for n in C.names() if n != "grpo"])
def test_every_controller_runs_on_a_shared_parameter_policy(name):
    """Each controller after a GRPO baseline, PPO epochs, on the low-rank policy: finite and learning."""
    cfg = _cfg(policy="lowrank", update="ppo", epochs=2, controllers=("grpo", name), steps=3, lr=0.5)
    sim = Simulator(cfg)
    s = sim.init_state()
    for _ in range(cfg.steps):
        sim.step(s)
    assert all(d is None for d in s.dead), s.dead
    assert bool(torch.isfinite(s.z).all())


def _npg_sim(**kw):
    return Simulator(_cfg(policy="loglinear", update="exact_npg", controllers=(), runs=1, lr=0.3, **kw))


def test_natural_step_of_a_parametric_policy_is_fisher_preconditioned():
    sim = _npg_sim(policy_kwargs={"d": 6, "scale": 2.0})
    s = sim.init_state()
    ex = sim.model.exact(s.z.detach())
    J = sim.policy.phi  # (S, V, d): z = prior + Φθ
    pi, d = ex.pi[0], ex.reach[0]
    F = sum(d[i] * J[i].T @ (torch.diag(pi[i]) - torch.outer(pi[i], pi[i])) @ J[i] for i in range(J.shape[0]))
    grad = torch.einsum("svp,sv->p", J, tr.pg_dz(ex)[0])
    want = 0.3 * torch.linalg.pinv(F, hermitian=True) @ grad
    theta0 = s.params["theta"].detach().clone()
    sim.step(s)
    torch.testing.assert_close(s.params["theta"][0] - theta0[0], want, rtol=1e-7, atol=1e-10)


def test_natural_step_is_invariant_to_reparametrisation_and_tabular_in_the_limit():
    a, b = _npg_sim(policy_kwargs={"d": 5}), _npg_sim(policy_kwargs={"d": 5})
    Q = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64))[0]
    b.policy.phi = a.policy.phi @ (3.0 * Q)  # another basis of the same feature space
    sa, sb = a.init_state(), b.init_state()
    a.step(sa)
    b.step(sb)
    torch.testing.assert_close(sa.z, sb.z, rtol=1e-9, atol=1e-10)
    # one-hot features (a free logit per state and token): the tabular natural step, up to a per-state shift
    c, tab = (
        _npg_sim(policy_kwargs={"d": 2}),
        Simulator(_cfg(update="exact_npg", controllers=(), runs=1, lr=0.3)),
    )
    S, V = c.prior.shape
    c.policy.kw["d"] = S * V
    c.policy.phi = torch.eye(S * V, dtype=torch.float64).reshape(S, V, S * V)
    sc, st = c.init_state(), tab.init_state()
    c.step(sc)
    tab.step(st)
    torch.testing.assert_close(torch.softmax(sc.z, -1), torch.softmax(st.z, -1), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", PARAMETRIC)
def test_kernel_gain_is_theory_kernel_gain_of_the_jacobian_and_init_is_repeatable(name):
    """The simulator's ρ (one backward pass) equals theory.kernel_gain of the explicit Jacobian at θ0, and
    every init_state starts from the same θ0 (the policy's generator is rewound)."""
    sim = Simulator(_cfg(policy=name, calibrate_lr=True))
    s = sim.init_state()
    J, _ = sim.param_jacobian(s, 0)
    g = tr.pg_dz(sim.model.exact(s.z))[0]
    ref = theory.kernel_gain(J.reshape(g.numel(), -1).numpy(), g.numpy())
    assert sim.lr_gain == pytest.approx(ref, rel=1e-10)
    assert sim.lr == pytest.approx(0.5 / ref, rel=1e-10)
    again = sim.init_state()
    for k in s.params:
        torch.testing.assert_close(again.params[k], s.params[k], rtol=0, atol=0)
    assert Simulator(_cfg(policy=name)).lr == 0.5  # no calibration: lr as given


@pytest.mark.parametrize("update", ["exact_pg", "grpo"])
def test_calibrated_step_size_makes_the_feature_scale_irrelevant(update):
    """Log-linear features scaled by c scale J by c and ρ by c²: with calibrate_lr the logit trajectory is
    the same for every c (Δz = (η/ρ)·J Jᵀ g), without it the runs differ."""
    kw = {"update": update, "controllers": () if update == "exact_pg" else ("grpo",), "steps": 4}
    traj = {}
    for cal in (True, False):
        for scale in (1.0, 3.0):
            sim = Simulator(_cfg(policy="loglinear", policy_kwargs={"scale": scale}, calibrate_lr=cal, **kw))
            s = sim.init_state()
            for _ in range(4):
                sim.step(s)
            traj[cal, scale] = s.z.clone()
    torch.testing.assert_close(traj[True, 1.0], traj[True, 3.0], rtol=0, atol=1e-10)
    assert (traj[False, 1.0] - traj[False, 3.0]).abs().max() > 1e-3


def test_run_records_the_step_size_it_used(tmp_path):
    out = run(_cfg(policy="mlp", calibrate_lr=True), tmp_path / "r", progress=False)
    meta = json.loads((out / "config.json").read_text())
    assert meta["lr_used"] == pytest.approx(0.5 / meta["lr_gain"]) and meta["lr_gain"] > 1
    assert meta["config"]["calibrate_lr"] is True


def test_kernel_gain_on_a_toy_text_mdp():
    """The MDP's exact gradient (visit-weighted π·A over every grid state) goes through the same ρ."""
    kw = {"env": "FrozenLake-v1", "env_kwargs": {"horizon": 20}, "policy": "lowrank", "calibrate_lr": True}
    sim = Simulator(_cfg(**kw))
    s = sim.init_state()
    J, _ = sim.param_jacobian(s, 0)
    g = tr.pg_dz(sim.model.exact(s.z))[0]
    assert sim.lr_gain == pytest.approx(
        theory.kernel_gain(J.reshape(g.numel(), -1).numpy(), g.numpy()), rel=1e-10
    )


@pytest.mark.parametrize("name", PARAMETRIC)
@pytest.mark.parametrize(("update", "optimizer"), [("grpo", "sgd"), ("ppo", "adam"), ("exact_pg", "sgd")])
def test_the_logits_made_after_an_update_are_reused_bit_for_bit(name, update, optimizer):
    """After each update the simulator makes the new logits once, with their graph, and the next step
    differentiates those (``SimState.z_graph``) instead of a second forward: the same logits and
    parameters to the bit as a forward per use; a parameter changed in between (a stopped run's
    restore, a resumed checkpoint) is noticed by its version and the logits are made again."""
    cfg = _cfg(
        policy=name,
        update=update,
        optimizer=optimizer,
        steps=4,
        controllers=() if update == "exact_pg" else ("grpo",),
    )
    a, b = Simulator(cfg), Simulator(cfg)
    sa, sb = a.init_state(), b.init_state()
    reused = 0
    for _ in range(4):
        reused += sa.z_graph is not None
        a.step(sa)
        sb.z_graph = None  # never reused: a forward for every use
        b.step(sb)
    assert reused == 3  # every step after the first took the graph its previous update made
    torch.testing.assert_close(sa.z, sb.z, rtol=0, atol=0)
    for k in sa.params:
        torch.testing.assert_close(sa.params[k], sb.params[k], rtol=0, atol=0)
    with torch.no_grad():
        next(iter(sa.params.values())).add_(0.0)  # an in-place write, even of the same values
    made = sa.z_graph[0]
    assert a._z_var(sa) is not made and sa.z_graph is None
