"""The verdict machinery shared by every check table (``python -m theory verify``, ``python -m sim verify``
and the claims matrix): the verdict words, the ``Row`` a check returns, ``run_all``, the table and JSON.

Verdicts:
  holds                           the claim is true in every instance, within the stated tolerance; for a
                                  comparison over seeds (``judge``): the effect is in the claimed direction,
                                  clears the claim's bar, and its interval's far side is past the null;
  holds only for the surrogate    true of the quantity the paper analyses, false of the actual update;
  approximate                     an empirical law: fits, with the error shown, but is no identity;
  fails                           measured false: for a comparison, the interval excludes the claimed effect
                                  (it lies on the wrong side, or below the smallest effect the claim means);
  inconclusive                    a comparison whose interval neither clears nor excludes the claim, or one
                                  with fewer than ``MIN_SEEDS`` seeds: the row says how many seeds would
                                  decide at the observed spread;
  untestable here                 a guard found that the setup cannot tell the arms apart (a constant reward,
                                  neither arm learns, a controller that never acts); the row says why.
A row with ``must_hold`` is an identity of the implementation; if it fails, ``verify`` exits non-zero.
"""

from __future__ import annotations

import itertools
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
INCONCLUSIVE = "inconclusive"
UNTESTABLE = "untestable here"
VERDICTS = (HOLDS, APPROX, SURROGATE, FAILS, INCONCLUSIVE, UNTESTABLE)
"""every verdict word, findings first"""


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
    tests: list = field(default_factory=list)
    """the comparisons the verdict rests on (``Judged.as_dict``: direction, bar, test, α, n, interval,
    seeds needed), empty for an identity or a fit"""
    paper: str = ""
    """the paper's own number for the claim, in words, beside ours ("" where it gives none)"""

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


# -- three-way verdicts on a comparison over seeds ----------------------------------------------------------

QUICK_MARK = "quick: plumbing, not evidence"
"""the mark of a run at a quick budget, on its console output, caption, JSON and picture: its verdict is
inconclusive whatever the numbers"""

ALPHA = 0.05
"""one-sided level of every comparison: the interval is the (1 − 2α) = 90% t interval, each side at α"""
MIN_SEEDS = 5
"""below this many seeds no comparison is decided: its verdict is inconclusive whatever the numbers"""
KINDS = ("greater", "less", "equivalent")
_MAX_SEEDS = 10_000


# the bars of the claims, in the claims' own units, shared by every table that tests them (sim verify, the
# claims matrix, llm.verify)
NEAR_BASE_FRAC = 0.2
"""M5a: NSR's entropy is "near the base model's" when within this share of the base's entropy"""
PASS_MARGIN = 0.02
"""the pass@k margin of the "keeps or matches" claims (M5a, LM3): a drop smaller than this is no loss"""
INERT_FRAC = 0.1
"""M7: a bonus "changes nothing" when the final entropy is within this share of the no-bonus arm's; it
"makes entropy grow" when it exceeds it by more than this share"""
TRACK_FRAC = 0.1
"""M8/M9: a controller "holds" the target when its mean error over the last half is within this share of it"""
LAW_TOL = 0.03
"""M11a/b: the law fits (predicts) when its RMSE (beyond the reward's sampling noise, where the reward is
sampled) is below this, in reward units; the paper's prediction RMSE is 0.009"""
CEILING_MARGIN = 0.05
"""M11c: two algorithms' ceilings b − a are "the same" within this (reward units)"""
ACTIVE_MIN_FRAC = 0.05
"""a controller that acts (detaches a token, splits a group) at fewer than this share of its rollouts cannot
produce the effect a claim attributes to it: the comparison is untestable here"""


