"""``python -m entrolab.readme [PATH ...] [--check]`` (``entrolab readme``): the result tables of README.md
and docs/guide.md (the default paths), generated from the committed data, so that the docs say what the
data say.

Each table sits between markers in the markdown file (``<!-- NAME -->`` … ``<!-- /NAME -->``):
  sim-verify        ``python -m sim verify``'s rows (docs/claims/sim_verify.json)
  claims-matrix     figure 17's calibrated matrix (docs/figures/fig17_claims_matrix.csv)
  llm-claims:TIER   ``python -m llm.verify``'s table of a tier (docs/claims/llm_verify_TIER.json), beside
                    figure 17's tabular verdict and the smaller tiers'
``--check`` changes nothing and exits 1 if a table differs from its data (a test runs it)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from entrolab.common.cli import parser
from entrolab.common.verdict import evidence, markdown_table, replace_between

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "docs" / "guide.md")
"""the markdown files whose generated tables the command keeps current"""
CLAIMS = ROOT / "docs" / "claims"
SIM_TABLE = CLAIMS / "sim_verify.json"
MATRIX_CSV = ROOT / "docs" / "figures" / "fig17_claims_matrix.csv"
TABLES = {"tiny": CLAIMS / "llm_verify_tiny.json", "smollm2": CLAIMS / "llm_verify_smollm2.json"}
REGIME_NAMES = {"tiny": "tiny LM", "smollm2": "SmolLM2"}
CLASS_NAMES = {"tabular": "tabular", "loglinear": "log-linear", "loglinear-structured": "log-linear, structured",
               "lowrank": "low-rank", "mlp": "MLP", "transformer": "transformer"}  # fmt: skip


def _matrix(eta: str = "calibrated") -> list[dict]:
    if not MATRIX_CSV.is_file():
        return []
    with MATRIX_CSV.open() as fh:
        return [r for r in csv.DictReader(fh) if r["eta"] == eta]


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _cell(r: dict) -> str:
    if r["verdict"] == "n/a":
        return "—"
    est, lo, hi = (_num(r.get(k)) for k in ("estimate", "lo", "hi"))
    u = f" {r['unit']}" if r.get("unit") else ""
    if est == est and lo == lo and hi == hi:
        return f"{r['verdict']} {est:+.2g}{u} [{lo:+.2g}, {hi:+.2g}]"
    w = _num(r["worst"])
    return f"{r['verdict']} {w:+.2g}" if w == w else r["verdict"]


def matrix_table() -> str:
    """Figure 17's calibrated matrix: claim × policy class, each cell the verdict and the comparison that
    decides it (estimate, 90% interval)."""
    rows = _matrix()
    claims = list(dict.fromkeys(r["claim_id"] for r in rows))
    classes = list(dict.fromkeys(r["policy"] for r in rows))
    cells = {(r["claim_id"], r["policy"]): r for r in rows}
    lines = ["| claim | " + " | ".join(CLASS_NAMES.get(c, c) for c in classes) + " |",
             "| --- |" + " --- |" * len(classes)]  # fmt: skip
    for cid in claims:
        lines.append(f"| {cid} | " + " | ".join(_cell(cells[cid, c]) for c in classes) + " |")
    return "\n".join(lines)


def tabular_verdicts() -> dict[str, str]:
    """Figure 17's calibrated tabular verdict of each claim (the simulator's)."""
    return {
        r["claim_id"]: r["verdict"] for r in _matrix() if r["policy"] == "tabular" and r["verdict"] != "n/a"
    }


def llm_table(tier: str) -> str:
    """A tier's table: claim, the paper's number, the verdict in each regime up to this tier (figure 17's
    tabular one first), and our comparisons with their 90% intervals."""
    tab = tabular_verdicts()
    order = list(TABLES)[: list(TABLES).index(tier) + 1]
    tables = {t: json.loads(TABLES[t].read_text()) for t in order if TABLES[t].is_file()}
    rows = {t: {r["id"]: r for r in tables[t]["rows"]} for t in tables}
    cols = ["tabular", *(REGIME_NAMES[t] for t in tables)]
    lines = [f"| id | claim | paper | {' | '.join(cols)} | ours on the {REGIME_NAMES[tier]} (90% interval) |",
             "|" + " --- |" * (len(cols) + 4)]  # fmt: skip
    for rid, r in rows[tier].items():
        vs = [tab.get(rid, "—")] + [rows[t].get(rid, {}).get("verdict", "—") for t in tables]
        vs[-1] = f"**{vs[-1]}**"
        lines.append(f"| {rid} | {r['claim']} | {r.get('paper') or '—'} | {' | '.join(vs)} | {evidence(r)} |")
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` with every table whose data is committed regenerated between its markers."""
    if SIM_TABLE.is_file():
        text = replace_between(text, "sim-verify", markdown_table(json.loads(SIM_TABLE.read_text())["rows"]))
    if MATRIX_CSV.is_file():
        text = replace_between(text, "claims-matrix", matrix_table())
    for tier, path in TABLES.items():
        if path.is_file():
            text = replace_between(text, f"llm-claims:{tier}", llm_table(tier))
    return text


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m entrolab.readme", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", default=[str(p) for p in DOCS], metavar="PATH",
                   help="the markdown files (default README.md and docs/guide.md)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="print nothing; the exit status says it (1: stale)")
    p.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a table differs from its data"
    )
    args = p.parse_args(argv)
    bad = [x for x in args.paths if not Path(x).is_file()]
    if bad:
        print(f"error: PATH: got {bad[0]}, which is not a file; allowed: markdown files", file=sys.stderr)
        return 2
    stale = 0
    for path in map(Path, args.paths):
        text = path.read_text()
        new = render(text)
        stale += new != text
        if args.check:
            line = f"{path}: {'current' if new == text else 'stale: run python -m entrolab.readme'}"
        elif new != text:
            path.write_text(new)
            line = f"{path}: rewritten"
        else:
            line = f"{path}: already current"
        if not args.quiet:
            print(line)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
