"""TRL's ``GRPOTrainer`` with an entrolab pipeline as its advantages and loss (tested with trl==1.16.0).

    import controllers as C
    from llm.engines.trl_grpo import EntropyControlledGRPOTrainer

    trainer = EntropyControlledGRPOTrainer(
        model=model, reward_funcs=reward, args=GRPOConfig(...), train_dataset=ds,
        pipeline=[C.get("grpo", eps=1e-4), C.get("ppo_clip", eps_hi=0.28), C.get("clip_cov")],
    )
    trainer.train()   # logs policy/*, ctrl/* and adv/* beside TRL's own metrics

``pipeline=None`` builds TRL's own loss from the ``GRPOConfig`` (``pipeline_from_grpo_config``): the
same numbers as ``GRPOTrainer``, with entrolab's telemetry. What the adapter does, and where it
differs from TRL (docs/engines.md, "TRL"):

- **Sampling stage, on the whole generation batch.** After TRL has generated and scored a generation
  batch, the pipeline's sampling-stage controllers (advantage estimators, reward shaping) run once on the
  batch gathered over every process, so groups are whole even when they span ranks. Their (B, T)
  advantages replace TRL's. One no-grad forward of the local generation batch gives them log-probs and
  entropies (``fork_bonus`` reads entropies, ``unlikeliness`` log-probs). With global selection the first
  loss window reuses that forward; in TRL's default layout (``steps_per_generation`` =
  ``gradient_accumulation_steps``, one iteration) it is the only one, so the adapter costs one no-grad
  forward per generation in all. With ``selection="micro_batch"`` the forward runs only when a
  sampling-stage controller reads those values.
- **Loss stage, on the whole optimizer batch** (``selection="global"``, the default). TRL calls the loss
  once per micro-batch. At the first micro-batch of an accumulation window the adapter computes
  ``controllers.policy_loss`` once over every micro-batch of the window, on log-probs and entropies from a
  no-grad pass used as autograd leaves, with selections (Clip-Cov, KL-Cov, 80/20) gathered over all
  ranks; each micro-batch then back-propagates its rows' share of the leaves' gradients. By the chain
  rule this is the gradient of the window's loss exactly, however the window is split. TRL's own 80/20
  mask and verl's Clip-Cov select per micro-batch. ``selection="micro_batch"`` reproduces that: the
  pipeline runs on each micro-batch (selections still gathered over ranks, as TRL's 80/20 mask), scaled
  as TRL scales its loss.
- **Controller state** is stepped once per optimizer step with the window's metrics (token-weighted
  over ranks), saved in every TRL checkpoint (``entrolab_state.json``) and restored on resume.
- **Refused before training**, each in one line: loss types other than dapo, grpo and dr_grpo; any TRL
  loss option a given pipeline would silently override (``beta`` and ``use_bias_correction_kl`` must say
  what the pipeline's KL term does); a pipeline with no controller making advantages from rewards (TRL's
  advantages are replaced by the pipeline's, from zero); controllers whose needs TRL cannot meet.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from trl import GRPOConfig, GRPOTrainer

import controllers as C
from llm.engines import state as engine_state
from llm.parallel import AccelerateGather, rank_scale

TESTED_TRL = "1.16.0"
SCOPES = ("global", "micro_batch")
STATE_FILE = engine_state.STATE_FILE
# TRL loss_type → the aggregation of entrolab's agg_loss that equals it
LOSS_TYPES = {"dapo": "token-mean", "grpo": "seq-mean-token-mean", "dr_grpo": "seq-mean-token-sum-norm"}
# GRPOConfig options that shape TRL's loss, with their neutral values: with an explicit pipeline the
# pipeline's controllers set the loss, so each must be neutral (else it would be silently ignored)
LOSS_OPTIONS = {
    "epsilon": (0.2, "ppo_clip(eps_lo=...)"),
    "epsilon_high": (None, "ppo_clip(eps_hi=...)"),
    "delta": (None, "ppo_clip(dual_clip=...)"),
    "scale_rewards": ("group", "grpo(scale=...)"),
    "top_entropy_quantile": (1.0, "top_entropy(rho=...)"),
    "off_policy_mask_threshold": (None, "offpolicy_mask(delta=...)"),
    "entropy_coef": (0.0, "entropy_bonus(coef=...)"),
    "use_adaptive_entropy": (False, "adaptive_entropy(...)"),
}
TRL_ADV_EPS = 1e-4  # TRL divides by std + 1e-4


def aggregation(args: GRPOConfig) -> tuple[str, float | None]:
    """(agg, norm_len) of entrolab's ``agg_loss`` equal to TRL's ``loss_type``."""
    if args.loss_type not in LOSS_TYPES:
        raise ValueError(
            f"GRPOConfig.loss_type: got {args.loss_type!r}; allowed: {', '.join(LOSS_TYPES)} (the adapter's "
            "loss is an entrolab pipeline aggregated as one of these; bnpo normalises per micro-batch)"
        )
    agg = LOSS_TYPES[args.loss_type]
    return agg, (float(args.max_completion_length) if agg == "seq-mean-token-sum-norm" else None)


def pipeline_from_grpo_config(args: GRPOConfig) -> C.Pipeline:
    """TRL's own advantages and loss, as an entrolab pipeline: GRPO advantages (``scale_rewards``), the
    PPO clip (``epsilon``, ``epsilon_high``, ``delta`` as a dual clip), the 80/20 mask
    (``top_entropy_quantile``), the off-policy sequence mask, the reference KL (k3, weighted by the ratio
    when ``use_bias_correction_kl``) and the static or adaptive entropy bonus.

    Deviations, stated: the adaptive coefficient switches the bonus on below the target (TRL: at or
    below; equal only on a tie); the 80/20 threshold is an order statistic (exactly ⌈ρ·N⌉ tokens kept; TRL's
    interpolated ``torch.quantile`` keeps 1 + ⌊ρ·N − ρ⌋, one fewer when ρ·N is not an integer); the
    entropy bonus is the token mean over the optimizer batch (TRL: the mean of micro-batch means).
    """
    aggregation(args)
    _check_common(args)
    if args.entropy_coef != 0 and args.top_entropy_quantile < 1.0 and not args.use_adaptive_entropy:
        raise ValueError(
            "GRPOConfig.entropy_coef: got a bonus together with top_entropy_quantile < 1, which TRL restricts "
            "to the kept tokens; allowed: one of the two (entrolab's entropy_bonus acts on every token)"
        )
    ctrls: list[C.Controller] = []
    if args.scale_rewards == "none":
        ctrls.append(C.get("grpo", scale="none", eps=0.0))
    else:
        ctrls.append(C.get("grpo", scale=args.scale_rewards, eps=TRL_ADV_EPS))
    eps_hi = args.epsilon if args.epsilon_high is None else args.epsilon_high
    ctrls.append(C.get("ppo_clip", eps_lo=args.epsilon, eps_hi=eps_hi, dual_clip=args.delta))
    if args.off_policy_mask_threshold is not None:
        ctrls.append(C.get("offpolicy_mask", delta=args.off_policy_mask_threshold))
    if args.top_entropy_quantile < 1.0:
        ctrls.append(C.get("top_entropy", rho=args.top_entropy_quantile))
    if args.beta != 0.0:
        ctrls.append(
            C.get("ref_kl", beta=args.beta, estimator="k3", importance=bool(args.use_bias_correction_kl))
        )
    if args.use_adaptive_entropy:
        ctrls.append(
            C.get(
                "adaptive_entropy", target=args.entropy_target, delta=args.entropy_coef_delta,
                c_min=args.entropy_coef_min, c_max=args.entropy_coef_max, c_init=args.entropy_coef,
                start_enabled=False,
            )
        )  # fmt: skip
    elif args.entropy_coef != 0:
        ctrls.append(C.get("entropy_bonus", coef=args.entropy_coef, agg="token-mean"))
    return C.Pipeline(ctrls)


def _check_common(args: GRPOConfig) -> None:
    """Options the adapter refuses whatever the pipeline."""
    if args.importance_sampling_level != "token":
        raise ValueError(
            f"GRPOConfig.importance_sampling_level: got {args.importance_sampling_level!r}; allowed: 'token' "
            "(sequence-level ratios, GSPO, are not an entrolab surrogate)"
        )
    if args.multi_objective_aggregation != "sum_then_normalize":
        raise ValueError(
            f"GRPOConfig.multi_objective_aggregation: got {args.multi_objective_aggregation!r}; allowed: "
            "'sum_then_normalize' (the pipeline receives the weighted sum of the reward functions)"
        )


def _check_overrides(args: GRPOConfig, pipe: C.Pipeline) -> None:
    """With an explicit pipeline, TRL's loss options must be neutral, and beta only switches on the
    reference forward that a controller needing ``ref_logp`` reads."""
    for name, (neutral, instead) in LOSS_OPTIONS.items():
        got = getattr(args, name)
        if got != neutral:
            raise ValueError(
                f"GRPOConfig.{name}: got {got!r}, which the pipeline would silently override; allowed: "
                f"{neutral!r} (put it in the pipeline as {instead}), or pipeline=None to take every loss "
                "option from GRPOConfig"
            )
    if args.beta != 0.0 and "ref_logp" not in pipe.needs():
        raise ValueError(
            f"GRPOConfig.beta: got {args.beta}, but no controller of the pipeline reads reference log-probs, "
            "so TRL's KL term would be silently dropped; allowed: 0, or a pipeline with ref_kl(beta=...)"
        )
    # the KL term is the pipeline's: TRL's coefficient and bias correction must say the same
    for c in pipe.controllers:
        if "ref_logp" not in c.needs() or args.beta == 0.0:  # beta = 0: the contract says how to switch it on
            continue
        hp = c.hyperparameters()
        if "beta" in hp and float(hp["beta"]) != float(args.beta):
            raise ValueError(
                f"GRPOConfig.beta: got {args.beta}, but the pipeline's {c.name} has beta={hp['beta']}, which "
                f"would silently replace it; allowed: {hp['beta']} (beta switches TRL's reference forward on), "
                "or pipeline=None"
            )
        if "importance" in hp and bool(hp["importance"]) != bool(args.use_bias_correction_kl):
            raise ValueError(
                f"GRPOConfig.use_bias_correction_kl: got {args.use_bias_correction_kl}, but the pipeline's "
                f"{c.name} has importance={hp['importance']}, which would silently replace it; allowed: "
                f"{bool(hp['importance'])}, or {c.name}(importance={bool(args.use_bias_correction_kl)})"
            )


def trl_host(args: GRPOConfig, selection: str = "global", world: int = 1) -> C.Host:
    """What the adapter feeds a pipeline under this configuration (``controllers.contract.Host``)."""
    provides = {"reward", "length", "embedding"}
    if args.beta != 0.0:
        provides.add("ref_logp")
    if args.use_vllm and args.vllm_importance_sampling_correction:
        provides |= {"sampler_logp", "is_weight"}
    vllm = "GRPOConfig(use_vllm=True, vllm_importance_sampling_correction=True)"
    how = {
        "ref_logp": "GRPOConfig(beta=...) non-zero: TRL then computes reference log-probs (the KL "
        "coefficient is the controller's, beta only switches the reference forward on)",
        "sampler_logp": vllm,
        "is_weight": vllm,
    }
    cannot = {
        "entropy_topp": "TRL's fused forward returns log-probs and entropies, never the logits",
        "answer": "TRL's reward functions return scores, not normalised answers",
        "step_correct": "TRL has no judge of reasoning steps",
        "guide": "TRL samples from the policy only",
        "value": "TRL's GRPOTrainer keeps no critic",
    }
    return C.Host(
        name="TRL's GRPOTrainer (entrolab adapter)", provides=frozenset(provides), how=how, cannot=cannot,
        group_size=args.num_generations, group_option="GRPOConfig.num_generations",
        loss_groups=_loss_groups(args, selection, world),
    )  # fmt: skip


def _loss_groups(args: GRPOConfig, selection: str, world: int) -> str | None:
    """None when every loss call sees whole groups, else why not."""
    ga, spg = args.gradient_accumulation_steps, args.steps_per_generation
    if selection != "global":
        return "selection='micro_batch' runs the loss on single micro-batches of shuffled rows"
    if spg != ga:
        return (
            f"steps_per_generation = {spg} differs from gradient_accumulation_steps = {ga}, so an optimizer "
            "step sees part of the generation batch"
        )
    local = args.per_device_train_batch_size * spg
    if world > 1 and local % args.num_generations:
        return f"groups of {args.num_generations} span processes holding {local} rows each"
    return None


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class _Window:
    """The micro-batches of one optimizer step, and the whole-window loss's gradients per micro-batch."""

    def __init__(self, slices: list[dict]):
        self.slices = slices
        self.next = 0
        self.g_logp: list[torch.Tensor] = []
        self.g_ent: list[torch.Tensor | None] = []
        self.loss = 0.0


class EntropyControlledGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose advantages and policy loss are an entrolab pipeline.

    Args (beyond GRPOTrainer's):
        pipeline: a ``controllers.Pipeline`` or list of controllers; None: ``pipeline_from_grpo_config(args)``.
        selection: "global" (default: the loss and every token selection over the whole optimizer batch
            of all ranks) or "micro_batch" (per micro-batch, as TRL itself does).
    """

    def __init__(self, *args, pipeline=None, selection: str = "global", **kwargs):
        cfg = kwargs.get("args") if len(args) < 3 else args[2]
        if not isinstance(cfg, GRPOConfig):
            raise ValueError(
                f"args: got {type(cfg).__name__}; allowed: a trl.GRPOConfig (the adapter reads its loss options)"
            )
        if selection not in SCOPES:
            raise ValueError(f"selection: got {selection!r}; allowed: {', '.join(SCOPES)}")
        agg, norm_len = aggregation(cfg)
        _check_common(cfg)
        if pipeline is None:
            pipe = pipeline_from_grpo_config(cfg)
        else:
            if isinstance(pipeline, C.Pipeline):
                pipe = pipeline
            elif isinstance(pipeline, str):  # a spec, as every command line writes it (controllers.spec)
                pipe = C.spec.build(C.spec.parse(pipeline, "pipeline"))
            else:
                pipe = C.Pipeline(list(pipeline))
            _check_overrides(cfg, pipe)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if selection == "global":
            every = cfg.steps_per_generation * cfg.num_iterations
            if every % cfg.gradient_accumulation_steps:
                raise ValueError(
                    f"GRPOConfig.steps_per_generation: got {cfg.steps_per_generation} (× num_iterations "
                    f"{cfg.num_iterations}), not a multiple of gradient_accumulation_steps = "
                    f"{cfg.gradient_accumulation_steps}, so an optimizer step would span two generations; "
                    "allowed: a multiple, or selection='micro_batch'"
                )
        C.contract.check(pipe, trl_host(cfg, selection, world))
        self.sampling_pipe, self.loss_pipe = pipe.split()
        self.pipeline, self.selection, self.agg, self.norm_len = pipe, selection, agg, norm_len
        self.ctrl_state = {"sampling": self.sampling_pipe.init(), "loss": self.loss_pipe.init()}
        super().__init__(*args, **kwargs)
        if self.aux_loss_enabled:
            raise ValueError(
                "model: a mixture-of-experts model whose router loss TRL adds; allowed: a model without "
                "output_router_logits (the adapter's loss is the pipeline's alone)"
            )
        if self.ref_model is None and any(c.resets_reference() for c in pipe.controllers):
            C.contract.check(pipe, dataclasses.replace(
                trl_host(cfg, selection, world),
                reference_reset="TRL keeps no separate reference model with PEFT or beta = 0",
            ))  # fmt: skip
        self._gather = (
            AccelerateGather(self.accelerator) if self.accelerator.num_processes > 1 else C.dist.Gather()
        )
        self._window: _Window | None = None
        self._gen_step = -1
        self._micro_stats: list[dict[str, float]] = []

    # -- sampling stage -------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._entrolab_rewards = rewards  # (all processes' rows, reward functions), gathered by TRL
        return rewards

    def _token_stats(self, d: dict, grad: bool, model=None):
        """(logp, entropy) (B, T) of the completion tokens of these rows, at TRL's sampling temperature."""
        ids = torch.cat([d["prompt_ids"], d["completion_ids"]], dim=1)
        attn = torch.cat([d["prompt_mask"], d["completion_mask"]], dim=1)
        with torch.enable_grad() if grad else torch.no_grad():
            logp, ent, _ = self._get_per_token_logps_and_entropies(
                self.model if model is None else model, ids, attn, d["completion_ids"].size(1),
                batch_size=self.args.per_device_train_batch_size, compute_entropy=True,
            )  # fmt: skip
        return logp.float(), ent.float()

    def _gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's rows (padded to the longest T with zeros)."""
        if self.accelerator.num_processes == 1:
            return x
        if x.ndim == 2:
            x = self.accelerator.pad_across_processes(x, dim=1, pad_index=0)
        return self.accelerator.gather(x.contiguous())

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        rpf = self._entrolab_rewards
        unscorable = torch.isnan(rpf).all(dim=1)
        if bool(unscorable.any()):
            raise ValueError(
                f"reward_funcs: every reward function returned None for {int(unscorable.sum())} completion(s); "
                "allowed: a number for every completion (the pipeline's advantages need one)"
            )
        reward = (rpf * self.reward_weights.to(rpf.device).unsqueeze(0)).nansum(dim=1).float()
        mask = self._loss_mask(out)
        # the forward serves the sampling stage if it reads per-token values, and the first loss window
        reuse = self.selection == "global" and mode == "train"
        if reuse or self.sampling_pipe.sampling_reads():
            logp, ent = self._token_stats(out, grad=False)
        else:  # read by no one: the contract guarantees the stage's advantages do not depend on them
            logp = ent = torch.zeros_like(mask)
        n_loc, t_loc = mask.shape
        rank = self.accelerator.process_index
        g = self.num_generations if mode == "train" else self.num_generations_eval
        fields = {
            "logp": logp,
            "entropy": ent,
            "mask": mask,
            "old_logp": out.get("old_per_token_logps", logp),
        }
        need = self.sampling_pipe.needs()
        fields.update(self._engine_fields(out, logp, keep=need))
        every = {k: self._gather_rows(v.float()) for k, v in fields.items()}
        n_all = every["logp"].shape[0]
        if reward.shape[0] != n_all:
            raise RuntimeError(
                f"TRL gathered {reward.shape[0]} rewards for {n_all} rows; the adapter is tested with trl=={TESTED_TRL}"
            )
        extra = {}
        if "embedding" in need:
            ids = self._gather_rows(out["completion_ids"] * mask.long())
            extra["embedding"] = C.ngram_embedding(ids, every["mask"])
        group = torch.arange(n_all, device=mask.device) // g
        batch = C.TokenBatch(
            adv=torch.zeros_like(every["logp"]), group=group, reward=reward.to(mask.device),
            length=every["mask"].sum(-1), **every, **extra,
        )  # fmt: skip
        adv = self.sampling_pipe.advantages(batch, self.ctrl_state["sampling"])
        mine = slice(rank * n_loc, (rank + 1) * n_loc)
        out["advantages"] = adv[mine, :t_loc].contiguous()
        out["entrolab_reward"] = reward[mine].to(mask.device)
        out["entrolab_group"] = group[mine]
        if reuse:
            out["entrolab_logp"], out["entrolab_entropy"] = logp, ent
            self._gen_step = self.state.global_step
        # TRL's completion table shows advantages: show the pipeline's (per-sequence mean)
        seq_adv = (adv * every["mask"]).sum(-1) / every["mask"].sum(-1).clamp_min(1.0)
        if len(self._logs["advantages"]) >= n_all:
            for _ in range(n_all):
                self._logs["advantages"].pop()
            self._logs["advantages"].extend(seq_adv.tolist())
        return out

    @staticmethod
    def _loss_mask(d: dict) -> torch.Tensor:
        m = d["completion_mask"]
        if "tool_mask" in d:
            m = m * d["tool_mask"]
        return m.float()

    @staticmethod
    def _engine_fields(d: dict, logp: torch.Tensor, keep=None) -> dict[str, torch.Tensor]:
        """The optional TokenBatch fields TRL's inputs hold (those in ``keep``, if given): reference
        log-probs; vLLM's log-probs, where unscored tokens (NaN) count as matching the trainer (TRL zeroes
        their log-ratio); vLLM's IS weights, sequence-level ones broadcast over the tokens, masked."""
        out = {}
        if "ref_per_token_logps" in d:
            out["ref_logp"] = d["ref_per_token_logps"].float()
        if "sampling_per_token_logps" in d:
            s = d["sampling_per_token_logps"].float()
            old = d.get("old_per_token_logps", logp).float()
            out["sampler_logp"] = torch.where(torch.isnan(s), old, s)
        if "importance_sampling_ratio" in d:
            w = d["importance_sampling_ratio"].float()
            w = w.expand_as(logp).contiguous() if w.shape[-1] == 1 else w
            out["is_weight"] = w * EntropyControlledGRPOTrainer._loss_mask(d)
        return out if keep is None else {k: v for k, v in out.items() if k in keep}

    # -- loss stage -----------------------------------------------------------------------------------------

    def _batch(self, d: dict, logp: torch.Tensor, ent: torch.Tensor) -> C.TokenBatch:
        mask = self._loss_mask(d)
        need = self.loss_pipe.needs()
        opt = self._engine_fields(d, logp)
        if "embedding" in need:
            opt["embedding"] = C.ngram_embedding(d["completion_ids"] * mask.long(), mask)
        old = d.get("old_per_token_logps")
        return C.TokenBatch(
            logp=logp, old_logp=logp.detach() if old is None else old.float(), adv=d["advantages"].float() * mask,
            entropy=ent, mask=mask, group=d["entrolab_group"], reward=d["entrolab_reward"].float(),
            length=mask.sum(-1), **opt,
        )  # fmt: skip

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(_seed(self.args.seed, 1, self.state.global_step))

    def _compute_loss(self, model, inputs):
        if not self.model.training or self.selection == "micro_batch":
            return self._micro_loss(model, inputs)
        w = self._window
        if w is None or w.next == len(w.slices):
            w = self._window = self._open_window(inputs)
        pos = w.next
        if w.slices[pos] is not inputs:
            raise RuntimeError(
                "the adapter lost track of TRL's micro-batch order (GRPOTrainer._buffered_inputs); it is "
                f"tested with trl=={TESTED_TRL}"
            )
        w.next += 1
        logp, ent = self._token_stats(inputs, grad=True, model=model)
        surrogate = (logp * w.g_logp[pos]).sum()
        if w.g_ent[pos] is not None:
            surrogate = surrogate + (ent * w.g_ent[pos]).sum()
        # the value TRL logs: this micro-batch's share of the window's loss; the gradient: the window's
        return surrogate - surrogate.detach() + w.loss / len(w.slices)

    def _open_window(self, first: dict) -> _Window:
        """The whole-window loss, on leaves, at the start of an optimizer step."""
        ga, spg = self.current_gradient_accumulation_steps, self.args.steps_per_generation
        slices = [self._buffered_inputs[(self._step + i) % spg] for i in range(ga)]
        if slices[0] is not first:
            raise RuntimeError(
                f"the adapter expected TRL's micro-batch {self._step % spg}; it is tested with trl=={TESTED_TRL}"
            )
        w = _Window(slices)
        # no optimizer step since the generation pass: its log-probs and entropies are this step's
        fresh = self.state.global_step == self._gen_step and "entrolab_logp" in first
        parts = [
            (s["entrolab_logp"], s["entrolab_entropy"]) if fresh else self._token_stats(s, grad=False)
            for s in slices
        ]
        logp = torch.cat([p[0] for p in parts]).requires_grad_()
        ent = torch.cat([p[1] for p in parts]).requires_grad_()
        whole = {k: torch.cat([s[k] for s in slices]) for k in slices[0] if _is_rows(slices[0][k])}
        batch = self._batch(whole, logp, ent)
        with C.dist.using(self._gather):
            loss, metrics = C.policy_loss(
                batch, self.loss_pipe, self.ctrl_state["loss"], agg=self.agg, generator=self._generator(),
                norm_len=self.norm_len,
            )  # fmt: skip
        scaled = loss * rank_scale(self.accelerator, self.agg, batch.mask)
        scaled.backward()
        sizes = [s["completion_ids"].shape[0] for s in slices]
        w.g_logp = list(torch.split(logp.grad, sizes))
        has_ent = ent.grad is not None and bool(ent.grad.abs().sum() > 0)
        w.g_ent = list(torch.split(ent.grad, sizes)) if has_ent else [None] * len(sizes)
        w.loss = float(loss.detach())
        self._after_step(metrics, "train")
        return w

    def _micro_loss(self, model, inputs):
        """The pipeline on this micro-batch alone (TRL's layout), scaled as TRL scales its loss."""
        mode = "train" if self.model.training else "eval"
        logp, ent = self._token_stats(inputs, grad=True, model=model)
        batch = self._batch(inputs, logp, ent)
        gen = self._generator()
        with C.dist.using(self._gather):
            loss, metrics = C.policy_loss(
                batch, self.loss_pipe, self.ctrl_state["loss"], agg=self.agg, generator=gen,
                norm_len=self.norm_len,
            )  # fmt: skip
        if mode == "train":
            ga = self.current_gradient_accumulation_steps
            if self.agg == "token-mean":  # TRL's dapo normaliser: the window's tokens per process
                window = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
                window = window * ga / self.args.steps_per_generation
                loss = loss * batch.mask.sum() / window
            else:
                loss = loss / ga
            self._micro_stats.append(metrics)
            if self.accelerator.sync_gradients:
                n = [m["policy/n_tokens"] for m in self._micro_stats]
                merged = {
                    k: sum(m[k] * w for m, w in zip(self._micro_stats, n, strict=True)) / max(sum(n), 1.0)
                    for k in self._micro_stats[0]
                }
                merged["policy/n_tokens"] = float(sum(n))
                self._micro_stats = []
                self._after_step(merged, mode)
        else:
            self._log(self._reduce(metrics), mode)
        return loss

    # -- once per optimizer step ----------------------------------------------------------------------------

    def _reduce(self, metrics: dict[str, float]) -> dict[str, float]:
        """Token-weighted mean over ranks (``policy/n_tokens``: the sum)."""
        if self.accelerator.num_processes == 1:
            return dict(metrics)
        keys = sorted(metrics)
        n = float(metrics["policy/n_tokens"])
        vals = torch.tensor(
            [metrics[k] * n for k in keys] + [n], dtype=torch.float64, device=self.accelerator.device
        )
        tot = self.accelerator.reduce(vals, "sum").tolist()
        out = {k: v / max(tot[-1], 1.0) for k, v in zip(keys, tot[:-1], strict=True)}
        out["policy/n_tokens"] = tot[-1]
        return out

    def _log(self, metrics: dict[str, float], mode: str) -> None:
        for k, v in metrics.items():
            self._metrics[mode][k].append(float(v))

    def _after_step(self, metrics: dict[str, float], mode: str) -> None:
        stats = self._reduce(metrics)
        self._log(stats, mode)
        if mode != "train":
            return
        done = (self.state.global_step + 1) / max(self.state.max_steps, 1)
        stats = {**stats, "train/progress_frac": min(1.0, done)}
        self.ctrl_state = {
            "sampling": self.sampling_pipe.step(self.ctrl_state["sampling"], stats),
            "loss": self.loss_pipe.step(self.ctrl_state["loss"], stats),
        }
        for half in ("sampling", "loss"):
            pipe = self.sampling_pipe if half == "sampling" else self.loss_pipe
            if pipe.reference_reset_due(self.ctrl_state[half]):  # a ref_model exists: checked in __init__
                self.ref_model.load_state_dict(self.accelerator.unwrap_model(self.model).state_dict())
                self.ctrl_state[half] = pipe.reference_was_reset(self.ctrl_state[half])
        for st in self.ctrl_state.values():
            self._log(C.Pipeline.state_metrics(st), mode)

    # -- checkpoints ----------------------------------------------------------------------------------------

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            engine_state.save(folder, "trl", TESTED_TRL, self.ctrl_state)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        self.ctrl_state = engine_state.load(
            Path(checkpoint), self.ctrl_state, option="resume_from_checkpoint",
            keeps_state=any(self.ctrl_state[h] and any(self.ctrl_state[h].values()) for h in self.ctrl_state),
            written_by="a checkpoint written by EntropyControlledGRPOTrainer",
        )  # fmt: skip


def _is_rows(v) -> bool:
    return isinstance(v, torch.Tensor) and v.ndim >= 1
