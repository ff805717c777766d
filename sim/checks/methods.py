"""Checks M13-M20: the methods of the seed documents against GRPO, on a bandit and a token tree (paired
seeds): the fork bonus, the diversity reward, step credit, LUFFY, the accuracy band, the curriculum,
VAPO, the importance-weighted reference KL."""

from __future__ import annotations

import numpy as np
import torch

from entrolab.common.verdict import Row
from sim import models
from sim.checks._base import (
    Context,
    _paired,
    _versus,
    _versus_row,
    check,
)

# -- M13-M20: the methods against GRPO ---------------------------------------------------------------------


@check("M13", shared=True)
def check_fork_bonus(rng, ctx: Context) -> Row:
    res = _versus(
        rng, ctx, {"grpo": {"controllers": ("grpo",)}, "fork_bonus": {"controllers": ("fork_bonus", "grpo")}}
    )
    ends = {
        env: float(t["fork_bonus"]["entropy"][-1].mean() - t["fork_bonus"]["entropy"][0].mean())
        for env, t in res.items()
    }
    note = (
        "fork_bonus's entropy end − start: " + ", ".join(f"{e} {v:+.3f}" for e, v in ends.items())
        + ". On a bandit all responses of a prompt share its one state, so the bonus is the same for every "
        "correct response of a group and std-normalised GRPO removes it exactly"
    )  # fmt: skip
    return _versus_row(
        "M13", "High-entropy-token reward shaping keeps entropy above GRPO's (the seed's V-shaped curve ends above its start)",
        "seed 000 (its own experiment); fork_bonus bonus 0.5, top-20% entropy tokens",
        res, "fork_bonus", "grpo", "entropy", note,
    )  # fmt: skip


@check("M14", shared=True)
def check_diversity_reward(rng, ctx: Context) -> Row:
    res = _versus(
        rng,
        ctx,
        {
            "grpo": {"controllers": ("grpo",)},
            "diversity_reward": {"controllers": ("diversity_reward", "grpo")},
        },
    )
    return _versus_row(
        "M14", "Diversity-aware reward (DRA) keeps entropy above GRPO's (more exploration)",
        "Chen et al. 2025, DRA-GRPO (arXiv 2505.09655); seed 000; n-gram embeddings, per-group SMI",
        res, "diversity_reward", "grpo", "entropy",
    )  # fmt: skip


@check("M15", shared=True)
def check_step_credit(rng, ctx: Context) -> Row:
    res = _versus(
        rng,
        ctx,
        {"grpo": {"controllers": ("grpo",)}, "step_credit": {"controllers": ("grpo", "step_credit")}},
    )
    return _versus_row(
        "M15", "Crediting the correct steps of negative samples learns faster than GRPO (higher final success)",
        "Yang et al. 2025, BCPG-NSA (arXiv 2505.14403); seeds 000, 002; exact step judge (bandit: the best arm)",
        res, "step_credit", "grpo", "success",
        "On this bandit the best arm pays 1 always, so no wrong response has a correct step and step_credit "
        "is GRPO exactly. On the tree the judge (the best leaf is still reachable) credits a wrong response's "
        "viable prefix whatever its success probability, so early tokens lose GRPO's discrimination",
    )  # fmt: skip


@check("M16", shared=True)
def check_luffy(rng, ctx: Context) -> list[Row]:
    res = _versus(rng, ctx,
        {
            "grpo": {"controllers": ("grpo", "ppo_clip")},
            "mix": {"controllers": ("grpo", "ppo_clip"), "guide": 1},
            "luffy": {"controllers": ("grpo", "luffy"), "guide": 1},
        },
    )  # fmt: skip
    src = "Yan et al. 2025, LUFFY (arXiv 2504.14945) §3-4; one optimal-policy row per group of 8, γ = 0.1"
    return [
        _versus_row("M16a", "Off-policy guidance (LUFFY) reaches higher success than on-policy GRPO", src, res, "luffy", "grpo", "success"),
        _versus_row(
            "M16b", "LUFFY's policy shaping keeps entropy above the unshaped mix (guide rows with the plain importance ratio)",
            src, res, "luffy", "mix", "entropy",
        ),
    ]  # fmt: skip


