"""figures: the theory figures, reproduced from the closed forms (theory/) and the simulator (sim/).

One script per figure, ``figures/figNN_slug.py``: its docstring is the caption and names the theorem or
claim it checks; ``compute()`` is separate from ``plot()``; each writes a PNG, a tidy CSV and a JSON of
metadata (claim, verdict, finding, settings). ``python -m figures`` regenerates all of them.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

_PATTERN = re.compile(r"^fig(\d\d)_[a-z0-9_]+$")


def modules() -> dict[int, str]:
    """{figure number: module name}, from the ``figNN_slug.py`` files of this package."""
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        m = _PATTERN.match(info.name)
        if m:
            found[int(m.group(1))] = info.name
    return dict(sorted(found.items()))


def load(number: int):
    mods = modules()
    if number not in mods:
        raise ValueError(f"figure: got {number}; allowed: {', '.join(map(str, mods))}")
    return importlib.import_module(f"figures.{mods[number]}")
