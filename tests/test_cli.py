"""The ``entrolab`` console script: every subcommand is its module command, with the same help text and
exit codes; the installed script runs from any directory."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from entrolab import cli


def _help(fn, capsys) -> tuple[int, str]:
    try:
        code = fn()
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().out


def _flags(text: str) -> set[str]:
    return set(re.findall(r"--[a-z][a-zA-Z0-9-]*", text))


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_subcommand_has_its_module_commands_help(name, capsys):
    """The same help, but its usage line names the command as typed: ``entrolab NAME`` or ``python -m ...``."""
    module = importlib.import_module(cli.COMMANDS[name][0])
    code_mod, text_mod = _help(lambda: module.main(["--help"]), capsys)
    code_cli, text_cli = _help(lambda: cli.main([name, "--help"]), capsys)
    assert code_mod in (0, None) and code_cli == 0
    assert text_cli.lstrip().startswith(f"usage: entrolab {name}") and len(text_cli.splitlines()) > 3
    assert text_mod.lstrip().startswith("usage: python -m ")
    assert _flags(text_cli) == _flags(text_mod) and len(_flags(text_cli)) >= 2


# every subcommand, as typed, with the flags every command takes and those of the commands that write runs
SUBCOMMANDS = {
    "sim run": ["sim", "run"], "sim verify": ["sim", "verify"], "theory verify": ["theory", "verify"],
    "train": ["train"], "sft": ["sft"], "verify-lm": ["verify-lm"], "figures": ["figures"], "plot": ["plot"],
    "bench": ["bench"], "readme": ["readme"],
}  # fmt: skip
EVERY = ("--help", "--version", "--quiet")
RUNS = {"sim run", "train", "sft"}
RUN_FLAGS = (
    "--out-dir",
    "--name",
    "--resume",
    "--tracker",
    "--device",
    "--seed",
    "--config",
    "--controllers",
    "--hp",
)
FOLDERS = {"figures", "plot"}  # commands that write a folder of outputs take --out-dir too


@pytest.mark.parametrize("sub", sorted(SUBCOMMANDS))
def test_every_subcommand_takes_the_shared_flags(sub, capsys):
    argv = SUBCOMMANDS[sub]
    code, text = _help(lambda: cli.main([*argv, "--help"]), capsys)
    assert code == 0 and text.lstrip().startswith(f"usage: entrolab {' '.join(argv)}"), text[:200]
    want = EVERY + (RUN_FLAGS if sub in RUNS else ()) + (("--out-dir",) if sub in FOLDERS else ())
    missing = [f for f in want if f not in text.replace("--no-", "--")]
    assert not missing, f"entrolab {sub} lacks {missing}"
    assert "--out " not in text and "--no-resume" not in text and "--cpu" not in text  # old spellings hidden
    assert cli.main([*argv, "--version"]) == 0
    assert capsys.readouterr().out.strip() == f"entrolab {cli.version()}"


@pytest.mark.parametrize("module, argv", [("sim.__main__", ["run"]), ("theory.__main__", ["verify"]),
                                          ("llm.train", []), ("llm.sft", []), ("figures.__main__", [])])  # fmt: skip
def test_module_commands_take_version_too(module, argv, capsys):
    mod = importlib.import_module(module)
    code, text = _help(lambda: mod.main([*argv, "--version"]), capsys)
    assert code in (0, None) and text.strip() == f"entrolab {cli.version()}"


def test_a_runs_own_config_loads_back_as_its_config(tmp_path, capsys):
    """--config FILE: a simulator run made again from its config.json is the same run; the trainer's config
    reads back field for field, and flags given beside it override it."""
    from llm.config import parse_command
    from sim.__main__ import main as sim_main
    from sim.run import read_metrics

    first = ["run", "--preset", "quick", "--steps", "3", "--lr", "0.3", "--controllers", "grpo", "ppo_clip",
             "eps_hi=0.3", "--out-dir", str(tmp_path), "--quiet", "--tracker", "none"]  # fmt: skip
    assert sim_main([*first, "--name", "a"]) == 0
    again = ["run", "--config", str(tmp_path / "a" / "config.json"), "--out-dir", str(tmp_path), "--quiet"]
    assert sim_main([*again, "--name", "b", "--tracker", "none"]) == 0
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    assert sim_main([*again, "--name", "c", "--tracker", "none", "--seed", "4"]) == 0
    assert read_metrics(tmp_path / "c") != read_metrics(tmp_path / "a")
    cfg, _ = parse_command(["--preset", "tiny-copy", "--controllers", "grpo", "ppo_clip", "eps_hi=0.3",
                            "--lr", "0.002", "--out-dir", str(tmp_path)], "p", "s")  # fmt: skip
    (tmp_path / "t.json").write_text(__import__("json").dumps(cfg.to_json()))
    back, line = parse_command(["--config", str(tmp_path / "t.json"), "--quiet"], "p", "s")
    assert back == cfg and line.quiet
    assert parse_command(["--config", str(tmp_path / "t.json"), "--seed", "9"], "p", "s")[0].seed == 9
    capsys.readouterr()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["sim", "run", "--config", "/no/such.json", "--name", "x"],
            "error: --config: cannot read '/no/such.json'",
        ),
        (["train", "--config", "/no/such.json"], "error: --config: cannot read '/no/such.json'"),
        (["sim", "run", "--preset", "quick"], "error: --name: missing; allowed: the run's name"),
    ],
)
def test_config_and_name_errors_are_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err


def test_old_spellings_still_work_with_a_note(tmp_path, capsys):
    from sim.__main__ import main as sim_main

    argv = ["run", "--preset", "quick", "--steps", "2", "--quiet", "--tracker", "none",
            "--controllers", "grpo,ppo_clip", "--out", str(tmp_path / "old"), "--no-resume"]  # fmt: skip
    assert sim_main(argv) == 0
    err = capsys.readouterr().err
    for old in ("--controllers a,b,c", "--out PATH", "--no-resume"):
        assert f"note: {old} is deprecated" in err
    assert (tmp_path / "old" / "metrics.jsonl").exists()


def test_exit_codes_and_errors_pass_through(capsys):
    assert cli.main(["bench", "nosuch"]) == 2
    assert "error: name: got 'nosuch'" in capsys.readouterr().err
    assert cli.main(["nosuch"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: COMMAND: got 'nosuch'; allowed: sim, theory, train") and err.count("\n") == 1
    )
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {n} " in out for n in cli.COMMANDS)


def test_the_installed_script_runs_from_another_directory(tmp_path):
    script = shutil.which("entrolab", path=str(Path(sys.executable).parent))
    assert script is not None, "the entrolab console script is not installed (pip install -e .)"
    out = subprocess.run([script, "theory", "verify", "--only", "L1"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "L1" in out.stdout and "holds" in out.stdout
