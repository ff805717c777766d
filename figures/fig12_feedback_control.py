"""Feedback control of entropy (EntroPIC, arXiv 2511.15248, §3; docs/theory.md §3): a proportional-integral
(PI) law on an entropy lever holds a target entropy both on-policy and off-policy, while proportional-only
control leaves a steady-state offset off-policy; Skywork-OR1's adaptive coefficient (a fixed step Δ up or
down, a bang-bang law) oscillates around the target.

TokenTree (8 prompts, V = 4, T = 4), η = 10 SGD on the logits, target 0.35 nats (GRPO alone falls below
it), 150 rollouts, 8 runs; on-policy (one step per rollout) and off-policy (PPO, 4 epochs per rollout).
Controllers: ``pi_control`` on the entropy-bonus coefficient (range [0, 1]) with kp = 10 and ki = 1 (PI)
or ki = 0 (P-only); ``adaptive_entropy`` on the same coefficient (Δ = 0.01, cap 1); ``entropic``
(EntroPIC's own lever, the weight of tokens with π > 0.95, default gains); and GRPO alone. Lines are the
exact entropy (top) and each controller's lever (bottom: the bonus coefficient, or EntroPIC's α); the
JSON gives each mean error and swing over the last half. The verdict concerns the PI-vs-P claim. Two
things to read off: GRPO's downward drift shrinks as success saturates, so the coefficient needed to hold
the target keeps falling — a ramp, which a PI loop follows with a constant lag, so PI can end slightly
above the target while its lever is still moving; and EntroPIC's lever hardly moves entropy here (its
∂log π/∂z vanishes for the π > 0.95 tokens it acts on; sim verify M9).
"""

from __future__ import annotations

import numpy as np

from figures import _common as fc
from sim.run import SimConfig
from sim.studies import TREE

TITLE = "Feedback control: PI vs P-only vs adaptive coefficient vs EntroPIC"
COLUMNS = ("setting", "series", "step", "entropy_mean", "entropy_se", "success_mean", "success_se", "knob_mean",
           "knob_se")  # fmt: skip
KNOB_KEY = {  # batch metric of each controller's lever (the bonus coefficient, or EntroPIC's α)
    "pi_control": "ctrl/pi_control/value",
    "adaptive_entropy": "ctrl/adaptive_entropy/coef",
    "entropic": "ctrl/entropic/alpha",
}
TARGET, LR = 0.35, 10.0
CONTROLLERS = {
    "GRPO": None,
    "PI (bonus coef)": ("pi_control", {"target": TARGET, "kp": 10.0, "ki": 1.0, "knob_max": 1.0}),
    "P-only (bonus coef)": ("pi_control", {"target": TARGET, "kp": 10.0, "ki": 0.0, "knob_max": 1.0}),
    "adaptive Δ=0.01": ("adaptive_entropy", {"target": TARGET, "delta": 0.01, "c_max": 1.0}),
    "EntroPIC": ("entropic", {"target": TARGET}),
}
SETTINGS = {"on-policy": ("grpo", 1), "off-policy, 4 epochs": ("ppo", 4)}


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    env_seed, sample_seed = fc.seeds(seed, 2)
    runs, steps = (3, 40) if quick else (8, 150)
    rows, stats, errs = [], {}, {}
    for setting, (update, epochs) in SETTINGS.items():
        for label, spec in CONTROLLERS.items():
            pipe = ("grpo", "ppo_clip") + ((spec[0],) if spec else ())
            cfg = SimConfig(
                env="token_tree", env_kwargs={**TREE, "seed": env_seed},
                update=update, epochs=epochs, controllers=pipe, hyperparameters={spec[0]: spec[1]} if spec else {},
                runs=runs, steps=steps, lr=LR, seed=sample_seed, pass_k=(1,),
            )  # fmt: skip
            key = KNOB_KEY[spec[0]] if spec else None
            t = fc.traj(cfg, batch_keys=(key,) if key else ())
            t["knob"] = t[key] if key else np.full_like(t["entropy"], np.nan)
            for r in fc.curve_rows(label, t, ("entropy", "success", "knob"), every=1 if quick else 2):
                rows.append({"setting": setting, **r})
            last = t["entropy"][steps // 2 :] - TARGET
            errs[f"{setting} / {label}"] = last.mean(0)
            stats[f"{setting} / {label}"] = {
                "mean_error": float(last.mean()),
                "abs_error": float(abs(last).mean()),
                "swing": float(t["entropy"][steps // 2 :].std(0).mean()),
                "success_end": float(t["success"][-1].mean()),
                "knob_mid": float(np.nanmean(t["knob"][steps // 2])) if key else None,
                "knob_end": float(np.nanmean(t["knob"][-1])) if key else None,
            }
    res = fc.Result(rows)
    off = "off-policy, 4 epochs"
    parts = [
        *(fc.judge(errs[f"{s} / PI (bonus coef)"], kind="equivalent", margin=fc.TRACK_FRAC * TARGET, unit="nats",
                   test="t", what=f"{s}, PI: entropy − target (holds: within {fc.TRACK_FRAC:.0%})") for s in SETTINGS),
        fc.judge(np.abs(errs[f"{off} / P-only (bonus coef)"]) - np.abs(errs[f"{off} / PI (bonus coef)"]), unit="nats",
                 what=f"{off}: |P-only's offset| − |PI's|"),
    ]  # fmt: skip
    res.meta = {
        "claim": "EntroPIC §3: PI control holds a target entropy on- and off-policy; P-only control leaves a "
        "steady-state error off-policy",
        "verdict": fc.combine(parts),
        "tests": fc.judged(parts),
        "finding": "; ".join(
            f"{k}: mean error {v['mean_error']:+.4f}, swing {v['swing']:.4f}" for k, v in stats.items()
        )
        + f" (target {TARGET} nats, last half of {steps} rollouts). "
        + fc.texts(parts),
        "stats": stats,
        "target": TARGET,
        "lr": LR,
        "runs": runs,
        "steps": steps,
    }
    return res


def plot(res: fc.Result):
    fig, axes = fc.figure(2, 2, height=3.4)
    for ax, kx, setting in zip(axes[:2], axes[2:], SETTINGS, strict=True):
        for i, label in enumerate(CONTROLLERS):
            sel = {"setting": setting, "series": label}
            fc.band(ax, res.col("step", **sel), res.col("entropy_mean", **sel), res.col("entropy_se", **sel),
                    label=label, color="k" if i == 0 else f"C{i - 1}")  # fmt: skip
            if i:
                kx.plot(res.col("step", **sel), res.col("knob_mean", **sel), color=f"C{i - 1}", label=label)
        ax.axhline(TARGET, color="0.4", ls="--", lw=1, label="target")
        kx.set_xlabel("rollout")
        kx.set_ylabel("lever: bonus coefficient (EntroPIC: α)")
        kx.axhline(0, color="0.5", lw=0.6)
        ax.set_title(setting, fontsize=9)
        ax.set_xlabel("rollout")
        ax.set_ylabel("entropy (nats)")
    axes[0].legend(fontsize=7)
    fc.title(fig, 12, TITLE)
    return fig
