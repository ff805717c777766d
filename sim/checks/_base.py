"""Shared pieces of the simulator's checks: the registry, the context a check runs under, and the helpers
that run the simulator in memory (``trajectory``), pair seeds and turn differences into verdicts."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from entrolab.common.verdict import (
    Registry,
    Row,
    combine,
    judge,
)
from entrolab.common.verdict import paired as _paired
from entrolab.common.verdict import se as _se  # noqa: F401  (re-exported)
from sim.run import SimConfig, Simulator
from sim.studies import CLIP_LR, TREE, tree_config

REGISTRY = Registry("sim verify")
"""The checks of ``python -m sim verify``, registered where they are defined. ``shared=True``: the check
runs on any policy class through its ``Context`` (the claims matrix may run it); ``matrix=True``: one of
the matrix's default claims. The registration order (sim/checks/__init__.py imports the modules in row
order) gives each check its child seed."""

check = REGISTRY.register


@dataclass
class Context:
    """What a check runs under, passed in explicitly (the claims matrix gives one per cell).

    policy, policy_kwargs: the policy class every simulator of the check uses (None: each config's own,
    tabular unless it says otherwise); calibrate_lr: ``SimConfig.calibrate_lr`` for every simulator.
    Filled in as the check runs: ``simulators`` (how many configs went through ``config``; a shared check
    that leaves it at 0 ignored its context) and ``gains`` (each simulator's kernel gain ρ).
    """

    policy: str | None = None
    policy_kwargs: dict = field(default_factory=dict)
    calibrate_lr: bool = False
    simulators: int = 0
    gains: list = field(default_factory=list)

    def config(self, cfg: SimConfig) -> SimConfig:
        """``cfg`` with this context's policy class and step-size rule."""
        self.simulators += 1
        if self.policy is None:
            return cfg
        return dataclasses.replace(
            cfg, policy=self.policy, policy_kwargs=dict(self.policy_kwargs), calibrate_lr=self.calibrate_lr
        )

    def trajectory(self, cfg: SimConfig, *args, **kw) -> dict:
        """``trajectory`` of ``cfg`` under this context."""
        return trajectory(self.config(cfg), *args, gains=self.gains, **kw)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def trajectory(
    cfg: SimConfig, keys=("entropy", "success"), batch_keys=(), warm: bool = False, probes=None, gains=None
) -> dict:
    """Run ``cfg`` in memory: {key: (steps, runs) array} for measurement keys and per-run batch metrics.
    ``probes``: {name: f(sim, state) -> (runs,) array}, read before each step (e.g. the probability of
    one arm); ``gains``: a list that receives the simulator's kernel gain. Controllers' UserWarnings (e.g. KL-Cov inert once every group of a run is solved) are
    silenced."""
    sim = Simulator(cfg)
    if gains is not None:
        gains.append(sim.lr_gain)
    s = sim.init_state()
    if warm:
        warm_start(sim, s)
    probes = probes or {}
    out: dict[str, list] = {k: [] for k in (*keys, *batch_keys, *probes)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(cfg.steps):
            for k, f in probes.items():
                out[k].append(np.asarray(f(sim, s), dtype=float))
            m = sim.step(s)
            for k in keys:
                out[k].append(m[k].detach().cpu().numpy().copy())
            for k in batch_keys:
                out[k].append([b.get(k, math.nan) for b in m["batch"]])
    res = {k: np.asarray(v, dtype=float) for k, v in out.items()}
    res["dead"] = sum(d is not None for d in s.dead)
    return res


def warm_start(sim: Simulator, s, rounds: int = 2) -> None:
    """Soft policy improvement (add 1 to the logit of each state's best visit-weighted Q), so that the
    toy-text MDPs' successes, and hence their gradients, are not vanishingly rare."""
    with torch.no_grad():
        for _ in range(rounds):
            q = sim.model.exact(s.z.detach()).q
            s.z.add_(torch.nn.functional.one_hot(q.argmax(-1), q.shape[-1]).to(s.z.dtype))


def _fmt(xs, f="{:.3f}") -> str:
    return ", ".join(f.format(x) for x in xs)


# -- the token tree and the paired comparisons shared by several checks -------------------------------------


def _tree_cfg(seed_env: int, seed: int, **kw) -> SimConfig:
    """``studies.tree_config`` with the checks' defaults: PPO, 4 epochs, 16 runs, 60 rollouts, η = 1."""
    return tree_config(
        seed_env, seed, **{"update": "ppo", "epochs": 4, "runs": 16, "steps": 60, "lr": 1.0, **kw}
    )


VS_BANDIT = {"n_prompts": 16, "n_arms": 32, "correct_frac": 0.2, "difficulty": "beta"}


def _versus(
    rng, ctx: Context, variants: dict, steps: int = 100, runs: int = 16, probes=None, **common
) -> dict:
    """Each variant {label: SimConfig kwargs} on a bandit and a token tree, paired seeds (same environment
    and sampling seed for every variant); {env: {label: trajectory}}. ``common``: SimConfig kwargs of
    every variant (e.g. a PPO update)."""
    out = {}
    for env, kw in (("bandit", VS_BANDIT), ("token_tree", TREE)):
        env_kw, seed = {**kw, "seed": _seed(rng)}, _seed(rng)
        base = {"env": env, "env_kwargs": env_kw, "update": "grpo", "runs": runs, "steps": steps, "lr": CLIP_LR,
                "group_size": 8, "seed": seed, "pass_k": (1,), **common}  # fmt: skip
        out[env] = {
            label: ctx.trajectory(SimConfig(**{**base, **v}), probes=probes) for label, v in variants.items()
        }
    return out


def _versus_row(
    rid, claim, source, res, method, baseline, key, note="", check=None, setting=None, sign=1
) -> Row:
    """Verdict: ``method`` − ``baseline`` of the final ``key`` (times ``sign``) is above zero on both
    environments (``judge``, paired over runs, combined), or ``check(diffs)`` when given."""
    parts, diffs, judged = [], {}, []
    for env, trajs in res.items():
        d, se = _paired(trajs[method][key][-1], trajs[baseline][key][-1])
        diffs[env] = (d, se)
        judged.append(judge(sign * (trajs[method][key][-1] - trajs[baseline][key][-1]),
                            what=f"{env}: {'' if sign > 0 else '−'}(final {key}, {method} − {baseline})"))  # fmt: skip
        h = {k: float(t["entropy"][-1].mean()) for k, t in trajs.items()}
        sc = {k: float(t["success"][-1].mean()) for k, t in trajs.items()}
        h0 = float(trajs[baseline]["entropy"][0].mean())
        parts.append(
            f"{env}: final {key} {method} − {baseline} {d:+.4f} ± {se:.4f}; H start {h0:.3f}, end "
            + ", ".join(f"{k} {v:.3f}" for k, v in h.items())
            + "; success "
            + ", ".join(f"{k} {v:.3f}" for k, v in sc.items())
        )
    verdict = check(diffs, judged) if check else combine(judged)
    worst_env = min(diffs, key=lambda e: sign * diffs[e][0])
    worst = sign * diffs[worst_env][0]
    return Row(
        id=rid,
        claim=claim,
        source=source,
        setting=setting
        or (
            "bandit 16×32 (Bernoulli, beta difficulty) and TokenTree 8 prompts V=4 T=4; on-policy sampled "
            f"steps, η={CLIP_LR:g}, G=8, 100 steps, 16 runs, paired seeds"
        ),
        n=16,
        measured="; ".join(parts)
        + (f". {note}" if note else "")
        + ". "
        + "; ".join(j.text() for j in judged),
        worst=worst,
        tolerance=0.0,
        verdict=verdict,
        tests=[j.as_dict() for j in judged],
        must_hold=False,
        details={env: {"diff": d, "se": se} for env, (d, se) in diffs.items()},
        spread=diffs[worst_env][1],
    )
