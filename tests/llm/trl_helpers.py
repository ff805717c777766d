"""A tiny TRL setup shared by the adapter's tests: the built-in tiny Llama and character tokenizer, a
copy task with a graded reward, and a runner returning the parameters after training."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

PROMPTS = [
    "copy:abc=",
    "copy:xyz=",
    "copy:hello=",
    "copy:qrs=",
    "copy:mn=",
    "copy:tuv=",
    "copy:ij=",
    "copy:kl=",
]


def model_and_tokenizer(seed: int = 0):
    from llm.models import tiny_model
    from llm.tokenizer import CharTokenizer

    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, hidden=32, layers=1, heads=2, seed=seed)
    model.generation_config.suppress_tokens = [
        tok.eos_token_id
    ]  # every completion max_completion_length long
    return model, tok.to_hf()


def reward(prompts, completions, **kw):
    """Graded, so groups have different rewards: the share of the prompt's letters in the completion."""
    out = []
    for p, c in zip(prompts, completions, strict=True):
        target = p.split(":", 1)[1].rstrip("=")
        out.append(float(sum(ch in c for ch in target)) / len(target))
    return out


def binary_reward(prompts, completions, **kw):
    """0/1 (some controllers, NFT, need binary rewards): 1 when the completion holds the prompt's first letter."""
    return [float(p.split(":", 1)[1][0] in c) for p, c in zip(prompts, completions, strict=True)]


def second_reward(prompts, completions, **kw):
    return [float(len(set(c))) / 10.0 for c in completions]


def across_ranks_pipeline():
    """The pipeline of the two-process test (trl_two_procs.py and the one-process run it is compared
    with): deterministic selections gathered over ranks (KL-Cov, 80/20) and a stateful controller."""
    import controllers as C

    return [
        C.get("grpo", eps=1e-4), C.get("ppo_clip"), C.get("kl_cov", frac=0.1), C.get("top_entropy", rho=0.3),
        C.get("adaptive_entropy", target=5.0, delta=0.01, c_max=0.1),
    ]  # fmt: skip


def dataset(n: int = 64):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [PROMPTS[i % len(PROMPTS)] for i in range(n)]})


def config(out_dir, **overrides):
    from trl import GRPOConfig

    base = dict(
        output_dir=str(out_dir), use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=4,
        gradient_accumulation_steps=1, steps_per_generation=None, num_iterations=1, max_completion_length=6,
        temperature=1.0, top_k=0, top_p=1.0, beta=0.0, learning_rate=0.5, lr_scheduler_type="constant",
        max_grad_norm=0.0, optim="sgd", max_steps=2, logging_steps=1, report_to=[], save_strategy="no",
        shuffle_dataset=False, disable_dropout=True, seed=0, warmup_steps=0, weight_decay=0.0,
    )  # fmt: skip
    base.update(overrides)
    return GRPOConfig(**base)


def train(cls, out_dir, model=None, reward_funcs=None, trainer_kwargs=None, resume=None, **cfg):
    """Train with ``cls`` (GRPOTrainer or the adapter), from the checkpoint ``resume`` if given; returns
    (trainer, {name: parameter})."""
    net, tok = model_and_tokenizer() if model is None else model
    args = config(out_dir, **cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = cls(
            model=copy.deepcopy(net), reward_funcs=reward_funcs or reward, args=args, train_dataset=dataset(),
            processing_class=tok, **(trainer_kwargs or {}),
        )  # fmt: skip
        trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    return trainer, {k: v.detach().clone() for k, v in trainer.model.named_parameters()}


def rel_diff(a: dict, b: dict, start: dict) -> float:
    """|Δa − Δb| / |Δb| over all parameters (Δ: change from ``start``)."""
    num = sum(float(((a[k] - start[k]) - (b[k] - start[k])).pow(2).sum()) for k in a)
    den = sum(float((b[k] - start[k]).pow(2).sum()) for k in b)
    return float(np.sqrt(num / max(den, 1e-300)))


def start_params(model=None) -> dict:
    net, _ = model_and_tokenizer() if model is None else model
    return {k: v.detach().clone() for k, v in net.named_parameters()}


torch.set_num_threads(1)


def fixed_rollout(prompts, trainer):
    """A ``rollout_func`` whose completions depend only on (global row, step): the same rows whatever the
    number of processes or micro-batches; lengths vary from 2 to 6 tokens (some end with <eos>)."""
    tok = trainer.processing_class
    offset = trainer.accelerator.process_index * len(prompts)
    prompt_ids, completion_ids = [], []
    for i, p in enumerate(prompts):
        rng = np.random.default_rng([offset + i, trainer.state.global_step, 7])
        n = int(rng.integers(2, 7))
        ids = [int(x) for x in rng.integers(3, 20, size=n)]
        if n < 6:
            ids[-1] = tok.eos_token_id
        prompt_ids.append(tok(p)["input_ids"])
        completion_ids.append(ids)
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}
