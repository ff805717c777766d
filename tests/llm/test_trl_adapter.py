"""The TRL adapter (llm.engines.trl_grpo), against TRL 1.16.0 itself.

Parity: with ``pipeline=None`` (TRL's own options as a pipeline) the adapter's parameters after two SGD
steps equal GRPOTrainer's, on- and off-policy, with gradient accumulation, for every aggregation and
advantage scale, the reference KL, the dual clip, the off-policy mask, the entropy bonus and the 80/20
mask. Global selection: the gradient does not depend on how the optimizer batch is split into
micro-batches (or, in test_trl_two_processes, processes). Refusals: one line, before training.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import trl
from trl import GRPOTrainer

import controllers as C
from llm.engines import trl_grpo
from llm.engines.trl_grpo import EntropyControlledGRPOTrainer as Adapter
from llm.engines.trl_grpo import pipeline_from_grpo_config, trl_host
from tests.llm import trl_helpers as H

TOL = 1e-5  # relative difference of the parameter change (float32 CPU; measured 0 to 2e-7)


def test_pinned_version():
    assert trl.__version__ == trl_grpo.TESTED_TRL


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """The tiny model saved to disk: TRL loads its reference model from the policy's path (beta != 0)."""
    from transformers import AutoModelForCausalLM

    d = tmp_path_factory.mktemp("tiny")
    net, tok = H.model_and_tokenizer()
    net.save_pretrained(d)
    loaded = AutoModelForCausalLM.from_pretrained(d)
    loaded.generation_config.suppress_tokens = net.generation_config.suppress_tokens
    return loaded, tok


PARITY = {
    "dapo on-policy": {},
    "dapo accumulation 2": dict(gradient_accumulation_steps=2),
    "dapo off-policy (2 iterations, accumulation 2)": dict(gradient_accumulation_steps=2, num_iterations=2),
    "dapo 2 steps per generation": dict(steps_per_generation=2),
    "scale_rewards batch": dict(scale_rewards="batch"),
    "scale_rewards none": dict(scale_rewards="none"),
    "grpo loss, accumulation 2": dict(loss_type="grpo", gradient_accumulation_steps=2),
    "dr_grpo loss, accumulation 2": dict(loss_type="dr_grpo", gradient_accumulation_steps=2),
    "clip-higher and delta, 3 iterations": dict(epsilon_high=0.28, delta=1.5, num_iterations=3),
    "off-policy mask": dict(off_policy_mask_threshold=0.001, num_iterations=3),
    "entropy bonus": dict(entropy_coef=0.05),
    "adaptive entropy": dict(use_adaptive_entropy=True, entropy_target=5.0, entropy_coef=0.01, max_steps=3),
}


@pytest.mark.parametrize("case", sorted(PARITY))
def test_parity_with_trl(case, tmp_path):
    cfg = PARITY[case]
    start = H.start_params()
    _, theirs = H.train(GRPOTrainer, tmp_path / "trl", **cfg)
    _, ours = H.train(Adapter, tmp_path / "ours", **cfg)
    moved = math.sqrt(sum(float((theirs[k] - start[k]).pow(2).sum()) for k in start))
    assert moved > 1e-3, moved  # training moved the parameters
    assert H.rel_diff(ours, theirs, start) < TOL


@pytest.mark.parametrize("bias_correction", [True, False])
def test_parity_reference_kl(saved_model, bias_correction, tmp_path):
    cfg = dict(beta=0.2, use_bias_correction_kl=bias_correction, num_iterations=2)
    start = H.start_params(saved_model)
    _, theirs = H.train(GRPOTrainer, tmp_path / "trl", model=saved_model, **cfg)
    _, ours = H.train(Adapter, tmp_path / "ours", model=saved_model, **cfg)
    assert H.rel_diff(ours, theirs, start) < TOL
    # an explicit pipeline whose KL term says what GRPOConfig says is accepted, and is TRL's loss
    pipe = [C.get("grpo", eps=1e-4), C.get("ppo_clip"), C.get("ref_kl", beta=0.2, importance=bias_correction)]
    _, mine = H.train(
        Adapter, tmp_path / "pipe", model=saved_model, trainer_kwargs=dict(pipeline=pipe), **cfg
    )
    assert H.rel_diff(mine, theirs, start) < TOL


