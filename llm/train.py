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
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

import controllers as C
from controllers.agg import masked_mean
from entrolab.common import rundir
from entrolab.common.cli import prog as entrolab_prog
from entrolab.common.rundir import disk_full
from entrolab.common.runio import (
    atomic_write_json,
    available_mb,
    file_sha256,
    git_sha,
    peak_rss_mb,
    read_metrics_file,
    truncate_metrics,
)
from llm import memory
from llm.config import TrainConfig, parse_cli, parse_command
from llm.embed import MiniLM
from llm.embed import resolve as resolve_embedder
from llm.evaluate import evaluate
from llm.parallel import AccelerateGather, rank_scale
from llm.rollout import Rollout, add_guides, answer_ids, prefix_steps, sample, token_stats
from llm.tasks import Example, Split, get_task_for
from theory import fit_entropy_law

# fields that may change when a run is resumed (they do not change what a step computes)
RESUMABLE_CHANGES = {"steps", "eval_every", "checkpoint_every", "keep_checkpoints", "resume", "tracker",
                     "max_bad_steps"}  # fmt: skip
LAW_MIN_POINTS = 5


class Diverged(RuntimeError):
    """Too many non-finite steps in a row; the last good checkpoint is intact."""


def _seed(cfg: TrainConfig, step: int, rank: int, stream: int) -> int:
    return int(np.random.SeedSequence([cfg.seed, stream, step, rank]).generate_state(1)[0])


def _finite(*ts) -> bool:
    return all(bool(torch.isfinite(t.detach()).all()) for t in ts if t is not None)


def _answer_entropy(answer: torch.Tensor) -> float:
    """Semantic entropy of one prompt's sampled answers (their ``answer_ids``), nats."""
    ids = answer.cpu()
    return float(C.cluster_entropy(ids, torch.zeros_like(ids), 1)[0])


def _nan0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


