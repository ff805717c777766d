"""entrolab's controllers inside verl (tested with verl==0.9.1), as a plugin verl loads by itself.

entrolab's ``pyproject.toml`` declares this module under verl's ``verl.plugins`` entry point, so every
process that imports verl (the driver and every Ray worker) registers, with the pipeline named in the
environment variable ``ENTROLAB_PIPELINE`` (JSON: ``["grpo", ["clip_cov", {"frac": 0.0002}]]``):

- the advantage estimator ``entrolab`` (``algorithm.adv_estimator=entrolab``): the pipeline's sampling
  stage on the driver, over the whole batch, with verl's prompt ids (``uid``) as groups;
- the policy loss ``entrolab`` (``actor_rollout_ref.actor.policy_loss.loss_mode=entrolab``): the loss
  stage. A registered policy loss sees no entropies, so with that loss mode the plugin runs instead at
  the level of verl's ``ppo_loss`` (the ``loss_fn`` of its engine workers, which it wraps): the whole
  micro-batch with its entropies (``actor.calculate_entropy=True``), reference log-probs, rollout
  importance weights, verl's global batch sizes and its data-parallel group goes to
  ``controllers.policy_loss``. A caller that uses the policy loss directly (verl's distillation loss)
  gets a message instead.

What verl decides and the plugin cannot change (docs/engines.md, "verl"): verl calls the loss once per
micro-batch and back-propagates each at once, so selections (Clip-Cov, KL-Cov, 80/20) are per
micro-batch, gathered over the data-parallel ranks; the normalisation is verl's, over the global
mini-batch. Controllers that keep state between steps, read per-token values when shaping rewards, or
compare a prompt's responses inside the loss are refused: no verl hook carries state, gives an
advantage estimator log-probs, or gives the loss whole groups.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

import controllers as C
from llm.parallel import TorchGather

TESTED_VERL = "0.9.1"
ENV = "ENTROLAB_PIPELINE"
NAME = "entrolab"

_CACHE: dict[str, tuple[C.Pipeline, C.Pipeline, C.Pipeline]] = {}  # text → (whole, sampling, loss)


def parse_pipeline(text: str) -> C.Pipeline:
    """A pipeline from JSON: a list of controller names or [name, {hyperparameters}] pairs."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f'{ENV}: got {text!r}; allowed: JSON, e.g. ["grpo", ["clip_cov", {{"frac": 0.0002}}]] ({e})'
        ) from None
    if not isinstance(spec, list) or not spec:
        raise ValueError(f"{ENV}: got {text!r}; allowed: a non-empty JSON list of controllers")
    ctrls = []
    for item in spec:
        if isinstance(item, str):
            ctrls.append(C.get(item))
        elif (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], dict)
        ):
            ctrls.append(C.get(item[0], **item[1]))
        else:
            raise ValueError(f"{ENV}: item {item!r}; allowed: a name or [name, {{hyperparameters}}]")
    return C.Pipeline(ctrls)


def pipeline() -> C.Pipeline:
    """The pipeline of ``ENTROLAB_PIPELINE``, checked against what verl can feed it."""
    return _checked()[0]


def _stages() -> tuple[C.Pipeline, C.Pipeline]:
    """(sampling, loss) of ``pipeline()``, split once per pipeline text."""
    return _checked()[1:]


def _checked() -> tuple[C.Pipeline, C.Pipeline, C.Pipeline]:
    text = os.environ.get(ENV)
    if not text:
        raise ValueError(
            f'{ENV}: not set; allowed: a JSON list of controllers, e.g. \'["grpo", "ppo_clip"]\''
        )
    if text not in _CACHE:
        pipe = parse_pipeline(text)
        C.contract.check(pipe, verl_host())
        _CACHE[text] = (pipe, *pipe.split())  # split() refuses an order that splitting would change
    return _CACHE[text]


def verl_host() -> C.Host:
    """What the plugin can feed a pipeline inside verl (``controllers.contract.Host``)."""
    no_tokens = "verl hands an advantage estimator the rewards, the response mask and the prompt ids only"
    return C.Host(
        name="verl (entrolab plugin)",
        provides=frozenset({"reward", "length", "ref_logp", "is_weight"}),
        cannot={
            "entropy_topp": "verl's engines return log-probs and entropies, never the logits",
            "answer": "verl's reward functions return scores, not normalised answers",
            "step_correct": "verl has no judge of reasoning steps",
            "guide": "verl samples from the policy only",
            "embedding": "verl's advantage estimators do not see the responses",
            "value": "the plugin's stages receive no critic values",
        },
        loss_groups="verl calls the loss on micro-batches of a shuffled mini-batch",
        sampling_lacks={"logp": no_tokens, "old_logp": no_tokens, "entropy": no_tokens},
        stateless="no verl hook steps controller state per optimizer step or keeps it in checkpoints",
    )


