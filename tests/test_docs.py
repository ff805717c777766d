"""The project's documentation is its own: every citation in code and docs points to a file of this
repository, and no file cites notes a user of the repository does not have."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    p
    for pattern in ("*.py", "*.md", "Makefile", "*.toml")
    for p in ROOT.rglob(pattern)
    if not any(part.startswith(".") for part in p.relative_to(ROOT).parts) and "out" not in p.parts
]
FOREIGN = re.compile(r"(THEORY|DESIGN|ANCHORS)(\.md| §)|\.\./shared")


def test_sources_are_found():
    assert len(SOURCES) > 50


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_citation_of_files_outside_the_repository(path):
    if path == Path(__file__):
        return
    hits = [f"{path.name}:{i}" for i, ln in enumerate(path.read_text().splitlines(), 1) if FOREIGN.search(ln)]
    assert not hits, hits


def test_every_docs_citation_names_an_existing_file_and_section():
    cited = []
    for path in SOURCES:
        for m in re.finditer(r"docs/([a-z_]+\.md)(?: §(\d+)(?:\.(\d+))?)?", path.read_text()):
            cited.append((path, m.group(1), m.group(2), m.group(3)))
    assert len(cited) > 20
    for path, name, sec, sub in cited:
        doc = ROOT / "docs" / name
        assert doc.is_file(), f"{path.name} cites docs/{name}, which does not exist"
        if sec is not None:
            heading = rf"^#+ {sec}\.{' ' if sub is None else re.escape(sub) + ' '}"
            assert re.search(heading, doc.read_text(), flags=re.M), (
                f"{path.name} cites docs/{name} §{sec}{'.' + sub if sub else ''}"
            )


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs").glob("*/*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    """Markdown links to files of the repository point at files that exist, and a #section of a markdown
    file at one of its headings (GitHub's anchor rule: lower case, punctuation dropped, spaces to '-')."""
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md":
            heads = re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)
            anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}
            if anchor not in anchors:
                bad.append(f"{target} (no heading)")
    assert not bad, f"{page.name}: " + ", ".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_command_in_the_docs_exists(page):
    """``python -m MODULE`` in a page names a module of this project (or an installed tool) that imports."""
    import importlib.util

    missing = sorted(
        m
        for m in set(re.findall(r"python -m ([a-z_][\w.]*)", page.read_text())) - {"MODULE"}
        if importlib.util.find_spec(m) is None
    )
    assert not missing, f"{page.name}: {missing}"
