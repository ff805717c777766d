"""Check M21: Lemma 1 through the kernel J Jᵀ on every policy class."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

import theory
from entrolab.common.verdict import FAILS, HOLDS, Row
from sim import models
from sim import tree as tr
from sim.checks._base import (
    Context,
    _fmt,
    _seed,
    check,
)
from sim.run import SimConfig, Simulator

# -- M21: Lemma 1 through the kernel on every policy class -------------------------------------------------

KERNEL_CLASSES = {
    "tabular": ("tabular", {}),
    "loglinear": ("loglinear", {"d": 16, "scale": 2.0}),
    "loglinear-structured": ("loglinear", {"d": 16, "scale": 2.0, "features": "structured"}),
    "lowrank": ("lowrank", {"rank": 4, "scale": 2.0}),
    "mlp": ("mlp", {"hidden": 32, "scale": 2.0}),
    "transformer": ("transformer", {"d": 16, "heads": 2, "layers": 1, "scale": 2.0}),
}


@check("M21")
def check_kernel(rng, ctx: Context) -> Row:
    """Exact PG on a token tree for every policy class: the visit-weighted realised ΔH against the kernel
    prediction Σ_s w(s)·(−Cov(log π_s, (η·J Jᵀ g)_s)) at η, η/10, η/100, and the share of the predicted
    change that comes from other states (cross terms)."""
    kw = {"n_prompts": 4, "vocab": 3, "horizon": 3, "fork_frac": 0.4, "correct_frac": 0.3, "seed": _seed(rng)}
    lrs = (0.1, 0.01, 0.001)
    res, bad = {}, []
    for label, (pol, pkw) in KERNEL_CLASSES.items():
        rel, cross_share = [], math.nan
        for lr in lrs:
            cfg = SimConfig(env="token_tree", env_kwargs=kw, update="exact_pg", controllers=(), runs=1, steps=2,
                            lr=lr, policy=pol, policy_kwargs=pkw, pass_k=(1,))  # fmt: skip
            sim = Simulator(cfg)
            s = sim.init_state()
            warm = Simulator(dataclasses.replace(cfg, lr=0.5))  # one larger step first (lowrank's W leaves 0)
            warm._apply(
                s,
                warm._z_var(s) if s.params is not None else s.z,
                tr.pg_dz(warm.model.exact(s.z.detach())),
                None,
            )
            z0 = s.z.detach()[0].numpy().copy()  # s.z is updated in place (tabular)
            ex = sim.model.exact(s.z.detach())
            w = models.visit_weights(ex.reach)[0].numpy()
            g = tr.pg_dz(ex)[0].numpy()
            J = (
                np.eye(z0.size)
                if s.params is None
                else sim.param_jacobian(s, 0)[0].reshape(z0.size, -1).numpy()
            )
            own, cross = theory.kernel_dH_split(z0, J, g, lr)
            pred = float((w * (own + cross)).sum())
            sim.step(s, measure=False)
            real = float((w * (theory.entropy(s.z.detach()[0].numpy()) - theory.entropy(z0))).sum())
            rel.append(abs(real - pred) / max(abs(pred), 1e-300))
            if lr == lrs[-1]:
                cross_share = float(
                    np.abs(w * cross).sum() / max(np.abs(w * own).sum() + np.abs(w * cross).sum(), 1e-300)
                )
        res[label] = {"rel_gap": rel, "cross_share": cross_share}
        if not (rel[-1] < 0.01 and rel[1] < rel[0] / 3 and rel[2] < rel[1] / 3):
            bad.append(label)
    return Row(
        id="M21",
        claim="Lemma 1 through the logit kernel: ΔH ≈ Σ_s w(s)·(−Cov(log π_s, (η·J Jᵀ g)_s)) on every policy class",
        source="issue 9; theory.kernel_first_order_dH (Lemma 1 with Δz = η·J Jᵀ g)",
        setting="TokenTree 4 prompts V=3 T=3, one exact-PG step at η 0.1/0.01/0.001 after one step at 0.5; J by autograd",
        n=len(KERNEL_CLASSES),
        measured="; ".join(
            f"{k}: |realised/predicted − 1| {_fmt(v['rel_gap'], '{:.1e}')}, cross-state share {v['cross_share']:.2f}"
            for k, v in res.items()
        ),
        worst=max(v["rel_gap"][-1] for v in res.values()),
        tolerance=0.01,
        verdict=HOLDS if not bad else FAILS,
        details=res,
    )