def pipeline_from_verl_config(config, loss_mode: str | None = None) -> C.Pipeline:
    """verl's own actor loss (``ppo_loss`` with ``vanilla``, ``clip_cov`` or ``kl_cov``, its entropy
    bonus and KL loss) as an entrolab loss stage, for the parity tests and for users moving a verl
    configuration to the plugin. Deviations, stated: entrolab selects ⌈frac·N⌉ tokens (verl:
    max(⌊frac·N⌋, 1)); verl clamps the log-ratio to ±20 in vanilla and the k3 estimate to ±10."""
    mode = loss_mode or config.policy_loss.get("loss_mode", "vanilla")
    eps = config.clip_ratio
    lo = eps if config.clip_ratio_low is None else config.clip_ratio_low
    hi = eps if config.clip_ratio_high is None else config.clip_ratio_high
    agg = config.loss_agg_mode
    ctrls: list[C.Controller] = []
    if mode == "vanilla":
        ctrls.append(
            C.get("ppo_clip", eps_lo=lo, eps_hi=hi, dual_clip=float(config.get("clip_ratio_c", 3.0)))
        )
    elif mode == "clip_cov":
        pl = config.policy_loss
        ctrls += [C.get("ppo_clip", eps_lo=lo, eps_hi=hi),
                  C.get("clip_cov", frac=pl.clip_cov_ratio, lb=pl.clip_cov_lb, ub=pl.clip_cov_ub)]  # fmt: skip
    elif mode == "kl_cov":
        pl = config.policy_loss
        ctrls.append(C.get("kl_cov", frac=pl.kl_cov_ratio, beta=pl.ppo_kl_coef))
    else:
        raise ValueError(f"loss_mode: got {mode!r}; allowed: vanilla, clip_cov, kl_cov")
    if config.entropy_coeff:
        ctrls.append(C.get("entropy_bonus", coef=float(config.entropy_coeff), agg=agg))
    if config.use_kl_loss:
        est = {"low_var_kl": "k3", "k3": "k3", "kl": "k1", "k1": "k1", "mse": "k2", "k2": "k2"}
        if config.kl_loss_type not in est:
            raise ValueError(f"kl_loss_type: got {config.kl_loss_type!r}; allowed: {', '.join(est)}")
        ctrls.append(C.get("ref_kl", beta=float(config.kl_loss_coef), estimator=est[config.kl_loss_type]))
    return C.Pipeline(ctrls)


def check_actor_config(config, pipe: C.Pipeline) -> None:
    """verl options that the entrolab loss would silently drop must be neutral."""
    if config.entropy_coeff:
        raise ValueError(
            f"actor.entropy_coeff: got {config.entropy_coeff}, which loss_mode=entrolab would silently drop; "
            "allowed: 0 (put entropy_bonus(coef=..., agg=...) in the pipeline)"
        )
    if config.use_kl_loss and "ref_logp" not in pipe.needs():
        raise ValueError(
            "actor.use_kl_loss: got True, but no controller of the pipeline reads reference log-probs, so "
            "verl's KL loss would be silently dropped; allowed: False, or ref_kl(beta=...) in the pipeline"
        )
    if "ref_logp" in pipe.needs() and not config.use_kl_loss:
        raise ValueError(
            "actor.use_kl_loss: got False, but the pipeline reads reference log-probs, which verl computes "
            "only with use_kl_loss=True; allowed: True (the coefficient is ref_kl's, kl_loss_coef is unused)"
        )


# -- the sampling stage: an advantage estimator on the driver -------------------------------------------


def entrolab_advantage(token_level_rewards, response_mask, index=None, config=None, **kwargs):
    """verl advantage estimator: the pipeline's sampling stage over the whole batch. Returns
    (advantages, returns), both (B, T), as verl's GRPO does."""
    sampling, _ = _stages()
    mask = response_mask.to(torch.float32)
    reward = token_level_rewards.to(torch.float32).sum(-1)
    if index is None:
        raise ValueError("index: None; allowed: verl's prompt ids (uid), which group the responses")
    _, inverse = np.unique(np.asarray(index, dtype=object).astype(str), return_inverse=True)
    group = torch.as_tensor(inverse, dtype=torch.long, device=mask.device)
    zeros = torch.zeros_like(mask)
    batch = C.TokenBatch(
        logp=zeros, old_logp=zeros, adv=zeros, entropy=zeros, mask=mask, group=group, reward=reward,
        length=mask.sum(-1),
    )  # fmt: skip
    adv = sampling.advantages(batch, sampling.init())
    return adv, adv


# -- the loss stage: verl's loss_fn ----------------------------------------------------------------------


