"""QAE (Wu et al. 2025) Prop. 4.2, honestly: the paper's surrogate ΔH(b) ≈ −η·Cov(log π, π·(r − b)) grows
monotonically with the baseline b, so a high quantile baseline on easy prompts should raise entropy and
a low one on hard prompts lower it. For the softmax policy gradient the expected update with any constant
baseline is the same, so the true expected ΔH does not depend on b at all (docs/theory.md §2.3, ours).

One softmax state of 6 actions, binary rewards; a hard prompt (success p_π ≈ 0.2) and an easy one
(p_π ≈ 0.8), groups of G = 8, η = 1. Over b ∈ [0, 1]: the surrogate (monotone), the exact expected
first-order ΔH of a sampled G-step, enumerated over every multinomial outcome (flat, equal to
``theory.qae_true_dH``; the two meet the surrogate at b = p_π), and the distribution over 4000 sampled
groups (median and 5-95% / 25-75% bands): one draw's ΔH does depend on b, through Σ_i g(y_i), whose sign
is a coin flip. The claim holds for the surrogate only.
"""

from __future__ import annotations

import numpy as np

import theory
from figures import _common as fc

TITLE = "QAE Prop. 4.2: surrogate vs true entropy change against the baseline"
COLUMNS = ("prompt", "b", "p_pi", "surrogate_dH", "expected_dH", "true_dH", "draw_mean_dH",
           "draw_q05", "draw_q25", "draw_q50", "draw_q75", "draw_q95")  # fmt: skip
G, LR, N_ARMS = 8, 1.0, 6


def _prompt(rng: np.random.Generator, target: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits and binary rewards with success p_π near ``target`` (two correct arms)."""
    z = rng.normal(0.0, 1.0, N_ARMS)
    r = np.zeros(N_ARMS)
    r[:2] = 1.0
    p = theory.softmax(z)
    shift = np.log(target / (1 - target)) - np.log(p[:2].sum() / p[2:].sum())
    z[:2] += shift
    return z, r


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    rng = np.random.default_rng(seed)
    bs = np.linspace(0.0, 1.0, 11 if quick else 41)
    n_draws = 1000 if quick else 4000
    rows, summary = [], {}
    for name, target in (("hard", 0.2), ("easy", 0.8)):
        z, r = _prompt(rng, target)
        p_pi = float(theory.softmax(z) @ r)
        g = theory.g_values(z)
        counts, prob, _ = theory.sum_g_distribution(z, G)
        acts = rng.choice(N_ARMS, size=(n_draws, G), p=theory.softmax(z))
        true = float(theory.qae_true_dH(z, r, LR))
        for b in bs:
            expected = float(prob @ (-(LR / G) * (counts @ ((r - b) * g))))
            draws = theory.sampled_first_order_dH(z, r, acts, float(b), LR)
            q = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95])
            rows.append(
                {"prompt": name, "b": float(b), "p_pi": p_pi,
                 "surrogate_dH": float(theory.qae_surrogate_dH(z, r, float(b), LR)), "expected_dH": expected,
                 "true_dH": true, "draw_mean_dH": float(draws.mean()), "draw_q05": q[0], "draw_q25": q[1],
                 "draw_q50": q[2], "draw_q75": q[3], "draw_q95": q[4]}
            )  # fmt: skip
        summary[name] = {"p_pi": p_pi, "p_sum_g_nonneg": theory.prob_sum_g_nonneg(z, G), "logits": z.tolist()}
    res = fc.Result(rows)
    stats = {}
    for name in ("hard", "easy"):
        sur, exp = res.col("surrogate_dH", prompt=name), res.col("expected_dH", prompt=name)
        true = res.col("true_dH", prompt=name)
        stats[name] = {
            "surrogate_min_increment": float(np.diff(sur).min()),
            "surrogate_range": float(sur.max() - sur.min()),
            "expected_flatness": float(exp.max() - exp.min()),
            "expected_vs_true": float(np.abs(exp - true).max()),
            **summary[name],
        }
    monotone = all(v["surrogate_min_increment"] > 0 for v in stats.values())
    flat = all(v["expected_flatness"] <= 1e-9 and v["expected_vs_true"] <= 1e-9 for v in stats.values())
    res.meta = {
        "claim": "QAE Prop. 4.2 (Wu et al. 2025, arXiv 2509.22611): ΔH increases with the baseline b, so the "
        "quantile baseline controls entropy; docs/theory.md §2.3",
        "verdict": fc.SURROGATE if monotone and flat else fc.FAILS,
        "finding": "; ".join(
            f"{k} prompt (p_π = {v['p_pi']:.2f}): surrogate rises by {v['surrogate_range']:.3f} over b ∈ [0, 1] "
            f"(strictly: {v['surrogate_min_increment'] > 0}); expected true ΔH varies by {v['expected_flatness']:.1e} "
            f"and differs from theory.qae_true_dH by {v['expected_vs_true']:.1e}; P(Σg ≥ 0) = {v['p_sum_g_nonneg']:.2f}"
            for k, v in stats.items()
        ),
        "stats": stats,
        "group_size": G,
        "lr": LR,
        "n_draws": n_draws,
    }
    return res


def plot(res: fc.Result):
    fig, axes = fc.figure(2)
    for ax, name in zip(axes, ("hard", "easy"), strict=True):
        b = res.col("b", prompt=name)
        ax.fill_between(b, res.col("draw_q05", prompt=name), res.col("draw_q95", prompt=name), color="0.85",
                        label="sampled groups 5-95%")  # fmt: skip
        ax.fill_between(b, res.col("draw_q25", prompt=name), res.col("draw_q75", prompt=name), color="0.7",
                        label="25-75%")  # fmt: skip
        ax.plot(b, res.col("draw_q50", prompt=name), color="0.4", lw=1, label="median draw")
        ax.plot(b, res.col("surrogate_dH", prompt=name), "C3", lw=2, label="surrogate (Prop. 4.2)")
        ax.plot(b, res.col("expected_dH", prompt=name), "C0", lw=2, label="expected true ΔH (exact)")
        p = res.col("p_pi", prompt=name)[0]
        ax.axvline(p, color="k", ls=":", lw=1, label="b = p_π")
        ax.set_title(f"{name} prompt, p_π = {p:.2f}", fontsize=9)
        ax.set_xlabel("baseline b")
        ax.set_ylabel("first-order ΔH (η = 1)")
        ax.legend(fontsize=7)
    fc.title(fig, 6, TITLE)
    return fig