PAPER = {
    "M5a": "paper (Qwen2.5-Math-7B, Qwen3-4B on MATH): NSR's entropy stays near the base model's through training while PSR's falls; NSR improves pass@k over the base model at every k up to 256",
    "M5b": "paper: PSR is best at small k, NSR at large k (pass@256 above PSR's)",
    "M6a": "paper (Qwen2.5-32B): with ε_high = 0.28 the entropy stops collapsing and stays higher than at 0.2",
    "M6b": "paper (Qwen2.5-7B, ratio 2e-4): entropy stays well above GRPO's, which collapses; larger ratios keep more (Fig. 12)",
    "M6c": "paper (Qwen2.5-7B, k = 2e-3, β = 1): entropy stays above 10× the GRPO baseline's; larger β keeps more (Fig. 12, β from 0 to 1)",
    "M7": "paper (Qwen2.5-7B): coefficients 1e-4 and 1e-3 leave the collapse almost unchanged; 1e-2 makes entropy explode",
    "M8a": "paper (Qwen3-8B): off-policy, PI control holds the target and P-only does not; avg@N 54.7 (PI) vs 52.2 (P)",
    "M10": "paper: more off-policy updates per rollout speed up the collapse (the recipes' off-policy runs)",
    "M11a": "paper: two coefficients fit over 200 validation points per run (11 models, 4 families)",
    "M11b": "paper: a fit on the first 36 steps predicts the next 200 with RMSE 0.9% (math), 1.2% (code)",
    "M11c": "paper: GRPO, RLOO, PRIME and REINFORCE++ fall on one curve (Fig. 6)",
    "M22": "paper (Qwen3-8B, K from 0.2 to 0.8): K = 0.8 raises entropy, K = 0.2 keeps it low (Fig. 9)",
    "LM1": "paper: 73% of the entropy drop and 76% of the gain in the first 200 of 2400 steps",
    "LM2": "paper (Qwen2.5-7B, ~2000 steps): −ΔH and the covariance track each other step by step (Fig. 8)",
    "LM3": "paper: comparable on Qwen3-8B; better on Qwen3-14B (+4.79 AIME'25) and Qwen3-32B (+11.04 AIME'25)",
    "LM4": "paper (Qwen2.5-7B, step 1): top 2% / top 50% = 1.385 / 0.152 = 9.1×",
    "LM5": "seed 000 (in words, no numbers): the entropy curve dips, then rises above its start",
}
"""each claim's paper in its own words and numbers (the model, the setting, the number it reports), beside
which every table that tests the claim puts ours (``Row.paper``)"""


@dataclass(frozen=True)
class Judged:
    """One comparison over seeds, judged (``judge``). ``estimate``, ``lo``, ``hi``: the mean of the per-seed
    values and its (1 − 2α) t interval; ``bar``: the smallest effect the claim means, on the same scale;
    ``null``: the value of no effect; ``margin``: the equivalence margin (kind "equivalent")."""

    verdict: str
    what: str
    kind: str
    estimate: float
    lo: float
    hi: float
    n: int
    bar: float
    null: float
    margin: float
    alpha: float
    test: str
    unit: str = ""
    seeds_needed: int | None = None
    """for an inconclusive comparison, the number of seeds that would decide it at the observed mean and
    spread (None: none up to 10 000, the mean sits on the bar)"""
    reason: str = ""
    se: float = math.nan
    """the standard error of ``estimate``"""

    @property
    def claim_words(self) -> str:
        u = f" {self.unit}" if self.unit else ""
        if self.kind == "equivalent":
            return f"|effect − {self.null:g}| < {self.margin:.3g}{u}"
        op = ">" if self.kind == "greater" else "<"
        if self.bar == self.null:
            return f"{op} {self.bar:.3g}{u}"
        return f"{op} {self.null:.3g}, by at least the bar {self.bar:.3g}{u}"

    def text(self) -> str:
        """One line: what, the estimate and interval, the claimed direction and bar, the test, n, verdict."""
        if self.verdict == UNTESTABLE:
            return f"{self.what}: untestable here ({self.reason})"
        u = f" {self.unit}" if self.unit else ""
        out = (
            f"{self.what} {self.estimate:+.4g}{u} [{100 * (1 - 2 * self.alpha):.0f}% CI {self.lo:+.4g}, "
            f"{self.hi:+.4g}] (claim {self.claim_words}; {self.test}, α = {self.alpha:g} one-sided, n = {self.n}): "
            f"{self.verdict}"
        )
        if self.verdict == INCONCLUSIVE:
            out += f" ({self.reason})" if self.reason else ""
        return out

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items()} | {"claim": self.claim_words}


