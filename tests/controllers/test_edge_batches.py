"""Every controller on the edge batches a host can hand it: no sequences (B = 0), no positions (T = 0), and
log-probabilities of −1e9 (a token the policy all but rules out). Each gives a finite loss and finite
metrics, as GRPO with PPO's clip does there, or one clear ValueError; none raises anything else."""

from __future__ import annotations

import math

import pytest
import torch

import controllers as C


def full_batch(b: int, t: int, logp_value: float | None = None) -> C.TokenBatch:
    g = torch.Generator().manual_seed(0)
    f64 = torch.float64
    logp = (
        -torch.rand(b, t, generator=g, dtype=f64) * 4
        if logp_value is None
        else torch.full((b, t), logp_value, dtype=f64)
    )
    logp = logp.requires_grad_()
    return C.TokenBatch(
        logp=logp, old_logp=logp.detach().clone(), adv=torch.zeros(b, t, dtype=f64),
        entropy=torch.rand(b, t, generator=g, dtype=f64) * 2, mask=torch.ones(b, t, dtype=f64),
        group=torch.arange(b) // 2, reward=(torch.arange(b) % 2).to(f64),
        ref_logp=logp.detach() - 0.1, entropy_topp=(torch.rand(b, t, generator=g, dtype=f64) * 1.5).requires_grad_(),
        answer=torch.arange(b) % 3, step_correct=torch.ones(b, t, dtype=f64), guide=torch.arange(b) % 4 == 0,
        embedding=torch.rand(b, 4, generator=g, dtype=f64), value=torch.rand(b, t, generator=g, dtype=f64),
    )  # fmt: skip


def pipeline(name: str) -> C.Pipeline:
    items = [C.get(name)]
    if name != "grpo":
        items.append(C.get("grpo"))
    if not C.get(name).supplies_surrogate():
        items.append(C.get("ppo_clip"))
    items.sort(key=lambda c: c.stage() == "loss")
    return C.Pipeline(items)


EDGES = {"no sequences": (0, 3, None), "no positions": (4, 0, None), "log π = −1e9": (4, 3, -1e9)}


@pytest.mark.parametrize("edge", sorted(EDGES))
@pytest.mark.parametrize("name", C.names())
def test_edge_batches_give_finite_numbers(name, edge):
    b, t, value = EDGES[edge]
    pipe = pipeline(name)
    try:
        loss, metrics = C.policy_loss(
            full_batch(b, t, value), pipe, generator=torch.Generator().manual_seed(0)
        )
    except ValueError as e:  # a clear refusal is allowed: one line that names what is wrong
        assert "\n" not in str(e) and "allowed" in str(e), str(e)
        return
    assert math.isfinite(float(loss.detach())), (name, edge)
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    assert not bad, (name, edge, bad)


def test_log_probabilities_above_zero_are_refused_and_rounding_is_not():
    b = full_batch(4, 3)
    for name in ("logp",):
        bad = getattr(b, name).detach().clone()
        bad[1, 2] = 0.5
        with pytest.raises(
            ValueError, match=rf"^{name}: contains 0.5 at index \(1, 2\); allowed: log-probabilities <= 0"
        ):
            b.replace(**{name: bad})
    ok = b.logp.detach().clone()
    ok[0, 0] = 1e-3  # rounding of a log-softmax in low precision
    b.replace(logp=ok)
    pad = b.mask.clone()
    pad[2, 1] = 0
    junk = b.logp.detach().clone()
    junk[2, 1] = 3.0  # a padded position may hold anything
    b.replace(logp=junk, mask=pad)


def test_a_loss_without_gradient_is_flagged_and_evaluation_is_not():
    import warnings

    b = full_batch(4, 3)
    detached = b.replace(logp=b.logp.detach())
    with pytest.warns(UserWarning, match="^policy_loss: logp carries no gradient"):
        loss, _ = C.policy_loss(detached, pipeline("grpo"))
    assert not loss.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            C.policy_loss(detached, pipeline("grpo"))  # evaluation: no warning
        loss, _ = C.policy_loss(b, pipeline("grpo"))
    assert loss.requires_grad
