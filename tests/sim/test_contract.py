"""The simulator as a host of the controller contract: every registered controller it accepts runs a step,
every controller that declares itself separable gets the same logits from the one-call fast path as from
one call per run (to 1e-12), and what it cannot feed is refused before any work."""

import dataclasses

import pytest
import torch

import controllers as C
from sim.run import SimConfig, Simulator
from tests.sim.helpers import fast_vs_slow

SMALL_TREE = {"n_prompts": 2, "vocab": 3, "horizon": 3, "fork_frac": 0.5, "seed": 1}


def _controllers(name: str) -> tuple[str, ...]:
    """The controller with an advantage estimator where it needs one: reward shapers before grpo, the rest
    after it (an estimator replaces grpo's advantages)."""
    if name == "grpo":
        return (name,)
    return (name, "grpo") if "rewards" in C.get(name).acts_on() else ("grpo", name)


def _cfg(name, hp=None, env="token_tree", **kw):
    base = dict(
        env=env, env_kwargs=SMALL_TREE if env == "token_tree" else {"horizon": 6}, update="ppo", epochs=2,
        minibatches=2, controllers=_controllers(name), hyperparameters={name: hp} if hp else {}, runs=3,
        steps=2, lr=0.7, group_size=4, guide=1 if env == "token_tree" else 0,
    )  # fmt: skip
    return SimConfig(**{**base, **kw})


@pytest.mark.parametrize("name", C.names())
def test_every_controller_runs_and_separable_ones_take_an_exact_fast_path(name):
    cfg = _cfg(name)
    sim = Simulator(cfg)
    declared = sim.pipe.separable(equal_lengths=True)
    assert sim.fast == declared
    if declared:
        assert fast_vs_slow(cfg, 2)  # asserts the logits agree to 1e-12
    else:
        s = sim.init_state()
        for _ in range(2):
            sim.step(s)
        assert all(d is None for d in s.dead), s.dead
        assert bool(torch.isfinite(s.z).all())


@pytest.mark.parametrize(
    ("name", "hp"),
    [("grpo", {"scale": "batch"}), ("unlikeliness", {"scale": "batch"}), ("seed_grpo", {"scale": "batch"}),
     ("diversity_reward", {"scope": "batch"})],
)  # fmt: skip
def test_hyperparameters_that_mix_runs_leave_the_fast_path(name, hp):
    """The defect this pins: grpo(scale="batch") was on a name list of separable controllers, so the fast path
    took one reward std over all runs and one step left the logits 0.017 away from the per-run path."""
    cfg = _cfg(name, hp, env="bandit", env_kwargs={"n_prompts": 4, "n_arms": 6, "seed": 1}, update="grpo",
               epochs=1, minibatches=1, guide=0, runs=4, steps=1)  # fmt: skip
    assert fast_vs_slow(cfg, 1) is False
    # and the per-run path is the one that is right: each run alone, as its own simulator, gets the same step
    sim = Simulator(cfg)
    s = sim.init_state()
    sim.step(s)
    one = Simulator(dataclasses.replace(cfg, runs=1))
    s1 = one.init_state()
    one.step(s1)
    torch.testing.assert_close(s.z[0], s1.z[0], rtol=0, atol=1e-12)


def test_step_judgements_are_refused_off_the_trees_before_work():
    with pytest.raises(
        ValueError,
        match=r"^controllers: 'step_credit' needs step_correct \(.*\); the simulator on FrozenLake-v1 provides it with --env bandit or token_tree",
    ):
        SimConfig(env="FrozenLake-v1", controllers=("grpo", "step_credit"))  # fmt: skip


def test_group_comparisons_need_two_responses_per_prompt():
    with pytest.raises(ValueError, match=r"^group_size: got 1; allowed: an integer >= 2 \('grpo' compares"):
        SimConfig(controllers=("grpo",), group_size=1)
    SimConfig(controllers=("psr",), group_size=1)  # PSR compares nothing
