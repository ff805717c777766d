"""The claims of ``python -m llm.verify``: one rule per claim (``CLAIMS``), each reading a ``Study``'s cells
and judging them with ``entrolab.common.verdict.judge`` (docs/verdicts.md), as its paper states the claim."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

import theory
from entrolab.common.verdict import (
    ACTIVE_MIN_FRAC,
    CEILING_MARGIN,
    INERT_FRAC,
    LAW_TOL,
    NEAR_BASE_FRAC,
    PAPER,
    PASS_MARGIN,
    TRACK_FRAC,
    Registry,
    Row,
    combine,
    judge,
    law_word,
    sweep,
    sweep_verdict,
    untestable,
)
from llm.study import (
    PAPER_TABLE1,
    PI_ARMS,
    PI_TARGET_FRAC,
    TAIL_FRACS,
    TAIL_RATIO_MIN,
    TAIL_RATIO_NORMAL,
    Study,
    Tier,
    probe_tails,
)

# -- claims ----------------------------------------------------------------------------------------------

REGISTRY = Registry("llm.verify")
"""every claim's rule, registered where it is defined (``entrolab.common.verdict.Registry``, as the theory
and simulator checks are); ``CLAIMS`` is its table"""
claim = REGISTRY.register


STRESS = "stress (not the paper's setting; not in the verdict)"


def _row(
    rid, text, source, st: Study, seeds, measured, parts, details, *, paper=None, verdict=None, stress=()
) -> Row:
    """A claim's row: its verdict from ``parts`` (``combine``, or ``verdict`` when given), each part's and
    each stress comparison's text, the paper's number beside ours. ``worst`` / ``tolerance`` / ``spread``:
    the first part's estimate, bar and standard error."""
    first = parts[0]
    texts = [p.text() for p in parts] + [f"{STRESS}: {p.text()}" for p in stress]
    return Row(
        id=rid, claim=text, source=source, setting=f"{st.tier.setting}; {len(seeds)} paired seeds", n=len(seeds),
        measured=measured + (". " if measured else "") + "; ".join(texts), worst=first.estimate,
        tolerance=first.bar, verdict=verdict or combine(parts), must_hold=False, details=details,
        spread=first.se, tests=[p.as_dict() for p in parts] + [p.as_dict() | {"stress": True} for p in stress],
        paper=PAPER.get(rid, "") if paper is None else paper,
    )  # fmt: skip


def _fmt(xs, f="{:.3f}") -> str:
    return ", ".join(f.format(x) for x in xs)


