"""llm: the Accelerate GRPO trainer (issue 6, in progress).

Landed so far: ``models`` (tiny Llama/Qwen2, offline local loading), ``logprobs`` (chunked selective log-softmax and per-token entropy at the sampling
temperature), ``tokenizer`` (a built-in character tokenizer) and ``tasks`` (synthetic tasks with exact
verifiers, JSONL user data). The rollout, update loop, config, checkpoints and CLI are still to come.
"""
