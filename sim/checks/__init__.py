"""The checks of ``python -m sim verify``, one module per topic, each check registered where it is defined
(``sim.checks._base.REGISTRY``). The topics are imported in row order, M1 first: the order gives each check
its child seed, so a row's numbers do not depend on which other rows run (a test keeps the order)."""

import importlib

from sim.checks._base import REGISTRY, Context, trajectory, warm_start

TOPICS = ("steps", "exploration", "control", "training", "methods", "kernel", "qae")
"""M1-M4, M5-M7, M8-M9, M10-M12, M13-M20, M21, M22"""

for _topic in TOPICS:
    importlib.import_module(f"sim.checks.{_topic}")

__all__ = ["REGISTRY", "TOPICS", "Context", "trajectory", "warm_start"]
