"""The built-in tiny models run, feed the chunked entropy, and round-trip through a local directory."""

from __future__ import annotations

import math

import pytest
import torch

from llm.logprobs import selective_log_softmax, token_entropy
from llm.models import load_model, tiny_model
from llm.tokenizer import CharTokenizer


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_model_forward_and_local_round_trip(arch, tmp_path):
    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, arch=arch, seed=1)
    ids, mask = tok.batch(["12+34=", "copy:ab="])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (*ids.shape, tok.vocab_size)
    h = token_entropy(logits)
    assert (h >= 0).all() and (h <= math.log(tok.vocab_size) + 1e-5).all()
    assert selective_log_softmax(logits[:, :-1], ids[:, 1:]).shape == (2, ids.shape[1] - 1)
    model.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids, attention_mask=mask).logits, logits, atol=1e-6)
    assert tiny_model(tok.vocab_size, arch=arch, seed=1).state_dict().keys() == model.state_dict().keys()


def test_bad_model_arguments_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="arch: got 'gpt5'"):
        tiny_model(10, arch="gpt5")
    with pytest.raises(ValueError, match="hidden: got 30"):
        tiny_model(10, hidden=30, heads=4)
    with pytest.raises(ValueError, match="path: got"):
        load_model(tmp_path / "nothing")
