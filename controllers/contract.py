"""The contract between controllers and the hosts that run them.

A controller declares what it needs (``Controller.needs``, ``whole_groups``, ``stage``, ``separable``); a
host (the simulator, the LLM trainer, an engine adapter) declares what it provides, as a ``Host``. Before
any work starts the host calls ``check(pipeline, host)``, which raises one line naming the controller,
what it needs and how to get it on this host (or that this host cannot). A host then asks the pipeline,
never a controller's name, what to compute: ``"entropy_topp" in pipeline.needs()`` and so on.

The vocabulary of needs is the optional fields of ``controllers.TokenBatch`` (``FIELDS`` says what each
one is). The five token fields every host fills (``logp``, ``old_logp``, ``adv``, ``entropy``, ``mask``)
and the prompt ids ``group`` are always there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controllers.base import Controller, Pipeline, get, names
from controllers.batch import _TOKEN_FIELDS, NEEDS

ALWAYS = (*_TOKEN_FIELDS, "group")
"""the fields every host fills: the five token fields and the prompt ids"""

FIELDS: dict[str, str] = dict(NEEDS)
"""the optional TokenBatch fields a controller may need, with what each is in words (declared once, on the
field: ``controllers.batch``)"""


@dataclass(frozen=True)
class Host:
    """What a host can feed a pipeline, as it is configured now.

    name: the host in words, for messages ("the LLM trainer").
    provides: the optional TokenBatch fields it fills (on demand: it computes a field only when
        ``pipeline.needs()`` asks for it).
    how: fields it would fill if configured differently: field → how ("--step-signal prefix").
    cannot: fields it never fills: field → why ("it keeps no critic"); fields in none of the three maps
        are refused with a generic reason.
    group_size: responses per prompt in every batch (None: not fixed by the host).
    group_option: the name of the host's group-size option, for messages.
    loss_groups: None if every loss call sees whole groups; else why it does not (then a loss-stage
        controller that compares the responses of one prompt is refused: only the sampling stage sees
        whole groups on such a host).
    sampling_lacks: per-token values (``logp``, ``old_logp``, ``entropy``) its sampling stage does not
        see: field → why; a sampling-stage controller that reads one (``sampling_reads``) is refused.
    stateless: None if the host steps controller state once per optimizer step (and keeps it across
        checkpoints); else why it cannot, and a controller whose state changes (``stateful``) is refused.
    reference_reset: None if the host can copy the policy into its reference model when a controller
        asks (``resets_reference``); else why it cannot, and such a controller is refused.
    own_advantages: None if the host hands the pipeline zero advantages, so that a pipeline with no
        controller making them from rewards (``Pipeline.sources_signal``) would train on nothing and is
        refused; else where the host's own advantages come from (verl's estimator before the loss).
    """

    name: str
    provides: frozenset[str]
    how: Mapping[str, str] = field(default_factory=dict)
    cannot: Mapping[str, str] = field(default_factory=dict)
    group_size: int | None = None
    group_option: str = "group_size"
    loss_groups: str | None = None
    sampling_lacks: Mapping[str, str] = field(default_factory=dict)
    stateless: str | None = None
    reference_reset: str | None = None
    own_advantages: str | None = None

    def __post_init__(self):
        unknown = sorted((set(self.provides) | set(self.how) | set(self.cannot)) - set(FIELDS))
        if unknown:
            raise ValueError(f"Host.provides: got {unknown}; allowed: fields in {', '.join(FIELDS)}")


def problem(c: Controller, host: Host) -> str | None:
    """The first mismatch between one controller and a host, as one line, or None."""
    for f in sorted(c.needs()):
        if f in ALWAYS or f in host.provides:
            continue
        what = FIELDS.get(f, f)
        if f in host.how:
            return f"controllers: {c.name!r} needs {f} ({what}); {host.name} provides it with {host.how[f]}"
        why = host.cannot.get(f, "it has no source for it")
        return (
            f"controllers: {c.name!r} needs {f} ({what}), which {host.name} cannot provide ({why}); "
            f"allowed: controllers whose needs {host.name} meets"
        )
    lacking = sorted(c.sampling_reads() & set(host.sampling_lacks)) if c.stage() == "sampling" else []
    if lacking:
        f = lacking[0]
        return (
            f"controllers: {c.name!r} reads {f} when it shapes rewards or advantages, which {host.name} "
            f"does not give its sampling stage ({host.sampling_lacks[f]}); allowed: controllers whose "
            f"needs {host.name} meets"
        )
    if c.stateful() and host.stateless is not None:
        return (
            f"controllers: {c.name!r} keeps state from step to step, which {host.name} cannot carry "
            f"({host.stateless}); allowed: stateless controllers here"
        )
    if c.resets_reference() and host.reference_reset is not None:
        return (
            f"controllers: {c.name!r} asks for the reference model to be reset to the policy, which "
            f"{host.name} cannot do ({host.reference_reset}); allowed: {c.name} without a reset rule here"
        )
    if c.whole_groups() and c.stage() == "loss" and host.loss_groups is not None:
        return (
            f"controllers: {c.name!r} compares the responses of one prompt inside the loss, but {host.name} "
            f"does not give a loss call whole groups ({host.loss_groups}); allowed: sampling-stage group "
            "controllers here"
        )
    if c.whole_groups() and host.group_size is not None and host.group_size < 2:
        return (
            f"{host.group_option}: got {host.group_size}; allowed: an integer >= 2 ({c.name!r} compares the "
            "responses of one prompt)"
        )
    return None


def signal_sources() -> list[str]:
    """The registered controllers that make a learning signal from rewards (for messages)."""
    return [n for n in names() if get(n).sources_signal()]


def check(pipeline: Pipeline, host: Host) -> None:
    """Raise ValueError (one line) at the first controller of ``pipeline`` that ``host`` cannot feed, or
    when the host starts from zero advantages and no controller makes them."""
    for c in pipeline.controllers:
        msg = problem(c, host)
        if msg is not None:
            raise ValueError(msg)
    if host.own_advantages is None and not pipeline.sources_signal():
        got = [c.name for c in pipeline.controllers]
        raise ValueError(
            f"controllers: got {got}, none of which makes advantages from rewards, so {host.name} would "
            f"train on zero advantages; allowed: a pipeline with one of {', '.join(signal_sources())}"
        )
