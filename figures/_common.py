"""Shared plumbing of the figure scripts: the result type, tidy-table helpers, simulator runs, saving.

A figure module ``figures/figNN_slug.py`` has a docstring (the caption, naming the theorem or claim it
checks), ``TITLE``, ``COLUMNS`` (the CSV's columns), ``compute(quick=False, seed=0) -> Result`` and
``plot(result) -> matplotlib Figure``. ``plot`` reads only the result's rows and metadata, so a figure can
be redrawn from its CSV and JSON without recomputing anything.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common.verdict import APPROX, FAILS, HOLDS, SURROGATE, jsonable

VERDICTS = (HOLDS, APPROX, FAILS, SURROGATE)


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


def se(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


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
