"""The README's Python examples run as written (keeps the tour true)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
GUIDE = README.parent / "docs" / "guide.md"
BLOCKS = [
    b for doc in (README, GUIDE) for b in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
]


def test_readme_has_examples():
    assert len(BLOCKS) >= 4 and len(re.findall(r"```python\n", README.read_text())) >= 2


def test_readme_stays_a_front_page():
    """README is the front page (the commands, the figures, the controllers); the rest is in docs/."""
    assert len(README.read_bytes()) <= 15_000


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code):
    exec(compile(code, str(README), "exec"), {})


def test_readme_shows_the_two_commands_first():
    text = README.read_text()
    first_block = text.index("```bash")
    assert text.index("make figures") > first_block and text.index("make test") > first_block
    assert first_block < text.index("## ")


def test_readme_figure_verdicts_match_the_committed_gallery():
    """The README's figure table says what docs/figures/figNN_*.json say (regenerate with make figures)."""
    import json

    docs = README.parent / "docs" / "figures"
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| ([^|]+) \| ", README.read_text(), flags=re.M)
    listed = {int(n): v.strip() for n, v in rows}
    gallery = {json.loads(p.read_text())["figure"]: json.loads(p.read_text()) for p in docs.glob("fig*.json")}
    assert listed and set(listed) == set(gallery)
    for n, meta in gallery.items():
        assert listed[n] == meta["verdict"], n
        assert meta["settings"]["quick"] is False, n  # the committed gallery is the full budget
        stem = docs / f"fig{n:02d}"
        assert any(p.suffix == ".png" for p in docs.glob(f"{stem.name}_*.png")), n


KIND_ROWS = {
    "reward shaping": "reward",
    "advantages": "advantage",
    "token weights": "weight",
    "surrogate losses": "surrogate",
    "token penalties": "penalty",
    "extra loss terms": "extra",
    "batch": "batch",
    "wrapper": "wrapper",
}


def test_readme_lists_every_controller_once_under_its_kind():
    """The controller table is checked against the registry: each registered name appears once, in the row
    of its ``kind`` (a new controller, or a changed kind, fails here until the README says it)."""
    import controllers as C

    rows = dict(re.findall(r"^\| ([a-z ]+) \| (.+) \|$", README.read_text(), flags=re.M))
    listed: dict[str, list[str]] = {}
    for label, kind in KIND_ROWS.items():
        assert label in rows, f"README has no '{label}' row"
        for name in re.findall(r"(?:^|, )`([a-z_0-9]+)`", rows[label]):
            listed.setdefault(name, []).append(kind)
    want = {n: [C.get(n).kind] if n != "pi_control" else ["wrapper"] for n in C.names()}
    assert listed == want
