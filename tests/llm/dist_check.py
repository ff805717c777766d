"""Run under ``accelerate launch --num_processes 2 --cpu``: the trainer's cross-rank pieces agree with
one process holding the whole batch. Exits non-zero (an AssertionError) on any disagreement."""

import torch
from accelerate import Accelerator

import controllers as C
from llm.parallel import AccelerateGather, TorchGather, rank_scale

acc = Accelerator(cpu=True)
rank, world = acc.process_index, acc.num_processes
assert world == 2, world
g = torch.Generator().manual_seed(0)
B, T = 6, 5
full = {
    "logp": -torch.rand(B, T, generator=g) * 3,
    "entropy": torch.rand(B, T, generator=g) * 2,
    "adv": torch.randn(B, T, generator=g),
    "mask": (torch.rand(B, T, generator=g) > 0.3).float(),
}
rows = slice(0, 2) if rank == 0 else slice(2, B)  # unequal shares: 2 and 4 sequences


def batch(part):
    return C.TokenBatch(
        logp=part["logp"], old_logp=part["logp"], adv=part["adv"], entropy=part["entropy"], mask=part["mask"]
    )


local = {k: v[rows] for k, v in full.items()}
hook = AccelerateGather(acc)
# 1. the gather: every rank's values in rank order, and this rank's offset
vals, off = hook.cat(local["entropy"][local["mask"].bool()])
expect = full["entropy"][full["mask"].bool()]
assert torch.equal(vals, expect), (vals, expect)
assert off == (0 if rank == 0 else int(full["mask"][:2].sum()))
# 1b. the same gather over a torch.distributed group (the verl plugin's hook)
tvals, toff = TorchGather(None).cat(local["entropy"][local["mask"].bool()])
assert torch.equal(tvals, expect) and toff == off, (tvals, toff)
# 2. a global selection (80/20: top 20% entropy) equals the single-process selection on the whole batch
ctrl = C.get("top_entropy", rho=0.2)
with C.dist.using(hook):
    mine = ctrl.keep(batch(local))
whole = ctrl.keep(batch(full))
assert torch.equal(mine, whole[rows]), (rank, mine, whole[rows])
# 3. the loss rescaling: DDP's mean of scaled local token-means is the global token-mean
per_token = full["adv"] * full["logp"]
for agg in C.AGG_MODES:
    loss = C.agg_loss(per_token[rows], local["mask"], agg, norm_len=T) * rank_scale(acc, agg, local["mask"])
    mean = acc.reduce(loss.reshape(1), "mean")
    ref = C.agg_loss(per_token, full["mask"], agg, norm_len=T)
    assert torch.allclose(mean, ref.reshape(1), atol=1e-6), (agg, mean, ref)
acc.wait_for_everyone()
if acc.is_main_process:
    print("dist-ok")
torch.distributed.destroy_process_group()  # a clean gloo shutdown (no "terminate called" at exit)
