"""The verdict machinery shared by every check table (``python -m theory verify``, ``python -m sim verify``
and the claims matrix): the verdict words, the ``Row`` a check returns, ``run_all``, the table and JSON.

Verdicts:
  holds                           the claim is true in every instance, within the stated tolerance;
  holds only for the surrogate    true of the quantity the paper analyses, false of the actual update;
  approximate                     an empirical law: fits, with the error shown, but is no identity;
  fails                           measured false.
A row with ``must_hold`` is an identity of the implementation; if it fails, ``verify`` exits non-zero.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

HOLDS = "holds"
SURROGATE = "holds only for the surrogate"
APPROX = "approximate"
FAILS = "fails"


@dataclass
class Row:
    id: str
    claim: str
    source: str
    setting: str
    n: int
    measured: str
    worst: float
    tolerance: float
    verdict: str
    must_hold: bool = True
    details: dict = field(default_factory=dict)
    spread: float = math.nan
    """the standard error of ``worst`` across seeds (a paired difference's where it is one); nan where
    ``worst`` is no mean over seeds (an identity's worst case, a fit's median error)"""

    @property
    def ok(self) -> bool:
        return (not self.must_hold) or self.verdict != FAILS


# -- paired comparisons over seeds, shared by every table that compares arms run on the same seeds -------


def se(x: np.ndarray) -> float:
    """Standard error of the mean over the first axis (inf with fewer than two values)."""
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.inf


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the per-seed difference a − b (arms run on the same seeds)."""
    d = np.asarray(a) - np.asarray(b)
    return float(d.mean()), se(d)


def monotone(ends: list[np.ndarray]) -> bool:
    """Final values per seed of arms in sweep order (same seeds, so paired): non-decreasing within noise
    (each step's mean paired difference ≥ −2 se) and the last above the first by > 3 se."""
    import itertools

    steps_ok = all(float((b - a).mean()) >= -2 * se(b - a) for a, b in itertools.pairwise(ends))
    d = ends[-1] - ends[0]
    return steps_ok and float(d.mean()) > 3 * se(d)


@dataclass(frozen=True)
class Check:
    """A registered check: ``fn(rng[, context]) -> Row | list[Row]``, its row id and its flags."""

    id: str
    fn: Callable
    flags: dict = field(default_factory=dict)


class Registry:
    """Checks registered where they are defined: ``@registry.register("L1")`` above ``def check_x(rng)``.
    Flags (e.g. ``shared=True``) are kept for the runner. The registration order is the table's order,
    and ``run_all`` gives each check the child seed of its position in it."""

    def __init__(self, name: str):
        self.name = name
        self.checks: dict[str, Check] = {}

    def register(self, rid: str, **flags):
        def deco(fn):
            if rid in self.checks:
                raise RuntimeError(f"{self.name}: row id {rid!r} registered twice")
            self.checks[rid] = Check(rid, fn, dict(flags))
            return fn

        return deco

    def table(self) -> dict[str, Callable]:
        """{row id: check function}, in registration order."""
        return {rid: c.fn for rid, c in self.checks.items()}


def check_only(checks, only) -> None:
    """A one-line ValueError if ``only`` names an id that ``checks`` (ids in order) does not have."""
    unknown = sorted(set(only or []) - set(checks))
    if unknown:
        raise ValueError(f"only: unknown row ids {unknown}; allowed: {' '.join(checks)}")


def run_all(
    checks: dict[str, Callable[[np.random.Generator], Row | list[Row]]],
    seed: int = 0,
    only: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Run every check of ``checks`` (or the ids in ``only``); each check gets its own child seed of
    ``seed`` (by its position in ``checks``), so a row's numbers do not depend on which other rows run."""
    check_only(checks, only)
    rows = []
    seeds = dict(zip(checks, np.random.SeedSequence(seed).spawn(len(checks)), strict=True))
    for rid, check in checks.items():
        if only and rid not in only:
            continue
        if progress:
            progress(rid)
        t0 = time.perf_counter()
        out = check(np.random.default_rng(seeds[rid]))
        seconds = round(time.perf_counter() - t0, 3)
        for row in out if isinstance(out, list) else [out]:
            if not row.id.startswith(rid):
                raise RuntimeError(f"check {check.__name__} returned row id {row.id}, registered as {rid}")
            row.details = {**row.details, "seconds": seconds}
            rows.append(row)
    return rows


def format_table(rows: list[Row], width: int = 120) -> str:
    import textwrap

    lines = []
    head = f"{'id':<5} {'verdict':<29} {'n':>5}  claim / measured"
    lines.append(head)
    lines.append("-" * min(width, 140))
    for r in rows:
        flag = "" if r.ok else "  <-- MUST HOLD"
        lines.append(f"{r.id:<5} {r.verdict:<29} {r.n:>5}  {r.claim}{flag}")
        pad = " " * 42
        for chunk in textwrap.wrap(f"[{r.setting}] {r.measured}", width=max(40, width - 42)):
            lines.append(pad + chunk)
        lines.append(pad + f"ref: {r.source}")
    n_fail = sum(not r.ok for r in rows)
    lines.append("-" * min(width, 140))
    counts = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    lines.append(", ".join(f"{k}: {v}" for k, v in counts.items()) + f"; must-hold failures: {n_fail}")
    return "\n".join(lines)


def jsonable(x):
    """``x`` with numpy scalars and arrays made plain and non-finite floats made strict JSON (nan → None,
    ±inf → "inf"/"-inf"); dict keys become strings."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    return x


def row_from_json(d: dict) -> Row:
    """The ``Row`` of ``asdict(row)`` after ``jsonable`` (null → nan, "inf" → inf in the float fields);
    extra keys (e.g. ``ok``) are dropped."""

    def num(x):
        return math.nan if x is None else float(x)

    names = {f for f in Row.__dataclass_fields__}
    kw = {k: v for k, v in d.items() if k in names}
    for k in ("worst", "tolerance", "spread"):
        if k in kw:
            kw[k] = num(kw[k])
    return Row(**kw)


def to_json(rows: list[Row], seed: int) -> str:
    import platform

    payload = {
        "seed": seed,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "rows": [asdict(r) | {"ok": r.ok} for r in rows],
    }
    return json.dumps(jsonable(payload), indent=2, default=float)
