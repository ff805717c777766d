"""Shared plumbing of the figure scripts: the result type, tidy-table helpers, simulator runs, saving.

A figure module ``figures/figNN_slug.py`` has a docstring (the caption, naming the theorem or claim it
checks), ``TITLE``, ``COLUMNS`` (the CSV's columns), ``compute(quick=False, seed=0) -> Result`` and
``plot(result) -> matplotlib Figure``. ``plot`` reads only the result's rows and metadata, so a figure can
be redrawn from its CSV and JSON without recomputing anything.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from entrolab.common.verdict import (  # noqa: F401  (re-exported: the figures judge with them)
    APPROX,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    INERT_FRAC,
    PASS_MARGIN,
    SURROGATE,
    TRACK_FRAC,
    UNTESTABLE,
    VERDICTS,
    combine,
    combine_verdicts,
    jsonable,
    judge,
    se,
    sweep,
    sweep_verdict,
    untestable,
)


def judged(parts) -> dict:
    """The ``tests`` entry of a figure's metadata: each comparison's direction, bar, test, α, n, interval."""
    return [p.as_dict() for p in parts]


def texts(parts) -> str:
    return "; ".join(p.text() for p in parts)


@dataclass
class Result:
    """What ``compute`` returns: tidy rows (one observation each: the CSV) and metadata (the JSON).

    ``meta`` holds at least ``claim`` (what is checked, with its source), ``verdict`` (one of
    ``VERDICTS``) and ``finding`` (one sentence with the numbers), plus the settings and the numbers a
    test or a reader needs.
    """

    rows: list[dict]
    meta: dict = field(default_factory=dict)

    def col(self, key: str, **where) -> np.ndarray:
        """Column ``key`` of the rows matching every ``where`` item, as a float array (in row order)."""
        return np.asarray([r[key] for r in self.select(**where)], dtype=float)

    def select(self, **where) -> list[dict]:
        return [r for r in self.rows if all(r.get(k) == v for k, v in where.items())]

    def values(self, key: str, **where) -> list:
        """Distinct values of ``key`` in row order."""
        seen: list = []
        for r in self.select(**where):
            if r[key] not in seen:
                seen.append(r[key])
        return seen


def check_result(res: Result, columns: tuple[str, ...], name: str) -> None:
    """Raise if a result breaks the contract (missing columns or meta keys, unknown verdict)."""
    for k in ("claim", "verdict", "finding"):
        if k not in res.meta:
            raise ValueError(f"{name}: meta lacks {k!r}")
    if res.meta["verdict"] not in VERDICTS:
        raise ValueError(f"{name}: verdict {res.meta['verdict']!r}; allowed: {', '.join(VERDICTS)}")
    if not res.rows:
        raise ValueError(f"{name}: no rows")
    for i, r in enumerate(res.rows):
        if set(r) != set(columns):
            raise ValueError(f"{name}: row {i} has columns {sorted(r)}; expected {sorted(columns)}")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save(res: Result, fig, stem: Path, columns: tuple[str, ...]) -> list[Path]:
    """Write ``stem``.png, .csv (tidy, ``columns`` in order) and .json (metadata), each atomically."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, csv_path, js = (stem.with_suffix(s) for s in (".png", ".csv", ".json"))
    _atomic(png, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
    plt.close(fig)

    def write_csv(p):
        with p.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(columns))
            w.writeheader()
            for r in res.rows:
                w.writerow({k: jsonable(r[k]) for k in columns})

    _atomic(csv_path, write_csv)
    _atomic(js, lambda p: p.write_text(json.dumps(jsonable(res.meta), indent=2, ensure_ascii=False) + "\n"))
    return [png, csv_path, js]


# -- simulator helpers ------------------------------------------------------------------------------------


def traj(cfg, keys=("entropy", "success"), batch_keys=(), warm: bool = False, probes=None) -> dict:
    """``sim.verify.trajectory``: {key: (steps, runs)} of one simulator config, in memory."""
    from sim.verify import trajectory

    return trajectory(cfg, keys=keys, batch_keys=batch_keys, warm=warm, probes=probes)


def curve_rows(series: str, t: dict, keys: tuple[str, ...], every: int = 1, **extra) -> list[dict]:
    """Rows {series, step, <key>_mean, <key>_se, **extra} from a ``traj`` result, every ``every`` steps."""
    n = next(iter(t[k] for k in keys)).shape[0]
    rows = []
    for k in sorted(set(range(0, n, every)) | {n - 1}):
        row = {"series": series, "step": k, **extra}
        for key in keys:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                row[f"{key}_mean"] = float(np.nanmean(t[key][k]))
            row[f"{key}_se"] = se(t[key][k][np.isfinite(t[key][k])])
        rows.append(row)
    return rows


def seeds(seed: int, n: int) -> list[int]:
    """``n`` seeds drawn from ``seed`` (a figure's own generator)."""
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(2**31 - 1, size=n)]


def band(ax, x, mean, err, label=None, **kw):
    """A line with a ±err band."""
    (line,) = ax.plot(x, mean, label=label, **kw)
    ax.fill_between(
        x, np.asarray(mean) - err, np.asarray(mean) + err, color=line.get_color(), alpha=0.2, lw=0
    )
    return line


def figure(ncols: int = 2, nrows: int = 1, width: float = 5.0, height: float = 3.8):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.ravel()


def title(fig, num: int, text: str) -> None:
    fig.suptitle(f"Figure {num}: {text}", fontsize=11)
    fig.tight_layout()


# -- verdict tables (figures 17 and 18): one look for every verdict, a legend, the claims in words ----------

