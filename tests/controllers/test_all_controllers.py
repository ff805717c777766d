"""Properties every registered controller must have, run over the whole registry."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import controllers as C
from tests.controllers.helpers import batches, pad

# Non-default hyperparameters that make a controller act on small test batches (defaults select ~0 tokens).
ACTIVE = {
    "clip_cov": {"frac": 0.3, "lb": -1.0, "ub": 1.0},
    "kl_cov": {"frac": 0.3},
    "sent": {"frac": 0.3},
    "overlong_shaping": {"max_len": 4, "cache_len": 2},
    "adaptive_entropy": {"c_init": 1e-3},
}


def _adv(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return batch.replace(adv=torch.randn(batch.logp.shape, generator=g, dtype=batch.logp.dtype) * batch.mask)


def _pipe(name):
    # stateful controllers are exercised from a non-initial state where that matters
    c = C.get(name, **ACTIVE.get(name, {}))
    return C.Pipeline([c])


def test_every_registered_controller_is_in_the_readme_table():
    """The README's table of controllers lists every registered name (adding a controller touches its
    module, its tests and this table, nothing else)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = text[text.index("| kind | names |") :].split("\n\n", 1)[0]
    listed = set(re.findall(r"`([a-z0-9_]+)`", table))
    missing = sorted(set(C.names()) - listed)
    assert not missing, f"add to README's controller table: {missing}"


@pytest.mark.parametrize("name", C.names())
@given(batch=batches(max_b=8, max_t=5, off_policy=True, full=True))
def test_loss_finite_and_masked_tokens_get_zero_gradient(name, batch):
    b = _adv(batch)
    loss, metrics = C.policy_loss(b, _pipe(name), generator=torch.Generator().manual_seed(0))
    assert math.isfinite(loss.item())
    assert all(math.isfinite(v) for v in metrics.values())
    inputs = [b.logp, b.entropy_topp]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    for g in grads:
        if g is not None:
            assert bool((g[b.mask == 0] == 0).all())


@pytest.mark.parametrize("name", C.names())
@given(batch=batches(max_b=6, max_t=4, off_policy=True, full=True), extra=st.integers(1, 3))
def test_appending_padding_changes_nothing(name, batch, extra):
    b = _adv(batch)
    l1, m1 = C.policy_loss(b, _pipe(name), generator=torch.Generator().manual_seed(1))
    p = pad(b, extra)
    l2, m2 = C.policy_loss(
        p, _pipe(name), generator=torch.Generator().manual_seed(1), norm_len=b.logp.shape[1]
    )
    assert l2.item() == pytest.approx(l1.item(), abs=1e-12)
    (g1,) = torch.autograd.grad(l1, b.logp)
    (g2,) = torch.autograd.grad(l2, p.logp)
    torch.testing.assert_close(g2[:, : g1.shape[1]], g1, rtol=0, atol=1e-12)
    assert m2.keys() == m1.keys()


