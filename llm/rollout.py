"""Rollout: G sampled completions per prompt, their rewards, and the per-token statistics the loss needs.

Deviations, stated first:
- Completions are sampled with ``model.generate`` (temperature τ, top-p, **no top-k**: transformers'
  default top-k = 50 is switched off so that τ = 1, top_p = 1 samples the model's full softmax).
- The training forward pass passes ``position_ids`` computed from the attention mask, the way
  ``generate`` numbers left-padded prompts; without them a plain forward shifts every left-padded row
  by its padding and the "on-policy" log-probs silently differ from the sampler's (TRL and verl
  pass them for the same reason).
- The <eos> token is part of the completion (it is an action: the policy chose to stop); tokens after
  it are padding. A completion that reaches ``max_new_tokens`` without <eos> is *truncated*: it keeps
  all its tokens, is scored as written, and is counted in ``rollout/truncated_frac``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from llm.kvdecode import KVDecoder
from llm.logprobs import logprob_entropy, nucleus_entropy_chunked
from llm.tasks import Example, Task


@dataclass
class Rollout:
    """One rollout of B = P·G sequences (P prompts × G completions, a prompt's completions adjacent)."""

    prompt_ids: Tensor  # (B, Lp) left-padded
    prompt_mask: Tensor  # (B, Lp) 1 = token
    completion_ids: Tensor  # (B, T) right-padded with pad after <eos>
    completion_mask: Tensor  # (B, T) float, 1 = response token (<eos> included)
    reward: Tensor  # (B,) float
    group: Tensor  # (B,) long, prompt index 0..P-1
    truncated: Tensor  # (B,) bool: no <eos> within max_new_tokens
    texts: list[str]  # decoded completions
    guide: Tensor | None = None  # (B,) bool: the row is a demonstration (LUFFY), not a sample
    step_correct: Tensor | None = None  # (B, T) float 0/1 step judgements (step_credit)
    embedding: Tensor | None = None  # (B, D) response embeddings (diversity_reward)
    answer: Tensor | None = (
        None  # (B,) long answer-cluster ids (``answer_ids``), when a controller needs them
    )

    @property
    def size(self) -> int:
        return self.completion_ids.shape[0]

    def rows(self, idx: Tensor | slice) -> Rollout:
        """The sub-rollout of these sequence indices."""
        pick = (lambda t: t[idx]) if isinstance(idx, slice) else (lambda t: t.index_select(0, idx))
        texts = self.texts[idx] if isinstance(idx, slice) else [self.texts[i] for i in idx.tolist()]
        opt = lambda t: None if t is None else pick(t)  # noqa: E731
        return Rollout(
            pick(self.prompt_ids), pick(self.prompt_mask), pick(self.completion_ids),
            pick(self.completion_mask), pick(self.reward), pick(self.group), pick(self.truncated), texts,
            opt(self.guide), opt(self.step_correct), opt(self.embedding), opt(self.answer),
        )  # fmt: skip


def answer_ids(task: Task, texts: list[str], examples: list[Example], group_size: int) -> Tensor:
    """(B,) long ids of the completions' final answers (``task.answer_key``), numbered in order of first
    appearance: two completions share an id exactly when the task reads the same answer from them."""
    ids: dict[str, int] = {}
    keys = [task.answer_key(t, examples[i // group_size]) for i, t in enumerate(texts)]
    return torch.tensor([ids.setdefault(k, len(ids)) for k in keys], dtype=torch.long)


def completion_mask(ids: Tensor, eos_token_id: int) -> tuple[Tensor, Tensor]:
    """(mask (B, T) float with 1 up to and including the first <eos>, truncated (B,) bool)."""
    is_eos = ids == eos_token_id
    seen_before = torch.cumsum(is_eos.long(), -1) - is_eos.long()  # eos strictly before t
    mask = (seen_before == 0).float()
    return mask, ~is_eos.any(-1)


@torch.no_grad()
def sample(
    model,
    tok,
    task: Task,
    examples: list[Example],
    group_size: int,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    greedy: bool = False,
    sampler: str = "own",
    share_prompts: bool = False,
) -> Rollout:
    """Generate ``group_size`` completions for each example and score them with the task's verifier.

    The sampling stream is ``torch.manual_seed(seed)`` (global RNG, as ``generate`` uses it), so a
    rollout is a function of (weights, examples, seed): the trainer derives seed from (root, step, rank).
    ``sampler``: ``"own"`` (``decode``: the same samples as ``generate``, with less per-token overhead;
    ``generate`` is used anyway where ``own_sampler_ok`` says the model's generation config asks for
    more) or ``"generate"``. ``share_prompts``: the own sampler prefills each group's prompt once.
    """
    prompts = [e.prompt for e in examples for _ in range(group_size)]
    ids, attn = tok.batch(prompts)
    device = next(model.parameters()).device
    ids, attn = ids.to(device), attn.to(device)
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    kw = (
        {"do_sample": False}
        if greedy
        else {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0}
    )
    if sampler == "own" and own_sampler_ok(model):
        comp = decode(
            model, ids, attn, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
            greedy=greedy, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            share_prompts=share_prompts,
        )  # fmt: skip
    else:
        out = model.generate(
            input_ids=ids, attention_mask=attn, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id, **kw,
        )  # fmt: skip
        comp = out[:, ids.shape[1] :]
    model.train(was_training)
    if comp.shape[1] < max_new_tokens:  # every row stopped early: pad to the fixed width
        pad = comp.new_full((comp.shape[0], max_new_tokens - comp.shape[1]), tok.pad_token_id)
        comp = torch.cat([comp, pad], 1)
    mask, truncated = completion_mask(comp, tok.eos_token_id)
    comp = torch.where(mask.bool(), comp, torch.full_like(comp, tok.pad_token_id))
    texts = [tok.decode(row) for row in comp.cpu()]
    reward = torch.tensor(
        [task.score(t, examples[i // group_size]) for i, t in enumerate(texts)], dtype=torch.float32
    )
    group = torch.arange(len(examples)).repeat_interleave(group_size)
    return Rollout(ids, attn, comp, mask.to(device), reward.to(device), group.to(device), truncated, texts)


_OWN_SAMPLER_FIELDS = frozenset(
    {"use_cache", "output_attentions", "output_hidden_states", "pad_token_id", "bos_token_id", "eos_token_id",
     "suppress_tokens", "_from_model_config", "transformers_version", "max_length"}
)  # fmt: skip
"""generation-config fields that may differ from transformers' defaults for ``decode`` to reproduce
``generate``: token ids (the caller passes <eos> and <pad>), bookkeeping, and ``suppress_tokens`` (applied
the way ``generate`` applies it); ``use_cache`` must stay on and the ``output_*`` flags off"""


def own_sampler_ok(model) -> bool:
    """Whether ``decode`` reproduces ``model.generate`` for this model: a decoder-only transformers model
    whose forward takes ``logits_to_keep``, with no logits processor in its generation config beyond the
    ones ``decode`` applies (temperature, top-p, suppressed tokens). Anything else goes to ``generate``."""
    import inspect

    gc, config = getattr(model, "generation_config", None), getattr(model, "config", None)
    if gc is None or config is None or getattr(config, "is_encoder_decoder", False):
        return False
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return False
    diff = gc.to_diff_dict()
    if not set(diff) <= _OWN_SAMPLER_FIELDS:
        return False
    return gc.use_cache and not gc.output_attentions and not gc.output_hidden_states


def prompt_runs(ids: Tensor, attn: Tensor) -> Tensor:
    """(B,) index of each row's first row among the runs of adjacent rows with the same prompt (ids and
    mask): the rows whose prompt a shared prefill computes, once per run (a group's G completions)."""
    same = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    same[1:] = (ids[1:] == ids[:-1]).all(-1) & (attn[1:] == attn[:-1]).all(-1)
    start = torch.arange(ids.shape[0], device=ids.device)
    return torch.cummax(torch.where(same, torch.zeros_like(start), start), 0).values


def prompt_positions(attn: Tensor) -> Tensor:
    """Position ids of left-padded prompts, the way ``generate`` numbers them: 0 at each row's first token
    (and on its padding)."""
    return (attn.long().cumsum(-1) - 1).masked_fill(attn == 0, 0)


def prefill(model, ids: Tensor, attn: Tensor, share: bool, logits_to_keep: int = 1):
    """(logits of the last ``logits_to_keep`` prompt positions (B, k, V), the ``DynamicCache`` of the
    prompts) for left-padded prompts, position ids from the mask. ``share``: each run of adjacent rows with
    the same prompt is computed once and its keys, values and logits repeated to the run's rows (in the
    caller's grad mode: the repeated rows' gradients sum into the one computation) — a GRPO group's G
    rows share their prompt, so the prompt costs 1/G; the numbers agree with the unshared pass up to the
    rounding of the smaller matrix products, not to the bit."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    pos = prompt_positions(attn)
    first = prompt_runs(ids, attn) if share else None
    if first is not None:
        rows, back = torch.unique_consecutive(first, return_inverse=True)
        ids, attn, pos = ids[rows], attn[rows], pos[rows]
    logits = model(
        input_ids=ids, attention_mask=attn, position_ids=pos, cache=cache, use_cache=True,
        logits_to_keep=logits_to_keep, return_dict=True,
    ).logits  # fmt: skip
    if first is not None:
        cache.batch_select_indices(back)
        logits = logits[back]
    return logits, cache


@torch.no_grad()
def decode(
    model,
    ids: Tensor,
    attn: Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    greedy: bool,
    eos_token_id: int,
    pad_token_id: int,
    share_prompts: bool = False,
    static_cache: bool = True,
) -> Tensor:
    """(B, ≤ max_new_tokens) completion ids, the same tokens ``model.generate`` samples from the global RNG
    for these left-padded prompts: one prefill of the prompts (position ids from the mask, logits of the
    last position only), then one forward of one token per new position against a ``DynamicCache``, with
    ``generate``'s own operations in its own order — float32 logits, suppressed tokens to −inf,
    ÷ temperature (when ≠ 1), top-p (when < 1), softmax, one ``torch.multinomial`` over every row per
    position (rows that have stopped included, as ``generate`` draws them), <pad> after <eos>, stop when
    every row has stopped. What it leaves out is ``generate``'s generality (processors, stopping criteria,
    input preparation per step), which is most of its per-token cost on a small model.
    ``tests/llm/test_sampler.py`` pins the tokens to ``generate``'s, to the bit, across these options.
    ``share_prompts``: the prefill computes each group's prompt once (``prefill``); then the samples are
    ``generate``'s only up to that rounding. ``static_cache``: for the Llama and Qwen2 models it supports,
    the steps after the prefill run on ``llm.kvdecode.KVDecoder`` (a cache allocated once, the forward's
    operations without its per-call machinery: the same logits to the bit); False, or another model,
    calls the model's forward with the ``DynamicCache``."""
    B, device = ids.shape[0], ids.device
    pos = prompt_positions(attn)
    suppress = model.generation_config.suppress_tokens
    unfinished = torch.ones(B, dtype=torch.long, device=device)
    pad = torch.tensor(pad_token_id, device=device)
    logits, cache = prefill(model, ids, attn, share_prompts)
    fast = KVDecoder.build(model, cache, attn, max_new_tokens) if static_cache else None
    if fast is not None:
        cache = None  # copied into the decoder's buffers
    tokens: list[Tensor] = []
    drop = None
    for t in range(max_new_tokens):
        scores = logits[:, -1].to(copy=True, dtype=torch.float32, device=device)
        if suppress is not None:
            if drop is None:
                vocab = torch.arange(scores.shape[-1], device=device)
                drop = torch.isin(vocab, torch.as_tensor(suppress, device=device))
            scores = torch.where(drop, -float("inf"), scores)
        if greedy:
            nxt = torch.argmax(scores, dim=-1)
        else:
            if temperature != 1.0:
                scores = scores / temperature
            if top_p < 1.0:
                sorted_logits, sorted_idx = torch.sort(scores, descending=False)
                remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
                remove[..., -1:] = 0
                scores = scores.masked_fill(remove.scatter(1, sorted_idx, remove), -float("inf"))
            nxt = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        nxt = nxt * unfinished + pad * (1 - unfinished)
        tokens.append(nxt)
        unfinished = unfinished & ~(nxt == eos_token_id)
        if t == max_new_tokens - 1 or bool(unfinished.max() == 0):
            break
        pos = pos[:, -1:] + 1
        if fast is not None:
            logits = fast.step(nxt, pos)
            continue
        attn = torch.cat([attn, attn.new_ones((B, 1))], dim=-1)
        logits = model(
            input_ids=nxt[:, None].clone(memory_format=torch.contiguous_format), attention_mask=attn,
            position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1, return_dict=True,
        ).logits  # fmt: skip
    return torch.stack(tokens, 1)


def token_stats(
    model,
    roll: Rollout,
    *,
    temperature: float,
    chunk_tokens: int,
    entropy_grad: bool = False,
    top_p: float = 1.0,
    with_log_mass: bool = False,
    mask: bool = True,
    with_topp: bool = False,
    share_prompts: bool = False,
) -> tuple[Tensor, ...]:
    """Log-prob of each sampled token and the entropy at its position, at temperature τ. (B, T) each.

    Runs under the caller's grad mode: with grad enabled the log-probs carry the gradient, and so does
    the entropy if ``entropy_grad`` (recomputed in backward chunk by chunk; for an entropy bonus).
    Only the T + 1 last positions' logits are computed (``logits_to_keep``), never the prompt's.
    ``top_p`` < 1: on the sampler's top-p support (the keep-sampling mask, ``logprob_entropy``); with
    ``mask`` False on the full softmax, with the support's log-mass measured in the same pass.
    ``with_topp``: also the nucleus entropy (``controllers.nucleus_entropy``, SIREN) of every position, from
    the same logits, last in the tuple (with gradient when ``entropy_grad``).
    ``share_prompts``: each group's prompt is computed once (``prefill``), its keys and values repeated to
    the group's rows, then the completions run against them (the same numbers up to float rounding).
    """
    T = roll.completion_ids.shape[1]
    ids = torch.cat([roll.prompt_ids, roll.completion_ids], 1)
    attn = torch.cat([roll.prompt_mask, torch.ones_like(roll.completion_ids)], 1)
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    if share_prompts:
        Lp = roll.prompt_ids.shape[1]
        logits, cache = prefill(model, roll.prompt_ids, roll.prompt_mask, True)  # predicts token 0
        if T > 1:  # the completions against the prompts' cache; the last token predicts nothing needed
            rest = model(
                input_ids=roll.completion_ids[:, :-1], attention_mask=attn[:, :-1],
                position_ids=pos[:, Lp : Lp + T - 1], cache=cache, use_cache=True, return_dict=True,
            ).logits  # fmt: skip
            logits = torch.cat([logits, rest], 1)
    else:
        logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=T + 1).logits
        logits = logits[:, :-1]  # (B, T, V): position t predicts completion token t
    out = logprob_entropy(
        logits, roll.completion_ids, temperature, chunk_tokens, entropy_grad, top_p, with_log_mass, mask
    )
    if with_topp:
        out = (*out, nucleus_entropy_chunked(logits, temperature, chunk_tokens, grad=entropy_grad))
    return out


def add_guides(
    roll: Rollout, tok, task: Task, examples: list[Example], group_size: int, n_guide: int
) -> Rollout:
    """Replace the last ``n_guide`` completions of every group by the example's reference solution
    (answer + <eos>): LUFFY's off-policy demonstrations, from the dataset. Widens the completion to
    fit the longest demonstration; rewards are the task's scores of the demonstrations (1 for a correct
    reference). ``guide`` marks the rows."""
    B, T = roll.completion_ids.shape
    demos = [[*tok.encode(e.answer, bos=False), tok.eos_token_id] for e in examples]
    width = max(T, max(map(len, demos)))
    comp = torch.full(
        (B, width), tok.pad_token_id, dtype=roll.completion_ids.dtype, device=roll.completion_ids.device
    )
    comp[:, :T] = roll.completion_ids
    guide = torch.zeros(B, dtype=torch.bool)
    for p, d in enumerate(demos):
        for j in range(group_size - n_guide, group_size):
            i = p * group_size + j
            comp[i] = tok.pad_token_id
            comp[i, : len(d)] = torch.as_tensor(d)
            guide[i] = True
    mask, truncated = completion_mask(comp, tok.eos_token_id)
    texts = [tok.decode(row) for row in comp.cpu()]
    reward = torch.tensor(
        [task.score(t, examples[i // group_size]) for i, t in enumerate(texts)], dtype=torch.float32
    )
    device = roll.completion_mask.device
    return Rollout(
        roll.prompt_ids, roll.prompt_mask, comp, mask.to(device), reward.to(device), roll.group,
        truncated.to(roll.truncated.device) & ~guide.to(roll.truncated.device), texts, guide.to(device),
    )  # fmt: skip


def prefix_steps(roll: Rollout, tok, examples: list[Example], group_size: int, judge=None) -> Tensor:
    """(B, T) float step judgements, one per completion token: by default 1 while the completion so far
    (left-stripped) is a prefix of the reference answer — every token a step, correct while it can still
    end in the reference; <eos> right after the full answer is correct. ``judge(prompt, answer,
    prefixes) -> list[bool]`` replaces the rule (``prefixes[t]``: the decoded completion up to token t)."""
    B, T = roll.completion_ids.shape
    out = torch.zeros(B, T)
    ids = roll.completion_ids.cpu()
    mask = roll.completion_mask.cpu()
    for i in range(B):
        ex = examples[i // group_size]
        n = int(mask[i].sum())
        prefixes = [tok.decode(ids[i, : t + 1]) for t in range(n)]
        if judge is None:
            ok = [ex.answer.startswith(p.lstrip()) for p in prefixes]
        else:
            ok = list(judge(ex.prompt, ex.answer, prefixes))
            if len(ok) != n:
                raise ValueError(
                    f"step_signal: the judge returned {len(ok)} judgements for a completion of {n} tokens; allowed: one bool per token"
                )
        out[i, :n] = torch.tensor([float(bool(v)) for v in ok])
    return out.to(roll.completion_mask.device)
