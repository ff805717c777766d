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
and SmolLM2-135M-Instruct (``docs/claims/llm_verify_<tier>.json``). Each row names the claim in words and its
paper; each column header gives its seeds (paired runs in the simulator). Each cell is the verdict, drawn as
the legend says (findings in solid colours: green holds, amber approximate, red fails; inconclusive hatched
grey, untestable here cross-hatched white), with the comparison that decides the verdict (the first failing
part of a claim that fails, the first undecided part of an inconclusive one): its estimate in the claim's
unit and its 90% interval; light grey with a dash where the claim was not run in that regime, and
the reason in the CSV. The finding lists the claims whose verdict differs between the tabular policy and
the tiny language model.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from figures import _common as fc

TITLE = "Claims across regimes: tabular, shared parameters, language models"
COLUMNS = ("claim_id", "regime", "verdict", "worst", "spread", "estimate", "lo", "hi", "unit", "n", "detail")
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
NAN = float("nan")
NUMS = ("estimate", "lo", "hi")


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return NAN
    return v if math.isfinite(v) else NAN


def _count(x) -> int:
    v = _num(x)
    return int(v) if np.isfinite(v) else 0


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
            **{k: _num(tab.get(k)) for k in NUMS},
            "unit": tab.get("unit") or "",
            "n": _count(tab.get("n")),
            "detail": "claims matrix, calibrated η",
        }
    ]
    shared = [r for r in mine if r["policy"] != "tabular"]
    verdict, count = majority([r["verdict"] for r in shared])
    out.append({
        "claim_id": cid, "regime": "shared parameters", "verdict": verdict, "worst": float(count),
        "spread": NAN, **dict.fromkeys(NUMS, NAN), "unit": "", "n": len(shared),
        "detail": (f"{count} of {len(shared)} classes: {verdict}" if verdict != fc.INCONCLUSIVE
                   else f"at most {count} of {len(shared)} classes agree") + " ("
        + ", ".join(f"{r['policy']} {r['verdict']}" for r in shared) + "); the cell takes a verdict that more than "
        "half of the classes share, else inconclusive",
    })  # fmt: skip
    return out


def majority(verdicts: list[str]) -> tuple[str, int]:
    """(the verdict more than half of ``verdicts`` share, with holds and approximate counted together as
    holding, and how many share it), or (inconclusive, the largest count)."""
    held = [v for v in verdicts if v in (fc.HOLDS, fc.APPROX)]
    groups = {
        fc.HOLDS: held,
        **{v: [x for x in verdicts if x == v] for v in (fc.FAILS, fc.INCONCLUSIVE, fc.UNTESTABLE)},
    }
    best = max(groups, key=lambda v: len(groups[v]))
    if 2 * len(groups[best]) <= len(verdicts):
        return fc.INCONCLUSIVE, len(groups[best])
    if best == fc.HOLDS:  # the commoner of holds / approximate among those that hold
        best = max((fc.HOLDS, fc.APPROX), key=lambda v: sum(x == v for x in held))
    return best, len(groups[fc.HOLDS if best == fc.APPROX else best])


def _missing(cid: str, regime: str, why: str) -> dict:
    return {"claim_id": cid, "regime": regime, "verdict": "n/a", "worst": NAN, "spread": NAN,
            **dict.fromkeys(NUMS, NAN), "unit": "", "n": 0, "detail": why}  # fmt: skip


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
        first = fc.deciding_test(r.get("tests", []), r["verdict"]) or {}
        out.append({"claim_id": cid, "regime": regime, "verdict": r["verdict"], "worst": _num(r["worst"]),
                    "spread": _num(r["spread"]), **{k: _num(first.get(k)) for k in NUMS},
                    "unit": first.get("unit") or "", "n": int(r["n"]), "detail": r["measured"]})  # fmt: skip
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
    held = (fc.HOLDS, fc.APPROX)
    differ = [  # a finding each way: holds in one regime, fails in the other
        f"{c} ({v[c, 'tabular']} → {v[c, 'tiny LM']})"
        for c in both
        if {v[c, "tabular"] in held, v[c, "tiny LM"] in held} == {True, False}
        and fc.FAILS in (v[c, "tabular"], v[c, "tiny LM"])
    ]
    undecided = [f"{c} ({v[c, 'tabular']} → {v[c, 'tiny LM']})" for c in both
                 if v[c, "tabular"] != v[c, "tiny LM"] and f"{c} ({v[c, 'tabular']} → {v[c, 'tiny LM']})" not in differ]  # fmt: skip
    res.meta = {
        "claim": "The verdicts of the training-dynamics claims change between the tabular simulator and a language "
        "model trained by the same controllers (holds when at least one claim run in both regimes holds in one and "
        "fails in the other)",
        "verdict": (fc.HOLDS if differ else fc.FAILS) if both else fc.FAILS,
        "finding": (
            f"{len(differ)} of {len(both)} claims run on both the tabular policy and the tiny language model hold in "
            "one and fail in the other: "
            + ("; ".join(differ) or "none")
            + ". Other differences, where one side decides nothing: "
            + ("; ".join(undecided) or "none")
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
        return f"{r['verdict']}\n{r['detail'].split(' (')[0]}"
    test = {k: r[k] for k in (*NUMS, "unit")}
    return f"{r['verdict']}\n{fc.interval_text(test, r['worst'], r['spread'])}"


def _header(regime: str, rows: list[dict]) -> str:
    ns = sorted({int(r["n"]) for r in rows if r["regime"] == regime and r["verdict"] != "n/a" and r["n"]})
    if regime == "shared parameters":
        return f"{regime}\n(classes that fit: {'–'.join(map(str, (ns[0], ns[-1]))) if ns else '—'})"
    unit = "runs" if regime == "tabular" else "seeds"
    span = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}" if ns else "—"
    return f"{regime}\n({span} {unit})"


def plot(res: fc.Result):
    claims, regimes = res.values("claim_id"), res.values("regime")
    fig, ax = plt.subplots(figsize=(2.0 * len(regimes) + 5.2, 0.55 * len(claims) + 2.6))
    cells = {(r["claim_id"], r["regime"]): r for r in res.rows}
    for i, cid in enumerate(claims):
        for j, reg in enumerate(regimes):
            r = cells[cid, reg]
            fc.verdict_cell(ax, j, i, 1, 1, None if r["verdict"] == "n/a" else r["verdict"], _cell_text(r))
    ax.set_xlim(0, len(regimes))
    ax.set_ylim(len(claims), 0)
    ax.set_xticks(np.arange(len(regimes)) + 0.5, [_header(g, res.rows) for g in regimes], fontsize=7.5)
    ax.xaxis.tick_top()
    ax.set_yticks(
        np.arange(len(claims)) + 0.5, [f"{c}: {fc.CLAIM_WORDS.get(c, '')}" for c in claims], fontsize=7
    )
    ax.tick_params(length=0)
    fc.verdict_legend(fig, [None if r["verdict"] == "n/a" else r["verdict"] for r in res.rows], ncol=3)
    fig.suptitle(f"Figure 18: {TITLE}", fontsize=11)
    fig.text(0.5, 0.075, "cell: verdict, then the comparison that decides it: estimate in its unit [90% interval]; "
             "shared parameters: how many classes share the verdict", ha="center", fontsize=7)  # fmt: skip
    fig.tight_layout(rect=(0, 0.1, 1, 0.96))
    return fig
