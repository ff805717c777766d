"""Layering: theory needs no torch; controllers needs no accelerate/transformers (DESIGN.md)."""

import subprocess
import sys

import pytest


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_theory_does_not_import_torch():
    mods = _imported_after("theory")
    assert "torch" not in mods
    assert "numpy" in mods  # the check itself works: theory does import numpy


@pytest.mark.parametrize("forbidden", ["accelerate", "transformers", "sim", "llm"])
def test_controllers_does_not_import(forbidden):
    assert forbidden not in _imported_after("controllers")
