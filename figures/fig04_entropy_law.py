"""Cui et al. 2025 Eq. 6: along training, performance and entropy follow R = −a·e^H + b, with a, b
nearly independent of the algorithm; a fit on the first 15% of steps predicts the rest (RMSE ≈ 1%) and
the ceiling R(H = 0) = b − a.

One bandit environment (32 prompts × 16 arms, Beta-distributed difficulty), four algorithms: exact PG
and sampled GRPO, RLOO and Dr. GRPO (G = 8, η = 10, 16 runs each; R = exact success, H = exact entropy,
means over runs). Left: R against H with each algorithm's full fit (solid) and its fit on the first 15%
of steps (dashed). Right: the ceiling b − a predicted from the first 15%, against the full fit's and the
success actually reached. The reader should see the curves fit well in-sample and the early fits miss
the end: in the simulator the 15% prediction fails (docs/theory.md §1.4, sim verify M11b).
"""

from __future__ import annotations

import numpy as np

import theory
from figures import _common as fc
from sim.run import SimConfig

TITLE = "Entropy-performance law R = −a·e^H + b"
COLUMNS = ("algorithm", "step", "entropy_mean", "success_mean", "fit_R", "early_fit_R")
FIT_FRAC = 0.15
LR = 10.0


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    env_seed, sample_seed = fc.seeds(seed, 2)
    kw = {"n_prompts": 32, "n_arms": 16, "correct_frac": 0.2, "difficulty": "beta", "seed": env_seed}
    steps, runs = (120, 4) if quick else (300, 16)
    rows, fits = [], {}
    for algo in ("exact_pg", "grpo", "rloo", "dr_grpo"):
        exact = algo == "exact_pg"
        cfg = SimConfig(
            env="bandit", env_kwargs=kw, update=algo if exact else "grpo", controllers=() if exact else (algo,),
            runs=1 if exact else runs, steps=steps, lr=1.0 if exact else LR, group_size=8, seed=sample_seed,
            pass_k=(1,),
        )  # fmt: skip
        t = fc.traj(cfg)
        H, R = t["entropy"].mean(1), t["success"].mean(1)
        a, b = theory.fit_entropy_law(H, R)
        pred = theory.entropy_law_prediction(H, R, FIT_FRAC)
        full = theory.entropy_law_predict(H, a, b)
        early = theory.entropy_law_predict(H, pred.a, pred.b)
        fits[algo] = {
            "a": a, "b": b, "ceiling": b - a, "rmse_fit": float(np.sqrt(np.mean((full - R) ** 2))),
            "early_a": pred.a, "early_b": pred.b, "early_ceiling": pred.ceiling, "rmse_pred": pred.rmse_pred,
            "R_end": float(R[-1]), "H_end": float(H[-1]), "H0": float(H[0]), "R0": float(R[0]),
        }  # fmt: skip
        for k in range(steps):
            rows.append(
                {"algorithm": algo, "step": k, "entropy_mean": float(H[k]), "success_mean": float(R[k]),
                 "fit_R": float(full[k]), "early_fit_R": float(early[k])}
            )  # fmt: skip
    res = fc.Result(rows)
    worst_fit = max(v["rmse_fit"] for v in fits.values())
    worst_pred = max(v["rmse_pred"] for v in fits.values())
    ceilings = [v["ceiling"] for v in fits.values()]
    fit_ok, pred_ok = worst_fit <= 0.03, worst_pred <= 0.03
    res.meta = {
        "claim": "Cui et al. 2025 Eq. 6, Figs. 3-6: R = −a·e^H + b fits training; a fit on the first 15% predicts "
        "the rest (RMSE ≈ 1%); a, b do not depend on the algorithm",
        "verdict": fc.APPROX if fit_ok and pred_ok else fc.FAILS,
        "finding": (
            f"in-sample RMSE ≤ {worst_fit:.3f} (fits); 15%-prefix prediction RMSE up to {worst_pred:.3f} "
            f"({'within' if pred_ok else 'beyond'} 3%); ceilings b − a "
            + ", ".join(f"{k} {v['ceiling']:.3f}" for k, v in fits.items())
            + f" (spread {max(ceilings) - min(ceilings):.3f}); early-fit ceilings "
            + ", ".join(f"{k} {v['early_ceiling']:.3f}" for k, v in fits.items())
        ),
        "fits": fits,
        "fit_frac": FIT_FRAC,
        "lr_sampled": LR,
        "runs": runs,
        "steps": steps,
    }
    return res


def plot(res: fc.Result):
    fig, (a, b) = fc.figure(2)
    algos = res.values("algorithm")
    for i, algo in enumerate(algos):
        c = f"C{i}"
        H, R = res.col("entropy_mean", algorithm=algo), res.col("success_mean", algorithm=algo)
        a.scatter(H, R, s=5, color=c, alpha=0.5)
        order = np.argsort(H)
        a.plot(H[order], res.col("fit_R", algorithm=algo)[order], color=c, label=f"{algo}: full fit")
        a.plot(H[order], res.col("early_fit_R", algorithm=algo)[order], color=c, ls="--", lw=1)
    a.plot([], [], "k--", lw=1, label=f"fit on first {FIT_FRAC:.0%}")
    a.set_xlabel("entropy H (nats)")
    a.set_ylabel("success R")
    a.legend(fontsize=8)
    fits = res.meta["fits"]
    x = np.arange(len(algos))
    b.bar(x - 0.25, [fits[k]["early_ceiling"] for k in algos], 0.25, label=f"b − a from first {FIT_FRAC:.0%}")
    b.bar(x, [fits[k]["ceiling"] for k in algos], 0.25, label="b − a from all steps")
    b.bar(x + 0.25, [fits[k]["R_end"] for k in algos], 0.25, label="success reached")
    b.set_xticks(x, algos)
    b.set_ylabel("success")
    b.legend(fontsize=8)
    b.set_title("predicted ceiling vs reached", fontsize=9)
    fc.title(fig, 4, TITLE)
    return fig
