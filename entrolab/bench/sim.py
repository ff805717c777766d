"""``python -m entrolab.bench sim``: simulator throughput against a plain per-run numpy loop.

Throughput = state-action logits updated per second (runs × prompts × arms per step). The reference is
what one would write without entrolab: a loop over runs, each run's exact bandit PG step vectorised in
numpy. Our side is ``sim.run.Simulator.step(measure=False)``: the fused exact kernel (eager, and
``torch.compile``'d) and the sampled GRPO update through ``controllers.policy_loss`` (G = 8).
Targets (issue 4): ≥ 50× the per-run loop at 1024 runs; 1024 × 64 × 256 × 1000 exact-PG steps in < 60 s;
sampled GRPO within 3× of that.
"""

from __future__ import annotations

import numpy as np

from entrolab.bench import harness
from sim.run import SimConfig, Simulator


def numpy_step(z: np.ndarray, r: np.ndarray, lr: float) -> None:
    """The per-run reference: exact PG on one run's (P, n) logits at a time, in place."""
    for i in range(z.shape[0]):
        zi = z[i]
        e = np.exp(zi - zi.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        zi += lr * p * (r - (p * r).sum(-1, keepdims=True))


def _sim(R: int, P: int, n: int, update: str = "exact_pg", compiled: bool = False, device: str = "cpu"):
    cfg = SimConfig(
        env="bandit", env_kwargs={"n_prompts": P, "n_arms": n, "seed": 0}, update=update,
        controllers=("grpo",) if update == "grpo" else (), runs=R, lr=1.0, group_size=8, pass_k=(1,),
        compile=compiled, device=device,
    )  # fmt: skip
    sim = Simulator(cfg)
    return sim, sim.init_state()


def per_step(R, P, n, update="exact_pg", compiled=False, repeat=5, device="cpu") -> float:
    sim, s = _sim(R, P, n, update, compiled, device)
    sim.step(s, measure=False)  # warm-up (and compilation)
    return harness.median(harness.timed(lambda: sim.step(s, measure=False), repeat, harness.sync_for(device)))


def numpy_per_step(R, P, n, repeat=3) -> float:
    sim, s = _sim(R, P, n)
    z, r = s.z.numpy().copy(), sim.model.rewards.numpy()
    numpy_step(z, r, 1.0)
    return harness.median(harness.timed(lambda: numpy_step(z, r, 1.0), repeat))


def agreement(R=8, P=16, n=32, steps=20) -> float:
    """max |z_ours − z_numpy| after ``steps`` exact PG steps (the two implementations agree)."""
    sim, s = _sim(R, P, n)
    z, r = s.z.numpy().copy(), sim.model.rewards.numpy()
    for _ in range(steps):
        sim.step(s, measure=False)
        numpy_step(z, r, 1.0)
    return float(np.abs(s.z.numpy() - z).max())


def run(quick: bool = False, device: str = "cpu", watch: harness.LoadWatch | None = None) -> dict:
    watch = watch or harness.LoadWatch()
    P, n = 64, 256
    out: dict = {"agreement_max_abs": agreement()}
    runs_grid = (1, 16, 256, 1024) if quick else (1, 4, 16, 64, 256, 1024)
    scaling_runs = []
    for R in runs_grid:
        ours = per_step(R, P, n, device=device, repeat=3 if quick else 5)
        ref = numpy_per_step(R, P, n, repeat=1 if quick or R >= 256 else 3)
        scaling_runs.append({"runs": R, "ours_s": ours, "numpy_s": ref, "speedup": ref / ours})
        watch.sample()
    out["scaling_runs"] = scaling_runs
    scaling_arms = []
    for arms in (16, 64, 256, 1024) if not quick else (16, 256, 1024):
        ours = per_step(64, P, arms, device=device, repeat=3)
        ref = numpy_per_step(64, P, arms, repeat=1)
        scaling_arms.append({"arms": arms, "ours_s": ours, "numpy_s": ref, "speedup": ref / ours})
        watch.sample()
    out["scaling_arms"] = scaling_arms
    R = 1024
    steps = 50 if quick else 1000
    target = {"runs": R, "prompts": P, "arms": n, "steps_timed": steps, "extrapolated_to": 1000}
    for label, compiled in (("eager", False), ("compiled", True)):
        sim, s = _sim(R, P, n, compiled=compiled, device=device)
        sim.step(s, measure=False)
        total = sum(
            harness.timed(lambda sim=sim, s=s: sim.step(s, measure=False), steps, harness.sync_for(device))
        )
        target[f"exact_pg_{label}_s_per_1000"] = total * 1000 / steps
        watch.sample()
    grpo = per_step(R, P, n, update="grpo", repeat=2 if quick else 5, device=device)
    target["grpo_g8_s_per_1000"] = grpo * 1000
    best = min(target["exact_pg_eager_s_per_1000"], target["exact_pg_compiled_s_per_1000"])
    target["grpo_over_exact"] = target["grpo_g8_s_per_1000"] / best
    target["updates_per_s_exact"] = R * P * n * 1000 / best
    target["updates_per_s_grpo"] = R * P * n / grpo
    out["target"] = target
    return out


def summary(res: dict) -> list[str]:
    t = res["target"]
    s1024 = next(x for x in res["scaling_runs"] if x["runs"] == 1024)
    return [
        f"exact PG, 1024 runs × 64 prompts × 256 arms: {s1024['speedup']:.0f}× the per-run numpy loop "
        f"(eager kernel {s1024['ours_s'] * 1e3:.0f} ms vs {s1024['numpy_s'] * 1e3:.0f} ms per step; target ≥ 50×)",
        f"1000 exact-PG steps at that size: {t['exact_pg_compiled_s_per_1000']:.0f} s compiled, "
        f"{t['exact_pg_eager_s_per_1000']:.0f} s eager (target < 60 s; timed {t['steps_timed']} steps)",
        f"sampled GRPO (G = 8) at that size: {t['grpo_g8_s_per_1000']:.0f} s per 1000 steps = "
        f"{t['grpo_over_exact']:.1f}× the fastest exact run (target ≤ 3×)",
        f"ours and numpy agree to {res['agreement_max_abs']:.1e} after 20 steps",
    ]
