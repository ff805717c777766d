"""The cells of ``python -m llm.verify``: the model tiers, the arms the claims compare, and the ``Study`` that
trains each (arm, seed) cell once, caches it under a key of its settings and code, and keeps the compact
per-seed data a verdict reads (``--series``); ``SeriesStudy`` serves the same data from committed series.
The verdict rules are in ``llm.claims``, the command in ``llm.verify``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from entrolab.common.runio import atomic_write_json, code_fingerprint
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
    with its covariance probe (``llm`` minus the study's own modules, verify, claims and study, whose rules and
    bookkeeping do not change a run's numbers, and minus ``entrolab/common/verdict.py``, which only judges); ``sim/`` is
    no part of a cell."""
    here = Path(__file__).resolve().parent
    return code_fingerprint(
        *sorted(
            p
            for p in here.glob("*.py")
            if p.name not in ("verify.py", "claims.py", "study.py", "__main__.py")
        ),
        packages=("entrolab/common", "theory", "controllers"),
        leave_out=("entrolab/common/verdict.py",),
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


# -- the covariance probe's tail means (LM4 reads them) ------------------------------------------------

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
