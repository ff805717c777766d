"""A built-in character tokenizer: no download, deterministic, enough for the synthetic tasks.

Ids 0, 1, 2 are <pad>, <bos>, <eos>; then one id per character of the alphabet. It exposes the few
attributes ``transformers`` generation reads (``pad_token_id``, ``eos_token_id``, ``bos_token_id``).
"""

from __future__ import annotations

import string

import torch

DEFAULT_ALPHABET = string.digits + string.ascii_lowercase + "+-*/()=,:?. "
SPECIAL = ("<pad>", "<bos>", "<eos>")


class CharTokenizer:
    def __init__(self, alphabet: str = DEFAULT_ALPHABET):
        if not alphabet or len(set(alphabet)) != len(alphabet):
            raise ValueError(
                f"alphabet: got {alphabet!r}; allowed: a non-empty string of distinct characters"
            )
        self.alphabet = alphabet
        self.pad_token_id, self.bos_token_id, self.eos_token_id = 0, 1, 2
        self._id = {c: i + len(SPECIAL) for i, c in enumerate(alphabet)}

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL) + len(self.alphabet)

    def encode(self, text: str, bos: bool = True) -> list[int]:
        bad = sorted({c for c in text if c not in self._id})
        if bad:
            raise ValueError(
                f"text: characters {bad} of {text!r} are not in the alphabet; allowed: {self.alphabet!r}"
            )
        return ([self.bos_token_id] if bos else []) + [self._id[c] for c in text]

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        """Text of ``ids``, special tokens dropped; stops at the first <eos> unless told otherwise."""
        out = []
        for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
            if i == self.eos_token_id and stop_at_eos:
                break
            if i >= len(SPECIAL):
                out.append(self.alphabet[i - len(SPECIAL)])
        return "".join(out)

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded (B, L) ids and attention mask of prompts (generation appends on the right)."""
        enc = [self.encode(t) for t in texts]
        L = max(map(len, enc))
        ids = torch.full((len(enc), L), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(enc), L), dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, L - len(e) :] = torch.as_tensor(e)
            mask[i, L - len(e) :] = 1
        return ids, mask
