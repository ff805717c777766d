"""Shared test helpers for the simulator."""

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
