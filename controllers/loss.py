"""policy_loss: advantages → terms → per-token loss → agg_loss (+ extras), with entropy telemetry.

The sim and the LLM trainer both call exactly this function:

    loss, metrics = policy_loss(batch, pipeline, state, agg="token-mean", generator=g)

Per-token loss (B, T):  ℓ_t = c_t · w_t · s_t + p_t,  s_t = surrogate (PPO clip) or −A_t·ratio_t (vanilla
PG, ratio = exp(logp − old_logp), so ratio = 1 with gradient ∇log π on-policy), w_t the product of the
weights, c_t the inference engine's importance weight ``batch.is_weight`` (1 if None), p_t the
penalties. loss = agg_loss(ℓ, mask, agg) + Σ extras.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from controllers.agg import agg_loss, check_mode, masked_mean, masked_quantile_tensor, shared_groups
from controllers.base import Pipeline
from controllers.batch import TokenBatch


def _as_pipeline(pipeline) -> Pipeline:
    if isinstance(pipeline, Pipeline):
        return pipeline
    if isinstance(pipeline, list | tuple):
        return Pipeline(list(pipeline))
    raise ValueError(
        f"pipeline: got {type(pipeline).__name__}; allowed: a controllers.Pipeline or a list of controllers"
    )


def _masked_cov(x: Tensor, y: Tensor, mask: Tensor, mean=None) -> Tensor:
    """Batch covariance over valid tokens, biased (1/N): the Clip-Cov/KL-Cov statistic (a 0-dim tensor).
    ``mean``: ``masked_mean(·, mask)`` as a one-argument function (``_masked_means``), or None."""
    mean = (lambda v: masked_mean(v, mask)) if mean is None else mean
    mx, my = mean(x), mean(y)
    return mean((x - mx) * (y - my))


def _masked_means(mask: Tensor, dtype: torch.dtype):
    """``masked_mean(·, mask)`` with the mask's cast to ``dtype`` and its count made once: the same
    arithmetic, so the same values; other dtypes go through ``masked_mean``."""
    m = mask.to(dtype)
    count = m.sum().clamp_min(1.0)
    return lambda x: (x * m).sum() / count if x.dtype == dtype else masked_mean(x, mask)


def _share(count: Tensor, n: Tensor) -> Tensor:
    """count / max(n, 1) in float64, the value float(count) / max(float(n), 1.0) gives on the host."""
    return count.to(torch.float64) / n.to(torch.float64).clamp_min(1.0)


def telemetry(batch: TokenBatch, adv: Tensor) -> dict[str, float]:
    """Entropy diagnostics no framework logs (docs/engines.md, "Telemetry").

    policy/entropy*: token entropy, nats, mean and quantiles over valid tokens.
    policy/cov_logp_adv: batch Cov(log π(y_t), A_t), estimating Cov_π(log π, A) (Thm 2, Clip-Cov's statistic).
    policy/cov_logp_padv: batch Cov(log π(y_t), π(y_t)·A_t), the Thm-1 (vanilla PG) form.
    policy/dH_pred_{pg,npg}_per_lr: the first-order predicted entropy change per unit step size,
      −Cov(log π, π·A) (Thm 1, vanilla PG on softmax logits) and −Cov(log π, A) (Thm 2, natural PG),
      from the batch estimates. The sim also reports the exact first-order ΔH from the realised Δz.
    policy/frac_{hi,lo}p_{pos,neg}adv: token shares by probability (π(y_t) > e^{−H_t}: "high", the
      threshold where the first-order sign of ΔH flips, docs/theory.md §1.3) × advantage sign.
    """
    return to_floats(telemetry_tensors(batch, adv))


def telemetry_tensors(batch: TokenBatch, adv: Tensor) -> dict[str, Tensor]:
    """``telemetry`` as 0-dim tensors on the batch's device: no host synchronisation."""
    m = batch.mask
    logp = batch.logp.detach()
    ent = batch.entropy.detach()
    a = adv.detach()
    n = m.sum()
    mean = _masked_means(m, logp.dtype)
    q10, q50, q90 = masked_quantile_tensor(ent, m, (0.1, 0.5, 0.9)).unbind()
    high = logp > -ent
    valid = m.bool()
    cov_adv = _masked_cov(logp, a, m, mean)
    cov_padv = _masked_cov(logp, logp.exp() * a, m, mean)
    out = {
        "policy/entropy": mean(ent),
        "policy/entropy_q10": q10,
        "policy/entropy_q50": q50,
        "policy/entropy_q90": q90,
        "policy/cov_logp_adv": cov_adv,
        "policy/cov_logp_padv": cov_padv,
        "policy/dH_pred_pg_per_lr": -cov_padv,
        "policy/dH_pred_npg_per_lr": -cov_adv,
        "policy/ratio_mean": mean(torch.exp(logp - batch.old_logp.detach())),
        "policy/approx_kl_k1": mean(batch.old_logp.detach() - logp),
        "policy/n_tokens": n,
        "adv/mean": mean(a),
        "adv/frac_zero": _share(((a == 0) & valid).sum(), n),
    }
    for hi_name, hi_mask in (("hip", high), ("lop", ~high)):
        for sign_name, sign_mask in (("pos", a > 0), ("neg", a < 0)):
            out[f"policy/frac_{hi_name}_{sign_name}adv"] = _share((hi_mask & sign_mask & valid).sum(), n)
    return out


def to_floats(metrics: dict) -> dict[str, float]:
    """Metric values (floats, or 0-dim tensors anywhere) as floats, reading every tensor back in one host
    synchronisation: ``policy_loss`` returns floats, and a GPU step waits for the device once."""
    keys = [k for k, v in metrics.items() if isinstance(v, Tensor)]
    out = {k: v for k, v in metrics.items() if not isinstance(v, Tensor)}
    if keys:
        device = metrics[keys[0]].device
        f64 = torch.float64

        def scalar(v: Tensor) -> Tensor:  # 0-dim float64 on ``device``; no op where it already is one
            v = v if v.dim() == 0 else v.reshape(())
            return v if v.dtype == f64 and v.device == device else v.to(device=device, dtype=f64)

        with torch.no_grad():
            vals = torch.stack([scalar(metrics[k]) for k in keys])
        out.update(zip(keys, vals.tolist(), strict=True))
    return {k: float(out[k]) for k in metrics}


def policy_loss(
    batch: TokenBatch,
    pipeline,
    state: dict | None = None,
    agg: str = "token-mean",
    generator: torch.Generator | None = None,
    *,
    norm_len: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The policy loss of a pipeline of controllers on one (whole optimizer) batch.

    Args:
        batch: a TokenBatch; its ``adv`` is the input to the first advantage transform.
        pipeline: a Pipeline (or a list of controllers); ``Pipeline([])`` is vanilla PG.
        state: the pipeline state (``pipeline.init()`` if None).
        agg: aggregation mode of ``agg_loss``.
        generator: torch.Generator for controllers that sample (Clip-Cov).
        norm_len: L for agg="seq-mean-token-sum-norm" (default T).
    Returns:
        (loss scalar with gradient, metrics dict of floats).
    """
    check_mode(agg)
    pipe = _as_pipeline(pipeline)
    if not isinstance(batch, TokenBatch):
        raise ValueError(f"batch: got {type(batch).__name__}; allowed: a controllers.TokenBatch")
    st = pipe.init() if state is None else state
    if torch.is_grad_enabled() and not batch.logp.requires_grad:
        warnings.warn(
            "policy_loss: logp carries no gradient, so the loss has none and no update can follow from it "
            "(pass log-probs computed with gradients; under torch.no_grad() this call only reports metrics)",
            stacklevel=2,
        )

    with shared_groups():  # every controller's groups indexed once per call
        adv = pipe.advantages(batch, st)  # (B, T)
        b2 = batch.derived(adv=adv)
        terms = pipe.terms(b2, st, generator)

    ratio = torch.exp(b2.logp - b2.old_logp.detach())  # (B, T)
    surrogate = terms.surrogate if terms.surrogate is not None else -adv * ratio
    per_token = surrogate if terms.weight is None else terms.weight * surrogate
    if batch.is_weight is not None:  # the inference engine's correction (TRL's vLLM IS ratio)
        per_token = batch.is_weight.detach() * per_token
    mask = batch.mask if terms.mask is None else terms.mask  # dynamic sampling drops tokens here
    pg = agg_loss(per_token, mask, agg, norm_len)
    loss = pg
    metrics: dict = {"loss/pg": pg.detach()}
    if terms.penalty is not None:
        pen = agg_loss(terms.penalty, mask, agg, norm_len)
        loss = loss + pen
        metrics["loss/penalty"] = pen.detach()
    if terms.extra is not None:
        loss = loss + terms.extra
        metrics["loss/extra"] = terms.extra.detach()
    metrics["loss/total"] = loss.detach()
    metrics["loss/frac_tokens_kept"] = _share(mask.sum(), batch.mask.sum())
    metrics.update(telemetry_tensors(b2, adv))
    metrics.update(terms.metrics)
    metrics = to_floats(metrics)  # the one read-back of the call's metrics
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise RuntimeError(f"policy_loss produced non-finite metrics {bad}")
    return loss, metrics
