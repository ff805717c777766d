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
    "unwritable output directory": (
        None, ["--out-dir", "/proc/entrolab"],
        "error: out_dir: cannot write the run directory /proc/entrolab/x (",
    ),
    "infinite learning rate": (None, ["--lr", "inf"], "error: lr: got inf; allowed: a number in (0.0, 1.0]"),
    "learning rate that overflows Adam": (None, ["--lr", "1e38"], "error: lr: got 1e+38; allowed: a number in (0.0, 1.0]"),
    "infinite weight decay": (None, ["--weight-decay", "inf"], "error: weight_decay: got inf; allowed: a finite number >= 0.0"),
    "two surrogate losses": (
        None, ["--controllers", "grpo", "ppo_clip", "nft"],
        "error: controllers: 'ppo_clip' and 'nft' each define the PG surrogate; allowed: at most one",
    ),
    "a hyperparameter beyond any float": (
        None, ["--controllers", "grpo", "ppo_clip", "clip_cov", "--hp", "clip_cov.frac=" + "9" * 401],
        "error: hp: clip_cov.frac: got an integer of 401 digits; allowed: a real number within a float's range",
    ),
    "no controller makes advantages": (
        None, ["--controllers", "ppo_clip", "clip_cov"],
        "error: controllers: got ['ppo_clip', 'clip_cov'], none of which makes advantages from rewards, so the "
        "LLM trainer would train on zero advantages; allowed: a pipeline with one of",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_before_work(case, tmp_path, capsys):
    content, extra, message = CASES[case]
    argv = ["--preset", "tiny-copy", "--steps", "2", "--eval-prompts", "1", "--sft-steps", "0", "--tracker",
            "none", "--out-dir", str(tmp_path / "out"), "--name", "x"]  # fmt: skip
    # the last --out-dir given wins (tyro), so a case may override it
    data = tmp_path / "data.jsonl"
    if content is not None:
        data.write_bytes(content)
        argv += ["--task", "jsonl", "--data", str(data)]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message.format(data=data)), err
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())


def test_a_double_ctrl_c_stops_without_a_traceback(tmp_path):
    """The first SIGINT finishes the rollout and saves; a second one stops at once, in one line, exit 130."""
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "llm.train", "--preset", "tiny-copy", "--sft-steps", "0", "--steps", "100000",
            "--eval-every", "0", "--tracker", "none", "--out-dir", str(tmp_path), "--name", "x"]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "x" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
