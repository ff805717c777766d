"""``python -m entrolab.bench controllers``: what the telemetry and each controller family cost, as a share of
one trainer step.

The step: ``llm.train.Trainer.rollout_step`` on the built-in tiny model (8 prompts × 8 completions,
16 new tokens, fp32, CPU): sampling, rewards, the loss through ``controllers.policy_loss``, backward,
AdamW, the realised-ΔH pass. The costs: on a TokenBatch of that step's shape (64 × 16), the time of
``controllers.telemetry``, and for each family the time of ``policy_loss`` + backward with the family's
pipeline minus the same with GRPO alone. The tiny model makes the step as cheap as it gets, so the
shares here are upper bounds; with a 135M model the step is ~500× longer and the controllers cost the
same. Target (issue 7): under 5% of a step.

With ``--device cuda`` the step, the batch and the costs are on the GPU, and one more line times each
family at a language-model batch (512 × 1024 tokens) with the device synchronisations torch reports.

Device synchronisations per ``policy_loss`` call, for GRPO + PPO clip and each family: host reads and
ops whose output size depends on the values, counted on CPU by ``harness.count_host_reads`` (the
stand-in the tests use; on a GPU that last line gives torch's own count).
"""

from __future__ import annotations

import dataclasses
import tempfile

import torch

import controllers as C
from entrolab.bench import harness

FAMILIES = {
    "advantage (qae)": ["qae", "ppo_clip"],
    "weight (clip_cov + top_entropy)": ["grpo", "ppo_clip", "clip_cov", "top_entropy"],
    "penalty (kl_cov + ref_kl)": ["grpo", "ppo_clip", "kl_cov", "ref_kl"],
    "extra (entropy_bonus)": ["grpo", "ppo_clip", "entropy_bonus"],
    "stateful (pi_control)": ["grpo", "ppo_clip", "pi_control"],
    "steer + dynamic_sampling": ["grpo", "ppo_clip", "steer", "dynamic_sampling"],
}


