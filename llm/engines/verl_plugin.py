"""entrolab's controllers inside verl (tested with verl==0.9.1), as a plugin verl loads by itself.

entrolab's ``pyproject.toml`` declares ``llm.engines.verl_entry`` (this module, then the trainer mode)
under verl's ``verl.plugins`` entry point, so every process that imports verl (the driver and every Ray
worker) registers, with the pipeline named in the environment variable ``ENTROLAB_PIPELINE`` (a spec, as every
entrolab command line writes it: ``grpo clip_cov frac=0.0002``; or JSON: ``["grpo", ["clip_cov", {"frac": 0.0002}]]``):

- the advantage estimator ``entrolab`` (``algorithm.adv_estimator=entrolab``): the pipeline's sampling
  stage on the driver, over the whole batch, with verl's prompt ids (``uid``) as groups;
- the policy loss ``entrolab`` (``actor_rollout_ref.actor.policy_loss.loss_mode=entrolab``): the loss
  stage. A registered policy loss sees no entropies, so with that loss mode the plugin runs instead at
  the level of verl's ``ppo_loss`` (the ``loss_fn`` of its engine workers, which it wraps): the whole
  micro-batch with its entropies (``actor.calculate_entropy=True``), reference log-probs, rollout
  importance weights, verl's global batch sizes and its data-parallel group goes to
  ``controllers.policy_loss``. A caller that uses the policy loss directly (verl's distillation loss)
  gets a message instead;
- the trainer mode ``entrolab`` (``trainer.v1.trainer_mode=entrolab``, ``llm.engines.verl_trainer``):
  verl's sync trainer that also keeps controller state. It steps the state on the driver once per actor
  update with the update's token-weighted statistics, hands it to the workers with the batch, and saves
  it in every ``global_step_N`` checkpoint. Stateful controllers need it.
- a check of verl's whole config (``check_verl_config``), run by verl's own ``validate_config`` before
  Ray starts: a setting the plugin would drop or cannot feed stops there, in one line.

What verl decides and the plugin cannot change (docs/engines.md, "verl"): verl calls the loss once per
micro-batch and back-propagates each at once, so selections (Clip-Cov, KL-Cov, 80/20) are per
micro-batch, gathered over the data-parallel ranks; the normalisation is verl's, over the global
mini-batch. Controllers that read per-token values when shaping rewards, compare a prompt's responses
inside the loss or reset the reference model are refused: no verl hook gives an advantage estimator
log-probs, gives the loss whole groups, or lets a plugin overwrite the reference worker's weights.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import sys

import numpy as np
import torch

import controllers as C
from controllers.agg import AGG_MODES
from llm.parallel import TorchGather

TESTED_VERL = "0.9.1"
ENV = "ENTROLAB_PIPELINE"
NAME = "entrolab"
STATE_KEY = "entrolab_state"  # the batch's non-tensor field that carries the loss stage's state
WSUM = "entrolab_wsum/"  # metric prefix: token-weighted sums for the driver's reduction
_SAMPLING_STATE: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "entrolab_sampling", default=None
)
_TRAINER_IMPORT_ERROR: list[str] = []  # why llm.engines.verl_entry could not register the trainer mode

_CACHE: dict[str, tuple[C.Pipeline, C.Pipeline, C.Pipeline]] = {}  # text → (whole, sampling, loss)


def parse_pipeline(text: str) -> C.Pipeline:
    """The pipeline ``ENTROLAB_PIPELINE`` names: a spec as every entrolab command line writes it
    (``controllers.spec``: ``grpo ppo_clip eps_hi=0.28 clip_cov frac=2e-4``), or, as before, a JSON list of
    controller names and [name, {hyperparameters}] pairs."""
    if not text.lstrip().startswith("["):
        entries = C.spec.parse(text, ENV)
        if not entries:
            raise ValueError(
                f"{ENV}: got {text!r}; allowed: a pipeline spec, e.g. 'grpo ppo_clip eps_hi=0.28'"
            )
        return C.spec.build(entries)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f'{ENV}: got {text!r}; allowed: a spec (grpo clip_cov frac=0.0002) or JSON, e.g. ["grpo", ["clip_cov", '
            f'{{"frac": 0.0002}}]] ({e})'
        ) from None
    if not isinstance(items, list) or not items:
        raise ValueError(f"{ENV}: got {text!r}; allowed: a non-empty JSON list of controllers")
    entries: list[C.spec.Entry] = []
    for item in items:
        if isinstance(item, str):
            entries.append((item, {}))
        elif (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], dict)
        ):
            entries.append((item[0], dict(item[1])))
        else:
            raise ValueError(f"{ENV}: item {item!r}; allowed: a name or [name, {{hyperparameters}}]")
    C.spec.parse([name for name, _ in entries], ENV)  # unknown names, named as every host names them
    return C.spec.build(entries)


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
            f"{ENV}: not set; allowed: a pipeline spec, e.g. 'grpo ppo_clip eps_hi=0.28' (or a JSON list)"
        )
    if text not in _CACHE:
        pipe = parse_pipeline(text)
        # the workers do not see algorithm.adv_estimator: check_verl_config and the estimator check the signal
        C.contract.check(pipe, verl_host(own_advantages="algorithm.adv_estimator, if verl's own"))
        _CACHE[text] = (pipe, *pipe.split())  # split() refuses an order that splitting would change
    return _CACHE[text]


def verl_host(trainer: bool = True, own_advantages: str | None = None) -> C.Host:
    """What the plugin can feed a pipeline inside verl (``controllers.contract.Host``); ``trainer``:
    verl runs the ``entrolab`` trainer mode, which keeps controller state; ``own_advantages``: verl's own
    estimator makes the advantages (None: the ``entrolab`` estimator, whose advantages start at zero)."""
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
        stateless=None if trainer else (
            "only trainer.v1.trainer_mode=entrolab steps controller state and keeps it in checkpoints"
        ),
        reference_reset="the plugin cannot overwrite the weights of verl's reference worker",
        own_advantages=own_advantages,
    )  # fmt: skip


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


# actor options that loss_mode=entrolab does not read, with verl 0.9.1's defaults (accepted, and unused:
# the pipeline's controllers set the clip range and the KL term) and where the setting goes instead
UNUSED_ACTOR = {
    "clip_ratio": (0.2, "ppo_clip(eps_lo=..., eps_hi=...)"),
    "clip_ratio_low": (0.2, "ppo_clip(eps_lo=...)"),
    "clip_ratio_high": (0.2, "ppo_clip(eps_hi=...)"),
    "clip_ratio_c": (3.0, "ppo_clip(dual_clip=...)"),
    "kl_loss_coef": (0.001, "ref_kl(beta=...)"),
    "kl_loss_type": ("low_var_kl", "ref_kl(estimator=...)"),
}


def check_actor_config(config, pipe: C.Pipeline) -> None:
    """verl options that the entrolab loss would silently drop must be neutral, and its aggregation one of
    entrolab's."""
    agg = config.get("loss_agg_mode", "token-mean")
    if agg not in AGG_MODES:
        raise ValueError(
            f"actor.loss_agg_mode: got {agg!r}, which loss_mode=entrolab cannot aggregate; allowed: "
            f"{', '.join(AGG_MODES)}"
        )
    for name, (default, instead) in UNUSED_ACTOR.items():
        got = config.get(name, default)
        if got is not None and got != default:
            raise ValueError(
                f"actor.{name}: got {got!r}, which loss_mode=entrolab ignores (the pipeline sets it); allowed: "
                f"{default!r}, verl's default, with {instead} in the pipeline"
            )
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


