"""The claims matrix: the training-dynamics claims of ``python -m sim verify`` re-run on every policy class
(``python -m sim verify --matrix``; figure 17). Each (claim, class) cell runs the check with an explicit
``Context``; finished cells are cached by seed, step-size rule and code fingerprint, so an interrupted
matrix resumes."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from entrolab.common import parallel
from entrolab.common.runio import atomic_write_json, code_fingerprint
from entrolab.common.verdict import Row, jsonable, row_from_json
from sim.checks import REGISTRY, Context
from sim.verify import run_all


def matrix_claims(registry=None) -> tuple[str, ...]:
    """The matrix's default claims: the checks registered with ``matrix=True``."""
    registry = REGISTRY if registry is None else registry
    return tuple(rid for rid, c in registry.checks.items() if c.flags.get("matrix"))


MATRIX_POLICIES = {  # from the cheapest class to the costliest: never-timed cells are handed out costliest first
    "tabular": ("tabular", {}),
    "loglinear": ("loglinear", {"d": 16}),
    "loglinear-structured": ("loglinear", {"d": 16, "features": "structured"}),
    "lowrank": ("lowrank", {"rank": 4}),
    "mlp": ("mlp", {"hidden": 32}),
    "transformer": ("transformer", {"d": 16, "heads": 2, "layers": 1}),
}


@dataclasses.dataclass
class MatrixCell:
    """One (claim row, policy class) of the matrix; ``row`` is None where the check's environment does not
    fit the class (``why`` says so)."""

    claim_id: str
    policy: str
    row: Row | None
    why: str = ""
    lr_gain: tuple = ()
    """(min, max) of the kernel gain ρ over the check's simulators when the step size was calibrated
    (each ran at lr/ρ); () without calibration"""


def _cell_file(cache_dir: Path, rid: str, label: str, seed: int, calibrate: bool) -> Path:
    return cache_dir / f"{rid}-{label}-{'calibrated' if calibrate else 'same'}-seed{seed}.json"


def _read_cell_file(path: Path, code: str) -> tuple[list[MatrixCell] | None, float | None]:
    """(the cells saved at ``path`` by the same code, or None: missing, other code, unreadable; the seconds
    the saved cell took to compute, whatever code saved it, or None): one read of the file. The seconds
    are the cost estimate by which ``run_matrix`` hands out the longest cells first."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(saved, dict):
        return None, None
    seconds = saved.get("seconds")
    seconds = float(seconds) if isinstance(seconds, (int, float)) and math.isfinite(seconds) else None
    if saved.get("code") != code:
        return None, seconds
    out = []
    for c in saved["cells"]:
        row = None if c["row"] is None else row_from_json(c["row"])
        out.append(MatrixCell(c["claim_id"], c["policy"], row, c["why"], tuple(c["lr_gain"])))
    return out, seconds


def _save_cells(path: Path, code: str, cells: list[MatrixCell], seconds: float | None = None) -> None:
    payload = {"code": code, "seconds": seconds, "cells": [
        {"claim_id": c.claim_id, "policy": c.policy, "row": None if c.row is None else dataclasses.asdict(c.row),
         "why": c.why, "lr_gain": list(c.lr_gain)} for c in cells]}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(jsonable(payload), path)


def _timed_cell(*args, registry=None) -> tuple[list[MatrixCell], float]:
    """``_run_cell`` and its wall-clock seconds (module-level: a worker process runs it)."""
    t0 = time.perf_counter()
    cells = _run_cell(*args, registry=registry)
    return cells, time.perf_counter() - t0


def _run_cell(rid: str, label: str, seed: int, calibrate_lr: bool, registry=None) -> list[MatrixCell]:
    """The cells of one (check, policy class): one per row the check gives, or one with ``row`` None where the
    class does not fit the check's environment. Module-level: a worker process runs it (``workers``)."""
    policy, kwargs = MATRIX_POLICIES[label]
    ctx = Context(policy=policy, policy_kwargs=dict(kwargs), calibrate_lr=bool(calibrate_lr))
    try:
        rows = run_all(seed=seed, only=[rid], ctx=ctx, registry=registry)
    except ValueError as e:  # the class does not fit the check's environment
        return [MatrixCell(rid, label, None, str(e))]
    if ctx.simulators == 0:
        raise RuntimeError(f"check {rid} is registered shared=True but ran no simulator through its context")
    span = (min(ctx.gains), max(ctx.gains)) if calibrate_lr and ctx.gains else ()
    return [MatrixCell(r.id, label, r, lr_gain=span) for r in rows]


