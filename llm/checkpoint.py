"""The trainer's checkpoints: ``RUN/checkpoints/step_NNNNNN``, each written in a temporary directory renamed
at once, with ``trainer.json`` (the step, the controllers' state, the non-finite-step counters, the entropy
law's history, the config, and every file's size and sha256) beside accelerate's model, optimizer, scheduler
and RNG files.

- ``read_checkpoint(path)``: its ``trainer.json`` and None, or None and what makes it unusable, in words;
- ``choose(run_dir, ...)``: before any work, the newest checkpoint whose metrics rows are all there, the
  broken ones skipped and said so, and a refusal when metrics exist that no checkpoint continues;
- ``save(trainer)`` and ``load(trainer, path)``: what ``Trainer.save_checkpoint``/``load_checkpoint`` do.
  A resume refuses another config, naming each field that changed (``rundir.changed_fields``) except those
  in ``RESUMABLE_CHANGES``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from entrolab.common import rundir
from entrolab.common.runio import file_sha256, read_metrics_file
from llm.config import TrainConfig

RESUMABLE_CHANGES = {"steps", "eval_every", "checkpoint_every", "keep_checkpoints", "resume", "tracker",
                     "max_bad_steps"}  # fmt: skip
"""fields that may change when a run is resumed (they do not change what a step computes)"""

CHECKPOINT_KEYS = {
    "step": int, "controller_state": dict, "bad_in_row": int, "bad_total": int, "history": list, "config": dict,
}  # fmt: skip
"""what ``trainer.json`` must hold, with the types ``load`` reads"""

RESTART = "--resume never (start over, discarding {what}), or a new --name"


def read_checkpoint(path: Path) -> tuple[dict | None, str | None]:
    """(``trainer.json``, None) for a usable checkpoint directory; (None, why) when ``trainer.json`` is missing,
    not JSON, or without a key ``load`` reads (``CHECKPOINT_KEYS``, with its type), or a file it lists (the
    model, optimizer, scheduler and RNG files, with their sizes and sha256 at save time) is missing, of another
    size (a truncated write) or of other contents (overwritten or corrupted on disk)."""
    info_path = path / "trainer.json"
    if not info_path.is_file():
        return None, "no trainer.json (an interrupted save)"
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, f"trainer.json is not JSON ({e})"
    if not isinstance(info, dict):
        return None, f"trainer.json holds a {type(info).__name__}, not an object"
    for key, kind in CHECKPOINT_KEYS.items():
        if key not in info:
            return None, f"trainer.json has no {key!r}"
        if not isinstance(info[key], kind) or isinstance(info[key], bool):
            return None, f"trainer.json's {key!r} is a {type(info[key]).__name__}, not a {kind.__name__}"
    if info["step"] < 0:
        return None, f"trainer.json's step is {info['step']}"
    files = info.get("files")
    if files is None:  # written before the manifest existed: the files accelerate always writes
        files = {n: None for n in ("pytorch_model.bin", "optimizer.bin", "scheduler.bin")}
    digests = info.get("sha256") or {}
    if not isinstance(files, dict) or not isinstance(digests, dict):
        return None, "trainer.json's file manifest is not an object"
    for name, size in files.items():
        f = path / str(name)
        if not f.is_file():
            return None, f"{name} is missing"
        if size is not None and f.stat().st_size != size:
            return None, f"{name} has {f.stat().st_size} bytes, {size} when saved"
        if name in digests and file_sha256(f) != digests[name]:
            return None, f"{name} differs from what was saved (its sha256 changed)"
    return info, None


def checkpoint_problem(path: Path) -> str | None:
    """What makes a checkpoint directory unusable, in words, or None (``read_checkpoint``)."""
    return read_checkpoint(path)[1]


def choose(run_dir: Path, skipped: list[str], announce: bool) -> Path | None:
    """The checkpoint to resume from: the newest usable one whose metrics rows (the steps before it) are all
    in ``metrics.jsonl``. Each one passed over is appended to ``skipped`` with why (and printed when
    ``announce``). Refused in one line: metrics that no usable checkpoint continues."""
    root = run_dir / "checkpoints"
    found = sorted(root.glob("step_*"), reverse=True) if root.is_dir() else []
    metrics = run_dir / rundir.METRICS
    rows, _ = read_metrics_file(metrics) if metrics.is_file() else ([], "")  # a corrupt line stops here
    chosen, hole = None, None
    for p in found:
        info, why = read_checkpoint(p)
        if info is not None:  # the metrics it continues must all be there
            missing = rundir.missing_steps(rows, range(info["step"]))
            if not missing:
                chosen = p
                break
            hole = hole or (p, missing)
            why = f"metrics.jsonl lacks {len(missing)} of the {info['step']} rows before it"
        skipped.append(f"{p.name}: {why}")
    if skipped and announce:
        for line in skipped:
            print(f"resume: skipped checkpoint {line}", file=sys.stderr)
    if chosen is None and hole is not None:
        raise ValueError(
            rundir.hole_message(
                metrics, hole[1], f"checkpoint {hole[0].name}", RESTART.format(what="the checkpoints")
            )
        )
    if chosen is None and rows:
        why = f"; skipped {'; '.join(skipped)}" if skipped else ""
        raise ValueError(
            f"resume: {metrics} holds {len(rows)} metric rows but no usable checkpoint{why}; allowed: "
            + RESTART.format(what="them")
        )
    return chosen


def save(trainer) -> Path:
    """The trainer's model, optimizer, scheduler and RNGs (accelerate) + ``trainer.json``, in a temporary
    directory renamed at once; the oldest beyond ``keep_checkpoints`` removed."""
    acc, root = trainer.acc, trainer.run_dir / "checkpoints"
    final = root / f"step_{trainer.step:06d}"
    tmp = root / f".tmp_step_{trainer.step:06d}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp), safe_serialization=False)
    acc.wait_for_everyone()  # every rank's RNG file is in tmp before the rename
    if acc.is_main_process:
        saved = [f for f in sorted(tmp.iterdir()) if f.is_file()]
        info = {
            "step": trainer.step, "controller_state": trainer.ctrl_state, "bad_in_row": trainer.bad_in_row,
            "bad_total": trainer.bad_total, "history": trainer.history, "config": trainer.cfg.to_json(),
            "files": {f.name: f.stat().st_size for f in saved},
            "sha256": {f.name: file_sha256(f) for f in saved},
        }  # fmt: skip
        (tmp / "trainer.json").write_text(json.dumps(info))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        old = sorted(p for p in root.glob("step_*") if p != final)
        for p in old[: max(0, len(old) + 1 - trainer.cfg.keep_checkpoints)]:
            shutil.rmtree(p, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def load(trainer, path: Path) -> None:
    """Restore the trainer from ``path``; another config (beyond ``RESUMABLE_CHANGES``) is refused, naming each
    field that changed."""
    info = json.loads((path / "trainer.json").read_text())
    defaults = {f.name: _as_json(f.default) for f in dataclasses.fields(TrainConfig)}
    diff = rundir.changed_fields(
        info["config"], trainer.cfg.to_json(), ignore=RESUMABLE_CHANGES, defaults=defaults
    )
    if diff:
        raise ValueError(
            f"resume: {trainer.run_dir} holds a run with another config ({diff}); allowed: the same config "
            f"(only {sorted(RESUMABLE_CHANGES)} may change), a new --name, or --resume never"
        )
    try:
        trainer.acc.load_state(str(path))
    except Exception as e:  # a checkpoint saved before its files had digests, corrupted since
        raise ValueError(
            f"resume: checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:80]}); allowed: "
            "--resume never (start over), or a new --name"
        ) from None
    trainer.step, trainer.ctrl_state = info["step"], info["controller_state"]
    trainer.bad_in_row, trainer.bad_total = info["bad_in_row"], info["bad_total"]
    trainer.history = [tuple(h) for h in info["history"]]


def _as_json(value):
    """A field's default as ``TrainConfig.to_json`` writes it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value
