"""The ``entrolab`` console script: every subcommand is its module command, with the same help text and
exit codes; the installed script runs from any directory."""

from __future__ import annotations

import importlib
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


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_subcommand_has_its_module_commands_help(name, capsys):
    module = importlib.import_module(cli.COMMANDS[name][0])
    code_mod, text_mod = _help(lambda: module.main(["--help"]), capsys)
    code_cli, text_cli = _help(lambda: cli.main([name, "--help"]), capsys)
    assert code_mod in (0, None) and code_cli == 0
    assert text_cli == text_mod and len(text_cli.splitlines()) > 3


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
