"""Run under torchrun with 2 CPU processes: the TRL adapter trains 2 steps with global selection and rank 0
saves the parameters (argv[1]) for test_trl_adapter to compare with one process holding every row.
With a second argument "local", selections see only the rank's own tokens (the negative control)."""

import sys

import torch

import controllers as C
from llm.engines.trl_grpo import EntropyControlledGRPOTrainer
from tests.llm import trl_helpers as H

out = sys.argv[1]
pipe = H.across_ranks_pipeline()


class LocalSelections(EntropyControlledGRPOTrainer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._gather = C.dist.Gather()


cls = LocalSelections if sys.argv[2:] == ["local"] else EntropyControlledGRPOTrainer
tr, params = H.train(
    cls, out + ".run", per_device_train_batch_size=4, num_iterations=2,
    trainer_kwargs=dict(pipeline=pipe, rollout_func=H.fixed_rollout),
)  # fmt: skip
assert tr.accelerator.num_processes == 2
if tr.accelerator.is_main_process:
    logged = [row for row in tr.state.log_history if "policy/n_tokens" in row]
    torch.save({"params": params, "state": tr.ctrl_state, "logged": logged}, out)
    print("trl-two-ok")