def test_parity_80_20_per_micro_batch(tmp_path):
    """TRL's 80/20 mask selects per micro-batch; so does selection='micro_batch'. Fixed-length completions
    (4 rows × 6 tokens, ρ = 0.25: ρ·N = 6) make TRL's interpolated quantile keep ⌈ρ·N⌉ tokens too."""
    cfg = dict(top_entropy_quantile=0.25, gradient_accumulation_steps=2)
    start = H.start_params()
    _, theirs = H.train(GRPOTrainer, tmp_path / "trl", **cfg)
    _, ours = H.train(Adapter, tmp_path / "ours", trainer_kwargs=dict(selection="micro_batch"), **cfg)
    assert H.rel_diff(ours, theirs, start) < TOL
    # global selection over the whole optimizer batch keeps a different set: the gradient differs
    _, glob = H.train(Adapter, tmp_path / "glob", **cfg)
    assert H.rel_diff(glob, theirs, start) > 1e-3


def test_parity_two_weighted_reward_functions(tmp_path):
    cfg = dict(reward_weights=[1.0, 0.5])
    start = H.start_params()
    funcs = [H.reward, H.second_reward]
    _, theirs = H.train(GRPOTrainer, tmp_path / "trl", reward_funcs=funcs, **cfg)
    _, ours = H.train(Adapter, tmp_path / "ours", reward_funcs=funcs, **cfg)
    assert H.rel_diff(ours, theirs, start) < TOL


SELECTING = [
    C.get("grpo", eps=1e-4),
    C.get("ppo_clip"),
    C.get("clip_cov", frac=0.1),
    C.get("kl_cov", frac=0.1),
    C.get("top_entropy", rho=0.3),
]


def _split_run(tmp_path, per_device, ga, selection="global", pipeline=SELECTING):
    return H.train(
        Adapter, tmp_path / f"{per_device}x{ga}{selection}", per_device_train_batch_size=per_device,
        gradient_accumulation_steps=ga, steps_per_generation=ga, num_iterations=2,
        trainer_kwargs=dict(pipeline=pipeline, selection=selection, rollout_func=H.fixed_rollout),
    )  # fmt: skip


def test_global_selection_does_not_depend_on_micro_batches(tmp_path):
    """The same 8 rows per optimizer step, as 1, 2 or 4 micro-batches: the same parameters. Per micro-batch
    selection (TRL's layout) changes them, so the comparison can fail."""
    start = H.start_params()
    _, one = _split_run(tmp_path, 8, 1)
    for per_device, ga in ((4, 2), (2, 4)):
        _, other = _split_run(tmp_path, per_device, ga)
        assert H.rel_diff(other, one, start) < TOL, (per_device, ga)
    _, micro = _split_run(tmp_path, 2, 4, selection="micro_batch")
    assert H.rel_diff(micro, one, start) > 1e-3


def test_telemetry_and_controller_metrics_reach_trl_logs(tmp_path):
    tr, _ = _split_run(tmp_path, 4, 2)
    logged = {k for row in tr.state.log_history for k in row}
    for key in ("policy/entropy", "policy/cov_logp_adv", "policy/dH_pred_npg_per_lr", "adv/frac_zero",
                "ctrl/clip_cov/frac_detached", "ctrl/top_entropy/frac_kept", "loss/pg"):  # fmt: skip
        assert key in logged, key
    assert "entropy" not in logged  # TRL's own loss did not run
    h = [row["policy/entropy"] for row in tr.state.log_history if "policy/entropy" in row]
    assert all(0 < x < math.log(H.model_and_tokenizer()[0].config.vocab_size) + 1e-6 for x in h)