def check_verl_config(config) -> None:
    """verl's whole config against the plugin, before any work (verl's ``validate_config`` calls it):
    the pipeline parses and every controller is fed, the two halves run where the pipeline needs them,
    the actor options the loss would drop are neutral, and state has a trainer that keeps it."""
    actor = config.actor_rollout_ref.actor
    loss_mode = actor.policy_loss.get("loss_mode", "vanilla")
    estimator = str(config.algorithm.adv_estimator)
    if NAME not in (loss_mode, estimator):
        if os.environ.get(ENV):
            raise ValueError(
                f"{ENV}: set, but neither algorithm.adv_estimator ({estimator!r}) nor "
                f"actor_rollout_ref.actor.policy_loss.loss_mode ({loss_mode!r}) is {NAME!r}, so the pipeline "
                f"would be ignored; allowed: unset, or {NAME} in one of the two"
            )
        return
    v1 = config.trainer.get("use_v1", False)
    mode = config.trainer.get("v1", {}).get("trainer_mode", "sync") if v1 else None
    if mode == NAME and _TRAINER_IMPORT_ERROR:
        raise ValueError(
            f"trainer.v1.trainer_mode: got {NAME!r}, which could not be registered "
            f"({_TRAINER_IMPORT_ERROR[0]}); allowed: a verl installation with its trainer runtime"
        )
    pipe = pipeline()
    own = None if estimator == NAME else f"algorithm.adv_estimator={estimator}"
    C.contract.check(pipe, verl_host(trainer=mode == NAME, own_advantages=own))
    sampling, loss = _stages()
    if sampling.controllers and estimator != NAME:
        raise ValueError(
            f"algorithm.adv_estimator: got {estimator!r}, but the pipeline shapes rewards or advantages "
            f"({', '.join(c.name for c in sampling.controllers)}), which only the estimator does; "
            f"allowed: {NAME}"
        )
    if loss.controllers and loss_mode != NAME:
        raise ValueError(
            f"actor_rollout_ref.actor.policy_loss.loss_mode: got {loss_mode!r}, but the pipeline has loss "
            f"terms ({', '.join(c.name for c in loss.controllers)}), which only the entrolab loss runs; "
            f"allowed: {NAME}"
        )
    if loss_mode == NAME:
        check_actor_config(actor, pipe)
        if not actor.get("calculate_entropy", False):
            raise ValueError(
                "actor_rollout_ref.actor.calculate_entropy: got False; allowed: True (loss_mode=entrolab "
                "reads the entropies)"
            )
    if mode == NAME and config.trainer.v1.get("sync", {}).get("parameter_sync_step", 1) != 1:
        raise ValueError(
            f"trainer.v1.sync.parameter_sync_step: got {config.trainer.v1.sync.parameter_sync_step}; "
            "allowed: 1 with trainer_mode=entrolab (the state is stepped once per actor update)"
        )