def _large_ks(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if k >= max(2, n // 2)]


def _series(st: Study, arm: str, seeds, key: str) -> list[np.ndarray]:
    return [np.array(st.cell(arm, s)["series"].get(key, []), dtype=float) for s in seeds]


def _activity(st: Study, arm: str, seeds, key: str) -> tuple[int, int]:
    """(rollouts at which the per-rollout metric ``key`` of ``arm`` is not 0, rollouts), over every seed."""
    xs = [np.nan_to_num(x) for x in _series(st, arm, seeds, key)]
    return int(sum(int(np.sum(x != 0)) for x in xs)), int(sum(len(x) for x in xs))


def _idle(st: Study, arm: str, seeds, key: str) -> tuple[bool, str]:
    """(whether ``arm``'s controller acted at fewer than ``ACTIVE_MIN_FRAC`` of its rollouts, by ``key``; the
    count in words)."""
    on, n = _activity(st, arm, seeds, key)
    return on < ACTIVE_MIN_FRAC * max(n, 1), f"{on} of {n} rollouts"


@claim("M5")
def psr_nsr(st: Study, seeds) -> list[Row]:
    src = "Zhu et al. 2025, The Surprising Effectiveness of Negative Reinforcement (arXiv 2506.01347)"
    n = st.tier.base.eval_samples
    arms = ("grpo", "psr", "nsr", "w_reinforce")
    H = {a: st.ends(a, "eval/entropy", seeds) for a in arms}
    P = {a: np.array([[st.cell(a, s)["eval_last"][f"eval/pass@{k}"] for k in range(1, n + 1)] for s in seeds]) for a in arms}  # fmt: skip
    h0 = np.array([st.cell("grpo", s)["eval_first"]["eval/entropy"] for s in seeds])
    p0 = np.array(
        [[st.cell("grpo", s)["eval_first"][f"eval/pass@{k}"] for k in range(1, n + 1)] for s in seeds]
    )
    large = [k - 1 for k in _large_ks(n)]
    near = NEAR_BASE_FRAC * float(h0.mean())
    gap = judge(H["nsr"] - H["psr"], what="held-out H, NSR − PSR", unit="nats")
    keep = judge(
        H["nsr"] - h0,
        kind="equivalent",
        margin=near,
        unit="nats",
        what=f"NSR's held-out H − the base model's (near: within {NEAR_BASE_FRAC:.0%} of the base's)",
    )
    pk = [judge(P["nsr"][:, k - 1] - p0[:, k - 1], bar=-PASS_MARGIN, null=-PASS_MARGIN,
                what=f"NSR's pass@{k} − the base model's (keeps: above −{PASS_MARGIN:g})") for k in (1, n // 2, n)]  # fmt: skip
    text = f"held-out H start {h0.mean():.3f}; end " + "; ".join(f"{a} {H[a].mean():.3f}" for a in arms)
    pks = "; ".join(f"{a} {_fmt(P[a].mean(0)[[0, n // 2 - 1, n - 1]])}" for a in arms)
    details = {a: {"H_end": H[a].tolist(), "pass_at_k": P[a].mean(0).tolist()} for a in arms}
    details["base"] = {"H": h0.tolist(), "pass_at_k": p0.mean(0).tolist()}
    dl = judge(
        P["nsr"][:, large].mean(1) - P["psr"][:, large].mean(1),
        what=f"pass@k at k = {large[0] + 1}…{n}, NSR − PSR",
    )
    return [
        _row("M5a", "NSR keeps entropy near the base model's while PSR collapses it, and NSR keeps or improves "
             "pass@k over the whole spectrum", src, st, seeds, f"{text}; pass@k at k = 1, {n // 2}, {n}: base "
             f"{_fmt(p0.mean(0)[[0, n // 2 - 1, n - 1]])}; {pks}", [gap, keep, *pk], details),
        _row("M5b", f"NSR's pass@k beats PSR's at large k (mean over k = {_large_ks(n)[0]}…{n})", src, st, seeds,
             f"held-out pass@k at k = 1, {n // 2}, {n}: {pks}", [dl], details),
    ]  # fmt: skip


def _off_text(tier: Tier) -> str:
    off = dict(tier.off)
    e, m = off.get("epochs", 1), off.get("minibatches", 1)
    return f"off-policy: {e} epoch{'s' * (e > 1)} × {m} minibatch{'es' * (m > 1)} per rollout"


def _h(st, arm, seeds):
    return st.ends(arm, "eval/entropy", seeds)


@claim("M6a")
def clip_higher(st: Study, seeds) -> Row:
    off, hi, hi4 = (_h(st, a, seeds) for a in ("off", "clip_hi_0.28", "clip_hi_0.4"))
    main = judge(hi - off, what="held-out H, ε_high 0.28 − 0.2", unit="nats")
    stress = sweep([off, hi, hi4], ["0.2", "0.28", "0.4"], what="held-out H, ε_high", unit="nats")
    return _row(
        "M6a", "Clip-higher (ε_high 0.28 instead of 0.2) keeps entropy higher", "DAPO (arXiv 2503.14476) §3.1",
        st, seeds, f"held-out H by ε_high 0.2, 0.28, 0.4: {_fmt([off.mean(), hi.mean(), hi4.mean()])} nats; "
        f"{_off_text(st.tier)}", [main], {"values": [0.2, 0.28, 0.4], "H_end": [off.tolist(), hi.tolist(), hi4.tolist()]},
        stress=[stress[0]],
    )  # fmt: skip


@claim("M6b")
def clip_cov(st: Study, seeds) -> Row:
    arms = ("off", "clip_cov_paper", "clip_cov_0.03", "clip_cov_0.1")
    off, paper, c3, c10 = (_h(st, a, seeds) for a in arms)
    what = "held-out H, Clip-Cov (ratio 2e-4, bounds 500× and 2500× the batch's mean Cov) − GRPO"
    idle, count = _idle(st, "clip_cov_paper", seeds, "ctrl/clip_cov/frac_detached")
    if idle:
        main = untestable(what, f"at the paper's bounds a token was detached at {count} (fewer than "
                          f"{ACTIVE_MIN_FRAC:.0%}): this model's token covariances rarely reach 500× their batch mean")  # fmt: skip
    else:
        main = judge(paper - off, what=what, unit="nats")
    stress = sweep([off, c3, c10], ["0", "0.03", "0.1"], what="held-out H, Clip-Cov ratio (bounds 1, 5 absolute)",
                   unit="nats")  # fmt: skip
    return _row(
        "M6b", "Clip-Cov keeps entropy above GRPO's", "Cui et al. 2025 §4.3, Fig. 12 (arXiv 2505.22617)", st, seeds,
        f"held-out H: GRPO (PPO clip) {off.mean():.3f}, Clip-Cov at the paper's setting {paper.mean():.3f}, "
        f"ratio 0.03 {c3.mean():.3f}, 0.1 {c10.mean():.3f} nats; {_off_text(st.tier)}", [main],
        {arm: x.tolist() for arm, x in zip(arms, (off, paper, c3, c10), strict=True)}, stress=[stress[0]],
    )  # fmt: skip


@claim("M6c")
def kl_cov(st: Study, seeds) -> Row:
    b0, b01, b1, s1, s4 = (_h(st, a, seeds) for a in ("kl_cov_0", "kl_cov_paper_0.1", "kl_cov_paper_1", "kl_cov_1", "kl_cov_4"))  # fmt: skip
    main = sweep([b0, b01, b1], ["0", "0.1", "1"], what="held-out H, KL-Cov β (k = 2e-3)", unit="nats")
    stress = sweep([b0, s1, s4], ["0", "1", "4"], what="held-out H, KL-Cov β (k = 0.02)", unit="nats")
    return _row(
        "M6c", "KL-Cov raises entropy, more with a larger β", "Cui et al. 2025 §4.4, Fig. 12 (arXiv 2505.22617)",
        st, seeds, f"held-out H by β 0, 0.1, 1 at k = 2e-3: {_fmt([b0.mean(), b01.mean(), b1.mean()])}; by β 1, 4 at "
        f"k = 0.02: {_fmt([s1.mean(), s4.mean()])} nats (no PPO clip); {_off_text(st.tier)}", main,
        {"k2e-3": [b0.tolist(), b01.tolist(), b1.tolist()], "k0.02": [b0.tolist(), s1.tolist(), s4.tolist()]}, verdict=sweep_verdict(main), stress=[stress[0]],
    )  # fmt: skip


@claim("M7")
def entropy_bonus(st: Study, seeds) -> Row:
    coefs = (0.0, *st.tier.bonus_coefs)
    arms = ["grpo"] + [f"bonus_{c:g}" for c in coefs[1:]]
    ends = [_h(st, a, seeds) for a in arms]
    hs = [float(e.mean()) for e in ends]
    margin = INERT_FRAC * hs[0]
    small = [judge(e - ends[0], kind="equivalent", margin=margin, unit="nats",
                   what=f"coef {c:g} − none (nothing: within {INERT_FRAC:.0%} of none's H)")
             for c, e in zip(coefs[1:3], ends[1:3], strict=True)]  # fmt: skip
    big = judge(ends[-1] - ends[0], bar=margin, unit="nats", what=f"coef {coefs[-1]:g} − none (grows: by more than {INERT_FRAC:.0%})")  # fmt: skip
    grows = [c for c, h in zip(coefs, hs, strict=True) if h > (1 + INERT_FRAC) * hs[0]]
    return _row(
        "M7", "Entropy bonus: small coefficients change nothing, large ones make entropy grow",
        "Cui et al. 2025 §4.1, Fig. 9 (arXiv 2505.22617)", st, seeds,
        f"held-out H at the end by coef {_fmt(coefs, '{:g}')}: {_fmt(hs)} nats; {INERT_FRAC:.0%} above none from "
        f"coef {grows[0] if grows else 'none'}", [*small, big],
        {"coefs": list(coefs), "H_end": [e.tolist() for e in ends]},
    )  # fmt: skip


def _tracking(st: Study, arm: str, seeds) -> np.ndarray:
    """Per seed: the training-batch entropy minus the arm's target, mean over the last half of the rollouts."""
    out = []
    for s in seeds:
        h = np.array(st.cell(arm, s)["series"]["policy/entropy"], dtype=float)
        target = float(st._pi(s)[arm]["hp"][0].split("=")[1])
        out.append(float(np.mean(h[len(h) // 2 :] - target)))
    return np.array(out)


@claim("M8")
def pi_control(st: Study, seeds) -> Row:
    res = {arm: _tracking(st, arm, seeds) for arm in PI_ARMS}
    target = float(np.mean([float(st._pi(s)["entropic_pi"]["hp"][0].split("=")[1]) for s in seeds]))
    margin = TRACK_FRAC * target
    pi, p = res["entropic_pi"], res["entropic_p"]
    hold = judge(pi, kind="equivalent", margin=margin, unit="nats",
                 what=f"EntroPIC PI: entropy − target (holds: within {TRACK_FRAC:.0%} of the target)")  # fmt: skip
    offset = judge(np.abs(p) - np.abs(pi), unit="nats", what="|P-only's offset| − |PI's|")
    s_hold = judge(res["pi"], kind="equivalent", margin=margin, unit="nats", what="our pi_control of the bonus (kp 10, ki 1): entropy − target")  # fmt: skip
    s_off = judge(np.abs(res["p_only"]) - np.abs(res["pi"]), unit="nats", what="our pi_control: |P-only's offset| − |PI's|")  # fmt: skip
    alpha = np.concatenate(_series(st, "entropic_pi", seeds, "ctrl/entropic/alpha") or [np.array([])])
    sat = (
        f"; EntroPIC PI's α at its limit ±1 in {np.mean(np.abs(alpha) >= 1):.0%} of rollouts"
        if alpha.size
        else ""
    )
    return _row(
        "M8a", "PI control holds a target entropy off-policy; P-only control leaves a steady-state offset",
        "EntroPIC (arXiv 2511.15248) §4; controllers.extras.EntroPIC", st, seeds,
        f"training-batch entropy minus target ({PI_TARGET_FRAC:g} × the start's, {target:.3f} nats on average), mean "
        f"over the last half: EntroPIC PI (K_p 1, K_i 0.01) {pi.mean():+.4f}, P-only {p.mean():+.4f}; our bonus "
        f"pi_control PI {res['pi'].mean():+.4f}, P-only {res['p_only'].mean():+.4f}{sat}", [hold, offset],
        {k: v.tolist() for k, v in res.items()}, stress=[s_hold, s_off],
    )  # fmt: skip


@claim("M10")
def epochs(st: Study, seeds) -> Row:
    es = (1, 2, 4)
    ends = [_h(st, a, seeds) for a in ("grpo", "epochs_2", "epochs_4")]
    parts = sweep([-e for e in ends], [f"{e} epoch{'s' * (e > 1)}" for e in es], what="collapse (−held-out H),",
                  unit="nats")  # fmt: skip
    return _row(
        "M10", "More off-policy epochs per rollout collapse entropy faster", "Cui et al. 2025 §4 (arXiv 2505.22617)",
        st, seeds, "held-out H at the end: " + "; ".join(f"{e} epochs {h.mean():.3f}" for e, h in zip(es, ends, strict=True)),
        parts, {"epochs": list(es), "H_end": [e.tolist() for e in ends]}, verdict=sweep_verdict(parts),
    )  # fmt: skip


def _noise_floor(R: np.ndarray, n: int) -> float:
    """The RMSE a perfect law would still show against a batch mean of ``n`` binary rewards: the root mean
    of R(1 − R)/n over the run."""
    return float(np.sqrt(np.mean(np.clip(R * (1 - R), 0, None)) / n))


def _beyond(rmse: float, floor: float) -> float:
    return float(np.sqrt(max(rmse**2 - floor**2, 0.0)))


LAW_ALGOS = ("grpo", "rloo", "dr_grpo")


def _law_fits(st: Study, seeds, source: str) -> tuple[dict, dict, bool, int]:
    """Per algorithm, the per-seed law fits (a, b, ceiling, RMSE, 15%-prediction RMSE, noise floor, and the
    two RMSEs beyond that floor), their medians, whether every seed's R stays within twice its noise, and
    the samples behind each R. ``source`` "held-out": H and R are the held-out entropy and pass@1 at every
    evaluation of the ``<algo>_law`` arms (an evaluation every twentieth of the run); "batch": the training
    batch's entropy and mean reward at every rollout of the plain arms."""
    b = st.tier.base
    n = b.eval_prompts * b.eval_samples if source == "held-out" else b.prompts_per_step * b.group_size
    res, per, flat = {}, {}, True
    for algo in LAW_ALGOS:
        fits = []
        for s in seeds:
            if source == "held-out":
                ev = sorted(st.cell(f"{algo}_law", s)["evals"], key=lambda e: e["step"])
                H = np.array([e["eval/entropy"] for e in ev], float)
                R = np.array([e["eval/pass@1"] for e in ev], float)
            else:
                c = st.cell(algo, s)["series"]
                H, R = np.array(c["policy/entropy"], float), np.array(c["reward/mean"], float)
            floor = _noise_floor(R, n)
            flat &= float(np.ptp(R)) <= 2 * floor
            a_, b_ = theory.fit_entropy_law(H, R)
            rmse = float(np.sqrt(np.mean((theory.entropy_law_predict(H, a_, b_) - R) ** 2)))
            pred = theory.entropy_law_prediction(H, R, 0.15)
            fits.append((a_, b_, b_ - a_, rmse, pred.rmse_pred, floor, _beyond(rmse, floor),
                         _beyond(pred.rmse_pred, floor), len(H)))  # fmt: skip
        fa = np.asarray(fits)
        per[algo] = fa
        res[algo] = {k: float(np.median(fa[:, i])) for i, k in enumerate(
            ("a", "b", "ceiling", "rmse", "rmse_pred_15", "noise_floor", "rmse_beyond_noise", "rmse_pred_beyond_noise",
             "points"))}  # fmt: skip
    return res, per, flat, n


def _law_parts(per: dict, flat: bool, label: str, why: str) -> tuple[list, list, list]:
    """(fit, prediction, ceiling) comparisons of M11a/b/c from ``_law_fits``'s per-seed fits."""
    fit, pred, ceil = [], [], []
    for algo, fa in per.items():
        w_fit, w_pred = (
            f"{label}{algo}: fit RMSE beyond noise",
            f"{label}{algo}: prediction RMSE beyond noise",
        )
        if flat:
            fit.append(untestable(w_fit, why))
            pred.append(untestable(w_pred, why))
            continue
        fit.append(judge(fa[:, 6], kind="less", bar=LAW_TOL, null=LAW_TOL, test="t", what=w_fit))
        pred.append(judge(fa[:, 7], kind="less", bar=LAW_TOL, null=LAW_TOL, test="t", what=w_pred))
    for algo in LAW_ALGOS[1:]:
        w = f"{label}ceiling b − a, {algo} − grpo"
        ceil.append(untestable(w, why) if flat else judge(per[algo][:, 2] - per["grpo"][:, 2], kind="equivalent", margin=CEILING_MARGIN, what=w))  # fmt: skip
    return fit, pred, ceil


@claim("M11")
def law(st: Study, seeds) -> list[Row]:
    """The entropy–performance law on held-out accuracy (pass@1 against held-out entropy at every
    evaluation, as the paper fits validation accuracy), judged beyond the evaluation's sampling noise; the
    same on the training batch's reward is the stress comparison."""
    res, per, flat, n = _law_fits(st, seeds, "held-out")
    bres, bper, bflat, _ = _law_fits(st, seeds, "batch")
    why = "the accuracy never moves beyond twice its sampling noise, so any law fits it"
    fit, pred, ceil = _law_parts(per, flat, "", why)
    sfit, spred, sceil = _law_parts(bper, bflat, "training batch, ", why)
    src = "Cui et al. 2025 Eq. 6, §2.4-2.5, Figs. 3-6 (arXiv 2505.22617)"
    note = (f"; per seed on the held-out entropy and pass@1 at {int(res['grpo']['points'])} evaluations ({n} samples "
            "each), medians over seeds; the RMSE beyond noise is √(RMSE² − floor²), floor = √(mean R(1 − R)/n)")  # fmt: skip
    fits = "; ".join(f"{k}: a={v['a']:.3f} b={v['b']:.3f} RMSE {v['rmse']:.3f} (noise floor {v['noise_floor']:.3f})" for k, v in res.items())  # fmt: skip
    details = {"held_out": res, "training_batch": bres}
    return [
        _row("M11a", f"R = −a·e^H + b fits a training run (RMSE beyond the sampling noise < {LAW_TOL:g})", src, st,
             seeds, fits + note, fit, details, verdict=law_word(combine(fit)), stress=sfit),
        _row("M11b", f"A fit on the first 15% of the run predicts the rest (RMSE beyond noise < {LAW_TOL:g})", src,
             st, seeds, "; ".join(f"{k}: prediction RMSE {v['rmse_pred_15']:.3f}" for k, v in res.items()) + note,
             pred, details, verdict=law_word(combine(pred)), stress=spred),
        _row("M11c", f"a, b do not depend on the algorithm: GRPO, RLOO and Dr. GRPO reach the same ceiling b − a "
             f"(within {CEILING_MARGIN:g})", src, st, seeds,
             "ceiling b − a: " + ", ".join(f"{k} {v['ceiling']:.3f}" for k, v in res.items()) + note, ceil, details,
             verdict=law_word(combine(ceil)), stress=sceil),
    ]  # fmt: skip


@claim("M22")
def qae(st: Study, seeds) -> Row:
    ks = (0.2, 0.4, 0.6, 0.8)
    ends = [_h(st, f"qae_{k:g}", seeds) for k in ks]
    base = _h(st, "grpo", seeds)
    parts = sweep(ends, [f"K={k:g}" for k in ks], what="held-out H,", unit="nats")
    return _row(
        "M22", "QAE: entropy rises with the quantile K", "QAE (arXiv 2509.22611) §6, Fig. 9", st, seeds,
        f"held-out H at the end by K {_fmt(ks, '{:g}')}: {_fmt([e.mean() for e in ends])}; GRPO {base.mean():.3f} nats",
        parts, {"ks": list(ks), "H_end": [e.tolist() for e in ends], "grpo": base.tolist()},
        verdict=sweep_verdict(parts),
    )  # fmt: skip


def _share_by(x: np.ndarray, frac: float) -> float:
    """Share of the whole change of ``x`` (start → the mean of its last twelfth) already made at ``frac`` of
    the run (the mean of the three steps around it): 1 = all of it, 0 = none."""
    n = len(x)
    cut = max(1, round(frac * n))
    at = float(np.mean(x[max(0, cut - 1) : cut + 2]))
    end = float(np.mean(x[-max(1, n // 12) :]))
    return (at - x[0]) / (end - x[0]) if end != x[0] else math.nan


@claim("LM1")
def early(st: Study, seeds) -> Row:
    """Most of the entropy drop and of the reward gain happen in the first twelfth of training."""
    dh, dr = [], []
    for s in seeds:
        c = st.cell("grpo", s)["series"]
        dh.append(_share_by(np.array(c["policy/entropy"], float), 1 / 12))
        dr.append(_share_by(np.array(c["reward/mean"], float), 1 / 12))
    dh, dr = np.array(dh), np.array(dr)
    parts = []
    for x, w in ((dh, "entropy drop"), (dr, "reward gain")):
        what = f"share of the {w} made by the first twelfth (most: > 0.5)"
        if not np.isfinite(x).any():
            parts.append(
                untestable(what, f"the {w.split()[0]} ends where it starts in every seed: no change to share")
            )
        else:
            parts.append(judge(x, bar=0.5, null=0.5, test="t", what=what))
    return _row(
        "LM1", "Most of the entropy drop and of the reward gain happen in the first twelfth of training",
        "Cui et al. 2025 §2.2, Fig. 2 (arXiv 2505.22617)", st, seeds,
        "GRPO, training batch: the start against the mean of the last twelfth", parts,
        {"drop_frac": dh.tolist(), "gain_frac": dr.tolist()},
    )  # fmt: skip


@claim("LM2")
def covariance_tracks_dh(st: Study, seeds) -> Row:
    """The batch covariance predicts the sign and size of each step's realised entropy change."""
    out = {"pg": [], "npg": [], "sign_pg": [], "base_rate": []}
    for s in seeds:
        c = st.cell("grpo", s)["series"]
        real = np.array(c["policy/dH_realized"], float)
        for key, name in (("policy/dH_pred_pg_per_lr", "pg"), ("policy/dH_pred_npg_per_lr", "npg")):
            pred = np.array(c[key], float)
            ok = np.isfinite(pred) & np.isfinite(real)
            with np.errstate(invalid="ignore", divide="ignore"):  # a constant series: nan, caught below
                out[name].append(float(np.corrcoef(pred[ok], real[ok])[0, 1]) if ok.sum() > 1 else math.nan)
            if name == "pg":
                out["sign_pg"].append(float(np.mean(np.sign(pred[ok]) == np.sign(real[ok]))))
                down = float(np.mean(real[ok] < 0))
                out["base_rate"].append(max(down, 1 - down))
    pg, npg, sign, base = (np.array(out[k]) for k in ("pg", "npg", "sign_pg", "base_rate"))
    whats = ("corr over steps of −Cov(log π, π·A) with the realised ΔH",
             "sign agreement − a constant predictor's (the share of the majority sign)")  # fmt: skip
    if not np.isfinite(pg).any():
        why = "the predicted or the realised ΔH is constant in every seed (no advantage, so no update)"
        parts = [untestable(w, why) for w in whats]
    else:
        parts = [judge(pg, test="t", what=whats[0]), judge(sign - base, what=whats[1])]
    return _row(
        "LM2", "The batch covariance predicts each step's realised entropy change: positive correlation over "
        "steps, and its sign beats always guessing the common sign",
        "Cui et al. 2025 §3, Fig. 8 (arXiv 2505.22617)", st, seeds,
        f"GRPO, on-policy, realised ΔH of the batch after its update: corr(pred NPG, realised) {npg.mean():+.3f}; "
        f"sign agreement {sign.mean():.2f} against the base rate {base.mean():.2f}", parts, out,
    )  # fmt: skip


@claim("LM3")
def eighty_twenty(st: Study, seeds) -> Row:
    """Training on the top 20% highest-entropy tokens matches training on all tokens."""
    n = st.tier.base.eval_samples
    top = np.array([st.cell("top20", s)["eval_last"]["eval/pass@1"] for s in seeds])
    full = np.array([st.cell("grpo", s)["eval_last"]["eval/pass@1"] for s in seeds])
    start = np.array([st.cell("grpo", s)["eval_first"]["eval/pass@1"] for s in seeds])
    topn = np.array([st.cell("top20", s)["eval_last"][f"eval/pass@{n}"] for s in seeds])
    fulln = np.array([st.cell("grpo", s)["eval_last"][f"eval/pass@{n}"] for s in seeds])
    what = f"held-out pass@1, top 20% − all tokens (matches: above −{PASS_MARGIN:g})"
    learns = max(float((top - start).mean()), float((full - start).mean()))
    if learns <= PASS_MARGIN:
        main = untestable(
            what, f"neither arm learns: held-out pass@1 gains at most {learns:+.3f} over the start"
        )
    else:
        main = judge(top - full, bar=-PASS_MARGIN, null=-PASS_MARGIN, what=what)
    return _row(
        "LM3", "Training on the top 20% highest-entropy tokens matches training on all tokens (80/20)",
        "Wang et al. 2025, Beyond the 80/20 Rule (arXiv 2506.01939)", st, seeds,
        f"held-out pass@1 start {start.mean():.3f}, top-20% {top.mean():.3f}, all tokens {full.mean():.3f}; "
        f"pass@{n} top-20% {topn.mean():.3f}, all {fulln.mean():.3f}", [main],
        {"top20": top.tolist(), "all": full.tolist(), "start": start.tolist()},
    )  # fmt: skip


@claim("LM4")
def heavy_tail(st: Study, seeds) -> Row:
    """The token covariance is heavy-tailed: a small top share of tokens sits far above the rest."""
    groups, ratios, n_tok = [], [], []
    for s in seeds:
        g, n = probe_tails(st.probe(s))
        groups.append(g)
        ratios.append(g[2] / g[4] if g[4] > 0 else math.nan)
        n_tok.append(n)
    g, r = np.mean(groups, axis=0), np.array(ratios)
    labels = ("0.02%", "0.2%", "2%", "20%", "50%", "all")
    what = "top 2% / top 50% mean Cov (null: a normal distribution's 3.0×)"
    if not np.isfinite(r).any():
        part = untestable(what, "no token has a positive covariance in any seed (every advantage is zero: no group "
                          "has mixed rewards)")  # fmt: skip
    else:
        part = judge(r, bar=TAIL_RATIO_MIN, null=TAIL_RATIO_NORMAL, test="t", unit="×", what=what)
    return _row(
        "LM4", f"The token covariance is heavy-tailed: the top 2% of tokens' mean Cov(y_t) is far above the top 50%'s "
        f"(here: ≥ {TAIL_RATIO_MIN:g}×)", "Cui et al. 2025 Table 1 (arXiv 2505.22617)", st, seeds,
        "mean Cov(y_t) of the top share at the start weights, GRPO advantages (paper's Table 1 in brackets): "
        + "; ".join(f"{lab} {v:.4f} [{p:g}]" for lab, v, p in zip(labels, g, PAPER_TABLE1, strict=True))
        + (f"; top 0.02% / |all| {g[0] / abs(g[-1]):.0f}×" if g[-1] else "")
        + f"; {int(np.mean(n_tok))} tokens per seed from "
        f"{st.tier.probe_rollouts} batches", [part],
        {"fracs": list(TAIL_FRACS), "group_means": [list(x) for x in groups], "ratio": r.tolist(), "tokens": n_tok},
    )  # fmt: skip


def v_shape(h: np.ndarray) -> tuple[float, float, float]:
    """(start, bottom, end) of an entropy curve: its first value, the lowest mean of a window of a twelfth
    of the run, and the mean of the last twelfth."""
    w = max(1, len(h) // 12)
    smooth = np.convolve(h, np.ones(w) / w, mode="valid")
    return float(h[0]), float(smooth.min()), float(h[-w:].mean())


@claim("LM5")
def fork_v(st: Study, seeds) -> Row:
    """Seed 000: rewarding correct answers that contain a high-entropy token gives a V-shaped entropy curve
    that ends above its start. The verdict is on the seed's version (mode "any"); the graded variant (mode
    "share") is reported as a stress arm. Untestable where the bonus never splits a group's correct
    responses: a group-normalised advantage then cannot tell it from the correctness reward."""
    res = {}
    for arm in ("grpo", "fork_bonus", "fork_bonus_share"):
        sbe = np.array([v_shape(np.array(st.cell(arm, s)["series"]["policy/entropy"], float)) for s in seeds])
        res[arm] = {"start": sbe[:, 0], "bottom": sbe[:, 1], "end": sbe[:, 2]}
    f, b, sh = res["fork_bonus"], res["grpo"], res["fork_bonus_share"]
    whats = ("fork_bonus: start − bottom (the dip)", "fork_bonus: end − start (ends above its start)")
    idle, count = _idle(st, "fork_bonus", seeds, "ctrl/fork_bonus/frac_groups_split")
    if idle:
        why = (f"the bonus split a group's correct responses at {count} (fewer than {ACTIVE_MIN_FRAC:.0%}); "
               "elsewhere every correct response of a group got it or none did, and GRPO's per-group "
               "normalisation cancels a bonus shared by a whole group")  # fmt: skip
        parts = [untestable(w, why) for w in whats]
    else:
        parts = [judge(f["start"] - f["bottom"], what=whats[0], unit="nats"),
                 judge(f["end"] - f["start"], what=whats[1], unit="nats")]  # fmt: skip
    stress = [judge(sh["end"] - sh["start"], what="graded bonus (mode share): end − start", unit="nats")]

    def curve(d):
        return f"{d['start'].mean():.3f} → {d['bottom'].mean():.3f} → {d['end'].mean():.3f}"

    return _row(
        "LM5", "Seed 000: a reward for correct answers with a high-entropy token gives a V-shaped entropy curve "
        "that ends above its start",
        "seed 000's own experiment (the fork_bonus controller: +0.5 for a correct answer with a top-20%-entropy "
        "token)", st, seeds,
        f"training-batch entropy, start → bottom (a twelfth's window) → end (last twelfth): fork_bonus {curve(f)}, "
        f"GRPO {curve(b)}, graded {curve(sh)} nats", parts,
        {a: {k: v.tolist() for k, v in d.items()} for a, d in res.items()}, stress=stress,
    )  # fmt: skip


CLAIMS: dict[str, Callable] = REGISTRY.table()
"""{claim id: rule(study, seeds)}, in the table's order"""
