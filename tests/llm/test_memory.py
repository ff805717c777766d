"""llm.memory: the trainer's peak estimate. The tiny model's size is exact; the estimate grows with every
setting it names; a configuration that cannot fit is refused in one line before any work, naming the
setting to lower. (How close the estimate is to a measured peak: ``python -m entrolab.bench trainer``.)"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm import memory
from llm.config import PRESETS
from llm.models import tiny_model
from llm.train import main


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize(("hidden", "layers", "heads"), [(8, 1, 2), (32, 2, 4), (48, 3, 6)])
def test_tiny_arch_counts_the_built_models_parameters(arch, hidden, layers, heads):
    model = tiny_model(40, arch=arch, hidden=hidden, layers=layers, heads=heads)
    got = memory.tiny_arch(40, hidden, layers, heads, qwen2=arch == "qwen2")
    assert got == memory.arch_of(model)


BASE = dataclasses.replace(PRESETS["tiny-copy"], eval_every=0)
ARCH = memory.tiny_arch(40, 64, 2, 4)


@settings(max_examples=40, deadline=None)
@given(
    field=st.sampled_from(["group_size", "prompts_per_step", "max_new_tokens", "chunk_tokens"]),
    factor=st.integers(2, 50),
)
def test_the_estimate_grows_with_what_it_names(field, factor):
    small = memory.estimate(BASE, ARCH, 12, reference=False)
    big = memory.estimate(
        dataclasses.replace(BASE, **{field: getattr(BASE, field) * factor}), ARCH, 12, False
    )
    assert sum(big.values()) > sum(small.values())
    assert all(big[k] >= small[k] for k in small)
    with_ref = memory.estimate(BASE, ARCH, 12, reference=True)
    assert with_ref["reference"] == with_ref["weights"] > 0


def test_gradient_checkpointing_and_micro_batches_lower_the_activations():
    whole = memory.estimate(BASE, ARCH, 12, False)["activations"]
    assert (
        memory.estimate(dataclasses.replace(BASE, micro_batch_size=4), ARCH, 12, False)["activations"] < whole
    )
    assert (
        memory.estimate(dataclasses.replace(BASE, gradient_checkpointing=True), ARCH, 12, False)[
            "activations"
        ]
        < whole
    )


def test_check_names_the_dominant_setting():
    memory.check(BASE, ARCH, 12, False, free_mb=10**6, where="cpu")  # fits
    memory.check(BASE, ARCH, 12, False, free_mb=None, where="cpu")  # unknown: no check
    with pytest.raises(ValueError, match=r"^group_size: got 1000000; allowed: a configuration that fits in memory "
                       r"\(about [\d,]+ MB needed: .*kv_cache dominates"):  # fmt: skip
        memory.check(
            dataclasses.replace(BASE, group_size=10**6, micro_batch_size=8), ARCH, 12, False, 1000, "cpu"
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--tiny-hidden", "1000000"],
            "tiny_hidden: got 1000000; allowed: a configuration that fits in memory",
        ),
        (
            ["--group-size", "100000000", "--micro-batch-size", "8"],
            "group_size: got 100000000; allowed: a configuration",
        ),
        (
            ["--group-size", "100000000"],
            "micro_batch_size: got 0 (all 800000000 rows of an optimizer batch in one forward)",
        ),
    ],
)
def test_the_trainer_refuses_what_cannot_fit_before_any_work(args, message, tmp_path, capsys):
    assert main([*args, "--out-dir", str(tmp_path), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: " + message) and "\n" not in err, err
    assert not any(tmp_path.iterdir())