def test_state_survives_checkpoint_and_resume(tmp_path):
    """adaptive_entropy's coefficient is saved with TRL's checkpoint and restored on resume: the resumed
    run ends where the uninterrupted one does."""
    pipe = [
        C.get("grpo", eps=1e-4),
        C.get("ppo_clip"),
        C.get("adaptive_entropy", target=5.0, delta=0.01, c_max=0.1),
    ]
    kw = dict(pipeline=pipe, rollout_func=H.fixed_rollout)
    full, p_full = H.train(Adapter, tmp_path / "full", max_steps=4, trainer_kwargs=kw)
    H.train(Adapter, tmp_path / "part", max_steps=2, save_strategy="steps", save_steps=2, trainer_kwargs=kw)
    saved = json.loads((tmp_path / "part" / "checkpoint-2" / trl_grpo.STATE_FILE).read_text())
    key = "1:adaptive_entropy"  # the loss stage: ppo_clip, adaptive_entropy
    assert saved["state"]["loss"][key]["coef"] == pytest.approx(0.02)
    part = tmp_path / "part"
    resumed, params = H.train(
        Adapter, part, max_steps=4, save_strategy="steps", save_steps=2, trainer_kwargs=kw,
        resume=part / "checkpoint-2",
    )  # fmt: skip
    assert resumed.ctrl_state["loss"][key]["coef"] == pytest.approx(full.ctrl_state["loss"][key]["coef"])
    assert resumed.ctrl_state["loss"][key]["coef"] == pytest.approx(0.04)
    assert H.rel_diff(params, p_full, H.start_params()) < TOL


# -- every controller the adapter accepts runs; every other one is refused before training --------------


def _accepted(name: str) -> str | None:
    args = H.config("/tmp/unused")
    return C.contract.problem(C.get(name), trl_host(args))


@pytest.mark.parametrize("name", C.names())
def test_every_controller_runs_or_is_refused_before_training(name, tmp_path):
    ctrl = C.get(name)
    pipe = [ctrl] if ctrl.sources_signal() else [C.get("grpo", eps=1e-4), ctrl]
    why = _accepted(name)
    kw = dict(pipeline=pipe, rollout_func=H.fixed_rollout)
    if why is None:
        tr, params = H.train(
            Adapter, tmp_path, reward_funcs=H.binary_reward, max_steps=2, num_iterations=2, trainer_kwargs=kw
        )
        assert all(torch.isfinite(p).all() for p in params.values())
        assert any("policy/entropy" in row for row in tr.state.log_history)
    else:
        assert "\n" not in why
        with pytest.raises(ValueError) as e:
            H.train(Adapter, tmp_path, max_steps=2, trainer_kwargs=kw)
        assert str(e.value) == why
        assert not (tmp_path / "checkpoint-1").exists()


def test_the_accepted_set_is_what_trl_can_feed():
    """Who TRL refuses follows from the declarations, with no list of names to keep in step: a controller is
    refused exactly when it needs a field TRL's host lacks, or whole groups inside the loss when a loss call
    does not see whole groups (an optimizer step that is not a whole generation batch)."""

    def expected(host) -> set[str]:
        lacks, split = set(C.contract.FIELDS) - host.provides, host.loss_groups is not None
        return {
            n
            for n in C.names()
            if (C.get(n).needs() & lacks)
            or (split and C.get(n).whole_groups() and C.get(n).stage() == "loss")
        }

    split = H.config("/tmp/unused", steps_per_generation=2, gradient_accumulation_steps=1)
    for cfg in (H.config("/tmp/unused"), H.config("/tmp/unused", beta=0.1), split):
        host = trl_host(cfg)
        refused = {n for n in C.names() if C.contract.problem(C.get(n), host)}
        assert refused == expected(host) and refused  # some are refused: the rule is exercised
    assert "ref_kl" in expected(trl_host(H.config("/tmp/unused")))  # without beta TRL keeps no reference ...
    assert "ref_kl" not in expected(trl_host(H.config("/tmp/unused", beta=0.1)))  # ... with it, it does
    assert "nft" in expected(trl_host(split)) and "nft" not in expected(trl_host(H.config("/tmp/unused")))


# -- refusals ----------------------------------------------------------------------------------------------

