"""Check M22: QAE's K sweep on a token tree."""

from __future__ import annotations

from entrolab.common.verdict import Row, sweep, sweep_verdict
from sim.checks._base import (
    CLIP_LR,
    Context,
    _fmt,
    _se,
    _seed,
    _tree_cfg,
    check,
)

# -- M22: QAE's K sweep on a token tree -------------------------------------------------------------------

QAE_KS = (0.2, 0.4, 0.6, 0.8)


@check("M22", shared=True, matrix=True)
def check_qae_sweep(rng, ctx: Context) -> Row:
    se_env, seed = _seed(rng), _seed(rng)
    base = {"update": "grpo", "steps": 100, "lr": CLIP_LR}
    grpo = ctx.trajectory(_tree_cfg(se_env, seed, controllers=("grpo",), **base))
    ends = []
    for k in QAE_KS:
        t = ctx.trajectory(
            _tree_cfg(se_env, seed, controllers=("qae",), hyperparameters={"qae": {"k": k}}, **base)
        )
        ends.append(t["entropy"][-1])
    d = ends[QAE_KS.index(0.4)] - grpo["entropy"][-1]
    parts = sweep(ends, [f"K={k:g}" for k in QAE_KS], what="final H,", unit="nats")
    return Row(
        id="M22",
        claim="QAE: final entropy rises with the quantile K",
        source="Wu et al. 2025 (QAE) §4-5; figure 7 (the bandit version); docs/theory.md §2.1",
        setting=f"TokenTree 8 prompts V=4 T=4; on-policy sampled steps, η={CLIP_LR:g}, G=8, 100 steps, 16 runs, paired seeds",
        n=16,
        measured=(
            f"final H by K {_fmt(QAE_KS, '{:g}')}: {_fmt([float(e.mean()) for e in ends])}, GRPO "
            f"{float(grpo['entropy'][-1].mean()):.3f}; K=0.4 − GRPO {float(d.mean()):+.4f} ± {_se(d):.4f} (paired, "
            "reported: QAE does not claim it). " + "; ".join(j.text() for j in parts)
        ),
        worst=parts[0].estimate,
        tolerance=0.0,
        spread=parts[0].se,
        verdict=sweep_verdict(parts),
        tests=[j.as_dict() for j in parts],
        must_hold=False,
        details={"ks": list(QAE_KS), "H_end": [float(e.mean()) for e in ends], "diff_k04": float(d.mean())},
    )
