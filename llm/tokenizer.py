"""A built-in character tokenizer: no download, deterministic, enough for the synthetic tasks.

Ids 0, 1, 2 are <pad>, <bos>, <eos>; then one id per character of the alphabet. It exposes the few
attributes ``transformers`` generation reads (``pad_token_id``, ``eos_token_id``, ``bos_token_id``).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

DEFAULT_ALPHABET = string.digits + string.ascii_lowercase + "+-*/()=,:?. "
SPECIAL = ("<pad>", "<bos>", "<eos>")
FILENAME = "char_tokenizer.json"


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

    def to_hf(self):
        """The same tokenizer as a ``transformers.PreTrainedTokenizerFast`` (same ids, <bos> prepended,
        left padding), for engines that need one (TRL's ``processing_class``)."""
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        vocab = {s: i for i, s in enumerate(SPECIAL)} | self._id
        t = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
        t.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        t.decoder = decoders.Fuse()
        t.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
        return PreTrainedTokenizerFast(
            tokenizer_object=t, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", padding_side="left"
        )

    def save(self, directory: str | Path) -> None:
        (Path(directory) / FILENAME).write_text(json.dumps({"alphabet": self.alphabet}))

    @staticmethod
    def load(directory: str | Path) -> CharTokenizer:
        return CharTokenizer(json.loads((Path(directory) / FILENAME).read_text())["alphabet"])


class HFTokenizer:
    """The CharTokenizer interface over a Hugging Face tokenizer (left padding for prompts)."""

    def __init__(self, tok, chat: str = ""):
        self.tok, self.chat = tok, chat
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self.pad_token_id, self.eos_token_id = tok.pad_token_id, tok.eos_token_id
        self.bos_token_id = tok.bos_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def message(self, prompt: str) -> str:
        """The user message for a prompt: ``chat`` with {prompt} replaced by the prompt without its
        trailing "=" ("What is {prompt}?" → "What is 12+34?"), or ``chat + " " + prompt``."""
        if "{prompt}" in self.chat:
            return self.chat.replace("{prompt}", prompt.rstrip("= "))
        return f"{self.chat} {prompt}"

    def encode(self, text: str, bos: bool = True) -> list[int]:
        return self.tok(text, add_special_tokens=bos)["input_ids"]

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if stop_at_eos and self.eos_token_id in ids:
            ids = ids[: ids.index(self.eos_token_id)]
        return self.tok.decode(ids, skip_special_tokens=True)

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        special = True
        if self.chat:  # the template adds its own special tokens
            texts = [
                self.tok.apply_chat_template(
                    [{"role": "user", "content": self.message(t)}],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                for t in texts
            ]
            special = False
        enc = self.tok(
            texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=special
        )
        return enc["input_ids"], enc["attention_mask"]

    def save(self, directory: str | Path) -> None:
        self.tok.save_pretrained(directory)


def load_tokenizer(directory: str | Path, chat: str = ""):
    """The tokenizer saved beside a model: the character tokenizer if its file is there, else HF's."""
    if (Path(directory) / FILENAME).is_file():
        return CharTokenizer.load(directory)
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(directory, local_files_only=True), chat=chat)
