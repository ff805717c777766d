"""The simulator loop: update rules, the controllers round-trip, Lemma 1 on every environment,
resume after interruption, a run that goes non-finite, the command line."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import controllers as C
import theory
from sim import tree as tr
from sim.__main__ import main
from sim.presets import PRESETS as PRESETS_SIM
from sim.run import SimConfig, Simulator, read_metrics, run
from tests.sim.helpers import fast_vs_slow, run_interrupted

SMALL_BANDIT = {"n_prompts": 4, "n_arms": 6, "seed": 1}
SMALL_TREE = {"n_prompts": 2, "vocab": 3, "horizon": 3, "fork_frac": 0.5, "seed": 1}


def _sim(**kw):
    base = {"env": "bandit", "env_kwargs": SMALL_BANDIT, "runs": 3, "steps": 5, "lr": 0.5}
    return Simulator(SimConfig(**{**base, **kw}))


@pytest.mark.parametrize(("update", "reference"), [("exact_pg", theory.pg_dz), ("exact_npg", theory.npg_dz)])
def test_exact_step_is_the_theory_step(update, reference):
    sim = _sim(update=update, controllers=())
    s = sim.init_state()
    z0 = s.z.clone().numpy()
    sim.step(s)
    np.testing.assert_allclose(s.z.numpy() - z0, reference(z0, sim.spec.rewards, 0.5), atol=1e-14)


@pytest.mark.parametrize("env", ["bandit", "token_tree"])
@pytest.mark.parametrize("update", ["exact_pg", "exact_npg", "grpo"])
def test_realised_over_predicted_dH_tends_to_one(env, update):
    """Lemma 1 on the simulator's own steps: realised − predicted ΔH is second order in the step, so it
    falls ~100× per 10× smaller lr while the prediction falls 10× (a ratio of sums can cancel across
    prompts, so the test is on the difference)."""
    gaps, preds = [], []
    for lr in (0.1, 0.01, 0.001):
        kw = SMALL_BANDIT if env == "bandit" else SMALL_TREE
        ctrl = () if update.startswith("exact") else ("grpo",)
        sim = Simulator(
            SimConfig(env=env, env_kwargs=kw, update=update, controllers=ctrl, runs=4, steps=1, lr=lr)
        )
        m = sim.step(sim.init_state())
        gaps.append((m["dH_realized"] - m["dH_predicted"]).abs())
        preds.append(m["dH_predicted"].abs())
    live = preds[0] > 1e-9
    assert bool(live.any())
    for big, small in ((0, 1), (1, 2)):
        assert bool((gaps[small][live] < gaps[big][live] / 50).all())
        torch.testing.assert_close(preds[small][live] * 10, preds[big][live], rtol=1e-9, atol=0)
    assert bool((gaps[2][live] < 0.05 * preds[2][live]).all())  # NPG on the bandit: 3% (prompts cancel)


@pytest.mark.parametrize("G", [8, 2])  # 26 states: 48 tokens use the table branch, 12 the row branch
def test_sampled_batch_is_the_policy_at_the_visited_states(G):
    sim = _sim(env="token_tree", env_kwargs=SMALL_TREE, update="grpo", group_size=G)
    s = sim.init_state()
    roll = sim.rollout(s.z, s.gen)
    b = sim.token_batch(s.z, roll, slice(0, 1), torch.arange(2))
    logp = torch.log_softmax(s.z[0], -1)
    st, tok = roll["states"][0], roll["tokens"][0]  # (P, G, T)
    torch.testing.assert_close(b.logp.reshape(st.shape), logp[st, tok])
    torch.testing.assert_close(b.entropy.reshape(st.shape), tr.state_entropy(s.z)[0][st])
    leaf = tr.leaf_index(sim.shape, tok)
    torch.testing.assert_close(b.reward.reshape(leaf.shape), sim.rewards[torch.arange(2)[:, None], leaf])
    assert b.group.tolist() == [0] * G + [1] * G
    ref = torch.log_softmax(sim.prior, -1)[st, tok]
    torch.testing.assert_close(b.ref_logp.reshape(st.shape), ref)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("update", ["grpo", "ppo"])
def test_fast_path_equals_per_run_policy_loss(agg, update):
    """All runs in one policy_loss call (stateless per-group pipeline) = one call per run."""
    cfg = SimConfig(
        env="token_tree", env_kwargs=SMALL_TREE, update=update, epochs=2, minibatches=2, agg=agg,
        controllers=("grpo", "ppo_clip"), runs=3, steps=3, lr=0.7,
    )  # fmt: skip
    assert fast_vs_slow(cfg, 3)


@pytest.mark.parametrize(
    ("env", "bonus_agg", "fast"),
    [
        ("token_tree", "token-mean", True),
        ("token_tree", "seq-mean-token-sum-norm", True),  # a mean over sequences since Dr. GRPO's fix
        ("FrozenLake-v1", "token-mean", False),  # episodes of unequal lengths: a token mean mixes runs
        ("FrozenLake-v1", "seq-mean-token-mean", True),
    ],
)
def test_entropy_bonus_takes_the_fast_path_when_it_aggregates_like_the_loss(env, bonus_agg, fast):
    kw = SMALL_TREE if env == "token_tree" else {"horizon": 6}
    cfg = SimConfig(
        env=env, env_kwargs=kw, update="grpo", controllers=("grpo", "entropy_bonus"), agg="seq-mean-token-mean",
        hyperparameters={"entropy_bonus": {"coef": 0.3, "agg": bonus_agg}}, runs=3, steps=2, lr=0.7,
    )  # fmt: skip
    assert fast_vs_slow(cfg, 2) == fast


def test_stateful_controllers_keep_one_state_per_run():
    cfg = SimConfig(
        env="bandit", env_kwargs=SMALL_BANDIT, update="grpo", controllers=("grpo", "adaptive_entropy"),
        hyperparameters={"adaptive_entropy": {"target": 5.0, "delta": 1e-3}}, runs=2, steps=3,
    )  # fmt: skip
    sim = Simulator(cfg)
    s = sim.init_state()
    for _ in range(3):
        m = sim.step(s)
    assert not sim.fast
    assert [st["1:adaptive_entropy"]["coef"] for st in s.ctrl] == pytest.approx([3e-3, 3e-3])
    assert "ctrl/adaptive_entropy/coef" in m["batch"][0]


def test_clip_cov_in_the_simulator_detaches_tokens():
    cfg = SimConfig(
        env="token_tree", env_kwargs=SMALL_TREE, update="grpo", controllers=("grpo", "clip_cov"),
        hyperparameters={"clip_cov": {"frac": 0.05, "lb": -10.0, "ub": 10.0}}, runs=2, steps=1,
    )  # fmt: skip
    sim = Simulator(cfg)
    m = sim.step(sim.init_state())
    n = 2 * 8 * 3  # prompts × G × horizon tokens per run
    assert m["batch"][0]["ctrl/clip_cov/frac_detached"] == pytest.approx(np.ceil(0.05 * n) / n)


def test_adam_and_bit_reproducible():
    cfg = SimConfig(
        env="bandit", env_kwargs=SMALL_BANDIT, update="grpo", optimizer="adam", runs=2, steps=4, lr=0.05
    )
    outs = []
    for _ in range(2):
        sim = Simulator(cfg)
        s = sim.init_state()
        for _ in range(4):
            sim.step(s)
        outs.append(s.z.detach().clone())
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], Simulator(cfg).init_state().z.detach())


def test_run_writes_metrics_and_resumes_identically(tmp_path, monkeypatch):
    cfg = SimConfig(
        env="token_tree",
        env_kwargs=SMALL_TREE,
        update="ppo",
        epochs=2,
        controllers=("grpo", "ppo_clip"),
        runs=2,
        steps=8,
        checkpoint_every=3,
    )
    full = read_metrics(run(cfg, tmp_path / "full", progress=False))
    need = {
        "step",
        "run",
        "entropy",
        "dH_realized",
        "dH_predicted",
        "success",
        "pass@1",
        "pass@1024",
        "cov_pg",
        "cov_npg",
    }
    assert need <= full[0].keys()
    assert len(full) == 2 * 8
    meta = json.loads((tmp_path / "full" / "config.json").read_text())
    assert meta["config"]["steps"] == 8 and "torch" in meta["versions"]

    run_interrupted(monkeypatch, cfg, tmp_path / "cut", at_call=7)
    resumed = read_metrics(run(cfg, tmp_path / "cut", progress=False))
    assert resumed == full  # the rows after the last checkpoint were dropped and recomputed identically
    with pytest.raises(ValueError, match=r"^out_dir: .* holds a run with another config"):
        run(dataclasses.replace(cfg, lr=0.2), tmp_path / "cut", progress=False)


def test_a_run_that_goes_non_finite_stops_alone(tmp_path, monkeypatch):
    cfg = SimConfig(
        env="bandit",
        env_kwargs=SMALL_BANDIT,
        update="exact_pg",
        controllers=(),
        runs=3,
        steps=4,
        checkpoint_every=0,
    )
    original = tr.pg_dz

    def poisoned(ex):
        d = original(ex)
        d[1, 0, 0] = float("nan")
        return d

    monkeypatch.setattr(tr, "pg_dz", poisoned)
    out = run(cfg, tmp_path / "nan", progress=False)
    rows = read_metrics(out)
    assert {r["run"] for r in rows if r["step"] == 3} == {0, 2}
    assert all(np.isfinite(r["entropy"]) for r in rows)
    meta = json.loads((out / "config.json").read_text())
    assert meta["dead_runs"] == {"1": "step 0: non-finite logits after the update"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--env", "gridworld"], "error: env: got 'gridworld'; allowed: bandit, token_tree"),
        (["--lr", "-1"], "error: lr: got -1.0; allowed: a finite number > 0"),
        (["--seed", "-1"], "error: seed: got -1; allowed: an integer >= 0 and < 2**63"),
        (["--seed", str(2**70)], f"error: seed: got {2**70}; allowed: an integer >= 0 and < 2**63"),
        (["--group-size", "1"], "error: group_size: got 1; allowed: an integer >= 2"),
        (
            ["--controllers", "grpo", "clipcov"],
            "error: --controllers: unknown controller 'clipcov'; allowed:",
        ),
        (["--env", "token_tree", "--env-kw", "horizon=0"], "error: horizon: got 0"),
        (
            ["--update", "exact_pg", "--controllers", "grpo"],
            "error: controllers: got 'grpo'; allowed: none with an exact update",
        ),
        (
            ["--hp", "clip_cov.frac=0.1"],
            "error: --hp: got 'clip_cov.frac=0.1'; allowed: hyperparameters of the chosen controllers (grpo)",
        ),
        (
            ["--controllers", "grpo", "clip_cov", "--hp", "clip_cov.frac=" + "9" * 401],
            "error: clip_cov.frac: got an integer of 401 digits; allowed: a real number within a float's range",
        ),
        (
            ["--controllers", "ppo_clip"],
            "error: controllers: got ['ppo_clip'], none of which makes advantages",
        ),
        (
            ["--controllers", "grpo", "ppo_clip", "nft"],
            "error: controllers: 'ppo_clip' and 'nft' each define the PG surrogate",
        ),
    ],
)
def test_cli_bad_input_is_one_line(argv, needle, tmp_path, capsys):
    assert main(["run", *argv, "--out-dir", str(tmp_path), "--name", "x", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(needle) and "\n" not in err
    assert not (tmp_path / "x").exists()  # nothing started


def test_cli_runs_a_preset(tmp_path, capsys):
    assert (
        main(
            ["run", "--preset", "quick", "--steps", "3", "--out-dir", str(tmp_path), "--name", "q", "--quiet"]
        )
        == 0
    )
    assert "grpo on bandit, 8 runs × 3 steps" in capsys.readouterr().out
    assert len(read_metrics(tmp_path / "q")) == 8 * 3


def test_pipeline_is_the_controllers_pipeline():
    sim = _sim(update="grpo", controllers=("qae", "ppo_clip"), hyperparameters={"qae": {"k": 0.6}})
    assert isinstance(sim.pipe, C.Pipeline)
    assert [c.name for c in sim.pipe.controllers] == ["qae", "ppo_clip"] and sim.pipe.controllers[0].k == 0.6


@pytest.mark.parametrize("update", ["exact_pg", "exact_npg"])
@pytest.mark.parametrize("compiled", [False, True])
def test_unlogged_exact_bandit_steps_take_the_lean_kernel_with_identical_results(tmp_path, update, compiled):
    base = dict(env="bandit", env_kwargs=SMALL_BANDIT, update=update, controllers=(), runs=3, steps=7, lr=0.7)
    every = run(SimConfig(**base, log_every=1), tmp_path / "a", progress=False)
    sparse = run(SimConfig(**base, log_every=3, compile=compiled), tmp_path / "b", progress=False)
    rows_a, rows_b = read_metrics(every), read_metrics(sparse)
    assert sorted({r["step"] for r in rows_b}) == [0, 3, 6]
    for rb in rows_b:
        ra = next(r for r in rows_a if r["step"] == rb["step"] and r["run"] == rb["run"])
        assert rb["entropy"] == pytest.approx(ra["entropy"], rel=1e-12, abs=1e-14)
        assert rb["success"] == pytest.approx(ra["success"], rel=1e-12, abs=1e-14)
    sim = Simulator(SimConfig(**base, log_every=3))
    s = sim.init_state()
    assert set(sim.step(s, measure=False)) == {"batch"}  # the lean path measures nothing


def test_lean_path_stops_a_run_whose_logits_go_non_finite(monkeypatch):
    from sim import lean

    original = lean.bandit_step

    def poisoned(z, r, lr, natural):
        new, _ = original(z, r, lr, natural)
        new = new.clone()
        new[1, 0, 0] = float("inf")
        return new, new.sum(-1)

    monkeypatch.setattr(lean, "bandit_step", poisoned)
    sim = Simulator(
        SimConfig(env="bandit", env_kwargs=SMALL_BANDIT, update="exact_pg", controllers=(), runs=3)
    )
    s = sim.init_state()
    z0 = s.z.clone()
    sim.step(s, measure=False)
    assert s.dead == [None, "step 0: non-finite logits after the update", None]
    assert torch.equal(s.z[1], z0[1]) and not torch.equal(s.z[0], z0[0])
    assert bool(torch.isfinite(s.z).all())


def test_lean_kernel_chunks_of_runs_change_no_bit(monkeypatch):
    """The CPU lean kernel's chunks of ``LEAN_CHUNK_BYTES`` (``tree.run_chunks`` with that budget): one run
    per chunk and all runs in one chunk give the same logits to the bit."""
    from sim import lean

    real, seen, out = lean.tr.run_chunks, [], []

    def spy(*a, **k):
        chunks = real(*a, **k)
        seen.append(len(chunks))
        return chunks

    monkeypatch.setattr(lean.tr, "run_chunks", spy)
    for budget in (1, 10**9):
        monkeypatch.setattr(lean, "LEAN_CHUNK_BYTES", budget)
        cfg = SimConfig(
            env="bandit", env_kwargs=SMALL_BANDIT, update="exact_npg", controllers=(), runs=3, lr=0.7
        )
        sim = Simulator(cfg)
        s = sim.init_state()
        seen.clear()
        for _ in range(3):
            sim.step(s, measure=False)
        assert seen == [3 if budget == 1 else 1] * 3
        out.append(s.z.clone())
    assert torch.equal(out[0], out[1])
    assert tr.run_chunks(10, 100, "cpu", 300) == [(0, 3), (3, 6), (6, 9), (9, 10)]


def _quick(tmp_path, name="q", *extra):
    return ["run", "--preset", "quick", "--steps", "4", "--checkpoint-every", "2", "--out-dir", str(tmp_path), "--name", name,
            "--quiet", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--out-dir", "/proc", "--name", "x"], "error: out_dir: cannot write to '/proc/x'"),
        (["--runs", "10000000"], "error: runs: got 10000000; allowed: at most about"),
        (["--group-size", "100000000"], "error: group_size: got 100000000; allowed: at most about"),
        (
            ["--env-kw", "n_prompts=100000", "n_arms=100000"],
            "error: n_arms: got 100000; allowed: P·n ≤ 20,000,000",
        ),
        (["--device", "cuda"], "error: device: got 'cuda'; allowed: cpu (no CUDA device is available)"),
    ],
)
def test_cli_refuses_before_work(argv, needle, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    base = ["run", "--preset", "quick", "--steps", "2", "--quiet", "--out-dir", str(tmp_path), "--name", "x"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(needle) and "\n" not in err, err


def test_a_changed_config_is_named_field_by_field(tmp_path, capsys):
    assert main(_quick(tmp_path)) == 0
    capsys.readouterr()
    assert main(_quick(tmp_path, "q", "--lr", "0.25", "--seed", "3")) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: out_dir: ")
        and "another config (lr 0.5 → 0.25, seed 0 → 3)" in err
        and "\n" not in err
    )


def test_an_unreadable_checkpoint_is_refused_and_kept(tmp_path, capsys):
    assert main(_quick(tmp_path)) == 0
    ckpt = tmp_path / "q" / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    before = (tmp_path / "q" / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(_quick(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"error: out_dir: {ckpt} is unreadable (")
        and "allowed: --resume never to start over" in err
    )
    assert (tmp_path / "q" / "metrics.jsonl").read_text() == before and ckpt.read_bytes() == data[
        : len(data) // 2
    ]


def test_a_torn_metrics_line_is_dropped_and_the_run_resumes(tmp_path, capsys):
    assert main(_quick(tmp_path, "whole")) == 0
    whole = read_metrics(tmp_path / "whole")
    cfg = dataclasses.replace(PRESETS_SIM["quick"], steps=4, checkpoint_every=2)
    run(dataclasses.replace(cfg, steps=2), tmp_path / "cut", progress=False)  # checkpoint at 2
    # the same config as the whole run, cut after step 2: rewrite the saved config's length
    saved = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    saved["config"] = cfg.to_json()
    torch.save(saved, tmp_path / "cut" / "checkpoint.pt")
    with (tmp_path / "cut" / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 2, "run": 0, "entro')
    capsys.readouterr()
    run(cfg, tmp_path / "cut", progress=False)
    assert (
        "metrics.jsonl:17: a torn last line (a write cut off mid-line) was left out"
        in capsys.readouterr().err
    )
    assert read_metrics(tmp_path / "cut") == whole


def test_sigterm_saves_and_the_rerun_resumes(tmp_path):
    """SIGTERM mid-run: one line, exit 128 + 15, a checkpoint at the step reached; the rerun ends with the
    same metrics as an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    argv = ["run", "--preset", "quick", "--steps", "400", "--checkpoint-every", "0", "--quiet"]
    assert main([*argv, "--out-dir", str(tmp_path), "--name", "whole"]) == 0
    cmd = [sys.executable, "-m", "sim", *argv, "--out-dir", str(tmp_path), "--name", "cut"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("stopped: signal 15 at step ") and "Traceback" not in err
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=300).returncode == 0
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "whole")
