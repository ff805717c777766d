"""python -m llm.train: GRPO-style RL of a causal LM, with the loss of a pipeline of entrolab controllers.

    python -m llm.train --preset tiny-copy
    python -m llm.train --preset tiny-copy --name clipcov --controllers grpo ppo_clip clip_cov \\
        --hp clip_cov.frac=0.002
    accelerate launch --num_processes 2 -m llm.train --preset tiny-arith

Deviations and choices, stated first:
- **Controllers always see the whole optimizer batch.** With ``micro_batch_size`` smaller than the
  batch, a no-grad pass computes log-probs and entropies of every sequence, ``controllers.policy_loss``
  runs once on the whole batch with those values as autograd leaves, and each micro-batch is then
  re-run with gradient and back-propagated against the leaves' gradients. By the chain rule this is
  the full-batch gradient exactly, and top-k/quantile selections (Clip-Cov, KL-Cov, 80/20) mean the
  same at every batch layout (verl selects per micro-batch; docs/engines.md).
- **Across processes** selections are global through ``controllers.dist`` (an accelerate gather), the
  statistics handed to stateful controllers are averaged over ranks, and the local loss is rescaled so
  that DDP's gradient average equals the loss normalised over all ranks' tokens (or sequences).
- Exact on-policy (``epochs = minibatches = 1``): no separate old-log-prob pass; ``old_logp`` is the
  detached current log-prob. Off-policy: one no-grad pass after the rollout provides ``old_logp``.
- Randomness is a function of (seed, step, rank): data, sampling and Clip-Cov's subsets. With the
  optimizer, scheduler, controller state and RNGs in the checkpoint, a resumed CPU run reproduces the
  uninterrupted run's metrics exactly.

Per rollout: sample → reward → [old-logp pass] → optimizer step(s) through ``controllers.policy_loss``
→ controller ``step`` → realised ΔH → metrics.jsonl (+ a tracker) → checkpoint.

Passes over the rollout's B sequences per rollout, besides generation (one prefill, then one forward of
one token per new position: ``llm.kvdecode.KVDecoder.step`` for Llama and Qwen2, else the model's own), with
E epochs × M minibatches and k micro-batch pieces per optimizer batch:

    mode                          no-grad passes                          forward + backward
    on-policy, k = 1              1 (realised ΔH)                         1
    on-policy, k > 1              2 (the leaves' pre-pass, realised ΔH)   1
    off-policy                    1 (old log-probs) + E·[k > 1] + 1 (ΔH)  E (M minibatches each)
    top_p < 1                     + 1 on-policy (the nucleus log-mass; off-policy it rides on the old-log-prob pass)
    reference model (ref_kl)      + 1 of the reference model
    measure_dH = False            − 1 (no realised ΔH; with dH_every = N, − 1 on N − 1 rollouts of every N)

With k > 1 the pieces build the entropy's graph only when the loss reads the entropy; with k = 1 it is
always built (backward only walks it when the loss reads it; it costs memory). Every ``eval_every``
rollouts the held-out evaluation generates eval_prompts × eval_samples completions and makes one more
no-grad pass for their entropies.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

import controllers as C
from controllers.agg import masked_mean
from entrolab.common import rundir, trackers
from entrolab.common.cli import prog as entrolab_prog
from entrolab.common.rundir import disk_full_message
from entrolab.common.runio import (
    atomic_write_json,
    peak_rss_mb,
)
from llm import checkpoint
from llm.checkpoint import RESUMABLE_CHANGES, checkpoint_problem  # noqa: F401  (re-exported)
from llm.config import TrainConfig, parse_command
from llm.evaluate import evaluate
from llm.rollout import add_guides, answer_ids, prefix_steps, sample
from llm.setup import SetupMixin
from llm.tasks import Example, get_task_for
from llm.update import Diverged, UpdateMixin, _finite, _nan0, _seed  # noqa: F401  (Diverged re-exported)
from theory import fit_entropy_law

LAW_MIN_POINTS = 5


class Trainer(SetupMixin, UpdateMixin):
    """Holds the model, optimizer, controllers and run files; ``run()`` trains to ``cfg.steps``."""

    def __init__(self, cfg: TrainConfig, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.run_dir = cfg.run_dir
        # SIGINT/SIGTERM from here on are recorded, not fatal: a signal during set-up (the warm start, the
        # process group, loading) stops the run at the first rollout boundary, on every rank together
        self.signals = rundir.Signals(
            "stopping after this rollout (or set-up), then saving a checkpoint",
            announce=lambda: getattr(self, "acc", None) is None or self.acc.is_main_process,
        )
        self.task = get_task_for(cfg)  # bad data fails here, before anything is written
        created = not self.run_dir.exists()
        self._lock = rundir.lock(self.run_dir, "out_dir", "name", "a new --name") if _is_main_rank() else None
        self.signals.install()
        try:
            self.skipped: list[str] = []  # checkpoints passed over when resuming, with why
            self.resume_from = (
                checkpoint.choose(self.run_dir, self.skipped, _is_main_rank())
                if cfg.resume == "auto"
                else None
            )
            self._setup(cfg)
        except BaseException:
            self.release()
            if created and _is_main_rank() and {p.name for p in self.run_dir.iterdir()} <= {".lock"}:
                shutil.rmtree(self.run_dir, ignore_errors=True)  # a refused run leaves nothing behind
            raise

    @property
    def stop_signal(self) -> int | None:
        """The signal that stops this run at the next rollout boundary (``rundir.Signals``), or None."""
        return self.signals.signum

    @stop_signal.setter
    def stop_signal(self, signum: int | None) -> None:
        self.signals.signum = signum

    def release(self) -> None:
        """Give up the run directory's lock and the signal handlers (``run`` does at its end)."""
        self.signals.restore()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # -- files ------------------------------------------------------------------------------------------

    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def save_checkpoint(self) -> Path:
        """``llm.checkpoint.save``: model, optimizer, scheduler, RNGs + trainer.json, renamed at once."""
        return checkpoint.save(self)

    def load_checkpoint(self, path: Path) -> None:
        checkpoint.load(self, path)

    def write_meta(self, **extra) -> None:
        if self.acc.is_main_process:
            meta = rundir.run_metadata(
                self.cfg.to_json(), world_size=self.world, device=str(self.acc.device), warm_start=self.warm_start,
                **extra,
            )  # fmt: skip
            atomic_write_json(meta, self.run_dir / "config.json")

    # -- one optimizer step -------------------------------------------------------------------------------

    # -- one rollout ----------------------------------------------------------------------------------------

    def rollout_step(self) -> dict[str, float]:
        cfg, k = self.cfg, self.step
        t0 = time.perf_counter()
        examples, data_stats = self._examples(k)
        roll = sample(
            self.acc.unwrap_model(self.model), self.tok, self.task, examples, cfg.group_size,
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
            seed=_seed(cfg, k, self.rank, 0), sampler=cfg.sampler, share_prompts=cfg.share_prompts,
        )  # fmt: skip
        if cfg.guide_per_group:
            roll = add_guides(roll, self.tok, self.task, examples, cfg.group_size, cfg.guide_per_group)
        # the n-gram embedding once per rollout: telemetry, and diversity_reward's input without MiniLM
        ngram = C.ngram_embedding(roll.completion_ids, roll.completion_mask)
        if self.embedder is not None:
            roll.embedding = self.embedder(roll.texts)
        elif "embedding" in self.needs:
            roll.embedding = ngram
        if "answer" in self.needs:  # SEED-GRPO's clusters: the task's own answer normalisation
            roll.answer = answer_ids(self.task, roll.texts, examples, cfg.group_size).to(roll.reward.device)
        if cfg.step_signal != "none":
            roll.step_correct = prefix_steps(roll, self.tok, examples, cfg.group_size, self.step_judge)
        t_gen = time.perf_counter() - t0
        mask = roll.completion_mask
        off_policy = cfg.epochs > 1 or cfg.minibatches > 1
        old_logp = h_before = log_mass = None
        with torch.no_grad():
            if off_policy or cfg.top_p < 1:
                old, ent0, log_mass = self._stats(roll, with_log_mass=True)
                if off_policy:
                    old_logp = old
                    h_before = self._reduce({"h": float(masked_mean(ent0, mask))})["h"]
            ref_logp = None if self.ref is None else self._stats(roll, model=self.ref)[0]
        gen = torch.Generator().manual_seed(
            _seed(cfg, k, 0, 1)
        )  # CPU, as controllers draw on CPU; same on every rank
        step_metrics: list[dict] = []
        n_opt = cfg.epochs * cfg.minibatches
        per = cfg.prompts_per_step // cfg.minibatches
        for e in range(cfg.epochs):
            order = torch.randperm(cfg.prompts_per_step, generator=gen, device="cpu") if off_policy else None
            for m in range(cfg.minibatches):
                if order is None:
                    idx = torch.arange(roll.size, device=mask.device)
                else:
                    prompts = order[m * per : (m + 1) * per]
                    idx = (prompts[:, None] * cfg.group_size + torch.arange(cfg.group_size)).flatten()
                    idx = idx.to(mask.device)
                part = roll.rows(idx)
                met = self.optimizer_step(
                    part,
                    None if old_logp is None else old_logp[idx],
                    None if ref_logp is None else ref_logp[idx],
                    gen,
                )
                if met is None:
                    continue
                stats = self._reduce(met)
                if h_before is None:  # on-policy: the batch's entropy before its one update
                    h_before = stats["policy/entropy"]
                done = k + (e * cfg.minibatches + m + 1) / n_opt
                self.ctrl_state = self.pipe.step(
                    self.ctrl_state, {**stats, "train/progress_frac": done / cfg.steps}
                )
                step_metrics.append(stats)
                if self.pipe.reference_reset_due(self.ctrl_state) and self.ref is not None:
                    self.acc.unwrap_model(self.ref).load_state_dict(
                        self.acc.unwrap_model(self.model).state_dict()
                    )
                    self.ctrl_state = self.pipe.reference_was_reset(self.ctrl_state)
        out: dict[str, float] = {}
        if step_metrics:
            for key in step_metrics[0]:
                out[key] = float(np.mean([s[key] for s in step_metrics if key in s]))
        # rollout-level telemetry
        reward = roll.reward
        grouped = reward.reshape(cfg.prompts_per_step, cfg.group_size)
        out.update(
            self._reduce(
                {
                    "reward/mean": float(reward.mean()),
                    "reward/std": float(reward.std()) if reward.numel() > 1 else 0.0,
                    "reward/frac_mixed_groups": float(
                        (grouped.max(1).values > grouped.min(1).values).float().mean()
                    ),
                    "rollout/response_len": float(mask.sum(-1).mean()),
                    "rollout/truncated_frac": float(roll.truncated.float().mean()),
                    **data_stats,
                    **self._mismatch(log_mass, mask),
                    "rollout/diversity": _nan0(C.group_diversity(ngram, roll.group)),
                    "rollout/distinct_2": _nan0(C.distinct_n(roll.completion_ids, mask, roll.group, 2)),
                }
            )
        )
        if cfg.measure_dH and step_metrics and k % cfg.dH_every == 0:
            with torch.no_grad():
                _, ent1 = self._stats(roll)
            h_after = self._reduce({"h": float(masked_mean(ent1, mask))})["h"]
            out["policy/entropy_after"] = h_after
            out["policy/dH_realized"] = h_after - h_before
        elapsed = time.perf_counter() - t0
        tokens = float(self.acc.reduce(mask.sum().detach(), "sum")) if self.world > 1 else float(mask.sum())
        out.update(
            {
                "perf/step_s": elapsed, "perf/generate_s": t_gen, "perf/tokens_per_s": tokens / elapsed,
                "perf/peak_rss_mb": peak_rss_mb(),
                "train/bad_steps": float(self.bad_total), "train/optimizer_steps_done": float(len(step_metrics)),
            }
        )  # fmt: skip
        if torch.cuda.is_available():
            out["perf/peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out.update(C.Pipeline.state_metrics(self.ctrl_state))
        if "policy/entropy" in out:
            self.history.append((out["policy/entropy"], out["reward/mean"]))
            out.update(self._law())
        return out

    # -- data order: the pre-pass (curriculum, offline filter) ------------------------------------------------

    def _examples(self, k: int) -> tuple[list[Example], dict[str, float]]:
        """This rollout's training prompts: the pre-pass order (cycled) or fresh draws."""
        n = self.cfg.prompts_per_step
        if self.pool is None:
            return self.split.train(k, self.rank, n), {}
        picked = [self.pool[(k * n + j) % len(self.pool)] for j in range(n)]
        return [Example(x["prompt"], x["answer"]) for x in picked], {
            "data/prepass_solve_rate": float(np.mean([x["solve_rate"] for x in picked])),
            "data/prepass_semantic_entropy": float(np.mean([x["semantic_entropy"] for x in picked])),
            "data/pool_size": float(len(self.pool)),
        }

    def _mismatch(self, log_mass, mask) -> dict[str, float]:
        """With top-p sampling: the mean log-mass of the sampler's nucleus (the per-token gap between the full
        softmax's log-prob and the sampler's), and the gap the loss actually trains with (0 under the
        keep-sampling mask, on-policy)."""
        if log_mass is None:
            return {}
        gap = float(masked_mean(-log_mass, mask))
        return {
            "rollout/nucleus_log_mass": -gap,
            "rollout/logp_gap_sampler": 0.0 if self.cfg.keep_sampling_mask else gap,
        }

    def _law(self) -> dict[str, float]:
        """Online fit of R = −a·e^H + b over the rollouts so far; b − a is the predicted ceiling (H = 0)."""
        if len(self.history) < LAW_MIN_POINTS:
            return {}
        h, r = np.array(self.history).T
        try:
            a, b = fit_entropy_law(h, r)
        except ValueError:
            return {}
        return {"law/a": a, "law/b": b, "law/ceiling": b - a}

    def evaluate(self) -> dict[str, float]:
        cfg = self.cfg
        res = evaluate(
            self.acc.unwrap_model(self.model), self.tok, self.task, self.split.eval, n_samples=cfg.eval_samples,
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
            seed=_seed(cfg, self.step, 0, 2), batch_size=max(cfg.micro_batch_size, 256), sampler=cfg.sampler,
            forward_rows=cfg.micro_batch_size or cfg.eval_samples,  # a setting every arm of a study shares
        )  # fmt: skip
        return res

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self, stop_after: int | None = None) -> Path:
        """Train to ``cfg.steps`` rollouts (or ``stop_after`` more, for tests), resuming if asked; the run
        directory's lock is released at the end, however the run ends."""
        try:
            return self._run(stop_after)
        finally:
            if self.logger is not None:
                self.logger.finish()
            self.release()

    def _run(self, stop_after: int | None) -> Path:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        latest = self.resume_from
        if latest is not None:
            self.load_checkpoint(latest)
        elif self.acc.is_main_process:
            shutil.rmtree(self.ckpt_root, ignore_errors=True)
        self.pool = self.prepass(fresh=latest is None)
        main = self.acc.is_main_process  # it alone writes the run's files and mirrors them to a tracker
        metrics = rundir.MetricsLog(self.run_dir, self.step, fresh=latest is None) if main else None
        self.write_meta(resumed_from=None if latest is None else latest.name)
        if main:
            self.logger = trackers.start(self.tracker, cfg.name, self.run_dir, cfg.to_json())
        bar = None
        if self.progress and self.acc.is_main_process:
            from tqdm import tqdm

            bar = tqdm(
                total=cfg.steps, initial=self.step, desc=f"train {cfg.name}", unit="rollout", file=sys.stderr
            )
        end = cfg.steps if stop_after is None else min(cfg.steps, self.step + stop_after)
        stopped = self._stop_agreed()  # a signal during set-up: no rollout at all
        try:
            with metrics if metrics is not None else contextlib.nullcontext() as fh:
                while self.step < end and not stopped:
                    row: dict = {"step": self.step}
                    if cfg.eval_every and self.step % cfg.eval_every == 0:
                        row.update(self.evaluate())
                    row.update(self.rollout_step())
                    self.step += 1
                    self._log(fh, row)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(
                            R=f"{row['reward/mean']:.3f}", H=f"{row.get('policy/entropy', math.nan):.3f}"
                        )
                    if self._stop_agreed():
                        break
                    if (
                        cfg.checkpoint_every
                        and self.step % cfg.checkpoint_every == 0
                        and self.step < cfg.steps
                    ):
                        self.save_checkpoint()
                if self.step == cfg.steps and cfg.eval_every and self.stop_signal is None:
                    self._log(fh, {"step": self.step, "final": True, **self.evaluate()})
            self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
        if self.step == cfg.steps and self.acc.is_main_process:
            from llm.models import quiet

            quiet()
            final = self.run_dir / "model"
            tmp = self.run_dir / ".tmp_model"
            shutil.rmtree(tmp, ignore_errors=True)
            model = self.acc.unwrap_model(self.model)
            if cfg.lora_rank:  # a plain model directory: LoRA merged into the weights
                model = copy.deepcopy(model).merge_and_unload()
            model.save_pretrained(tmp)
            self.tok.save(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        self.write_meta(
            finished=self.step == cfg.steps, interrupted_by=self.stop_signal, bad_steps=self.bad_total
        )
        self.acc.wait_for_everyone()
        return self.run_dir

    def _log(self, log: rundir.MetricsLog | None, row: dict) -> None:
        if log is not None:
            log.write(row, flush=True)
        if self.logger is not None:
            self.logger.log(row, step=row["step"])

    def _stop_agreed(self) -> bool:
        """Every rank stops at the same rollout: a signal seen by any rank stops them all."""
        if self.world == 1:
            return self.stop_signal is not None
        flag = torch.tensor([float(self.stop_signal or 0)], device=self.acc.device)
        signum = int(self.acc.reduce(flag, "max").item())
        if signum and self.stop_signal is None:
            self.stop_signal = signum
        return bool(signum)


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train(cfg: TrainConfig, *, progress: bool = True, stop_after: int | None = None) -> Path:
    """Train (or resume) the run ``cfg`` describes; returns its directory."""
    return Trainer(cfg, progress=progress).run(stop_after=stop_after)


def _shutdown() -> None:
    """Leave the process group cleanly (multi-process runs), so gloo/NCCL do not abort at exit."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


read_metrics = rundir.read_metrics
"""The rows of a run's ``metrics.jsonl`` (a torn last line left out)."""


# -- command line -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    cfg = None
    try:
        cfg, line = parse_command(argv, prog=entrolab_prog("python -m llm.train"),
                                  summary=(__doc__ or "").splitlines()[0])  # fmt: skip
        trainer = Trainer(cfg, progress=not line.quiet)
        out = trainer.run()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (OSError, RuntimeError) as e:
        message = disk_full_message(e, cfg.run_dir if cfg is not None else "the run directory")
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while the first was finishing its rollout
        print("interrupted twice: stopped without saving; the last checkpoint is intact, rerun to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        _shutdown()
    if not trainer.acc.is_main_process:
        return 0 if trainer.stop_signal is None else 128 + trainer.stop_signal
    if trainer.stop_signal is not None:
        print(f"interrupted at rollout {trainer.step}; checkpoint saved; rerun the same command to resume")
        return 128 + trainer.stop_signal
    rows = [r for r in read_metrics(out) if "reward/mean" in r]
    evals = [r for r in read_metrics(out) if "eval/greedy_acc" in r]
    print(
        f"{cfg.name}: {len(rows)} rollouts logged; reward {rows[0]['reward/mean']:.3f} → "
        f"{rows[-1]['reward/mean']:.3f}, entropy {rows[0].get('policy/entropy', math.nan):.3f} → "
        f"{rows[-1].get('policy/entropy', math.nan):.3f} nats"
        + (
            f"; held-out greedy accuracy {evals[0]['eval/greedy_acc']:.3f} → {evals[-1]['eval/greedy_acc']:.3f}"
            if evals
            else ""
        )
        + f"; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
