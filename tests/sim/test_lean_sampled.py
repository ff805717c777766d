"""The chunked sampled step (``Simulator._lean_sampled_step``, taken by unlogged steps of the fast path) gives
the same logits, controller states, telemetry, stopped runs and random stream, to the bit, as the whole-table
step, for every registered controller the fast path accepts; and the chunked sampler draws what one whole
pass draws."""

import dataclasses

import pytest
import torch

import controllers as C
from sim import tree as tr
from sim.run import SimConfig, Simulator
from tests.sim.test_contract import _controllers

BANDIT = {"n_prompts": 4, "n_arms": 6, "seed": 1}


def _run(cfg: SimConfig, steps: int, lean: bool, monkeypatch, chunk_bytes: int, poison: int | None = None):
    monkeypatch.setattr(tr, "CHUNK_BYTES", chunk_bytes)
    sim = Simulator(cfg)
    if not lean:
        monkeypatch.setattr(sim, "_lean_sampled", lambda s: False)
    s = sim.init_state()
    if poison is not None:  # this run's logits sit at the float64 maximum: a large step overflows them
        s.z[poison, :, :3] = 1.797e308
    out = [sim.step(s, measure=False) for _ in range(steps)]
    return sim, s, out


def _same(a, b):
    sa, sb = a[1], b[1]
    assert torch.equal(sa.z, sb.z)
    assert sa.dead == sb.dead and sa.step == sb.step
    assert torch.equal(sa.gen.get_state(), sb.gen.get_state())
    assert repr(sa.ctrl) == repr(sb.ctrl)
    assert [o["batch"] for o in a[2]] == [o["batch"] for o in b[2]]


@pytest.mark.parametrize("name", C.names())
def test_every_fast_path_controller_gets_the_same_step_to_the_bit(name, monkeypatch):
    cfg = SimConfig(env="bandit", env_kwargs=BANDIT, update="grpo", controllers=_controllers(name), runs=5,
                    steps=3, lr=0.7, group_size=4)  # fmt: skip
    probe = Simulator(cfg)
    state = probe.init_state()
    lean = probe._lean_sampled(state)
    assert lean == (probe.fast and state.value is None)  # a critic (vapo) keeps the whole-table step
    if not lean:
        return
    row = 4 * 6 * 8  # one run's table in bytes: chunks of 2 runs, the last one short
    _same(_run(cfg, 3, True, monkeypatch, 2 * row), _run(cfg, 3, False, monkeypatch, 10**9))


def test_a_run_that_goes_non_finite_stops_the_same_way(monkeypatch):
    cfg = SimConfig(env="bandit", env_kwargs=BANDIT, update="grpo", controllers=("grpo",), runs=4, steps=2,
                    lr=1e306, group_size=4)  # fmt: skip
    lean, whole = _run(cfg, 2, True, monkeypatch, 192, 2), _run(cfg, 2, False, monkeypatch, 10**9, 2)
    assert [d is not None for d in lean[1].dead] == [False, False, True, False], lean[1].dead
    _same(lean, whole)


def test_trees_and_unfit_configurations():
    tree = SimConfig(env="token_tree", env_kwargs={"n_prompts": 2, "vocab": 3, "horizon": 2, "seed": 1},
                     update="grpo", controllers=("grpo",), runs=2, group_size=8)  # fmt: skip
    sim = Simulator(tree)
    assert sim._lean_sampled(sim.init_state())  # 8 states ≤ 2 prompts × 8 × 2 tokens
    for kw in (
        {"update": "ppo", "epochs": 2},
        {"optimizer": "adam"},
        {"update": "exact_pg", "controllers": ()},
    ):
        cfg = dataclasses.replace(tree, **kw)
        sim = Simulator(cfg)
        assert not sim._lean_sampled(sim.init_state()), kw


def test_tree_step_to_the_bit(monkeypatch):
    cfg = SimConfig(env="token_tree", env_kwargs={"n_prompts": 3, "vocab": 4, "horizon": 2, "seed": 2},
                    update="grpo", controllers=("grpo", "entropy_bonus"), runs=5, steps=3, lr=0.5,
                    group_size=8)  # fmt: skip
    _same(_run(cfg, 3, True, monkeypatch, 1), _run(cfg, 3, False, monkeypatch, 10**9))


@pytest.mark.parametrize("horizon", [1, 3])
def test_chunked_sampler_draws_what_one_pass_draws(horizon, monkeypatch):
    shape = tr.TreeShape(n_prompts=3, vocab=4, horizon=horizon)
    z = torch.randn(7, shape.n_states, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    draws = []
    for chunk_bytes in (1, 10**9):
        monkeypatch.setattr(tr, "CHUNK_BYTES", chunk_bytes)
        draws.append(tr.sample(shape, z, 5, torch.Generator().manual_seed(3)))
    assert len(tr.run_chunks(7, 10**9, "cpu")) == 7 and tr.run_chunks(7, 1, "cuda") == [(0, 7)]
    for a, b in zip(draws[0], draws[1], strict=True):
        assert torch.equal(a, b)
