"""python -m entrolab.bench NAME [--quick] [--device cpu|cuda]: run a benchmark, append its result, print a summary."""

from __future__ import annotations

import sys
from pathlib import Path

from entrolab.common.cli import parser

BENCHES = ("sim", "entropy", "controllers", "trainer", "precision")


def _module(name: str):
    import importlib

    if name not in BENCHES:
        raise ValueError(name)
    return importlib.import_module(f"entrolab.bench.{name}")


def write_results_md(latest: dict[str, dict]) -> Path:
    path = Path(__file__).parent / "RESULTS.md"
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m entrolab.bench NAME`; every run is also appended to `entrolab/bench/results/NAME.jsonl`.",
        "Timings from one shared, noisy machine: compare ratios measured in the same run, not absolute",
        "seconds across runs.",
        "",
    ]
    for label, rec in latest.items():
        m, name = rec["machine"], rec["bench"]
        gpu = f", {m['cuda']}" if _device(rec) != "cpu" and m.get("cuda") else ""
        lines += [
            f"## {label}",
            "",
            f"`{rec['command']}` on {m['cpus']} CPUs ({m['cpu']}){gpu}, torch {m['torch']}, {m['date']}, "
            f"git {m['git']}; load before {rec['load']['load_before']}, max {rec['load']['load_max']}"
            + (" — **noisy**" if rec["load"]["noisy"] else ""),
            "",
            *[f"- {s}" for s in rec["summary"]],
            "",
        ]
        if name == "sim":
            lines += [
                "| runs | ours (s/step) | numpy per-run loop (s/step) | speedup |",
                "| --- | --- | --- | --- |",
            ]
            lines += [
                f"| {x['runs']} | {x['ours_s']:.4f} | {x['numpy_s']:.4f} | {x['speedup']:.1f}× |"
                for x in rec["result"]["scaling_runs"]
            ]
            lines += [
                "",
                "| arms (64 runs) | ours (s/step) | numpy (s/step) | speedup |",
                "| --- | --- | --- | --- |",
            ]
            lines += [
                f"| {x['arms']} | {x['ours_s']:.4f} | {x['numpy_s']:.4f} | {x['speedup']:.1f}× |"
                for x in rec["result"]["scaling_arms"]
            ]
            lines.append("")
        elif hasattr(_module(name), "table"):
            lines += [*_module(name).table(rec["result"]), ""]
    path.write_text("\n".join(lines))
    return path


def _device(rec: dict) -> str:
    argv = rec["command"].split()
    return argv[argv.index("--device") + 1] if "--device" in argv[:-1] else "cpu"


def latest_records() -> dict[str, dict]:
    """The latest record of each bench and device (a --quick run only where no full run exists), keyed
    ``NAME`` on the CPU and ``NAME (DEVICE)`` elsewhere."""
    import json

    from entrolab.bench import harness

    out = {}
    for name in BENCHES:
        f = harness.RESULTS / f"{name}.jsonl"
        if not f.exists():
            continue
        rows = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        for device in dict.fromkeys(_device(r) for r in rows):
            mine = [r for r in rows if _device(r) == device]
            full = [r for r in mine if "--quick" not in r["command"]]
            out[name if device == "cpu" else f"{name} ({device})"] = (full or mine)[-1]
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m entrolab.bench", description=__doc__)
    p.add_argument("name", help=f"one of {', '.join(BENCHES)}, or all")
    p.add_argument("--quick", action="store_true", help="fewer sizes and steps (extrapolated), a few minutes")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress lines (the summary is still printed)")
    a = p.parse_args(argv)
    if a.name not in (*BENCHES, "all"):
        print(f"error: name: got {a.name!r}; allowed: {', '.join(BENCHES)}, all", file=sys.stderr)
        return 2
    if a.device not in ("cpu", "cuda"):
        print(f"error: --device: got {a.device!r}; allowed: cpu, cuda", file=sys.stderr)
        return 2
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device: got 'cuda' but torch sees no CUDA device; allowed: cpu", file=sys.stderr)
            return 2
    names = list(BENCHES if a.name == "all" else (a.name,))
    for name in list(names):
        why = getattr(_module(name), "unavailable", lambda: None)()
        if why is None:
            continue
        if a.name != "all":
            print(f"error: name: bench {name} cannot run here: {why}", file=sys.stderr)
            return 2
        print(f"bench {name}: skipped, {why}", file=sys.stderr)
        names.remove(name)
    from entrolab.bench import harness

    for name in names:
        watch = harness.LoadWatch()
        if watch.noisy:
            print(
                f"warning: load {watch.samples[0]:.2f} per CPU before the run; marking it noisy",
                file=sys.stderr,
            )
        mod = _module(name)
        if not a.quiet:
            print(f"bench {name}{' (quick)' if a.quick else ''} ...", file=sys.stderr, flush=True)
        res = mod.run(quick=a.quick, device=a.device, watch=watch)
        rec = {
            "bench": name,
            "command": "python -m entrolab.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": harness.machine(),
            "load": watch.report(),
            "result": res,
            "summary": mod.summary(res),
        }
        path = harness.append(name, rec)
        print("\n".join(rec["summary"]))
        print(f"appended {path}")
    print(f"wrote {write_results_md(latest_records())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
