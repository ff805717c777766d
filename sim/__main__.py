"""python -m sim run ... : train R tabular softmax policies with an exact or sampled update.

Examples:
    python -m sim run --preset quick --out runs/quick
    python -m sim run --env token_tree --update ppo --epochs 4 --controllers grpo,ppo_clip,kl_cov \\
        --hp kl_cov.frac=0.01 --runs 64 --steps 300 --lr 1.0 --out runs/tree_klcov
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys

from controllers.data import CURRICULA
from entrolab.common.rundir import disk_full
from entrolab.common.runio import cannot_write
from sim.policies import POLICIES
from sim.presets import PRESETS
from sim.run import UPDATES, Interrupted, SimConfig, read_metrics, run


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _pairs(items: list[str], option: str) -> dict:
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{option}: got {item!r}; allowed: KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim", description="entrolab's tabular softmax simulator.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train R runs and write runs/<name>/metrics.jsonl and config.json")
    r.add_argument("--preset", choices=sorted(PRESETS), help="start from a typed preset (sim/presets.py)")
    r.add_argument(
        "--env",
        help="bandit | token_tree | FrozenLake-v1 | CliffWalking-v1 | Taxi-v3 (gymnasium toy-text, exact "
        "through their transition tables)",
    )
    r.add_argument(
        "--env-kw",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="arguments of sim.envs.make_<env>, e.g. n_arms=32 correct=rare; toy-text: horizon=50 n_prompts=16 "
        "prior_scale=1.0 is_slippery=False",
    )
    r.add_argument(
        "--policy",
        choices=POLICIES,
        help="how the logits come from parameters: tabular (default), loglinear, lowrank, mlp, transformer "
        "(mlp/transformer: token trees)",
    )
    r.add_argument(
        "--policy-kw",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="policy class arguments, e.g. d=16 features=structured | rank=4 | hidden=32 | d=16 heads=2 layers=1",
    )
    r.add_argument(
        "--update", choices=UPDATES, help="exact_pg, exact_npg, grpo (sampled), ppo (off-policy epochs)"
    )
    r.add_argument(
        "--controllers",
        help="comma-separated controller names in pipeline order, e.g. grpo,ppo_clip,clip_cov ('' for none)",
    )
    r.add_argument(
        "--hp",
        nargs="*",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="controller hyperparameters, e.g. clip_cov.frac=0.01",
    )
    r.add_argument("--runs", type=int, help="independent runs R")
    r.add_argument("--steps", type=int, help="rollouts")
    r.add_argument("--lr", type=float, help="step size on the logits (> 0)")
    r.add_argument("--group-size", type=int, help="responses per prompt per rollout (G)")
    r.add_argument(
        "--guide",
        type=int,
        help="of the G responses, how many come from the optimal policy (LUFFY's demonstrations; trees only)",
    )
    r.add_argument(
        "--curriculum",
        choices=CURRICULA,
        help="prompt order: semantic_entropy trains prompts in stages from low to high base-policy answer entropy (SENT)",
    )
    r.add_argument("--curriculum-stages", type=int, help="stages of the curriculum (default 2)")
    r.add_argument("--critic-lr", type=float, help="vapo: step size of the tabular critic (default 0.1)")
    r.add_argument(
        "--offline-band",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="train only prompts whose base-policy success is in [LO, HI] (offline accuracy filter)",
    )
    r.add_argument("--epochs", type=int, help="ppo: passes over each rollout")
    r.add_argument("--minibatches", type=int, help="ppo: mini-batches per epoch")
    r.add_argument("--optimizer", choices=("sgd", "adam"))
    r.add_argument(
        "--calibrate-lr",
        action="store_true",
        default=None,
        help="parametric policies: divide --lr by the class's kernel gain at the start, so its first step "
        "raises the objective as fast as a tabular step (sgd; exact_pg, grpo, ppo)",
    )
    r.add_argument(
        "--agg",
        help="loss aggregation: token-mean | seq-mean-token-mean | seq-mean-token-sum | seq-mean-token-sum-norm",
    )
    r.add_argument("--seed", type=int)
    r.add_argument("--device", help="cpu | cuda")
    r.add_argument("--log-every", type=int, help="write metrics every N steps")
    r.add_argument("--checkpoint-every", type=int, help="atomic checkpoint every N steps (0: never)")
    r.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the exact bandit kernel (unlogged steps)",
    )
    r.add_argument("--out", required=True, help="output directory, e.g. runs/NAME")
    r.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a checkpoint")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument(
        "--tracker", default="none", metavar="NAME",
        help="also log each step's mean over runs to an accelerate tracker: tensorboard, wandb, mlflow, trackio, "
        "comet, aim, clearml, dvclive, swanlab, or auto (tensorboard when installed); default none. "
        "metrics.jsonl is always written",
    )  # fmt: skip
    v = sub.add_parser("verify", help="run the simulator-side theory checks and print a verdict table")
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
    base = PRESETS[a.preset] if a.preset else SimConfig()
    changes: dict = {}
    for name in (
        "env",
        "update",
        "runs",
        "steps",
        "lr",
        "group_size",
        "guide",
        "policy",
        "curriculum",
        "curriculum_stages",
        "critic_lr",
        "epochs",
        "minibatches",
        "optimizer",
        "calibrate_lr",
        "agg",
        "seed",
        "device",
        "log_every",
        "checkpoint_every",
        "compile",
    ):
        v = getattr(a, name)
        if v is not None:
            changes[name] = v
    if a.policy_kw:
        changes["policy_kwargs"] = _pairs(a.policy_kw, "--policy-kw")
    if a.offline_band is not None:
        changes["offline_band"] = tuple(a.offline_band)
    if a.env_kw:
        changes["env_kwargs"] = {**(base.env_kwargs if a.env is None else {}), **_pairs(a.env_kw, "--env-kw")}
    elif a.env is not None and a.env != base.env:
        changes["env_kwargs"] = {}
    if a.controllers is not None:
        changes["controllers"] = tuple(n.strip() for n in a.controllers.split(",") if n.strip())
    elif changes.get("update", base.update).startswith("exact"):
        changes["controllers"] = ()
    if a.hp:
        hp: dict = {}
        for k, v in _pairs(a.hp, "--hp").items():
            if "." not in k:
                raise ValueError(f"--hp: got {k!r}; allowed: NAME.KEY=VALUE")
            name, key = k.split(".", 1)
            hp.setdefault(name, {})[key] = v
        changes["hyperparameters"] = hp
    return dataclasses.replace(base, **changes)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify":
        return verify_main(args)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        out = run(cfg, args.out, resume=not args.no_resume, progress=not args.quiet, tracker=args.tracker)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 128 + e.signum
    except (OSError, RuntimeError) as e:
        why = disk_full(e)
        if why is None:
            raise
        print(
            f"error: out: {why}; the last checkpoint in {args.out} is intact: free space and rerun the same "
            "command to resume",
            file=sys.stderr,
        )
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
