"""``python -m figures.runs RUN [RUN ...] --out-dir DIR``: pictures of runs, one or several overlaid.

A RUN is the directory of a trainer run (``python -m llm.train``: one row per rollout in ``metrics.jsonl``)
or of a simulator run (``python -m sim run``: one row per (step, run) for R independent runs, drawn as
their mean with a 10-90% band across runs). A run still in progress can be plotted: a torn last line (a
write cut off mid-line) is left out, and said so.

Each panel is one PNG with every run on the same axes, each run in the same colour in every panel:

- ``entropy``: token entropy in nats. Trainer: the training batch's mean with the band of its token
  quantiles q10-q90, and the held-out ``eval/entropy`` as dots. Simulator: the policy's exact entropy.
- ``reward``: trainer ``reward/mean``; simulator ``success`` (exact expected reward).
- ``pass_at_k``: held-out pass@1 (solid) and pass@k at the largest k logged (dashed) over training.
- ``dH_scatter``: predicted against realised entropy change per step, with their correlation. Trainer:
  −Cov(log π, π·A) per unit step size (``policy/dH_pred_pg_per_lr``) against ``policy/dH_realized``.
  Simulator: the exact first-order ``dH_predicted`` against ``dH_realized``.
- ``dH_time``: the same two quantities over training (predicted on top, realised below).
- ``quadrants``: the token shares by probability (high: π(y) > e^{−H}) × advantage sign.
- ``law``: the entropy-performance law R = −a·e^H + b fitted on the steps so far, and its predicted
  ceiling b − a as it sharpens (the trainer logs it as ``law/*``; for the simulator it is fitted here
  with ``theory.fit_entropy_law`` on the mean entropy and success).
- ``state``: every controller state the trainer logs (``state/<controller>/<key>``: a PI coefficient, an
  adaptive coefficient, a reference-reset count, ...).

Besides the PNGs, ``DIR/index.md`` lists the runs and the panels, and ``DIR/panels.json`` holds the data
behind every panel (what the tests compare with the metrics files).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

from entrolab.common.cli import deprecated, parser

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import theory
from entrolab.common.runio import cannot_write, read_metrics_file

PANELS = ("entropy", "reward", "pass_at_k", "dH_scatter", "dH_time", "quadrants", "law", "state")
QUADRANTS = ("hip_posadv", "hip_negadv", "lop_posadv", "lop_negadv")
QUADRANT_NAMES = dict(
    zip(QUADRANTS, ("π high, A > 0", "π high, A < 0", "π low, A > 0", "π low, A < 0"), strict=True)
)
COLOURS = plt.get_cmap("tab10").colors


@dataclass
class Run:
    """One run directory: its kind ("trainer" or "sim"), a label, its metrics rows, and a note when the
    last line was torn."""

    path: Path
    label: str
    kind: str
    rows: list[dict]
    note: str = ""


@dataclass
class Series:
    """One line (or scatter) of a panel: ``x``, ``y`` and an optional band ``lo``-``hi``."""

    run: str
    name: str
    x: list[float]
    y: list[float]
    lo: list[float] | None = None
    hi: list[float] | None = None
    style: str = "line"  # line | dashed | dots | scatter
    extra: dict = field(default_factory=dict)


def load_run(path: str | Path, label: str | None = None) -> Run:
    p = Path(path)
    metrics = p / "metrics.jsonl"
    if not metrics.is_file():
        raise ValueError(f"RUN: got {str(path)!r}, which has no metrics.jsonl; allowed: a directory written by "
                         "python -m llm.train or python -m sim run")  # fmt: skip
    rows, note = read_metrics_file(metrics)
    if not rows:
        raise ValueError(f"RUN: got {str(path)!r}, whose metrics.jsonl has no complete row yet; allowed: a run "
                         "that has logged at least one step")  # fmt: skip
    kind = "sim" if any("run" in r and "success" in r for r in rows[:50]) else "trainer"
    return Run(p, label or p.name, kind, rows, note)


# -- the data behind the panels ------------------------------------------------------------------------------


def _nan(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _col(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows that carry ``key``."""
    got = [(float(r["step"]), _nan(r[key])) for r in rows if key in r]
    return [s for s, _ in got], [v for _, v in got]


