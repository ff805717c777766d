"""Cui et al. 2025 §3 (Fig. 2): entropy collapses early — in their runs 73% of the entropy drop and 76%
of the performance gain happen in the first 1/12 of training.

Sampled GRPO (G = 8) on two simulator environments — a bandit (32 prompts × 16 arms, Beta
difficulty) and a TokenTree (8 prompts, V = 4, T = 4) — with plain SGD on the logits and with Adam (the
paper's optimizer), each run until entropy has plateaued. The curves are the share of the total entropy drop consumed, (H₀ − H_t)/(H₀ − H_end), and of the total
success gained, (R_t − R₀)/(R_end − R₀), against the share of training done; the dotted line marks 1/12.
The shares depend on where training stops (a longer tail shrinks the early share), so the plateau is
part of the setting: the run length is chosen so the last 10% of steps change entropy by less than 5%
of the total drop, and the JSON records that margin. The reader should see how much the early share depends on the
optimizer and step size: Adam's normalised steps spend entropy early, while SGD's step is proportional
to π·A, so a rare correct answer grows slowly at first and the collapse comes later.
"""

from __future__ import annotations

import numpy as np

from figures import _common as fc
from sim.run import SimConfig
from sim.studies import TREE

TITLE = "Collapse timeline: entropy consumed and performance gained vs training share"
COLUMNS = ("env", "step", "train_frac", "entropy_mean", "success_mean", "entropy_consumed_frac", "gain_frac")
MARK = 1 / 12
PAPER = {"entropy_consumed_frac": 0.73, "gain_frac": 0.76}


SETTINGS = {  # label: (env, optimizer, η)
    "bandit, SGD η=10": ("bandit", "sgd", 10.0),
    "bandit, Adam η=0.3": ("bandit", "adam", 0.3),
    "token_tree, SGD η=10": ("token_tree", "sgd", 10.0),
    "token_tree, Adam η=0.1": ("token_tree", "adam", 0.1),
}
ENV_KWARGS = {
    "bandit": {"n_prompts": 32, "n_arms": 16, "correct_frac": 0.2, "difficulty": "beta"},
    "token_tree": TREE,
}


def _cfgs(quick: bool, env_seed: int, sample_seed: int) -> dict[str, SimConfig]:
    return {
        label: SimConfig(
            env=env, env_kwargs={**ENV_KWARGS[env], "seed": env_seed}, update="grpo", controllers=("grpo",),
            runs=4 if quick else 16, steps=120 if quick else 360, lr=lr, optimizer=opt, seed=sample_seed,
            pass_k=(1,),
        )
        for label, (env, opt, lr) in SETTINGS.items()
    }  # fmt: skip


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    env_seed, sample_seed = fc.seeds(seed, 2)
    rows, shares = [], {}
    for env, cfg in _cfgs(quick, env_seed, sample_seed).items():
        t = fc.traj(cfg)
        H, R = t["entropy"].mean(1), t["success"].mean(1)
        n = len(H)
        consumed = (H[0] - H) / (H[0] - H[-1])
        gain = (R - R[0]) / (R[-1] - R[0])
        frac = np.arange(n) / (n - 1)
        for k in range(n):
            rows.append(
                {"env": env, "step": k, "train_frac": float(frac[k]), "entropy_mean": float(H[k]),
                 "success_mean": float(R[k]), "entropy_consumed_frac": float(consumed[k]), "gain_frac": float(gain[k])}
            )  # fmt: skip
        at = round(MARK * (n - 1))
        tail = round(0.9 * (n - 1))
        shares[env] = {
            "entropy_consumed_frac": float(consumed[at]),
            "gain_frac": float(gain[at]),
            "H0": float(H[0]),
            "H_end": float(H[-1]),
            "R0": float(R[0]),
            "R_end": float(R[-1]),
            "tail_change_frac": float(abs(consumed[-1] - consumed[tail])),
            "steps": n,
        }
    res = fc.Result(rows)
    ok = all(v["entropy_consumed_frac"] >= 0.5 and v["gain_frac"] >= 0.5 for v in shares.values())
    res.meta = {
        "claim": "Cui et al. 2025 §3: most of the entropy drop (73%) and of the gain (76%) happen in the first "
        "1/12 of training",
        "verdict": fc.HOLDS if ok else fc.FAILS,
        "finding": "; ".join(
            f"{env}: at 1/12 of training {v['entropy_consumed_frac']:.0%} of the entropy drop "
            f"(H {v['H0']:.2f}→{v['H_end']:.2f}) and {v['gain_frac']:.0%} of the gain (R {v['R0']:.2f}→"
            f"{v['R_end']:.2f}); last 10% of steps moved entropy by {v['tail_change_frac']:.1%} of the drop"
            for env, v in shares.items()
        )
        + " (paper: 73% and 76%; verdict: holds when both shares are ≥ 50%)",
        "shares_at_mark": shares,
        "mark": MARK,
        "paper": PAPER,
    }
    return res


def plot(res: fc.Result):
    envs = res.values("env")
    fig, axes = fc.figure(2, (len(envs) + 1) // 2)
    for ax, env in zip(axes, envs, strict=True):
        x = res.col("train_frac", env=env)
        ax.plot(x, res.col("entropy_consumed_frac", env=env), label="entropy consumed")
        ax.plot(x, res.col("gain_frac", env=env), label="success gained")
        ax.axvline(MARK, color="k", ls=":", lw=1)
        ax.axhline(
            PAPER["entropy_consumed_frac"], color="C0", ls="--", lw=0.8, label="paper at 1/12: 73%, 76%"
        )
        ax.axhline(PAPER["gain_frac"], color="C1", ls="--", lw=0.8)
        v = res.meta["shares_at_mark"][env]
        ax.set_title(
            f"{env}: at 1/12, {v['entropy_consumed_frac']:.0%} of the drop, {v['gain_frac']:.0%} of the gain",
            fontsize=9,
        )
        ax.set_xlabel("share of training")
        ax.set_ylabel("share of the total change")
        ax.legend(fontsize=8, loc="lower right")
    fc.title(fig, 5, TITLE)
    return fig
