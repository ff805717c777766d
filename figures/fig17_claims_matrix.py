"""The claims matrix: which training-dynamics claims need parameters shared across prompts and tokens.

In a tabular softmax every prompt has its own logits, so a constant baseline leaves the expected update
unchanged and several LLM claims can only come from sampling noise or from sharing. Each simulator claim
(rows: M5 PSR/NSR/W-REINFORCE, M6 clip-higher / Clip-Cov / KL-Cov controllability, M7 entropy-bonus
sensitivity, M10 off-policy epochs, M11 the entropy–performance law and its early prediction, M22 QAE's
K sweep) is re-run,
with its own seeds and paired comparisons, on every policy class of ``sim.policies``: tabular, log-linear
(random and structured features), low-rank, MLP and a one-layer causal transformer over token-tree
prefixes, all starting at the same prior. Cells: the verdict (green holds, amber approximate, red fails,
grey where the class does not fit the check's environment, e.g. the transformer on a bandit) and the
row's measured number. ``python -m sim verify --matrix`` prints the same table; its JSON has one row per
(claim, policy). The finding states which claims change verdict with sharing.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from figures import _common as fc
from sim import verify

TITLE = "Claims × policy class: which claims need shared parameters"
SLOW = True  # the full matrix takes about 11 minutes on 2 CPUs: `make matrix`, or python -m figures 17
COLUMNS = ("claim_id", "policy", "verdict", "worst", "tolerance", "measured")
QUICK_CLAIMS, QUICK_POLICIES = ("M5",), ("tabular", "loglinear-structured")
COLOURS = {
    fc.HOLDS: "#4caf50",
    fc.APPROX: "#ffb300",
    fc.FAILS: "#e53935",
    fc.SURROGATE: "#8e24aa",
    None: "#bdbdbd",
}


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    claims = QUICK_CLAIMS if quick else verify.MATRIX_CLAIMS
    labels = QUICK_POLICIES if quick else tuple(verify.MATRIX_POLICIES)
    cells = verify.run_matrix(seed=seed, claims=claims, policy_labels=labels)
    rows = [
        {
            "claim_id": c.claim_id,
            "policy": c.policy,
            "verdict": "n/a" if c.row is None else c.row.verdict,
            "worst": float("nan") if c.row is None else float(c.row.worst),
            "tolerance": float("nan") if c.row is None else float(c.row.tolerance),
            "measured": c.why if c.row is None else c.row.measured,
        }
        for c in cells
    ]
    res = fc.Result(rows)
    by_claim: dict[str, dict[str, str]] = {}
    for r in rows:
        by_claim.setdefault(r["claim_id"], {})[r["policy"]] = r["verdict"]
    changes = {k: v for k, v in by_claim.items() if len({x for x in v.values() if x != "n/a"}) > 1}
    same = {
        k: next(iter({x for x in v.values() if x != "n/a"}), "n/a")
        for k, v in by_claim.items()
        if k not in changes
    }
    res.meta = {
        "claim": "Issue 9's hypothesis: some of the tabular simulator's claim verdicts change when parameters are "
        "shared across prompts and tokens (holds when at least one claim row changes verdict across classes)",
        "verdict": fc.HOLDS if changes else fc.FAILS,
        "finding": (
            "verdict changes with the policy class: "
            + (
                "; ".join(f"{k} " + ", ".join(f"{p} {v}" for p, v in vs.items()) for k, vs in changes.items())
                or "none"
            )
            + ". Same verdict on every class that fits: "
            + (", ".join(f"{k} {v}" for k, v in same.items()) or "none")
        ),
        "claims": list(claims),
        "policies": list(labels),
    }
    return res


def plot(res: fc.Result):
    claims = res.values("claim_id")
    labels = res.values("policy")
    fig, axes = fc.figure(1, width=1.6 * len(labels) + 2.5, height=0.55 * len(claims) + 1.6)
    ax = axes[0]
    cells = {(r["claim_id"], r["policy"]): r for r in res.rows}
    for i, cid in enumerate(claims):
        for j, lab in enumerate(labels):
            r = cells.get((cid, lab))
            verdict = None if r is None or r["verdict"] == "n/a" else r["verdict"]
            ax.add_patch(Rectangle((j, i), 1, 1, color=COLOURS.get(verdict, "#bdbdbd")))
            text = (
                "—"
                if verdict is None
                else f"{verdict}\n{r['worst']:+.3g}"
                if np.isfinite(r["worst"])
                else verdict
            )
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=7)
    ax.set_xlim(0, len(labels))
    ax.set_ylim(len(claims), 0)
    ax.set_xticks(np.arange(len(labels)) + 0.5, labels, rotation=25, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(claims)) + 0.5, claims, fontsize=8)
    ax.set_xlabel("policy class")
    ax.set_ylabel("claim (sim verify row)")
    fc.title(fig, 17, TITLE)
    return fig