def _scalar(v):
    if v is None:
        return None
    if hasattr(v, "data") and not isinstance(v, torch.Tensor):  # tensordict's NonTensorData
        v = v.data
    return float(v) if isinstance(v, torch.Tensor | int | float | np.number) else v


def entrolab_loss(config, model_output, data, dp_group=None):
    """Drop-in for verl's ``ppo_loss(config, model_output, data, dp_group)``: the pipeline's loss stage
    on this micro-batch, normalised as verl normalises (over the global mini-batch, × dp size)."""
    from verl.utils import tensordict_utils as tu
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.padding import no_padding_2_padding

    _, loss_pipe = _stages()
    check_actor_config(config, pipeline())
    entropy = model_output.get("entropy", None)
    if entropy is None:
        raise ValueError(
            "actor.calculate_entropy: got False; allowed: True (loss_mode=entrolab reads the entropies)"
        )
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    entropy = no_padding_2_padding(entropy, data)
    dp_size = int(_scalar(tu.get(data, "dp_size", 1)) or 1)
    n_tokens = _scalar(tu.get(data, "batch_num_tokens", None))
    n_seqs = _scalar(tu.get(data, "global_batch_size", None))
    fields = ["response_mask", "old_log_probs", "advantages"]
    fields += [k for k in ("rollout_is_weights", "ref_log_prob") if k in data]
    d = data.select(*fields).to_padded_tensor()
    mask = d["response_mask"].to(log_prob.dtype)
    opt = {}
    if "ref_log_prob" in d:
        opt["ref_logp"] = d["ref_log_prob"].to(log_prob.dtype)
    if "rollout_is_weights" in d:
        opt["is_weight"] = d["rollout_is_weights"].to(log_prob.dtype) * mask
    batch = C.TokenBatch(
        logp=log_prob, old_logp=d["old_log_probs"].to(log_prob.dtype), adv=d["advantages"].to(log_prob.dtype) * mask,
        entropy=entropy.to(log_prob.dtype), mask=mask, length=mask.sum(-1), **opt,
    )  # fmt: skip
    agg = config.loss_agg_mode
    hook = TorchGather(dp_group) if dp_size > 1 else C.dist.Gather()
    with C.dist.using(hook):
        loss, metrics = C.policy_loss(
            batch, loss_pipe, loss_pipe.init(), agg=agg, norm_len=config.loss_scale_factor,
        )  # fmt: skip
    if agg == "token-mean":
        local, total = mask.sum(), n_tokens
    else:
        local, total = (mask.sum(-1) > 0).sum().to(mask.dtype), n_seqs
    if total is not None:
        loss = loss * local / max(float(total), 1.0) * dp_size
    out = {k: Metric(value=v, aggregation=AggregationType.MEAN) for k, v in metrics.items()}
    return loss, out


def entrolab_policy_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                         config=None, rollout_is_weights=None):  # fmt: skip
    """The registered policy loss ``entrolab``: the name verl's config selects. The loss itself runs at
    the level of ``ppo_loss``; a caller that reaches a policy loss directly (verl's distillation loss
    does) gives it no entropies, so it stops with a message."""
    raise ValueError(
        "actor_rollout_ref.actor.policy_loss.loss_mode: 'entrolab' runs at verl's loss_fn level (ppo_loss), "
        "and this caller uses the policy loss directly, without entropies; allowed: loss_mode=entrolab "
        "without distillation"
    )


def _wrap_ppo_loss(module) -> None:
    """Route verl's ``ppo_loss`` to ``entrolab_loss`` when ``policy_loss.loss_mode`` is ``entrolab``."""
    original = module.ppo_loss
    if getattr(original, "_entrolab", False):
        return

    def ppo_loss(config, model_output, data, dp_group=None):
        if config.policy_loss.get("loss_mode", "vanilla") == NAME:
            return entrolab_loss(config, model_output, data, dp_group)
        return original(config, model_output, data, dp_group)

    ppo_loss._entrolab = True
    ppo_loss.__wrapped__ = original
    module.ppo_loss = ppo_loss


def register() -> None:
    """Register the estimator and the policy loss, and wrap ``ppo_loss`` (idempotent)."""
    from verl.trainer.ppo import core_algos
    from verl.workers.utils import losses

    if core_algos.ADV_ESTIMATOR_REGISTRY.get(NAME) is not entrolab_advantage:
        core_algos.register_adv_est(NAME)(entrolab_advantage)
    core_algos.register_policy_loss(NAME)(entrolab_policy_loss)
    _wrap_ppo_loss(losses)
    workers = sys.modules.get("verl.workers.engine_workers")  # imported before the plugin: rebind there too
    if workers is not None and getattr(workers, "ppo_loss", None) is losses.ppo_loss.__wrapped__:
        workers.ppo_loss = losses.ppo_loss


register()
