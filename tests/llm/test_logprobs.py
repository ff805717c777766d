"""Chunked log-probs and entropy against the naive full-softmax forms (differential), plus bounds,
shift invariance and temperature monotonicity (metamorphic)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llm.logprobs import logprob_entropy, selective_log_softmax, token_entropy


@st.composite
def logit_batches(draw):
    B, T, V = draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(2, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    z = torch.randn(B, T, V, generator=g, dtype=torch.float64) * scale
    ids = torch.randint(0, V, (B, T), generator=g)
    return z, ids


def _naive(z, ids, tau):
    lp = torch.log_softmax(z / tau, -1)
    return lp.gather(-1, ids[..., None]).squeeze(-1), -(lp.exp() * lp).sum(-1)


@given(logit_batches(), st.integers(1, 9), st.sampled_from([0.3, 0.7, 1.0, 1.5]))
def test_chunked_equals_naive(batch, chunk, tau):
    z, ids = batch
    ref_lp, ref_h = _naive(z, ids, tau)
    assert torch.allclose(selective_log_softmax(z, ids, tau, chunk), ref_lp, atol=1e-12, rtol=0)
    assert torch.allclose(token_entropy(z, tau, chunk), ref_h, atol=1e-10, rtol=0)


@given(logit_batches(), st.integers(1, 9))
def test_gradients_equal_naive(batch, chunk):
    z, ids = batch
    w = torch.randn(ids.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    lp, h = selective_log_softmax(z1, ids, 0.8, chunk), token_entropy(z1, 0.8, chunk, grad=True)
    (g1,) = torch.autograd.grad((w * lp).sum() + (w * h).sum(), z1)
    rlp, rh = _naive(z2, ids, 0.8)
    (g2,) = torch.autograd.grad((w * rlp).sum() + (w * rh).sum(), z2)
    assert torch.allclose(g1, g2, atol=1e-10, rtol=0)


@given(logit_batches(), st.floats(-50, 50))
def test_bounds_and_shift_invariance(batch, c):
    z, ids = batch
    V = z.shape[-1]
    h = token_entropy(z)
    assert (h >= -1e-12).all() and (h <= math.log(V) + 1e-12).all()
    assert (selective_log_softmax(z, ids) <= 1e-12).all()
    assert torch.allclose(token_entropy(z + c), h, atol=1e-9)
    assert torch.allclose(selective_log_softmax(z + c, ids), selective_log_softmax(z, ids), atol=1e-9)


@given(logit_batches())
def test_entropy_grows_with_temperature(batch):
    z, _ = batch
    h = [token_entropy(z, tau) for tau in (0.5, 1.0, 2.0)]
    assert (h[1] >= h[0] - 1e-12).all() and (h[2] >= h[1] - 1e-12).all()


def test_entropy_detached_by_default_and_low_precision_upcast():
    z = torch.randn(2, 3, 11, requires_grad=True)
    assert not token_entropy(z).requires_grad
    assert token_entropy(z, grad=True).requires_grad
    zb = torch.randn(2, 3, 11).to(torch.bfloat16)
    assert token_entropy(zb).dtype == torch.float32
    assert selective_log_softmax(zb, torch.zeros(2, 3, dtype=torch.long)).dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"temperature": 0.0}, "temperature: got 0.0"),
        ({"chunk_tokens": 0}, "chunk_tokens: got 0"),
        ({"ids": torch.zeros(2, dtype=torch.long)}, "ids: shape (2,)"),
        ({"ids": torch.full((2, 3), 11)}, "ids: values in [11, 11]; allowed: [0, 10]"),
    ],
)
def test_bad_input_names_the_argument(kwargs, needle):
    z = torch.randn(2, 3, 11)
    args = {"ids": torch.zeros(2, 3, dtype=torch.long), **kwargs}
    with pytest.raises(ValueError) as e:
        selective_log_softmax(z, **args)
    assert needle in str(e.value)


@given(logit_batches(), st.integers(1, 9), st.sampled_from([0.5, 1.0]), st.booleans())
def test_fused_equals_the_separate_functions_and_their_gradient(batch, chunk, tau, entropy_grad):
    z, ids = batch
    z1 = z.clone().requires_grad_(True)
    lp, h = logprob_entropy(z1, ids, tau, chunk, entropy_grad=entropy_grad)
    assert torch.allclose(lp, selective_log_softmax(z, ids, tau, chunk), atol=1e-12, rtol=0)
    assert torch.allclose(h, token_entropy(z, tau, chunk), atol=1e-10, rtol=0)
    assert h.requires_grad == entropy_grad
    w = torch.randn(ids.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (g1,) = torch.autograd.grad((w * lp).sum(), z1)
    z2 = z.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad((w * _naive(z2, ids, tau)[0]).sum(), z2)
    assert torch.allclose(g1, g2, atol=1e-10, rtol=0)


# -- the keep-sampling mask (top-p support) ---------------------------------------------------------------


def _explicit_top_p(logits, ids, tau, top_p):
    """The sampler's distribution written out: sort, drop the low tail of mass ≤ 1 − p, renormalise."""
    z = logits.double() / tau
    p = torch.softmax(z, -1)
    keep = torch.zeros_like(z, dtype=torch.bool)
    for idx in itertools.product(*map(range, z.shape[:-1])):
        order = torch.argsort(p[idx])  # ascending
        cum = torch.cumsum(p[idx][order], 0)
        drop = cum <= 1 - top_p
        drop[-1] = False
        keep[idx][order[~drop]] = True
        keep[idx][ids[idx]] = True
    q = torch.where(keep, p, 0.0)
    mass = q.sum(-1)
    q = q / mass[..., None]
    logq = torch.log(q.gather(-1, ids[..., None]).squeeze(-1))
    ent = -torch.where(keep, q * torch.log(q.clamp_min(1e-300)), 0.0).sum(-1)
    return logq, ent, torch.log(mass)


