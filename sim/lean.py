"""The simulator's lean paths: unlogged steps run in cache-sized chunks of runs, with the same operations on
the same rows in the same order as ``Simulator.step``, so the same logits to the bit (tested in
tests/sim/test_run.py and tests/sim/test_lean_sampled.py).

- the exact bandit step (``exact_applies``, ``exact_step``): one fused kernel (``bandit_step``; compiled with
  ``compile``) over chunks of ``LEAN_CHUNK_BYTES``;
- the sampled step of the fast path (``sampled_applies``, ``sampled_step``): one loss call for all runs,
  then per chunk the table's gradient, update and finiteness check.

Each function takes the ``sim.step.Simulator`` and its ``SimState`` (not imported here: the simulator imports
this module).
"""

from __future__ import annotations

import math

import torch

import controllers as C
from sim import models
from sim import tree as tr


def bandit_step(
    z: torch.Tensor, r: torch.Tensor, lr: float, natural: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One exact PG (π·(r − E_π r)) or NPG (r − E_π r) step on bandit logits (R, P, n); returns the new
    logits and their row sums (R, P), which are non-finite exactly when a row went non-finite."""
    p = torch.softmax(z, -1)
    v = (p * r).sum(-1, keepdim=True)
    d = r - v if natural else p * (r - v)
    new = z + lr * d
    return new, new.sum(-1)


_COMPILED: dict = {}
LEAN_CHUNK_BYTES = 1024 * 1024
"""per chunk of runs in the CPU lean exact kernel: about one L2 cache (timed as ``tree.CHUNK_BYTES`` was: 1 MiB
was fastest for this kernel, 0.5 MiB 8% slower)"""


def bandit_kernel(compiled: bool):
    if not compiled:
        return bandit_step
    if "step" not in _COMPILED:
        _COMPILED["step"] = torch.compile(bandit_step, dynamic=False)
    return _COMPILED["step"]


def exact_applies(sim, s) -> bool:
    return (
        sim.cfg.update in ("exact_pg", "exact_npg")
        and s.opt is None
        and s.params is None
        and isinstance(sim.model, models.TreeModel)
        and sim.model.horizon == 1
    )


def exact_step(sim, s) -> dict:
    """An exact bandit step without measurements. On CPU the runs go through the kernel in chunks of
    about ``LEAN_CHUNK_BYTES`` (all passes stay in cache: 6× faster than whole-tensor passes on a 2-core
    CPU); with ``compile`` or on CUDA, one fused whole-tensor call."""
    natural, lr, r = sim.cfg.update == "exact_npg", float(sim.lr), sim.model.rewards
    stopped = torch.tensor([d is not None for d in s.dead], device=sim.device)
    R = s.z.shape[0]
    if sim.cfg.compile or sim.device.type != "cpu":
        chunks = [(0, R)]
        kernel = bandit_kernel(sim.cfg.compile)
    else:
        chunks = tr.run_chunks(R, s.z[0].numel() * s.z.element_size(), sim.device, LEAN_CHUNK_BYTES)
        kernel = bandit_step
    bad_all = []
    for i, j in chunks:
        zc = s.z[i:j]
        new, check = kernel(zc, r, lr, natural)
        bad = ~torch.isfinite(check).all(-1)
        bad_all.append(bad)
        keep = bad | stopped[i:j]
        zc.copy_(torch.where(keep[:, None, None], zc, new) if bool(keep.any()) else new)
    sim._stop_non_finite(s, torch.cat(bad_all))
    s.step += 1
    return {"batch": [{} for _ in range(sim.cfg.runs)]}


def sampled_applies(sim, s) -> bool:
    """A sampled step that can run in cache-sized chunks of runs: one loss call for all runs (the fast
    path), one update per rollout on plain logits (no optimizer, parametric policy, critic or guide),
    fixed-length trees whose table is smaller than the batch of sampled tokens."""
    cfg = sim.cfg
    epochs, mbs = sim._updates_per_rollout()
    if not (sim.fast and epochs == 1 and mbs == 1 and cfg.update in ("grpo", "ppo")):
        return False
    if s.opt is not None or s.params is not None or s.value is not None or cfg.guide:
        return False
    if not isinstance(sim.model, models.TreeModel):
        return False
    p = sim.active_prompts(s.step).numel()
    return s.z.shape[1] <= p * cfg.group_size * sim.model.horizon


def sampled_step(sim, s) -> dict:
    """The sampled step of ``step(measure=False)`` with every pass over the logits table done in
    cache-sized chunks of runs: the table's log-probs and entropies without a graph, one loss call on
    all runs with those as leaves, then per chunk the table's graph rebuilt and its gradient, update and
    finiteness check applied. The same operations on the same rows in the same order as ``step``: the
    same logits to the bit (tested)."""
    cfg, R = sim.cfg, sim.cfg.runs
    roll = sim.rollout(s.z.detach(), s.gen, entropy=True, table=True)
    active = sim.active_prompts(s.step)
    st, tok = roll["states"].index_select(1, active), roll["tokens"].index_select(1, active)
    chunks = sim._chunks(s.z)
    # on-policy, the rollout's log-softmax pass is the table's: its log-probs and entropies are the leaves
    leaves = [roll["old_logp"].index_select(1, active), roll["entropy"].index_select(1, active), None]
    if "entropy_topp" in sim.needs:
        with torch.no_grad():
            leaves[2] = torch.cat([sim._table_fields(s.z[i:j], st[i:j], tok[i:j], (False, False, True))[2]
                                   for i, j in chunks])  # fmt: skip
    leaves = [None if x is None else x.requires_grad_(True) for x in leaves]
    b = sim.token_batch(s.z, roll, slice(None), active, fields=tuple(leaves), selected=(st, tok))
    loss, m = C.policy_loss(b, sim.pipe, s.ctrl[0], agg=cfg.agg, generator=s.gen)
    used = [k for k in range(3) if leaves[k] is not None]
    grads = dict(
        zip(used, torch.autograd.grad(loss * R, [leaves[k] for k in used], allow_unused=True), strict=True)
    )
    want = tuple(grads.get(k) is not None for k in range(3))  # the table's graph: only what the loss read
    batch_metrics = [m] * R
    sim._step_controllers(s, batch_metrics)
    stopped = [d is not None for d in s.dead]
    index = None  # each token's flat index into its run's table: only for the hand-written backward
    if want == (True, False, False):
        if active.numel() == roll["states"].shape[1]:  # every prompt trains: the rollout's own index
            index = roll["flat_index"]
        else:
            index = (st * s.z.shape[-1] + tok).reshape(R, -1)
    for i, j in chunks:
        zc = s.z[i:j]
        if index is not None:  # the log-probs' backward by hand: autograd's own two kernels
            table = roll["table"][i:j]  # on-policy: the rollout's log-softmax is this table's, to the bit
            dtable = torch.zeros_like(table)
            # index order = index_put_'s order, so tokens that share an entry add up in the same order
            dtable.view(j - i, -1).scatter_add_(1, index[i:j], grads[0][i:j].reshape(j - i, -1))
            g = torch.ops.aten._log_softmax_backward_data(dtable, table, -1, zc.dtype)
        else:
            zv = zc.detach().requires_grad_(True)
            outs = sim._table_fields(zv, st[i:j], tok[i:j], want)
            pairs = [(outs[k], grads[k][i:j]) for k in used if grads[k] is not None]
            if pairs:
                (g,) = torch.autograd.grad([o for o, _ in pairs], zv, [gk for _, gk in pairs])
            else:
                g = torch.zeros_like(zc)
        new = torch.sub(zc, g.mul_(sim.lr), out=g)  # zc − lr·g
        # a finite sum has only finite terms (an inf or nan term makes it inf or nan): one read per chunk.
        # Otherwise (or an overflow of finite terms) each run is checked term by term.
        if not any(stopped[i:j]) and math.isfinite(new.sum().item()):
            zc.copy_(new)
            continue
        bad = torch.isnan((new * 0).sum((-1, -2)))  # any inf or nan: finite · 0 = 0, inf · 0 = nan
        sim._stop_non_finite(s, bad, offset=i)
        keep = bad | torch.tensor(stopped[i:j], device=sim.device)
        zc.copy_(torch.where(keep[:, None, None], zc, new))
    s.step += 1
    return {"batch": batch_metrics}
