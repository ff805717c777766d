"""verl's trainer mode ``entrolab`` (llm.engines.verl_trainer) and the config check, on verl 0.9.1's
real config (composed by hydra from verl's own YAML) and its real trainer class.

No Ray cluster, rollout engine or TransferQueue server runs here. Where the trainer calls its actor
worker group, a stand-in calls verl's own (wrapped) ``ppo_loss`` on each micro-batch, with the batch's
non-tensor fields, and collects the metrics as verl's engine worker does (``Metric.aggregate_dp`` per
mini-batch, a list over mini-batches, ``reduce_metrics`` on the driver).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import verl
from hydra import compose, initialize_config_dir
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.v1 import get_trainer_cls
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.utils import tensordict_utils as tu
from verl.utils.metric import Metric, reduce_metrics
from verl.utils.py_functional import append_to_dict
from verl.workers.utils import losses

import controllers as C
from llm.engines import verl_plugin as P
from llm.engines import verl_trainer as VT
from tests.llm.verl_helpers import actor_config, inputs

PI = ["grpo", "ppo_clip", ["pi_control", {"target": 0.5, "kp": 0.5, "ki": 0.1}]]


def verl_config(pipeline, *overrides, tmp=None):
    """verl's ppo_trainer config with the plugin selected, and ENTROLAB_PIPELINE set."""
    os.environ[P.ENV] = json.dumps(pipeline)
    base = [
        "algorithm.adv_estimator=entrolab", "actor_rollout_ref.actor.policy_loss.loss_mode=entrolab",
        "actor_rollout_ref.actor.calculate_entropy=True", "trainer.v1.trainer_mode=entrolab",
        f"trainer.default_local_dir={tmp or '/nonexistent'}",
    ]  # fmt: skip
    with initialize_config_dir(
        config_dir=str(Path(verl.__file__).parent / "trainer/config"), version_base=None
    ):
        return compose(config_name="ppo_trainer", overrides=base + list(overrides))


@pytest.fixture(autouse=True)
def _env():
    before = os.environ.get(P.ENV)
    yield
    P._CACHE.clear()
    if before is None:
        os.environ.pop(P.ENV, None)
    else:
        os.environ[P.ENV] = before


class Batch:
    """The trainer's view of a batch in this test: verl's KVBatchMeta only lends it ``extra_info``."""

    def __init__(self):
        self.extra_info = {}


class Workers:
    """Stand-in for the actor worker group: micro-batches through verl's ``ppo_loss`` (wrapped by the
    plugin), metrics collected as verl's ``update_actor`` collects them. ``minibatches`` × ``micro``
    micro-batches, each from ``inputs(seed)``; ``seen`` records the state each micro-batch carried."""

    def __init__(self, minibatches=2, micro=2, seed=0):
        self.minibatches, self.micro, self.seed = minibatches, micro, seed
        self.seen, self.saved, self.loaded = [], [], []
        self.entropy_sum = self.tokens = 0.0

    def update_actor(self, batch):
        cfg = actor_config("entrolab")
        per_mini = {}
        for m in range(self.minibatches):
            collected: dict[str, Metric] = {}
            for k in range(self.micro):
                out, data, (_, ent) = inputs(self.seed + 10 * m + k, n_tokens=None, n_seqs=None)
                tu.assign_non_tensor(data, **batch.extra_info)
                self.seen.append(tu.get(data, P.STATE_KEY))
                loss, metrics = losses.ppo_loss(cfg, out, data)
                loss.backward()
                mask = data.select("response_mask").to_padded_tensor()["response_mask"].double()
                self.entropy_sum += float((ent.detach() * mask).sum())
                self.tokens += float(mask.sum())
                for key, metric in metrics.items():
                    collected.setdefault(key, metric.init_list()).extend(metric)
            mini = {key: Metric.aggregate_dp([metric]) for key, metric in collected.items()}
            mini["mfu"] = 0.0
            append_to_dict(per_mini, mini)
        return {"metrics": per_mini}

    def save_checkpoint(self, local_path, *args, **kwargs):
        self.saved.append(local_path)

    def load_checkpoint(self, local_path, **kwargs):
        self.loaded.append(local_path)


class Loader:
    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def trainer(pipeline, *overrides, tmp=None, workers=None, total=10):
    t = get_trainer_cls("entrolab")(verl_config(pipeline, *overrides, tmp=tmp))
    t.actor_rollout_wg = workers or Workers()
    t.train_dataloader = Loader()
    t.total_training_steps = total
    t.global_steps = 1
    return t


def test_the_mode_is_registered_and_runs_as_verls_sync_trainer():
    cls = get_trainer_cls("entrolab")
    assert cls is VT.EntrolabPPOTrainer and issubclass(cls, PPOTrainer)
    t = trainer(PI)
    assert t.trainer_mode == "sync" and type(t.replay_buffer).__name__ == "ReplayBuffer"
    assert set(t.ctrl_state["loss"]) == {"0:ppo_clip", "1:pi_control"}


