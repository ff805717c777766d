"""``python -m sim verify``: the simulator-side checks of docs/theory.md §5, with a verdict in words.

Same verdicts and table as ``python -m theory verify`` (``entrolab.common.verdict.Row``; docs/verdicts.md). Rows with
``must_hold`` are identities of the implementation (the exact step, Lemma 1 on the simulator's own steps,
the sampled-step identities); if one fails, ``verify`` exits 1. The other rows test claims the papers make
about training dynamics, by paired comparisons over runs (``entrolab.common.verdict.judge``): "holds", "fails"
(the interval excludes the claimed effect), "inconclusive" (neither), "approximate" for an empirical law
that fits. Most of those claims concern LLMs, whose parameters are shared across prompts and tokens; in a
tabular softmax a constant baseline leaves the expected update unchanged, so such rows measure what the
claim needs beyond a tabular policy.

Every row runs the simulator itself (``sim.run.Simulator``: the exact DP and the sampled updates through
``controllers.policy_loss``), on seeds drawn from the row's own generator. The checks live in
``sim.checks`` (one module per topic, registered where defined); the claims matrix in ``sim.matrix``.
"""

from __future__ import annotations

from entrolab.common import parallel, verdict
from sim.checks import REGISTRY, Context, trajectory, warm_start

CHECKS = REGISTRY.table()
"""{row id: check(rng, ctx)}, in row order"""

__all__ = ["CHECKS", "REGISTRY", "Context", "run_all", "trajectory", "warm_start"]


def _one_check(seed: int, rid: str) -> list:
    return run_all(seed=seed, only=[rid])


def run_all(
    seed: int = 0, only=None, progress=None, ctx: Context | None = None, registry=None, workers: int = 1
) -> list:
    """``entrolab.common.verdict.run_all`` over the simulator's checks (or ``registry``'s), each with ``ctx`` (a
    fresh default ``Context`` per check when None: each config's own policy). ``workers`` > 1 (default
    checks and context only): the checks run on that many processes at once (``entrolab.common.parallel``), the
    same rows (each check has its own seed), and ``progress(id + " done")`` after each instead of
    ``progress(id)`` before."""
    parallel.check_workers(workers)
    if workers > 1 and ctx is None and registry is None:
        verdict.check_only(CHECKS, only)
        ids = [rid for rid in CHECKS if not only or rid in only]

        def finished(i: int, _rows) -> None:
            if progress:
                progress(f"{ids[i]} done")

        return [row for rows in parallel.map_tasks(_one_check, [(seed, r) for r in ids], workers, finished)
                for row in rows]  # fmt: skip
    registry = REGISTRY if registry is None else registry

    def bind(fn):
        return lambda rng: fn(rng, Context() if ctx is None else ctx)

    table = {rid: bind(c.fn) for rid, c in registry.checks.items()}
    return verdict.run_all(table, seed=seed, only=only, progress=progress)