def _batch(
    B: int, T: int, seed: int = 0, device: str = "cpu"
) -> tuple[C.TokenBatch, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(B, T, generator=g) * 3).to(device).requires_grad_()
    ent = (torch.rand(B, T, generator=g) * 2).to(device).requires_grad_()
    batch = C.TokenBatch(
        logp=logp, old_logp=logp.detach() - 0.01 * torch.randn(B, T, generator=g).to(device),
        adv=torch.zeros(B, T, device=device), entropy=ent, mask=torch.ones(B, T, device=device),
        group=(torch.arange(B) // 8).to(device), reward=(torch.rand(B, generator=g) > 0.5).float().to(device),
        ref_logp=logp.detach() - 0.1,
    )  # fmt: skip
    return batch, logp, ent


def _loss_time(names: list[str], batch, logp, ent, repeat: int, sync=None) -> float:
    pipe = C.Pipeline([C.get(n) for n in names])
    state = pipe.init()
    gen = torch.Generator().manual_seed(0)

    def once():
        nonlocal state
        logp.grad = ent.grad = None
        loss, metrics = C.policy_loss(batch, pipe, state, generator=gen)
        loss.backward()
        state = pipe.step(state, metrics)

    once()
    return harness.median(harness.timed(once, repeat, sync))


def _syncs(names: list[str], batch, counter=harness.count_host_reads) -> int:
    """What ``counter`` counts in one ``policy_loss`` call of the family's pipeline (after a warm-up call:
    first calls initialise kernels): the CPU stand-in by default, ``harness.count_cuda_syncs`` on a GPU."""
    pipe = C.Pipeline([C.get(n) for n in names])
    state = pipe.init()
    C.policy_loss(batch, pipe, state, generator=torch.Generator().manual_seed(0))
    with counter() as counts:
        C.policy_loss(batch, pipe, state, generator=torch.Generator().manual_seed(0))
    return sum(counts.values())


def _on_gpu(repeat: int) -> dict:
    """policy_loss + backward per family at a language-model batch on the GPU, and its synchronisations."""
    B, T = GPU_SHAPE
    batch, logp, ent = _batch(B, T, device="cuda")
    sync = torch.cuda.synchronize
    base = _loss_time(["grpo", "ppo_clip"], batch, logp, ent, repeat, sync)
    rows = [
        {
            "family": "grpo + ppo_clip",
            "ms": base * 1e3,
            "syncs": _syncs(["grpo", "ppo_clip"], batch, harness.count_cuda_syncs),
        }
    ]
    for fam, names in FAMILIES.items():
        t = _loss_time(names, batch, logp, ent, repeat, sync)
        rows.append({"family": fam, "ms": t * 1e3, "syncs": _syncs(names, batch, harness.count_cuda_syncs)})
    return {"B": B, "T": T, "device_name": torch.cuda.get_device_name(0), "rows": rows}


GPU_SHAPE = (512, 1024)
"""sequences × positions of the GPU measurement: 64 prompts × 8 completions of up to 1024 tokens"""


def _step_time(repeat: int, device: str = "cpu") -> tuple[float, dict | None]:
    """Median seconds of a tiny-model trainer step; on a GPU also where one step synchronises (the
    sampler's loop, the loss, the optimizer: torch's own count, by source line)."""
    from llm.config import PRESETS
    from llm.train import Trainer

    with tempfile.TemporaryDirectory() as d:
        cfg = dataclasses.replace(
            PRESETS["tiny-copy"], out_dir=d, sft_steps=0, max_new_tokens=16, tracker="none", eval_every=0,
            cpu=not device.startswith("cuda"),
        )  # fmt: skip
        tr = Trainer(cfg, progress=False)
        tr.rollout_step()
        seconds = harness.median(harness.timed(tr.rollout_step, repeat, harness.sync_for(device)))
        if not device.startswith("cuda"):
            return seconds, None
        with harness.count_cuda_syncs() as sites:
            tr.rollout_step()
        return seconds, {"total": sum(sites.values()), "top": sites.most_common(8)}


def run(quick: bool = False, device: str = "cpu", watch: harness.LoadWatch | None = None) -> dict:
    repeat = 15 if quick else 50
    B, T = 64, 16
    sync = harness.sync_for(device)
    step_s, step_syncs = _step_time(5 if quick else 15, device)
    batch, logp, ent = _batch(B, T, device=device)
    adv = torch.randn(B, T).to(device)
    tele_s = harness.median(harness.timed(lambda: C.telemetry(batch, adv), repeat, sync))
    base_s = _loss_time(["grpo"], batch, logp, ent, repeat, sync)
    rows = [{"family": "telemetry (in every policy_loss)", "seconds": tele_s, "share": tele_s / step_s}]
    reads = {"grpo + ppo_clip": _syncs(["grpo", "ppo_clip"], batch)}
    for fam, names in FAMILIES.items():
        t = _loss_time(names, batch, logp, ent, repeat, sync)
        rows.append({"family": fam, "seconds": t - base_s, "share": (t - base_s) / step_s})
        reads[fam] = _syncs(names, batch)
        if watch is not None:
            watch.sample()
    out = {"B": B, "T": T, "step_s": step_s, "grpo_loss_s": base_s, "rows": rows, "host_reads": reads}
    if device.startswith("cuda"):
        out["gpu"] = _on_gpu(repeat)
        out["gpu"]["step_syncs"] = step_syncs
    return out


def summary(res: dict) -> list[str]:
    worst = max(res["rows"], key=lambda r: r["share"])
    tele = res["rows"][0]
    return [
        f"one tiny-model trainer step ({res['B']} × {res['T']} tokens): {res['step_s'] * 1e3:.0f} ms; "
        f"policy_loss + backward with GRPO alone {res['grpo_loss_s'] * 1e3:.1f} ms",
        f"telemetry: {tele['seconds'] * 1e3:.2f} ms = {100 * tele['share']:.1f}% of the step",
        f"costliest family: {worst['family']}, {worst['seconds'] * 1e3:.2f} ms = {100 * worst['share']:.1f}% "
        f"(target < 5%: {'met' if worst['share'] < 0.05 else 'NOT met'})",
        *(
            [
                "device synchronisations per policy_loss call (the CPU stand-in's count): "
                + "; ".join(f"{k} {v}" for k, v in res["host_reads"].items())
            ]
            if "host_reads" in res
            else []
        ),
        *(
            [
                f"on {res['gpu']['device_name']}, {res['gpu']['B']} × {res['gpu']['T']} tokens, policy_loss + "
                "backward (ms, device syncs): "
                + "; ".join(f"{r['family']} {r['ms']:.2f}, {r['syncs']}" for r in res["gpu"]["rows"])
            ]
            + (
                [
                    f"one tiny-model trainer step synchronises {res['gpu']['step_syncs']['total']} times; "
                    "most at " + ", ".join(f"{k} ({n})" for k, n in res["gpu"]["step_syncs"]["top"])
                ]
                if res["gpu"].get("step_syncs")
                else []
            )
            if "gpu" in res
            else []
        ),
    ]


def table(res: dict) -> list[str]:
    lines = ["| cost | ms | share of a tiny-model step |", "| --- | --- | --- |"]
    lines += [f"| {r['family']} | {r['seconds'] * 1e3:.2f} | {100 * r['share']:.1f}% |" for r in res["rows"]]
    return lines
