"""One decode step of a Llama or Qwen2 model on a KV cache allocated once: transformers' own operations,
in its order, without its per-call machinery.

``model(input_ids=..., cache=DynamicCache)`` spends most of a small model's decode step outside arithmetic:
its decorators and keyword plumbing, the attention mask rebuilt from the 2-D padding mask, output
dataclasses, and a ``torch.cat`` per layer that copies the whole cache to append one position.
``KVDecoder.step`` calls the model's own embedding, rotary, norm and MLP modules, and mirrors only the
attention block, where the cache is: the same ``torch`` calls on the same operands, so the logits are
transformers' to the bit (``tests/llm/test_kvdecode.py`` pins them, and
``tests/llm/test_sampler.py`` pins the sampled tokens to ``generate``'s) — and writes each new key and value
into a buffer sized for the whole completion, attending over a view of its filled part.

What it mirrors, from transformers' Llama/Qwen2 attention and its SDPA interface:
- the q/k/v projections (the rotary embedding applied by the model module's own function), keys and
  values appended per layer, the output projection;
- the mask: none when no prompt is padded (``enable_gqa`` when key/value heads are shared), else the
  boolean padding mask (B, 1, 1, L), with shared key/value heads handled by folding the query's heads
  into (B, kv heads, heads per kv head, D) as transformers does for a one-token query.

``unsupported(model)`` says why a model is not one of these (another architecture, attention
implementation, rotary scaling, sliding window, activation, or a layer that is not the plain module,
e.g. a LoRA adapter); the sampler then runs the model's own forward. On SmolLM2-135M the step is
arithmetic-bound and gains little; on the tiny models it is most of a decode step's cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _classes() -> dict[str, tuple]:
    from transformers.models.llama import modeling_llama as L
    from transformers.models.qwen2 import modeling_qwen2 as Q

    return {
        "causal_lm": (L.LlamaForCausalLM, Q.Qwen2ForCausalLM),
        "norm": (L.LlamaRMSNorm, Q.Qwen2RMSNorm),
        "layer": (L.LlamaDecoderLayer, Q.Qwen2DecoderLayer),
        "rotary": (L.apply_rotary_pos_emb, Q.apply_rotary_pos_emb),
    }


def unsupported(model) -> str | None:
    """None if ``KVDecoder`` reproduces this model's forward, else the reason it does not."""
    try:
        from transformers.activations import SiLUActivation
    except ImportError:  # pragma: no cover - transformers is a dependency of llm/
        return "transformers is not installed"
    try:
        cls = _classes()
    except (ImportError, AttributeError) as e:  # pragma: no cover - a transformers without these names
        return f"this transformers has no Llama/Qwen2 classes the step mirrors ({e})"
    if type(model) not in cls["causal_lm"]:
        return f"{type(model).__name__} is not LlamaForCausalLM or Qwen2ForCausalLM"
    cfg = model.config
    if getattr(cfg, "_attn_implementation", None) != "sdpa":
        return f"attention implementation {getattr(cfg, '_attn_implementation', None)!r} is not 'sdpa'"
    rotary = model.model.rotary_emb
    if getattr(rotary, "rope_type", None) != "default":
        return f"rotary type {getattr(rotary, 'rope_type', None)!r} is not 'default'"
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or ())):
        return "a layer uses sliding-window attention"
    if getattr(cfg, "pretraining_tp", 1) not in (None, 1):
        return "pretraining_tp > 1"
    norms = [model.model.norm]
    linears = [model.lm_head]
    for layer in model.model.layers[: cfg.num_hidden_layers]:
        if type(layer) not in cls["layer"]:
            return f"layer {type(layer).__name__} is not the plain decoder layer"
        a, m = layer.self_attn, layer.mlp
        norms += [layer.input_layernorm, layer.post_attention_layernorm]
        linears += [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]
        if type(m.act_fn) is not SiLUActivation and type(m.act_fn) is not nn.SiLU:
            return f"activation {type(m.act_fn).__name__} is not SiLU"
    if any(type(n) not in cls["norm"] for n in norms):
        return "a norm is not the plain RMSNorm"
    if any(type(lin) is not nn.Linear for lin in linears):
        return "a projection is not a plain nn.Linear (an adapter or a quantised layer)"
    if type(model.model.embed_tokens) is not nn.Embedding:
        return "the embedding is not a plain nn.Embedding"
    return None


