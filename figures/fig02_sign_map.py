"""Cui et al. 2025, Thm 1 sign table: raising the logit of an action a by εA changes entropy by
ΔH ≈ −εA·π_a(log π_a + H), so the sign flips where log π_a = −H (π_a = e^{−H}).

One softmax state of 4 actions: three fixed logits (3, 0, 0: one dominant competitor) and the logit of
action a swept, so π_a runs from 1e-4 to 0.999 (and H with it); the advantage A runs over [−1, 1]. Left: the exact ΔH/ε of the one-arm bump
Δz = εA·e_a; its zero contour lies on log π_a = −H (dashed), and the four quadrants of the paper's table
appear: a likely action (π_a > e^{−H}) rewarded, or an unlikely one penalised, lowers entropy; the
other two raise it. Right: the same for the policy-gradient step of a sampled token, Δz = εA(e_a − π),
whose threshold is g(a) = 0 (docs/theory.md §1.3, ours), not π_a = e^{−H}: the paper's table is exact for the
bump and misreads gradient steps in the band between the two contours.
"""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np

import theory
from figures import _common as fc

TITLE = "Sign of the entropy change of a one-token update"
COLUMNS = ("logit_a", "pi_a", "entropy", "log_pi_plus_H", "adv", "dH_bump_per_eps", "dH_grad_per_eps", "g_a")
EPS = 1e-4
OTHERS = (3.0, 0.0, 0.0)  # one dominant competitor: the two thresholds differ visibly (0.41 vs 0.47)


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    others = np.asarray(OTHERS)  # a fixed state: the seed does not enter
    n_logit, n_adv = (41, 11) if quick else (121, 31)
    logits_a = np.linspace(np.log(1e-4) + np.log(np.exp(others).sum()), 10.0, n_logit)
    rows = []
    for la in logits_a:
        z = np.concatenate([[la], others])
        pi = theory.softmax(z)
        H = float(theory.entropy(z))
        g = float(theory.g_values(z)[0])
        e = np.eye(len(z))[0]
        for A in np.linspace(-1.0, 1.0, n_adv):
            rows.append(
                {
                    "logit_a": float(la),
                    "pi_a": float(pi[0]),
                    "entropy": H,
                    "log_pi_plus_H": float(np.log(pi[0]) + H),
                    "adv": float(A),
                    "dH_bump_per_eps": float(theory.exact_dH(z, EPS * A * e)) / EPS,
                    "dH_grad_per_eps": float(theory.exact_dH(z, EPS * A * (e - pi))) / EPS,
                    "g_a": g,
                }
            )
    res = fc.Result(rows)
    u, A = res.col("log_pi_plus_H"), res.col("adv")
    bump, grad, g = res.col("dH_bump_per_eps"), res.col("dH_grad_per_eps"), res.col("g_a")
    decided = (np.abs(u) > 1e-2) & (np.abs(A) > 1e-9)
    table = -np.sign(A * u)
    bump_wrong = int((np.sign(bump) != table)[decided].sum())
    grad_decided = (np.abs(g) > 1e-4) & (np.abs(A) > 1e-9)
    grad_wrong = int((np.sign(grad) != -np.sign(A * g))[grad_decided].sum())
    table_on_grad = float((np.sign(grad) != table)[decided & grad_decided].mean())
    quadrants = {
        "likely, A>0": float(np.sign(bump[(u > 0.05) & (A > 0)]).mean()),
        "likely, A<0": float(np.sign(bump[(u > 0.05) & (A < 0)]).mean()),
        "unlikely, A>0": float(np.sign(bump[(u < -0.05) & (A > 0)]).mean()),
        "unlikely, A<0": float(np.sign(bump[(u < -0.05) & (A < 0)]).mean()),
    }
    ok = bump_wrong == 0 and grad_wrong == 0
    res.meta = {
        "claim": "Cui et al. 2025 Thm 1 table: ΔH < 0 iff A·(log π_a + H) > 0 for a one-token update; docs/theory.md §1.3",
        "verdict": fc.HOLDS if ok else fc.FAILS,
        "finding": (
            f"one-arm bump: {bump_wrong}/{int(decided.sum())} grid cells off the table's sign; the gradient "
            f"step follows −A·g(a) ({grad_wrong} mismatches), and the table (threshold e^(−H)) misreads "
            f"{table_on_grad:.1%} of its cells. Mean sign per quadrant (bump): "
            + ", ".join(f"{k} {v:+.0f}" for k, v in quadrants.items())
        ),
        "bump_sign_mismatches": bump_wrong,
        "grad_sign_mismatches": grad_wrong,
        "table_misreads_grad_frac": table_on_grad,
        "quadrant_sign": quadrants,
        "eps": EPS,
        "other_logits": others.tolist(),
    }
    return res


def _grid(res: fc.Result, key: str):
    x = np.asarray(res.values("pi_a"), dtype=float)
    y = np.asarray(res.values("adv"), dtype=float)
    v = res.col(key).reshape(len(x), len(y)).T  # rows in (logit, adv) order
    return x, y, v


def _crossing(x: np.ndarray, y: np.ndarray) -> float:
    """x where y first changes sign (linear interpolation); nan if it never does."""
    idx = np.nonzero(np.diff(np.sign(y)) != 0)[0]
    if not len(idx):
        return float("nan")
    i = idx[0]
    return float(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i]))


def plot(res: fc.Result):
    fig, axes = fc.figure(2)
    step = len(res.values("adv"))
    pi = np.asarray(res.values("pi_a"), dtype=float)
    x_cross = _crossing(pi, np.asarray([r["log_pi_plus_H"] for r in res.rows[::step]]))
    x_g = _crossing(pi, np.asarray([r["g_a"] for r in res.rows[::step]]))
    for ax, key, name in (
        (axes[0], "dH_bump_per_eps", "one-arm bump Δz = εA·e_a"),
        (axes[1], "dH_grad_per_eps", "gradient step Δz = εA(e_a − π)"),
    ):
        x, y, v = _grid(res, key)
        lim = np.abs(v).max()
        norm = mcolors.SymLogNorm(linthresh=1e-3 * lim, vmin=-lim, vmax=lim)
        m = ax.pcolormesh(x, y, v, cmap="RdBu", norm=norm, shading="auto")
        ax.contour(x, y, v, levels=[0.0], colors="k", linewidths=1.2)
        ax.axvline(x_cross, color="k", ls="--", lw=1, label="π_a = e^(−H)")
        if key == "dH_grad_per_eps":
            ax.axvline(x_g, color="C2", ls=":", lw=2, label="g(a) = 0")
        ax.set_xscale("log")
        ax.set_xlabel("π_a")
        ax.set_ylabel("advantage A")
        ax.set_title(name, fontsize=9)
        ax.legend(loc="lower left", fontsize=8)
        fig.colorbar(m, ax=ax, label="ΔH / ε (nats)")
    for text, xy in (
        ("H ↓", (0.94, 0.85)),
        ("H ↑", (0.94, 0.15)),
        ("H ↑", (0.15, 0.85)),
        ("H ↓", (0.15, 0.15)),
    ):
        axes[0].annotate(text, xy, xycoords="axes fraction", ha="center", fontsize=12, weight="bold")
    fc.title(fig, 2, TITLE)
    return fig
