"""The simulator's issue-8 signals: the exact step judge, the guide (optimal) policy's rows, the n-gram
embedding in the batch, and their configuration errors."""

import itertools

import pytest
import torch

from sim import tree as tr
from sim.run import SimConfig, Simulator
from tests.sim.helpers import fast_vs_slow, run_interrupted

TREE = {"n_prompts": 3, "vocab": 3, "horizon": 3, "fork_frac": 0.5, "correct_frac": 0.3, "seed": 4}


def _cfg(**kw):
    base = {"env": "token_tree", "env_kwargs": TREE, "update": "grpo", "runs": 2, "steps": 3, "lr": 0.5}
    return SimConfig(**{**base, **kw})


def test_step_judge_is_brute_force_reachability():
    """A token is a correct step iff some best-reward leaf of its prompt starts with the prefix so far."""
    sim = Simulator(_cfg(controllers=("grpo", "step_credit")))
    s = sim.init_state()
    roll = sim.rollout(s.z, s.gen)
    V, T = 3, 3
    leaves = list(itertools.product(range(V), repeat=T))
    R, P, G, _ = roll["tokens"].shape
    n_ok = 0
    for r, p, g in itertools.product(range(R), range(P), range(G)):
        toks = roll["tokens"][r, p, g].tolist()
        best = float(sim.rewards[p].max())
        for t in range(T):
            want = best > 0 and any(
                float(sim.rewards[p, tr.leaf_index(sim.shape, torch.tensor(leaf))]) == best
                for leaf in leaves
                if list(leaf[: t + 1]) == toks[: t + 1]
            )
            assert bool(roll["step_correct"][r, p, g, t]) == want
            n_ok += want
    assert 0 < n_ok < R * P * G * T  # both kinds occur


def test_guide_rows_come_from_the_optimal_policy():
    G, n_guide = 6, 2
    sim = Simulator(_cfg(controllers=("grpo", "luffy"), group_size=G, guide=n_guide))
    s = sim.init_state()
    roll = sim.rollout(s.z, s.gen)
    b = sim.token_batch(s.z, roll, slice(None), torch.arange(3))
    guide = b.guide.reshape(2, 3, G)
    assert guide[..., -n_guide:].all() and not guide[..., :-n_guide].any()
    best = sim.rewards.max(-1).values  # (P,)
    torch.testing.assert_close(roll["p_correct"][..., -n_guide:], best[None, :, None].expand(2, 3, n_guide))
    # guide rows' behaviour log-prob is the guide's (uniform over optimal tokens: log 1/k, k ≥ 1)
    assert bool((b.old_logp.reshape(2, 3, G, 3)[..., -n_guide:, :] <= 1e-12).all())
    assert fast_vs_slow(_cfg(controllers=("grpo", "luffy"), group_size=G, guide=n_guide, runs=2), 2)


def test_diversity_reward_gets_the_ngram_embedding_and_takes_the_fast_path():
    cfg = _cfg(controllers=("grpo", "diversity_reward"))
    sim = Simulator(cfg)
    s = sim.init_state()
    roll = sim.rollout(s.z, s.gen)
    b = sim.token_batch(s.z, roll, slice(None), torch.arange(3))
    assert b.embedding is not None and b.embedding.shape[0] == b.logp.shape[0]
    torch.testing.assert_close(b.embedding.sum(-1), torch.full((b.logp.shape[0],), 5.0, dtype=torch.float64))
    assert fast_vs_slow(cfg, 2)
    assert not fast_vs_slow(
        _cfg(
            controllers=("grpo", "diversity_reward"), hyperparameters={"diversity_reward": {"scope": "batch"}}
        ),
        2,
    )


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        (
            {"guide": 8},
            r"^guide: got 8; allowed: 0, or with a sampled update on bandit/token_tree an integer < group_size = 8$",
        ),
        ({"guide": -1}, r"^guide: got -1; allowed: an integer >= 0$"),
        ({"guide": 1, "update": "exact_pg", "controllers": ()}, r"^guide: got 1"),
        ({"guide": 1, "env": "FrozenLake-v1", "env_kwargs": {}}, r"^guide: got 1"),
        (
            {"env": "FrozenLake-v1", "env_kwargs": {}, "controllers": ("grpo", "step_credit")},
            r"^controllers: 'step_credit' needs step_correct \(.*\); the simulator on FrozenLake-v1 provides it with --env bandit or token_tree",
        ),
    ],
)
def test_bad_guide_and_tree_only_controllers(kw, needle):
    with pytest.raises(ValueError, match=needle):
        _cfg(**kw)


def test_vapo_critic_starts_exact_and_regresses_on_returns(tmp_path, monkeypatch):
    from sim.run import run

    cfg = _cfg(controllers=("vapo",), critic_lr=1.0, steps=1, runs=2)
    sim = Simulator(cfg)
    s = sim.init_state()
    exact_v = sim.model.exact(sim.prior[None]).v[0]
    torch.testing.assert_close(s.value[1], exact_v)
    roll = sim.rollout(s.z, s.gen)
    v0 = s.value.clone()
    sim._fit_critic(s, roll, torch.arange(3))
    # with critic_lr = 1 a visited state's value is the mean return of the episodes through it
    st, ret = roll["states"][0], roll["reward"][0]  # (P, G, T), (P, G)
    for state in torch.unique(st).tolist():
        hit = (st == state).any(-1)  # (P, G) episodes that visit it
        assert float(s.value[0, state]) == pytest.approx(float(ret[hit].mean()))
    unseen = torch.ones(s.value.shape[1], dtype=torch.bool)
    unseen[torch.unique(st)] = False
    torch.testing.assert_close(s.value[0, unseen], v0[0, unseen])
    # the critic is part of the checkpoint: an interrupted run resumes to the same numbers
    a, b = tmp_path / "a", tmp_path / "b"
    long = _cfg(controllers=("vapo",), steps=5, checkpoint_every=2)
    run(long, a, progress=False)
    run_interrupted(monkeypatch, long, b, at_call=4)
    run(long, b, progress=False)
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