class KVDecoder:
    """Decode steps of ``model`` after a prefill: ``step(tokens, positions)`` → logits (B, 1, V).

    ``cache``: the prefill's ``DynamicCache`` (copied into buffers of ``prompt_len + max_new_tokens``
    positions, then no longer used); ``prompt_mask``: the prompts' (B, Lp) padding mask. Build it with
    ``KVDecoder.build``, which returns None for a model ``unsupported`` names."""

    def __init__(self, model, cache, prompt_mask: Tensor, max_new_tokens: int):
        cfg = model.config
        self.model = model
        self.layers = list(model.model.layers[: cfg.num_hidden_layers])
        cls = _classes()
        self.apply_rotary = cls["rotary"][cls["causal_lm"].index(type(model))]  # the model's own module's
        B, Lp = prompt_mask.shape
        self.length = Lp
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        for i in range(len(self.layers)):
            k, v = cache.layers[i].keys, cache.layers[i].values
            if k.shape[2] != Lp:
                raise ValueError(
                    f"cache: got {k.shape[2]} positions in layer {i}; allowed: the prompt's {Lp}"
                )
            K = k.new_empty(B, k.shape[1], Lp + max_new_tokens, k.shape[3])
            V = v.new_empty(B, v.shape[1], Lp + max_new_tokens, v.shape[3])
            K[:, :, :Lp] = k
            V[:, :, :Lp] = v
            self.keys.append(K)
            self.values.append(V)
        # transformers drops the mask when no prompt is padded; with padding it is the 2-D mask, new
        # positions attended
        if bool(prompt_mask.all()):
            self.mask = None
        else:
            full = torch.cat([prompt_mask, prompt_mask.new_ones((B, max_new_tokens))], 1).bool()
            self.mask = full[:, None, None, :]

    @classmethod
    def build(cls, model, cache, prompt_mask: Tensor, max_new_tokens: int) -> KVDecoder | None:
        return None if unsupported(model) is not None else cls(model, cache, prompt_mask, max_new_tokens)

    def _attend(self, attn, q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None) -> Tensor:
        """transformers' SDPA attention for a one-token query (B, H, 1, D) → (B, 1, H·D)."""
        B, H, _, D = q.shape
        groups = attn.num_key_value_groups
        kw = {}
        if groups > 1:
            if mask is None:
                kw["enable_gqa"] = True
            else:  # the query's heads folded onto their key/value head
                q = q.reshape(B, H // groups, groups, D)
        out = F.scaled_dot_product_attention(
            q, K, V, attn_mask=mask, dropout_p=0.0, scale=attn.scaling, is_causal=False, **kw
        )
        out = out.reshape(B, -1, 1, D).transpose(1, 2).contiguous()
        return out.reshape(B, 1, -1).contiguous()

    def step(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """Logits (B, 1, V) of the next position, given this position's tokens (B,) and position ids (B, 1)."""
        m = self.model.model
        L = self.length
        if L >= self.keys[0].shape[2]:
            raise ValueError(f"step: the cache's {L} positions are full; allowed: max_new_tokens steps")
        h = m.embed_tokens(tokens[:, None])
        cos, sin = m.rotary_emb(h, positions)
        mask = None if self.mask is None else self.mask[..., : L + 1]
        B = h.shape[0]
        for layer, K, V in zip(self.layers, self.keys, self.values, strict=True):
            a, mlp = layer.self_attn, layer.mlp
            x = layer.input_layernorm(h)
            shape = (B, 1, -1, a.head_dim)
            q = F.linear(x, a.q_proj.weight, a.q_proj.bias).view(shape).transpose(1, 2)
            k = F.linear(x, a.k_proj.weight, a.k_proj.bias).view(shape).transpose(1, 2)
            v = F.linear(x, a.v_proj.weight, a.v_proj.bias).view(shape).transpose(1, 2)
            q, k = self.apply_rotary(q, k, cos, sin)
            K[:, :, L : L + 1] = k
            V[:, :, L : L + 1] = v
            o = self._attend(a, q, K[:, :, : L + 1], V[:, :, : L + 1], mask)
            h = h + F.linear(o, a.o_proj.weight, a.o_proj.bias)
            h = h + mlp(layer.post_attention_layernorm(h))
        self.length = L + 1
        h = m.norm(h)
        return F.linear(h, self.model.lm_head.weight, self.model.lm_head.bias)
