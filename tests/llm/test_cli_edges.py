"""The trainer's command line on bad input: one line naming the file, line or field, before any work, and
nothing left in the output directory. A new case is one row of ``CASES``."""

from __future__ import annotations

import json

import pytest

from llm.train import main

LONG = json.dumps({"prompt": "a" * 5000 + "=", "answer": "a"})
OK = json.dumps({"prompt": "abc=", "answer": "abc"})

CASES = {
    # name: (data file bytes or None, extra argv, the message's start)
    "prompt longer than the context": (
        (LONG + "\n" + OK + "\n").encode(), ["--sft-steps", "5"],
        "error: {data}:1: a prompt of 5002 tokens + max_new_tokens 5 exceeds the model's context of 256 tokens; "
        "allowed: prompts of at most 251 tokens",
    ),
    "character outside the tiny alphabet": (
        (OK + "\n" + json.dumps({"prompt": "ab$=", "answer": "ab"}) + "\n").encode(), [],
        "error: {data}:2: text: characters ['$'] of 'ab$=' are not in the alphabet; allowed:",
    ),
    "data file not UTF-8": (
        (OK + "\n").encode() + b'{"prompt": "\xff=", "answer": "a"}\n', [],
        "error: {data}:2: byte 0xff is not UTF-8; allowed: a UTF-8 text file",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_before_work(case, tmp_path, capsys):
    content, extra, message = CASES[case]
    argv = ["--preset", "tiny-copy", "--steps", "2", "--eval-prompts", "1", "--sft-steps", "0", "--tracker",
            "none", "--out-dir", str(tmp_path / "out"), "--name", "x"]  # fmt: skip
    data = tmp_path / "data.jsonl"
    if content is not None:
        data.write_bytes(content)
        argv += ["--task", "jsonl", "--data", str(data)]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message.format(data=data)), err
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())
