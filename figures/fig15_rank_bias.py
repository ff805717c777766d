"""Rank bias (He, Fried & Welleck 2025, arXiv 2506.02355): GRPO reinforces the correct answers the policy
already finds likely, so the probability of rare correct answers shrinks and pass@k at large k falls; the
unlikeliness reward (a correct answer's reward lowered by its likelihood rank in the group, penalty 0.25)
is claimed to keep rare correct answers alive and raise pass@k at large k.

A bandit (32 prompts × 16 arms, 25% of the arms correct, prior logits with scale 2, so most prompts have
both a likely and a very unlikely correct arm); sampled training with G = 8 (η = 2 SGD on the logits,
150 rollouts, 16 runs with paired seeds), GRPO against GRPO with the unlikeliness reward. Left: the
probability of each prompt's initially rarest correct arm (geometric mean over prompts and runs); right:
exact pass@k at the end, k = 1 … 256.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from figures import _common as fc
from sim.run import SimConfig

TITLE = "Rank bias: the rare correct answer under GRPO vs the unlikeliness reward"
COLUMNS = ("series", "metric", "x", "mean", "se")
PASS_K = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SERIES = {"GRPO": ("grpo",), "GRPO + unlikeliness reward": ("unlikeliness",)}


def _run(cfg: SimConfig) -> dict:
    spec = cfg.env_spec()
    r, z0 = torch.as_tensor(spec.rewards), torch.as_tensor(spec.prior)  # (P, n)
    rare = torch.where(r > 0, z0, torch.full_like(z0, math.inf)).argmin(-1)  # (P,) rarest correct arm

    def log_p_rare(sim, s):  # (R,) mean over prompts of log π(rare correct arm)
        lp = torch.log_softmax(s.z.detach(), -1)  # (R, P, n)
        return lp.gather(-1, rare[None, :, None].expand(lp.shape[0], -1, 1))[..., 0].mean(-1).numpy()

    t = fc.traj(cfg, keys=tuple(f"pass@{k}" for k in PASS_K), probes={"log_p_rare": log_p_rare})
    return {"log_p_rare": t["log_p_rare"], **{f"pass@{k}": t[f"pass@{k}"][-1] for k in PASS_K}}


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    env_seed, sample_seed = fc.seeds(seed, 2)
    kw = {"n_prompts": 32, "n_arms": 16, "correct_frac": 0.25, "prior_scale": 2.0, "seed": env_seed}
    runs, steps = (4, 40) if quick else (16, 150)
    rows, ends = [], {}
    for label, pipe in SERIES.items():
        cfg = SimConfig(env="bandit", env_kwargs=kw, update="grpo", controllers=pipe, runs=runs, steps=steps,
                        lr=2.0, seed=sample_seed, pass_k=PASS_K)  # fmt: skip
        t = _run(cfg)
        for k in range(0, steps, 1 if quick else 2):
            v = t["log_p_rare"][k]
            rows.append(
                {
                    "series": label,
                    "metric": "log_p_rare_correct",
                    "x": k,
                    "mean": float(v.mean()),
                    "se": fc.se(v),
                }
            )
        for kk in PASS_K:
            v = t[f"pass@{kk}"]
            rows.append(
                {"series": label, "metric": "pass@k", "x": kk, "mean": float(v.mean()), "se": fc.se(v)}
            )
        ends[label] = t
    res = fc.Result(rows)
    g, u = ends["GRPO"], ends["GRPO + unlikeliness reward"]
    d_rare = u["log_p_rare"][-1] - g["log_p_rare"][-1]
    d_hi = u["pass@256"] - g["pass@256"]
    d_1 = u["pass@1"] - g["pass@1"]
    parts = [
        fc.judge(g["log_p_rare"][-1] - g["log_p_rare"][0], kind="less", test="t",
                 what="GRPO: log π of the rarest correct arm, end − start (shrinks)"),
        fc.judge(d_rare, what="log π of the rarest correct arm at the end, unlikeliness − GRPO"),
        fc.untestable("pass@256, unlikeliness − GRPO", f"GRPO's pass@256 is already {g['pass@256'].mean():.4f}: no "
                      f"room for a gain of {fc.PASS_MARGIN:g}")
        if 1 - float(g["pass@256"].mean()) < fc.PASS_MARGIN
        else fc.judge(d_hi, bar=fc.PASS_MARGIN, what=f"pass@256, unlikeliness − GRPO (raises: by {fc.PASS_MARGIN:g})"),
    ]  # fmt: skip
    res.meta = {
        "claim": "He et al. 2025: GRPO shrinks rare correct answers (rank bias) and pass@k at large k; the "
        "unlikeliness reward keeps them and raises pass@k at large k",
        "verdict": fc.combine(parts),
        "tests": fc.judged(parts),
        "finding": (
            f"mean log π of the rarest correct arm: start {g['log_p_rare'][0].mean():.2f}, end GRPO "
            f"{g['log_p_rare'][-1].mean():.2f}, unlikeliness {u['log_p_rare'][-1].mean():.2f} (difference "
            f"{d_rare.mean():+.3f} ± {fc.se(d_rare):.3f}); pass@256 GRPO {g['pass@256'].mean():.4f}, unlikeliness "
            f"{u['pass@256'].mean():.4f} ({d_hi.mean():+.4f} ± {fc.se(d_hi):.4f}); pass@1 {g['pass@1'].mean():.3f} vs "
            f"{u['pass@1'].mean():.3f} ({d_1.mean():+.4f})" + ". " + fc.texts(parts)
        ),
        "runs": runs,
        "steps": steps,
    }
    return res


def plot(res: fc.Result):
    fig, (a, b) = fc.figure(2)
    for i, s in enumerate(res.values("series")):
        sel = {"series": s, "metric": "log_p_rare_correct"}
        fc.band(a, res.col("x", **sel), np.exp(res.col("mean", **sel)), np.exp(res.col("mean", **sel)) * res.col("se", **sel),
                label=s, color=f"C{i}")  # fmt: skip
        sel = {"series": s, "metric": "pass@k"}
        b.errorbar(res.col("x", **sel), res.col("mean", **sel), yerr=res.col("se", **sel), marker="o", ms=3,
                   capsize=2, label=s, color=f"C{i}")  # fmt: skip
    a.set_yscale("log")
    a.set_xlabel("rollout")
    a.set_ylabel("π(rarest correct arm), geometric mean")
    a.legend(fontsize=8)
    b.set_xscale("log", base=2)
    b.set_xlabel("k")
    b.set_ylabel("pass@k at the end (exact)")
    fc.title(fig, 15, TITLE)
    return fig