def t_interval(x, alpha: float = ALPHA) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n) of the finite values of ``x``: the (1 − 2α) t interval (±inf with < 2 values)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, -math.inf, math.inf, 0
    m = float(x.mean())
    if n < 2:
        return m, -math.inf, math.inf, n
    half = float(stats.t.ppf(1 - alpha, n - 1)) * se(x)
    return m, m - half, m + half, n


def _decide(kind: str, m: float, lo: float, hi: float, bar: float, null: float, margin: float) -> str:
    if kind == "greater":
        return HOLDS if (m >= bar and lo > null) else FAILS if hi < bar else INCONCLUSIVE
    if kind == "less":
        return HOLDS if (m <= bar and hi < null) else FAILS if lo > bar else INCONCLUSIVE
    if lo > null - margin and hi < null + margin:
        return HOLDS
    return FAILS if (lo > null + margin or hi < null - margin) else INCONCLUSIVE


def seeds_to_decide(
    kind: str, m: float, sd: float, bar: float, null: float, margin: float, alpha: float, n_from: int
) -> int | None:
    """The fewest seeds (≥ ``n_from``) at which a comparison with this mean and standard deviation would be
    decided (hold or fail) by ``judge``; None if none up to 10 000."""
    from scipy import stats

    if not (math.isfinite(m) and math.isfinite(sd)):
        return None
    ns = np.arange(max(2, n_from), _MAX_SEEDS + 1)
    half = stats.t.ppf(1 - alpha, ns - 1) * sd / np.sqrt(ns)
    for n, h in zip(ns, half, strict=True):
        if _decide(kind, m, m - h, m + h, bar, null, margin) != INCONCLUSIVE:
            return int(n)
    return None


def judge(
    x,
    *,
    what: str,
    kind: str = "greater",
    bar: float | None = None,
    null: float = 0.0,
    margin: float = 0.0,
    unit: str = "",
    alpha: float = ALPHA,
    min_n: int = MIN_SEEDS,
    test: str = "paired t",
) -> Judged:
    """Judge a claim about the mean of the per-seed values ``x`` (paired differences for a comparison of
    arms run on the same seeds; NaNs are dropped), on the (1 − 2α) t interval [lo, hi] of their mean m:

    kind "greater" (the claim: the effect exceeds ``null``, by at least ``bar`` ≥ null; bar defaults to null):
        holds when m ≥ bar and lo > null; fails when hi < bar (the interval lies below the smallest effect
        the claim means: on the wrong side, or too small by an equivalence test); else inconclusive.
    kind "less": the mirror image (bar ≤ null).
    kind "equivalent" (the claim: no effect, |effect − null| < ``margin``): holds when the interval lies
        inside null ± margin (two one-sided tests); fails when it lies wholly outside; else inconclusive.
    Below ``min_n`` values the verdict is inconclusive whatever the numbers. An inconclusive comparison
    carries ``seeds_needed``: the seeds that would decide it at the observed mean and spread."""
    if kind not in KINDS:
        raise ValueError(f"kind: got {kind!r}; allowed: {', '.join(KINDS)}")
    bar = null if bar is None else float(bar)
    if (kind == "greater" and bar < null) or (kind == "less" and bar > null):
        raise ValueError(f"bar: got {bar!r}; allowed: a value on the claimed side of null = {null!r}")
    if kind == "equivalent" and not margin > 0:
        raise ValueError(f"margin: got {margin!r}; allowed: a number > 0 for kind 'equivalent'")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha: got {alpha!r}; allowed: 0 < alpha < 0.5")
    m, lo, hi, n = t_interval(x, alpha)
    verdict = _decide(kind, m, lo, hi, bar, null, margin) if n else INCONCLUSIVE
    reason, need = "", None
    if n < min_n:
        verdict, reason = INCONCLUSIVE, f"{n} seeds, fewer than {min_n}"
    if verdict == INCONCLUSIVE and n >= 2:
        xs = np.asarray(x, dtype=float)
        sd = float(np.std(xs[np.isfinite(xs)], ddof=1))
        need = seeds_to_decide(kind, m, sd, bar, null, margin, alpha, max(n + 1, min_n))
        more = (
            f"about {need} seeds would decide at this spread"
            if need
            else "no seed count up to 10 000 would decide: the mean sits on the bar"
        )
        reason = f"{reason}; {more}" if reason else more
    xs = np.asarray(x, dtype=float)
    s_e = se(xs[np.isfinite(xs)]) if n else math.inf
    return Judged(verdict, what, kind, m, lo, hi, n, bar, null, margin, alpha, test, unit, need, reason, s_e)


