"""Off-policy epochs and entropy decay (Cui et al. 2025 recipes; EntroPIC's off-policy setting; OPO,
arXiv 2505.23585): reusing each rollout for several PPO epochs speeds up entropy collapse; strictly
on-policy training (OPO: one step per rollout, optimal length-weighted baseline) decays slowest.

A bandit whose correct arms are the likely ones (16 prompts × 16 arms, 25% correct), so entropy falls
from the start; PPO-clip (ε = 0.2) with 1, 2, 4 and 8 epochs per rollout (η = 2 SGD on the logits, 60
rollouts, 32 runs with paired seeds), and OPO on-policy. Left: exact entropy per rollout; right: the same
against optimizer steps, which separates "more steps" from "staler steps": if the curves coincide there,
the faster collapse per rollout is only the larger number of steps.
"""

from __future__ import annotations

from figures import _common as fc
from sim.run import SimConfig

TITLE = "Off-policy epochs per rollout vs entropy decay; on-policy OPO"
COLUMNS = (
    "series",
    "epochs",
    "step",
    "optimizer_steps",
    "entropy_mean",
    "entropy_se",
    "success_mean",
    "success_se",
)
EPOCHS = (1, 2, 4, 8)


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    env_seed, sample_seed = fc.seeds(seed, 2)
    kw = {"n_prompts": 16, "n_arms": 16, "correct": "common", "correct_frac": 0.25, "seed": env_seed}
    runs, steps = (6, 20) if quick else (32, 60)
    cases = {f"PPO {e} epoch{'s' if e > 1 else ''}": ("ppo", e, ("grpo", "ppo_clip")) for e in EPOCHS}
    cases["OPO on-policy"] = ("grpo", 1, ("opo",))
    rows, ends = [], {}
    for label, (update, e, pipe) in cases.items():
        cfg = SimConfig(env="bandit", env_kwargs=kw, update=update, epochs=e, controllers=pipe, runs=runs,
                        steps=steps, lr=2.0, seed=sample_seed, pass_k=(1,))  # fmt: skip
        t = fc.traj(cfg)
        for r in fc.curve_rows(label, t, ("entropy", "success")):
            rows.append({**r, "epochs": e, "optimizer_steps": r["step"] * e})
        ends[label] = {"H": t["entropy"][-1], "R": t["success"][-1], "H0": float(t["entropy"][0].mean())}
    res = fc.Result(rows)
    labels = [k for k in cases if k.startswith("PPO")]
    hs = [ends[k]["H"] for k in labels]
    opo_minus_1 = ends["OPO on-policy"]["H"] - ends[labels[0]]["H"]
    parts = fc.sweep([-h for h in hs], labels, what="collapse (−final H),", unit="nats")
    opo = fc.judge(opo_minus_1, what="final H, OPO on-policy − PPO 1 epoch (decays slowest)", unit="nats")
    # at equal optimizer steps: the 1-epoch curve at step k·e against the e-epoch curve at step k
    same_steps = {}
    for lab, e in zip(labels, EPOCHS, strict=True):
        k = (steps - 1) // e
        h_e = res.col("entropy_mean", series=lab, step=k)[0]
        h_1 = res.col("entropy_mean", series=labels[0], step=k * e)[0]
        same_steps[lab] = {"rollouts": k, "H": h_e, "H_1epoch_same_steps": h_1}
    res.meta = {
        "claim": "More off-policy epochs per rollout collapse entropy faster (per rollout); on-policy OPO decays "
        "slowest",
        "verdict": fc.combine_verdicts([fc.sweep_verdict(parts), opo.verdict]),
        "tests": fc.judged([*parts, opo]),
        "finding": (
            f"entropy from {ends[labels[0]]['H0']:.3f} after {steps} rollouts: "
            + ", ".join(f"{k} {v['H'].mean():.3f} (success {v['R'].mean():.3f})" for k, v in ends.items())
            + f"; OPO − PPO 1 epoch {opo_minus_1.mean():+.4f} ± {fc.se(opo_minus_1):.4f}; at equal optimizer "
            "steps: "
            + ", ".join(
                f"{k} {v['H']:.3f} vs 1 epoch {v['H_1epoch_same_steps']:.3f}" for k, v in same_steps.items()
            )
            + ". "
            + fc.texts([*parts, opo])
        ),
        "same_optimizer_steps": same_steps,
        "runs": runs,
        "steps": steps,
    }
    return res


def plot(res: fc.Result):
    fig, (a, b) = fc.figure(2)
    for i, s in enumerate(res.values("series")):
        c = "k" if s.startswith("OPO") else f"C{i}"
        h, e = res.col("entropy_mean", series=s), res.col("entropy_se", series=s)
        fc.band(a, res.col("step", series=s), h, e, label=s, color=c)
        fc.band(b, res.col("optimizer_steps", series=s), h, e, label=s, color=c)
    a.set_xlabel("rollout")
    b.set_xlabel("optimizer step")
    b.set_xscale("symlog", linthresh=10)
    for ax in (a, b):
        ax.set_ylabel("entropy (nats)")
    a.legend(fontsize=8)
    fc.title(fig, 14, TITLE)
    return fig