def test_state_reaches_every_micro_batch_and_is_stepped_with_token_weighted_means():
    """Two updates of 2 mini-batches × 2 micro-batches. Every micro-batch of an update carries the same
    state; the driver steps it with the update's token-weighted entropy (checked against the entropies
    the workers saw), and the loss of the next update uses the new coefficient."""
    w = Workers()
    t = trainer(PI, workers=w)
    pipe = t.entrolab_pipes["loss"]
    start = t.ctrl_state
    metrics: dict = {}
    t._update_actor(Batch(), metrics)
    assert len(set(w.seen)) == 1 and json.loads(w.seen[0]) == start["loss"]
    h = w.entropy_sum / w.tokens
    assert metrics["actor/policy/entropy"] == pytest.approx(h, rel=1e-12)
    assert metrics["actor/policy/n_tokens"] == pytest.approx(w.tokens / 4)  # verl's: a micro-batch's
    expect = pipe.step(start["loss"], {"policy/entropy": h, "train/progress_frac": 0.1})
    for key in ("value", "integral"):
        assert t.ctrl_state["loss"]["1:pi_control"][key] == pytest.approx(
            expect["1:pi_control"][key], rel=1e-12
        )
    assert t.ctrl_state["loss"]["1:pi_control"]["value"] != start["loss"]["1:pi_control"]["value"]
    assert metrics["state/pi_control/value"] == t.ctrl_state["loss"]["1:pi_control"]["value"]
    assert not any(P.WSUM in k for k in metrics)  # the sums are the driver's, not the log's
    t_state_after_first = t.ctrl_state["loss"]
    w.seen.clear()
    t.global_steps = 2
    t._update_actor(Batch(), metrics)
    assert json.loads(w.seen[0]) == t_state_after_first
    coef = metrics["actor/ctrl/pi_control/entropy_bonus/coef"]
    assert coef == pytest.approx(t_state_after_first["1:pi_control"]["value"])


def test_escaped_sums_survive_verls_max_and_min_rule():
    """verl's driver takes the max of a metric list whose name contains "max"; the escaped sum keeps
    the mean, so the token-weighted value comes back."""
    lists = {
        "actor/" + P._escape(P.WSUM + "ctrl/x/max_gap"): [2.0, 6.0],  # 1·2 and 3·2: values 2 and 2... over n
        "actor/" + P.WSUM + "n": [1.0, 3.0],
    }
    stats = P.token_weighted(reduce_metrics(lists))
    assert stats["ctrl/x/max_gap"] == pytest.approx((2.0 + 6.0) / 4.0)
    with pytest.raises(ValueError, match=r"^metric .*MAX"):
        P._escape("policy/MAX")
    with pytest.raises(ValueError, match=r"^actor metrics: no entrolab_wsum/n; allowed"):
        P.token_weighted({"actor/policy/entropy": 1.0})


@dataclasses.dataclass(frozen=True)
class StepScaled(C.Controller):
    """Test-only and unregistered: a stateful sampling-stage controller (advantages × (1 + steps seen))."""

    name = "step_scaled"
    kind = "advantage"
    stage_name = "sampling"

    def init(self):
        return {"k": 0}

    def advantages(self, batch, state):
        return batch.adv * (1 + state["k"])

    def step(self, state, stats):
        return {"k": state["k"] + 1}


def test_sampling_state_reaches_the_estimator_and_is_stepped():
    """The trainer's ``_compute_advantage`` runs verl's with the sampling state in scope, and the
    estimator shapes with it; after an actor update the state has moved on. Without the trainer, the
    estimator refuses a stateful sampling stage."""
    pipe = C.Pipeline([C.get("grpo"), StepScaled(), C.get("ppo_clip")])
    text = '["grpo", "step_scaled", "ppo_clip"]'
    P._CACHE[text] = (pipe, *pipe.split())  # the environment names it; the cache holds the instances
    t = get_trainer_cls("entrolab")(_cfg_keep_env(text))
    t.actor_rollout_wg, t.train_dataloader, t.total_training_steps, t.global_steps = (
        Workers(),
        Loader(),
        10,
        1,
    )
    rewards = torch.zeros(4, 3)
    rewards[:, -1] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mask = torch.ones(4, 3)
    est = core_algos.get_adv_estimator_fn("entrolab")
    advs = []

    def verls(self, batch, metrics):  # verl's _compute_advantage calls the estimator within
        advs.append(est(token_level_rewards=rewards, response_mask=mask, index=["a", "a", "b", "b"])[0])
        return batch

    orig = PPOTrainer._compute_advantage
    PPOTrainer._compute_advantage = verls
    try:
        t._compute_advantage(Batch(), {})
        t._update_actor(Batch(), {})
        assert t.ctrl_state["sampling"]["1:step_scaled"] == {"k": 1}
        t._compute_advantage(Batch(), {})
    finally:
        PPOTrainer._compute_advantage = orig
    assert advs[0].abs().sum() > 0 and torch.allclose(advs[1], 2 * advs[0])
    with pytest.raises(
        ValueError, match=r"^trainer.v1.trainer_mode: the advantage estimator .*allowed: entrolab"
    ):
        est(token_level_rewards=rewards, response_mask=mask, index=["a", "a", "b", "b"])