@pytest.mark.parametrize("name", C.names())
def test_all_masked_batch_gives_zero_loss_and_finite_metrics(name):
    x = torch.full((4, 3), -0.5, dtype=torch.float64, requires_grad=True)
    b = C.TokenBatch(
        logp=x, old_logp=x.detach() - 0.1, adv=torch.ones(4, 3, dtype=torch.float64), entropy=torch.ones(4, 3, dtype=torch.float64),
        mask=torch.zeros(4, 3, dtype=torch.float64), group=torch.tensor([0, 0, 1, 1]), reward=torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64),
        ref_logp=x.detach(), entropy_topp=torch.ones(4, 3, dtype=torch.float64), answer=torch.tensor([0, 1, 2, 2]),
        step_correct=torch.ones(4, 3, dtype=torch.float64), guide=torch.tensor([False, True, False, False]),
        embedding=torch.eye(4, dtype=torch.float64), value=torch.zeros(4, 3, dtype=torch.float64),
    )  # fmt: skip
    loss, metrics = C.policy_loss(b, _pipe(name), generator=torch.Generator().manual_seed(0))
    assert loss.item() == 0.0
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("name", C.names())
def test_on_policy_ratio_is_one(name):
    x = torch.linspace(-2, -0.1, 12, dtype=torch.float64).reshape(4, 3).requires_grad_()
    b = C.TokenBatch.from_sequences(
        x, torch.ones(4, 3), reward=torch.tensor([1.0, 0.0, 1.0, 0.0]), group=torch.tensor([0, 0, 1, 1])
    )
    b = b.replace(
        entropy=torch.ones(4, 3, dtype=torch.float64), ref_logp=x.detach(), entropy_topp=torch.ones(4, 3, dtype=torch.float64),
        answer=torch.tensor([0, 1, 0, 0]), step_correct=torch.ones(4, 3, dtype=torch.float64),
        embedding=torch.eye(4, dtype=torch.float64), value=torch.full((4, 3), 0.5, dtype=torch.float64),
    )  # fmt: skip
    _, m = C.policy_loss(_adv(b), _pipe(name), generator=torch.Generator().manual_seed(0))
    if name in ("kl_cov", "sent"):
        assert m[f"ctrl/{name}/inert"] == 1.0  # the |log-ratio| penalty is exactly 0 on-policy
    assert m["policy/ratio_mean"] == 1.0 and m["policy/approx_kl_k1"] == 0.0


@pytest.mark.parametrize(
    ("name", "hp", "needle"),
    [
        ("clip_cov", {"frac": 1.5}, r"^clip_cov\.frac: got 1\.5; allowed: \[0\.0, 1\.0\]$"),
        ("clip_cov", {"lb": 5.0, "ub": 1.0}, r"^clip_cov\.ub: got 1\.0; allowed: a number > lb = 5\.0$"),
        ("clip_cov", {"eps_lo": 0.2}, r"^clip_cov\.eps_lo/eps_hi"),
        ("kl_cov", {"frac": -0.1}, r"^kl_cov\.frac: got -0\.1"),
        ("kl_cov", {"beta": float("inf")}, r"^kl_cov\.beta: got inf; allowed: a finite real number$"),
        ("top_entropy", {"rho": 0.0}, r"^top_entropy\.rho: got 0\.0; allowed: \(0\.0, 1\.0\]$"),
        ("sent", {"low_entropy_frac": 2.0}, r"^sent\.low_entropy_frac: got 2\.0"),
        ("steer", {"w_min": 0.0}, r"^steer\.w_min: got 0\.0"),
        ("steer", {"mode": "log"}, r"^steer\.mode: got 'log'; allowed: 'exp', 'linear'$"),
        ("ppo_clip", {"eps_hi": -0.1}, r"^ppo_clip\.eps_hi: got -0\.1"),
        ("offpolicy_mask", {"delta": -1.0}, r"^offpolicy_mask\.delta: got -1\.0"),
        ("ref_kl", {"estimator": "k4"}, r"^ref_kl\.estimator: got 'k4'"),
        ("ref_kl", {"reset_every": 0}, r"^ref_kl\.reset_every: got 0; allowed: an integer >= 1 or None$"),
        ("adaptive_entropy", {"c_max": -1.0}, r"^adaptive_entropy\.c_max: got -1\.0"),
        (
            "clip_cov",
            {"frac": 10**400},
            r"^clip_cov\.frac: got an integer of 401 digits; allowed: a real number within",
        ),
        (
            "ref_kl",
            {"reset_every": -(10**30)},
            r"^ref_kl\.reset_every: got an integer of 31 digits; allowed: an integer",
        ),
        ("steer", {"mode": "x" * 200}, r"^steer\.mode: got 'x{59}… \(202 characters\); allowed"),
        (
            "adaptive_entropy",
            {"c_init": 1.0},
            r"^adaptive_entropy\.c_init: got 1\.0; allowed: \[0\.0, 0\.005\]$",
        ),
        ("entropic", {"high_prob": 1.0}, r"^entropic\.high_prob: got 1\.0"),
        ("entropy_adv", {"kappa": 1.0}, r"^entropy_adv\.kappa: got 1\.0; allowed: \(1\.0, inf\]$"),
        ("unlikeliness", {"rank_penalty": 2.0}, r"^unlikeliness\.rank_penalty: got 2\.0"),
        ("seed_grpo", {"f": "cubic"}, r"^seed_grpo\.f: got 'cubic'"),
        ("pos_adv_reweight", {"schedule": "cosine"}, r"^pos_adv_reweight\.schedule: got 'cosine'"),
        ("siren", {"mask_quantile": 1.0}, r"^siren\.mask_quantile: got 1\.0"),
        ("fork_bonus", {"frac": 0.0}, r"^fork_bonus\.frac: got 0\.0; allowed: \(0\.0, 1\.0\]$"),
        ("fork_bonus", {"mode": "all"}, r"^fork_bonus\.mode: got 'all'; allowed: 'any', 'share'$"),
        ("diversity_reward", {"scope": "rank"}, r"^diversity_reward\.scope: got 'rank'"),
        ("step_credit", {"credit": -1.0}, r"^step_credit\.credit: got -1\.0"),
        ("vapo", {"alpha": 0.0}, r"^vapo\.alpha: got 0\.0; allowed: \(0\.0, inf\]$"),
        ("luffy", {"gamma": 0.0}, r"^luffy\.gamma: got 0\.0; allowed: \(0\.0, inf\]$"),
    ],
)
def test_bad_hyperparameters_name_field_value_and_range(name, hp, needle):
    with pytest.raises(ValueError, match=needle):
        C.get(name, **hp)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("seed_grpo", "answer"),
        ("siren", "entropy_topp"),
        ("ref_kl", "ref_logp"),
        ("step_credit", "step_correct"),
        ("diversity_reward", "embedding"),
        ("vapo", "value"),
    ],
)
def test_missing_optional_field_is_named(name, field):
    x = torch.zeros(2, 2, dtype=torch.float64)
    b = C.TokenBatch(
        logp=x,
        old_logp=x,
        adv=x,
        entropy=x,
        mask=torch.ones_like(x),
        reward=torch.zeros(2, dtype=torch.float64),
    )
    with pytest.raises(ValueError, match=f"^{field}: None; allowed: .*{name}"):
        C.policy_loss(b, [C.get(name)])


