"""python -m sim run ... : train R tabular softmax policies with an exact or sampled update.

Examples:
    python -m sim run --preset quick --name quick
    python -m sim run --env token_tree --update ppo --epochs 4 --controllers grpo ppo_clip kl_cov frac=0.01 \\
        --runs 64 --steps 300 --lr 1.0 --name tree_klcov
    python -m sim run --config runs/tree_klcov/config.json --name tree_klcov_again --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import controllers as C
from controllers.data import CURRICULA
from entrolab.common.cli import (
    add_config_flags,
    add_run_flags,
    add_version,
    config_changes,
    deprecated,
    key_values,
    parser,
)
from entrolab.common.rundir import disk_full_message, read_config_file
from entrolab.common.runio import cannot_write
from sim.policies import POLICIES
from sim.presets import PRESETS
from sim.run import UPDATES, Interrupted, SimConfig, read_metrics, run


def build_parser() -> argparse.ArgumentParser:
    p = parser("python -m sim", description="entrolab's tabular softmax simulator.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run",
        help="train R runs and write OUT_DIR/NAME/metrics.jsonl and config.json",
        description="Train R runs of a softmax policy. Every SimConfig field is a flag (its documentation is "
        "the help below); a flag not given keeps the preset's value (--preset) or the config file's (--config).",
    )
    r.add_argument("--preset", choices=sorted(PRESETS), help="start from a typed preset (sim/presets.py)")
    r.add_argument(
        "--controllers",
        nargs="*",
        metavar="SPEC",
        help="the pipeline, as controllers.spec writes it: names in order, each optionally followed by its "
        "KEY=VALUE hyperparameters, e.g. grpo ppo_clip eps_hi=0.28 clip_cov frac=0.01 (none: vanilla PG)",
    )
    r.add_argument(
        "--hp", nargs="*", default=[], metavar="NAME.KEY=VALUE",
        help="controller hyperparameters, e.g. clip_cov.frac=0.01 (over any inline ones)",
    )  # fmt: skip
    add_config_flags(
        r, SimConfig, skip=("controllers", "hyperparameters"),
        pairs={"env_kwargs": ("--env-kw", "KEY=VALUE"), "policy_kwargs": ("--policy-kw", "KEY=VALUE")},
        choices={"update": UPDATES, "policy": POLICIES, "curriculum": CURRICULA, "optimizer": ("sgd", "adam")},
    )  # fmt: skip
    add_run_flags(r)
    add_version(r)
    r.add_argument("--out", help=argparse.SUPPRESS)  # deprecated: --out-dir DIR --name NAME
    r.add_argument("--no-resume", action="store_true", help=argparse.SUPPRESS)  # deprecated: --resume never
    v = sub.add_parser("verify", help="run the simulator-side theory checks and print a verdict table")
    add_version(v)
    v.add_argument("--json", help="also write the table as JSON to this path")
    v.add_argument("--seed", type=int, default=0, help="root seed of the checks (default 0)")
    v.add_argument("--only", nargs="+", metavar="ID", help="only these row ids (e.g. M2 M8)")
    v.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    v.add_argument(
        "--matrix",
        action="store_true",
        help="the claims matrix: the training-dynamics claims (M5 M6 M7 M10 M11 M22, or --only) on every policy class "
        "(slow: about 7 minutes on a 2-core CPU with 2 workers)",
    )
    v.add_argument("--policies", nargs="+", metavar="LABEL", help="matrix: only these policy classes")
    v.add_argument(
        "--calibrate-lr",
        action="store_true",
        help="matrix: divide each parametric class's step size by its kernel gain at the start (each class's "
        "first step then raises the objective as fast as the tabular policy's)",
    )
    v.add_argument(
        "--cache",
        default="runs/matrix",
        metavar="DIR",
        help="matrix: each finished (claim, class) is saved here and reused by a rerun with the same seed, "
        "step-size rule and code, so an interrupted matrix resumes (default runs/matrix)",
    )
    v.add_argument("--no-cache", action="store_true", help="matrix: recompute every cell, save nothing")
    v.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="run N checks (matrix: N cells) at once, each in its own process with one thread; the same rows "
        "whatever N (default: the CPU cores this process may use)",
    )  # fmt: skip
    return p


def verify_main(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from entrolab.common import parallel
    from entrolab.common.verdict import format_table, to_json
    from sim import matrix, verify

    if args.only:
        unknown = sorted(set(args.only) - set(verify.CHECKS))
        if unknown:
            print(
                f"error: --only: unknown row ids {unknown}; allowed: {' '.join(verify.CHECKS)}",
                file=sys.stderr,
            )
            return 2
    out = Path(args.json) if args.json else None
    if out is not None and not out.parent.exists():
        print(
            f"error: --json: directory {out.parent} does not exist; allowed: a path in an existing directory",
            file=sys.stderr,
        )
        return 2
    why = None if out is None else cannot_write(out.parent, create=False)
    if why is not None:
        print(f"error: --json: cannot write in {out.parent} ({why}); allowed: a path in a writable directory",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.seed is not None and args.seed < 0:
        print(f"error: --seed: got {args.seed}; allowed: an integer >= 0", file=sys.stderr)
        return 2
    try:
        workers = parallel.check_workers(
            parallel.default_workers() if args.workers is None else args.workers, "--workers"
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()

    def progress(rid: str) -> None:  # before a check in one process; "<id> done" after it with workers
        if args.quiet:
            return
        what = rid if rid.endswith(("done", "(saved)")) else f"checking {rid}"
        print(f"  {what} ({time.perf_counter() - t0:.0f} s) ...", file=sys.stderr, flush=True)

    if args.calibrate_lr and not args.matrix:
        print("error: --calibrate-lr: allowed only with --matrix", file=sys.stderr)
        return 2
    if args.matrix:
        try:
            cells = matrix.run_matrix(
                seed=args.seed, claims=args.only or None, policy_labels=args.policies,
                progress=progress, calibrate_lr=args.calibrate_lr,
                cache_dir=None if args.no_cache else Path(args.cache), workers=workers,
            )  # fmt: skip
        except ValueError as e:
            print(f"error: --policies: {e}", file=sys.stderr)
            return 2
        print(matrix.format_matrix(cells))
        print(f"({time.perf_counter() - t0:.1f} s, seed {args.seed})")
        if out is not None:
            tmp = out.with_suffix(out.suffix + ".tmp")
            tmp.write_text(matrix.matrix_json(cells, args.seed, calibrate_lr=args.calibrate_lr))
            tmp.replace(out)
            print(f"wrote {out}")
        return 0 if all(c.row is None or c.row.ok for c in cells) else 1
    rows = verify.run_all(seed=args.seed, only=args.only, progress=progress, workers=workers)
    print(format_table(rows))
    print(f"({time.perf_counter() - t0:.1f} s, seed {args.seed})")
    if out is not None:
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(to_json(rows, args.seed))
        tmp.replace(out)
        print(f"wrote {out}")
    return 0 if all(r.ok for r in rows) else 1


def config_from_args(a: argparse.Namespace) -> SimConfig:
    """The run's config: --config's file, else the preset (default: SimConfig's defaults), with the flags
    given laid over it; the pipeline read by ``controllers.spec``."""
    if a.config:
        base = SimConfig.from_json(read_config_file(a.config))
    else:
        base = PRESETS[a.preset] if a.preset else SimConfig()
    changes = config_changes(
        a, SimConfig, skip=("controllers", "hyperparameters", "env_kwargs", "policy_kwargs")
    )
    if "offline_band" in changes:
        changes["offline_band"] = tuple(float(x) for x in changes["offline_band"])
    if "pass_k" in changes:
        changes["pass_k"] = tuple(int(x) for x in changes["pass_k"])
    if a.policy_kwargs is not None:
        changes["policy_kwargs"] = key_values(a.policy_kwargs, "--policy-kw")
    if a.env_kwargs is not None:
        kw = key_values(a.env_kwargs, "--env-kw")
        changes["env_kwargs"] = {**(base.env_kwargs if a.env is None else {}), **kw}
    elif a.env is not None and a.env != base.env:
        changes["env_kwargs"] = {}
    words = a.controllers
    if words is not None and len(words) == 1 and "," in words[0]:
        deprecated("--controllers a,b,c", "--controllers a b c")
        words = [w for w in words[0].split(",") if w.strip()]
    if words is not None:
        entries = C.spec.parse(words, "--controllers")
    elif changes.get("update", base.update).startswith("exact"):
        entries = []
    else:
        entries = C.spec.parse(base.controllers, "controllers")
        entries = C.spec.merged(entries, base.hyperparameters)
    entries = C.spec.merged(entries, C.spec.hp_items(a.hp, [n for n, _ in entries], "--hp"))
    changes["controllers"] = tuple(n for n, _ in entries)
    changes["hyperparameters"] = {n: kw for n, kw in entries if kw}
    return dataclasses.replace(base, **changes)


def run_folder(a: argparse.Namespace) -> Path:
    """OUT_DIR/NAME; the deprecated --out PATH is the same folder."""
    if a.out is not None:
        deprecated("--out PATH", "--out-dir DIR --name NAME")
        return Path(a.out)
    if not a.name:
        raise ValueError("--name: missing; allowed: the run's name (it is written to OUT_DIR/NAME)")
    if "/" in a.name or a.name in (".", ".."):
        raise ValueError(f"--name: got {a.name!r}; allowed: a directory name without '/'")
    return Path(a.out_dir) / a.name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify":
        return verify_main(args)
    if args.no_resume:
        deprecated("--no-resume", "--resume never")
        args.resume = "never"
    try:
        cfg = config_from_args(args)
        folder = run_folder(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        out = run(cfg, folder, resume=args.resume == "auto", progress=not args.quiet, tracker=args.tracker)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 128 + e.signum
    except (OSError, RuntimeError) as e:
        line = disk_full_message(e, folder)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1
    rows = read_metrics(out)
    last = [r for r in rows if r["step"] == max(x["step"] for x in rows)]
    first = [r for r in rows if r["step"] == 0]
    mean = lambda rs, k: sum(r[k] for r in rs) / max(len(rs), 1)  # noqa: E731
    print(
        f"{cfg.update} on {cfg.env}, {cfg.runs} runs × {cfg.steps} steps: "
        f"entropy {mean(first, 'entropy'):.3f} → {mean(last, 'entropy'):.3f} nats, "
        f"success {mean(first, 'success'):.3f} → {mean(last, 'success'):.3f}, "
        f"pass@{max(cfg.pass_k)} {mean(last, f'pass@{max(cfg.pass_k)}'):.3f}; wrote {out}/metrics.jsonl"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
