"""``python -m theory verify``: every entropy-change claim checked numerically, with a verdict in words.

Each check draws random softmax policies (a mix of near-uniform, moderate and near-deterministic
logits), measures the claim, and returns a ``Row``. Verdicts:
  holds                           the claim is true in every instance, within the stated tolerance;
  holds only for the surrogate    true of the quantity the paper analyses, false of the actual update;
  approximate                     an empirical law: fits, with the error shown, but is no identity;
  fails                           measured false.
A row with ``must_hold`` is an identity of the implementation; if it fails, ``verify`` exits non-zero.
The claims and their sources are listed in docs/theory.md §5.
"""

from __future__ import annotations

from entrolab.common.verdict import (
    APPROX,
    FAILS,
    HOLDS,
    SURROGATE,
    Row,
    format_table,
    jsonable,
    row_from_json,
    to_json,
)
from entrolab.common.verdict import run_all as _run_all
from theory.checks import REGISTRY, random_logits

CHECKS = REGISTRY.table()
"""{row id: check(rng)}, in row order (the checks live in ``theory.checks``, one module per topic)"""

__all__ = ["APPROX", "CHECKS", "FAILS", "HOLDS", "REGISTRY", "SURROGATE", "Row", "format_table", "jsonable",
           "random_logits", "row_from_json", "run_all", "to_json"]  # fmt: skip


def run_all(seed: int = 0, only: list[str] | None = None, progress=None) -> list:
    """``entrolab.common.verdict.run_all`` over the theory checks."""
    return _run_all(CHECKS, seed, only, progress)
