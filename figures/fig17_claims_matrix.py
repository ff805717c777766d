"""The claims matrix: which training-dynamics claims need parameters shared across prompts and tokens.

In a tabular softmax every prompt has its own logits, so a constant baseline leaves the expected update
unchanged and several LLM claims can only come from sampling noise or from sharing. Each simulator claim
(rows: M5a/M5b PSR/NSR/W-REINFORCE entropy and pass@k at k = 1…256, M6 clip-higher / Clip-Cov / KL-Cov
controllability, M7 entropy-bonus sensitivity, M10 off-policy epochs, M11 the entropy–performance law and
its early prediction, M22 QAE's K sweep) is re-run, with its own seeds and paired comparisons, on every
policy class of ``sim.policies``: tabular, log-linear (random and structured features), low-rank, MLP and a
one-layer causal transformer over token-tree prefixes, all starting at the same prior.

Each class learns at its own speed at a given η, so the matrix is run twice: with the checks' own η for
every class ("same η"), and with each parametric class's η divided by its kernel gain ρ = ‖Jᵀg‖²/‖g‖² at
the start ("calibrated": every class's first step raises the objective as fast as the tabular one's;
``SimConfig.calibrate_lr``). Left: each cell's upper half is the same-η verdict, the lower half the
calibrated one, drawn as the legend says (findings in solid colours: green holds, amber approximate, red
fails; inconclusive hatched grey; light grey where the class does not fit the check's environment, e.g. the
transformer on a bandit), with the comparison that decides the verdict (the first failing part of a claim
that fails, the first undecided part of an inconclusive one): its estimate in the claim's unit and its 90%
interval over the paired runs (the column header gives their number). Right:
NSR − PSR pass@k against k (M5b) per class, calibrated (solid) and same η (dashed). ``python -m sim verify
--matrix [--calibrate-lr]`` prints either table; its JSON has one row per (claim, policy). The finding
states which claims change verdict with the class once speeds are matched.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from entrolab.common import parallel
from figures import _common as fc
from sim import matrix

TITLE = "Claims × policy class: which claims need shared parameters"
SLOW = True  # the two matrices take about 14 minutes on 2 CPUs: `make matrix`, or python -m figures 17
COLUMNS = ("eta", "claim_id", "policy", "verdict", "worst", "spread", "tolerance", "estimate", "lo", "hi", "unit",
           "n", "lr_gain_lo", "lr_gain_hi", "measured")  # fmt: skip
ETAS = ("same", "calibrated")
CACHE = (
    Path("runs") / "matrix"
)  # finished cells, reused on a rerun with the same code: an interrupted run resumes
QUICK_CLAIMS, QUICK_POLICIES = ("M5",), ("tabular", "loglinear-structured")
NAN = float("nan")


def _changes(rows: list[dict]) -> tuple[dict, dict]:
    """({claim: {policy: verdict}} for claims that hold on some classes that fit and fail on others, {claim:
    its verdicts on the classes that fit} for the others). Holds and approximate count as holding; an
    inconclusive or untestable cell is no change of verdict, only no verdict."""
    by_claim: dict[str, dict[str, str]] = {}
    for r in rows:
        by_claim.setdefault(r["claim_id"], {})[r["policy"]] = r["verdict"]

    def decided(v: dict) -> set:
        return {
            "holds" if x in (fc.HOLDS, fc.APPROX) else x
            for x in v.values()
            if x in (fc.HOLDS, fc.APPROX, fc.FAILS)
        }

    changes = {k: v for k, v in by_claim.items() if len(decided(v)) > 1}
    same = {
        k: "/".join(sorted({x for x in v.values() if x != "n/a"})) or "n/a"
        for k, v in by_claim.items()
        if k not in changes
    }
    return changes, same


def _say(changes: dict, same: dict) -> str:
    moved = "; ".join(f"{k} " + ", ".join(f"{p} {v}" for p, v in vs.items()) for k, vs in changes.items())
    return (
        f"holds on some classes and fails on others: {moved or 'none'}. No such change (the verdicts seen): "
        + (", ".join(f"{k} {v}" for k, v in same.items()) or "none")
    )


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    claims = QUICK_CLAIMS if quick else matrix.matrix_claims()
    labels = QUICK_POLICIES if quick else tuple(matrix.MATRIX_POLICIES)
    rows: list[dict] = []
    passk: dict[str, dict] = {}
    for eta in ETAS:
        cells = matrix.run_matrix(
            seed=seed, claims=claims, policy_labels=labels, calibrate_lr=eta == "calibrated",
            cache_dir=None if quick else CACHE, workers=1 if quick else parallel.default_workers(),
        )  # fmt: skip
        for c in cells:
            rows.append(
                {
                    "eta": eta,
                    "claim_id": c.claim_id,
                    "policy": c.policy,
                    "verdict": "n/a" if c.row is None else c.row.verdict,
                    "worst": NAN if c.row is None else float(c.row.worst),
                    "spread": NAN if c.row is None else float(c.row.spread),
                    "tolerance": NAN if c.row is None else float(c.row.tolerance),
                    **_first_test(c.row),
                    "lr_gain_lo": c.lr_gain[0] if c.lr_gain else NAN,
                    "lr_gain_hi": c.lr_gain[1] if c.lr_gain else NAN,
                    "measured": c.why if c.row is None else c.row.measured,
                }
            )
            if c.row is not None and c.claim_id == "M5b":
                d = c.row.details
                passk.setdefault(eta, {})[c.policy] = {
                    "k": d["pass_ks"],
                    "nsr_minus_psr": d["nsr_minus_psr_pass_at_k"],
                    "se": d["nsr_minus_psr_se"],
                }
    res = fc.Result(rows)
    found = {eta: _changes([r for r in rows if r["eta"] == eta]) for eta in ETAS}
    same_v = {(r["claim_id"], r["policy"]): r["verdict"] for r in rows if r["eta"] == "same"}
    flips = [
        f"{r['claim_id']}/{r['policy']} {same_v[r['claim_id'], r['policy']]} → {r['verdict']}"
        for r in rows
        if r["eta"] == "calibrated" and r["verdict"] != same_v[r["claim_id"], r["policy"]]
    ]
    gains = {}
    for p in labels:
        lo = res.col("lr_gain_lo", eta="calibrated", policy=p)
        hi = res.col("lr_gain_hi", eta="calibrated", policy=p)
        ok = np.isfinite(lo)
        gains[p] = (float(lo[ok].min()), float(hi[ok].max())) if ok.any() else (NAN, NAN)
    changed = found["calibrated"][0]
    res.meta = {
        "claim": "Issue 9's hypothesis: some of the tabular simulator's claim verdicts change when parameters are "
        "shared across prompts and tokens, with each class's step size calibrated to the tabular policy's "
        "initial objective gain so that speed is not the difference (holds when at least one claim row changes "
        "verdict across classes in the calibrated matrix)",
        "verdict": fc.HOLDS if changed else fc.FAILS,
        "finding": (
            "calibrated η: "
            + _say(*found["calibrated"])
            + ". Same η: "
            + _say(*found["same"])
            + f". Cells whose verdict calibration changes ({len(flips)}): "
            + ("; ".join(flips) or "none")
            + ". Kernel gain ρ by class (η divided by it): "
            + ", ".join(f"{p} {lo:.3g}–{hi:.3g}" for p, (lo, hi) in gains.items() if np.isfinite(lo))
        ),
        "claims": list(claims),
        "policies": list(labels),
        "passk": passk,
        "lr_gain": {p: list(v) for p, v in gains.items()},
    }
    return res


def _first_test(row) -> dict:
    """The estimate, 90% interval, unit and n of the comparison that decides a row's verdict (nan / "" / 0
    where it has none)."""
    t = None if row is None else fc.deciding_test(row.tests, row.verdict)
    if t is None:
        return {"estimate": NAN, "lo": NAN, "hi": NAN, "unit": "", "n": 0 if row is None else int(row.n)}
    num = {k: NAN if t.get(k) is None else float(t[k]) for k in ("estimate", "lo", "hi")}
    return {**num, "unit": t.get("unit") or "", "n": int(t["n"])}


def _cell_text(r: dict | None) -> str:
    if r is None or r["verdict"] == "n/a":
        return "—"
    test = {k: r.get(k) for k in ("estimate", "lo", "hi", "unit")}
    return f"{r['verdict']} {fc.interval_text(test, r['worst'], r['spread'])}"


def plot(res: fc.Result):
    claims = res.values("claim_id")
    labels = res.values("policy")
    fig, (ax, axk) = plt.subplots(
        1,
        2,
        figsize=(2.1 * len(labels) + 11, 0.8 * len(claims) + 3.0),
        gridspec_kw={"width_ratios": [3, 1.1]},
    )
    cells = {(r["eta"], r["claim_id"], r["policy"]): r for r in res.rows}
    shown = []
    for i, cid in enumerate(claims):
        for j, lab in enumerate(labels):
            for half, eta in enumerate(ETAS):
                r = cells.get((eta, cid, lab))
                verdict = None if r is None or r["verdict"] == "n/a" else r["verdict"]
                shown.append(verdict)
                fc.verdict_cell(ax, j, i + 0.5 * half, 1, 0.5, verdict, _cell_text(r), fontsize=5.5)
    ax.set_xlim(0, len(labels))
    ax.set_ylim(len(claims), 0)
    runs = {lab: sorted({int(r["n"]) for r in res.rows if r["policy"] == lab and r["n"]}) for lab in labels}
    ax.set_xticks(
        np.arange(len(labels)) + 0.5, [f"{lab}\n({_span(runs[lab])} runs)" for lab in labels], fontsize=7
    )
    ax.xaxis.tick_top()
    ax.set_yticks(
        np.arange(len(claims)) + 0.5, [f"{c}: {fc.CLAIM_WORDS.get(c, '')}" for c in claims], fontsize=7
    )
    ax.tick_params(length=0)
    ax.set_ylabel("claim (each cell: upper half same η, lower half calibrated η)", fontsize=8)
    fc.verdict_legend(fig, shown, ncol=3)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for eta, style in (("calibrated", "-"), ("same", "--")):
        for j, (lab, v) in enumerate(res.meta.get("passk", {}).get(eta, {}).items()):
            k, d, e = (np.asarray(v[x], dtype=float) for x in ("k", "nsr_minus_psr", "se"))
            col = colours[j % len(colours)]
            axk.plot(k, d, style, color=col, marker=".", label=lab if eta == "calibrated" else None)
            if eta == "calibrated":
                axk.fill_between(k, d - 2 * e, d + 2 * e, color=col, alpha=0.15, lw=0)
    axk.axhline(0, color="k", lw=0.6)
    axk.set_xscale("log", base=2)
    axk.set_xlabel("k")
    axk.set_ylabel("NSR − PSR pass@k (paired, ±2 se)")
    axk.set_title("M5b: solid calibrated η, dashed same η", fontsize=8)
    if axk.get_legend_handles_labels()[0]:
        axk.legend(fontsize=7)
    fig.suptitle(f"Figure 17: {TITLE}", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    return fig


def _span(ns: list[int]) -> str:
    return "—" if not ns else str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
