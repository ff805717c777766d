"""Zhu et al. 2025 ("The surprising effectiveness of negative reinforcement"): training only on wrong
answers (NSR, A = r − 1) preserves entropy and pass@k at large k; training only on correct ones (PSR,
A = r) collapses entropy and loses pass@k at large k; W-REINFORCE (A = λ·r − (1 − r), λ = 0.1) is the
recommended mix.

Sampled training on a bandit (16 prompts × 32 arms, 10% correct, Beta difficulty; G = 8, η = 2 SGD on the
logits, 200 rollouts, 32 runs with paired seeds). Left: exact entropy over training for GRPO, PSR, NSR and
W-REINFORCE with λ ∈ {0.1, 0.5, 1} (NSR is λ = 0); right: exact pass@k for k = 1 … 256 at the end. In a tabular
softmax the expected step of a constant baseline does not depend on the baseline, so PSR and NSR
(baselines 0 and 1) have the same expected update; the differences left are sampling noise and the
scale of the step (λ). The paper's effect needs parameters shared across answers (issue 9).
"""

from __future__ import annotations

from figures import _common as fc
from sim.run import SimConfig

TITLE = "PSR vs NSR vs W-REINFORCE: entropy and pass@k"
COLUMNS = ("series", "metric", "step", "k", "mean", "se")
PASS_K = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LAMBDAS = (0.1, 0.5, 1.0)  # docs/theory.md §4: λ ∈ {0 (= NSR), 0.1, 0.5, 1}


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    env_seed, sample_seed = fc.seeds(seed, 2)
    kw = {"n_prompts": 16, "n_arms": 32, "correct_frac": 0.1, "difficulty": "beta", "seed": env_seed}
    runs, steps = (6, 60) if quick else (32, 200)
    series = {"GRPO": ("grpo", {}), "PSR": ("psr", {}), "NSR": ("nsr", {})}
    series |= {f"W-REINFORCE λ={lam:g}": ("w_reinforce", {"lam": lam}) for lam in LAMBDAS}
    rows, ends = [], {}
    for label, (name, hp) in series.items():
        cfg = SimConfig(
            env="bandit", env_kwargs=kw, update="grpo", controllers=(name,),
            hyperparameters={name: hp} if hp else {}, runs=runs, steps=steps, lr=2.0, group_size=8,
            seed=sample_seed, pass_k=PASS_K,
        )  # fmt: skip
        t = fc.traj(cfg, keys=("entropy", *(f"pass@{k}" for k in PASS_K)))
        for k in range(steps):
            rows.append({"series": label, "metric": "entropy", "step": k, "k": 0,
                         "mean": float(t["entropy"][k].mean()), "se": fc.se(t["entropy"][k])})  # fmt: skip
        for kk in PASS_K:
            v = t[f"pass@{kk}"][-1]
            rows.append({"series": label, "metric": "pass@k", "step": steps - 1, "k": kk,
                         "mean": float(v.mean()), "se": fc.se(v)})  # fmt: skip
        ends[label] = {"H": t["entropy"][-1], "H0": float(t["entropy"][0].mean()), "p256": t["pass@256"][-1],
                       "p1": t["pass@1"][-1]}  # fmt: skip
    res = fc.Result(rows)
    psr, nsr = ends["PSR"], ends["NSR"]
    dH = nsr["H"] - psr["H"]
    dP = nsr["p256"] - psr["p256"]
    parts = [
        fc.judge(dH, what="final H, NSR − PSR", unit="nats"),
        fc.judge(dP, bar=-fc.PASS_MARGIN, null=-fc.PASS_MARGIN,
                 what=f"pass@256, NSR − PSR (keeps: above −{fc.PASS_MARGIN:g})"),
    ]  # fmt: skip
    res.meta = {
        "claim": "Zhu et al. 2025 (arXiv 2506.01347): NSR keeps entropy and pass@k at large k; PSR collapses them",
        "verdict": fc.combine(parts),
        "tests": fc.judged(parts),
        "finding": (
            f"final entropy NSR − PSR {dH.mean():+.4f} ± {fc.se(dH):.4f} (paired), pass@256 NSR − PSR "
            f"{dP.mean():+.4f} ± {fc.se(dP):.4f}; final H / pass@1 / pass@256: "
            + "; ".join(
                f"{k} {v['H'].mean():.3f} / {v['p1'].mean():.3f} / {v['p256'].mean():.3f}"
                for k, v in ends.items()
            )
            + f" (H at start {ends['GRPO']['H0']:.3f}). "
            + fc.texts(parts)
        ),
        "nsr_minus_psr": {
            "H": float(dH.mean()),
            "H_se": fc.se(dH),
            "pass256": float(dP.mean()),
            "pass256_se": fc.se(dP),
        },
        "runs": runs,
        "steps": steps,
    }
    return res


def plot(res: fc.Result):
    fig, (a, b) = fc.figure(2)
    for i, s in enumerate(res.values("series")):
        c = f"C{i}"
        fc.band(a, res.col("step", series=s, metric="entropy"), res.col("mean", series=s, metric="entropy"),
                res.col("se", series=s, metric="entropy"), label=s, color=c)  # fmt: skip
        k = res.col("k", series=s, metric="pass@k")
        b.errorbar(k, res.col("mean", series=s, metric="pass@k"), yerr=res.col("se", series=s, metric="pass@k"),
                   marker="o", ms=3, color=c, label=s, capsize=2)  # fmt: skip
    a.set_xlabel("rollout")
    a.set_ylabel("entropy (nats)")
    a.legend(fontsize=7)
    b.set_xscale("log", base=2)
    b.set_xlabel("k")
    b.set_ylabel("pass@k at the end (exact)")
    fc.title(fig, 8, TITLE)
    return fig
