"""The simulator's run to disk: ``run(cfg, out)`` drives a ``Simulator`` (``sim.step``) through its steps
with the run lifecycle every entrolab run shares (``entrolab.common.rundir``: the lock, signals, resume with
the config diff named, metadata, metrics and trackers), and refuses before any work what cannot fit
(``memory_estimate_mb``). Re-exports the simulator's types, so ``from sim.run import Simulator`` keeps working.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from entrolab.common import rundir, trackers
from entrolab.common.runio import (
    atomic_save,
    atomic_write_json,
    available_mb,
    cannot_write,
    read_metrics_file,
)
from sim.config import DEFAULT_PASS_K, OPTIMIZERS, UPDATES, SimConfig, prompt_stages
from sim.step import SimState, Simulator

__all__ = ["DEFAULT_PASS_K", "OPTIMIZERS", "UPDATES", "Interrupted", "SimConfig", "SimState", "Simulator",
           "memory_estimate_mb", "memory_parts_mb", "prompt_stages", "read_metrics", "run"]  # fmt: skip


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped a run after a step; its checkpoint is saved and a rerun resumes."""

    def __init__(self, signum: int, step: int, out: Path):
        super().__init__(
            f"signal {signum} at step {step}: checkpoint saved in {out}; rerun the same command to resume"
        )
        self.signum, self.step, self.out = signum, step, out


MEMORY_FACTOR_EXACT = 20
"""float64 arrays of S × V per run that a step holds at its peak (measured 13-22 on the presets)"""
MEMORY_FACTOR_SAMPLED = 10
"""the same for each sampled token's V logits (P prompts × G samples × T tokens per run)"""


def memory_parts_mb(sim: Simulator) -> dict[str, float]:
    """One run's memory by part, in MB: ``exact`` (its S × V logits and a step's exact quantities),
    ``sampled`` (a sampled batch of P × G × T tokens over V actions) and ``policy`` (a policy class's
    parameters with their gradients and optimizer state)."""
    m, cfg = sim.model, sim.cfg
    parts = {"exact": m.n_states * m.n_actions * 8 * MEMORY_FACTOR_EXACT, "sampled": 0.0, "policy": 0.0}
    if cfg.update in ("grpo", "ppo"):
        parts["sampled"] = m.n_prompts * cfg.group_size * m.horizon * m.n_actions * 8 * MEMORY_FACTOR_SAMPLED
    if sim.policy is not None:
        parts["policy"] = sum(v.numel() for v in sim.policy.params(1).values()) * 8 * 4
    return {k: v / 2**20 for k, v in parts.items()}


def memory_estimate_mb(sim: Simulator) -> float:
    """About the memory a run of ``sim.cfg`` needs beyond the interpreter, in MB: ``runs`` × the parts of
    ``memory_parts_mb``. An estimate (within about 2× on the presets), used to refuse configurations that
    cannot fit before any work."""
    return sim.cfg.runs * sum(memory_parts_mb(sim).values())


def _too_big(sim: Simulator, free: float) -> str:
    """The one-line refusal of a configuration whose estimate exceeds 90% of ``free`` MB, naming the setting
    to lower: the number of runs, or (when one run alone cannot fit) the group size or the environment."""
    cfg, parts = sim.cfg, memory_parts_mb(sim)
    per, budget = sum(parts.values()), 0.9 * free
    need = cfg.runs * per
    tail = f"about {need:,.0f} MB needed, {free:,.0f} MB free on {sim.device.type}"
    if per <= budget:
        return f"runs: got {cfg.runs}; allowed: at most about {int(budget / per)} here ({tail})"
    if parts["sampled"] >= parts["exact"] + parts["policy"]:
        room = budget / cfg.runs - parts["exact"] - parts["policy"]
        g = int(room / parts["sampled"] * cfg.group_size) if room > 0 else 0
        return (
            f"group_size: got {cfg.group_size}; allowed: at most about {g} here (one run's sampled batch of "
            f"{sim.model.n_prompts} prompts × {cfg.group_size} responses × {sim.model.horizon} tokens over "
            f"{sim.model.n_actions} actions needs about {parts['sampled']:,.0f} MB; {tail})"
        )
    return (
        f"env_kwargs: got {cfg.env_kwargs}; allowed: a smaller environment here (one run of "
        f"{sim.model.n_states:,} states × {sim.model.n_actions} actions needs about {per:,.0f} MB; {tail})"
    )


