"""What every command line shares: the command's name as the user typed it, the flags every run command
takes, a command line generated from a config dataclass, and the deprecated spellings.

The shared run flags (``add_run_flags``): ``--out-dir DIR --name NAME`` (the run's folder is DIR/NAME),
``--resume auto|never``, ``--tracker NAME``, ``--quiet`` and ``--config FILE`` (a run's own ``config.json``
loads back as its config; flags given beside it override it). ``--seed`` and ``--device`` are fields of the
configs. The trainer's flags come from its config with the same names; ``tests/test_cli.py`` holds every
subcommand to them.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import inspect
import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator

_PROG: list[str] = []
RESUME = ("auto", "never")
TRACKER_HELP = (
    "also log to an accelerate tracker: auto (TensorBoard when installed), none, tensorboard, wandb, mlflow, "
    "trackio, comet, aim, clearml, dvclive, swanlab; metrics.jsonl is always written (default auto)"
)


def version() -> str:
    """The installed distribution's version (the source tree's pyproject.toml when it is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("entrolab")
    except metadata.PackageNotFoundError:
        from pathlib import Path

        import tomllib

        text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
        return tomllib.loads(text)["project"]["version"]


def parser(default_prog: str, **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser whose usage names the command as typed (``prog``) and that takes ``--version``."""
    p = argparse.ArgumentParser(prog=prog(default_prog), **kwargs)
    add_version(p)
    return p


def add_version(p: argparse.ArgumentParser) -> None:
    """``--version``: print ``entrolab VERSION`` and exit 0 (every command and subcommand takes it)."""
    p.add_argument("--version", action="version", version=f"entrolab {version()}")


def prog(default: str) -> str:
    """The command as the user typed it: ``entrolab sim`` under the console script, else ``default``
    (``python -m sim``)."""
    return _PROG[-1] if _PROG else default


@contextlib.contextmanager
def typed_as(name: str) -> Iterator[None]:
    """Within: ``prog()`` is ``name`` (the console script sets it around a subcommand)."""
    _PROG.append(name)
    try:
        yield
    finally:
        _PROG.pop()


def deprecated(old: str, new: str) -> None:
    """One line on stderr: ``old`` still works for one release; ``new`` is its spelling now."""
    print(f"note: {old} is deprecated and will be removed in the next release; use {new}", file=sys.stderr)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags of every command that writes a run (see the module docstring)."""
    p.add_argument("--out-dir", default="runs", metavar="DIR", help="folder holding the runs (default runs)")
    p.add_argument("--name", help="the run's name: it is written to OUT_DIR/NAME")
    p.add_argument(
        "--resume",
        choices=RESUME,
        default="auto",
        help="auto: continue from the run's last checkpoint when there is one; never: start over (default auto)",
    )
    p.add_argument("--tracker", default="auto", metavar="NAME", help=TRACKER_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="start from this config.json (a run's own, written beside its metrics); flags given override it",
    )


# -- a command line from a config dataclass -----------------------------------------------------------------


def field_docs(cls) -> dict[str, str]:
    """{field: the string literal under it in the class body}, the documentation of each field."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for a, b in itertools.pairwise(body):
            if (
                isinstance(a, ast.AnnAssign)
                and isinstance(a.target, ast.Name)
                and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant)
                and isinstance(b.value.value, str)
            ):
                out[a.target.id] = " ".join(b.value.value.split())
    return out


def flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_config_flags(
    p: argparse.ArgumentParser,
    cls,
    skip: tuple[str, ...] = (),
    pairs: dict[str, tuple[str, str]] | None = None,
    choices: dict[str, tuple] | None = None,
) -> None:
    """One flag per field of the dataclass ``cls`` (``--group-size``), its help the field's docstring and
    its default None (a flag not given leaves the preset's value). Numbers and strings take one value,
    booleans ``--x/--no-x``, tuples several; a dict field named in ``pairs`` ({field: (flag, metavar)})
    takes ``KEY=VALUE`` entries. ``skip``: fields the command sets otherwise."""
    docs, pairs, choices = field_docs(cls), pairs or {}, choices or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        helptext = docs.get(f.name, "")
        if f.name in pairs:
            name, metavar = pairs[f.name]
            p.add_argument(name, dest=f.name, nargs="*", default=None, metavar=metavar, help=helptext)
        elif isinstance(default, bool):
            p.add_argument(
                flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext
            )
        elif isinstance(default, tuple):
            p.add_argument(flag(f.name), dest=f.name, nargs="*", default=None, help=helptext)
        elif isinstance(default, (int, float, str)) or default is None:
            kind: Callable = str if isinstance(default, str) or default is None else type(default)
            p.add_argument(
                flag(f.name), dest=f.name, type=kind, default=None, choices=choices.get(f.name), help=helptext
            )


def config_changes(args: argparse.Namespace, cls, skip: tuple[str, ...] = ()) -> dict:
    """{field: value} of the config flags given on the command line (``add_config_flags``)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name not in skip and getattr(args, f.name, None) is not None:
            v = getattr(args, f.name)
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


def value(text: str):
    """A command-line value: the Python literal ``text`` spells, or ``text`` itself."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text.strip()


def key_values(items: list[str], option: str) -> dict:
    """``KEY=VALUE`` entries as a dict (values by ``value``); a one-line ValueError naming ``option``."""
    out: dict = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"{option}: got {item!r}; allowed: KEY=VALUE")
        out[k.strip()] = value(v)
    return out
