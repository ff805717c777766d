"""Experiment trackers: which ones a run may log to, what each needs installed, and the choice of "auto".

The trainer and the simulator both log through Hugging Face accelerate's trackers; ``metrics.jsonl`` stays
the source of truth, and a tracker only mirrors it. A tracker whose package is missing is refused before
any work, naming the package. Importable without torch (names and package checks only).
"""

from __future__ import annotations

import importlib.util

PACKAGES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "trackio": "trackio",
    "comet_ml": "comet_ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
}
"""every tracker accelerate supports (its name there) → the package it needs"""
ALIASES = {"comet": "comet_ml"}
CHOICES = ("auto", "none", *PACKAGES, *ALIASES)


def installed(name: str) -> bool:
    return importlib.util.find_spec(PACKAGES[name]) is not None


def resolve(name: str) -> str:
    """The tracker to use: an alias's accelerate name; "auto" is tensorboard when installed, else none."""
    name = ALIASES.get(name, name)
    if name == "auto":
        return "tensorboard" if installed("tensorboard") else "none"
    return name


def problem(name: str) -> str | None:
    """Why ``name`` cannot be used here ("allowed: ..." included), or None."""
    if name not in CHOICES:
        return f"got {name!r}; allowed: {', '.join(CHOICES)}"
    real = resolve(name)
    if real == "none":
        return None
    if importlib.util.find_spec("accelerate") is None:
        return f"got {name!r}, which logs through accelerate (not installed); allowed: pip install accelerate, or none"
    if installed(real):
        return None
    have = [t for t in PACKAGES if installed(t)]
    return (
        f"got {name!r}, whose package {PACKAGES[real]} is not installed; allowed: pip install {PACKAGES[real]}, "
        f"or one of: none, auto{''.join(', ' + t for t in have)}"
    )