@contextlib.contextmanager
def sampling_state(state: dict):
    """Within this block the ``entrolab`` estimator shapes with ``state`` (the entrolab trainer sets it)."""
    token = _SAMPLING_STATE.set(state)
    try:
        yield
    finally:
        _SAMPLING_STATE.reset(token)


def _need_trainer(pipe: C.Pipeline, where: str) -> None:
    stateful = [c.name for c in pipe.controllers if c.stateful()]
    if stateful:
        raise ValueError(
            f"trainer.v1.trainer_mode: {where} has no controller state, but {', '.join(stateful)} keep state; "
            f"allowed: {NAME} (the trainer mode that steps and saves it)"
        )


# -- the sampling stage: an advantage estimator on the driver -------------------------------------------


def entrolab_advantage(token_level_rewards, response_mask, index=None, config=None, **kwargs):
    """verl advantage estimator: the pipeline's sampling stage over the whole batch. Returns
    (advantages, returns), both (B, T), as verl's GRPO does."""
    sampling, _ = _stages()
    if not pipeline().sources_signal():  # also when verl's validate_config was bypassed
        C.contract.check(pipeline(), verl_host())
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
    state = _SAMPLING_STATE.get()
    if state is None:
        _need_trainer(sampling, "the advantage estimator")
        state = sampling.init()
    adv = sampling.advantages(batch, state)
    return adv, adv


