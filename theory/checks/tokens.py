"""Check K9: the Clip-Cov/KL-Cov token covariance statistic."""

from __future__ import annotations

import math

from entrolab.common.verdict import FAILS, HOLDS, Row
from theory import policy, token_stats
from theory.checks._base import check


@check("K9")
def check_token_cov(rng) -> Row:
    """Batch token covariance estimates (N−1)/N·Cov(log π, A), not Cov(log π, π·A)."""
    n_inst, n_tok, n_batches = 40, 16, 20000
    zmax, far = 0.0, 0
    for _ in range(n_inst):
        n = int(rng.integers(3, 10))
        z = rng.normal(size=n) * float(rng.uniform(0.5, 2.5))
        p = policy.softmax(z)
        rwd = rng.normal(size=n)
        adv = rwd - p @ rwd
        logp = policy.log_softmax(z)
        y = rng.choice(n, size=(n_batches, n_tok), p=p / p.sum())
        lp, a = logp[y], adv[y]
        est = ((lp - lp.mean(1, keepdims=True)) * (a - a.mean(1, keepdims=True))).mean(1)
        expect = float(token_stats.token_cov_expectation(z, adv, n_tok))
        se = est.std(ddof=1) / math.sqrt(n_batches)
        zmax = max(zmax, abs(est.mean() - expect) / se)
        cov_pg = float(policy.cov_pi(z, logp, p * adv))
        if abs(est.mean() - cov_pg) / se > 6:
            far += 1
    ok = zmax < 4.5
    return Row(
        id="K9",
        claim="The Clip-Cov/KL-Cov batch statistic estimates (N−1)/N·Cov_π(log π, A) (Thm 2 form), not Cov(log π, π·A)",
        source="Cui et al. 2025 Eq. 10 and §4.2; docs/theory.md §1.5",
        setting=f"{n_inst} policies, N={n_tok} tokens, {n_batches} batches each",
        n=n_inst,
        measured=(
            f"max |mean − (N−1)/N·Cov(log π,A)| = {zmax:.2f} standard errors; "
            f"{far}/{n_inst} means are > 6 s.e. from Cov(log π, π·A)"
        ),
        worst=zmax,
        tolerance=4.5,
        verdict=HOLDS if ok else FAILS,
    )