def run(
    cfg: SimConfig, out: str | Path, *, resume: bool = True, progress: bool = True, tracker: str = "none"
) -> Path:
    """Run to ``out/metrics.jsonl`` + ``config.json`` (+ ``checkpoint.pt``); resumes a finished or
    interrupted run with the same config. Returns the output directory.

    Before any work it refuses, with a one-line ValueError: an ``out`` that cannot be written, a run there
    with another config (naming the fields that differ), an unreadable checkpoint, and a configuration
    whose memory estimate (``memory_estimate_mb``) exceeds what the device has free, and a ``tracker``
    (``entrolab.common.trackers``) that is not installed. SIGINT and SIGTERM finish the current step, save a
    checkpoint and raise ``Interrupted``; a second signal stops at once. A tracker gets, at every logged
    step, the mean over the live runs of every number in that step's rows (metrics.jsonl keeps each run)."""
    why = trackers.problem(tracker)
    if why is not None:
        raise ValueError(f"tracker: {why}")
    tracker = trackers.resolve(tracker)
    out = Path(out)
    why = cannot_write(out)
    if why is not None:
        raise ValueError(f"out_dir: cannot write to {str(out)!r} ({why}); allowed: a writable directory")
    fd = rundir.lock(
        out, "out_dir", "name", "a new --name"
    )  # a second simulator on this directory is refused
    try:
        return _run_locked(cfg, out, resume, progress, tracker)
    finally:
        os.close(fd)


def _saved_state(ckpt_path: Path, cfg: SimConfig, out: Path) -> dict:
    """The checkpoint's contents, checked before any work: readable, a dict with this config and a step."""
    try:
        saved = torch.load(ckpt_path, weights_only=False)
    except Exception as e:  # truncated or garbled: torch raises several kinds
        raise ValueError(
            f"out_dir: {ckpt_path} is unreadable ({type(e).__name__}: {str(e)[:80]}); allowed: --resume never to "
            "start over, or a new --name"
        ) from None
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("config"), dict)
        or type(saved.get("step")) is not int
    ):
        got = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(
            f"out_dir: {ckpt_path} is not a simulator checkpoint (got {got}; a config and an integer step are "
            "needed); allowed: --resume never to start over, or a new --name"
        )
    if saved["config"] != cfg.to_json():
        raise ValueError(
            f"out_dir: {str(out)!r} holds a run with another config ({rundir.changed_fields(saved['config'], cfg.to_json())}); "
            "allowed: the same config, --resume never to start over, or a new --name"
        )
    return saved


def _logged_steps(cfg: SimConfig, state: SimState) -> list[int]:
    """The steps before ``state.step`` whose rows metrics.jsonl must hold: the logged steps at which some run
    was still live (a stopped run's last row is that of the step it stopped at)."""
    last = -1
    for d in state.dead:
        last = max(last, state.step if d is None else int(d.split(":")[0].removeprefix("step ")))
    return [k for k in range(min(state.step, last + 1)) if k % cfg.log_every == 0 or k == cfg.steps - 1]


