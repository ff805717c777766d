"""Rollout: G sampled completions per prompt, their rewards, and the per-token statistics the loss needs.

Deviations, stated first:
- Completions are sampled with ``model.generate`` (temperature τ, top-p, **no top-k**: transformers'
  default top-k = 50 is switched off so that τ = 1, top_p = 1 samples the model's full softmax).
- The training forward pass passes ``position_ids`` computed from the attention mask, the way
  ``generate`` numbers left-padded prompts; without them a plain forward shifts every left-padded row
  by its padding and the "on-policy" log-probs silently differ from the sampler's (TRL and verl
  pass them for the same reason).
- The <eos> token is part of the completion (it is an action: the policy chose to stop); tokens after
  it are padding. A completion that reaches ``max_new_tokens`` without <eos> is *truncated*: it keeps
  all its tokens, is scored as written, and is counted in ``rollout/truncated_frac``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from llm.logprobs import logprob_entropy
from llm.tasks import Example, Task


@dataclass
class Rollout:
    """One rollout of B = P·G sequences (P prompts × G completions, a prompt's completions adjacent)."""

    prompt_ids: Tensor  # (B, Lp) left-padded
    prompt_mask: Tensor  # (B, Lp) 1 = token
    completion_ids: Tensor  # (B, T) right-padded with pad after <eos>
    completion_mask: Tensor  # (B, T) float, 1 = response token (<eos> included)
    reward: Tensor  # (B,) float
    group: Tensor  # (B,) long, prompt index 0..P-1
    truncated: Tensor  # (B,) bool: no <eos> within max_new_tokens
    texts: list[str]  # decoded completions

    @property
    def size(self) -> int:
        return self.completion_ids.shape[0]

    def rows(self, idx: Tensor | slice) -> Rollout:
        """The sub-rollout of these sequence indices."""
        pick = (lambda t: t[idx]) if isinstance(idx, slice) else (lambda t: t.index_select(0, idx))
        texts = self.texts[idx] if isinstance(idx, slice) else [self.texts[i] for i in idx.tolist()]
        return Rollout(
            pick(self.prompt_ids), pick(self.prompt_mask), pick(self.completion_ids),
            pick(self.completion_mask), pick(self.reward), pick(self.group), pick(self.truncated), texts,
        )  # fmt: skip


def completion_mask(ids: Tensor, eos_token_id: int) -> tuple[Tensor, Tensor]:
    """(mask (B, T) float with 1 up to and including the first <eos>, truncated (B,) bool)."""
    is_eos = ids == eos_token_id
    seen_before = torch.cumsum(is_eos.long(), -1) - is_eos.long()  # eos strictly before t
    mask = (seen_before == 0).float()
    return mask, ~is_eos.any(-1)


@torch.no_grad()
def sample(
    model,
    tok,
    task: Task,
    examples: list[Example],
    group_size: int,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    greedy: bool = False,
) -> Rollout:
    """Generate ``group_size`` completions for each example and score them with the task's verifier.

    The sampling stream is ``torch.manual_seed(seed)`` (global RNG, as ``generate`` uses it), so a
    rollout is a function of (weights, examples, seed): the trainer derives seed from (root, step, rank).
    """
    prompts = [e.prompt for e in examples for _ in range(group_size)]
    ids, attn = tok.batch(prompts)
    device = next(model.parameters()).device
    ids, attn = ids.to(device), attn.to(device)
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    kw = (
        {"do_sample": False}
        if greedy
        else {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0}
    )
    out = model.generate(
        input_ids=ids, attention_mask=attn, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, **kw,
    )  # fmt: skip
    model.train(was_training)
    comp = out[:, ids.shape[1] :]
    if comp.shape[1] < max_new_tokens:  # every row stopped early: pad to the fixed width
        pad = comp.new_full((comp.shape[0], max_new_tokens - comp.shape[1]), tok.pad_token_id)
        comp = torch.cat([comp, pad], 1)
    mask, truncated = completion_mask(comp, tok.eos_token_id)
    comp = torch.where(mask.bool(), comp, torch.full_like(comp, tok.pad_token_id))
    texts = [tok.decode(row) for row in comp.cpu()]
    reward = torch.tensor(
        [task.score(t, examples[i // group_size]) for i, t in enumerate(texts)], dtype=torch.float32
    )
    group = torch.arange(len(examples)).repeat_interleave(group_size)
    return Rollout(ids, attn, comp, mask.to(device), reward.to(device), group.to(device), truncated, texts)


def token_stats(
    model, roll: Rollout, *, temperature: float, chunk_tokens: int, entropy_grad: bool = False
) -> tuple[Tensor, Tensor]:
    """Log-prob of each sampled token and the entropy at its position, at temperature τ. (B, T) each.

    Runs under the caller's grad mode: with grad enabled the log-probs carry the gradient, and so does
    the entropy if ``entropy_grad`` (recomputed in backward chunk by chunk; for an entropy bonus).
    Only the T + 1 last positions' logits are computed (``logits_to_keep``), never the prompt's.
    """
    T = roll.completion_ids.shape[1]
    ids = torch.cat([roll.prompt_ids, roll.completion_ids], 1)
    attn = torch.cat([roll.prompt_mask, torch.ones_like(roll.completion_ids)], 1)
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=T + 1).logits
    logits = logits[:, :-1]  # (B, T, V): position t predicts completion token t
    return logprob_entropy(logits, roll.completion_ids, temperature, chunk_tokens, entropy_grad)