REFUSED = {
    "loss_type": (dict(loss_type="sapo"), "^GRPOConfig.loss_type: got 'sapo'; allowed: dapo, grpo, dr_grpo"),
    "bnpo": (dict(loss_type="bnpo"), "^GRPOConfig.loss_type: got 'bnpo'"),
    "gspo": (
        dict(importance_sampling_level="sequence"),
        "^GRPOConfig.importance_sampling_level: got 'sequence'",
    ),
    "normalize_then_sum": (
        dict(multi_objective_aggregation="normalize_then_sum"),
        "^GRPOConfig.multi_objective_aggregation",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_engine_options_we_do_not_implement_are_refused(case, tmp_path):
    cfg, match = REFUSED[case]
    with pytest.raises(ValueError, match=match):
        H.train(Adapter, tmp_path, **cfg)


@pytest.mark.parametrize(
    "option,value",
    [("epsilon_high", 0.28), ("scale_rewards", "batch"), ("top_entropy_quantile", 0.2), ("entropy_coef", 0.01),
     ("use_adaptive_entropy", True), ("off_policy_mask_threshold", 0.5), ("delta", 2.0), ("epsilon", 0.1)],
)  # fmt: skip
def test_options_an_explicit_pipeline_would_override_are_refused(option, value, tmp_path):
    pipe = [C.get("grpo"), C.get("ppo_clip")]
    with pytest.raises(ValueError, match=f"^GRPOConfig.{option}: got {value!r}, which the pipeline would"):
        H.train(Adapter, tmp_path, trainer_kwargs=dict(pipeline=pipe), **{option: value})


def test_beta_without_a_kl_controller_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^GRPOConfig.beta: got 0.1, but no controller"):
        H.train(Adapter, tmp_path, beta=0.1, trainer_kwargs=dict(pipeline=[C.get("grpo")]))


@pytest.mark.parametrize("names", [["ppo_clip"], ["ppo_clip", "clip_cov"], []])
def test_a_pipeline_without_an_advantage_estimator_is_refused(names, tmp_path):
    """TRL's advantages are replaced by the pipeline's, which start from zero: without a controller that
    makes them from rewards the adapter would train on zero advantages (loss 0, unchanged parameters)."""
    with pytest.raises(ValueError, match=r"^controllers: got .*none of which makes advantages from rewards, "
                       r"so TRL's GRPOTrainer \(entrolab adapter\) would train on zero advantages"):  # fmt: skip
        H.train(Adapter, tmp_path, trainer_kwargs=dict(pipeline=[C.get(n) for n in names]))
    assert not (tmp_path / "checkpoint-1").exists()


def test_the_kl_term_is_the_pipelines_and_trls_settings_must_agree(tmp_path):
    """An explicit ref_kl sets the KL term: a different GRPOConfig.beta or bias correction is refused, the
    same one is accepted and is TRL's loss (test_parity_reference_kl)."""
    with pytest.raises(
        ValueError, match=r"^GRPOConfig.beta: got 0.04, but the pipeline's ref_kl has beta=0.001"
    ):
        H.train(Adapter, tmp_path, beta=0.04, trainer_kwargs=dict(pipeline=[C.get("grpo"), C.get("ref_kl")]))
    pipe = [C.get("grpo"), C.get("ref_kl", beta=0.04)]
    with pytest.raises(ValueError, match=r"^GRPOConfig.use_bias_correction_kl: got True, but the pipeline's "
                       r"ref_kl has importance=False"):  # fmt: skip
        H.train(Adapter, tmp_path, beta=0.04, trainer_kwargs=dict(pipeline=pipe))


def test_a_pipeline_spec_is_the_same_pipeline(tmp_path):
    """pipeline="..." takes the spec every entrolab command line takes (controllers.spec)."""
    with pytest.raises(ValueError, match=r"^GRPOConfig.use_bias_correction_kl: got True, but the pipeline's "
                       r"ref_kl has importance=False"):  # fmt: skip
        H.train(Adapter, tmp_path, beta=0.04, trainer_kwargs=dict(pipeline="grpo ref_kl beta=0.04"))
    with pytest.raises(ValueError, match=r"^pipeline: unknown controller 'nosuch'; allowed: acc_filter"):
        H.train(Adapter, tmp_path, trainer_kwargs=dict(pipeline="grpo nosuch"))


def test_ref_kl_without_beta_says_how(tmp_path):
    with pytest.raises(
        ValueError, match=r"needs ref_logp .*provides it with GRPOConfig\(beta=...\) non-zero"
    ):
        H.train(Adapter, tmp_path, trainer_kwargs=dict(pipeline=[C.get("grpo"), C.get("ref_kl")]))


def test_reference_resets_need_a_separate_reference_model(tmp_path):
    """With PEFT, TRL's reference is the adapter-free model: ProRL's reset cannot copy the policy into it,
    so ref_kl with a reset rule is refused before training."""
    from peft import LoraConfig

    pipe = [C.get("grpo"), C.get("ref_kl", beta=0.1, reset_every=2, importance=True)]
    lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    with pytest.raises(
        ValueError, match=r"^controllers: 'ref_kl' asks for the reference model to be reset.*PEFT"
    ):
        H.train(Adapter, tmp_path, beta=0.1, trainer_kwargs=dict(pipeline=pipe, peft_config=lora))


def test_bad_selection_and_misaligned_windows(tmp_path):
    with pytest.raises(ValueError, match=r"^selection: got 'batch'; allowed: global, micro_batch"):
        H.train(Adapter, tmp_path, trainer_kwargs=dict(selection="batch"))
    with pytest.raises(ValueError, match=r"^GRPOConfig.steps_per_generation: got 3"):
        H.train(Adapter, tmp_path, gradient_accumulation_steps=2, steps_per_generation=3)
    # per micro-batch, TRL's layout is accepted
    H.train(Adapter, tmp_path, gradient_accumulation_steps=2, steps_per_generation=3, max_steps=1,
            trainer_kwargs=dict(selection="micro_batch"))  # fmt: skip


def test_loss_stage_group_controllers_need_whole_groups_per_step(tmp_path):
    """dynamic_sampling compares a prompt's responses inside the loss: accepted when an optimizer step is
    the whole generation batch, refused when it is a part of it."""
    pipe = [C.get("grpo", eps=1e-4), C.get("dynamic_sampling"), C.get("ppo_clip")]
    H.train(Adapter, tmp_path / "a", trainer_kwargs=dict(pipeline=pipe, rollout_func=H.fixed_rollout))
    with pytest.raises(
        ValueError, match="'dynamic_sampling' compares the responses of one prompt inside the loss"
    ):
        H.train(Adapter, tmp_path / "b", steps_per_generation=2, trainer_kwargs=dict(pipeline=pipe))


def test_pipeline_from_grpo_config_is_trls_loss():
    args = H.config(
        "/tmp/unused", epsilon_high=0.28, beta=0.04, top_entropy_quantile=0.2, scale_rewards="batch"
    )
    pipe = pipeline_from_grpo_config(args)
    got = [(c.name, c.hyperparameters()) for c in pipe.controllers]
    assert got[0] == ("grpo", {"scale": "batch", "eps": 1e-4, "singleton": "zero"})
    assert got[1] == ("ppo_clip", {"eps_lo": 0.2, "eps_hi": 0.28, "dual_clip": None})
    assert ("top_entropy", {"rho": 0.2, "side": "top"}) in got
    assert ("ref_kl", {"beta": 0.04, "estimator": "k3", "reset_every": None, "reset_kl": None,
                       "importance": True}) in got  # fmt: skip


def test_unscorable_completions_are_refused(tmp_path):
    def none_reward(prompts, completions, **kw):
        return [None] * len(completions)

    with pytest.raises(
        ValueError, match=r"^reward_funcs: every reward function returned None for 4 completion"
    ):
        H.train(Adapter, tmp_path, reward_funcs=none_reward)


def _two_processes(tmp_path, *extra):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from tests.llm.test_dist import _free_port

    root = Path(__file__).parents[2]
    shutil.copy(Path(__file__).with_name("trl_two_procs.py"), tmp_path / "trl_two_procs.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    dest = tmp_path / f"two{''.join(extra)}.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), "trl_two_procs.py", str(dest), *extra]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return torch.load(dest)


def test_two_processes_equal_one_holding_every_row(tmp_path):
    """torchrun, 2 CPU processes (gloo), 4 rows each, a group on each rank: the parameters, the controller
    state and the token count equal one process with all 8 rows, because KL-Cov's and the 80/20 mask's
    selections are gathered over the ranks; selecting per rank (the control) changes the parameters."""
    two = _two_processes(tmp_path)
    pipe = H.across_ranks_pipeline()
    one, params = H.train(
        Adapter, tmp_path / "one", per_device_train_batch_size=8, num_iterations=2,
        trainer_kwargs=dict(pipeline=pipe, rollout_func=H.fixed_rollout),
    )  # fmt: skip
    start = H.start_params()
    assert H.rel_diff(two["params"], params, start) < TOL
    assert two["state"] == one.ctrl_state
    mine = [row["policy/n_tokens"] for row in one.state.log_history if "policy/n_tokens" in row]
    assert [row["policy/n_tokens"] for row in two["logged"]] == mine
    local = _two_processes(tmp_path, "local")
    assert H.rel_diff(local["params"], params, start) > 1e-3
