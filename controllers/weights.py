"""Per-token weights (detached, multiply the PG loss): Clip-Cov, top-entropy (80/20), STEER, off-policy mask."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from controllers import dist
from controllers.base import Controller, Terms, check_choice, check_real, register
from controllers.groups import seq_mean
from controllers.select import count_frac, global_count, token_cov
from controllers.surrogates import PPOClip, ppo_clipped


def _frac_of(sel: Tensor, mask: Tensor) -> float:
    return float((sel & mask.bool()).sum()) / max(float(mask.sum()), 1.0)


@register
@dataclass(frozen=True)
class ClipCov(Controller):
    """Clip-Cov: detach a random ⌈frac·N⌉ of the tokens whose covariance lies in (lb, ub).

    Cov(y_t) = (log π(y_t) − mean log π)(A_t − mean A) over the N valid tokens of the whole optimizer
    batch (all ranks). Candidates: lb < Cov < ub (strict), not already clipped by PPO; a uniformly
    random subset of min(⌈frac·N⌉, #candidates) of them is drawn with ``generator`` (the global torch
    RNG if None) and gets weight 0; the rest weight 1. Detached tokens stay in the normaliser (verl).
    eps_lo/eps_hi: the PPO clip range whose clipped tokens are excluded; None (default) takes it from
    the pipeline's ``ppo_clip``, or excludes nothing if there is none (the paper's scripts set the clip
    range to 1, which is nearly off).
    Deviations from verl, stated: selection is global (verl: per micro-batch) and the count is
    ⌈frac·N⌉ with no floor of one (verl: max(int(frac·N), 1)).
    Defaults: frac = 2e-4, lb = 1, ub = 5 (paper and verl).
    bounds: "absolute" (default; verl) takes lb and ub in Cov's own units; "batch_mean" takes them as
    multiples of the batch's mean Cov(y_t) over its valid tokens (all ranks), the scale the paper gives its
    bounds in ("over 500× the average covariance"): at the paper's average of about 0.002-0.003 nats per
    token, its lb = 1 and ub = 5 are about 500× and 2500×. A batch whose mean Cov is not positive has no
    candidate in this mode. A model whose covariances are larger or smaller than a 7B model's keeps the
    paper's selection (the far tail) only in this mode.
    Ref: Cui et al. 2025 (arXiv 2505.22617) Eqs. 11-12; verl ``compute_policy_loss_clip_cov``.
    """

    name = "clip_cov"
    kind = "weight"
    frac: float = 2e-4
    lb: float = 1.0
    ub: float = 5.0
    eps_lo: float | None = None
    eps_hi: float | None = None
    bounds: str = "absolute"

    def __post_init__(self):
        check_real(self.name, "frac", self.frac, lo=0.0, hi=1.0)
        check_real(self.name, "lb", self.lb)
        check_real(self.name, "ub", self.ub)
        check_choice(self.name, "bounds", self.bounds, ("absolute", "batch_mean"))
        if not self.lb < self.ub:
            raise ValueError(f"{self.name}.ub: got {self.ub!r}; allowed: a number > lb = {self.lb!r}")
        if (self.eps_lo is None) != (self.eps_hi is None):
            raise ValueError(
                f"{self.name}.eps_lo/eps_hi: got {self.eps_lo!r}/{self.eps_hi!r}; allowed: both None or both set"
            )
        if self.eps_lo is not None:
            PPOClip(eps_lo=self.eps_lo, eps_hi=self.eps_hi)

    def bind(self, others):
        if self.eps_lo is None:
            for c in others:
                if isinstance(c, PPOClip):
                    return dataclasses.replace(self, eps_lo=c.eps_lo, eps_hi=c.eps_hi)
        return self

    def candidates(self, batch) -> Tensor:
        """Bool (B, T): valid tokens with lb < Cov < ub that PPO has not clipped."""
        cov = token_cov(batch)
        if self.bounds == "absolute":
            cand = batch.mask.bool() & (cov > self.lb) & (cov < self.ub)
        else:  # multiples of the batch's mean Cov (no candidate when it is not positive)
            scale = dist.global_mean(cov, batch.mask)
            cand = batch.mask.bool() & (cov > self.lb * scale) & (cov < self.ub * scale) & (scale > 0)
        if self.eps_lo is not None:
            cand &= ~ppo_clipped(batch, self.eps_lo, self.eps_hi)
        return cand

    def select(self, batch, generator: torch.Generator | None = None, cand: Tensor | None = None) -> Tensor:
        """Bool (B, T): the tokens to detach."""
        cand = self.candidates(batch) if cand is None else cand
        n_total, _ = global_count(batch.mask)
        n_cand, before = global_count(cand.to(batch.mask.dtype))
        k = min(count_frac(self.frac, n_total), n_cand)
        n_local = int(cand.sum())
        chosen = torch.zeros(n_local, dtype=torch.bool)
        if k > 0:
            draw = torch.randperm(n_cand, generator=generator)[:k]
            local = draw[(draw >= before) & (draw < before + n_local)] - before
            chosen[local] = True
        out = torch.zeros_like(cand)
        out[cand] = chosen.to(cand.device)
        return out

    def terms(self, batch, state, generator=None):
        cand = self.candidates(batch)
        sel = self.select(batch, generator, cand)
        return Terms(
            weight=(~sel).to(batch.logp.dtype),
            metrics={
                "frac_detached": _frac_of(sel, batch.mask),
                "frac_candidates": _frac_of(cand, batch.mask),
            },
        )


@register
@dataclass(frozen=True)
class TopEntropy(Controller):
    """80/20 rule: keep the PG loss only on the ⌈ρ·N⌉ highest-entropy tokens (ties at the threshold kept);
    ``side="bottom"`` keeps the ⌈ρ·N⌉ lowest instead (the paper's bottom-80% ablation).

    threshold = the ⌈ρ·N⌉-th largest token entropy over the valid tokens of all ranks; weight
    1{H_t ≥ threshold}. ρ = 1 keeps every token. Deviation from TRL, stated: TRL's threshold is
    ``torch.quantile(H, 1 − ρ)`` (linear interpolation, and it fails above 2^24 tokens); ours is an order
    statistic, so exactly ⌈ρ·N⌉ tokens are kept when entropies are distinct.
    Ref: Wang et al. 2025, "Beyond the 80/20 Rule" (arXiv 2506.01939), ρ = 0.2; TRL
    ``get_high_entropy_mask``.
    """

    name = "top_entropy"
    kind = "weight"
    rho: float = 0.2
    side: str = "top"
    """"top": keep the ⌈ρ·N⌉ highest-entropy tokens; "bottom": the ⌈ρ·N⌉ lowest (the paper's ablation
    trains on the bottom 80%: rho = 0.8, side = "bottom"). Ties at the threshold are kept."""

    def __post_init__(self):
        check_real(self.name, "rho", self.rho, lo=0.0, hi=1.0, lo_open=True)
        check_choice(self.name, "side", self.side, ("top", "bottom"))

    def keep(self, batch) -> Tensor:
        vals, _ = dist.gather_valid(batch.entropy, batch.mask)
        if vals.numel() == 0:
            return torch.zeros_like(batch.mask, dtype=torch.bool)
        k = max(1, count_frac(self.rho, vals.numel()))
        top = self.side == "top"
        threshold = torch.topk(vals, k, largest=top).values[-1]
        h = batch.entropy.detach()
        return batch.mask.bool() & (h >= threshold if top else h <= threshold)

    def terms(self, batch, state, generator=None):
        keep = self.keep(batch)
        return Terms(weight=keep.to(batch.logp.dtype), metrics={"frac_kept": _frac_of(keep, batch.mask)})


@register
@dataclass(frozen=True)
class Steer(Controller):
    """STEER: down-weight tokens whose first-order entropy change |Ω_t| is large.

    Ω_t = (A_t / π_old(y_t))·π(y_t)(1 − π(y_t))·(log π(y_t) + H_t)  (detached).
    exp mode:    w = clip(exp(−k|Ω|), w_min, 1),  k = −ln(w_min) / max(max|Ω|, 0.02);
    linear mode: w = w_max − (|Ω| − min|Ω|)(w_max − w_min)/(max|Ω| − min|Ω|), clipped to [w_min, w_max].
    max/min over the valid tokens of all ranks. The paper pairs it with dual-clip PPO (eps_hi 0.28,
    dual_clip 10): add ``ppo_clip`` to the pipeline for that.
    Ref: Hao et al. 2025 (arXiv 2510.10150); zz-haooo/STEER ``compute_token_weights``; w_min = 0.8.
    """

    name = "steer"
    kind = "weight"
    mode: str = "exp"
    w_min: float = 0.8
    w_max: float = 1.0

    def __post_init__(self):
        check_choice(self.name, "mode", self.mode, ("exp", "linear"))
        check_real(self.name, "w_min", self.w_min, lo=0.0, hi=1.0, lo_open=True)
        check_real(self.name, "w_max", self.w_max, lo=self.w_min, hi=1.0)

    def omega(self, batch) -> Tensor:
        logp, old = batch.logp.detach(), batch.old_logp.detach()
        p = logp.exp()
        rest = (1.0 - p) * (logp + batch.entropy.detach())
        direct = batch.adv.detach() / old.exp() * p * rest
        # where π_old underflows (log π_old ≈ −1e9), A/π_old·π is inf·0: take π/π_old = exp(log π − log π_old)
        stable = batch.adv.detach() * torch.exp(logp - old) * rest
        return torch.where(torch.isfinite(direct), direct, stable)

    def weights(self, batch) -> Tensor:
        a = self.omega(batch).abs()
        vals, _ = dist.gather_valid(a, batch.mask)
        if vals.numel() == 0:
            return torch.ones_like(a)
        hi, lo = vals.max(), vals.min()
        if self.mode == "exp":
            k = -math.log(self.w_min) / torch.clamp(hi, min=0.02)
            w = torch.clamp(torch.exp(-k * a), self.w_min, 1.0)
        else:
            span = hi - lo
            w = torch.where(
                span > 0,
                self.w_max - (a - lo) * (self.w_max - self.w_min) / span.clamp_min(1e-300),
                torch.full_like(a, self.w_max),
            )
            w = torch.clamp(w, self.w_min, self.w_max)
        return w

    def terms(self, batch, state, generator=None):
        w = self.weights(batch)
        m = batch.mask
        n = max(float(m.sum()), 1.0)
        return Terms(weight=w, metrics={"weight_mean": float((w * m).sum()) / n})


@register
@dataclass(frozen=True)
class OffPolicyMask(Controller):
    """DeepSeek-V3.2 off-policy sequence mask: M_i = 0 if A_i < 0 and KL_i > δ, else 1.

    KL_i = (1/|o_i|) Σ_t (log π_old(o_t) − log π_θ(o_t)), π_old the sampling policy (``batch.sampler_logp``
    when an inference engine sampled, else ``old_logp``, as TRL); A_i the sequence's mean advantage.
    Multiplies the per-token loss (normaliser unchanged, as TRL).
    δ = 0.5: TRL's documentation example (the paper's value was not found).
    Ref: DeepSeek-V3.2 (arXiv 2512.02556) Eq. 9; TRL ``get_off_policy_mask``, ``off_policy_mask_threshold``.
    """

    name = "offpolicy_mask"
    kind = "weight"
    separable_runs = True
    delta: float = 0.5

    def __post_init__(self):
        check_real(self.name, "delta", self.delta, lo=0.0)

    def terms(self, batch, state, generator=None):
        m = batch.mask
        sampler = batch.old_logp if batch.sampler_logp is None else batch.sampler_logp
        kl = seq_mean(sampler.detach() - batch.logp.detach(), batch)
        a = seq_mean(batch.adv.detach(), batch)
        drop = (a < 0) & (kl > self.delta)
        n_seq = max(int((m.sum(-1) > 0).sum()), 1)
        return Terms(
            weight=(~drop).to(batch.logp.dtype)[:, None].expand_as(m),
            metrics={"frac_seq_masked": float(drop.sum()) / n_seq},
        )
