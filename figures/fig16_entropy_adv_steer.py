"""Entropy-shaped advantage (Cheng et al. 2025, arXiv 2506.14758) and STEER (Hao et al. 2025, arXiv
2510.10150). The first adds ψ = min(α·H_t, |A_t|/κ) to every token's advantage, which is claimed to keep
entropy (and exploration) up; the second down-weights the tokens whose first-order entropy change |Ω_t| is
largest, which is claimed to make the per-step entropy change smaller and steadier.

TokenTree (8 prompts, V = 4, T = 4), on-policy GRPO (η = 10 SGD on the logits, 100 rollouts, 16 runs with
paired seeds), alone, with ``entropy_adv`` (α = 0.4, κ = 2) and with ``steer`` (exp mode, w_min = 0.8).
Left: the simulator's first-order prediction of each step's entropy change (visit-weighted, Lemma 1 on
the actual step); middle: exact entropy; right: exact success. The verdict: holds when the shaped
advantage ends with more entropy than GRPO and STEER's mean |ΔH| per step is smaller (both paired).
"""

from __future__ import annotations

import numpy as np

from figures import _common as fc
from sim.run import SimConfig
from sim.studies import TREE

TITLE = "Entropy-shaped advantage and STEER vs GRPO"
COLUMNS = ("series", "step", "dH_predicted_mean", "dH_predicted_se", "entropy_mean", "entropy_se",
           "success_mean", "success_se")  # fmt: skip
SERIES = {"GRPO": ("grpo",), "GRPO + entropy_adv": ("grpo", "entropy_adv"), "GRPO + STEER": ("grpo", "steer")}
LR = 10.0


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    env_seed, sample_seed = fc.seeds(seed, 2)
    runs, steps = (4, 30) if quick else (16, 100)
    rows, ends = [], {}
    for label, pipe in SERIES.items():
        cfg = SimConfig(
            env="token_tree", env_kwargs={**TREE, "seed": env_seed},
            update="grpo", controllers=pipe, runs=runs, steps=steps, lr=LR, seed=sample_seed, pass_k=(1,),
        )  # fmt: skip
        t = fc.traj(cfg, keys=("dH_predicted", "entropy", "success"))
        rows += fc.curve_rows(label, t, ("dH_predicted", "entropy", "success"), every=1 if quick else 2)
        ends[label] = {
            "H": t["entropy"][-1],
            "R": t["success"][-1],
            "abs_dH": np.abs(t["dH_predicted"]).mean(0),
        }
    res = fc.Result(rows)
    g = ends["GRPO"]
    d_adv = ends["GRPO + entropy_adv"]["H"] - g["H"]
    d_steer = ends["GRPO + STEER"]["abs_dH"] - g["abs_dH"]
    parts = [
        fc.judge(d_adv, what="final H, entropy_adv − GRPO", unit="nats"),
        fc.judge(d_steer, kind="less", what="mean |ΔH| per step, STEER − GRPO", unit="nats"),
    ]
    res.meta = {
        "claim": "Cheng et al. 2025: the entropy-shaped advantage keeps entropy above GRPO's; Hao et al. 2025 "
        "(STEER): down-weighting high-|Ω| tokens makes the per-step entropy change smaller",
        "verdict": fc.combine(parts),
        "tests": fc.judged(parts),
        "finding": (
            ", ".join(
                f"{k}: final H {v['H'].mean():.3f}, success {v['R'].mean():.3f}, mean |ΔH| per step "
                f"{v['abs_dH'].mean():.2e}"
                for k, v in ends.items()
            )
            + f"; entropy_adv − GRPO final H {d_adv.mean():+.4f} ± {fc.se(d_adv):.4f}; STEER − GRPO mean |ΔH| "
            f"{d_steer.mean():+.2e} ± {fc.se(d_steer):.1e} (paired)" + ". " + fc.texts(parts)
        ),
        "runs": runs,
        "steps": steps,
        "lr": LR,
    }
    return res


def plot(res: fc.Result):
    fig, axes = fc.figure(3, width=4.2)
    for i, s in enumerate(res.values("series")):
        x = res.col("step", series=s)
        for ax, key in zip(axes, ("dH_predicted", "entropy", "success"), strict=True):
            fc.band(ax, x, res.col(f"{key}_mean", series=s), res.col(f"{key}_se", series=s), label=s,
                    color="k" if i == 0 else f"C{i}")  # fmt: skip
    axes[0].axhline(0, color="0.5", lw=0.6)
    for ax, lab in zip(axes, ("first-order ΔH per step (nats)", "entropy (nats)", "success"), strict=True):
        ax.set_xlabel("rollout")
        ax.set_ylabel(lab)
    axes[1].legend(fontsize=8)
    fc.title(fig, 16, TITLE)
    return fig