@check("M17", shared=True)
def check_acc_filter(rng, ctx: Context) -> list[Row]:
    res = _versus(rng, ctx,
        {
            "grpo": {"controllers": ("grpo",)},
            "acc_filter": {"controllers": ("acc_filter", "grpo")},
            "offline": {"controllers": ("grpo",), "offline_band": (0.1, 0.5)},
        },
    )  # fmt: skip
    src = "seed 000 (acc-filter; negative samples preserve entropy, Zhu et al. 2025)"
    return [
        _versus_row(
            "M17a", "Keeping only prompts with solve rate in [0.1, 0.5] (online, per group) keeps entropy above GRPO's",
            src, res, "acc_filter", "grpo", "entropy",
        ),
        _versus_row(
            "M17b", "The offline filter (base-policy solve rate in [0.1, 0.5], exact pre-pass) keeps entropy above GRPO's",
            src, res, "offline", "grpo", "entropy",
            "Entropy and success are over all prompts, trained or not: much of the gain is prompts outside the "
            "band that are never trained (see the offline run's success)",
        ),
    ]  # fmt: skip


@check("M18", shared=True)
def check_curriculum(rng, ctx: Context) -> Row:
    res = _versus(rng, ctx,
        {"grpo": {"controllers": ("grpo",)}, "curriculum": {"controllers": ("grpo",), "curriculum": "semantic_entropy"}},
    )  # fmt: skip
    return _versus_row(
        "M18", "A low-to-high semantic-entropy curriculum (two stages) ends with higher entropy than GRPO",
        "Cao et al. 2025, SENT (arXiv 2512.04359) data curriculum; SEED-GRPO's semantic entropy",
        res, "curriculum", "grpo", "entropy",
        "Each prompt is trained for half the steps under the curriculum, so its success is the fair companion number",
    )  # fmt: skip


@check("M19", shared=True)
def check_vapo(rng, ctx: Context) -> Row:
    res = _versus(rng, ctx,
        {"grpo": {"controllers": ("grpo",)}, "dr_grpo": {"controllers": ("dr_grpo",)}, "vapo": {"controllers": ("vapo",)}},
    )  # fmt: skip
    vs = {env: _paired(t["vapo"]["success"][-1], t["dr_grpo"]["success"][-1]) for env, t in res.items()}
    note = (
        "VAPO's advantages are not divided by the group's std; against Dr. GRPO (group mean, no std) the "
        "final success differs by " + ", ".join(f"{e} {d:+.4f} ± {se:.4f}" for e, (d, se) in vs.items())
    )
    return _versus_row(
        "M19", "A value baseline with length-adaptive GAE (VAPO) reaches higher success than value-free GRPO",
        "Yue et al. 2025, VAPO (arXiv 2504.05118); seed 002; tabular critic from the exact base values, lr 0.1",
        res, "vapo", "grpo", "success", note,
    )  # fmt: skip


def _kl_to_prior(sim, s) -> np.ndarray:
    """(runs,) exact visit-weighted KL(π ‖ π_ref) of each run's policy, π_ref the base policy, nats."""
    ex = sim.model.exact(s.z.detach())
    w = models.visit_weights(ex.reach)
    lp = torch.log_softmax(s.z.detach(), -1)
    return (w * (lp.exp() * (lp - sim.prior_logp)).sum(-1)).sum(-1).cpu().numpy()


@check("M20", shared=True)
def check_ref_kl_importance(rng, ctx: Context) -> Row:
    hp = {"beta": 1.0, "estimator": "k3"}
    res = _versus(rng, ctx,
        {
            "grpo": {"controllers": ("grpo", "ppo_clip")},
            "k3": {"controllers": ("grpo", "ppo_clip", "ref_kl"), "hyperparameters": {"ref_kl": hp}},
            "k3_importance": {
                "controllers": ("grpo", "ppo_clip", "ref_kl"),
                "hyperparameters": {"ref_kl": {**hp, "importance": True}},
            },
        },
        steps=60, probes={"kl": _kl_to_prior}, update="ppo", epochs=4,
    )  # fmt: skip
    kls = "; ".join(
        f"{env}: final KL(π‖π_ref) "
        + ", ".join(f"{k} {float(t['kl'][-1].mean()):.4f}" for k, t in trajs.items())
        for env, trajs in res.items()
    )
    return _versus_row(
        "M20", "With DeepSeek-V3.2's importance correction the K3 penalty holds KL(π‖π_ref) below plain K3's (same β, off-policy)",
        "DeepSeek-V3.2 (arXiv 2512.02556) unbiased KL estimate; seed 002; ref_kl β = 1, PPO 4 epochs",
        res, "k3_importance", "k3", "kl", kls, sign=-1,
        setting="bandit 16×32 and TokenTree 8 prompts V=4 T=4; PPO 4 epochs/rollout (off-policy), η=10, G=8, "
        "60 rollouts, 16 runs, paired seeds; exact visit-weighted KL to the base policy",
    )  # fmt: skip