def final_outputs(batch_keys) -> tuple[list[int], list[int]]:
    """(rows of each agent session's final output, for every row the position of its session's final
    row in that list), from verl's v1 batch keys ``{uid}_{session_id}_{output index}``, as verl's
    ``compute_advantage_for_multi_trajectories`` reads them."""
    final: dict[str, tuple[int, int]] = {}
    sessions = []
    for row, key in enumerate(batch_keys):
        parts = str(key).rsplit("_", 2)
        if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
            raise ValueError(f"batch_keys: got {key!r}; allowed: verl's v1 keys '<uid>_<session>_<index>'")
        session, index = f"{parts[0]}_{parts[1]}", int(parts[2])
        sessions.append(session)
        if session not in final or final[session][0] < index:
            final[session] = (index, row)
    order = {session: i for i, session in enumerate(final)}
    return [row for _, row in final.values()], [order[s] for s in sessions]


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
    carried = _scalar(tu.get(data, STATE_KEY, None))
    if carried is None:
        _need_trainer(loss_pipe, "the loss")
        state = loss_pipe.init()
    else:
        state = C.Pipeline.state_from_json(carried)
    hook = TorchGather(dp_group) if dp_size > 1 else C.dist.Gather()
    with C.dist.using(hook):
        loss, metrics = C.policy_loss(
            batch, loss_pipe, state, agg=agg, norm_len=config.loss_scale_factor,
        )  # fmt: skip
    if agg == "token-mean":
        local, total = mask.sum(), n_tokens
    else:
        local, total = (mask.sum(-1) > 0).sum().to(mask.dtype), n_seqs
    if total is not None:
        loss = loss * local / max(float(total), 1.0) * dp_size
    out = {k: Metric(value=v, aggregation=AggregationType.MEAN) for k, v in metrics.items()}
    if carried is not None:  # the entrolab trainer reduces these to token-weighted means of the update
        n = metrics["policy/n_tokens"]
        out.update({_escape(WSUM + k): Metric(value=v * n, aggregation=AggregationType.SUM)
                    for k, v in metrics.items() if k != "policy/n_tokens"})  # fmt: skip
        out[WSUM + "n"] = Metric(value=n, aggregation=AggregationType.SUM)
    return loss, out


def _escape(key: str) -> str:
    """verl's driver reduces a metric whose name contains "max" (or "min") over mini-batches with a max
    (min); a weighted sum must be averaged, so those letters are upper-cased (our names are lower case)."""
    if "MAX" in key or "MIN" in key:
        raise ValueError(f"metric {key!r}: upper-case MAX/MIN is reserved for the plugin's escaping")
    return key.replace("max", "MAX").replace("min", "MIN")


def token_weighted(metrics: dict) -> dict[str, float]:
    """The loss metrics of one actor update as token-weighted means over every micro-batch, mini-batch
    and rank, from the ``WSUM`` sums in verl's reduced actor metrics (keys with or without "actor/")."""
    sums = {}
    for key, v in metrics.items():
        bare = key.removeprefix("actor/")
        if bare.startswith(WSUM):
            sums[bare[len(WSUM) :].replace("MAX", "max").replace("MIN", "min")] = float(v)
    if "n" not in sums:
        raise ValueError(
            f"actor metrics: no {WSUM}n; allowed: the metrics of an update run with loss_mode={NAME} and the "
            f"{NAME} trainer mode"
        )
    n = sums.pop("n")  # policy/n_tokens itself keeps verl's reduction (the mean over micro-batches)
    return {k: v / max(n, 1e-12) for k, v in sums.items()}


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
    _wrap_validate_config()


def _wrap_validate_config() -> None:
    """verl's ``validate_config`` (main_ppo runs it before Ray starts) also runs ``check_verl_config``."""
    from verl.utils import config as vconfig

    original = vconfig.validate_config
    if getattr(original, "_entrolab", False):
        return

    def validate_config(config, *args, **kwargs):
        check_verl_config(config)
        return original(config, *args, **kwargs)

    validate_config._entrolab = True
    validate_config.__wrapped__ = original
    vconfig.validate_config = validate_config


register()
