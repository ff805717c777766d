"""Shared test helpers for the simulator."""

import pytest
import torch

from sim.run import SimConfig, Simulator


def fast_vs_slow(cfg: SimConfig, steps: int) -> bool:
    """Run ``cfg`` on its chosen path and on the per-run path; assert the logits agree; return whether the
    chosen path was the fast one."""
    fast, slow = Simulator(cfg), Simulator(cfg)
    slow.fast = False
    a, b = fast.init_state(), slow.init_state()
    for _ in range(steps):
        fast.step(a)
        slow.step(b)
    torch.testing.assert_close(a.z, b.z, rtol=0, atol=1e-12)
    return fast.fast


def run_interrupted(monkeypatch, cfg: SimConfig, out, at_call: int) -> None:
    """Run ``cfg`` to ``out`` with a KeyboardInterrupt raised at the ``at_call``-th simulator step (as a
    user's Ctrl-C would), leaving what the run had checkpointed."""
    from sim.run import run

    calls = {"n": 0}
    original = Simulator.step

    def interrupted(self, s, measure=True):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return original(self, s, measure)

    monkeypatch.setattr(Simulator, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, progress=False)
    monkeypatch.setattr(Simulator, "step", original)