def run_matrix(
    seed: int = 0,
    claims=None,
    policy_labels=None,
    progress=None,
    calibrate_lr: bool = False,
    cache_dir: str | Path | None = None,
    registry=None,
    workers: int = 1,
) -> list[MatrixCell]:
    """Re-run the claims in ``claims`` with every policy class (each check's own seeds, so the cells of one
    claim are paired across classes). A check whose environment the class does not fit gives cells with
    ``row`` None. ``calibrate_lr``: every simulator runs with ``SimConfig.calibrate_lr`` (each parametric
    class's step divided by its kernel gain at the start, so that classes learn at comparable speeds).
    ``cache_dir``: each finished (check, class) is saved there atomically and reused by a later call with
    the same seed, step-size rule and code (``code_fingerprint``), so an interrupted matrix resumes.
    Each check gets an explicit ``Context`` (policy class, step-size rule); only checks registered with
    ``shared=True`` run, and one that never passed a config through its context is an error, not a
    silently tabular cell. ``registry``: another table of checks (tests; it runs in this process).
    ``workers``: (check, class) cells run on that many processes at once (``entrolab.common.parallel``; every
    cell has its own seeds, so the cells are the same whatever the count). With ``cache_dir`` each saved cell
    also records its seconds, and the next call (whatever its code) hands out the cells that took longest
    first, so that no long cell starts last; cells never timed (all of them without ``cache_dir``) go
    first, the costliest class first. The cells returned keep their order. ``progress(msg)`` after each."""
    registry_given = registry is not None
    registry = REGISTRY if registry is None else registry
    claims = list(matrix_claims(registry) if claims is None else claims)
    labels = list(policy_labels or MATRIX_POLICIES)
    shared = [rid for rid, c in registry.checks.items() if c.flags.get("shared")]
    unknown = sorted(set(claims) - set(registry.checks)) + sorted(set(labels) - set(MATRIX_POLICIES))
    if unknown:
        raise ValueError(
            f"matrix: unknown {unknown}; allowed: claims {' '.join(shared)}, policies {' '.join(MATRIX_POLICIES)}"
        )
    tabular_only = [rid for rid in claims if rid not in shared]
    if tabular_only:
        raise ValueError(
            f"matrix: {tabular_only} do not run on shared parameters; allowed: claims {' '.join(shared)}"
        )
    parallel.check_workers(workers)
    code = code_fingerprint() if cache_dir is not None else ""
    done: dict[tuple[str, str], list[MatrixCell]] = {}
    todo: list[tuple[str, str]] = []
    took: dict[tuple[str, str], float | None] = {}
    paths: dict[tuple[str, str], Path] = {}
    for rid in claims:  # claim-major: one claim's cells, similar in cost, together (then longest first)
        for label in labels:
            if cache_dir is not None:
                paths[rid, label] = _cell_file(Path(cache_dir), rid, label, seed, calibrate_lr)
                saved, took[rid, label] = _read_cell_file(paths[rid, label], code)
            else:
                saved, took[rid, label] = None, None
            if saved is not None:
                done[rid, label] = saved
                if progress:
                    progress(f"{rid}/{label} (saved)")
            else:
                todo.append((rid, label))
    # longest first, by the time each cell took last (any code); cells never timed first, their classes
    # from the costliest (MATRIX_POLICIES lists them from the cheapest). Stable: ties claim-major.
    rank = {label: i for i, label in enumerate(MATRIX_POLICIES)}
    todo.sort(key=lambda cell: (0, -rank[cell[1]]) if took[cell] is None else (1, -took[cell]))

    def finished(i: int, got: tuple[list[MatrixCell], float]) -> None:
        rid, label = todo[i]
        done[rid, label], seconds = got
        if cache_dir is not None:
            _save_cells(paths[rid, label], code, done[rid, label], seconds)
        if progress:
            progress(f"{rid}/{label} done")

    if registry_given:  # a table of checks made in this process: run here
        fn, workers = (lambda rid, label, *a: _timed_cell(rid, label, *a, registry=registry)), 1
    else:
        fn = _timed_cell
    parallel.map_tasks(fn, [(rid, label, seed, calibrate_lr) for rid, label in todo], workers, finished)
    cells = [c for label in labels for rid in claims for c in done[rid, label]]  # label-major, as printed
    # a check that did not fit a class stands for every row id the check gives on the other classes
    out = []
    for c in cells:
        subs = list(
            dict.fromkeys(
                d.claim_id for d in cells if d.row is not None and d.claim_id.startswith(c.claim_id)
            )
        )
        if c.row is None and subs:
            out.extend(MatrixCell(sid, c.policy, None, c.why) for sid in subs)
        else:
            out.append(c)
    return out


