"""Controller state in an engine's checkpoint, shared by the TRL adapter and verl's trainer mode: one JSON
file, ``entrolab_state.json``, holding ``{"<engine>": version, "state": {"sampling": ..., "loss": ...}}``,
written atomically beside the engine's own files and checked against the pipeline on resume."""

from __future__ import annotations

import json
from pathlib import Path

from entrolab.common.runio import atomic_write_json

STATE_FILE = "entrolab_state.json"


def save(folder: Path, engine: str, version: str, state: dict) -> None:
    atomic_write_json({engine: version, "state": state}, Path(folder) / STATE_FILE)


def load(folder: Path, current: dict, *, option: str, keeps_state: bool, written_by: str) -> dict:
    """The state saved in ``folder``, or ``current`` when there is none and nothing needs it. Refused in
    one line, naming ``option``: a missing file while the pipeline ``keeps_state`` (allowed: ``written_by``),
    or a file of another pipeline (its halves' controller keys differ from ``current``'s)."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        if keeps_state:
            raise ValueError(
                f"{option}: {folder} has no {STATE_FILE}, and the pipeline's controllers keep state; allowed: "
                f"{written_by}"
            )
        return current
    saved = json.loads(path.read_text())["state"]
    for half in ("sampling", "loss"):
        if set(saved.get(half, {})) != set(current[half]):
            raise ValueError(
                f"{option}: {path} holds state for {sorted(saved.get(half, {}))}; allowed: the same pipeline "
                f"({sorted(current[half])})"
            )
    return saved
