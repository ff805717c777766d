"""Controller protocol, the Terms a controller contributes, the registry and the Pipeline.

A controller is a frozen dataclass of hyperparameters (validated in ``__post_init__``, never mutated)
with these methods, each with a neutral default:
    init() -> state                           JSON-serialisable dict (empty for stateless controllers)
    rewards(batch, state) -> Tensor|None      (B,) new sequence rewards (reward shaping), or None
    advantages(batch, state) -> Tensor|None   (B, T) new advantages, or None to leave them unchanged
    terms(batch, state, generator) -> Terms   per-token weights/penalties, extra loss terms, metrics
    step(state, stats) -> state               once per optimizer step, with globally reduced stats
    bind(others) -> Controller                once, when a Pipeline is built (e.g. Clip-Cov reads the
                                              PPO clip range of the pipeline's ``ppo_clip``)

and declares what it needs from the host that runs it (the contract, checked by
``controllers.contract.check`` before any work; no host decides anything by a controller's name):
    needs() -> frozenset[str]      the optional TokenBatch fields it cannot work without (``reward``,
                                   ``answer``, ``ref_logp``, ``entropy_topp``, ``embedding``, ``value``,
                                   ``step_correct``, ...; ``controllers.contract.FIELDS`` lists them)
    whole_groups() -> bool         it compares the responses of one prompt: every group must be whole in
                                   the batch it sees, with at least two responses
    stage() -> str                 "sampling": acts only on rewards/advantages from what is known once the
                                   rollout is scored, so it can run once per rollout on whole groups;
                                   "loss": runs inside every loss call (per token, per batch, or stateful)
    separable(equal_lengths) -> bool
                                   on a batch that concatenates independent runs (disjoint group ids, the
                                   same number of sequences each, and the same token counts unless
                                   ``equal_lengths`` is False) its advantages and terms are the runs' own,
                                   and its extra term is the mean of the runs' (so one loss call can serve
                                   all runs)
    acts_on() -> frozenset[str]    which of "rewards", "advantages", "terms" it overrides
    supplies_surrogate() -> bool   its terms return the PG surrogate (at most one per pipeline)
    sampling_reads() -> frozenset[str]
                                   for a sampling-stage controller, the per-token values among
                                   ``logp``, ``old_logp``, ``entropy`` it reads (a host whose sampling
                                   stage sees rewards only, as verl's advantage estimators, refuses it)
    stateful() -> bool             its state changes between optimizer steps (it overrides ``step``)
    sources_signal() -> bool       it makes the learning signal from rewards (or judgements) alone, not
                                   from the advantages it is given: an advantage estimator (``grpo``,
                                   ``rloo``, ...) or a surrogate that reads rewards (``nft``). A host that
                                   starts from zero advantages refuses a pipeline without one.

``stats`` passed to ``step`` is the metrics dict of ``policy_loss`` for the optimizer batch (averaged
over ranks by the trainer); stateful controllers read ``stats["policy/entropy"]`` (token-mean entropy,
nats) and, for schedules, ``stats["train/progress_frac"]`` in [0, 1].
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from controllers.batch import TokenBatch


@dataclass
class Terms:
    """What a controller adds to the loss. Every tensor is (B, T) unless noted.

    surrogate: the per-token policy-gradient loss replacing −A·ratio (PPO clip); at most one per pipeline.
    weight: multiplies the per-token PG loss, value and gradient (detached; Clip-Cov, 80/20 mask, STEER).
    penalty: added to the per-token loss before aggregation (carries gradient; KL-Cov, reference KL).
    extra: a scalar added after aggregation (entropy bonus, SIREN, EntroPIC adjustment).
    mask: 0/1, removes tokens from the loss *and* from its normaliser (dynamic sampling's dropped
        groups); later controllers in the pipeline see the reduced mask.
    metrics: floats, keyed without the ``ctrl/<name>/`` prefix (the pipeline adds it).
    """

    surrogate: Tensor | None = None
    weight: Tensor | None = None
    penalty: Tensor | None = None
    extra: Tensor | None = None
    mask: Tensor | None = None
    metrics: dict[str, float | Tensor] = field(default_factory=dict)
    """numbers to log: floats, or 0-dim tensors that ``policy_loss`` reads back in one synchronisation"""


STAGES = ("sampling", "loss")
KINDS = ("reward", "advantage", "weight", "surrogate", "penalty", "extra", "batch", "wrapper")


class Controller:
    """Base class: neutral behaviour. Subclasses are frozen dataclasses registered with ``@register``.

    The class attributes ``needs_fields``, ``groups``, ``stage_name``, ``separable_runs`` and
    ``reads_at_sampling`` are the declarations of the contract; the methods of the same purpose read
    them, and a controller whose needs depend on its hyperparameters (``scale="batch"``, a wrapped
    controller) overrides the method.
    """

    name: ClassVar[str] = "controller"
    kind: ClassVar[str] = "none"  # one of KINDS: how the README's table groups it (checked against acts_on)
    needs_fields: ClassVar[frozenset[str]] = frozenset()
    groups: ClassVar[bool] = False
    stage_name: ClassVar[str] = "loss"
    separable_runs: ClassVar[bool] = False
    reads_at_sampling: ClassVar[frozenset[str]] = frozenset()
    surrogate_supplier: ClassVar[bool] = False
    signal_source: ClassVar[bool] = False

    # -- the contract ------------------------------------------------------------------------------

    def needs(self) -> frozenset[str]:
        return frozenset(self.needs_fields)

    def whole_groups(self) -> bool:
        return bool(self.groups)

    def stage(self) -> str:
        return self.stage_name

    def separable(self, equal_lengths: bool = True) -> bool:
        return bool(self.separable_runs)

    def sampling_reads(self) -> frozenset[str]:
        return frozenset(self.reads_at_sampling)

    def stateful(self) -> bool:
        return type(self).step is not Controller.step

    def supplies_surrogate(self) -> bool:
        """True if its ``terms`` return the per-token PG surrogate (``Terms.surrogate``, replacing −A·ratio);
        a pipeline holds at most one such controller, checked when it is built."""
        return bool(self.surrogate_supplier)

    def sources_signal(self) -> bool:
        """True if its advantages (or its surrogate) come from rewards or judgements, whatever the
        advantages it is given: on zero incoming advantages it still gives a learning signal."""
        return bool(self.signal_source)

    def resets_reference(self) -> bool:
        """True if the controller may ask the host to copy the policy into the reference model
        (``Pipeline.reference_reset_due``); such a controller also overrides ``reset_due``."""
        return False

    def acts_on(self) -> frozenset[str]:
        own = type(self)
        return frozenset(
            m for m in ("rewards", "advantages", "terms") if getattr(own, m) is not getattr(Controller, m)
        )

    # -- behaviour -----------------------------------------------------------------------------------

    def init(self) -> dict:
        return {}

    def bind(self, others: list[Controller]) -> Controller:
        return self

    def rewards(self, batch: TokenBatch, state: dict) -> Tensor | None:
        return None

    def advantages(self, batch: TokenBatch, state: dict) -> Tensor | None:
        return None

    def terms(self, batch: TokenBatch, state: dict, generator: torch.Generator | None = None) -> Terms:
        return Terms()

    def step(self, state: dict, stats: dict) -> dict:
        return state

    def hyperparameters(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


_REGISTRY: dict[str, type[Controller]] = {}


def register(cls: type[Controller]) -> type[Controller]:
    """Class decorator: make ``cls`` available as ``controllers.get(cls.name, ...)``."""
    if cls.name in _REGISTRY:
        raise RuntimeError(f"controller name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """All registered controller names (the config strings)."""
    return sorted(_REGISTRY)


def get(name: str, **hyperparameters) -> Controller:
    """Build a controller by its registry name; unknown names or hyperparameters list the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown controller {name!r}; allowed: {', '.join(names())}")
    cls = _REGISTRY[name]
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise ValueError(
            f"{name}: unknown hyperparameter(s) {unknown}; allowed: {', '.join(valid) or '(none)'}"
        )
    return cls(**hyperparameters)