def _cfg_keep_env(text):
    """verl_config without touching ENTROLAB_PIPELINE (already set to ``text``)."""
    cfg = verl_config(["grpo"])
    os.environ[P.ENV] = text
    return cfg


def test_a_stateful_loss_without_the_trainer_stops_in_one_line(monkeypatch):
    monkeypatch.setenv(P.ENV, json.dumps(PI))
    out, data, _ = inputs(0)
    with pytest.raises(ValueError, match=r"^trainer.v1.trainer_mode: the loss has no controller state"):
        losses.ppo_loss(actor_config("entrolab"), out, data)


def test_state_survives_a_checkpoint_and_resume(tmp_path):
    t = trainer(PI, tmp=tmp_path)
    t._update_actor(Batch(), {})
    t._update_actor(Batch(), {})
    t.global_steps = 2
    t._save_checkpoint()
    folder = tmp_path / "global_step_2"
    assert (folder / VT.STATE_FILE).is_file() and (
        tmp_path / "latest_checkpointed_iteration.txt"
    ).read_text() == "2"
    saved = t.ctrl_state
    again = trainer(PI, "trainer.resume_mode=auto", tmp=tmp_path)
    again._load_checkpoint()
    assert again.global_steps == 2 and again.ctrl_state == saved
    assert again.actor_rollout_wg.loaded == [str(folder / "actor")]
    other = trainer(["grpo", "ppo_clip", "adaptive_entropy"], "trainer.resume_mode=auto", tmp=tmp_path)
    with pytest.raises(
        ValueError, match=r"^trainer.resume_mode: .* holds state for .*; allowed: the same pipeline"
    ):
        other._load_checkpoint()
    (folder / VT.STATE_FILE).unlink()
    again = trainer(PI, "trainer.resume_mode=auto", tmp=tmp_path)
    with pytest.raises(ValueError, match=r"^trainer.resume_mode: .* has no entrolab_state.json"):
        again._load_checkpoint()


