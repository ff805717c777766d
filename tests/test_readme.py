"""The README's Python examples run as written (keeps the tour true)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code):
    exec(compile(code, str(README), "exec"), {})


def test_readme_shows_the_two_commands_first():
    text = README.read_text()
    first_block = text.index("```bash")
    assert text.index("make figures") > first_block and text.index("make test") > first_block
    assert first_block < text.index("## ")
