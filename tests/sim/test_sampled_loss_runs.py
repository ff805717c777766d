"""The per-run loss of pipelines that are not separable (``Simulator.sampled_loss`` off the fast path) makes
every run's batch once and sends the leaves' gradients through one backward pass: it gives the same
logits, metrics, controller states, stopped runs and random stream, to the bit, as one batch and one graph
per run (the reference below, the loop it replaced), for every registered controller."""

import pytest
import torch

import controllers as C
from sim.run import SimConfig, Simulator
from tests.sim.test_contract import _controllers


def _per_run_reference(sim: Simulator):
    """The loop ``sampled_loss`` replaced: one TokenBatch and one graph per run, the losses summed."""

    def sampled_loss(s, z, roll, prompts):
        total = torch.zeros((), dtype=sim.dtype, device=sim.device)
        metrics = []
        for i in range(z.shape[0]):
            if s.dead[i] is not None:
                metrics.append({})
                continue
            b = sim.token_batch(z, roll, slice(i, i + 1), prompts)
            try:
                loss, m = C.policy_loss(b, sim.pipe, s.ctrl[i], agg=sim.cfg.agg, generator=s.gen)
            except RuntimeError as e:
                s.dead[i] = f"step {s.step}: {e}"
                metrics.append({})
                continue
            total = total + loss
            metrics.append(m)
        return total, metrics

    return sampled_loss


def _run(cfg: SimConfig, steps: int, reference: bool, poison: int | None = None):
    sim = Simulator(cfg)
    sim.fast = False  # the per-run path, whatever the pipeline declares
    if reference:
        sim.sampled_loss = _per_run_reference(sim)
    s = sim.init_state()
    if poison is not None:  # this run's logits sit at the float64 maximum: a large step overflows them
        s.z[poison, :, :3] = 1.797e308
    out = [sim.step(s, measure=False)["batch"] for _ in range(steps)]
    return s, out


def _same(a, b):
    (sa, oa), (sb, ob) = a, b
    assert torch.equal(sa.z, sb.z)
    assert sa.dead == sb.dead and sa.step == sb.step
    assert torch.equal(sa.gen.get_state(), sb.gen.get_state())
    assert repr(sa.ctrl) == repr(sb.ctrl)
    assert oa == ob


TREE = {"n_prompts": 3, "vocab": 3, "horizon": 3, "seed": 4}


@pytest.mark.parametrize("name", C.names())
def test_every_controller_gets_the_same_per_run_step_to_the_bit(name):
    cfg = SimConfig(env="token_tree", env_kwargs=TREE, update="ppo", epochs=2, minibatches=2,
                    controllers=_controllers(name), runs=4, steps=3, lr=0.7, group_size=4,
                    guide=1)  # fmt: skip
    _same(_run(cfg, 3, False), _run(cfg, 3, True))


@pytest.mark.parametrize("policy", ["loglinear", "mlp"])
def test_shared_parameters_get_the_same_step_to_the_bit(policy):
    cfg = SimConfig(env="token_tree", env_kwargs=TREE, update="grpo", controllers=("grpo", "clip_cov"),
                    runs=3, steps=3, lr=0.5, group_size=4, policy=policy)  # fmt: skip
    _same(_run(cfg, 3, False), _run(cfg, 3, True))


def test_a_run_that_goes_non_finite_stops_the_same_way():
    cfg = SimConfig(env="bandit", env_kwargs={"n_prompts": 4, "n_arms": 6, "seed": 1}, update="grpo",
                    controllers=("grpo", "clip_cov"), runs=4, steps=3, lr=1e306, group_size=4)  # fmt: skip
    a, b = _run(cfg, 3, False, poison=2), _run(cfg, 3, True, poison=2)
    assert [d is not None for d in a[0].dead] == [False, False, True, False], a[0].dead
    _same(a, b)
