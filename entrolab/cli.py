"""``entrolab COMMAND [ARGS ...]``: one entry point for every command of the project.

Each subcommand hands its arguments, unchanged, to the ``main`` of the module command it names, so its
flags, help text, output and exit code are that command's (``python -m ...`` keeps working)."""

from __future__ import annotations

import importlib
import sys

from entrolab.common.cli import typed_as, version

COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("sim.__main__", "the simulator: run R runs, or verify its claims (python -m sim)"),
    "theory": ("theory.__main__", "the theory check table (python -m theory verify)"),
    "train": ("llm.train", "train a language model with a pipeline of controllers (python -m llm.train)"),
    "sft": ("llm.sft", "the supervised warm start of the trainer (python -m llm.sft)"),
    "verify-lm": ("llm.verify", "the claims on language models, through the trainer (python -m llm.verify)"),
    "figures": ("figures.__main__", "reproduce the figures (python -m figures)"),
    "plot": ("figures.runs", "pictures of trainer and simulator runs, overlaid (python -m figures.runs)"),
    "bench": ("entrolab.bench.__main__", "benchmarks (python -m entrolab.bench)"),
    "readme": (
        "entrolab.readme",
        "regenerate README's result tables from the committed data (python -m entrolab.readme)",
    ),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: entrolab [--version] COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "entrolab COMMAND --help shows a command's own flags."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if "--version" in args:  # entrolab --version, and every subcommand's --version
        print(f"entrolab {version()}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: COMMAND: got {name!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        with typed_as(f"entrolab {name}"):  # usage lines name the command the user typed
            return int(module.main(rest) or 0)
    except SystemExit as e:  # argparse's --help and usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
