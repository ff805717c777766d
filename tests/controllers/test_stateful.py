"""Stateful controllers driven by synthetic entropy sequences: sign of the response, clamps, PI vs P,
JSON round-trip of every state."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import controllers as C
import theory
from tests.controllers.helpers import batches


def _const_batch(h: float, n: int = 8, logp: float = -0.01, adv: float = 1.0):
    x = torch.full((n, 1), logp, dtype=torch.float64, requires_grad=True)
    a = torch.tensor([[adv], [-adv]] * (n // 2), dtype=torch.float64)
    return C.TokenBatch(
        logp=x,
        old_logp=x.detach(),
        adv=a,
        entropy=torch.full((n, 1), h, dtype=torch.float64),
        mask=torch.ones(n, 1, dtype=torch.float64),
    )


# -- Skywork adaptive entropy ------------------------------------------------------------------------


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60))
def test_adaptive_entropy_sign_and_clamps(hs):
    c = C.get("adaptive_entropy", target=0.4, delta=1e-3, c_max=5e-3)
    s = c.init()
    for h in hs:
        new = c.step(s, {"policy/entropy": h})
        expect = s["coef"] + 1e-3 if h < 0.4 else s["coef"] - 1e-3
        assert new["coef"] == pytest.approx(min(5e-3, max(0.0, expect)))
        assert 0.0 <= new["coef"] <= 5e-3
        assert new["enabled"] == (h < 0.4)
        s = new


def test_adaptive_entropy_recovers_from_zero_and_bonus_has_gradient():
    c = C.get("adaptive_entropy", target=0.5)
    s = c.init()
    assert s["coef"] == 0.0
    s = c.step(s, {"policy/entropy": 0.1})
    assert s["coef"] > 0  # a zero coefficient does not stop the controller (TRL PR #6140)
    ent = torch.full((2, 3), 0.1, dtype=torch.float64, requires_grad=True)
    x = torch.zeros(2, 3, dtype=torch.float64)
    b = C.TokenBatch(logp=x, old_logp=x, adv=x, entropy=ent, mask=torch.ones_like(x))
    loss, _ = C.policy_loss(
        b, [c], state=C.Pipeline([c]).step(C.Pipeline([c]).init(), {"policy/entropy": 0.1})
    )
    (g,) = torch.autograd.grad(loss, ent)
    assert bool((g < 0).all())  # descending the loss raises entropy


# -- EntroPIC: identical to theory.control's loop; PI removes P's steady-state error ------------------


def _run_entropic(kp, ki, kappa, drift, h0, target, steps):
    c = C.get("entropic", target=target, kp=kp, ki=ki)
    s, h, hs = c.init(), h0, []
    for _ in range(steps):
        alpha = c.terms(_const_batch(h), s).metrics["alpha"]
        s = c.step(s, {"policy/entropy": h})
        h = h + drift - kappa * alpha
        hs.append(h)
    return np.array(hs)


@pytest.mark.parametrize(("kp", "ki"), [(1.0, 0.0), (1.0, 0.05), (0.5, 0.02)])
def test_entropic_matches_theory_loop(kp, ki):
    kappa, drift, target, h0 = 0.5, -0.02, 0.3, 0.6
    hs = _run_entropic(kp, ki, kappa, drift, h0, target, 200)
    ref = theory.simulate_pi_loop(kappa, drift, kp, ki, e0=h0 - target, steps=200)
    np.testing.assert_allclose(hs - target, np.asarray(ref.error)[1:], atol=1e-12)


def test_entropic_pi_removes_the_steady_state_error_that_p_leaves():
    kappa, drift, target = 0.5, -0.02, 0.3
    p_only = _run_entropic(1.0, 0.0, kappa, drift, 0.6, target, 400)[-1] - target
    pi = _run_entropic(1.0, 0.05, kappa, drift, 0.6, target, 400)[-1] - target
    assert p_only == pytest.approx(theory.pi_steady_state_error(kappa, drift, 1.0, 0.0), rel=1e-6)
    assert abs(p_only) > 0.03
    assert abs(pi) < 1e-6


def test_entropic_alpha_sign_and_gradient_on_high_prob_tokens():
    c = C.get("entropic", target=0.3)
    b = _const_batch(0.8)  # entropy above target → α > 0 → push likely tokens up
    t = c.terms(b, c.init())
    assert 0 < t.metrics["alpha"] <= 1
    (g,) = torch.autograd.grad(t.extra, b.logp)
    assert bool((g < 0).all())
    low = _const_batch(0.8, logp=-1.0)  # π = 0.37 < 0.95: no high-probability tokens, no adjustment
    assert float(c.terms(low, c.init()).extra.detach()) == 0.0
    assert c.terms(_const_batch(0.0), {"integral": -1e6}).metrics["alpha"] == -1.0  # clipped


# -- pi_control wrapper ------------------------------------------------------------------------------


def _plant_run(c, steps, h0=0.2, a=0.1, gain=40.0, rho=0.3, knob_of=lambda s: s["value"]):
    """First-order lag to a static map: H_{k+1} = H_k + ρ(a + gain·knob − H_k)."""
    s, h, hs = c.init(), h0, []
    for _ in range(steps):
        knob = knob_of(s)
        s = c.step(s, {"policy/entropy": h})
        h = h + rho * (a + gain * knob - h)
        hs.append(h)
    return np.array(hs), s


def test_pi_control_removes_steady_state_error_p_leaves():
    common = {"inner": "entropy_bonus", "knob": "coef", "target": 0.4, "kp": 1.0}
    hs_p, _ = _plant_run(C.get("pi_control", ki=0.0, **common), 300)
    hs_pi, _ = _plant_run(C.get("pi_control", ki=0.2, **common), 300)
    assert abs(hs_p[-1] - 0.4) > 0.05
    assert abs(hs_pi[-1] - 0.4) < 1e-6


@given(st.lists(st.floats(0.0, 2.0), min_size=1, max_size=40), st.sampled_from([1, -1]))
def test_pi_control_clamps_and_sign(hs, direction):
    c = C.get("pi_control", inner="clip_cov", knob="frac", target=0.5, direction=direction, knob_init=5e-3)
    lo, hi = c.bounds()
    s = c.init()
    for h in hs:
        new = c.step(s, {"policy/entropy": h})
        assert lo <= new["value"] <= hi
        s = new
    s1 = c.step(c.init(), {"policy/entropy": 0.1})  # below target
    s2 = c.step(c.init(), {"policy/entropy": 0.9})  # above target
    assert (s1["value"] - s2["value"]) * direction > 0


def test_pi_control_anti_windup_bounds_the_integral():
    c = C.get("pi_control", inner="entropy_bonus", knob="coef", target=5.0, kp=0.1, ki=0.1)
    s = c.init()
    for _ in range(200):  # unreachable target: saturates at the top
        s = c.step(s, {"policy/entropy": 0.1})
    assert s["value"] == pytest.approx(c.bounds()[1])
    assert s["integral"] < 15.0  # without anti-windup it would be 200·4.9 = 980
    # the story of the bug this pins: holding the integral whenever the *new* output would saturate left
    # the knob stuck at 0.0059 < 0.01 forever; now it is integrated exactly up to saturation.
    for _ in range(3):  # once entropy overshoots, the knob leaves saturation within a few steps
        s = c.step(s, {"policy/entropy": 9.0})
    assert s["value"] < c.bounds()[1]


def test_pi_control_drives_the_inner_controller():
    c = C.get("pi_control", inner="ppo_clip", knob="eps_hi", target=0.5, knob_init=0.3)
    b = _const_batch(0.2)
    t = c.terms(b, c.init())
    ref = C.get("ppo_clip", eps_hi=0.3).terms(b, {})
    torch.testing.assert_close(t.surrogate, ref.surrogate)
    assert t.metrics["value"] == 0.3


def test_pi_control_bad_input():
    with pytest.raises(ValueError, match=r"^pi_control\.inner: got 'nope'; allowed:"):
        C.get("pi_control", inner="nope")
    with pytest.raises(ValueError, match=r"^pi_control\.knob: got 'agg'"):
        C.get("pi_control", inner="entropy_bonus", knob="agg")
    with pytest.raises(ValueError, match=r"^pi_control\.knob_min/knob_max: got None"):
        C.get("pi_control", inner="steer", knob="w_min")
    with pytest.raises(ValueError, match=r"^pi_control\.knob_max"):
        C.get("pi_control", knob_min=0.1, knob_max=0.0)


# -- positive-advantage reweighting, SIREN anchor ----------------------------------------------------


@given(batches(max_b=6, max_t=4), st.floats(0.0, 1.0))
def test_pos_adv_reweight_scales_only_positive(batch, lam):
    g = torch.Generator().manual_seed(0)
    b = batch.replace(adv=torch.randn(batch.logp.shape, generator=g, dtype=torch.float64) * batch.mask)
    c = C.get("pos_adv_reweight", lam=lam)
    a = c.advantages(b, c.init())
    torch.testing.assert_close(a, torch.where(b.adv > 0, lam * b.adv, b.adv))


def test_pos_adv_reweight_schedules():
    staged = C.get("pos_adv_reweight", schedule="staged")
    lams = [
        staged.step(staged.init(), {"train/progress_frac": p})["lam"] for p in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert lams == [0.0, 0.0, 0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="train/progress_frac"):
        staged.step(staged.init(), {"policy/entropy": 0.3})
    ent = C.get("pos_adv_reweight", schedule="entropy", lam=0.5, delta=0.05, threshold=0.3)
    s = ent.init()
    for _ in range(30):
        s = ent.step(s, {"policy/entropy": 0.1})  # low entropy: less positive push
    assert s["lam"] == 0.0
    s = ent.step(s, {"policy/entropy": 0.9})
    assert s["lam"] == pytest.approx(0.05)


@given(batches(max_b=6, max_t=6, full=True))
def test_siren_anchor_is_first_step_value(batch):
    c = C.get("siren")
    s = c.init()
    t = c.terms(batch, s)
    assert float(t.extra.detach()) == 0.0
    s = c.step(s, {"policy/entropy": 0.3, "ctrl/siren/h_masked": t.metrics["h_masked"]})
    assert s["anchor"] == t.metrics["h_masked"]
    shifted = batch.replace(entropy_topp=batch.entropy_topp + 0.5)
    t2 = c.terms(shifted, s)
    keep = c.peak_mask(batch)
    if keep.any():
        assert float(t2.extra.detach()) == pytest.approx(0.005 * 0.5**2, rel=1e-9)
    assert c.step(s, {"ctrl/siren/h_masked": 9.0})["anchor"] == s["anchor"]


@given(batches(max_b=6, max_t=8, full=True))
def test_siren_peak_mask_keeps_top_fifth_of_each_sequence(batch):
    keep = C.get("siren").peak_mask(batch)
    for i in range(batch.logp.shape[0]):
        m = batch.mask[i].bool()
        n = int(m.sum())
        if n == 0:
            continue
        vals = torch.sort(batch.entropy_topp[i][m].detach()).values
        j = max(int(np.ceil(0.8 * n - 1e-9)), 1) - 1
        assert int(keep[i].sum()) == int((vals > vals[j]).sum()) == n - 1 - j


def test_nucleus_entropy_limits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g, dtype=torch.float64)
    full = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(C.nucleus_entropy(logits, p=1.0), full)
    torch.testing.assert_close(C.nucleus_entropy(logits, p=1e-9), torch.zeros(5, dtype=torch.float64))
    x = logits.clone().requires_grad_()
    (gr,) = torch.autograd.grad(C.nucleus_entropy(x, p=0.6).sum(), x)
    assert bool(torch.isfinite(gr).all())
    # brute force for p = 0.6: sort, keep the smallest prefix with mass ≥ 0.6, renormalise
    p = torch.softmax(logits, -1)
    for row in range(5):
        s = torch.sort(p[row], descending=True).values
        k = int(torch.searchsorted(torch.cumsum(s, 0), torch.tensor(0.6, dtype=torch.float64))) + 1
        q = s[:k] / s[:k].sum()
        assert float(C.nucleus_entropy(logits[row], p=0.6)) == pytest.approx(
            float(-(q * q.log()).sum()), abs=1e-12
        )


# -- every stateful controller: the state round-trips through JSON and behaves identically after ----------

STATEFUL = [
    ("adaptive_entropy", {}),
    ("entropic", {}),
    ("pi_control", {"inner": "adaptive_entropy", "knob": "target", "knob_min": 0.1, "knob_max": 1.0}),
    ("pi_control", {"inner": "clip_cov", "knob": "frac"}),
    ("pos_adv_reweight", {"schedule": "entropy"}),
    ("pos_adv_reweight", {"schedule": "staged"}),
    ("siren", {}),
    ("ref_kl", {"reset_every": 2}),
]


@pytest.mark.parametrize(("name", "hp"), STATEFUL)
@given(hs=st.lists(st.floats(0.0, 2.0, allow_subnormal=False), min_size=1, max_size=12))
def test_state_round_trips_through_json(name, hp, hs):
    pipe = C.Pipeline([C.get(name, **hp)])
    s = pipe.init()
    for i, h in enumerate(hs):
        stats = {
            "policy/entropy": h,
            "train/progress_frac": i / len(hs),
            f"ctrl/{name}/h_masked": h,
            f"ctrl/{name}/kl": h,
        }
        s = pipe.step(s, stats)
        back = C.Pipeline.state_from_json(C.Pipeline.state_to_json(s))
        assert back == s
        assert pipe.step(back, stats) == pipe.step(s, stats)
