"""Command line: ``python -m theory verify [--json PATH] [--seed N] [--only ID ...]``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from entrolab.common.cli import add_version
from entrolab.common.cli import parser as command_parser
from entrolab.common.runio import cannot_write


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(
        "python -m theory",
        description="Check the entropy-change theorems numerically and print a verdict table.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ver = sub.add_parser("verify", help="run every claim check and print the verdict table")
    add_version(ver)
    ver.add_argument("--json", type=Path, default=None, help="also write the table as JSON to this path")
    ver.add_argument("--seed", type=int, default=0, help="root seed of the random instances (default 0)")
    ver.add_argument(
        "--only", nargs="+", default=None, metavar="ID", help="only these row ids (e.g. L1 Q13b)"
    )
    ver.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    from theory import verify

    if args.only:
        unknown = sorted(set(args.only) - set(verify.CHECKS))
        if unknown:
            parser.error(f"--only: unknown row ids {unknown}; allowed: {' '.join(verify.CHECKS)}")
    if args.json is not None and not args.json.parent.exists():
        parser.error(
            f"--json: directory {args.json.parent} does not exist; allowed: a path in an existing directory"
        )
    if args.seed < 0:
        print(f"error: --seed: got {args.seed}; allowed: an integer >= 0", file=sys.stderr)
        return 2
    why = None if args.json is None else cannot_write(args.json.parent, create=False)
    if why is not None:
        print(f"error: --json: cannot write in {args.json.parent} ({why}); allowed: a path in a writable directory",
              file=sys.stderr)  # fmt: skip
        return 2

    t0 = time.perf_counter()

    def progress(name: str) -> None:
        if not args.quiet:
            print(f"  checking {name} ...", file=sys.stderr, flush=True)

    rows = verify.run_all(seed=args.seed, only=args.only, progress=progress)
    print(verify.format_table(rows))
    print(f"({time.perf_counter() - t0:.1f} s, seed {args.seed})")
    if args.json is not None:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(verify.to_json(rows, args.seed))
        tmp.replace(args.json)
        print(f"wrote {args.json}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
