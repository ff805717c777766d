"""The trainer's peak memory, estimated before any work, so that a configuration that cannot fit is refused
in one line with the estimate, not after minutes with a ``MemoryError``.

The peak is the sum of the parts a rollout step holds at once (bytes, float32 throughout, as the trainer
keeps its master weights):

- ``weights``: the policy's parameters; ``reference``: a frozen copy when a controller reads reference
  log-probs; ``optimizer``: gradients and AdamW's two moments of the trainable parameters;
- ``kv_cache``: the sampler's keys and values, for every row it samples at once (the rollout's
  prompts × group size, or an evaluation call's), over the prompt and ``max_new_tokens`` positions;
- ``activations``: what one training micro-batch's forward keeps for its backward, per token and layer
  ``ACT_PER_TOKEN_LAYER`` hidden-sized vectors plus the attention scores (only one layer's with gradient
  checkpointing, which keeps each layer's input instead);
- ``logits``: three chunks of ``chunk_tokens`` × vocabulary floats (the log-prob/entropy computation).

It is an estimate: ``entrolab/bench/trainer.py`` prints it beside the measured peak. A configuration whose estimate
exceeds 90% of the memory available (``entrolab.common.runio.available_mb``) is refused, naming the setting that
dominates.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT = 4
ACT_PER_TOKEN_LAYER = 32
"""hidden-sized float vectors a decoder layer keeps per token for its backward (norms, q/k/v/o, the MLP's
three projections at the intermediate size counted as a quarter of them each)"""
HEADROOM = 0.9


@dataclass(frozen=True)
class Arch:
    """The sizes of a decoder-only model that its memory depends on."""

    params: int
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def tiny_arch(vocab: int, hidden: int, layers: int, heads: int, qwen2: bool = False) -> Arch:
    """The built-in tiny model's sizes (``llm.models.tiny_model``: intermediate 4·hidden, tied embeddings,
    as many key/value heads as heads; Qwen2 adds q/k/v biases), without building it."""
    inter = 4 * hidden
    per_layer = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden + (3 * hidden if qwen2 else 0)
    return Arch(
        params=vocab * hidden + layers * per_layer + hidden, layers=layers, hidden=hidden, intermediate=inter,
        vocab=vocab, heads=heads, kv_heads=heads,
    )  # fmt: skip


def arch_of(model) -> Arch:
    """A built model's sizes, from its config and its parameters."""
    c = model.config
    heads = int(c.num_attention_heads)
    return Arch(
        params=sum(p.numel() for p in model.parameters()), layers=int(c.num_hidden_layers),
        hidden=int(c.hidden_size), intermediate=int(getattr(c, "intermediate_size", 4 * c.hidden_size)),
        vocab=int(c.vocab_size), heads=heads, kv_heads=int(getattr(c, "num_key_value_heads", None) or heads),
    )  # fmt: skip


def estimate(cfg, arch: Arch, prompt_tokens: int, reference: bool) -> dict[str, float]:
    """The parts of the peak, in bytes, for a ``TrainConfig`` (module docstring)."""
    L = prompt_tokens + cfg.max_new_tokens
    params = arch.params
    trainable = params if not cfg.lora_rank else cfg.lora_rank * 2 * arch.hidden * 7 * arch.layers
    sampled = cfg.prompts_per_step * (cfg.group_size + cfg.guide_per_group)
    per_eval = max(1, max(cfg.micro_batch_size, 256) // max(cfg.eval_samples, 1))
    evaluated = min(cfg.eval_prompts, per_eval) * cfg.eval_samples if cfg.eval_every else 0
    kv_per_row = arch.layers * 2 * arch.kv_heads * arch.head_dim * L * FLOAT
    micro = cfg.micro_batch_size or cfg.prompts_per_step * cfg.group_size // cfg.minibatches
    per_token_layer = (ACT_PER_TOKEN_LAYER * arch.hidden + 2 * arch.heads * L) * FLOAT
    if cfg.gradient_checkpointing:
        act = micro * L * (arch.layers * arch.hidden * FLOAT + per_token_layer)
    else:
        act = micro * L * arch.layers * per_token_layer
    return {
        "weights": params * FLOAT,
        "reference": params * FLOAT if reference else 0.0,
        "optimizer": trainable * 3 * FLOAT,
        "kv_cache": max(sampled, evaluated) * kv_per_row,
        "activations": float(act),
        "logits": 3.0 * cfg.chunk_tokens * arch.vocab * FLOAT,
    }


# the setting a user lowers when a part dominates
LOWER = {
    "weights": "model",
    "reference": "model",
    "optimizer": "model",
    "kv_cache": "group_size",
    "activations": "micro_batch_size",
    "logits": "chunk_tokens",
}


def check(cfg, arch: Arch, prompt_tokens: int, reference: bool, free_mb: float | None, where: str) -> None:
    """Raise one line if the estimate exceeds ``HEADROOM`` of ``free_mb`` (None: unknown, no check)."""
    if free_mb is None:
        return
    parts = estimate(cfg, arch, prompt_tokens, reference)
    need = sum(parts.values()) / 2**20
    if need <= HEADROOM * free_mb:
        return
    budget = HEADROOM * free_mb * 2**20
    order = sorted(parts, key=parts.get, reverse=True)
    top = order[0]
    field = _field(cfg, top)
    value = getattr(cfg, field)
    if field == "micro_batch_size" and not value:
        rows = cfg.prompts_per_step * cfg.group_size // cfg.minibatches
        value = f"0 (all {rows} rows of an optimizer batch in one forward)"
    lower = dict.fromkeys(_field(cfg, p) for p in order[1:] if parts[p] > budget and _field(cfg, p) != field)
    also = "".join(f"; lower {f} too (its part alone exceeds the memory)" for f in lower)
    shown = ", ".join(f"{k} {v / 2**20:,.0f}" for k, v in parts.items() if v)
    raise ValueError(
        f"{field}: got {value}; allowed: a configuration that fits in memory (about {need:,.0f} MB needed: "
        f"{shown} MB; {free_mb:,.0f} MB free on {where}; {top} dominates{also})"
    )


def _field(cfg, part: str) -> str:
    """The setting to lower when ``part`` dominates (the tiny model's width for its size)."""
    field = LOWER[part]
    return "tiny_hidden" if field == "model" and cfg.model in ("tiny", "tiny-qwen2") else field