def _sim_agg(rows: list[dict], key: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """(steps, mean over runs, 10th, 90th percentile over runs) of ``key``."""
    by: dict[float, list[float]] = {}
    for r in rows:
        if key in r:
            by.setdefault(float(r["step"]), []).append(_nan(r[key]))
    steps = sorted(by)
    vals = [np.asarray(by[s], float) for s in steps]
    return (
        steps,
        [float(np.nanmean(v)) for v in vals],
        [float(np.nanpercentile(v, 10)) for v in vals],
        [float(np.nanpercentile(v, 90)) for v in vals],
    )


def _largest_k(rows: list[dict], prefix: str) -> int | None:
    ks = {
        int(k[len(prefix) :]) for r in rows for k in r if k.startswith(prefix) and k[len(prefix) :].isdigit()
    }
    return max(ks) if ks else None


def _corr(x: list[float], y: list[float]) -> float:
    a, b = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return math.nan
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def law_path(h: list[float], r: list[float], min_points: int = 3) -> list[tuple[float, float, float]]:
    """(a, b, b − a) of R = −a·e^H + b fitted on the first t points, for t = min_points … n."""
    out = []
    for t in range(min_points, len(h) + 1):
        a, b = theory.fit_entropy_law(np.asarray(h[:t]), np.asarray(r[:t]))
        out.append((float(a), float(b), float(b - a)))
    return out


def panel_data(runs: list[Run]) -> dict[str, list[Series]]:
    """Every panel's series, from the metrics rows only."""
    out: dict[str, list[Series]] = {p: [] for p in PANELS}
    for run in runs:
        rows, lab = run.rows, run.label
        if run.kind == "sim":
            s, m, lo, hi = _sim_agg(rows, "entropy")
            out["entropy"].append(Series(lab, "entropy (exact)", s, m, lo, hi))
            s, m, lo, hi = _sim_agg(rows, "success")
            out["reward"].append(Series(lab, "success (exact)", s, m, lo, hi))
            k = _largest_k(rows, "pass@")
            for key, style in (("pass@1", "line"), (f"pass@{k}", "dashed")):
                if k is not None:
                    s, m, _, _ = _sim_agg(rows, key)
                    out["pass_at_k"].append(Series(lab, key, s, m, style=style))
            pred, real = "dH_predicted", "dH_realized"
            for key in QUADRANTS:
                s, m, _, _ = _sim_agg(rows, f"policy/frac_{key}")
                if s:
                    out["quadrants"].append(Series(lab, key, s, m))
            s, h, _, _ = _sim_agg(rows, "entropy")
            _, r, _, _ = _sim_agg(rows, "success")
            fits = law_path(h, r)
            if fits:
                out["law"].append(Series(lab, "ceiling b − a", s[2:], [f[2] for f in fits]))
        else:
            s, h = _col(rows, "policy/entropy")
            _, lo = _col(rows, "policy/entropy_q10")
            _, hi = _col(rows, "policy/entropy_q90")
            band = len(lo) == len(s) == len(hi)
            out["entropy"].append(
                Series(lab, "training batch", s, h, lo if band else None, hi if band else None)
            )
            s, v = _col(rows, "eval/entropy")
            if s:
                out["entropy"].append(Series(lab, "held-out", s, v, style="dots"))
            s, v = _col(rows, "reward/mean")
            out["reward"].append(Series(lab, "reward/mean", s, v))
            k = _largest_k(rows, "eval/pass@")
            if k is not None:
                for key, style in (("eval/pass@1", "line"), (f"eval/pass@{k}", "dashed")):
                    s, v = _col(rows, key)
                    out["pass_at_k"].append(Series(lab, key.removeprefix("eval/"), s, v, style=style))
            pred, real = "policy/dH_pred_pg_per_lr", "policy/dH_realized"
            for key in QUADRANTS:
                s, v = _col(rows, f"policy/frac_{key}")
                if s:
                    out["quadrants"].append(Series(lab, key, s, v))
            for key in ("law/ceiling", "law/a", "law/b"):
                s, v = _col(rows, key)
                if s:
                    name = "ceiling b − a" if key == "law/ceiling" else key.removeprefix("law/")
                    out["law"].append(
                        Series(lab, name, s, v, style="line" if key == "law/ceiling" else "dashed")
                    )
            for key in sorted({k for r in rows for k in r if k.startswith("state/")}):
                s, v = _col(rows, key)
                out["state"].append(Series(lab, key.removeprefix("state/"), s, v))
        paired = [r for r in rows if pred in r and real in r]
        if paired:
            x = [_nan(r[pred]) for r in paired]
            y = [_nan(r[real]) for r in paired]
            st = [float(r["step"]) for r in paired]
            out["dH_scatter"].append(Series(lab, "predicted vs realised", x, y, style="scatter",
                                            extra={"corr": _corr(x, y), "x_key": pred, "y_key": real}))  # fmt: skip
            out["dH_time"].append(Series(lab, "predicted", st, x, extra={"key": pred}))
            out["dH_time"].append(Series(lab, "realised", st, y, extra={"key": real}))
    return out


# -- drawing -------------------------------------------------------------------------------------------------

TITLES = {
    "entropy": ("token entropy (nats)", "step"),
    "reward": ("reward", "step"),
    "pass_at_k": ("held-out pass@k (solid k = 1, dashed the largest k)", "step"),
    "dH_scatter": (
        "realised ΔH (nats)",
        "predicted ΔH (trainer: −Cov(log π, π·A) per unit step; simulator: first order)",
    ),
    "dH_time": ("ΔH", "step"),
    "quadrants": ("token share", "step"),
    "law": ("entropy law fit so far", "step"),
    "state": ("controller state", "step"),
}
STYLES = {"line": "-", "dashed": "--", "dots": "none"}


def _draw(panel: str, series: list[Series], colour: dict[str, tuple]):
    if panel == "dH_time":
        fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
        axes = [ax]
    quad_marks = dict(zip(QUADRANTS, ("-", "--", "-.", ":"), strict=True))
    for s in series:
        c = colour[s.run]
        ax = axes[1] if panel == "dH_time" and s.name == "realised" else axes[0]
        if s.style == "scatter":
            ax.scatter(s.x, s.y, s=10, color=c, alpha=0.6, label=f"{s.run} (corr {s.extra['corr']:+.2f})")
            continue
        ls = quad_marks[s.name] if panel == "quadrants" else STYLES[s.style]
        marker = "o" if s.style == "dots" else None
        name = QUADRANT_NAMES.get(s.name, s.name) if panel == "quadrants" else s.name
        ax.plot(s.x, s.y, color=c, ls=ls, marker=marker, ms=4, lw=1.4, label=f"{s.run}: {name}")
        if s.lo is not None and s.hi is not None:
            ax.fill_between(s.x, s.lo, s.hi, color=c, alpha=0.15, lw=0)
    ylab, xlab = TITLES[panel]
    if panel == "dH_time":
        axes[0].set_ylabel("predicted")
        axes[1].set_ylabel("realised")
        for a in axes:
            a.axhline(0, color="grey", lw=0.6)
    else:
        axes[0].set_ylabel(ylab)
    if panel == "dH_scatter":
        axes[0].axhline(0, color="grey", lw=0.6)
        axes[0].axvline(0, color="grey", lw=0.6)
    axes[-1].set_xlabel(xlab)
    for a in axes:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7, loc="best")
    fig.suptitle(panel.replace("_", " "))
    fig.tight_layout()
    return fig


