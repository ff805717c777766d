"""Log-probabilities of the sampled tokens and per-token entropy, computed in chunks of tokens.

The naive way materialises ``log_softmax(logits)`` for the whole (B, T, V) batch in float32 — 4·B·T·V
bytes, 2.5 GB for B·T = 4096 tokens at V = 152k — and then one more temporary for the entropy. Here the
B·T rows are processed ``chunk_tokens`` at a time, in float32 whatever the logits' dtype, so the extra
memory is about 3·chunk_tokens·V floats:

    log π(y_t) = z_t[y_t]/τ − logsumexp(z_t/τ)                  (``selective_log_softmax``)
    H_t = logsumexp(z_t/τ) − Σ_v softmax(z_t/τ)_v · z_t,v/τ       (``token_entropy``)

τ is the sampling temperature, so the entropy is in nats per token *at the temperature the tokens were
drawn with* (the unit every controller reads). The log-prob keeps its gradient through logsumexp, whose
backward recomputes the softmax from the logits it already holds (nothing (B, T, V)-sized is saved);
the entropy is detached by default, and with ``grad=True`` each chunk is recomputed in the backward
pass (``torch.utils.checkpoint``) so its softmax is not kept either.
Ref: TRL ``selective_log_softmax``; verl ``entropy_from_logits`` / ``logprobs_from_logits``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from controllers import nucleus_entropy

DEFAULT_CHUNK_TOKENS = 256  # 3·256·V floats: 0.5 GB at V = 152k, against 3·B·T·V for the naive form


def _check(logits: Tensor, temperature: float, chunk_tokens: int) -> None:
    if not isinstance(logits, Tensor) or logits.dim() < 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits: got {shape}; allowed: a tensor (..., V) with V >= 2")
    if logits.shape[-1] < 2:
        raise ValueError(f"logits: vocabulary size {logits.shape[-1]}; allowed: V >= 2")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature > 0:
        raise ValueError(f"temperature: got {temperature!r}; allowed: a number > 0")
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ValueError(f"chunk_tokens: got {chunk_tokens!r}; allowed: an integer >= 1")


def _rows(logits: Tensor) -> tuple[Tensor, torch.dtype]:
    """The logits as (B·T, V) rows, and the working dtype: float64 stays float64, all else float32."""
    return logits.reshape(-1, logits.shape[-1]), (
        torch.float64 if logits.dtype == torch.float64 else torch.float32
    )


def selective_log_softmax(
    logits: Tensor, ids: Tensor, temperature: float = 1.0, chunk_tokens: int = DEFAULT_CHUNK_TOKENS
) -> Tensor:
    """log π(ids) at temperature τ, chunk by chunk, in float32 (float64 stays float64).

    Args:
        logits: (..., V) raw logits; ids: (...) token ids in [0, V); temperature: τ > 0;
        chunk_tokens: rows of logits processed at once.
    Returns:
        (...) log-probabilities, with gradient if ``logits`` has one.
    """
    _check(logits, temperature, chunk_tokens)
    if ids.shape != logits.shape[:-1]:
        raise ValueError(
            f"ids: shape {tuple(ids.shape)}; allowed: the logits' leading shape {tuple(logits.shape[:-1])}"
        )
    V = logits.shape[-1]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= V):
        raise ValueError(f"ids: values in [{int(ids.min())}, {int(ids.max())}]; allowed: [0, {V - 1}]")
    (flat, dtype), flat_ids = _rows(logits), ids.reshape(-1)
    out = []
    for i in range(0, flat.shape[0], chunk_tokens):
        z = flat[i : i + chunk_tokens].to(dtype)
        if temperature != 1.0:  # z / 1.0 is z, bit for bit: no copy for logsumexp's backward to hold
            z = z / temperature
        picked = z.gather(-1, flat_ids[i : i + chunk_tokens, None]).squeeze(-1)
        out.append(picked - torch.logsumexp(z, -1))
    if not out:
        return flat.new_zeros(ids.shape, dtype=dtype)
    return torch.cat(out).reshape(ids.shape)


def _chunk_entropy(z: Tensor, temperature: float) -> Tensor:
    if temperature != 1.0:
        z = z / temperature
    lse = torch.logsumexp(z, -1)
    return lse - (torch.softmax(z, -1) * z).sum(-1)


def _per_position(fn, logits: Tensor, temperature: float, chunk_tokens: int, grad: bool) -> Tensor:
    """``fn(z_chunk, τ) -> (chunk,)`` over the rows of ``logits`` ``chunk_tokens`` at a time, in float32
    (float64 stays); with ``grad`` each chunk is recomputed in the backward pass (``checkpoint``)."""
    _check(logits, temperature, chunk_tokens)
    flat, dtype = _rows(logits)
    out = []
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        for i in range(0, flat.shape[0], chunk_tokens):
            z = flat[i : i + chunk_tokens].to(dtype)
            if grad and z.requires_grad:
                out.append(checkpoint(fn, z, temperature, use_reentrant=False))
            else:
                out.append(fn(z, temperature))  # grad is off here unless asked for
    if not out:
        return flat.new_zeros(logits.shape[:-1], dtype=dtype)
    return torch.cat(out).reshape(logits.shape[:-1])


def token_entropy(
    logits: Tensor, temperature: float = 1.0, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, grad: bool = False
) -> Tensor:
    """Entropy H(softmax(z/τ)) of every position, in nats, chunk by chunk, in float32 (float64 stays).

    Args:
        logits: (..., V); temperature: τ > 0; chunk_tokens: rows at once; grad: keep the gradient
            (each chunk recomputed in backward) — needed only by an entropy bonus.
    Returns:
        (...) entropies in [0, log V].
    """
    return _per_position(_chunk_entropy, logits, temperature, chunk_tokens, grad)


def _nucleus(z: Tensor, temperature: float) -> Tensor:
    return nucleus_entropy(z, temperature=temperature)


def nucleus_entropy_chunked(
    logits: Tensor, temperature: float = 1.0, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, grad: bool = False
) -> Tensor:
    """``controllers.nucleus_entropy`` (SIREN's top-p entropy, p = 0.8 of the top 10,000 tokens) of every
    position at temperature τ, chunk by chunk like ``token_entropy``: with ``grad`` each chunk is recomputed
    in the backward pass, so nothing (B, T, V)-sized is kept. Returns (...) entropies in nats."""
    return _per_position(_nucleus, logits, temperature, chunk_tokens, grad)


def _chunk_logp_entropy(z: Tensor, ids: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    z = z / temperature
    lse = torch.logsumexp(z, -1)
    logp = z.gather(-1, ids[:, None]).squeeze(-1) - lse
    with torch.no_grad():  # one more pass over the chunk; nothing (chunk, V)-sized is kept for backward
        zd, lsed = z.detach(), lse.detach()
        ent = lsed - (torch.exp(zd - lsed[:, None]) * zd).sum(-1)
    return logp, ent


def nucleus_keep(z: Tensor, top_p: float) -> Tensor:
    """Bool (N, V): the tokens transformers' top-p warper keeps for temperature-scaled logits ``z``
    (sorted ascending, drop those whose cumulative probability is ≤ 1 − top_p, always keep the top one)."""
    sorted_z, idx = torch.sort(z, descending=False, dim=-1)
    remove = sorted_z.softmax(-1).cumsum(-1) <= (1.0 - top_p)
    remove[..., -1:] = False
    return ~remove.scatter(-1, idx, remove)


def _support(z: Tensor, ids: Tensor, top_p: float) -> Tensor:
    """The nucleus of the scaled logits ``z`` (detached), plus the sampled token (always kept, so the log-prob
    stays finite when an off-policy epoch's nucleus no longer holds it)."""
    keep = nucleus_keep(z.detach(), top_p)
    return keep.scatter(-1, ids[:, None], True)


def _masked_entropy(z: Tensor, temperature: float, keep: Tensor) -> Tensor:
    """Entropy of softmax(z/τ) restricted to ``keep`` and renormalised, nats."""
    z = z / temperature
    lse = torch.logsumexp(z.masked_fill(~keep, -torch.inf), -1)
    z0 = z.masked_fill(~keep, 0.0)  # finite everywhere, so no 0·inf appears in the backward pass
    p = torch.exp(z0 - lse[:, None]) * keep
    return lse - (p * z0).sum(-1)


def _logprob_entropy_top_p(
    flat, flat_ids, shape, temperature, chunk_tokens, entropy_grad, top_p, dtype, mask
):
    lps, hs, masses = [], [], []
    for i in range(0, flat.shape[0], chunk_tokens):
        z = flat[i : i + chunk_tokens].to(dtype)
        y = flat_ids[i : i + chunk_tokens]
        zs = z / temperature
        keep = _support(zs, y, top_p)
        # the log-probs carry the gradient through the nucleus's logsumexp (mask) or the full one (not)
        lse_full = torch.logsumexp(zs.detach() if mask else zs, -1)
        lse = torch.logsumexp((zs if mask else zs.detach()).masked_fill(~keep, -torch.inf), -1)
        masses.append(lse.detach() - lse_full.detach())
        lps.append(zs.gather(-1, y[:, None]).squeeze(-1) - (lse if mask else lse_full))
        # the entropy: of the renormalised nucleus (mask) or of the full softmax (not)
        f, args = (_masked_entropy, (temperature, keep)) if mask else (_chunk_entropy, (temperature,))
        if entropy_grad and z.requires_grad:
            hs.append(checkpoint(f, z, *args, use_reentrant=False))
        else:
            with torch.no_grad():
                hs.append(f(z.detach(), *args))
    return tuple(torch.cat(x).reshape(shape) for x in (lps, hs, masses))


def logprob_entropy(
    logits: Tensor,
    ids: Tensor,
    temperature: float = 1.0,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    entropy_grad: bool = False,
    top_p: float = 1.0,
    with_log_mass: bool = False,
    mask: bool = True,
) -> tuple[Tensor, ...]:
    """``selective_log_softmax`` and ``token_entropy`` in one pass per chunk (one logsumexp, shared).

    The trainer's path: about as fast as the naive full softmax, at 3·chunk_tokens·V floats of extra
    memory instead of 3·B·T·V. With ``entropy_grad`` the entropy is the checkpointed ``token_entropy``.

    With ``top_p`` < 1 (the keep-sampling mask) both are those of the sampler's distribution: softmax(z/τ)
    restricted to transformers' top-p nucleus and renormalised, the sampled token always kept.

    Args:
        logits: (..., V); ids: (...) sampled token ids; temperature: τ > 0; chunk_tokens: rows at once;
        entropy_grad: keep the entropy's gradient (an entropy bonus needs it); top_p: in (0, 1];
        with_log_mass: also return log of the support's probability mass under the full softmax;
        mask: with top_p < 1, False keeps the log-probs and entropies on the full softmax and only measures
        the nucleus's log-mass (one pass instead of a masked and a full one).
    Returns:
        (log-probs (...) with the logits' gradient, entropies (...) in nats[, log-masses (...) ≤ 0]).
    """
    if isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1:
        raise ValueError(f"top_p: got {top_p!r}; allowed: a number in (0, 1]")
    if top_p < 1:
        _check(logits, temperature, chunk_tokens)
        if ids.shape != logits.shape[:-1]:
            raise ValueError(
                f"ids: shape {tuple(ids.shape)}; allowed: the logits' leading shape {tuple(logits.shape[:-1])}"
            )
        (flat, dtype), flat_ids = _rows(logits), ids.reshape(-1)
        if flat.shape[0] == 0:
            empty = flat.new_zeros(ids.shape, dtype=dtype)
            out = (empty, empty.clone(), empty.clone())
        else:
            out = _logprob_entropy_top_p(
                flat, flat_ids, ids.shape, temperature, chunk_tokens, entropy_grad, top_p, dtype, mask
            )
        return out if with_log_mass else out[:2]
    if with_log_mass:
        lp, h = logprob_entropy(logits, ids, temperature, chunk_tokens, entropy_grad)
        return lp, h, torch.zeros_like(h)
    if entropy_grad:
        # one (B·T, V) copy of the sliced logits, shared: reshaping a sliced (B, T, V) view copies, and each
        # function doing its own kept two copies alive until backward. At τ = 1 the log-probs' logsumexp and
        # the entropy's checkpoints then hold views of that one copy; at τ ≠ 1 the log-probs also hold their
        # z/τ chunks (dividing once for both would round the summed gradient differently). Bit-identical.
        _check(logits, temperature, chunk_tokens)
        if ids.shape != logits.shape[:-1]:
            raise ValueError(
                f"ids: shape {tuple(ids.shape)}; allowed: the logits' leading shape {tuple(logits.shape[:-1])}"
            )
        flat = _rows(logits)[0]
        return (
            selective_log_softmax(flat, ids.reshape(-1), temperature, chunk_tokens).reshape(ids.shape),
            token_entropy(flat, temperature, chunk_tokens, grad=True).reshape(ids.shape),
        )
    _check(logits, temperature, chunk_tokens)
    if ids.shape != logits.shape[:-1]:
        raise ValueError(
            f"ids: shape {tuple(ids.shape)}; allowed: the logits' leading shape {tuple(logits.shape[:-1])}"
        )
    (flat, dtype), flat_ids = _rows(logits), ids.reshape(-1)
    lps, hs = [], []
    for i in range(0, flat.shape[0], chunk_tokens):
        lp, h = _chunk_logp_entropy(
            flat[i : i + chunk_tokens].to(dtype), flat_ids[i : i + chunk_tokens], temperature
        )
        lps.append(lp)
        hs.append(h)
    if not lps:
        empty = flat.new_zeros(ids.shape, dtype=dtype)
        return empty, empty.clone()
    return torch.cat(lps).reshape(ids.shape), torch.cat(hs).reshape(ids.shape)
