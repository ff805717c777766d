"""Extra loss terms with state: Skywork's adaptive entropy bonus, SIREN, EntroPIC; the nucleus entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from controllers import dist
from controllers.agg import AGG_MODES, agg_loss, order_indices
from controllers.base import Controller, Terms, check_choice, check_int, check_real, register, stat


def nucleus_entropy(logits: Tensor, p: float = 0.8, top_k: int = 10_000, temperature: float = 1.0) -> Tensor:
    """Top-p ("policy nucleus") entropy per position, nats, differentiable.

    Take the top-k probabilities of softmax(logits / temperature), keep the smallest prefix whose
    cumulative probability reaches p, renormalise, H = −Σ p̃ log p̃.
    Args: logits (..., V). Returns (...).
    Ref: SIREN (arXiv 2509.25133) ``compute_entropy_from_logits_w_topp``; p = 0.8, k = 10,000.
    """
    check_real("nucleus_entropy", "p", p, lo=0.0, hi=1.0, lo_open=True)
    check_int("nucleus_entropy", "top_k", top_k, lo=1)
    check_real("nucleus_entropy", "temperature", temperature, lo=0.0, lo_open=True)
    logp = torch.log_softmax(logits / temperature, dim=-1)
    top = torch.topk(logp, min(top_k, logp.shape[-1]), dim=-1).values  # sorted, descending
    probs = top.exp()
    before = torch.cumsum(probs, -1) - probs
    keep = before < p  # the first position where the running sum reaches p is kept, later ones not
    lse = torch.logsumexp(torch.where(keep, top, torch.full_like(top, -torch.inf)), -1, keepdim=True)
    logq = top - lse  # finite everywhere, so masked-out entries get zero (not nan) gradient
    w = keep.to(top.dtype)
    return -(w * logq.exp() * logq).sum(-1)


@register
@dataclass(frozen=True)
class AdaptiveEntropy(Controller):
    """Skywork-OR1 adaptive entropy coefficient: an entropy bonus −c_k·1{H_k < target}·mean_t H_t with

    c_{k+1} = clip(c_k + Δ if H_k < target else c_k − Δ, c_min, c_max)  (H_k: the step's token-mean entropy).
    The coefficient keeps updating at c = 0 (TRL PR #6140's "zero coef stops adaptive entropy" bug) and the
    bonus carries gradient (TRL PRs #5595/#5596 computed it under no_grad).
    Defaults from Skywork's released scripts: target = 0.2 nats, delta = 1e-4, c_min = 0, c_max = 5e-3,
    c_init = 0. (TRL's defaults differ 50×: delta 5e-3, c_max 1.0; docs/engines.md.)
    ``start_enabled``: whether the bonus acts before the first measured step (True, Skywork's scripts);
    TRL applies none in its first optimizer step (False).
    Ref: Skywork-OR1 (arXiv 2505.22312) ``core_algos.py::EntController``.
    """

    name = "adaptive_entropy"
    kind = "extra"
    target: float = 0.2
    delta: float = 1e-4
    c_min: float = 0.0
    c_max: float = 5e-3
    c_init: float = 0.0
    start_enabled: bool = True

    def __post_init__(self):
        if not isinstance(self.start_enabled, bool):
            raise ValueError(f"{self.name}.start_enabled: got {self.start_enabled!r}; allowed: True or False")
        check_real(self.name, "target", self.target, lo=0.0)
        check_real(self.name, "delta", self.delta, lo=0.0)
        check_real(self.name, "c_min", self.c_min, lo=0.0)
        check_real(self.name, "c_max", self.c_max, lo=self.c_min)
        check_real(self.name, "c_init", self.c_init, lo=self.c_min, hi=self.c_max)

    def init(self):
        return {"coef": float(self.c_init), "enabled": self.start_enabled}

    def terms(self, batch, state, generator=None):
        h = agg_loss(batch.entropy, batch.mask, "token-mean")
        c = state["coef"] if state["enabled"] else 0.0
        return Terms(extra=-c * h, metrics={"coef": state["coef"], "enabled": float(state["enabled"])})

    def step(self, state, stats):
        h = stat(stats, "policy/entropy", self.name)
        below = h < self.target
        coef = state["coef"] + self.delta if below else state["coef"] - self.delta
        return {"coef": min(self.c_max, max(self.c_min, coef)), "enabled": bool(below)}


def _row_quantile(x: Tensor, mask: Tensor, q: float) -> Tensor:
    """(B,) right-continuous q-quantile of each row's valid entries (+inf for empty rows), by sort."""
    filled = torch.where(mask.bool(), x, torch.full_like(x, torch.inf))
    s = torch.sort(filled, dim=-1).values
    n = mask.sum(-1).to(torch.long)
    if x.shape[-1] == 0:  # no positions at all (T = 0): every row is empty
        return torch.full(x.shape[:-1], torch.inf, dtype=x.dtype, device=x.device)
    j = order_indices(q, n.clamp_min(1))
    out = s.gather(-1, j[:, None])[:, 0]
    return torch.where(n > 0, out, torch.full_like(out, torch.inf))


@register
@dataclass(frozen=True)
class Siren(Controller):
    """SIREN, selective entropy regularisation: extra loss c·(H_masked − H_anchor)².

    H_t: the nucleus entropy ``batch.entropy_topp`` (top-p = 0.8 of the top 10,000 tokens; see
    ``nucleus_entropy``). Peak mask, per sequence: keep positions with H_t above the sequence's
    τ-quantile (τ = 0.8: the top 20% of each response). H_masked = agg(H_t over the mask) with ``agg``
    (default seq-mean-token-mean). H_anchor = H_masked of the first optimizer step (the extra term is 0
    on that step). Deviation, stated: the per-sequence quantile is the right-continuous order statistic
    (the code's ``nanquantile`` interpolates linearly).
    Defaults: coef = 0.005, mask_quantile = 0.8 (the code's ``mask_ratio``).
    Ref: arXiv 2509.25133; Linn3a/siren ``dp_actor.py`` (experiment_type "siren").
    """

    name = "siren"
    kind = "extra"
    needs_fields = frozenset({"entropy_topp"})
    coef: float = 0.005
    mask_quantile: float = 0.8
    agg: str = "seq-mean-token-mean"

    def __post_init__(self):
        check_real(self.name, "coef", self.coef, lo=0.0)
        check_real(self.name, "mask_quantile", self.mask_quantile, lo=0.0, hi=1.0, hi_open=True)
        check_choice(self.name, "agg", self.agg, AGG_MODES)

    def init(self):
        return {"anchor": None}

    def peak_mask(self, batch) -> Tensor:
        h = self._h(batch).detach()
        thr = _row_quantile(h, batch.mask, self.mask_quantile)
        return batch.mask.bool() & (h > thr[:, None])

    def _h(self, batch) -> Tensor:
        if batch.entropy_topp is None:
            raise ValueError(
                f"entropy_topp: None; allowed: a (B, T) tensor from controllers.nucleus_entropy ({self.name!r} needs it)"
            )
        return batch.entropy_topp

    def terms(self, batch, state, generator=None):
        keep = self.peak_mask(batch)
        h_masked = agg_loss(self._h(batch), keep.to(batch.mask.dtype), self.agg)
        anchor = h_masked.detach() if state["anchor"] is None else state["anchor"]
        extra = self.coef * (h_masked - anchor) ** 2
        n = max(float(batch.mask.sum()), 1.0)
        return Terms(
            extra=extra,
            metrics={
                "h_masked": float(h_masked.detach()),
                "anchor": float(anchor),
                "frac_masked_in": float(keep.sum()) / n,
            },
        )

    def step(self, state, stats):
        if state["anchor"] is not None:
            return state
        return {"anchor": stat(stats, f"ctrl/{self.name}/h_masked", self.name)}


@register
@dataclass(frozen=True)
class EntroPIC(Controller):
    """EntroPIC: PI control of the weight of high-probability tokens toward a target entropy.

    e = H − target (H: token-mean entropy of the batch over all ranks),
    α = clip(K_p·e + K_i·I, −1, 1) with I the integral of e before this step; extra loss
        α · mean_{t: π(y_t) > 0.95} ( −ratio_t·|A_t| ),  ratio = exp(clamp(log π − log π_old, −20, 20)).
    α > 0 (entropy above target) pushes likely tokens up and lowers entropy; α < 0 raises it.
    step: I += e with the step's entropy. K_i = 0 is P-only control (which leaves a steady-state error
    off-policy; the paper and docs/theory.md §3).
    Defaults: kp = 1, ki = 0.01 (config/entropic.yaml), target = 0.1 nats (run_entropic.sh), high_prob
    = 0.95. Ref: Yang et al. 2025 (arXiv 2511.15248); yk7333/EntroPIC ``compute_policy_loss_entropic``.
    """

    name = "entropic"
    kind = "extra"
    target: float = 0.1
    kp: float = 1.0
    ki: float = 0.01
    high_prob: float = 0.95

    def __post_init__(self):
        check_real(self.name, "target", self.target, lo=0.0)
        check_real(self.name, "kp", self.kp, lo=0.0)
        check_real(self.name, "ki", self.ki, lo=0.0)
        check_real(self.name, "high_prob", self.high_prob, lo=0.0, hi=1.0, hi_open=True)

    def init(self):
        return {"integral": 0.0}

    def alpha(self, error: float, integral: float) -> float:
        return min(1.0, max(-1.0, self.kp * error + self.ki * integral))

    def terms(self, batch, state, generator=None):
        err = float(dist.global_mean(batch.entropy, batch.mask)) - self.target
        a = self.alpha(err, state["integral"])
        high = batch.mask.bool() & (batch.logp.detach() > torch.log(torch.tensor(self.high_prob)).item())
        ratio = torch.exp(torch.clamp(batch.logp - batch.old_logp.detach(), -20.0, 20.0))
        adj = agg_loss(-ratio * batch.adv.detach().abs(), high.to(batch.mask.dtype), "token-mean")
        n = max(float(batch.mask.sum()), 1.0)
        return Terms(
            extra=a * adj,
            metrics={
                "alpha": a,
                "error": err,
                "integral": state["integral"],
                "frac_high_prob": float(high.sum()) / n,
            },
        )

    def step(self, state, stats):
        return {"integral": state["integral"] + stat(stats, "policy/entropy", self.name) - self.target}