# -- hyperparameter checks (used in __post_init__) ------------------------------------------------


def shown(value) -> str:
    """``repr(value)`` for a one-line message: a huge integer by its size, a long text cut."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        n = abs(value)
        digits = int((n.bit_length() - 1) * math.log10(2)) + 1
        digits += n >= 10**digits
        return f"an integer of {digits} digits"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}… ({len(text)} characters)"


def check_real(owner: str, field_name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False) -> None:
    label = f"{owner}.{field_name}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{label}: got {shown(value)}; allowed: a finite real number")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        raise ValueError(
            f"{label}: got {shown(value)}; allowed: a real number within a float's range"
        ) from None
    if not finite:
        raise ValueError(f"{label}: got {shown(value)}; allowed: a finite real number")
    if (lo is not None and (value < lo or (lo_open and value == lo))) or (
        hi is not None and (value > hi or (hi_open and value == hi))
    ):
        interval = f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{')' if hi_open else ']'}"
        raise ValueError(f"{label}: got {shown(value)}; allowed: {interval}")


def check_int(owner: str, field_name: str, value, *, lo=None, allow_none=False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (lo is not None and value < lo):
        allowed = f"an integer >= {lo}" if lo is not None else "an integer"
        raise ValueError(
            f"{owner}.{field_name}: got {shown(value)}; allowed: {allowed}{' or None' if allow_none else ''}"
        )


def stat(stats: dict, key: str, owner: str) -> float:
    """Read one float from the step stats, or a ValueError naming the key."""
    if key not in stats:
        raise ValueError(
            f"stats: missing {key!r}; allowed: the metrics of policy_loss (plus 'train/progress_frac') — {owner!r} needs it"
        )
    value = float(stats[key])
    if not math.isfinite(value):
        raise ValueError(f"stats[{key!r}]: got {value}; allowed: a finite number")
    return value


def check_choice(owner: str, field_name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(
            f"{owner}.{field_name}: got {shown(value)}; allowed: {', '.join(map(repr, choices))}"
        )


# -- Pipeline ----------------------------------------------------------------------------------------


class Pipeline:
    """An ordered list of controllers acting as one.

    Advantage transforms apply in order (each sees the previous one's output); weights multiply;
    penalties and extras add; at most one controller may supply the surrogate. State is a dict keyed
    ``"<index>:<name>"`` that round-trips through JSON exactly.
    """

    def __init__(self, controllers: list[Controller] | tuple[Controller, ...] = ()):
        items = list(controllers)
        for i, c in enumerate(items):
            if not isinstance(c, Controller):
                raise ValueError(
                    f"controllers[{i}]: got {type(c).__name__}; allowed: controllers from controllers.get(name, ...)"
                )
        owners = [c.name for c in items if c.supplies_surrogate()]
        if len(owners) > 1:
            raise ValueError(
                f"controllers: {' and '.join(repr(n) for n in owners)} each define the PG surrogate; allowed: at "
                "most one of them in a pipeline"
            )
        self.controllers = [c.bind(items) for c in items]
        self.keys = [f"{i}:{c.name}" for i, c in enumerate(items)]

    def __repr__(self) -> str:
        return f"Pipeline({self.controllers!r})"

    # -- the contract of the whole pipeline ----------------------------------------------------------

    def needs(self) -> frozenset[str]:
        """The TokenBatch fields some controller of the pipeline cannot work without."""
        return frozenset().union(*(c.needs() for c in self.controllers))

    def whole_groups(self) -> bool:
        return any(c.whole_groups() for c in self.controllers)

    def sources_signal(self) -> bool:
        """True if some controller makes the learning signal from rewards (``Controller.sources_signal``)."""
        return any(c.sources_signal() for c in self.controllers)

    def sampling_reads(self) -> frozenset[str]:
        """The per-token values its sampling-stage controllers read (``Controller.sampling_reads``)."""
        return frozenset().union(*(c.sampling_reads() for c in self.controllers if c.stage() == "sampling"))

    def separable(self, equal_lengths: bool = True) -> bool:
        return all(c.separable(equal_lengths) for c in self.controllers)

    def split(self) -> tuple[Pipeline, Pipeline]:
        """(sampling, loss): the controllers of stage "sampling" (run once per rollout on whole groups:
        ``sampling.advantages(batch)``) and the rest (run in every loss call, on a batch whose ``adv`` is
        the sampling stage's output). ``policy_loss(batch.replace(adv=sampling.advantages(batch)), loss)``
        equals ``policy_loss(batch, self)`` whenever the split is allowed; it is not when a loss-stage
        controller shapes rewards (they feed the sampling stage's advantages) or a loss-stage advantage
        transform comes before a sampling-stage one (the order would change). Both halves keep the
        controllers' order; their state keys are their own (``"<index>:<name>"`` within each half)."""
        first_loss_adv = None
        for c in self.controllers:
            if c.stage() not in STAGES:
                raise ValueError(f"{c.name}.stage(): got {c.stage()!r}; allowed: {', '.join(STAGES)}")
            acts = c.acts_on()
            if c.stage() == "loss":
                if "rewards" in acts:
                    raise ValueError(
                        f"controllers: {c.name!r} shapes rewards inside the loss (stage 'loss'); allowed: a "
                        "pipeline whose reward transforms all run at sampling time, to be split"
                    )
                if "advantages" in acts and first_loss_adv is None:
                    first_loss_adv = c.name
            elif first_loss_adv is not None and acts & {"rewards", "advantages"}:
                raise ValueError(
                    f"controllers: {c.name!r} (sampling stage) comes after {first_loss_adv!r} (an advantage "
                    "transform inside the loss); allowed: sampling-stage controllers first, to be split"
                )
        sampling = [c for c in self.controllers if c.stage() == "sampling"]
        loss = [c for c in self.controllers if c.stage() == "loss"]
        return Pipeline._bound(sampling), Pipeline._bound(loss)

    @classmethod
    def _bound(cls, controllers: list[Controller]) -> Pipeline:
        """A pipeline of controllers that were already bound (``bind`` is not run again)."""
        p = cls.__new__(cls)
        p.controllers = list(controllers)
        p.keys = [f"{i}:{c.name}" for i, c in enumerate(p.controllers)]
        return p

    def init(self) -> dict:
        return {k: c.init() for k, c in zip(self.keys, self.controllers, strict=True)}

    def _state(self, state: dict | None) -> dict:
        if state is None:
            return self.init()
        missing = [k for k in self.keys if k not in state]
        if missing:
            raise ValueError(
                f"state: missing keys {missing}; allowed: the dict returned by this pipeline's init()"
            )
        return state

    def rewards(self, batch: TokenBatch, state: dict | None = None) -> Tensor | None:
        """Apply the reward transforms in order; returns the (B,) rewards (``batch.reward`` if none)."""
        st = self._state(state)
        reward = batch.reward
        for k, c in zip(self.keys, self.controllers, strict=True):
            new = c.rewards(batch.derived(reward=reward), st[k])
            if new is not None:
                if new.shape != (batch.logp.shape[0],):
                    raise RuntimeError(f"{c.name}.rewards returned shape {tuple(new.shape)}")
                reward = new.detach()
        return reward

    def advantages(self, batch: TokenBatch, state: dict | None = None) -> Tensor:
        """Reward transforms, then advantage transforms in order; returns (B, T) advantages (masked)."""
        st = self._state(state)
        batch = batch.derived(reward=self.rewards(batch, st))
        adv = batch.adv
        for k, c in zip(self.keys, self.controllers, strict=True):
            new = c.advantages(batch.derived(adv=adv), st[k])
            if new is not None:
                if new.shape != adv.shape:
                    raise RuntimeError(
                        f"{c.name}.advantages returned shape {tuple(new.shape)}, expected {tuple(adv.shape)}"
                    )
                adv = new.detach() * batch.mask
        return adv

    def terms(
        self, batch: TokenBatch, state: dict | None = None, generator: torch.Generator | None = None
    ) -> Terms:
        st = self._state(state)
        out = Terms()
        owner = None
        for k, c in zip(self.keys, self.controllers, strict=True):
            t = c.terms(batch, st[k], generator)
            if t.mask is not None:
                keep = t.mask.detach().to(batch.mask.dtype) * batch.mask
                batch = batch.derived(mask=keep)
                out.mask = keep
            if t.surrogate is not None:
                if owner is not None:
                    raise ValueError(
                        f"controllers: both {owner!r} and {c.name!r} define the PG surrogate; allowed: at most one"
                    )
                owner, out.surrogate = c.name, t.surrogate
            if t.weight is not None:
                w = t.weight.detach()
                out.weight = w if out.weight is None else out.weight * w
            if t.penalty is not None:
                out.penalty = t.penalty if out.penalty is None else out.penalty + t.penalty
            if t.extra is not None:
                out.extra = t.extra if out.extra is None else out.extra + t.extra
            out.metrics.update(
                {f"ctrl/{c.name}/{mk}": mv for mk, mv in t.metrics.items()}
            )  # floats or 0-dim tensors
        return out

    def step(self, state: dict | None, stats: dict) -> dict:
        st = self._state(state)
        return {k: c.step(st[k], stats) for k, c in zip(self.keys, self.controllers, strict=True)}

    @property
    def steps_state(self) -> bool:
        """False when no controller overrides ``Controller.step``: ``step`` then returns the states it is
        given, and a host stepping many pipelines' states (the simulator's runs) may skip the call. Wider
        than ``any(c.stateful())``: a controller may step counters the loss never reads (inert-step warnings)."""
        return any(type(c).step is not Controller.step for c in self.controllers)

    def reference_reset_due(self, state: dict | None) -> bool:
        """True when a controller (``ref_kl`` with a reset rule) asks the trainer to copy the current
        policy into the reference model (ProRL). After copying, call ``reference_was_reset``."""
        st = self._state(state)
        return any(
            bool(getattr(c, "reset_due", lambda s: False)(st[k]))
            for k, c in zip(self.keys, self.controllers, strict=True)
        )

    def reference_was_reset(self, state: dict) -> dict:
        st = self._state(state)
        return {
            k: (c.after_reset(st[k]) if hasattr(c, "after_reset") else st[k])
            for k, c in zip(self.keys, self.controllers, strict=True)
        }

    @staticmethod
    def state_metrics(state: dict) -> dict[str, float]:
        """The numbers of a pipeline state as log metrics: ``state/<controller>/<key>``."""
        out = {}
        for key, sub in state.items():
            for k, v in sub.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out[f"state/{key.split(':', 1)[1]}/{k}"] = float(v)
        return out

    @staticmethod
    def state_to_json(state: dict) -> str:
        return json.dumps(state, sort_keys=True)

    @staticmethod
    def state_from_json(text: str) -> dict:
        return json.loads(text)