def format_matrix(cells: list[MatrixCell]) -> str:
    """Claim × policy class: verdict and the row's measured number (``worst``), — where it does not fit."""
    labels = list(dict.fromkeys(c.policy for c in cells))
    ids = list(dict.fromkeys(c.claim_id for c in cells if c.row is not None))
    by = {(c.claim_id, c.policy): c for c in cells}
    claim_of = {c.claim_id: c.row.claim for c in cells if c.row is not None}
    w = 26
    lines = [f"{'claim':<6}" + "".join(f"{lab[:w]:>{w + 1}}" for lab in labels)]
    lines.append("-" * len(lines[0]))
    for rid in ids:
        cell_txt = []
        for lab in labels:
            c = by.get((rid, lab))
            if c is None or c.row is None:
                cell_txt.append("—")
            else:
                sp = f" ± {c.row.spread:.2g}" if math.isfinite(c.row.spread) else ""
                cell_txt.append(f"{c.row.verdict[:6]} {c.row.worst:+.3g}{sp}")
        lines.append(f"{rid:<6}" + "".join(f"{t:>{w + 1}}" for t in cell_txt))
    lines.append("-" * len(lines[0]))
    lines.append(
        "cell: verdict, the row's measured number ± its standard error across seeds (of a paired difference"
    )
    lines.append(
        "where it is one; none where the number is a worst case); the JSON has each row's tolerance and full "
        "measurement"
    )
    gain = {}
    for c in cells:
        if c.lr_gain:
            lo, hi = gain.get(c.policy, (math.inf, -math.inf))
            gain[c.policy] = (min(lo, c.lr_gain[0]), max(hi, c.lr_gain[1]))
    if gain:
        lines.append(
            "step sizes calibrated: each simulator ran at lr/ρ, ρ = its class's kernel gain at the start; ρ by "
            "class: " + ", ".join(f"{k} {lo:.3g}–{hi:.3g}" for k, (lo, hi) in gain.items())
        )
    for rid in ids:
        lines.append(f"{rid}: {claim_of[rid]}")
    gaps = sorted({(c.claim_id, c.policy, c.why) for c in cells if c.row is None})
    for rid, lab, why in gaps:
        lines.append(f"— {rid}/{lab}: {why}")
    return "\n".join(lines)


def matrix_json(cells: list[MatrixCell], seed: int, calibrate_lr: bool = False) -> str:
    """{"seed", "calibrate_lr", "rows": one per (claim, policy): the row's fields (``worst`` the measured
    number, ``spread`` its standard error, ``tolerance``, ``verdict``) plus ``policy``, ``policy_class``,
    ``policy_kwargs`` and ``lr_gain`` ([min, max] ρ when calibrated)}; strict JSON (nan → null)."""
    rows = []
    for c in cells:
        base = {"claim_id": c.claim_id, "policy": c.policy, "policy_class": MATRIX_POLICIES[c.policy][0],
                "policy_kwargs": MATRIX_POLICIES[c.policy][1], "lr_gain": list(c.lr_gain) or None}  # fmt: skip
        if c.row is None:
            rows.append({**base, "verdict": None, "why": c.why})
        else:
            rows.append({**base, **dataclasses.asdict(c.row), "ok": c.row.ok})
    payload = {"seed": seed, "calibrate_lr": bool(calibrate_lr), "rows": rows}
    return json.dumps(jsonable(payload), indent=2, default=float)
