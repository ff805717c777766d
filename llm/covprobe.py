"""The token-covariance probe of ``python -m llm.verify`` (claim LM4): the per-token covariances Cov(y_t)
of the first training batches of a run, each sampled at the run's start weights.

Kept apart from the verdict rules (``llm.verify``) so that the fingerprint of what computes a cell
includes it and leaves the rules out: a change of a rule re-judges, a change here re-measures."""

from __future__ import annotations

import torch

from llm.config import TrainConfig


def token_covariances(cfg: TrainConfig, rollouts: int) -> list[float]:
    """Cov(y_t) (``controllers.select.token_cov`` with the pipeline's advantages, means over each batch's
    valid tokens) of every valid token of the first ``rollouts`` training batches of ``cfg``'s run, each
    sampled at the start weights with the run's own prompts and sampling streams (the first batch is
    exactly the run's first)."""
    import controllers as C
    from controllers.select import token_cov
    from llm.rollout import sample
    from llm.train import Trainer
    from llm.update import _seed

    tr = Trainer(cfg, progress=False)
    covs: list[float] = []
    try:
        model = tr.acc.unwrap_model(tr.model)
        for k in range(rollouts):
            examples, _ = tr._examples(k)
            roll = sample(
                model, tr.tok, tr.task, examples, cfg.group_size, max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature, top_p=cfg.top_p, seed=_seed(cfg, k, tr.rank, 0),
            )  # fmt: skip
            logp, ent = tr._stats(roll)[:2]
            mask = roll.completion_mask
            batch = C.TokenBatch(
                logp=logp, old_logp=logp, adv=torch.zeros_like(mask), entropy=ent, mask=mask,
                group=roll.group, reward=roll.reward, length=mask.sum(-1),
            )  # fmt: skip
            adv = tr.pipe.advantages(batch, tr.ctrl_state)
            covs += token_cov(batch.replace(adv=adv))[mask.bool()].tolist()
    finally:
        tr.release()
    return covs
