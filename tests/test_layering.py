"""Layering: every import statement of every module (ast, lazy imports inside functions included) is held
to one table of allowed edges between the project's packages, and no package imports into a cycle.

    common       numpy only: run files, the verdict machinery
    theory       closed forms (numpy, scipy): may import common
    controllers  torch only: may import common
    sim          the simulator: may import common, theory, controllers
    llm          the trainer: may import common, theory, controllers — never sim
    figures      reads what sim runs: may import common, theory, controllers, sim
    bench        measures everything: may import every package
    entrolab     the console script: dispatches to every package's command

Third-party limits: theory never imports torch; controllers never imports accelerate or transformers;
common imports neither torch nor scipy at module level (accelerate only lazily, in trackers.py).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "theory", "controllers", "sim", "llm", "figures", "bench", "entrolab")
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "theory": {"common"},
    "controllers": {"common"},
    "sim": {"common", "theory", "controllers"},
    "llm": {"common", "theory", "controllers"},
    "figures": {"common", "theory", "controllers", "sim"},
    "bench": {"common", "theory", "controllers", "sim", "llm"},
    "entrolab": {"common", "theory", "controllers", "sim", "llm", "figures", "bench"},
}
THIRD_PARTY_FORBIDDEN = {
    "common": {"torch", "scipy", "accelerate", "transformers"},
    "theory": {"torch", "accelerate", "transformers"},
    "controllers": {"accelerate", "transformers", "peft", "tyro"},
}


# entrolab.common and entrolab.bench are layers of their own, inside the entrolab distribution package
NESTED = {"entrolab.common": "common", "entrolab.bench": "bench"}
DIRS = {"common": "entrolab/common", "bench": "entrolab/bench"}


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to: its top-level package, or common/bench for their nesting."""
    for prefix, layer in NESTED.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return module.split(".")[0]


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(layer imported, line, at module level?) for every import statement in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(layer_of(a.name), node.lineno, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "entrolab":  # from entrolab import common
                out += [
                    (layer_of(f"entrolab.{a.name}"), node.lineno, id(node) in top_level) for a in node.names
                ]
            else:
                out.append((layer_of(node.module), node.lineno, id(node) in top_level))
    return out


def modules(pkg: str) -> list[Path]:
    files = sorted((ROOT / DIRS.get(pkg, pkg)).rglob("*.py"))
    if pkg == "entrolab":  # the console script's own modules, not the layers nested in it
        files = [f for f in files if not any(f.is_relative_to(ROOT / d) for d in DIRS.values())]
    return files


@pytest.mark.parametrize("pkg", PACKAGES)
def test_imports_follow_the_table_of_allowed_edges(pkg):
    bad = []
    for f in modules(pkg):
        for mod, line, _ in imports_of(f):
            if mod in PACKAGES and mod != pkg and mod not in ALLOWED[pkg]:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "forbidden edges:\n" + "\n".join(bad)


@pytest.mark.parametrize("pkg", sorted(THIRD_PARTY_FORBIDDEN))
def test_lower_layers_do_not_import_heavy_libraries(pkg):
    bad = []
    for f in modules(pkg):
        for mod, line, top in imports_of(f):
            # common may import torch lazily (atomic_save of a torch object) and scipy lazily (the t quantiles of
            # entrolab.common.verdict.judge); nothing else, nowhere
            lazy_ok = (
                pkg == "common"
                and not top
                and (mod in ("torch", "scipy") or (mod == "accelerate" and f.name == "trackers.py"))
            )  # and accelerate lazily where a run starts the tracker it asked for
            if mod in THIRD_PARTY_FORBIDDEN[pkg] and not lazy_ok:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_table_itself_has_no_cycle():
    seen: dict[str, int] = {}

    def visit(p: str, stack: tuple[str, ...]) -> None:
        assert p not in stack, f"cycle: {' -> '.join((*stack, p))}"
        for q in ALLOWED[p]:
            visit(q, (*stack, p))

    for p in ALLOWED:
        visit(p, ())
        seen[p] = 1
    assert set(seen) == set(PACKAGES)


def _module_name(f: Path) -> str:
    rel = f.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_import_cycle_between_modules(pkg):
    """Modules of one package import each other without a cycle (module-level and lazy imports alike):
    llm.sft and llm.train once imported each other."""
    graph: dict[str, set[str]] = {}
    names = {_module_name(f): f for f in modules(pkg)}
    package = DIRS.get(pkg, pkg).replace("/", ".")
    for name, f in names.items():
        tree = ast.parse(f.read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                cands = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            deps |= {c for c in cands if c in names and c != name and c != package}
        graph[name] = deps
    state: dict[str, int] = {}

    def dfs(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in graph[n]:
            assert state.get(m) != 1, f"import cycle: {' -> '.join([*path, n, m])}"
            if m not in state:
                dfs(m, [*path, n])
        state[n] = 2

    for n in graph:
        if n not in state:
            dfs(n, [])


def test_the_edge_check_can_fail(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from sim.run import SimConfig\n    import torch\n")
    assert imports_of(f) == [("sim", 2, False), ("torch", 3, False)]
    f.write_text(
        "from entrolab.common.runio import x\nfrom entrolab import bench, cli\nimport entrolab.readme\n"
    )
    assert imports_of(f) == [
        ("common", 1, True),
        ("bench", 2, True),
        ("entrolab", 2, True),
        ("entrolab", 3, True),
    ]


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_importing_theory_loads_no_torch():
    mods = _imported_after("theory")
    assert "torch" not in mods and "numpy" in mods  # the check itself works: theory does import numpy


@pytest.mark.parametrize("forbidden", ["accelerate", "transformers", "sim", "llm"])
def test_importing_controllers_loads_no_trainer_code(forbidden):
    assert forbidden not in _imported_after("controllers")
