"""Per-token penalties (carry gradient, added before aggregation): KL-Cov, reference KL, SENT."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from controllers.agg import masked_mean
from controllers.base import Controller, Terms, check_choice, check_int, check_real, register
from controllers.select import count_frac, global_count, global_topk_mask, token_cov

_WARNED: set[str] = set()
INERT_STEPS_BEFORE_WARNING = 3


def _inert(batch, selected: Tensor) -> Tensor:
    """1.0 when tokens are selected and log π == log π_old on all of them (the |log-ratio| penalty and its
    gradient are exactly 0 there: an on-policy call), else 0.0; a 0-dim float64 tensor (no host read)."""
    same = (batch.logp.detach() == batch.old_logp.detach()) | ~selected
    return (selected.any() & same.all()).to(torch.float64)


class _InertWarning:
    """State and ``step`` for penalties on |log π − log π_old|: count optimizer steps whose calls were all
    inert (metric ``ctrl/<name>/inert`` = 1; trainers that average a step's metrics give < 1 when any call
    was off-policy) and warn once per process after ``INERT_STEPS_BEFORE_WARNING`` in a row. The first
    mini-batch of every PPO rollout is on-policy, so single inert steps are normal."""

    name: str

    def init(self):
        return {"inert_steps": 0}

    def stateful(self) -> bool:
        return False  # the count only decides a warning; the loss never reads it

    def step(self, state, stats):
        inert = float(stats.get(f"ctrl/{self.name}/inert", 0.0)) >= 1.0
        n = state.get("inert_steps", 0) + 1 if inert else 0
        if n >= INERT_STEPS_BEFORE_WARNING and self.name not in _WARNED:
            _WARNED.add(self.name)
            warnings.warn(
                f"{self.name}: log π == log π_old on every selected token for {n} optimizer steps in a row "
                "(on-policy updates), so the penalty |log π − log π_old| and its gradient are zero and the "
                "controller does nothing; use several mini-batches/epochs per rollout, or clip_cov, which "
                "acts on-policy (PRIME-RL #1).",
                UserWarning,
                stacklevel=3,
            )
        return {"inert_steps": n}


def reset_warnings() -> None:
    """Forget which controllers have warned (for tests, or several runs in one process)."""
    _WARNED.clear()


def _abs_log_ratio(batch) -> Tensor:
    return (batch.logp - batch.old_logp.detach()).abs()


@register
@dataclass(frozen=True)
class KLCov(_InertWarning, Controller):
    """KL-Cov: penalise the ⌈frac·N⌉ tokens with the largest covariance by β·|log π − log π_old|.

    Cov(y_t) = (log π − mean log π)(A − mean A) over the N valid tokens of all ranks; exactly the top
    ⌈frac·N⌉ (ties broken by position) get the penalty, the rest nothing. The paper's loss has no PPO
    clip: do not add ``ppo_clip`` to reproduce it. On-policy (ratio = 1) the penalty and its gradient are
    exactly 0 (metric ``inert``; a warning after 3 such optimizer steps in a row).
    Units: frac is a fraction (PRIME's ``k_percent`` = 100·frac; verl ``kl_cov_ratio`` = frac).
    Defaults: frac = 2e-3 (paper, 7B; 2e-4 for 32B and in verl), beta = 1 (paper and verl's code fallback;
    verl's actor.yaml says 0.1). Deviations from verl: global selection (verl: per micro-batch), no floor
    of one token.
    Ref: Cui et al. 2025 Eqs. 13-14; verl ``compute_policy_loss_kl_cov``.
    """

    name = "kl_cov"
    kind = "penalty"
    frac: float = 2e-3
    beta: float = 1.0

    def __post_init__(self):
        check_real(self.name, "frac", self.frac, lo=0.0, hi=1.0)
        check_real(self.name, "beta", self.beta, lo=0.0)

    def select(self, batch) -> Tensor:
        n, _ = global_count(batch.mask)
        return global_topk_mask(token_cov(batch), batch.mask, count_frac(self.frac, n))

    def terms(self, batch, state, generator=None):
        sel = self.select(batch)
        pen = self.beta * _abs_log_ratio(batch) * sel.to(batch.logp.dtype)
        n = batch.mask.sum().double().clamp_min(1.0)  # 0-dim tensors: read back with the call's metrics
        return Terms(
            penalty=pen, metrics={"frac_penalised": sel.sum().double() / n, "inert": _inert(batch, sel)}
        )


@register
@dataclass(frozen=True)
class RefKL(Controller):
    """KL to a reference policy, per token: β·k(log π − log π_ref), with the sampled-token estimators

    k1 = log π − log π_ref;  k2 = ½(log π − log π_ref)²;  k3 = π_ref/π − log(π_ref/π) − 1  (≥ 0).
    Needs ``batch.ref_logp``. ProRL's reference reset: with ``reset_every`` = n the pipeline reports
    ``reference_reset_due`` every n optimizer steps; with ``reset_kl`` = x, whenever the mean KL estimate
    of the last step exceeds x. The trainer then copies the policy into the reference (and resets the
    optimizer) and calls ``Pipeline.reference_was_reset``.
    Defaults: beta = 1e-3 (verl ``kl_loss_coef``; Cui et al. sweep 1e-3 … 0.1), estimator k3 (verl
    ``low_var_kl``, TRL). Ref: Schulman 2020, "Approximating KL divergence"; ProRL (arXiv 2505.24864).

    ``importance=True`` (DeepSeek-V3.2, seed 002): the tokens were drawn from π_old, so the estimate is
    weighted by the ratio π_θ/π_old, which keeps its gradient: β·(π_θ/π_old)·k. With k3 its expected
    gradient over a ~ π_old is exactly ∇KL(π_θ ‖ π_ref), on- and off-policy. Without the weight, k3's
    expected gradient on-policy is ∇KL(π_ref ‖ π_θ), the reverse direction; the tests enumerate both.
    Default False (verl, TRL).
    """

    name = "ref_kl"
    kind = "penalty"
    needs_fields = frozenset({"ref_logp"})
    beta: float = 1e-3
    estimator: str = "k3"
    reset_every: int | None = None
    reset_kl: float | None = None
    importance: bool = False

    def __post_init__(self):
        if not isinstance(self.importance, bool):
            raise ValueError(f"{self.name}.importance: got {self.importance!r}; allowed: True or False")
        check_real(self.name, "beta", self.beta, lo=0.0)
        check_choice(self.name, "estimator", self.estimator, ("k1", "k2", "k3"))
        check_int(self.name, "reset_every", self.reset_every, lo=1, allow_none=True)
        if self.reset_kl is not None:
            check_real(self.name, "reset_kl", self.reset_kl, lo=0.0)

    def kl(self, batch) -> Tensor:
        if batch.ref_logp is None:
            raise ValueError(
                f"ref_logp: None; allowed: a (B, T) tensor of reference log-probs ({self.name!r} needs it)"
            )
        d = batch.logp - batch.ref_logp.detach()
        if self.estimator == "k1":
            k = d
        elif self.estimator == "k2":
            k = 0.5 * d * d
        else:
            k = torch.exp(-d) + d - 1.0
        if self.importance:
            k = torch.exp(batch.logp - batch.old_logp.detach()) * k
        return k

    def init(self):
        return {"since_reset": 0, "n_resets": 0, "due": False}

    def terms(self, batch, state, generator=None):
        k = self.kl(batch)
        m = batch.mask
        kl_mean = float(masked_mean(k.detach(), m))
        return Terms(penalty=self.beta * k, metrics={"kl": kl_mean, "n_resets": state["n_resets"]})

    def step(self, state, stats):
        since = state["since_reset"] + 1
        due = self.reset_every is not None and since >= self.reset_every
        kl_key = f"ctrl/{self.name}/kl"
        if self.reset_kl is not None and kl_key in stats and float(stats[kl_key]) > self.reset_kl:
            due = True
        return {"since_reset": since, "n_resets": state["n_resets"], "due": bool(due)}

    def stateful(self) -> bool:
        return self.reset_every is not None or self.reset_kl is not None  # else the state is only counters

    def resets_reference(self) -> bool:
        return self.stateful()

    def reset_due(self, state) -> bool:
        return bool(state["due"])

    def after_reset(self, state) -> dict:
        return {"since_reset": 0, "n_resets": state["n_resets"] + 1, "due": False}


@register
@dataclass(frozen=True)
class Sent(_InertWarning, Controller):
    """SENT: KL-Cov restricted to low-entropy tokens, with a stronger and a weaker penalty.

    Among the ⌈low_entropy_frac·N⌉ lowest-entropy valid tokens (all ranks), compute the KL-Cov covariance
    with means over that subset; the top ⌈frac·M⌉ by covariance get hi_mult·β·|log π − log π_old|, the
    bottom ⌈frac·M⌉ get lo_mult·β·|log π − log π_old| (M = subset size). No PPO clip in the paper.
    Defaults: low_entropy_frac = 0.8, frac = 2e-4, beta = 1, hi_mult = 2, lo_mult = 0.5 (code fallbacks).
    Ref: Cao et al. 2025 (arXiv 2512.04359); zldscr0/SENT ``compute_policy_loss_low_entropy_kl_cov_v2``.
    """

    name = "sent"
    kind = "penalty"
    frac: float = 2e-4
    beta: float = 1.0
    low_entropy_frac: float = 0.8
    hi_mult: float = 2.0
    lo_mult: float = 0.5

    def __post_init__(self):
        check_real(self.name, "frac", self.frac, lo=0.0, hi=1.0)
        check_real(self.name, "beta", self.beta, lo=0.0)
        check_real(self.name, "low_entropy_frac", self.low_entropy_frac, lo=0.0, hi=1.0)
        check_real(self.name, "hi_mult", self.hi_mult, lo=0.0)
        check_real(self.name, "lo_mult", self.lo_mult, lo=0.0)

    def select(self, batch) -> tuple[Tensor, Tensor, Tensor]:
        """(low-entropy subset, top-covariance tokens, bottom-covariance tokens), bool (B, T)."""
        n, _ = global_count(batch.mask)
        low = global_topk_mask(
            batch.entropy.detach(), batch.mask, count_frac(self.low_entropy_frac, n), largest=False
        )
        sub = low.to(batch.mask.dtype)
        m_sub, _ = global_count(sub)
        k = count_frac(self.frac, m_sub)
        cov = token_cov(batch, sub)
        top = global_topk_mask(cov, sub, k, largest=True)
        bottom = global_topk_mask(cov, sub, k, largest=False) & ~top
        return low, top, bottom

    def terms(self, batch, state, generator=None):
        low, top, bottom = self.select(batch)
        mult = self.hi_mult * top.to(batch.logp.dtype) + self.lo_mult * bottom.to(batch.logp.dtype)
        n = batch.mask.sum().double().clamp_min(1.0)  # 0-dim tensors: read back with the call's metrics
        return Terms(
            penalty=self.beta * mult * _abs_log_ratio(batch),
            metrics={
                "frac_low_entropy": low.sum().double() / n,
                "frac_penalised_hi": top.sum().double() / n,
                "frac_penalised_lo": bottom.sum().double() / n,
                "inert": _inert(batch, top | bottom),
            },
        )
