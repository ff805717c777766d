"""Evaluation on held-out prompts: greedy accuracy, the unbiased pass@k for k = 1..n, and the policy's
token entropy on its own samples.

pass@k = mean over prompts of 1 − C(n − c, k)/C(n, k) (Chen et al. 2021; ``theory.pass_at_k``), from
n samples per prompt at the training temperature and top-p. ``eval/entropy`` is the token-mean entropy
(nats per token at the sampling temperature, full softmax) at the positions of those samples: the same
measure in every run, independent of the training batch.
"""

from __future__ import annotations

import numpy as np
import torch

from llm.rollout import sample, token_stats
from llm.tasks import Example, Task
from theory import pass_at_k


def evaluate(
    model,
    tok,
    task: Task,
    examples: list[Example],
    *,
    n_samples: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    batch_size: int = 256,
    sampler: str = "own",
    forward_rows: int = 0,
) -> dict[str, float]:
    """``eval/greedy_acc``, and with n_samples ≥ 1 also ``eval/pass@k`` (k = 1..n_samples),
    ``eval/response_len`` and ``eval/entropy`` (token-mean, nats at ``temperature``) of the samples.

    Args:
        n_samples: samples per prompt; 0 measures greedy accuracy only (the warm start's check).
        batch_size: sequences per sampler call (prompts are split into pieces of this many).
        sampler: ``llm.rollout.sample``'s (the same tokens either way).
        forward_rows: sequences per forward of the entropy pass (0: all of a sampler call's at once);
            the trainer passes its training micro-batch (or, without one, one prompt's samples), so the
            evaluation peaks no higher than training.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(f"n_samples: got {n_samples!r}; allowed: an integer >= 0")
    per = max(1, batch_size // max(n_samples, 1))
    greedy, correct, length = [], [], []
    ent_sum, n_tok = 0.0, 0.0
    for i in range(0, len(examples), per):
        part = examples[i : i + per]
        g = sample(
            model, tok, task, part, 1, max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0,
            seed=seed, greedy=True, sampler=sampler,
        )  # fmt: skip
        greedy += g.reward.tolist()
        if n_samples == 0:
            continue
        s = sample(
            model, tok, task, part, n_samples, max_new_tokens=max_new_tokens, temperature=temperature,
            top_p=top_p, seed=seed + i, sampler=sampler,
        )  # fmt: skip
        correct += s.reward.reshape(len(part), n_samples).sum(-1).round().long().tolist()
        length += s.completion_mask.sum(-1).tolist()
        was_training = model.training
        model.eval()
        rows = forward_rows or s.size
        with torch.no_grad():
            for j in range(0, s.size, rows):
                piece = s.rows(slice(j, j + rows))
                _, ent = token_stats(model, piece, temperature=temperature, chunk_tokens=256)
                ent_sum += float((ent * piece.completion_mask).sum())
        model.train(was_training)
        n_tok += float(s.completion_mask.sum())
    out = {"eval/greedy_acc": float(np.mean(greedy))}
    if n_samples:
        out["eval/response_len"] = float(np.mean(length))
        out["eval/entropy"] = ent_sum / max(n_tok, 1.0)
    for k in range(1, n_samples + 1):
        out[f"eval/pass@{k}"] = float(np.mean([pass_at_k(n_samples, c, k) for c in correct]))
    return out
