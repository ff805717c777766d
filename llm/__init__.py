"""llm: the Accelerate GRPO trainer; its loss is ``controllers.policy_loss`` on the whole optimizer batch.

``python -m llm.train --preset tiny-copy`` (``--help`` for every field); ``python -m llm.sft`` for the
warm start; ``python -m llm.verify`` for the training-dynamics claims on language models (``verify``:
paired arms through this trainer, a verdict per claim). Modules: ``config`` (TrainConfig, presets), ``train`` (the loop, checkpoints, CLI),
``rollout`` (sampling, rewards, per-token log-probs and entropies), ``logprobs`` (chunked, float32, at
the sampling temperature), ``sft``, ``evaluate`` (greedy accuracy, unbiased pass@k, held-out entropy), ``models``,
``tokenizer``, ``tasks``.
"""
