"""The trainer's command line: a bad setting is one line before any work, and the help documents every field
with its unit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm import train as T
from llm.config import PRESETS, TrainConfig


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group-size", "1"], "group_size: got 1; allowed: an integer >= 2 ('grpo' compares the responses"),
        (["--sampler", "vllm"], "sampler: got 'vllm'; allowed: own, generate"),
        (["--device", "gpu"], "device: got 'gpu'; allowed: auto, cpu, cuda"),
        (["--dH-every", "0"], "dH_every: got 0; allowed: an integer >= 1"),
        (["--seed", str(10**24)], "seed: got an integer of 25 digits; allowed: an integer >= 0 and < 2**63"),
        (["--seed", "-1"], "seed: got -1; allowed: an integer >= 0 and < 2**63"),
        (
            ["--max-new-tokens", "100000000"],
            "max_new_tokens: got 100000000; allowed: at most 255 (the model's context is 256 tokens",
        ),
        (["--preset", "huge"], "preset: got 'huge'; allowed: tiny-copy"),
        (["--hp", "ppo_clip.eps_hi"], "hp: got 'ppo_clip.eps_hi'; allowed: NAME.KEY=VALUE"),
        (["--controllers", "grpo", "nope"], "controllers: unknown controller 'nope'; allowed:"),
        (["--controllers", "eps_hi=0.3", "grpo"], "controllers: got 'eps_hi=0.3' before any controller name"),
        (["--top-p", "1.5"], "top_p: got 1.5; allowed: a number in (0.0, 1.0]"),
        (["--micro-batch-size", "7"], "micro_batch_size: got 7; allowed: 0 or a divisor"),
        (["--task", "jsonl"], "data: got ''; allowed: an existing JSONL file"),
        (["--model", "/no/such/dir"], "model: got '/no/such/dir'; allowed:"),
        (
            ["--keep-sampling-mask"],
            "keep_sampling_mask: got True; allowed: False, or True with top_p < 1",
        ),
        (
            ["--controllers", "vapo"],
            "controllers: 'vapo' needs value (a critic's value of every position), which the LLM trainer "
            "cannot provide (it keeps no critic; the simulator does)",
        ),
        (["--embedder", "bert"], "embedder: got 'bert'; allowed: auto, minilm, ngram"),
        (["--curriculum", "easy"], "curriculum: got 'easy'; allowed: none, semantic_entropy"),
        (["--offline-band", "0.6", "0.2"], "offline_band: got (0.6, 0.2); allowed: () or LO HI"),
        (["--guide-per-group", "8"], "guide_per_group: got 8; allowed: an integer in [0, group_size = 8)"),
        (
            ["--controllers", "grpo", "step_credit"],
            "controllers: 'step_credit' needs step_correct (a correct/incorrect judgement of every reasoning "
            "step); the LLM trainer provides it with --step-signal prefix",
        ),
        (
            ["--step-signal", "no_such_mod:f"],
            "step_signal: got 'no_such_mod:f'; allowed: none, prefix or an importable",
        ),
    ],
)
def test_bad_config_is_one_line_before_any_work(args, message, tmp_path, capsys):
    rc = T.main([*args, "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_bad_jsonl_line_is_named(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": 3}\n')
    rc = T.main(["--task", "jsonl", "--data", str(data), "--sft-steps", "0", "--out-dir", str(tmp_path)])
    assert rc == 2
    assert f"{data}:2:" in capsys.readouterr().err


def test_help_documents_fields_with_units():
    out = subprocess.run(
        [sys.executable, "-m", "llm.train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for text in ("--preset", "--controllers", "--micro-batch-size", "nats", "--resume", "tiny-copy"):
        assert text in out, text


def test_presets_are_valid_and_round_trip():
    for name, p in PRESETS.items():
        assert p.name == name
        assert TrainConfig.from_json(json.loads(json.dumps(p.to_json()))) == p


def test_the_old_cpu_flag_is_device_cpu_with_a_note(capsys):
    from llm.config import parse_command

    cfg, _ = parse_command(["--cpu"], "p", "s")
    assert cfg.device == "cpu" and cfg.runs_on_cpu()
    assert (
        "note: --cpu is deprecated and will be removed in the next release; use --device cpu"
        in capsys.readouterr().err
    )
    old = {**PRESETS["tiny-copy"].to_json(), "cpu": True}
    old.pop("device")
    assert TrainConfig.from_json(old).device == "cpu"  # a run saved with the old field reads back
