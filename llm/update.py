"""One optimizer step of the trainer: the forward passes over a rollout (log-probs, entropies, the nucleus
log-mass), the loss of the controllers' pipeline on the whole optimizer batch with the micro-batches
re-run against its leaves' gradients, and the skipped steps and the metric reduction over ranks.
``llm.train.Trainer`` inherits these methods (``UpdateMixin``); they read and set its attributes."""

from __future__ import annotations

import contextlib
import math
import sys

import numpy as np
import torch

import controllers as C
from llm.config import TrainConfig
from llm.parallel import rank_scale
from llm.rollout import Rollout, token_stats


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


class UpdateMixin:
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
