"""TokenBatch: everything a controller sees, per token, shape (B, T).

The simulator uses T = 1 for a bandit, T = horizon for a token tree; the LLM trainer uses T = response
length. Reductions that select tokens are global over the batch given, so the trainer passes the whole
optimizer batch (gathered across ranks), never a micro-batch.
"""

from __future__ import annotations

import contextvars
import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

SHAPES = ("token", "seq", "seq_int", "response")
"""a field's shape: token (B, T), seq (B,) real, seq_int (B,) integer, response (B, D)"""


def _field(shape: str, need: str | None = None):
    """A TokenBatch field, declared once: its shape (``SHAPES``) and, for an optional field a controller may
    need and a host may fill, what it is in words (``controllers.contract.FIELDS`` is made from these).
    The five token fields every host fills have no default; every other field defaults to None."""
    assert shape in SHAPES
    meta = {"shape": shape, "need": need}
    if shape == "token" and need is None:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=None, metadata=meta)


_VALIDATE_ONLY: contextvars.ContextVar[frozenset | None] = contextvars.ContextVar(
    "tokenbatch_validate_only", default=None
)


@dataclass(frozen=True)
class TokenBatch:
    """Per-token inputs of the policy loss.

    Fields (B sequences, T positions):
        logp: (B, T) log π_θ of the sampled token; carries the gradient.
        old_logp: (B, T) log π of the behaviour policy that sampled it (detached here).
        adv: (B, T) advantage; outcome advantages are broadcast over the response tokens.
        entropy: (B, T) entropy of π_θ(·|state) at that position, nats, at the sampling temperature.
        mask: (B, T) 1 for real response tokens, 0 for padding.
        group: (B,) integer prompt/state id for group baselines, or None.
        reward: (B,) sequence reward, or None.
        length: (B,) response length in tokens, or None (then mask.sum(-1) is used).
        ref_logp: (B, T) log π_ref of the sampled token (detached), for ``ref_kl``; or None.
        entropy_topp: (B, T) nucleus (top-p) entropy, nats, with gradient, for ``siren``; or None
            (``controllers.nucleus_entropy(logits, p)`` computes it).
        answer: (B,) integer id of the final answer's equivalence class, for ``seed_grpo``; or None.
        step_correct: (B, T) 1.0 where the reasoning step containing the token is judged correct, 0.0
            where not, for ``step_credit``; or None.
        guide: (B,) bool, True for responses drawn from a guide policy (off-policy demonstrations), for
            ``luffy``; or None (all on-policy).
        value: (B, T) a critic's value V(s_t) of the state each token is taken in (detached), for ``vapo``;
            or None.
        embedding: (B, D) float vector per response (e.g. ``controllers.ngram_embedding``), for
            ``diversity_reward``; or None.
        sampler_logp: (B, T) log-prob of the sampled token under the inference engine that generated it
            (vLLM, SGLang), when that differs from the trainer's ``old_logp``; read by ``offpolicy_mask``
            as π_old (the sampling policy) when given; or None.
        is_weight: (B, T) importance weight correcting the mismatch between the inference engine and the
            trainer (π_old/π_sampler, truncated or masked as the engine chose; TRL's
            ``importance_sampling_ratio``), non-negative and detached; ``policy_loss`` multiplies the
            per-token policy-gradient loss by it (not penalties or extras); or None (weight 1).
    """

    logp: Tensor = _field("token")
    old_logp: Tensor = _field("token")
    adv: Tensor = _field("token")
    entropy: Tensor = _field("token")
    mask: Tensor = _field("token")
    group: Tensor | None = _field("seq_int")
    reward: Tensor | None = _field("seq", "sequence rewards")
    length: Tensor | None = _field("seq", "response lengths")
    ref_logp: Tensor | None = _field("token", "log-probs under a reference model")
    entropy_topp: Tensor | None = _field("token", "the nucleus (top-p) entropy of every position")
    answer: Tensor | None = _field("seq_int", "answer-cluster ids (the task's normalised final answers)")
    step_correct: Tensor | None = _field("token", "a correct/incorrect judgement of every reasoning step")
    guide: Tensor | None = _field("seq_int", "flags marking demonstrations from a guide policy")
    embedding: Tensor | None = _field("response", "one embedding vector per response")
    value: Tensor | None = _field("token", "a critic's value of every position")
    sampler_logp: Tensor | None = _field("token", "the inference engine's log-prob of every sampled token")
    is_weight: Tensor | None = _field(
        "token", "the inference engine's importance-sampling correction of every token"
    )

    def __post_init__(self) -> None:
        only = _VALIDATE_ONLY.get()
        ref = self.logp
        if not isinstance(ref, Tensor) or ref.ndim != 2:
            shape = tuple(ref.shape) if isinstance(ref, Tensor) else type(ref).__name__
            raise ValueError(f"logp: got {shape}; allowed: a 2-D float tensor (B, T)")
        if only is not None and not only:  # derived(): nothing to validate again
            return
        checks: list[tuple[Tensor, object]] = []  # (0-dim bool "something is wrong", the precise check)

        def wanted(name: str) -> bool:
            return only is None or name in only

        for name in _TOKEN_FIELDS + _OPTIONAL_TOKEN_FIELDS:
            t = getattr(self, name)
            if not wanted(name) or (t is None and name in _OPTIONAL_TOKEN_FIELDS):
                continue
            if not isinstance(t, Tensor):
                raise ValueError(
                    f"{name}: got {type(t).__name__}; allowed: a torch.Tensor of shape {tuple(ref.shape)}"
                )
            if t.shape != ref.shape:
                raise ValueError(
                    f"{name}: shape {tuple(t.shape)}; allowed: the shape of logp {tuple(ref.shape)}"
                )
            if not t.is_floating_point():
                raise ValueError(f"{name}: dtype {t.dtype}; allowed: a floating dtype")
            checks.append((_maybe_non_finite(t), lambda name=name, t=t: _check_finite(name, t)))
        if wanted("mask"):
            checks.append((((self.mask != 0) & (self.mask != 1)).any(), self._check_mask))
        if wanted("logp") or wanted("mask"):
            checks.append((((ref.detach() > LOGP_TOLERANCE) & (self.mask != 0)).any(), self._check_logp))
        for name in _SEQ_FIELDS:
            t = getattr(self, name)
            if t is None or not wanted(name):
                continue
            if not isinstance(t, Tensor) or t.shape != (ref.shape[0],):
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name}: got {shape}; allowed: a tensor of shape ({ref.shape[0]},) or None")
            if name in _INT_SEQ_FIELDS and (t.is_floating_point() or t.is_complex()):
                raise ValueError(f"{name}: dtype {t.dtype}; allowed: an integer dtype (ids)")
            if t.is_floating_point():
                checks.append((_maybe_non_finite(t), lambda name=name, t=t: _check_finite(name, t)))
        if self.step_correct is not None and wanted("step_correct"):
            checks.append(
                (((self.step_correct != 0) & (self.step_correct != 1)).any(), self._check_step_correct)
            )
        if self.is_weight is not None and wanted("is_weight"):
            checks.append(((self.is_weight < 0).any(), self._check_is_weight))
        if self.embedding is not None and wanted("embedding"):
            e = self.embedding
            if (
                not isinstance(e, Tensor)
                or e.ndim != 2
                or e.shape[0] != ref.shape[0]
                or not e.is_floating_point()
            ):
                shape = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
                raise ValueError(
                    f"embedding: got {shape}; allowed: a float tensor of shape ({ref.shape[0]}, D) or None"
                )
            checks.append((_maybe_non_finite(e), lambda e=e: _check_finite("embedding", e)))
        # one host synchronisation for every value check; the precise message only when one fails
        if checks and bool(torch.stack([flag.to(ref.device) for flag, _ in checks]).any()):
            for flag, precise in checks:
                if bool(flag):
                    precise()

    def _check_mask(self) -> None:
        bad_mask = (self.mask != 0) & (self.mask != 1)
        if bool(bad_mask.any()):
            raise ValueError(f"mask: contains {self.mask[bad_mask][0].item()}; allowed: values in {{0, 1}}")

    def _check_logp(self) -> None:  # the policy's log-probabilities: at most 0 on the valid tokens
        above = (self.logp.detach() > LOGP_TOLERANCE) & (self.mask != 0)
        if bool(above.any()):
            idx = tuple(int(i) for i in above.nonzero()[0])
            raise ValueError(
                f"logp: contains {self.logp.detach()[idx].item():.6g} at index {idx}; allowed: log-probabilities "
                f"<= 0 on the valid tokens (up to {LOGP_TOLERANCE:g} of rounding)"
            )

    def _check_step_correct(self) -> None:
        bad = (self.step_correct != 0) & (self.step_correct != 1)
        if bool(bad.any()):
            raise ValueError(
                f"step_correct: contains {self.step_correct[bad][0].item()}; allowed: values in {{0, 1}}"
            )

    def _check_is_weight(self) -> None:
        if bool((self.is_weight < 0).any()):
            raise ValueError(
                f"is_weight: contains {self.is_weight[self.is_weight < 0][0].item()}; allowed: values >= 0"
            )

    @property
    def n_valid(self) -> Tensor:
        return self.mask.sum()

    @property
    def seq_len(self) -> Tensor:
        """(B,) response lengths: ``length`` if given, else the mask's row sums."""
        return self.length.to(self.mask.dtype) if self.length is not None else self.mask.sum(-1)

    def replace(self, **changes) -> TokenBatch:
        """A copy with ``changes``; only the changed fields are validated again (all of them when logp or mask
        changes, since every field is checked against those)."""
        token = _VALIDATE_ONLY.set(None if {"logp", "mask"} & changes.keys() else frozenset(changes))
        try:
            return dataclasses.replace(self, **changes)
        finally:
            _VALIDATE_ONLY.reset(token)

    def derived(self, **changes) -> TokenBatch:
        """A copy with ``changes`` that is not validated again: for values a pipeline computes from this
        batch (rewards, advantages, a narrower mask), whose shapes it checks itself and whose values reach
        the finite-metrics check of ``policy_loss``. Saves a host synchronisation per copy."""
        if not changes.keys() <= _FIELD_NAMES:
            unknown = sorted(changes.keys() - _FIELD_NAMES)
            raise ValueError(f"derived: unknown fields {unknown}; allowed: {' '.join(sorted(_FIELD_NAMES))}")
        logp = changes.get("logp", self.logp)
        if not isinstance(logp, Tensor) or logp.ndim != 2:  # the one check __post_init__ makes of a copy
            shape = tuple(logp.shape) if isinstance(logp, Tensor) else type(logp).__name__
            raise ValueError(f"logp: got {shape}; allowed: a 2-D float tensor (B, T)")
        new = object.__new__(type(self))  # dataclasses.replace without __init__: a copy of the fields
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def rows(self, index: slice) -> TokenBatch:
        """The sequences ``index`` (a slice of rows) of this batch, not validated again: every field is a
        view of this batch's, whose values were checked when it was made."""
        if not isinstance(index, slice):
            raise ValueError(f"index: got {type(index).__name__}; allowed: a slice of rows")
        changes = {}
        for f in dataclasses.fields(self):
            t = getattr(self, f.name)
            if t is not None:
                changes[f.name] = t[index]
        return self.derived(**changes)

    @staticmethod
    def from_sequences(
        logp: Tensor,
        mask: Tensor,
        *,
        reward: Tensor | None = None,
        group: Tensor | None = None,
        old_logp: Tensor | None = None,
        entropy: Tensor | None = None,
        length: Tensor | None = None,
    ) -> TokenBatch:
        """Convenience constructor: on-policy old_logp = logp.detach(), zero advantages, zero entropy."""
        return TokenBatch(
            logp=logp,
            old_logp=logp.detach() if old_logp is None else old_logp,
            adv=torch.zeros_like(logp, dtype=logp.dtype).detach(),
            entropy=torch.zeros_like(logp).detach() if entropy is None else entropy,
            mask=mask.to(logp.dtype),
            group=group,
            reward=reward,
            length=length,
        )


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(TokenBatch))

