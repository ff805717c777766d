"""``python -m bench controllers``: what the telemetry and each controller family cost, as a share of
one trainer step.

The step: ``llm.train.Trainer.rollout_step`` on the built-in tiny model (8 prompts × 8 completions,
16 new tokens, fp32, CPU): sampling, rewards, the loss through ``controllers.policy_loss``, backward,
AdamW, the realised-ΔH pass. The costs: on a TokenBatch of that step's shape (64 × 16), the time of
``controllers.telemetry``, and for each family the time of ``policy_loss`` + backward with the family's
pipeline minus the same with GRPO alone. The tiny model makes the step as cheap as it gets, so the
shares here are upper bounds; with a 135M model the step is ~500× longer and the controllers cost the
same. Target (issue 7): under 5% of a step.

Host reads per ``policy_loss`` call (each a device synchronisation on a GPU; counted with
``harness.count_host_reads`` on CPU, the stand-in the tests use) for GRPO + PPO clip and each family.
"""

from __future__ import annotations

import dataclasses
import tempfile

import torch

import controllers as C
from bench import harness

FAMILIES = {
    "advantage (qae)": ["qae", "ppo_clip"],
    "weight (clip_cov + top_entropy)": ["grpo", "ppo_clip", "clip_cov", "top_entropy"],
    "penalty (kl_cov + ref_kl)": ["grpo", "ppo_clip", "kl_cov", "ref_kl"],
    "extra (entropy_bonus)": ["grpo", "ppo_clip", "entropy_bonus"],
    "stateful (pi_control)": ["grpo", "ppo_clip", "pi_control"],
    "steer + dynamic_sampling": ["grpo", "ppo_clip", "steer", "dynamic_sampling"],
}


def _batch(B: int, T: int, seed: int = 0) -> tuple[C.TokenBatch, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(B, T, generator=g) * 3).requires_grad_()
    ent = (torch.rand(B, T, generator=g) * 2).requires_grad_()
    batch = C.TokenBatch(
        logp=logp, old_logp=logp.detach() - 0.01 * torch.randn(B, T, generator=g), adv=torch.zeros(B, T),
        entropy=ent, mask=torch.ones(B, T), group=torch.arange(B) // 8,
        reward=(torch.rand(B, generator=g) > 0.5).float(), ref_logp=logp.detach() - 0.1,
    )  # fmt: skip
    return batch, logp, ent


def _loss_time(names: list[str], batch, logp, ent, repeat: int) -> float:
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
    return harness.median(harness.timed(once, repeat))


def _host_reads(names: list[str], batch) -> int:
    pipe = C.Pipeline([C.get(n) for n in names])
    state = pipe.init()
    with harness.count_host_reads() as counts:
        C.policy_loss(batch, pipe, state, generator=torch.Generator().manual_seed(0))
    return sum(counts.values())


def _step_time(repeat: int) -> float:
    from llm.config import PRESETS
    from llm.train import Trainer

    with tempfile.TemporaryDirectory() as d:
        cfg = dataclasses.replace(
            PRESETS["tiny-copy"], out_dir=d, sft_steps=0, max_new_tokens=16, tracker="none", eval_every=0
        )
        tr = Trainer(cfg, progress=False)
        tr.rollout_step()
        return harness.median(harness.timed(tr.rollout_step, repeat))


def run(quick: bool = False, device: str = "cpu", watch: harness.LoadWatch | None = None) -> dict:
    repeat = 15 if quick else 50
    B, T = 64, 16
    step_s = _step_time(5 if quick else 15)
    batch, logp, ent = _batch(B, T)
    adv = torch.randn(B, T)
    tele_s = harness.median(harness.timed(lambda: C.telemetry(batch, adv), repeat))
    base_s = _loss_time(["grpo"], batch, logp, ent, repeat)
    rows = [{"family": "telemetry (in every policy_loss)", "seconds": tele_s, "share": tele_s / step_s}]
    reads = {"grpo + ppo_clip": _host_reads(["grpo", "ppo_clip"], batch)}
    for fam, names in FAMILIES.items():
        t = _loss_time(names, batch, logp, ent, repeat)
        rows.append({"family": fam, "seconds": t - base_s, "share": (t - base_s) / step_s})
        reads[fam] = _host_reads(names, batch)
        if watch is not None:
            watch.sample()
    return {"B": B, "T": T, "step_s": step_s, "grpo_loss_s": base_s, "rows": rows, "host_reads": reads}


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
                "host reads per policy_loss call: "
                + "; ".join(f"{k} {v}" for k, v in res["host_reads"].items())
            ]
            if "host_reads" in res
            else []
        ),
    ]


def table(res: dict) -> list[str]:
    lines = ["| cost | ms | share of a tiny-model step |", "| --- | --- | --- |"]
    lines += [f"| {r['family']} | {r['seconds'] * 1e3:.2f} | {100 * r['share']:.1f}% |" for r in res["rows"]]
    return lines