def plot_runs(runs: list[Run], out: str | Path) -> dict[str, list[Series]]:
    """Write a PNG per panel that has data, ``index.md`` and ``panels.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = panel_data(runs)
    colour = {r.label: COLOURS[i % len(COLOURS)] for i, r in enumerate(runs)}
    drawn = []
    for panel, series in data.items():
        if not series:
            continue
        fig = _draw(panel, series, colour)
        tmp = out / f".{panel}.png.tmp"
        fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        os.replace(tmp, out / f"{panel}.png")
        drawn.append(panel)
    payload = {p: [s.__dict__ for s in ss] for p, ss in data.items()}
    tmp = out / ".panels.json.tmp"
    tmp.write_text(json.dumps(payload, default=float))
    os.replace(tmp, out / "panels.json")
    lines = [
        "# Runs",
        "",
        "| run | kind | directory | rows | last step | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        last = max((int(x["step"]) for x in r.rows), default=-1)
        lines.append(f"| {r.label} | {r.kind} | `{r.path}` | {len(r.rows)} | {last} | {r.note or ''} |")
    lines += [""]
    for panel in PANELS:
        if panel in drawn:
            lines += [f"## {panel}", "", f"![{panel}]({panel}.png)", ""]
        else:
            lines += [f"## {panel}", "", "no run logs the metrics of this panel", ""]
    (out / "index.md").write_text("\n".join(lines))
    return data


def default_labels(paths: list[str]) -> list[str]:
    """The directory names, or parent/name where two names are alike."""
    names = [Path(p).resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return ["/".join(Path(p).resolve().parts[-2:]) for p in paths]


def main(argv: list[str] | None = None) -> int:
    p = parser(
        "python -m figures.runs",
        description="Turn run directories (python -m llm.train or python -m sim run) into PNGs and a markdown "
        "index; several runs are overlaid on the same axes, one colour each.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (each with a metrics.jsonl)")
    p.add_argument("--out-dir", metavar="DIR", help="where the PNGs, index.md and panels.json go (required)")
    p.add_argument("--out", help=argparse.SUPPRESS)  # deprecated spelling of --out-dir
    p.add_argument("--quiet", action="store_true", help="no notes or summary line (errors only)")
    p.add_argument(
        "--label", nargs="+", metavar="NAME", help="a label per run (default: the directory names)"
    )
    args = p.parse_args(argv)
    if args.out is not None:
        deprecated("--out DIR", "--out-dir DIR")
        args.out_dir = args.out
    if args.out_dir is None:
        print("error: --out-dir: missing; allowed: the folder the pictures go to", file=sys.stderr)
        return 2
    if args.label and len(args.label) != len(args.runs):
        print(f"error: --label: got {len(args.label)} labels for {len(args.runs)} runs; allowed: one per RUN",
              file=sys.stderr)  # fmt: skip
        return 2
    labels = args.label or default_labels(args.runs)
    try:
        runs = [load_run(r, lab) for r, lab in zip(args.runs, labels, strict=True)]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = [r.label for r in runs]
    if len(set(names)) != len(names):
        print(f"error: RUN: two runs are labelled alike ({', '.join(names)}); allowed: --label with distinct names",
              file=sys.stderr)  # fmt: skip
        return 2
    out = Path(args.out_dir)
    why = cannot_write(out)
    if why is not None:
        print(
            f"error: --out-dir: cannot write to {str(out)!r} ({why}); allowed: a writable directory",
            file=sys.stderr,
        )
        return 2
    for r in runs:
        if r.note:
            if not args.quiet:
                print(f"note: {r.note}", file=sys.stderr)
    data = plot_runs(runs, out)
    drawn = [k for k, v in data.items() if v]
    if not args.quiet:
        print(f"wrote {len(drawn)} panels ({', '.join(drawn)}) for {len(runs)} run(s) to {out}/index.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
