"""pi_control: steer one numeric knob of any controller toward a target entropy with a PI law."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from controllers.base import Controller, Terms, check_choice, check_real, get, names, register, stat

# Knob ranges used when knob_min/knob_max are not given (all of these raise entropy when increased).
KNOB_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("entropy_bonus", "coef"): (0.0, 1e-2),
    ("clip_cov", "frac"): (0.0, 1e-2),
    ("kl_cov", "frac"): (0.0, 2e-2),
    ("kl_cov", "beta"): (0.0, 2.0),
    ("ppo_clip", "eps_hi"): (0.1, 0.5),
}


@register
@dataclass(frozen=True)
class PIControl(Controller):
    """PI control of one knob of an inner controller, toward a target token-mean entropy (nats).

    Normalised position u ∈ [0, 1] of the knob in [knob_min, knob_max]:
        e_k = direction·(target − H_k),   I_{k+1} = I_k + e_k,
        u_{k+1} = clip(u_0 + kp·e_k + ki·I_{k+1}, 0, 1),   knob = knob_min + u·(knob_max − knob_min),
    with anti-windup by clamping: while e_k pushes u past a limit, I advances only up to the value that
    puts u exactly at the limit (never further), so it unwinds as soon as the error changes sign. u_0 is the knob's starting value (``knob_init``, else the inner controller's value).
    direction = +1 for knobs that raise entropy when increased (bonus coef, clip_cov frac, kl_cov beta,
    eps_hi); −1 otherwise. ki = 0 is P-only control, which leaves a steady-state error whenever the
    knob needed at the target differs from u_0 (theory.control.pi_steady_state_error).
    Example: ``get("pi_control", inner="clip_cov", knob="frac", target=0.6)``.
    Ref: EntroPIC (arXiv 2511.15248) for PI control of entropy; Åström & Murray, Feedback Systems §10.4.
    """

    name = "pi_control"
    kind = "wrapper"
    inner: str = "entropy_bonus"
    knob: str = "coef"
    inner_hp: dict = field(default_factory=dict)
    target: float = 0.5
    kp: float = 1.0
    ki: float = 0.1
    direction: int = 1
    knob_min: float | None = None
    knob_max: float | None = None
    knob_init: float | None = None
    _nested: ClassVar[bool] = False

    def __post_init__(self):
        if self.inner not in names() or self.inner == self.name:
            allowed = ", ".join(n for n in names() if n != self.name)
            raise ValueError(f"{self.name}.inner: got {self.inner!r}; allowed: {allowed}")
        if not isinstance(self.inner_hp, dict):
            raise ValueError(f"{self.name}.inner_hp: got {type(self.inner_hp).__name__}; allowed: a dict")
        inner = get(self.inner, **self.inner_hp)
        numeric = [
            f.name
            for f in dataclasses.fields(inner)  # type: ignore[arg-type]
            if isinstance(getattr(inner, f.name), float | int)
            and not isinstance(getattr(inner, f.name), bool)
        ]
        if self.knob not in numeric:
            raise ValueError(
                f"{self.name}.knob: got {self.knob!r}; allowed: a numeric hyperparameter of {self.inner!r}: {', '.join(numeric)}"
            )
        check_real(self.name, "target", self.target, lo=0.0)
        check_real(self.name, "kp", self.kp, lo=0.0)
        check_real(self.name, "ki", self.ki, lo=0.0)
        check_choice(self.name, "direction", self.direction, (1, -1))
        lo, hi = self.bounds()
        if not lo < hi:
            raise ValueError(f"{self.name}.knob_max: got {hi!r}; allowed: a number > knob_min = {lo!r}")
        check_real(self.name, "knob_init", self.start(), lo=lo, hi=hi)
        self.inner_at(self.start())  # the inner controller must accept the whole range's start

    def bounds(self) -> tuple[float, float]:
        default = KNOB_RANGES.get((self.inner, self.knob))
        if default is None and (self.knob_min is None or self.knob_max is None):
            raise ValueError(
                f"{self.name}.knob_min/knob_max: got None; allowed: numbers (no default range for {self.inner}.{self.knob})"
            )
        lo = self.knob_min if self.knob_min is not None else default[0]  # type: ignore[index]
        hi = self.knob_max if self.knob_max is not None else default[1]  # type: ignore[index]
        check_real(self.name, "knob_min", lo)
        check_real(self.name, "knob_max", hi)
        return float(lo), float(hi)

    def start(self) -> float:
        if self.knob_init is not None:
            return float(self.knob_init)
        lo, hi = self.bounds()
        return min(hi, max(lo, float(getattr(get(self.inner, **self.inner_hp), self.knob))))

    def inner_at(self, value: float) -> Controller:
        return get(self.inner, **{**self.inner_hp, self.knob: value})

    def bind(self, others):
        return self  # the inner controller is rebuilt per call; it binds through the pipeline below

    # the contract: the inner controller's needs, always inside the loss (the knob changes every step)
    def needs(self):
        return get(self.inner, **self.inner_hp).needs()

    def whole_groups(self):
        return get(self.inner, **self.inner_hp).whole_groups()

    def acts_on(self):
        return get(self.inner, **self.inner_hp).acts_on()

    def supplies_surrogate(self):
        return get(self.inner, **self.inner_hp).supplies_surrogate()

    def sources_signal(self):
        return get(self.inner, **self.inner_hp).sources_signal()

    def _bound_inner(self, state) -> Controller:
        return self.inner_at(state["value"])

    def init(self):
        return {"value": self.start(), "integral": 0.0, "inner": self.inner_at(self.start()).init()}

    def rewards(self, batch, state):
        return self._bound_inner(state).rewards(batch, state["inner"])

    def advantages(self, batch, state):
        return self._bound_inner(state).advantages(batch, state["inner"])

    def terms(self, batch, state, generator=None):
        t = self._bound_inner(state).terms(batch, state["inner"], generator)
        metrics = {f"{self.inner}/{k}": v for k, v in t.metrics.items()}
        metrics.update({"value": state["value"], "integral": state["integral"]})
        return Terms(
            surrogate=t.surrogate,
            weight=t.weight,
            penalty=t.penalty,
            extra=t.extra,
            mask=t.mask,
            metrics=metrics,
        )

    def step(self, state, stats):
        lo, hi = self.bounds()
        e = self.direction * (self.target - stat(stats, "policy/entropy", self.name))
        u0 = (self.start() - lo) / (hi - lo)
        held = state["integral"]
        integral = held + e
        u = u0 + self.kp * e + self.ki * integral
        if self.ki > 0:  # anti-windup: integrate only up to the point where u saturates
            if u > 1.0 and e > 0:
                integral = max(held, (1.0 - u0 - self.kp * e) / self.ki)
            elif u < 0.0 and e < 0:
                integral = min(held, (0.0 - u0 - self.kp * e) / self.ki)
        u = min(1.0, max(0.0, u0 + self.kp * e + self.ki * integral))
        inner_state = self._bound_inner(state).step(state["inner"], stats)
        return {"value": lo + u * (hi - lo), "integral": integral, "inner": inner_state}