def _run_locked(cfg: SimConfig, out: Path, resume: bool, progress: bool, tracker: str) -> Path:
    sim = Simulator(cfg)
    need, free = memory_estimate_mb(sim), available_mb(sim.device)
    if free is not None and need > 0.9 * free:
        raise ValueError(_too_big(sim, free))
    cfg_path, metrics_path, ckpt_path = out / "config.json", out / "metrics.jsonl", out / "checkpoint.pt"
    meta = rundir.run_metadata(
        cfg.to_json(), fast_path=sim.fast, lr_used=sim.lr, lr_gain=sim.lr_gain,
        telemetry_scope="all runs (fast path)" if sim.fast else "per run",
    )  # fmt: skip
    state = sim.init_state()
    if resume and ckpt_path.exists():
        saved = _saved_state(ckpt_path, cfg, out)
        try:
            state = sim.load_state(saved)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
            raise ValueError(
                f"out_dir: {ckpt_path} holds a config and step but not this simulator's state ({type(e).__name__}: "
                f"{str(e)[:80]}); allowed: --resume never to start over, or a new --name"
            ) from None
        rows = read_metrics_file(metrics_path)[0] if metrics_path.exists() else []
        missing = rundir.missing_steps(rows, _logged_steps(cfg, state))
        if missing:
            raise ValueError(
                rundir.hole_message(
                    metrics_path,
                    missing,
                    f"checkpoint.pt (step {state.step})",
                    "--resume never to start over, or a new --name",
                )
            )
    elif metrics_path.exists():
        if resume and metrics_path.stat().st_size > 0:  # rows that no checkpoint continues
            before = json.loads(cfg_path.read_text()).get("config") if cfg_path.is_file() else None
            if before != cfg.to_json():
                what = (
                    "an unknown config"
                    if before is None
                    else f"another config ({rundir.changed_fields(before, cfg.to_json())})"
                )
                raise ValueError(
                    f"out_dir: {str(out)!r} holds the metrics of a run with {what} and no checkpoint.pt to continue; "
                    "allowed: --resume never to start over (discarding them), or a new --name"
                )
        metrics_path.unlink()
    atomic_write_json(meta, cfg_path)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=cfg.steps, initial=state.step, desc=f"sim {cfg.update}", unit="step", file=sys.stderr
        )
    signals = rundir.Signals("finishing this step, then saving a checkpoint").install()
    logger = trackers.start(tracker, out.name, out, cfg.to_json())
    try:
        with rundir.MetricsLog(out, state.step) as log:
            while state.step < cfg.steps and signals.signum is None:
                k = state.step
                logged = k % cfg.log_every == 0 or k == cfg.steps - 1
                meas = sim.step(state, measure=logged)
                if logged:
                    rows = _rows(k, meas, state, cfg)
                    for row in rows:
                        log.write(row)
                    if logger is not None and rows:
                        logger.log(trackers.mean_row(rows), step=k)
                due = cfg.checkpoint_every and (
                    state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps
                )
                if due or signals.signum is not None:
                    log.flush()
                    atomic_save(sim.state_dict(state), ckpt_path)
                if bar is not None:
                    bar.update(1)
                    if "entropy" in meas:
                        bar.set_postfix(
                            H=f"{float(meas['entropy'].mean()):.3f}",
                            succ=f"{float(meas['success'].mean()):.3f}",
                        )
    finally:
        signals.restore()
        if logger is not None:
            logger.finish()
        if bar is not None:
            bar.close()
    if signals.signum is not None:
        raise Interrupted(signals.signum, state.step, out)
    dead = [(i, d) for i, d in enumerate(state.dead) if d]
    for i, d in dead:
        print(f"run {i} stopped at {d}", file=sys.stderr)
    meta["dead_runs"] = {str(i): d for i, d in dead}
    atomic_write_json(meta, cfg_path)
    return out


def _rows(step: int, meas: dict, state: SimState, cfg: SimConfig) -> list[dict]:
    """One step's metrics rows: one per run still live (or stopped at this step)."""
    keys = [k for k in meas if k != "batch"]
    cols = {k: meas[k].detach().cpu().tolist() for k in keys}
    rows = []
    for i in range(cfg.runs):
        if state.dead[i] is not None and not state.dead[i].startswith(f"step {step}:"):
            continue
        rows.append({"step": step, "run": i, **{k: cols[k][i] for k in keys}, **meas["batch"][i]})
    return rows


read_metrics = rundir.read_metrics
"""The rows of a run's ``metrics.jsonl`` (a torn last line left out)."""