def test_optional_fields_validated():
    x = torch.zeros(2, 2, dtype=torch.float64)
    common = {"logp": x, "old_logp": x, "adv": x, "entropy": x, "mask": torch.ones_like(x)}
    with pytest.raises(ValueError, match=r"^ref_logp: shape \(2, 3\)"):
        C.TokenBatch(**common, ref_logp=torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^entropy_topp: contains nan"):
        C.TokenBatch(**common, entropy_topp=torch.full((2, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^answer: dtype torch.float64; allowed: an integer dtype"):
        C.TokenBatch(**common, answer=torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("name", C.names())
def test_steps_state_false_means_step_returns_the_states_given(name):
    """``Pipeline.steps_state`` False lets a host skip ``step``: then every state comes back as it was,
    whatever the stats; True for a controller that overrides ``step``."""
    pipe = _pipe(name)
    state = pipe.init()
    stats = {"policy/entropy": 0.3, "train/progress_frac": 0.5, "reward/mean": 0.7}
    overrides = type(pipe.controllers[0]).step is not C.Controller.step
    assert pipe.steps_state == overrides
    if not pipe.steps_state:
        assert pipe.step(state, stats) == state


def test_steps_state_true_for_a_stateful_controller():
    assert C.Pipeline([C.get("grpo"), C.get("pi_control")]).steps_state
    assert not C.Pipeline([C.get("grpo"), C.get("ppo_clip")]).steps_state