VERDICT_STYLE = {
    HOLDS: {"facecolor": "#4caf50", "hatch": None},
    APPROX: {"facecolor": "#ffb300", "hatch": None},
    SURROGATE: {"facecolor": "#8e24aa", "hatch": None},
    FAILS: {"facecolor": "#e53935", "hatch": None},
    INCONCLUSIVE: {"facecolor": "#cfd8dc", "hatch": "///"},
    UNTESTABLE: {"facecolor": "#ffffff", "hatch": "xx"},
    None: {"facecolor": "#eeeeee", "hatch": None},
}
"""how a verdict is drawn: findings in solid colours; inconclusive hatched grey-blue (not a finding either
way); untestable here cross-hatched white; not run light grey"""
LEGEND_WORDS = {
    HOLDS: "holds: the interval clears the claim's bar",
    APPROX: "approximate: an empirical law fits within its tolerance",
    SURROGATE: "holds only for the surrogate",
    FAILS: "fails: the interval excludes the claimed effect",
    INCONCLUSIVE: "inconclusive: neither (too few seeds, or too noisy)",
    UNTESTABLE: "untestable here: the setup cannot tell the arms apart",
    None: "— not run in this regime (the CSV says why)",
}
CLAIM_WORDS = {
    "M5a": "NSR keeps entropy near its start, PSR collapses it; NSR keeps pass@k (Zhu et al. 2025)",
    "M5b": "NSR's pass@k beats PSR's at large k (Zhu et al. 2025)",
    "M6a": "clip-higher (ε_high 0.28) keeps entropy higher (DAPO)",
    "M6b": "Clip-Cov keeps entropy above GRPO's (Cui et al. 2025)",
    "M6c": "KL-Cov raises entropy, more with larger β (Cui et al. 2025)",
    "M7": "entropy bonus: small coef inert, large coef grows entropy (Cui et al. 2025)",
    "M8a": "PI control holds a target off-policy, P-only offsets (EntroPIC)",
    "M10": "more off-policy epochs collapse entropy faster (Cui et al. 2025)",
    "M11a": "R = −a·e^H + b fits a run (Cui et al. 2025)",
    "M11b": "a fit on the first 15% predicts the rest (Cui et al. 2025)",
    "M11c": "the ceiling b − a does not depend on the algorithm (Cui et al. 2025)",
    "M22": "QAE: entropy rises with the quantile K (Wu et al. 2025)",
    "LM1": "most of the entropy drop and gain in the first 1/12 (Cui et al. 2025: 73%, 76%)",
    "LM2": "the batch covariance predicts each step's ΔH (Cui et al. 2025)",
    "LM3": "top-20% entropy tokens match all tokens (Wang et al. 2025)",
    "LM4": "token covariance heavy-tailed: top 2% / top 50% ≥ 5× (paper: 9.1×)",
    "LM5": "fork bonus: V-shaped entropy ending above its start (seed 000)",
}
"""each claim of figures 17 and 18 in words, with its paper"""


def verdict_cell(ax, x: float, y: float, w: float, h: float, verdict: str | None, text: str = "", **text_kw):
    """One table cell drawn in its verdict's style, with ``text`` centred on it."""
    from matplotlib.patches import Rectangle

    style = VERDICT_STYLE.get(verdict, VERDICT_STYLE[None])
    ax.add_patch(Rectangle((x, y), w, h, facecolor=style["facecolor"], hatch=style["hatch"], edgecolor="white",
                           lw=0.8))  # fmt: skip
    if style["hatch"]:  # the hatch is drawn in the edge colour: a thin grey frame keeps it visible
        ax.add_patch(Rectangle((x, y), w, h, fill=False, hatch=style["hatch"], edgecolor="#90a4ae", lw=0.0))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", **{"fontsize": 6.5, **text_kw})


def verdict_legend(fig, verdicts, loc: str = "lower center", ncol: int = 3) -> None:
    """A legend of the verdicts in ``verdicts`` (the ones the table shows), in the table's styles."""
    from matplotlib.patches import Patch

    shown = [v for v in (*VERDICTS, None) if v in set(verdicts)]
    handles = [
        Patch(facecolor=VERDICT_STYLE[v]["facecolor"], hatch=VERDICT_STYLE[v]["hatch"], edgecolor="#90a4ae",
              label=LEGEND_WORDS[v])
        for v in shown
    ]  # fmt: skip
    fig.legend(handles=handles, loc=loc, ncol=ncol, fontsize=7, frameon=False)


def deciding_test(tests: list[dict], verdict: str) -> dict | None:
    """The comparison (``Judged.as_dict``, stress ones left out) that decides a row's ``verdict``: the first
    part with that verdict (a failing part for "fails", an undecided one for "inconclusive"), else the first
    part; None if the row has none."""
    own = [t for t in tests if not t.get("stress")]
    return next((t for t in own if t["verdict"] == verdict), own[0] if own else None)


def interval_text(test: dict | None, worst: float, spread: float, digits: int = 2) -> str:
    """A cell's number: a comparison's estimate with its unit and 90% interval, or worst ± spread."""
    if test and test.get("estimate") is not None and np.isfinite(float(test["estimate"])):
        u = f" {test['unit']}" if test.get("unit") else ""
        lo, hi = float(test["lo"]), float(test["hi"])
        ci = f" [{lo:+.{digits}g}, {hi:+.{digits}g}]" if np.isfinite(lo) and np.isfinite(hi) else ""
        return f"{float(test['estimate']):+.{digits}g}{u}{ci}"
    if np.isfinite(worst):
        return f"{worst:+.{digits}g}" + (f" ±{spread:.1g}" if np.isfinite(spread) else "")
    return ""
