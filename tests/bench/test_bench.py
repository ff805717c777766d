"""The benchmark's reference implementation is right (timings themselves are never asserted)."""

import pytest

from entrolab.bench import sim as bench_sim
from entrolab.bench.__main__ import main


def test_numpy_reference_agrees_with_the_simulator():
    assert bench_sim.agreement(R=3, P=4, n=8, steps=5) < 1e-12


def test_bench_bad_input_is_one_line(capsys):
    assert main(["nosuch"]) == 2
    err = capsys.readouterr().err
    assert "name: got 'nosuch'; allowed: sim, entropy, controllers, trainer, precision, all" in err
    assert len(err.strip().splitlines()) == 1


def test_entropy_bench_cases_agree_with_float64():
    from entrolab.bench import entropy

    for mode in ("naive", "chunked"):
        res = entropy._case(2000, 64, mode, "cpu", 16)
        assert res["max_err_vs_float64"] < 1e-5 and res["peak_extra_mb"] >= 0
        if mode == "chunked":
            assert res["max_diff_vs_naive"] < 1e-5


def test_child_peak_memory_is_not_inherited_from_a_big_parent():
    """Pins a bug: ru_maxrss survives exec on Linux, so children of a process that had used 1.3 GB
    reported 1.3 GB for every case. The children now read VmHWM, which starts afresh."""
    import torch

    from entrolab.bench import entropy

    ballast = torch.ones(400 * 2**20 // 4)  # 400 MB touched in this (parent) process
    res = entropy._case(2000, 64, "chunked", "cpu", 16)
    assert res["peak_extra_mb"] < 100, res
    del ballast


def test_controller_bench_families_build_and_run():
    import controllers as C
    from entrolab.bench import controllers as bc

    batch, logp, ent = bc._batch(16, 4)
    for names in bc.FAMILIES.values():
        assert all(n in C.names() for n in names)
        assert bc._loss_time(names, batch, logp, ent, repeat=1) > 0


def test_trl_gets_the_same_character_ids():
    from llm.tokenizer import CharTokenizer

    tok = CharTokenizer()
    hf = tok.to_hf()
    for text in ("copy:abc=", "12+34=", "3,5 7:22="):
        assert hf(text)["input_ids"] == tok.encode(text)
        assert hf.decode(tok.encode(text), skip_special_tokens=True) == text
    batch = hf(["ab", "abcd"], padding=True)["input_ids"]
    assert batch[0][:2] == [tok.pad_token_id] * 2  # left padding, as generation needs


def test_all_skips_the_trl_comparison_with_a_line_when_trl_is_missing(monkeypatch, tmp_path, capsys):
    """`python -m entrolab.bench all` runs every benchmark it can; the TRL comparison is skipped, saying how to
    enable it (the others are stubbed here: only the dispatch is under test)."""
    import importlib.util

    import entrolab.bench.__main__ as M
    from entrolab.bench import harness
    from entrolab.bench import trainer as bench_trainer

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a)
    )
    why = bench_trainer.unavailable()
    assert why is not None and "pip install -e '.[bench]'" in why
    ran = []
    for name in ("sim", "entropy", "controllers"):
        mod = M._module(name)
        monkeypatch.setattr(mod, "run", lambda name=name, **kw: ran.append(name) or {})
        monkeypatch.setattr(mod, "summary", lambda res: ["stub"])
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    monkeypatch.setattr(M, "write_results_md", lambda latest: tmp_path / "RESULTS.md")
    assert main(["all", "--quick"]) == 0
    assert ran == ["sim", "entropy", "controllers"]
    assert f"bench trainer: skipped, {why}" in capsys.readouterr().err
    assert main(["trainer"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: name: bench trainer cannot run here: it compares with TRL")
        and err.count("\n") == 1
    )


def test_trl_is_found_when_installed():
    from entrolab.bench import trainer as bench_trainer

    assert bench_trainer.unavailable() is None


def test_precision_bench_measures_what_bf16_changes():
    """The bf16 case scores the same tokens in both precisions: the log-prob gap is measured (non-zero:
    autocast really ran in bf16), finite and within bf16's resolution of the logits; the summary says it."""
    import math

    from entrolab.bench import precision

    r = precision.case("tiny", repeat=1)
    assert 0 < r["logp_absdiff_mean"] <= r["logp_absdiff_max"] < 1.0
    assert 0 <= r["entropy_absdiff_max"] < 1.0 and 0 <= r["sampled_tokens_changed_frac"] <= 1
    assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("fp32_train_s", "bf16_train_s", "fp32_sample_s"))
    text = " ".join(precision.summary({"cpu_bf16_flags": [], "rows": [r]}))
    assert "log-probs differ by up to" in text and len(precision.table({"rows": [r]})) == 3