def untestable(what: str, reason: str) -> Judged:
    """A comparison a guard found the setup cannot make (``reason`` says why)."""
    nan = math.nan
    return Judged(
        UNTESTABLE, what, "greater", nan, nan, nan, 0, nan, nan, nan, ALPHA, "none", "", None, reason
    )


def combine(parts: list[Judged]) -> str:
    """The verdict of a claim made of several comparisons, all of which it needs: untestable if a guard
    made any part untestable, fails if any part fails, holds if all hold, else inconclusive."""
    return combine_verdicts([p.verdict for p in parts])


def combine_verdicts(vs: list[str]) -> str:
    """``combine`` on verdict words (e.g. of several sweeps, each judged on its own)."""
    vs = list(vs)
    if UNTESTABLE in vs:
        return UNTESTABLE
    if FAILS in vs:
        return FAILS
    return HOLDS if all(v == HOLDS for v in vs) else INCONCLUSIVE


def law_word(verdict: str) -> str:
    """An empirical law that holds is "approximate" (it fits, with its error shown; it is no identity)."""
    return APPROX if verdict == HOLDS else verdict


def sweep(
    values: list,
    labels: list[str],
    *,
    what: str,
    unit: str = "",
    alpha: float = ALPHA,
    min_n: int = MIN_SEEDS,
) -> list[Judged]:
    """A monotone-increase claim over a sweep (per-seed values of each arm, in sweep order, same seeds):
    the last above the first ("greater", bar 0) and no step significantly down (each step "greater" with
    bar 0 must not fail). Returns [last − first, step 1, step 2, …]; judge with ``sweep_verdict``."""
    a = [np.asarray(v, dtype=float) for v in values]
    out = [
        judge(a[-1] - a[0], what=f"{what} {labels[-1]} − {labels[0]}", unit=unit, alpha=alpha, min_n=min_n)
    ]
    for (x, lx), (y, ly) in itertools.pairwise(zip(a, labels, strict=True)):
        out.append(judge(y - x, what=f"step {lx} → {ly}", unit=unit, alpha=alpha, min_n=min_n))
    return out


def sweep_verdict(parts: list[Judged]) -> str:
    """``sweep``'s verdict: holds when last − first holds and no step fails; fails when last − first fails or
    a step fails (a significant reversal); else inconclusive."""
    total, steps = parts[0], parts[1:]
    if total.verdict == UNTESTABLE:
        return UNTESTABLE
    if total.verdict == FAILS or any(s.verdict == FAILS for s in steps):
        return FAILS
    return HOLDS if total.verdict == HOLDS else INCONCLUSIVE


@dataclass(frozen=True)
class Check:
    """A registered check: ``fn(rng[, context]) -> Row | list[Row]``, its row id and its flags."""

    id: str
    fn: Callable
    flags: dict = field(default_factory=dict)


