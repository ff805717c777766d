"""llm: the Accelerate GRPO trainer; its loss is ``controllers.policy_loss`` on the whole optimizer batch.

``python -m llm.train --preset tiny-copy`` (``--help`` for every field); ``python -m llm.sft`` for the
warm start. Modules: ``config`` (TrainConfig, presets), ``train`` (the loop, checkpoints, CLI),
``rollout`` (sampling, rewards, per-token log-probs and entropies), ``logprobs`` (chunked, float32, at
the sampling temperature), ``sft``, ``evaluate`` (greedy accuracy, unbiased pass@k), ``models``,
``tokenizer``, ``tasks``.
"""
