"""Gymnasium's toy-text MDPs through their transition tables: the exact dynamic programme against
gymnasium's own env (Monte Carlo), against autograd and against our sampler; the simulator on them."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from sim import envs, mdp, models
from sim.run import SimConfig, Simulator
from sim.verify import warm_start
from tests.sim.helpers import fast_vs_slow

SMALL = {  # a non-uniform prior: at the uniform policy entropy is maximal and its first-order change 0
    "FrozenLake-v1": {"horizon": 12, "prior_scale": 1.0},
    "CliffWalking-v1": {"horizon": 20, "prior_scale": 1.0},
    "Taxi-v3": {"horizon": 15, "n_prompts": 3, "prior_scale": 1.0},
}


def _model(env_id, **kw):
    spec = envs.BUILDERS[env_id](**{**SMALL[env_id], **kw})
    return spec, models.model(spec, torch.device("cpu"), torch.float64)


def _policy(m, runs=2, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(runs, m.n_states, m.n_actions, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("env_id", list(SMALL))
def test_exact_pg_is_the_autograd_gradient_of_total_success(env_id):
    """reach·π·Ā = ∂/∂z Σ_prompts P(success): a differential test of the forward and backward DP."""
    _, m = _model(env_id)
    z = _policy(m).requires_grad_(True)
    ex = m.exact(z)
    (g,) = torch.autograd.grad(ex.success.sum(), z)
    ex = m.exact(z.detach())
    torch.testing.assert_close(ex.reach[..., None] * ex.pi * ex.adv, g, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("env_id", list(SMALL))
def test_exact_success_and_visits_match_our_sampler(env_id):
    spec, m = _model(env_id)
    z = _policy(m, runs=1, scale=2.0, seed=1)
    ex = m.exact(z)
    n = 20000
    ep = m.sample(z, n, torch.Generator().manual_seed(0))
    freq = ep["p_correct"].mean(-1)  # (1, P)
    p = ex.success
    tol = 4.5 * torch.sqrt(p * (1 - p) / n) + 1e-3
    assert bool(((freq - p).abs() <= tol).all()), (freq, p)
    visits = ep["mask"].sum(-1).mean(-1).sum(-1)  # expected tokens per episode, summed over prompts
    torch.testing.assert_close(visits, ex.reach.sum(-1), rtol=0.03, atol=0)
    assert spec.prior.shape == (m.n_states, m.n_actions)


def test_exact_success_matches_gymnasium_itself():
    """Independent check through gymnasium's own step(): slippery FrozenLake, a random stationary policy."""
    spec, m = _model("FrozenLake-v1")
    z = _policy(m, runs=1, scale=1.5, seed=2)
    p_exact = float(m.exact(z).success[0, 0])
    pi = torch.softmax(z[0], -1).numpy()
    env = gym.make("FrozenLake-v1")
    rng = np.random.default_rng(0)
    n, wins = 3000, 0
    for i in range(n):
        s, _ = env.reset(seed=i)
        for _ in range(spec.horizon):
            s, r, term, trunc, _ = env.step(int(rng.choice(4, p=pi[s])))
            if term or trunc:
                wins += r == 1.0
                break
    tol = 4.5 * np.sqrt(p_exact * (1 - p_exact) / n)
    assert abs(wins / n - p_exact) <= tol, (wins / n, p_exact)


def test_uniform_policy_on_frozenlake_has_the_known_success_rate():
    """A published number: the uniform random policy solves slippery FrozenLake 4x4 in ~1.4% of episodes."""
    _, m = _model("FrozenLake-v1", horizon=100)
    assert float(m.exact(torch.zeros(1, 16, 4, dtype=torch.float64)).success) == pytest.approx(
        0.01394, abs=1e-4
    )


def test_taxi_v3_reads_the_current_taxi_table_and_samples_start_states():
    spec = envs.make_toytext("Taxi-v3", n_prompts=5, seed=3)
    assert spec.n_states == 500 and spec.n_actions == 6 and spec.n_prompts == 5
    assert spec.horizon == 200 and len(set(spec.start.tolist())) == 5
    assert spec.succ.sum() > 0 and spec.cont.min() == 0.0
    assert envs.make_toytext("FrozenLake-v1", n_prompts=4).n_prompts == 1  # one start state


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"horizon": 0}, "horizon: got 0"),
        ({"fickle_passenger": True}, "fickle_passenger: got True"),
        ({"bogus": 1}, "env_kwargs:"),
        ({"prior_scale": -1.0}, "prior_scale: got -1.0"),
    ],
)
def test_bad_toytext_arguments(kw, needle):
    with pytest.raises(ValueError, match=needle):
        SimConfig(env="Taxi-v3", env_kwargs=kw)


@pytest.mark.parametrize("env_id", list(SMALL))
@pytest.mark.parametrize("update", ["exact_pg", "exact_npg", "grpo"])
def test_lemma1_on_the_simulators_own_steps(env_id, update):
    gaps, preds = [], []
    for lr in (0.1, 0.01):
        ctrl = () if update.startswith("exact") else ("grpo",)
        cfg = SimConfig(
            env=env_id, env_kwargs=SMALL[env_id], update=update, controllers=ctrl, runs=3, steps=1, lr=lr,
            group_size=64,
        )  # fmt: skip
        sim = Simulator(cfg)
        s = sim.init_state()
        warm_start(sim, s)  # successes (and gradients) not vanishingly rare
        m = sim.step(s)
        gaps.append((m["dH_realized"] - m["dH_predicted"]).abs())
        preds.append(m["dH_predicted"].abs())
    live = preds[0] > 1e-12
    assert bool(live.any())
    assert bool((gaps[1][live] < gaps[0][live] / 50).all())


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_fast_path_on_variable_length_episodes(agg):
    cfg = SimConfig(
        env="FrozenLake-v1", env_kwargs=SMALL["FrozenLake-v1"], update="grpo", controllers=("grpo",),
        runs=3, steps=2, lr=0.7, agg=agg, group_size=4,
    )  # fmt: skip
    assert fast_vs_slow(cfg, 2)


def test_token_mean_over_variable_lengths_is_per_run():
    cfg = SimConfig(env="FrozenLake-v1", env_kwargs=SMALL["FrozenLake-v1"], controllers=("grpo",), runs=2)
    assert not Simulator(cfg).fast


def test_sampled_episode_batch_masks_steps_after_the_end():
    cfg = SimConfig(env="CliffWalking-v1", env_kwargs=SMALL["CliffWalking-v1"], runs=1, group_size=64)
    sim = Simulator(cfg)
    s = sim.init_state()
    with torch.no_grad():
        s.z[0, :, 1] += 3.0  # mostly "right" from the start: many steps into the cliff, some episodes end
    roll = sim.rollout(s.z, s.gen)
    b = sim.token_batch(s.z, roll, slice(0, 1), torch.arange(1))
    mask = b.mask.bool()
    assert bool((mask[:, 0]).all())  # every episode has a first step
    lengths = mask.sum(-1)
    assert bool((mask == (torch.arange(mask.shape[1])[None] < lengths[:, None])).all())  # a prefix
    assert bool((b.reward <= (lengths < sim.model.horizon + 1).double()).all())


def test_mdp_sampler_is_reproducible():
    _, m = _model("Taxi-v3")
    z = _policy(m)
    a = mdp.sample(m.table, z, m.start, 10, 4, torch.Generator().manual_seed(5))
    b = mdp.sample(m.table, z, m.start, 10, 4, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)
