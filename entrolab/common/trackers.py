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


class Tracker:
    """A started accelerate tracker mirroring a run's metrics: ``log(row, step)`` sends the row's finite
    numbers, ``finish()`` closes it. The simulator and the trainer (its main process) both log through it."""

    def __init__(self, name: str, run_name: str, logging_dir, config: dict):
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS  # lazily: a tracker is optional

        cls = LOGGER_TYPE_TO_CLASS[name]
        self._t = cls(run_name, str(logging_dir)) if cls.requires_logging_directory else cls(run_name)
        self._t.start()
        self._t.store_init_configuration(
            {k: str(v) for k, v in config.items()}
        )  # strings: every tracker takes them

    def log(self, row: dict, step: int) -> None:
        numbers = {k: float(v) for k, v in row.items() if _finite_number(v) and k != "step"}
        if numbers:
            self._t.log(numbers, step=step)

    def finish(self) -> None:
        self._t.finish()


def start(name: str, run_name: str, logging_dir, config: dict) -> Tracker | None:
    """The tracker ``name`` (already resolved: ``resolve``), started, or None for "none"."""
    return None if name == "none" else Tracker(name, run_name, logging_dir, config)


def mean_row(rows: list[dict]) -> dict[str, float]:
    """The mean over rows (the simulator's runs at one step) of every finite number, "step" and "run" aside."""
    out = {}
    for k in rows[0] if rows else ():
        if k in ("step", "run"):
            continue
        vals = [r[k] for r in rows if _finite_number(r.get(k))]
        if vals:
            out[k] = float(sum(vals) / len(vals))
    return out


def _finite_number(v) -> bool:
    import math

    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