class Trainer:
    """Holds the model, optimizer, controllers and run files; ``run()`` trains to ``cfg.steps``."""

    def __init__(self, cfg: TrainConfig, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.run_dir = cfg.run_dir
        # SIGINT/SIGTERM from here on are recorded, not fatal: a signal during set-up (the warm start, the
        # process group, loading) stops the run at the first rollout boundary, on every rank together
        self.stop_signal: int | None = None
        self._handlers = {}
        self.task = get_task_for(cfg)  # bad data fails here, before anything is written
        created = not self.run_dir.exists()
        self._lock = rundir.lock(self.run_dir, "out_dir", "name", "a new --name") if _is_main_rank() else None
        if threading.current_thread() is threading.main_thread():
            self._handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.skipped: list[str] = []  # checkpoints passed over when resuming, with why
            self.resume_from = self._choose_checkpoint() if cfg.resume == "auto" else None
            self._setup(cfg)
        except BaseException:
            self.release()
            if created and _is_main_rank() and {p.name for p in self.run_dir.iterdir()} <= {".lock"}:
                shutil.rmtree(self.run_dir, ignore_errors=True)  # a refused run leaves nothing behind
            raise

    def _check_prompts(self, tok, context: int | None) -> int:
        """The prompts fit (``llm.tasks.check_prompts``); returns the longest prompt's tokens."""
        from llm.tasks import check_prompts

        draw = self.split.train(0, 0, 64, stream=0)  # its own stream: no other draw changes
        return check_prompts(self.task, self.split.eval + draw, tok, context, self.cfg.max_new_tokens)

    def _check_memory(self, arch, prompt_tokens: int) -> None:
        """Refuse, before the model is built or trained, a configuration whose peak (``llm.memory``) cannot
        fit in the memory the device has free."""
        device = self.acc.device
        memory.check(
            self.cfg, arch, prompt_tokens, "ref_logp" in self.needs, available_mb(device), device.type
        )

    def release(self) -> None:
        """Give up the run directory's lock and the signal handlers (``run`` does at its end)."""
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _setup(self, cfg: TrainConfig) -> None:
        from accelerate import Accelerator

        progress = self.progress
        self.split = Split(self.task, cfg.eval_prompts, cfg.seed)
        from entrolab.common import trackers

        tracker = trackers.resolve(cfg.tracker)
        self.acc = Accelerator(
            cpu=cfg.runs_on_cpu(),  # cpu=True is what makes torchrun ranks join on CPU
            mixed_precision=cfg.mixed_precision,
            log_with=None if tracker == "none" else tracker,
            project_dir=str(self.run_dir),
        )
        self.tracker = tracker
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.gather = AccelerateGather(self.acc) if self.world > 1 else C.dist.Gather()
        self.pipe = cfg.pipeline()  # checked against cfg.host() when the config was validated
        self.needs = self.pipe.needs()  # what to compute for the controllers (controllers.contract)
        self.embedder = None
        if "embedding" in self.needs and resolve_embedder(cfg.embedder) == "minilm":
            self.embedder = MiniLM(device=self.acc.device)
        self.step_judge = cfg.step_judge()
        self.ctrl_state = self.pipe.init()

        if cfg.model in ("tiny", "tiny-qwen2"):  # before the warm start: the character tokenizer and context
            from llm.models import TINY_CONTEXT
            from llm.tokenizer import CharTokenizer

            chars = CharTokenizer()
            longest = self._check_prompts(chars, TINY_CONTEXT)
            arch = memory.tiny_arch(
                chars.vocab_size,
                cfg.tiny_hidden,
                cfg.tiny_layers,
                cfg.tiny_heads,
                qwen2=cfg.model == "tiny-qwen2",
            )
            self._check_memory(arch, longest)  # before the model exists
        torch.manual_seed(cfg.seed)
        if cfg.sft_steps:
            from llm.models import load_model
            from llm.sft import run_sft
            from llm.tokenizer import load_tokenizer

            with self.acc.main_process_first():
                warm = run_sft(cfg, progress=progress and self.acc.is_main_process, device=self.acc.device)
            model, self.tok = load_model(warm), load_tokenizer(warm)
            self.warm_start = json.loads((warm / "sft.json").read_text())
        else:
            from llm.models import build

            model, self.tok = build(cfg)
            self.warm_start = None
        if cfg.model not in ("tiny", "tiny-qwen2"):
            longest = self._check_prompts(self.tok, getattr(model.config, "max_position_embeddings", None))
            self._check_memory(memory.arch_of(model), longest)  # before its copies, optimizer and batches
        ref = copy.deepcopy(model).eval().requires_grad_(False) if "ref_logp" in self.needs else None
        if cfg.lora_rank:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules="all-linear")
            model = get_peft_model(model, lora)
        if cfg.gradient_checkpointing:  # transformers' own: each decoder layer recomputed in backward
            enable = getattr(model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm_steps = cfg.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: min(1.0, (k + 1) / warm_steps) if warm_steps else 1.0
        )
        self.model, self.opt, self.sched = self.acc.prepare(model, opt, sched)
        self.ref = self.acc.prepare_model(ref, evaluation_mode=True) if ref is not None else None
        self.step = 0
        self.bad_in_row = 0
        self.bad_total = 0
        self.history: list[tuple[float, float]] = []  # (entropy, reward) per rollout, for the law fit
        self.pool: list[dict] | None = None  # the pre-pass's ordered training prompts, if any

    # -- files ------------------------------------------------------------------------------------------

    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (``checkpoint_problem`` finds nothing wrong with it), or None."""
        if not self.ckpt_root.is_dir():
            return None
        for p in sorted(self.ckpt_root.glob("step_*"), reverse=True):
            if checkpoint_problem(p) is None:
                return p
        return None

    def _choose_checkpoint(self) -> Path | None:
        """Before any work: the checkpoint to resume from, the broken ones skipped (and said so), and a
        refusal if the run directory holds metrics that no checkpoint can continue."""
        found = sorted(self.ckpt_root.glob("step_*"), reverse=True) if self.ckpt_root.is_dir() else []
        metrics = self.run_dir / "metrics.jsonl"
        rows = read_metrics_file(metrics)[0] if metrics.is_file() else []  # a corrupt line stops here
        chosen, hole = None, None
        for p in found:
            why = checkpoint_problem(p)
            if why is None:  # the metrics it continues must all be there
                step = json.loads((p / "trainer.json").read_text())["step"]
                missing = rundir.missing_steps(rows, range(step))
                if not missing:
                    chosen = p
                    break
                hole = hole or (p, missing)
                why = f"metrics.jsonl lacks {len(missing)} of the {step} rows before it"
            self.skipped.append(f"{p.name}: {why}")
        if self.skipped and _is_main_rank():
            for line in self.skipped:
                print(f"resume: skipped checkpoint {line}", file=sys.stderr)
        if chosen is None and hole is not None:
            raise ValueError(
                rundir.hole_message(metrics, hole[1], f"checkpoint {hole[0].name}",
                                    "--resume never (start over, discarding the checkpoints), or a new --name")
            )  # fmt: skip
        if chosen is None and metrics.is_file() and metrics.stat().st_size > 0:
            rows = sum(1 for ln in metrics.read_text(errors="replace").splitlines() if ln.strip())
            why = f"; skipped {'; '.join(self.skipped)}" if self.skipped else ""
            raise ValueError(
                f"resume: {metrics} holds {rows} metric rows but no usable checkpoint{why}; allowed: "
                "--resume never (start over, discarding them), or a new --name"
            )
        return chosen

    def save_checkpoint(self) -> Path:
        """model, optimizer, scheduler, RNGs (accelerate) + trainer.json, in a temp dir renamed at once."""
        final = self.ckpt_root / f"step_{self.step:06d}"
        tmp = self.ckpt_root / f".tmp_step_{self.step:06d}"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp), safe_serialization=False)
        self.acc.wait_for_everyone()  # every rank's RNG file is in tmp before the rename
        if self.acc.is_main_process:
            saved = [f for f in sorted(tmp.iterdir()) if f.is_file()]
            info = {
                "step": self.step, "controller_state": self.ctrl_state, "bad_in_row": self.bad_in_row,
                "bad_total": self.bad_total, "history": self.history, "config": self.cfg.to_json(),
                "files": {f.name: f.stat().st_size for f in saved},
                "sha256": {f.name: file_sha256(f) for f in saved},
            }  # fmt: skip
            (tmp / "trainer.json").write_text(json.dumps(info))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            old = sorted(p for p in self.ckpt_root.glob("step_*") if p != final)
            for p in old[: max(0, len(old) + 1 - self.cfg.keep_checkpoints)]:
                shutil.rmtree(p, ignore_errors=True)
        self.acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> None:
        info = json.loads((path / "trainer.json").read_text())
        saved, now = info["config"], self.cfg.to_json()
        fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        # a field a checkpoint predates counts as its default (a run saved before the field existed resumes)
        differ = sorted(
            k for k in now if k not in RESUMABLE_CHANGES and saved.get(k, _json_default(fields[k])) != now[k]
        )
        if differ:
            raise ValueError(
                f"resume: {self.run_dir} holds a run whose config differs in {differ}; allowed: the same "
                f"config (only {sorted(RESUMABLE_CHANGES)} may change), a new --name, or --resume never"
            )
        try:
            self.acc.load_state(str(path))
        except Exception as e:  # a checkpoint saved before its files had digests, corrupted since
            raise ValueError(
                f"resume: checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:80]}); allowed: "
                "--resume never (start over), or a new --name"
            ) from None
        self.step, self.ctrl_state = info["step"], info["controller_state"]
        self.bad_in_row, self.bad_total = info["bad_in_row"], info["bad_total"]
        self.history = [tuple(h) for h in info["history"]]

    def write_meta(self, **extra) -> None:
        if not self.acc.is_main_process:
            return
        meta = {
            "config": self.cfg.to_json(),
            "git_sha": git_sha(),
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__, **_versions()},
            "world_size": self.world,
            "device": str(self.acc.device),
            "warm_start": self.warm_start,
            **extra,
        }
        atomic_write_json(meta, self.run_dir / "config.json")

    # -- one optimizer step -------------------------------------------------------------------------------

    def _forward(
        self, roll: Rollout, entropy_grad: bool = False, model=None, with_log_mass: bool = False,
        with_topp: bool = False,
    ):  # fmt: skip
        """(logp, entropy) (B, T) of these rows under ``model`` (default: the policy), at the sampling
        temperature, in the caller's grad mode; the policy's on the sampler's top-p support when
        ``keep_sampling_mask`` (plus the support's log-mass when asked, and then the nucleus entropy
        when asked, from the same forward pass)."""
        policy = model is None
        top_p = self.cfg.top_p if (policy and (self.cfg.keep_sampling_mask or with_log_mass)) else 1.0
        return token_stats(
            self.model if policy else model, roll, temperature=self.cfg.temperature,
            chunk_tokens=self.cfg.chunk_tokens, entropy_grad=entropy_grad, top_p=top_p,
            with_log_mass=with_log_mass, mask=self.cfg.keep_sampling_mask, with_topp=with_topp,
            share_prompts=self.cfg.share_prompts and not self.cfg.gradient_checkpointing,  # no cache with it
        )  # fmt: skip

    def _stats(self, roll: Rollout, model=None, with_log_mass: bool = False, with_topp: bool = False):
        """No-grad (logp, entropy[, log-mass][, nucleus entropy]) (B, T) for the rollout rows, micro-batch
        by micro-batch."""
        mb = self.cfg.micro_batch_size or roll.size
        with torch.no_grad():
            parts = [
                self._forward(
                    roll.rows(slice(i, i + mb)), model=model, with_log_mass=with_log_mass, with_topp=with_topp
                )
                for i in range(0, roll.size, mb)
            ]
        return tuple(torch.cat([p[j] for p in parts]) for j in range(len(parts[0])))

    def optimizer_step(self, roll: Rollout, old_logp, ref_logp, gen) -> dict | None:
        """One optimizer step on these rows (a whole optimizer batch); None if it was skipped."""
        cfg = self.cfg
        mb = cfg.micro_batch_size or roll.size
        pieces = [slice(i, i + mb) for i in range(0, roll.size, mb)]
        self.model.train()
        with_topp = "entropy_topp" in self.needs
        topp = None
        if len(pieces) == 1:  # one piece: the loss graph runs straight into the model
            logp, ent, *rest = self._forward(roll, entropy_grad=True, with_topp=with_topp)
            leaves = None
        else:  # whole-batch loss on leaves, then per-piece backward against their gradients
            logp, ent, *rest = self._stats(roll, with_topp=with_topp)
            logp, ent = logp.requires_grad_(), ent.requires_grad_()
            rest = [t.requires_grad_() for t in rest]
            leaves = (logp, ent, *rest)
        if with_topp:
            topp = rest[0]
        mask = roll.completion_mask
        if not _finite(logp, ent, topp):
            return self._skip("non-finite log-probs or entropies")
        batch = C.TokenBatch(
            logp=logp, old_logp=logp.detach() if old_logp is None else old_logp,
            adv=torch.zeros_like(mask), entropy=ent, mask=mask, group=roll.group, reward=roll.reward,
            length=mask.sum(-1), ref_logp=ref_logp, guide=roll.guide,
            step_correct=None if roll.step_correct is None else roll.step_correct.to(mask.dtype),
            embedding=roll.embedding, entropy_topp=topp, answer=roll.answer,
        )  # fmt: skip
        try:
            with C.dist.using(self.gather):
                loss, metrics = C.policy_loss(batch, self.pipe, self.ctrl_state, agg=cfg.agg, generator=gen)
        except RuntimeError as e:  # non-finite metrics
            return self._skip(str(e))
        if not _finite(loss):
            return self._skip("non-finite loss")
        loss = loss * rank_scale(self.acc, self.cfg.agg, mask)
        if leaves is None:
            self.acc.backward(loss)
        else:
            loss.backward()
            g_logp, g_ent = logp.grad, ent.grad
            g_topp = None if topp is None else topp.grad
            use_ent = g_ent is not None and bool(g_ent.abs().sum() > 0)
            use_topp = g_topp is not None and bool(g_topp.abs().sum() > 0)
            for i, p in enumerate(pieces):
                last = i == len(pieces) - 1
                with contextlib.nullcontext() if last else self.acc.no_sync(self.model):
                    lp, en, *tp = self._forward(
                        roll.rows(p), entropy_grad=use_ent or use_topp, with_topp=use_topp
                    )
                    surrogate = (lp * g_logp[p]).sum()
                    if use_ent:
                        surrogate = surrogate + (en * g_ent[p]).sum()
                    if use_topp:
                        surrogate = surrogate + (tp[0] * g_topp[p]).sum()
                    self.acc.backward(surrogate)
        if cfg.max_grad_norm > 0:
            norm = self.acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        else:
            norm = torch.norm(
                torch.stack([p.grad.norm() for p in self.model.parameters() if p.grad is not None])
            )
        if not _finite(torch.as_tensor(norm)):
            self.opt.zero_grad(set_to_none=True)
            return self._skip("non-finite gradient")
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.bad_in_row = 0
        metrics["train/grad_norm"] = float(norm)
        metrics["train/lr"] = float(self.sched.get_last_lr()[0])
        return metrics

    def _skip(self, why: str) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.bad_in_row += 1
        self.bad_total += 1
        if self.acc.is_main_process:
            print(f"step {self.step}: skipped ({why}); {self.bad_in_row} in a row", file=sys.stderr)
        if self.bad_in_row >= self.cfg.max_bad_steps:
            raise Diverged(
                f"{self.bad_in_row} non-finite steps in a row at step {self.step} (max_bad_steps = "
                f"{self.cfg.max_bad_steps}); the last good checkpoint in {self.ckpt_root} is intact"
            )
        return None

    def _reduce(self, metrics: dict[str, float]) -> dict[str, float]:
        if self.world == 1 or not metrics:
            return metrics
        keys = sorted(metrics)
        vals = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self.acc.device)
        vals = self.acc.reduce(vals, "mean")
        return dict(zip(keys, vals.tolist(), strict=True))

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

    def prepass(self, fresh: bool) -> list[dict] | None:
        """With a curriculum or an offline band: the starting policy's solve rate and semantic entropy of every
        training prompt this rank would draw (steps × prompts_per_step), ordered and filtered; saved atomically
        to ``prepass/rank<R>.json`` and read back on resume. None without either option."""
        cfg = self.cfg
        if cfg.curriculum == "none" and not cfg.offline_band:
            return None
        path = self.run_dir / "prepass" / f"rank{self.rank}.json"
        if not fresh and path.is_file():
            return json.loads(path.read_text())["order"]
        n, G = cfg.prompts_per_step, cfg.prepass_samples or cfg.group_size
        items: list[dict] = []
        bar = None
        if self.progress and self.acc.is_main_process:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, desc="pre-pass", unit="batch", file=sys.stderr)
        for k in range(cfg.steps):
            examples = self.split.train(k, self.rank, n)
            roll = sample(
                self.acc.unwrap_model(self.model), self.tok, self.task, examples, G,
                max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                seed=_seed(cfg, k, self.rank, 4), sampler=cfg.sampler, share_prompts=cfg.share_prompts,
            )  # fmt: skip
            answer = answer_ids(self.task, roll.texts, examples, G)
            for i, e in enumerate(examples):
                items.append(
                    {
                        "prompt": e.prompt, "answer": e.answer,
                        "solve_rate": float(roll.reward[i * G : (i + 1) * G].mean()),
                        "semantic_entropy": _answer_entropy(answer[i * G : (i + 1) * G]),
                    }
                )  # fmt: skip
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        rate = torch.tensor([x["solve_rate"] for x in items], dtype=torch.float64)
        se = torch.tensor([x["semantic_entropy"] for x in items], dtype=torch.float64)
        idx = C.select_prompts(rate, se, tuple(cfg.offline_band), cfg.curriculum)  # as the simulator
        order = [items[i] for i in idx.tolist()]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json({"config": cfg.to_json(), "items": items, "order": order}, path)
        return order

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
            if self.tracker != "none":  # last: accelerate's end_training destroys the process group
                self.acc.end_training()
            self.release()

    def _run(self, stop_after: int | None) -> Path:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.run_dir / "metrics.jsonl"
        latest = self.resume_from
        if latest is not None:
            self.load_checkpoint(latest)
        elif self.acc.is_main_process:
            shutil.rmtree(self.ckpt_root, ignore_errors=True)
            metrics_path.unlink(missing_ok=True)
        self.pool = self.prepass(fresh=latest is None)
        if self.acc.is_main_process:
            torn = truncate_metrics(metrics_path, self.step)
            if torn:
                print(f"note: {torn}", file=sys.stderr)
        self.write_meta(resumed_from=None if latest is None else latest.name)
        if self.tracker != "none":
            self.acc.init_trackers(cfg.name, config={k: str(v) for k, v in cfg.to_json().items()})
        bar = None
        if self.progress and self.acc.is_main_process:
            from tqdm import tqdm

            bar = tqdm(
                total=cfg.steps, initial=self.step, desc=f"train {cfg.name}", unit="rollout", file=sys.stderr
            )
        end = cfg.steps if stop_after is None else min(cfg.steps, self.step + stop_after)
        stopped = self._stop_agreed()  # a signal during set-up: no rollout at all
        try:
            with metrics_path.open("a") as fh:
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

    def _log(self, fh, row: dict) -> None:
        if self.acc.is_main_process:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
        if self.tracker != "none":
            self.acc.log({k: v for k, v in row.items() if isinstance(v, float)}, step=row["step"])

    def _stop_agreed(self) -> bool:
        """Every rank stops at the same rollout: a signal seen by any rank stops them all."""
        if self.world == 1:
            return self.stop_signal is not None
        flag = torch.tensor([float(self.stop_signal or 0)], device=self.acc.device)
        signum = int(self.acc.reduce(flag, "max").item())
        if signum and self.stop_signal is None:
            self.stop_signal = signum
        return bool(signum)

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        acc = getattr(self, "acc", None)
        if acc is None or acc.is_main_process:
            print(
                f"\nsignal {signum}: stopping after this rollout (or set-up), then saving a checkpoint",
                file=sys.stderr,
            )


def _json_default(value):
    """A field's default as ``TrainConfig.to_json`` writes it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _versions() -> dict[str, str]:
    out = {}
    for name in ("transformers", "accelerate", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


CHECKPOINT_KEYS = {
    "step": int, "controller_state": dict, "bad_in_row": int, "bad_total": int, "history": list, "config": dict,
}  # fmt: skip
"""what ``trainer.json`` must hold, with the types ``load_checkpoint`` reads"""


def checkpoint_problem(path: Path) -> str | None:
    """What makes a checkpoint directory unusable, in words, or None: ``trainer.json`` missing, not JSON, or
    without a key ``load_checkpoint`` reads (``CHECKPOINT_KEYS``, with its type), or a file it lists (the
    model, optimizer, scheduler and RNG files, with their sizes and sha256 at save time) missing, of
    another size (a truncated write) or of other contents (overwritten or corrupted on disk)."""
    info_path = path / "trainer.json"
    if not info_path.is_file():
        return "no trainer.json (an interrupted save)"
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return f"trainer.json is not JSON ({e})"
    if not isinstance(info, dict):
        return f"trainer.json holds a {type(info).__name__}, not an object"
    for key, kind in CHECKPOINT_KEYS.items():
        if key not in info:
            return f"trainer.json has no {key!r}"
        if not isinstance(info[key], kind) or isinstance(info[key], bool):
            return f"trainer.json's {key!r} is a {type(info[key]).__name__}, not a {kind.__name__}"
    if info["step"] < 0:
        return f"trainer.json's step is {info['step']}"
    files = info.get("files")
    if files is None:  # written before the manifest existed: the files accelerate always writes
        files = {n: None for n in ("pytorch_model.bin", "optimizer.bin", "scheduler.bin")}
    digests = info.get("sha256") or {}
    if not isinstance(files, dict) or not isinstance(digests, dict):
        return "trainer.json's file manifest is not an object"
    for name, size in files.items():
        f = path / str(name)
        if not f.is_file():
            return f"{name} is missing"
        if size is not None and f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {size} when saved"
        if name in digests and file_sha256(f) != digests[name]:
            return f"{name} differs from what was saved (its sha256 changed)"
    return None


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train(cfg: TrainConfig, *, progress: bool = True, stop_after: int | None = None) -> Path:
    """Train (or resume) the run ``cfg`` describes; returns its directory."""
    return Trainer(cfg, progress=progress).run(stop_after=stop_after)


def _shutdown() -> None:
    """Leave the process group cleanly (multi-process runs), so gloo/NCCL do not abort at exit."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` (a torn last line left out: ``entrolab.common.runio.read_metrics_file``)."""
    return read_metrics_file(Path(run_dir) / "metrics.jsonl")[0]


# -- command line -----------------------------------------------------------------------------------------


def parse_config(argv: list[str] | None, prog: str = "python -m llm.train") -> TrainConfig:
    """``--preset NAME`` (default tiny-copy) then any field override, parsed by tyro (``llm.config``)."""
    return parse_cli(argv, prog=entrolab_prog(prog), summary=(__doc__ or "").splitlines()[0])


def main(argv: list[str] | None = None) -> int:
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
        why = disk_full(e)
        if why is None:
            raise
        print(f"error: out_dir: {why}; the last checkpoint is intact: free space and rerun the same command to "
              "resume", file=sys.stderr)  # fmt: skip
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
