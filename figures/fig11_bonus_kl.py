"""Entropy regularisation baselines (Cui et al. 2025 §4.1, Figs. 9-10): an entropy bonus either does
nothing (small coefficients) or makes entropy explode (their 1e-2); a KL penalty to the reference policy
keeps entropy stable at a cost in accuracy.

TokenTree (8 prompts, V = 4, T = 4), on-policy GRPO (η = 10 SGD on the logits), 100 rollouts, 16 runs with
paired seeds; the reference policy is the initial one. Top row: the entropy-bonus coefficient swept over
0, 1e-4, 1e-3, 5e-3, 1e-2, 0.1, 1; bottom row: the reference-KL β (k3 estimator) over 0, 1e-3, 1e-2, 0.1,
1. Left: exact entropy over training; right: final entropy and final success against the coefficient.
The reader should see where each knob starts to act — in the simulator the threshold is set by the
scale of the advantage term, so the paper's 1e-2 is no number to carry over — and what it costs.
"""

from __future__ import annotations

import numpy as np

from figures import _common as fc
from sim.run import SimConfig
from sim.studies import TREE

TITLE = "Entropy bonus and reference-KL sweeps: collapse, explosion and cost"
LR = 10.0  # at η = 1 entropy hardly moves in 100 rollouts on this tree
MIN_EFFECT = 0.01  # nats: a change smaller than this is no effect, however many runs agree
COLUMNS = ("knob", "value", "step", "entropy_mean", "entropy_se", "success_mean", "success_se")
SWEEPS = {
    "entropy_bonus coef": ("entropy_bonus", "coef", (0.0, 1e-4, 1e-3, 5e-3, 1e-2, 0.1, 1.0)),
    "ref_kl beta": ("ref_kl", "beta", (0.0, 1e-3, 1e-2, 0.1, 1.0)),
}


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    env_seed, sample_seed = fc.seeds(seed, 2)
    runs, steps = (4, 30) if quick else (16, 100)
    rows, ends, finals = [], {}, {}
    for label, (ctrl, knob, values) in SWEEPS.items():
        fin = []
        for v in values:
            cfg = SimConfig(
                env="token_tree", env_kwargs={**TREE, "seed": env_seed},
                update="grpo", controllers=("grpo", ctrl), hyperparameters={ctrl: {knob: v}}, runs=runs,
                steps=steps, lr=LR, seed=sample_seed, pass_k=(1,),
            )  # fmt: skip
            t = fc.traj(cfg)
            for r in fc.curve_rows(label, t, ("entropy", "success"), every=1 if quick else 2):
                r.pop("series")
                rows.append({"knob": label, "value": float(v), **r})
            fin.append((t["entropy"][-1], t["success"][-1], float(t["entropy"][0].mean())))
        finals[label] = fin
        ends[label] = {
            "values": list(values),
            "H_end": [float(h.mean()) for h, _, _ in fin],
            "R_end": [float(r.mean()) for _, r, _ in fin],
            "dH_vs_off": [float((h - fin[0][0]).mean()) for h, _, _ in fin],
            "dH_se": [fc.se(h - fin[0][0]) for h, _, _ in fin],
            "dR_vs_off": [float((r - fin[0][1]).mean()) for _, r, _ in fin],
            "dR_se": [fc.se(r - fin[0][1]) for _, r, _ in fin],
            "H0": fin[0][2],
        }
    res = fc.Result(rows)
    bonus, kl = ends["entropy_bonus coef"], ends["ref_kl beta"]
    # bonus: some coefficient makes entropy end above where it started (explosion) and costs success
    explodes = [v for v, h in zip(bonus["values"], bonus["H_end"], strict=True) if h > bonus["H0"]]
    first_acting = [
        v
        for v, d, s in zip(bonus["values"], bonus["dH_vs_off"], bonus["dH_se"], strict=True)
        if v and d > max(3 * s, MIN_EFFECT)
    ]
    fb, fk = finals["entropy_bonus coef"], finals["ref_kl beta"]
    parts = [
        fc.judge(fb[-1][0] - fb[0][2], what=f"final H at coef {bonus['values'][-1]:g} − the start (explodes: above it)",
                 unit="nats", test="t"),
        fc.judge(fk[-1][0] - fk[0][0], bar=MIN_EFFECT, what=f"final H, ref_kl β={kl['values'][-1]:g} − none (keeps: "
                 f"by more than {MIN_EFFECT:g})", unit="nats"),
        fc.judge(fk[-1][1] - fk[0][1], kind="less", bar=-MIN_EFFECT, what=f"final success, ref_kl β={kl['values'][-1]:g} "
                 f"− none (costs: by more than {MIN_EFFECT:g})"),
    ]  # fmt: skip
    res.meta = {
        "claim": "Cui et al. 2025 Figs. 9-10: an entropy bonus is inert when small and explodes when large; a "
        "reference KL keeps entropy up at a cost in accuracy",
        "verdict": fc.combine(parts),
        "tests": fc.judged(parts),
        "finding": (
            f"entropy bonus: H start {bonus['H0']:.3f}, final H by coef "
            + ", ".join(f"{v:g}: {h:.3f}" for v, h in zip(bonus["values"], bonus["H_end"], strict=True))
            + f"; first coefficient that raises final H beyond noise: {first_acting[0] if first_acting else 'none'}; "
            f"ends above the start from coef {explodes[0] if explodes else 'none'}; success by coef "
            + ", ".join(f"{r:.3f}" for r in bonus["R_end"])
            + ". Reference KL: final H by β "
            + ", ".join(f"{v:g}: {h:.3f}" for v, h in zip(kl["values"], kl["H_end"], strict=True))
            + f", success {', '.join(f'{r:.3f}' for r in kl['R_end'])} (β = {kl['values'][-1]:g} vs 0: H "
            f"{kl['dH_vs_off'][-1]:+.3f} ± {kl['dH_se'][-1]:.3f}, success {kl['dR_vs_off'][-1]:+.3f} ± {kl['dR_se'][-1]:.3f})"
            + ". "
            + fc.texts(parts)
        ),
        "sweeps": ends,
        "runs": runs,
        "steps": steps,
    }
    return res


def plot(res: fc.Result):
    fig, axes = fc.figure(2, 2)
    for row, (label, (_, knob, values)) in enumerate(SWEEPS.items()):
        a, b = axes[2 * row], axes[2 * row + 1]
        for i, v in enumerate(values):
            sel = {"knob": label, "value": float(v)}
            c = "k" if v == 0 else f"C{i - 1}"
            fc.band(a, res.col("step", **sel), res.col("entropy_mean", **sel), res.col("entropy_se", **sel),
                    label=f"{knob} = {v:g}", color=c)  # fmt: skip
        a.set_xlabel("rollout")
        a.set_ylabel("entropy (nats)")
        a.set_title(label, fontsize=9)
        a.legend(fontsize=7, ncol=2)
        last = max(res.col("step", knob=label))
        x = np.arange(len(values))
        h = [res.col("entropy_mean", knob=label, value=float(v), step=last)[0] for v in values]
        s = [res.col("success_mean", knob=label, value=float(v), step=last)[0] for v in values]
        b.plot(x, h, "o-", color="C0", label="final entropy")
        b.set_ylabel("final entropy (nats)", color="C0")
        b2 = b.twinx()
        b2.plot(x, s, "s--", color="C3", label="final success")
        b2.set_ylabel("final success", color="C3")
        b.set_xticks(x, [f"{v:g}" for v in values], fontsize=8)
        b.set_xlabel(knob)
    fc.title(fig, 11, TITLE)
    return fig
