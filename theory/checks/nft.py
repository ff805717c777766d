"""Check NFT1: NFT's gradient equals GRPO's on-policy."""

from __future__ import annotations

import numpy as np

from entrolab.common.verdict import FAILS, HOLDS, Row
from theory.checks._base import check


@check("NFT1")
def check_nft_identity(rng) -> Row:
    from theory import nft

    K = rng.integers(2, 33, 2000)
    c = np.array([rng.integers(1, k) for k in K])  # 1 ≤ c ≤ K − 1 correct: r̂ ∈ (0, 1)
    rhat = c / K
    worst_on = 0.0
    drift = {}
    for r in (0.0, 1.0):
        a = nft.grpo_identity_coef(np.full_like(rhat, r), rhat)
        worst_on = max(worst_on, float(np.max(np.abs(nft.nft_coef(np.full_like(rhat, r), rhat, 1.0) - a))))
        for log_r in (-0.2, 0.2):
            gap = np.abs(nft.nft_coef(np.full_like(rhat, r), rhat, np.exp(log_r)) - a) / np.abs(a)
            drift[f"{'pos' if r else 'neg'} R=e^{log_r:+.1f}"] = float(np.median(gap))
    ok = worst_on <= 1e-13
    return Row(
        id="NFT1",
        claim="On-policy (R = 1) the NFT gradient equals GRPO's with A⁺ = √((1−r̂)/r̂), A⁻ = −√(r̂/(1−r̂))",
        source="seed 001; Chen et al. 2025 (NFT) §4",
        setting="2000 groups, K∈[2,32], 0<r̂<1; off-policy drift at R=e^±0.2 reported, not judged",
        n=int(K.size),
        measured=f"max |c_NFT − A| at R=1: {worst_on:.1e}; median relative gap off-policy "
        + ", ".join(f"{k} {v:.2f}" for k, v in drift.items()),
        worst=worst_on,
        tolerance=1e-13,
        verdict=HOLDS if ok else FAILS,
        details=drift,
    )