@pytest.mark.parametrize(
    "pipeline, overrides, message",
    [
        (PI, ["trainer.v1.trainer_mode=sync"], r"^controllers: 'pi_control' keeps state .*trainer_mode=entrolab"),
        (["ppo_clip", ["ref_kl", {"reset_every": 5}]], ["actor_rollout_ref.actor.use_kl_loss=True"],
         r"^controllers: 'ref_kl' asks for the reference model to be reset"),
        (["grpo", "ppo_clip"], ["algorithm.adv_estimator=grpo"], r"^algorithm.adv_estimator: got 'grpo'"),
        (["grpo", "ppo_clip"], ["actor_rollout_ref.actor.policy_loss.loss_mode=vanilla"],
         r"^actor_rollout_ref.actor.policy_loss.loss_mode: got 'vanilla'"),
        (["grpo", "ppo_clip"], ["actor_rollout_ref.actor.calculate_entropy=False"],
         r"^actor_rollout_ref.actor.calculate_entropy: got False"),
        (["grpo", "ppo_clip"], ["actor_rollout_ref.actor.entropy_coeff=0.01"], r"^actor.entropy_coeff: got 0.01"),
        (["grpo", "ppo_clip"], ["+trainer.v1.sync.parameter_sync_step=2"],
         r"^trainer.v1.sync.parameter_sync_step: got 2"),
        (["grpo", "fork_bonus"], [], r"^controllers: 'fork_bonus' reads entropy"),
        # the entrolab estimator without a controller that makes advantages: zero advantages
        (["ppo_clip"], [], r"^controllers: got \['ppo_clip'\], none of which makes advantages from rewards"),
        # actor options loss_mode=entrolab does not read
        (["grpo", "ppo_clip"], ["actor_rollout_ref.actor.clip_ratio_high=0.28"],
         r"^actor.clip_ratio_high: got 0.28, which loss_mode=entrolab ignores.*ppo_clip\(eps_hi=...\)"),
        (["grpo", "ppo_clip"], ["actor_rollout_ref.actor.clip_ratio=0.3"], r"^actor.clip_ratio: got 0.3"),
        (["grpo", "ppo_clip", "ref_kl"], ["actor_rollout_ref.actor.use_kl_loss=True",
                                          "actor_rollout_ref.actor.kl_loss_type=k1"],
         r"^actor.kl_loss_type: got 'k1', which loss_mode=entrolab ignores"),
        (["grpo", "ppo_clip"], ["actor_rollout_ref.actor.loss_agg_mode=token-sum"],
         r"^actor.loss_agg_mode: got 'token-sum', which loss_mode=entrolab cannot aggregate"),
        # a pipeline neither half of verl would run
        (["grpo", "ppo_clip"], ["algorithm.adv_estimator=grpo", "actor_rollout_ref.actor.policy_loss.loss_mode=vanilla"],
         r"^ENTROLAB_PIPELINE: set, but neither algorithm.adv_estimator \('grpo'\) nor"),
    ],
)  # fmt: skip
def test_config_check_refuses_before_ray_starts(pipeline, overrides, message):
    """verl's validate_config (main_ppo calls it before ray.init) runs the plugin's check first."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    cfg = verl_config(pipeline, *overrides)
    P._CACHE.clear()
    with pytest.raises(ValueError, match=message) as e:
        validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    assert "\n" not in str(e.value)


def test_config_check_accepts_the_readme_setting():
    P.check_verl_config(verl_config(PI))
    P.check_verl_config(verl_config(["grpo", ["clip_cov", {"frac": 0.0002}]], "trainer.v1.trainer_mode=sync"))
    cfg = verl_config(
        ["grpo"], "trainer.v1.trainer_mode=sync", "actor_rollout_ref.actor.policy_loss.loss_mode=vanilla"
    )
    P.check_verl_config(cfg)  # an estimator-only pipeline with verl's own loss
    cfg = verl_config(["ppo_clip", ["clip_cov", {"frac": 0.0002}]], "trainer.v1.trainer_mode=sync",
                      "algorithm.adv_estimator=grpo")  # fmt: skip
    P.check_verl_config(cfg)  # a loss-only pipeline on verl's own advantages


def test_agent_sessions_with_several_outputs_are_grouped_as_verls_grpo():
    """verl's v1 trainer computes GRPO advantages of multi-output agent sessions from each session's final
    output and broadcasts them; the entrolab estimator gets the same rule, so ``grpo`` in the pipeline
    gives verl's GRPO advantages. Without the rule every output counts and they differ."""
    from verl.protocol import DataProto
    from verl.trainer.ppo.v1 import trainer_base

    g = torch.Generator().manual_seed(3)
    # two prompts × two sessions; sessions have 1 to 3 outputs (agent turns)
    keys = ["p0_s0_0", "p0_s0_1", "p0_s1_0", "p1_s0_0", "p1_s0_1", "p1_s0_2", "p0_s0_2", "p1_s1_0"]
    B, T = len(keys), 5
    mask = torch.ones(B, T)
    mask[:, 3:] = (torch.rand(B, 2, generator=g) > 0.5).float()
    scores = torch.tensor([0.0, 1.0, 3.0, 0.5, 2.0, 1.0, 2.0, 0.0])
    rewards = torch.zeros(B, T)
    rewards[torch.arange(B), mask.sum(-1).long() - 1] = scores

    def data():
        d = DataProto.from_dict(
            tensors={"token_level_rewards": rewards.clone(), "response_mask": mask.clone()}
        )
        d.non_tensor_batch["uid"] = np.array([k.split("_")[0] for k in keys], dtype=object)
        return d

    run = trainer_base.compute_advantage_for_multi_trajectories
    kw = dict(gamma=1.0, lam=1.0, num_repeat=1, norm_adv_by_std_in_grpo=True, config=None)
    theirs = run(data(), batch_keys=keys, adv_estimator="grpo", **kw).batch["advantages"]
    os.environ[P.ENV] = json.dumps([["grpo", {"eps": 1e-6}]])
    P._CACHE.clear()
    ours = run(data(), batch_keys=keys, adv_estimator="entrolab", **kw).batch["advantages"]
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert P.final_outputs(keys) == ([6, 2, 5, 7], [0, 0, 1, 2, 2, 2, 0, 3])
    # every output counted (the estimator alone) gives other advantages: the rule matters here
    alone, _ = core_algos.get_adv_estimator_fn("entrolab")(
        rewards, mask, index=data().non_tensor_batch["uid"]
    )
    assert (alone - theirs).abs().max() > 0.1
    with pytest.raises(ValueError, match=r"^batch_keys: got 'p0'; allowed: verl's v1 keys"):
        P.final_outputs(["p0"])


def test_importing_verl_registers_the_trainer_mode():
    code = "import verl\nfrom verl.trainer.ppo.v1 import get_trainer_cls\nprint(get_trainer_cls('entrolab').__name__)"
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "EntrolabPPOTrainer"
