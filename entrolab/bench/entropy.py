"""``python -m entrolab.bench entropy``: chunked log-prob + entropy (``llm.logprobs``) against the naive full softmax.

Naive (what most trainers write):  lp = log_softmax(z/τ) in float32 over the whole (B, T, V) tensor,
logp = lp.gather(y), H = −Σ exp(lp)·lp — two or three (B, T, V) float32 temporaries.
Ours: ``selective_log_softmax`` + ``token_entropy``, ``chunk_tokens`` rows at a time.

Each case runs in a fresh child process, so peak memory is that case's alone: on CPU the child's peak
RSS minus its RSS after the logits were allocated; on CUDA ``max_memory_allocated`` minus the logits.
On CPU the child runs with a fixed glibc mmap threshold (``MALLOC_MMAP_THRESHOLD_=65536``), so freed
temporaries leave the RSS at once. Under glibc's default dynamic threshold the heap can keep freed
chunks, and the RSS then counts them too: we saw 631 MB instead of 99 MB for the chunked form at
V = 32k, T = 2048. That is an allocator artifact, not live tensors.
Target (issue 7): peak extra memory ≤ 1/8 of naive (read at the largest T), results equal within 1e-5.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from entrolab.bench import harness

CHILD = r"""
import json, resource, sys, time
import torch
from llm.logprobs import logprob_entropy
from entrolab.common.runio import peak_rss_mb  # VmHWM: ru_maxrss would include the parent's peak

V, T, mode, device, chunk = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
torch.manual_seed(0)
z = torch.randn(1, T, V, device=device).mul_(3)  # in place: no second (T, V) temporary before the baseline
y = torch.randint(0, V, (1, T), device=device)
cuda = device.startswith("cuda")

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

def run():
    if mode == "naive":
        lp = torch.log_softmax(z.float(), -1)
        logp = lp.gather(-1, y[..., None]).squeeze(-1)
        h = -(lp.exp() * lp).sum(-1)
    else:
        logp, h = logprob_entropy(z, y, chunk_tokens=chunk)
    return logp, h

if cuda:
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated() / 2**20
else:
    base = rss_mb()
t0 = time.perf_counter(); logp, h = run()
if cuda: torch.cuda.synchronize()
first = time.perf_counter() - t0
peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()) - base
times = []
for _ in range(3):
    t0 = time.perf_counter(); run()
    if cuda: torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
out = {"peak_extra_mb": peak, "seconds": sorted(times)[1]}
if mode != "naive":  # after the peak was read: the naive float32 result, and a float64 reference
    lp = torch.log_softmax(z.float(), -1)
    out["max_diff_vs_naive"] = max(float((logp - lp.gather(-1, y[..., None]).squeeze(-1)).abs().max()),
                                   float((h + (lp.exp() * lp).sum(-1)).abs().max()))
    del lp
ref = torch.log_softmax(z.double(), -1)
out["max_err_vs_float64"] = max(float((logp.double() - ref.gather(-1, y[..., None]).squeeze(-1)).abs().max()),
                                float((h.double() + (ref.exp() * ref).sum(-1)).abs().max()))
print(json.dumps(out))
"""


def _case(V: int, T: int, mode: str, device: str, chunk: int) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(V), str(T), mode, device, str(chunk)],
        capture_output=True, text=True, timeout=1800, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"entropy bench child failed (V={V}, T={T}, {mode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False, device: str = "cpu", watch: harness.LoadWatch | None = None) -> dict:
    vocabs = (32_000,) if quick else (32_000, 152_000)
    lengths = (256, 1024) if quick else (512, 1024, 2048, 4096)
    from llm.logprobs import DEFAULT_CHUNK_TOKENS

    chunk = DEFAULT_CHUNK_TOKENS
    rows = []
    for V in vocabs:
        for T in lengths:
            naive, ours = _case(V, T, "naive", device, chunk), _case(V, T, "chunked", device, chunk)
            if watch is not None:
                watch.sample()
            rows.append(
                {
                    "V": V, "T": T, "naive_mb": naive["peak_extra_mb"], "ours_mb": ours["peak_extra_mb"],
                    "naive_s": naive["seconds"], "ours_s": ours["seconds"],
                    "naive_err": naive["max_err_vs_float64"], "ours_err": ours["max_err_vs_float64"],
                    "diff_vs_naive": ours["max_diff_vs_naive"],
                    "memory_ratio": ours["peak_extra_mb"] / max(naive["peak_extra_mb"], 1e-9),
                }
            )  # fmt: skip
    return {"device": device, "chunk_tokens": chunk, "rows": rows}


def summary(res: dict) -> list[str]:
    rows = res["rows"]
    top = max(r["T"] for r in rows)
    at_top = [r for r in rows if r["T"] == top]
    worst = max(at_top, key=lambda r: r["memory_ratio"])
    big = max(rows, key=lambda r: (r["V"], r["T"]))
    diff = max(r["diff_vs_naive"] for r in rows)
    rel = max(r["diff_vs_naive"] / math.log(r["V"]) for r in rows)
    err = max(max(r["ours_err"], r["naive_err"]) for r in rows)
    return [
        f"peak extra memory at T = {top}, chunked / naive: at most {worst['memory_ratio']:.3f} (V = {worst['V']}); "
        f"target ≤ 1/8: {'met' if worst['memory_ratio'] <= 0.125 else 'NOT met'}. The chunked form needs "
        f"≈ 3·{res['chunk_tokens']}·V floats whatever T is, so short batches gain less (table)",
        f"largest case V = {big['V']}, T = {big['T']}: {big['naive_mb']:.0f} MB naive vs {big['ours_mb']:.0f} MB "
        f"chunked; {big['naive_s'] * 1e3:.0f} ms vs {big['ours_s'] * 1e3:.0f} ms",
        f"chunked vs naive (both float32): max difference {diff:.1e} (target 1e-5: {'met' if diff <= 1e-5 else 'NOT met'}); "
        f"= {rel:.1e} of log V; both are {err:.1e} from a float64 reference: the float32 rounding of sums over "
        f"V terms, the same for both forms",
    ]


def table(res: dict) -> list[str]:
    lines = [
        "| V | T | naive peak (MB) | chunked peak (MB) | ratio | naive (ms) | chunked (ms) | max diff vs naive |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['V']} | {r['T']} | {r['naive_mb']:.0f} | {r['ours_mb']:.0f} | {r['memory_ratio']:.3f} | "
            f"{r['naive_s'] * 1e3:.0f} | {r['ours_s'] * 1e3:.0f} | {r['diff_vs_naive']:.1e} |"
        )
    return lines