class Registry:
    """Checks registered where they are defined: ``@registry.register("L1")`` above ``def check_x(rng)``.
    Flags (e.g. ``shared=True``) are kept for the runner. The registration order is the table's order,
    and ``run_all`` gives each check a seed derived from its id (``check_seed``)."""

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


def check_seed(seed: int, rid: str) -> np.random.SeedSequence:
    """The seed of check ``rid`` under root ``seed``: the root and the id's bytes, so adding, removing or
    reordering checks moves no other row's numbers."""
    return np.random.SeedSequence([int(seed), *rid.encode()])


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
    """Run every check of ``checks`` (or the ids in ``only``); each check gets its own seed, derived from
    ``seed`` and its id (``check_seed``), so a row's numbers depend neither on which other rows run nor on
    where its check is registered. A row of a claim in ``PAPER`` gets the paper's number beside ours."""
    check_only(checks, only)
    rows = []
    seeds = {rid: check_seed(seed, rid) for rid in checks}
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
            row.paper = row.paper or PAPER.get(row.id, "")  # the paper's own number beside ours
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


def evidence(row: dict) -> str:
    """A table row's evidence in one markdown cell: each comparison the verdict rests on (estimate, 90%
    interval, verdict, the seeds that would decide an inconclusive one), or an identity's worst case
    against its tolerance."""
    parts = []
    for t in row.get("tests", []):
        if t.get("stress"):
            continue
        if t["verdict"] == UNTESTABLE:
            parts.append(f"{t['what']}: untestable ({t['reason']})")
            continue
        u = f" {t['unit']}" if t.get("unit") else ""
        lo, hi = (t[k] if isinstance(t[k], int | float) else math.nan for k in ("lo", "hi"))
        txt = f"{t['what']} {t['estimate']:+.3g}{u} [{lo:+.3g}, {hi:+.3g}]: {t['verdict']}"
        if t["verdict"] == INCONCLUSIVE and t.get("seeds_needed"):
            txt += f" (≈{t['seeds_needed']} seeds would decide)"
        parts.append(txt)
    if parts:
        return "; ".join(parts).replace("|", "/")
    worst, tol = row.get("worst"), row.get("tolerance")
    if isinstance(worst, int | float) and isinstance(tol, int | float):
        return f"worst {worst:.3g} (tolerance {tol:.3g})"
    return ""


def markdown_table(rows: list[dict]) -> str:
    """A verify table (its JSON rows) as markdown: id, claim, verdict (bold where it is a finding against
    the claim), evidence."""
    lines = ["| id | claim | verdict | evidence (90% interval) |", "| --- | --- | --- | --- |"]
    for r in rows:
        v = f"**{r['verdict']}**" if r["verdict"] == FAILS else r["verdict"]
        lines.append(f"| {r['id']} | {r['claim'].replace('|', '/')} | {v} | {evidence(r)} |")
    return "\n".join(lines)


def replace_between(text: str, name: str, body: str) -> str:
    """``text`` with what lies between ``<!-- name -->`` and ``<!-- /name -->`` replaced by ``body`` (the
    markers stay; ``text`` unchanged if it lacks them)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text or end not in text:
        return text
    a, b = text.index(start) + len(start), text.index(end)
    return text[:a] + "\n" + body + "\n" + text[b:]


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


def _without_wall_time(d: dict) -> dict:
    """A row as committed: its check's wall time (``details["seconds"]``, which ``run_all`` records for the
    console) left out, so the same code and seed write the same file."""
    return d | {"details": {k: v for k, v in d["details"].items() if k != "seconds"}}


def to_json(rows: list[Row], seed: int) -> str:
    import platform

    payload = {
        "seed": seed,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "rows": [_without_wall_time(asdict(r)) | {"ok": r.ok} for r in rows],
    }
    return json.dumps(jsonable(payload), indent=2, default=float)
