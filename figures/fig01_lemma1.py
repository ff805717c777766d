"""Lemma 1 (Cui et al. 2025): the entropy change of a logit step Δz = η·d is, to first order,
ΔH ≈ −Cov_{a~π}(log π(a), Δz_a); the second-order term adds ½ Δzᵀ∇²H Δz.

Random softmax policies (3-12 actions, logit scale 0.5-3) and random unit update directions d; the
exact ΔH = H(z + ηd) − H(z) against the first- and second-order predictions (``theory.first_order_dH``,
``theory.second_order_dH``). Left: exact vs first-order ΔH (both divided by η) at two step sizes — on the diagonal at the
small one, scattered at the large one. Right: the median absolute error against η on log-log axes, with
fitted slopes; the reader should see slope 2 for the first-order error and 3 for the second-order error
(the error of a k-th order Taylor expansion is O(η^{k+1})).
"""

from __future__ import annotations

import numpy as np

import theory
from figures import _common as fc

TITLE = "Lemma 1: exact vs first- and second-order entropy change"
COLUMNS = ("case", "n_actions", "eta", "exact_dH", "first_order_dH", "second_order_dH")
FIT_RANGE = (1e-3, 1e-1)  # η range of the slope fit


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    rng = np.random.default_rng(seed)
    n_cases = 60 if quick else 300
    etas = np.logspace(-4, 0, 9 if quick else 13)
    rows = []
    for case in range(n_cases):
        n = int(rng.integers(3, 13))
        z = rng.normal(size=n) * rng.uniform(0.5, 3.0)
        d = rng.normal(size=n)
        d /= np.linalg.norm(d)
        for eta in etas:
            dz = eta * d
            rows.append(
                {
                    "case": case,
                    "n_actions": n,
                    "eta": float(eta),
                    "exact_dH": float(theory.exact_dH(z, dz)),
                    "first_order_dH": float(theory.first_order_dH(z, dz)),
                    "second_order_dH": float(theory.second_order_dH(z, dz)),
                }
            )
    res = fc.Result(rows)
    slopes = error_slopes(res)
    ok = abs(slopes["first"] - 2) <= 0.2 and abs(slopes["second"] - 3) <= 0.2
    res.meta = {
        "claim": "Lemma 1 (Cui et al. 2025): ΔH = −Cov(log π, Δz) + O(|Δz|²); docs/theory.md §1.1",
        "verdict": fc.HOLDS if ok else fc.FAILS,
        "finding": (
            f"median error slopes over η ∈ [{FIT_RANGE[0]:g}, {FIT_RANGE[1]:g}]: first order "
            f"{slopes['first']:.3f} (expected 2), second order {slopes['second']:.3f} (expected 3); "
            f"{n_cases} random policies"
        ),
        "slopes": slopes,
        "n_cases": n_cases,
        "fit_range": list(FIT_RANGE),
    }
    return res


def median_errors(res: fc.Result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(η grid, median |exact − first|, median |exact − second|) over cases."""
    etas = np.asarray(res.values("eta"), dtype=float)
    e1 = np.asarray(
        [np.median(np.abs(res.col("exact_dH", eta=e) - res.col("first_order_dH", eta=e))) for e in etas]
    )
    e2 = np.asarray(
        [np.median(np.abs(res.col("exact_dH", eta=e) - res.col("second_order_dH", eta=e))) for e in etas]
    )
    return etas, e1, e2


def error_slopes(res: fc.Result) -> dict[str, float]:
    etas, e1, e2 = median_errors(res)
    sel = (etas >= FIT_RANGE[0] * 0.999) & (etas <= FIT_RANGE[1] * 1.001)
    fit = lambda e: float(np.polyfit(np.log(etas[sel]), np.log(e[sel]), 1)[0])  # noqa: E731
    return {"first": fit(e1), "second": fit(e2)}


def plot(res: fc.Result):
    fig, (a, b) = fc.figure(2)
    etas = np.asarray(res.values("eta"), dtype=float)
    for eta, color in ((etas[len(etas) // 2], "C0"), (etas[-1], "C3")):
        x, y = res.col("first_order_dH", eta=eta) / eta, res.col("exact_dH", eta=eta) / eta
        a.scatter(x, y, s=6, alpha=0.5, color=color, label=f"η = {eta:.2g}")
    lim = np.abs(res.col("exact_dH", eta=etas[-1]) / etas[-1]).max()
    a.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    a.set_xlabel("first-order ΔH / η = −Cov(log π, d)")
    a.set_ylabel("exact ΔH / η")
    a.legend()
    _, e1, e2 = median_errors(res)
    s = res.meta["slopes"]
    b.loglog(etas, e1, "o-", label=f"|exact − 1st order|, slope {s['first']:.2f}")
    b.loglog(etas, e2, "s-", label=f"|exact − 2nd order|, slope {s['second']:.2f}")
    b.axvspan(*FIT_RANGE, color="0.9", zorder=0, label="fit range")
    b.set_xlabel("η (step size along a unit direction)")
    b.set_ylabel("median absolute error (nats)")
    b.legend(fontsize=8)
    fc.title(fig, 1, TITLE)
    return fig