@given(
    batch=logit_batches(),
    chunk=st.integers(1, 7),
    tau=st.sampled_from([0.5, 1.0, 1.7]),
    top_p=st.sampled_from([0.3, 0.8, 0.95]),
)
def test_top_p_support_equals_the_explicit_renormalised_nucleus(batch, chunk, tau, top_p):
    logits, ids = batch
    lp, h, lm = logprob_entropy(logits.double(), ids, tau, chunk, top_p=top_p, with_log_mass=True)
    want_lp, want_h, want_lm = _explicit_top_p(logits, ids, tau, top_p)
    torch.testing.assert_close(lp, want_lp, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(h, want_h, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(lm, want_lm, rtol=1e-9, atol=1e-9)
    assert bool((lm <= 1e-12).all())
    # the full-softmax log-prob is the nucleus log-prob plus the log-mass
    full, _ = logprob_entropy(logits.double(), ids, tau, chunk)
    torch.testing.assert_close(full, lp + lm, rtol=1e-9, atol=1e-9)


@given(batch=logit_batches(), top_p=st.sampled_from([0.5, 0.9]))
def test_top_p_gradients_flow_through_the_kept_logits_only(batch, top_p):
    logits, ids = batch
    x = logits.double().requires_grad_()
    lp, h = logprob_entropy(x, ids, 1.0, 3, entropy_grad=True, top_p=top_p)
    (lp.sum() + h.sum()).backward()
    y = logits.double().requires_grad_()
    want_lp, want_h, _ = _explicit_top_p(y, ids, 1.0, top_p)
    (want_lp.sum() + want_h.sum()).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-7, atol=1e-9)
    assert logprob_entropy(logits, ids, top_p=1.0)[0].shape == ids.shape
    with pytest.raises(ValueError, match=r"^top_p: got 0; allowed: a number in \(0, 1\]$"):
        logprob_entropy(logits, ids, top_p=0)


@given(batch=logit_batches(), chunk=st.integers(1, 7), top_p=st.sampled_from([0.3, 0.8]))
def test_unmasked_top_p_pass_is_the_full_softmax_plus_the_nucleus_log_mass(batch, chunk, top_p):
    """mask=False: log-probs, entropies and their gradients are the full softmax's, and the log-mass is the
    masked pass's — one pass where the trainer used to run two."""
    logits, ids = batch
    x = logits.double().requires_grad_()
    lp, h, lm = logprob_entropy(
        x, ids, 0.7, chunk, entropy_grad=True, top_p=top_p, with_log_mass=True, mask=False
    )
    (lp.sum() + h.sum()).backward()
    y = logits.double().requires_grad_()
    want_lp, want_h = logprob_entropy(y, ids, 0.7, chunk, entropy_grad=True)
    (want_lp.sum() + want_h.sum()).backward()
    _, _, want_lm = logprob_entropy(logits.double(), ids, 0.7, chunk, top_p=top_p, with_log_mass=True)
    torch.testing.assert_close(lp, want_lp, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, want_h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lm, want_lm, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-9, atol=1e-12)


def _old_logprob_entropy_grad(logits, ids, temperature, chunk_tokens):
    """The entropy-gradient path as it was (each function reshaping and scaling its own chunks)."""
    flat, flat_ids = logits.reshape(-1, logits.shape[-1]), ids.reshape(-1)
    lps, hs = [], []
    for i in range(0, flat.shape[0], chunk_tokens):
        z = flat[i : i + chunk_tokens] / temperature
        lps.append(z.gather(-1, flat_ids[i : i + chunk_tokens, None]).squeeze(-1) - torch.logsumexp(z, -1))
    flat2 = logits.reshape(-1, logits.shape[-1])
    for i in range(0, flat2.shape[0], chunk_tokens):
        z = flat2[i : i + chunk_tokens] / temperature
        hs.append(torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1))
    return torch.cat(lps).reshape(ids.shape), torch.cat(hs).reshape(ids.shape)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_entropy_grad_path_is_the_same_arithmetic_and_holds_one_copy(temperature):
    """The entropy-gradient path (the trainer's one-piece update) gives the old path's values and
    gradients to the bit, and what autograd keeps for backward at τ = 1 is one (B·T, V) float32 copy of the
    logits, not two (the sliced logits' reshape used to be done, and held, by each of the two functions)."""
    from llm.logprobs import logprob_entropy

    g = torch.Generator().manual_seed(0)
    B, T, V = 3, 5, 50
    base = torch.randn(B, T + 1, V, generator=g) * 3
    ids = torch.randint(0, V, (B, T), generator=g)
    a, b = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    got, want = [], []
    for fn, out in ((lambda x: logprob_entropy(x, ids, temperature, 4, entropy_grad=True), got),
                    (lambda x: _old_logprob_entropy_grad(x, ids, temperature, 4), want)):  # fmt: skip
        leaf = base.clone().requires_grad_()
        lp, h = fn(leaf[:, :-1])  # the trainer's slice: position t predicts token t
        ((lp * a).sum() + (h * b).sum()).backward()
        out += [lp.detach(), h.detach(), leaf.grad]
    for x, y in zip(got, want, strict=True):
        assert torch.equal(x, y)
    saved: dict[int, int] = {}

    def pack(t):
        if t.dim() and t.shape[-1] == V:
            s = t.untyped_storage()
            saved[s.data_ptr()] = s.nbytes()
        return t

    leaf = base.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lp, h = logprob_entropy(leaf[:, :-1], ids, temperature, 4, entropy_grad=True)
    copies = sum(saved.values()) / (B * T * V * 4)  # what backward holds, in (B·T, V) float32 copies
    assert copies == (1 if temperature == 1.0 else 2), saved  # it was 2 at τ = 1
