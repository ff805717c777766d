"""Beyond the 80/20 rule (Wang et al. 2025, arXiv 2506.01939): a minority of "forking" tokens carries high
entropy and decides the reasoning path; policy-gradient updates on only the top 20% highest-entropy tokens
match or beat full-token training, while training on the bottom 80% does much worse.

TokenTree (16 prompts, V = 4, T = 5, 20% fork states with nearly flat logits, 30% correct leaves). Left:
the distribution of the entropy of visited states under the initial policy, fork vs non-fork states (the
token-level picture of the paper's Fig. 2). Middle and right: on-policy GRPO (η = 10 SGD on the logits,
100 rollouts, 16 runs with paired seeds) with the PG loss on all tokens, on the top 20% by entropy
(``top_entropy`` rho = 0.2) and on the bottom 80% (rho = 0.8, side = "bottom"): exact entropy and
success. The verdict compares final success: holds when the top 20% is not worse than all tokens and the
bottom 80% is worse (paired, beyond noise).
"""

from __future__ import annotations

import numpy as np
import torch

import controllers as C
from figures import _common as fc
from sim.run import SimConfig, Simulator

TITLE = "The 80/20 rule: forking tokens, and training on the top 20% vs the bottom 80%"
COLUMNS = ("panel", "series", "x", "entropy_mean", "entropy_se", "success_mean", "success_se")
ENV = {"n_prompts": 16, "vocab": 4, "horizon": 5, "fork_frac": 0.2, "correct_frac": 0.3}
SERIES = {
    "all tokens": None,
    "top 20% entropy": {"rho": 0.2, "side": "top"},
    "bottom 80% entropy": {"rho": 0.8, "side": "bottom"},
}
LR = 10.0


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    env_seed, sample_seed = fc.seeds(seed, 2)
    runs, steps = (4, 30) if quick else (16, 100)
    rows = []
    # the entropy of visited states, fork vs non-fork, from one large rollout of the initial policy
    base = SimConfig(env="token_tree", env_kwargs={**ENV, "seed": env_seed}, update="grpo", runs=1,
                     group_size=64, seed=sample_seed)  # fmt: skip
    sim = Simulator(base)
    s = sim.init_state()
    roll = sim.rollout(s.z.detach(), torch.Generator().manual_seed(sample_seed))
    b = sim.token_batch(s.z.detach(), roll, slice(0, 1), torch.arange(sim.model.n_prompts))
    ent = b.entropy.numpy().ravel()
    fork = sim.spec.fork[roll["states"][0].reshape(-1).numpy()]
    edges = np.linspace(0.0, np.log(ENV["vocab"]), 31)
    for name, sel in (("fork states", fork), ("other states", ~fork)):
        hist, _ = np.histogram(ent[sel], bins=edges)
        for x, c in zip((edges[:-1] + edges[1:]) / 2, hist / len(ent), strict=True):
            rows.append({"panel": "distribution", "series": name, "x": float(x), "entropy_mean": float(c),
                         "entropy_se": 0.0, "success_mean": 0.0, "success_se": 0.0})  # fmt: skip
    top20 = C.get("top_entropy", rho=0.2).keep(b).numpy().ravel()  # the selection training uses
    top20_share = float(top20.mean())
    fork_in_top20 = float(fork[top20].mean())
    ends = {}
    for label, hp in SERIES.items():
        cfg = SimConfig(
            env="token_tree", env_kwargs={**ENV, "seed": env_seed}, update="grpo",
            controllers=("grpo",) + (("top_entropy",) if hp else ()), hyperparameters={"top_entropy": hp} if hp else {},
            runs=runs, steps=steps, lr=LR, seed=sample_seed, pass_k=(1,),
        )  # fmt: skip
        t = fc.traj(cfg)
        for r in fc.curve_rows(label, t, ("entropy", "success"), every=1 if quick else 2):
            rows.append({"panel": "training", "series": label, "x": float(r["step"]),
                         **{k: r[k] for k in ("entropy_mean", "entropy_se", "success_mean", "success_se")}})  # fmt: skip
        ends[label] = {"H": t["entropy"][-1], "R": t["success"][-1], "R0": float(t["success"][0].mean())}
    res = fc.Result(rows)
    allr = ends["all tokens"]["R"]
    d_top = ends["top 20% entropy"]["R"] - allr
    d_bot = ends["bottom 80% entropy"]["R"] - allr
    parts = [
        fc.judge(d_top, bar=-fc.PASS_MARGIN, null=-fc.PASS_MARGIN,
                 what=f"final success, top 20% − all tokens (matches: above −{fc.PASS_MARGIN:g})"),
        fc.judge(d_bot, kind="less", bar=-fc.PASS_MARGIN, what=f"final success, bottom 80% − all tokens (much worse: "
                 f"below −{fc.PASS_MARGIN:g})"),
    ]  # fmt: skip
    res.meta = {
        "claim": "Wang et al. 2025 (arXiv 2506.01939): PG on the top 20% highest-entropy tokens matches full "
        "training; the bottom 80% does much worse",
        "verdict": fc.combine(parts),
        "tests": fc.judged(parts),
        "finding": (
            f"fork states hold {fork.mean():.0%} of visited tokens and {fork_in_top20:.0%} of the top 20% by "
            f"entropy (top-20% set: {top20_share:.0%} of tokens, ties included); final success (from "
            f"{ends['all tokens']['R0']:.3f}): "
            + ", ".join(f"{k} {v['R'].mean():.3f} (H {v['H'].mean():.3f})" for k, v in ends.items())
            + f"; top 20% − all {d_top.mean():+.3f} ± {fc.se(d_top):.3f}, bottom 80% − all {d_bot.mean():+.3f} ± "
            f"{fc.se(d_bot):.3f} (paired)" + ". " + fc.texts(parts)
        ),
        "fork_token_frac": float(fork.mean()),
        "fork_frac_of_top20": fork_in_top20,
        "success_end": {k: float(v["R"].mean()) for k, v in ends.items()},
        "entropy_end": {k: float(v["H"].mean()) for k, v in ends.items()},
        "runs": runs,
        "steps": steps,
    }
    return res


def plot(res: fc.Result):
    fig, (a, b, c) = fc.figure(3, width=4.2)
    for i, name in enumerate(res.values("series", panel="distribution")):
        sel = {"panel": "distribution", "series": name}
        x = res.col("x", **sel)
        a.bar(x, res.col("entropy_mean", **sel), width=x[1] - x[0], alpha=0.6, label=name, color=f"C{i}")
    a.set_xlabel("state entropy (nats)")
    a.set_ylabel("share of visited tokens")
    a.legend(fontsize=8)
    for i, name in enumerate(SERIES):
        sel = {"panel": "training", "series": name}
        x = res.col("x", **sel)
        fc.band(
            b, x, res.col("entropy_mean", **sel), res.col("entropy_se", **sel), label=name, color=f"C{i + 2}"
        )
        fc.band(
            c, x, res.col("success_mean", **sel), res.col("success_se", **sel), label=name, color=f"C{i + 2}"
        )
    b.set_ylabel("entropy (nats)")
    c.set_ylabel("success")
    for ax in (b, c):
        ax.set_xlabel("rollout")
    c.legend(fontsize=8)
    fc.title(fig, 13, TITLE)
    return fig
