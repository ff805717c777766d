"""Shared inputs of the verl tests: an actor config and verl's actor inputs for one micro-batch."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from verl.utils import tensordict_utils as tu


def actor_config(loss_mode="vanilla", agg="token-mean", **kw):
    cfg = dict(
        clip_ratio=0.2, clip_ratio_low=None, clip_ratio_high=None, clip_ratio_c=3.0, loss_agg_mode=agg,
        loss_scale_factor=None, entropy_coeff=0.0, use_kl_loss=False, kl_loss_type="low_var_kl",
        kl_loss_coef=0.001, global_batch_info={},
        policy_loss=dict(loss_mode=loss_mode, clip_cov_ratio=0.1, clip_cov_lb=-1.0, clip_cov_ub=5.0,
                         kl_cov_ratio=0.1, ppo_kl_coef=0.5),
    )  # fmt: skip
    cfg.update(kw)
    return OmegaConf.create(cfg)


def inputs(
    seed=0, B=5, P=3, T=6, ref=False, is_weights=False, dp_size=1, n_tokens=None, n_seqs=None, full=False
):
    """verl's actor inputs: a no-padding log-prob vector (prompt + response tokens of every sequence,
    shifted by one), the padded response fields, and the global batch sizes. Returns
    (model_output, data, (logp leaf, entropy leaf)) — the leaves give the gradient."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    if full:  # every response T tokens long: N = B·T tokens
        lengths[:] = T
    rmask = (torch.arange(T)[None] < lengths[:, None]).long()
    logp = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 3).requires_grad_()
    ent = (torch.rand(B, T, generator=g, dtype=torch.float64) * 2).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, 1, generator=g, dtype=torch.float64).expand(B, T) * rmask

    def flat(x):
        parts = []
        for b in range(B):
            seq = torch.zeros(P + int(lengths[b]), dtype=x.dtype)
            seq = torch.cat([seq[: P - 1], x[b, : lengths[b]], seq[P - 1 + int(lengths[b]) :]])
            parts.append(seq)
        return torch.cat(parts)

    tensors = {
        "prompts": torch.ones(B, P, dtype=torch.long), "responses": torch.ones(B, T, dtype=torch.long),
        "attention_mask": torch.cat([torch.ones(B, P, dtype=torch.long), rmask], 1), "response_mask": rmask,
        "old_log_probs": old, "advantages": adv,
    }  # fmt: skip
    if ref:
        tensors["ref_log_prob"] = logp.detach() + 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64)
    if is_weights:
        tensors["rollout_is_weights"] = torch.rand(B, T, generator=g, dtype=torch.float64) * 2
    extra = {"dp_size": dp_size, "batch_num_tokens": n_tokens, "global_batch_size": n_seqs}
    data = tu.get_tensordict(tensors, non_tensor_dict=extra)
    return {"log_probs": flat(logp), "entropy": flat(ent)}, data, (logp, ent)