def test_passes_per_rollout_are_the_trainers_documented_counts():
    """The counts entrolab/bench/RESULTS.md reports, against the table in ``llm.train``'s docstring: no-grad passes
    1 (ΔH), + 1 for k > 1 leaves, off-policy 1 (old log-probs) + E·[k > 1] + 1, + 1 for top-p on-policy;
    the reference model once; the sampler one forward per new position (the first from the prefill)."""
    from entrolab.bench import trainer as bt

    want = {
        "on-policy, k = 1": (1, 1, 0),
        "on-policy, k = 2 micro-batch pieces": (2, 1, 0),
        "off-policy, 2 epochs × 2 minibatches": (2, 2, 0),
        "off-policy, 2 epochs × 2 minibatches, k = 2": (4, 2, 0),
        "top_p = 0.9, on-policy": (2, 1, 0),
        "reference model (ref_kl)": (1, 1, 1),
        "measure_dH off": (0, 1, 0),
        "dH_every = 2": (0.5, 1, 0),
    }
    rows = bt.passes_per_mode(steps=2)
    assert [r["mode"] for r in rows] == list(want)
    for r in rows:
        assert (r["no_grad_passes"], r["grad_passes"], r["ref_passes"]) == want[r["mode"]], r
        assert r["sampler_forwards"] == 6  # max_new_tokens = 6, <eos> suppressed: prefill + 5 decode steps
    assert "| on-policy, k = 1 |" in "\n".join(bt.table({"rows": [], "passes": rows}))


def test_results_keep_the_latest_run_of_each_device(monkeypatch, tmp_path):
    """RESULTS.md shows a GPU run beside the CPU run, not instead of it; a full run wins over a quick one."""
    import json

    import entrolab.bench.__main__ as M
    from entrolab.bench import harness

    def rec(command, date):
        return {"bench": "sim", "command": command, "machine": {"date": date}}

    rows = [
        rec("python -m entrolab.bench sim", "1"),
        rec("python -m entrolab.bench sim --device cuda", "2"),
        rec("python -m entrolab.bench sim --quick --device cuda", "3"),
        rec("python -m entrolab.bench sim --quick", "4"),
    ]
    (tmp_path / "sim.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    latest = M.latest_records()
    assert {k: v["machine"]["date"] for k, v in latest.items()} == {"sim": "1", "sim (cuda)": "2"}


def _trainer_row(model: str, speedup: float, memory_ratio: float) -> dict:
    row = {"model": model, "T": 16, "ours_tokens_per_s": 1.0, "ours_step_s": 1.0, "ours_metrics_logged": 43,
           "trl_tokens_per_s": 1.0, "trl_step_s": 1.0, "trl_metrics_logged": 25, "speedup": 1.0,
           "ours_peak_rss_mb": 1.0, "trl_peak_rss_mb": 1.0}  # fmt: skip
    row.update({"speedup_nodh": speedup, "memory_ratio_nodh": memory_ratio, "ours_nodh_peak_rss_mb": 1.0})
    return row


@pytest.mark.parametrize(
    ("rows", "verdict"),
    [
        ([("tiny", 1.6, 0.8), ("smollm2", 1.25, 0.9)], "setting): met"),
        ([("tiny", 1.6, 0.8), ("smollm2", 1.25, 1.1)], "NOT met"),  # fast enough, but above TRL's memory
        ([("tiny", 1.4, 0.8), ("smollm2", 1.25, 0.9)], "NOT met"),
        (
            [("tiny", 1.6, 0.8)],
            "met on the tiny model; SmolLM2 was not measured in this run, so the target is not judged",
        ),
    ],
)
def test_trainer_verdict_needs_every_case_at_or_below_trls_memory(rows, verdict):
    from entrolab.bench import trainer as bt

    line = bt.summary({"trl": "1.16.0", "rows": [_trainer_row(*r) for r in rows]})[-1]
    assert line.endswith(verdict)
