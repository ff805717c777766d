"""The claims across regimes: which training-dynamics claims survive from the toy simulator to language models.

Rows: the claims of ``python -m sim verify`` that concern training dynamics (M5a/M5b NSR vs PSR entropy and
pass@k, M6a-c clip-higher, Clip-Cov and KL-Cov, M7 the entropy bonus, M8a PI control, M10 off-policy epochs,
M11a-c the entropy–performance law, M22 QAE's K) and the language-model claims LM1 (most of the entropy drop
and reward gain in the first twelfth of training), LM2 (the batch covariance predicts each step's realised
entropy change), LM3 (training on the top 20% highest-entropy tokens matches training on all tokens), LM4
(the token covariance is heavy-tailed) and LM5 (seed 000: a reward for correct answers with a high-entropy
token gives a V-shaped entropy curve that ends above its start).
Columns, each from committed data: the tabular softmax and the five classes with shared parameters of the
claims matrix (figure 17's CSV, calibrated step size: the cell gives how many of the classes that fit the
check's environment hold, and holds only if more than half of them do), then the language models of ``python -m llm.verify``: the tiny character Llama
and SmolLM2-135M-Instruct (``docs/claims/llm_verify_<tier>.json``). Each cell is the verdict (green holds,
amber approximate, red fails) with the measured number ± its standard error; grey with a dash where the
claim was not run in that regime, and the reason in the CSV. The finding lists the claims whose verdict
differs between the tabular policy and the tiny language model.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from figures import _common as fc

TITLE = "Claims across regimes: tabular, shared parameters, language models"
COLUMNS = ("claim_id", "regime", "verdict", "worst", "spread", "detail")
ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "docs" / "figures" / "fig17_claims_matrix.csv"
LLM = {"tiny LM": ROOT / "docs" / "claims" / "llm_verify_tiny.json",
       "SmolLM2-135M": ROOT / "docs" / "claims" / "llm_verify_smollm2.json"}  # fmt: skip
INPUTS = (MATRIX, *LLM.values())
"""the committed data this figure reads (``python -m figures`` remakes it when one of them changes)"""
REGIMES = ("tabular", "shared parameters", *LLM)
CLAIMS = (
    "M5a",
    "M5b",
    "M6a",
    "M6b",
    "M6c",
    "M7",
    "M8a",
    "M10",
    "M11a",
    "M11b",
    "M11c",
    "M22",
    "LM1",
    "LM2",
    "LM3",
    "LM4",
    "LM5",
)
SIM_ONLY_ELSEWHERE = {
    "M8a": "not in the claims matrix (sim verify runs it on the token tree; figure 12)",
    "LM1": "a language-model claim (figure 5 times the collapse on the simulator)",
    "LM2": "a language-model claim (figures 1-3 check the covariance identity exactly)",
    "LM3": "a language-model claim (figure 13 checks the 80/20 mask on the simulator)",
    "LM4": "a language-model claim (figure 9 measures the token covariance's tail on the token tree)",
    "LM5": "a language-model claim (seed 000's experiment; not run on the simulator)",
}
COLOURS = {
    fc.HOLDS: "#4caf50",
    fc.APPROX: "#ffb300",
    fc.FAILS: "#e53935",
    fc.SURROGATE: "#8e24aa",
    None: "#bdbdbd",
}
NAN = float("nan")


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return NAN
    return v if math.isfinite(v) else NAN


def _matrix_rows() -> list[dict]:
    with MATRIX.open() as fh:
        return [r for r in csv.DictReader(fh) if r["eta"] == "calibrated"]


def _tabular_and_shared(cid: str, rows: list[dict]) -> list[dict]:
    mine = [r for r in rows if r["claim_id"] == cid and r["verdict"] != "n/a"]
    if not mine:
        why = SIM_ONLY_ELSEWHERE.get(cid, "not in the claims matrix")
        return [_missing(cid, "tabular", why), _missing(cid, "shared parameters", why)]
    tab = next((r for r in mine if r["policy"] == "tabular"), None)
    out = [
        _missing(cid, "tabular", "the tabular class does not fit this check")
        if tab is None
        else {
            "claim_id": cid,
            "regime": "tabular",
            "verdict": tab["verdict"],
            "worst": _num(tab["worst"]),
            "spread": _num(tab["spread"]),
            "detail": "claims matrix, calibrated η",
        }
    ]
    shared = [r for r in mine if r["policy"] != "tabular"]
    held = [r for r in shared if r["verdict"] in (fc.HOLDS, fc.APPROX)]
    if 2 * len(held) > len(shared):  # most classes hold: the commoner of holds / approximate among them
        verdict = max((fc.HOLDS, fc.APPROX), key=lambda v: sum(r["verdict"] == v for r in held))
    else:  # half or fewer
        verdict = fc.FAILS
    out.append({
        "claim_id": cid, "regime": "shared parameters", "verdict": verdict, "worst": float(len(held)),
        "spread": NAN, "detail": f"{len(held)} of {len(shared)} classes hold ("
        + ", ".join(f"{r['policy']} {r['verdict']}" for r in shared) + "); the cell holds only if more than half do",
    })  # fmt: skip
    return out


def _missing(cid: str, regime: str, why: str) -> dict:
    return {"claim_id": cid, "regime": regime, "verdict": "n/a", "worst": NAN, "spread": NAN, "detail": why}


def _llm_rows(regime: str, path: Path) -> list[dict]:
    if not path.is_file():
        why = f"not run yet: {path.relative_to(ROOT)} is not committed (make llm-claims)"
        return [_missing(c, regime, why) for c in CLAIMS]
    table = json.loads(path.read_text())
    got = {r["id"]: r for r in table["rows"]}
    out = []
    for cid in CLAIMS:
        r = got.get(cid)
        if r is None:
            out.append(_missing(cid, regime, f"not among this tier's claims ({path.name})"))
            continue
        out.append({"claim_id": cid, "regime": regime, "verdict": r["verdict"], "worst": _num(r["worst"]),
                    "spread": _num(r["spread"]), "detail": r["measured"]})  # fmt: skip
    return out


def compute(quick: bool = False, seed: int = 0) -> fc.Result:
    """Reads committed data only, so quick and full are the same figure."""
    matrix = _matrix_rows()
    rows: list[dict] = []
    for cid in CLAIMS:
        rows += _tabular_and_shared(cid, matrix)
    for regime, path in LLM.items():
        rows += _llm_rows(regime, path)
    res = fc.Result(rows)
    v = {(r["claim_id"], r["regime"]): r["verdict"] for r in rows}
    both = [c for c in CLAIMS if v[c, "tabular"] != "n/a" and v[c, "tiny LM"] != "n/a"]
    differ = [
        f"{c} ({v[c, 'tabular']} → {v[c, 'tiny LM']})" for c in both if v[c, "tabular"] != v[c, "tiny LM"]
    ]
    res.meta = {
        "claim": "The verdicts of the training-dynamics claims change between the tabular simulator and a language "
        "model trained by the same controllers (holds when at least one claim run in both regimes changes verdict)",
        "verdict": (fc.HOLDS if differ else fc.FAILS) if both else fc.FAILS,
        "finding": (
            f"{len(differ)} of {len(both)} claims run on both the tabular policy and the tiny language model change "
            "verdict: "
            + ("; ".join(differ) or "none")
            + ". Held on the tiny language model: "
            + (", ".join(c for c in CLAIMS if v[c, "tiny LM"] in (fc.HOLDS, fc.APPROX)) or "none")
            + ". SmolLM2: "
            + (
                ", ".join(f"{c} {v[c, 'SmolLM2-135M']}" for c in CLAIMS if v[c, "SmolLM2-135M"] != "n/a")
                or "not run"
            )
        ),
        "inputs": [str(p.relative_to(ROOT)) for p in INPUTS if p.is_file()],
    }
    return res


def _cell_text(r: dict) -> str:
    if r["verdict"] == "n/a":
        return "—"
    if r["regime"] == "shared parameters":
        return f"{r['verdict'][:6]} {r['detail'].split(' (')[0].replace(' classes hold', '')}"
    sp = f"±{r['spread']:.1g}" if np.isfinite(r["spread"]) else ""
    return f"{r['verdict'][:6]} {r['worst']:+.3g}{sp}" if np.isfinite(r["worst"]) else r["verdict"][:6]


def plot(res: fc.Result):
    claims, regimes = res.values("claim_id"), res.values("regime")
    fig, ax = plt.subplots(figsize=(2.1 * len(regimes) + 1.5, 0.42 * len(claims) + 1.6))
    cells = {(r["claim_id"], r["regime"]): r for r in res.rows}
    for i, cid in enumerate(claims):
        for j, reg in enumerate(regimes):
            r = cells[cid, reg]
            colour = COLOURS.get(None if r["verdict"] == "n/a" else r["verdict"])
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", lw=0.8))
            ax.text(j + 0.5, i + 0.5, _cell_text(r), ha="center", va="center", fontsize=7)
    ax.set_xlim(0, len(regimes))
    ax.set_ylim(len(claims), 0)
    ax.set_xticks(np.arange(len(regimes)) + 0.5, regimes, fontsize=8)
    ax.set_yticks(np.arange(len(claims)) + 0.5, claims, fontsize=8)
    ax.set_xlabel("regime (shared parameters: classes holding of those that fit)")
    fc.title(fig, 18, TITLE)
    return fig