LOGP_TOLERANCE = 0.01
"""how far above 0 a log-probability may round (low-precision log-softmax) before it is refused"""


def _fields(*shapes: str, required: bool | None = None) -> tuple[str, ...]:
    out = []
    for f in dataclasses.fields(TokenBatch):
        is_required = f.default is dataclasses.MISSING
        if f.metadata["shape"] in shapes and (required is None or required == is_required):
            out.append(f.name)
    return tuple(out)


_TOKEN_FIELDS = _fields("token", required=True)
_OPTIONAL_TOKEN_FIELDS = _fields("token", required=False)
_SEQ_FIELDS = _fields("seq", "seq_int")
_INT_SEQ_FIELDS = _fields("seq_int")
NEEDS: dict[str, str] = {
    f.name: f.metadata["need"] for f in dataclasses.fields(TokenBatch) if f.metadata["need"] is not None
}
"""the optional fields a controller may need and a host may fill, with what each is in words"""


def _maybe_non_finite(t: Tensor) -> Tensor:
    """0-dim bool, True if ``t`` may hold an inf or NaN: its sum is not finite (an inf or NaN term makes the
    sum inf or NaN). One reduction, where ``isfinite`` makes four passes and their temporaries; a sum of
    finite terms that overflows gives a false alarm, which ``_check_finite`` then clears. 16-bit floats are
    summed in float32."""
    t = t.detach()
    return ~torch.isfinite(t.sum(dtype=torch.float32) if t.element_size() < 4 else t.sum())


def _check_finite(name: str, t: Tensor) -> None:
    bad = ~torch.isfinite(t.detach())
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name}: contains {t.detach()[idx].item()} at index {idx}; allowed: finite values")
