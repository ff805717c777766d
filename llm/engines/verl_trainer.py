"""verl's trainer mode ``entrolab`` (``trainer.v1.trainer_mode=entrolab``): verl's sync trainer that keeps
entrolab's controller state. The plugin (``llm.engines.verl_plugin``) imports this module, so the mode
exists in every process that imports verl with its trainer runtime installed.

Per actor update (one RL step), on the driver:

1. the sampling stage's state is handed to the ``entrolab`` advantage estimator (same process);
2. the loss stage's state travels to every worker with the batch (non-tensor field ``entrolab_state``),
   so every micro-batch of the update uses the same state;
3. after the update, the loss metrics come back as token-weighted sums (the plugin adds them when it
   sees the state); their ratio is the update's token-weighted mean over every micro-batch, mini-batch
   and rank. Those means replace verl's micro-batch means of the same metrics in the log, and the state
   is stepped with them plus ``train/progress_frac`` (global step / total steps). The state is logged as
   ``state/<controller>/<key>``;
4. every checkpoint ``global_step_N`` gets ``entrolab_state.json`` (written before verl marks the
   checkpoint as the latest), and a resume restores it; a checkpoint of another pipeline is refused.

Differences from entrolab's own trainer, stated: verl updates the actor in one call per RL step that may
hold several optimizer steps (``ppo_mini_batch_size`` < ``train_batch_size``, ``ppo_epochs`` > 1); the
state can only change between calls, so it is stepped once per RL step, not once per optimizer step.
With one mini-batch and one epoch the two agree. Only ``parameter_sync_step`` = 1 is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

import controllers as C
from llm.engines import state as engine_state
from llm.engines import verl_plugin as P

STATE_FILE = engine_state.STATE_FILE


def _per_session(original):
    """verl's v1 trainers compute GRPO advantages of agent sessions with several outputs from each
    session's final output, broadcast to the session's other outputs
    (``compute_advantage_for_multi_trajectories``); every other estimator sees every output. The
    ``entrolab`` estimator gets GRPO's rule, so a pipeline's groups are those of verl's GRPO."""
    if getattr(original, "_entrolab", False):
        return original

    def wrapped(data, batch_keys, adv_estimator, **kwargs):
        if str(adv_estimator) != P.NAME:
            return original(data, batch_keys, adv_estimator, **kwargs)
        finals, row_to_final = P.final_outputs(batch_keys)
        sub = compute_advantage(data.select_idxs(finals), adv_estimator=adv_estimator, **kwargs)
        first = sub.batch["response_mask"].argmax(dim=1)
        score = sub.batch["advantages"][torch.arange(len(sub)), first]
        scores = score[torch.as_tensor(row_to_final)].unsqueeze(-1) * data.batch["response_mask"]
        data.batch["advantages"] = scores
        data.batch["returns"] = scores
        return data

    wrapped._entrolab = True
    wrapped.__wrapped__ = original
    return wrapped


trainer_base.compute_advantage_for_multi_trajectories = _per_session(
    trainer_base.compute_advantage_for_multi_trajectories
)


@register_trainer(P.NAME)
class EntrolabPPOTrainer(PPOTrainerSync):
    """verl's ``PPOTrainerSync`` plus controller state (module docstring)."""

    def __init__(self, config):
        P.check_verl_config(config)  # before any work, also when verl's validate_config was bypassed
        self.entrolab_pipes = dict(zip(("sampling", "loss"), P._stages(), strict=True))
        self.ctrl_state = {half: pipe.init() for half, pipe in self.entrolab_pipes.items()}
        config.trainer.v1.trainer_mode = "sync"  # verl's own code paths: this is its sync trainer
        super().__init__(config)

    # -- one RL step --------------------------------------------------------------------------------------

    def _compute_advantage(self, batch, metrics):
        with P.sampling_state(self.ctrl_state["sampling"]):
            return super()._compute_advantage(batch, metrics)

    def _update_actor(self, batch, metrics):
        batch.extra_info[P.STATE_KEY] = C.Pipeline.state_to_json(self.ctrl_state["loss"])
        actor: dict = {}
        batch = super()._update_actor(batch, actor)
        stats = P.token_weighted(actor)
        for key in list(actor):
            if key.startswith("actor/" + P.WSUM):
                del actor[key]
        actor.update({"actor/" + k: v for k, v in stats.items()})
        metrics.update(actor)
        done = self.global_steps / max(self.total_training_steps, 1)
        stats["train/progress_frac"] = min(1.0, done)
        self.ctrl_state = {
            half: pipe.step(self.ctrl_state[half], stats) for half, pipe in self.entrolab_pipes.items()
        }
        for st in self.ctrl_state.values():
            metrics.update(C.Pipeline.state_metrics(st))
        return batch

    # -- checkpoints --------------------------------------------------------------------------------------

    def _save_checkpoint(self):
        folder = Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}"
        folder.mkdir(parents=True, exist_ok=True)
        engine_state.save(folder, "verl", P.TESTED_VERL, self.ctrl_state)
        super()._save_checkpoint()

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if self.global_steps == 0:
            return
        self.ctrl_state = engine_state.load(
            self._resumed_folder(), self.ctrl_state, option="trainer.resume_mode",
            keeps_state=any(c.stateful() for pipe in self.entrolab_pipes.values() for c in pipe.controllers),
            written_by="a checkpoint written by trainer_mode=entrolab, or resume_mode=disable",
        )  # fmt: skip

    def _resumed_folder(self) -> Path:
        """The ``global_step_N`` folder verl's ``_load_checkpoint`` resumed from (its own rule)."""
        t = self.config.trainer
        if t.resume_mode == "resume_path":
            folder = t.resume_from_path
        else:
            folder = os.path.join(t.default_local_dir, f"global_step_{self.global_steps}")
        return Path(folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder))
