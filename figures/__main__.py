"""``python -m figures [N ...] [--quick] [--out DIR] [--docs DIR] [--seed S]``: regenerate the figures.

Writes ``figNN_slug.{png,csv,json}`` per figure and ``index.md`` (a gallery: each caption, verdict and
finding) into ``--out``; ``--docs`` also copies them there (the committed gallery under docs/figures/).
A figure whose files are already in ``--out`` from the same settings and code (``code_hash``) is skipped
unless ``--force``, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import sys
import time
from pathlib import Path

import figures
from entrolab.common.cli import deprecated, parser
from entrolab.common.runio import atomic_write_json, cannot_write, code_fingerprint
from entrolab.common.verdict import INCONCLUSIVE, QUICK_MARK
from figures import _common


def quick_run(meta: dict) -> bool:
    return bool(meta.get("settings", {}).get("quick"))


def _caption(mod) -> str:
    return inspect.cleandoc(mod.__doc__ or "").strip()


def code_hash(mod) -> str:
    """Fingerprint of the code a figure depends on: its script, figures/_common.py, the theory, sim
    and controllers packages, and the committed data files it reads (``INPUTS``, where a module has
    them). A figure already in --out is reused only if this matches."""
    root = Path(figures.__file__).parent.parent
    data = [Path(p) for p in getattr(mod, "INPUTS", ()) if Path(p).is_file()]
    return code_fingerprint(Path(mod.__file__), root / "figures" / "_common.py", *data)


def make_one(number: int, out: Path, quick: bool, seed: int, force: bool = False) -> dict:
    """Compute, plot and save one figure; returns its JSON metadata (read back if already done with the
    same settings and code)."""
    mod = figures.load(number)
    stem = out / mod.__name__.split(".")[-1]
    js = stem.with_suffix(".json")
    settings = {"quick": quick, "seed": seed}
    code = code_hash(mod)
    if not force and js.exists() and all(stem.with_suffix(s).exists() for s in (".png", ".csv")):
        meta = json.loads(js.read_text())
        if meta.get("settings") == settings and meta.get("code") == code:
            return meta
    t0 = time.time()
    res = mod.compute(quick=quick, seed=seed)
    _common.check_result(res, mod.COLUMNS, mod.__name__)
    if quick:  # a quick budget never reads as a finding
        res.meta.update(
            budget=QUICK_MARK,
            verdict_at_quick_budget=res.meta["verdict"],
            verdict=INCONCLUSIVE,
            finding=f"{QUICK_MARK.upper()}: {res.meta['finding']}",
        )
    else:
        res.meta["budget"] = "full"
    res.meta.update(
        {
            "figure": number,
            "title": mod.TITLE,
            "settings": settings,
            "code": code,
        }
    )
    record_seconds(out, number, time.time() - t0)
    fig = mod.plot(res)
    if quick:
        fig.text(0.5, 0.5, QUICK_MARK.upper(), ha="center", va="center", fontsize=22, color="#e53935",
                 alpha=0.35, rotation=20, transform=fig.transFigure, zorder=100)  # fmt: skip
    _common.save(res, fig, stem, mod.COLUMNS)
    return json.loads(js.read_text())


SECONDS_FILE = "seconds.json"
"""Each figure's last wall time, in --out only: committed outputs hold no wall times, so regenerating the
figures with the same code leaves a clean tree (``--docs`` never receives this file)."""


def record_seconds(out: Path, number: int, seconds: float) -> None:
    path = out / SECONDS_FILE
    try:
        times = json.loads(path.read_text())
    except (OSError, ValueError):
        times = {}
    times[str(number)] = round(seconds, 1)
    atomic_write_json(dict(sorted(times.items(), key=lambda kv: int(kv[0]))), path)


def write_index(out: Path, metas: dict[int, dict]) -> Path:
    lines = [
        "# entrolab figures",
        "",
        "Regenerate with `python -m figures` (this gallery: `make figures`). Each figure is a check of a theorem",
        "or of a paper's claim; the verdict says whether it holds in our measurement, with the numbers.",
        "",
        "| # | figure | verdict |",
        "| --- | --- | --- |",
    ]
    for n, m in metas.items():
        stale = " (earlier code: rerun)" if m.get("code") != code_hash(figures.load(n)) else ""
        lines.append(f"| {n} | [{m['title']}](#figure-{n}) | {m['verdict']}{stale} |")
    lines.append("")
    for n, m in metas.items():
        mod = figures.load(n)
        stem = mod.__name__.split(".")[-1]
        lines += [
            f"## Figure {n}",
            "",
            f"**{m['title']}**",
            "",
            f"![figure {n}]({stem}.png)",
            "",
            _caption(mod)
            + (
                f" **{QUICK_MARK}**: this run used the quick budget, not the one the caption gives (runs and steps: "
                "see its JSON); its verdict is inconclusive whatever the numbers."
                if quick_run(m)
                else ""
            ),
            "",
            f"**Claim.** {m['claim']}",
            "",
            f"**Verdict: {m['verdict']}.** {m['finding']}",
            "",
            f"Data: [{stem}.csv]({stem}.csv), metadata: [{stem}.json]({stem}.json) "
            f"({'quick' if m['settings']['quick'] else 'full'} budget, seed {m['settings']['seed']}).",
            "",
        ]
    path = out / "index.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    available = figures.modules()
    ap = parser("python -m figures", description="Regenerate the theory figures (PNG, CSV, JSON, index.md).")
    ap.add_argument("numbers", nargs="*", type=int, help=f"figures to make (default all: {list(available)})")
    ap.add_argument("--quick", action="store_true", help="small budgets (all figures in under 2 minutes)")
    ap.add_argument(
        "--out-dir", default="figures/out", metavar="DIR", help="output folder (default figures/out)"
    )
    ap.add_argument("--out", help=argparse.SUPPRESS)  # deprecated spelling of --out-dir
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--docs", default=None, help="also copy the outputs to this folder (e.g. docs/figures)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every figure's generator (default 0)")
    ap.add_argument("--force", action="store_true", help="recompute figures already in --out")
    ap.add_argument(
        "--slow",
        action="store_true",
        help="also the slow figures (17, the claims matrix at one and at calibrated step sizes: about 19 minutes on 2 CPUs); naming a figure always makes it",
    )
    args = ap.parse_args(argv)
    if args.out is not None:
        deprecated("--out DIR", "--out-dir DIR")
        args.out_dir = args.out
    bad = [n for n in args.numbers if n not in available]
    if bad:
        ap.error(f"numbers: got {bad}; allowed: {', '.join(map(str, available))}")
    if args.seed < 0:
        print(f"error: --seed: got {args.seed}; allowed: an integer >= 0", file=sys.stderr)
        return 2
    for flag, folder in (("--out-dir", args.out_dir), ("--docs", args.docs)):
        why = None if folder is None else cannot_write(folder)
        if why:  # before any figure is computed
            print(f"error: {flag}: got {folder!r}, which cannot be written ({why}); allowed: a writable folder",
                  file=sys.stderr)  # fmt: skip
            return 2
    numbers = args.numbers or [
        n for n in available if args.slow or not getattr(figures.load(n), "SLOW", False)
    ]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    metas = {}
    if args.quick:
        print(
            f"{QUICK_MARK}: small budgets; every verdict is inconclusive whatever the numbers",
            file=sys.stderr,
        )
    bar = tqdm(numbers, desc="figures", unit="fig", file=sys.stderr, disable=args.quiet)
    for n in bar:
        bar.set_postfix_str(f"figure {n}: {figures.load(n).TITLE[:40]}")
        metas[n] = make_one(n, out, args.quick, args.seed, args.force)
    bar.close()
    # a slow figure this call skipped keeps its committed copy in --docs (the index marks it if its code changed)
    if args.docs:
        for n in available:
            if n not in metas and not (out / f"{available[n]}.json").exists():
                src = Path(args.docs) / available[n]
                if all(src.with_suffix(s).exists() for s in (".png", ".csv", ".json")):
                    for s in (".png", ".csv", ".json"):
                        shutil.copy2(src.with_suffix(s), out / f"{available[n]}{s}")
    # the gallery lists every figure present in --out, not only this call's
    for n in available:
        js = out / f"{available[n]}.json"
        if n not in metas and js.exists():
            metas[n] = json.loads(js.read_text())
    metas = dict(sorted(metas.items()))
    index = write_index(out, metas)
    for n, m in metas.items():
        print(f"figure {n:2d} [{m['verdict']:>11}] {m['title']}")
    print(f"wrote {index}")
    if args.docs:
        docs = Path(args.docs)
        docs.mkdir(parents=True, exist_ok=True)
        for n in metas:
            for s in (".png", ".csv", ".json"):
                shutil.copy2(out / f"{available[n]}{s}", docs / f"{available[n]}{s}")
        shutil.copy2(index, docs / "index.md")
        print(f"copied to {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
