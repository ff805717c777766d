"""Causal language models: a built-in tiny Llama/Qwen2 with random init (no download), or any Hugging
Face causal LM saved in a local directory (never the network: ``HF_HUB_OFFLINE`` is set while loading)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

ARCHS = ("llama", "qwen2")


def tiny_model(
    vocab_size: int, arch: str = "llama", hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0
):
    """A randomly initialised tiny causal LM (float32), e.g. for the character tokenizer's vocabulary."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    if arch not in ARCHS:
        raise ValueError(f"arch: got {arch!r}; allowed: {', '.join(ARCHS)}")
    for name, v in (("vocab_size", vocab_size), ("hidden", hidden), ("layers", layers), ("heads", heads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: got {v!r}; allowed: an integer >= 1")
    if hidden % heads:
        raise ValueError(f"hidden: got {hidden}; allowed: a multiple of heads = {heads}")
    cls = LlamaConfig if arch == "llama" else Qwen2Config
    cfg = cls(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def load_model(path: str | Path, dtype: torch.dtype = torch.float32):
    """``AutoModelForCausalLM.from_pretrained`` from a local directory, with the hub switched off."""
    from transformers import AutoModelForCausalLM

    p = Path(path)
    if not (p / "config.json").is_file():
        raise ValueError(f"path: got {str(path)!r}; allowed: a local model directory with a config.json")
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return AutoModelForCausalLM.from_pretrained(p, dtype=dtype, local_files_only=True)
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
