"""What ``pip install .`` puts on a user's path: the design card's packages (sim, llm, theory, figures),
controllers and entrolab, and nothing else at top level (no generic ``common`` or ``bench``); every
package directory of the source tree is in the distribution, so no module is left out of a wheel."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = {"sim", "llm", "theory", "figures", "controllers", "entrolab"}


def listed() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_only_the_allowed_top_level_packages_are_installed():
    tops = {p.split(".")[0] for p in listed()}
    assert tops == TOP_LEVEL, f"top-level packages {sorted(tops)}; allowed {sorted(TOP_LEVEL)}"


def test_every_package_directory_is_in_the_distribution():
    on_disk = {
        ".".join(f.parent.relative_to(ROOT).parts)
        for top in TOP_LEVEL
        for f in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in f.parts
    }
    assert on_disk == set(listed()), (
        f"missing {sorted(on_disk - set(listed()))}, extra {sorted(set(listed()) - on_disk)}"
    )


def test_no_stray_top_level_package_in_the_tree():
    """A package directory at the root that is neither installed nor tests would be lost from a wheel."""
    strays = {
        d.name for d in ROOT.iterdir() if (d / "__init__.py").exists() and d.name not in TOP_LEVEL | {"tests"}
    }
    assert not strays, f"top-level packages outside the distribution: {sorted(strays)}"


def test_no_source_module_is_over_600_lines():
    big = {
        str(f.relative_to(ROOT)): n
        for top in TOP_LEVEL
        for f in (ROOT / top).rglob("*.py")
        if (n := len(f.read_text().splitlines())) > 600
    }
    assert not big, f"modules over 600 lines (split them): {big}"


def test_the_built_wheel_holds_only_the_allowed_top_level_names(tmp_path):
    """What ``pip install .`` would install, read from the wheel pip builds: the allowed packages and the
    distribution's metadata, nothing else. Built from a copy of the sources, so setuptools' build folder and
    egg-info never land in the checkout."""
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for top in TOP_LEVEL:
        shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__", "results"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("entrolab-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == TOP_LEVEL
