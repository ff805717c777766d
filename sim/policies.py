"""Policy classes for the simulator: how the logits of every state come from parameters.

A policy maps parameters θ (one set per run, leading axis R) to the logits z (R, S, V) of *all* states, so
the simulator's exact quantities (entropy, success, pass@k) stay exact by enumeration whatever the class.
Every class starts exactly at the environment's prior logits (its learned part is zero at θ0), so
classes are compared from the same initial policy; the runs of one config start identical and differ
through their samples, as with the tabular policy.

- ``tabular``: θ = z, one free logit per (state, token) — nothing shared.
- ``loglinear``: z = prior + Φθ, Φ (S, V, d) fixed features shared across states: Gaussian
  (``features="random"``), or ``"structured"``, where the first feature is +1 on every token that keeps a
  best-reward answer reachable (trees; "correct responses of different prompts share a direction"), so
  learning one prompt moves the others. θ (R, d) starts at 0.
- ``lowrank``: z = prior + U Wᵀ, state embeddings U (R, S, r) and token embeddings W (R, V, r); U starts
  random (scale 1/√r), W at 0 (LoRA-style: one factor zero).
- ``mlp`` (trees): an MLP over a prefix encoding (prompt one-hot, one-hot token at each position, depth),
  hidden tanh layer, output layer starting at 0.
- ``transformer`` (trees with horizon ≥ 2): a causal transformer over [prompt token, y_1, …, y_t] (1–2
  pre-norm layers, ``heads`` heads), whose last position gives the next-token logits; its output layer
  starts at 0. The logits of every prefix come from one pass over the V^(T−1) full-length prefixes of
  each prompt (causality: a position's output depends on its prefix only).
All are float64 by default, CPU or CUDA, seeded by ``seed`` (the features and the random initial weights).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

POLICIES = ("tabular", "loglinear", "lowrank", "mlp", "transformer")
KWARGS = {
    "tabular": {},
    "loglinear": {"d": 16, "features": "random", "scale": 1.0, "seed": 0},
    "lowrank": {"rank": 4, "scale": 1.0, "seed": 0},
    "mlp": {"hidden": 32, "scale": 1.0, "seed": 0},
    "transformer": {"d": 16, "heads": 2, "layers": 1, "scale": 1.0, "seed": 0},
}
TREE_ONLY = ("mlp", "transformer")


def check(policy: str, kwargs: dict, env: str, tree: bool, horizon: int) -> None:
    """One-line ValueErrors for a bad policy, its keyword arguments or the environment it is used on."""
    if policy not in POLICIES:
        raise ValueError(f"policy: got {policy!r}; allowed: {', '.join(POLICIES)}")
    fits = [p for p in POLICIES if (tree or p not in TREE_ONLY) and not (p == "transformer" and horizon < 2)]
    if policy not in fits:
        raise ValueError(f"policy: got {policy!r} on {env}; allowed there: {', '.join(fits)}")
    allowed = KWARGS[policy]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"policy_kwargs: unknown {unknown} for {policy}; allowed: {', '.join(allowed) or '(none)'}"
        )
    for k, v in kwargs.items():
        if k in ("d", "rank", "hidden", "heads", "layers", "seed"):
            lo = 0 if k == "seed" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"policy_kwargs.{k}: got {v!r}; allowed: an integer >= {lo}")
        elif k == "scale":
            if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"policy_kwargs.scale: got {v!r}; allowed: a finite number > 0")
        elif k == "features" and v not in ("random", "structured"):
            raise ValueError(f"policy_kwargs.features: got {v!r}; allowed: 'random', 'structured'")
    if policy == "loglinear" and kwargs.get("features") == "structured" and not tree:
        raise ValueError(
            "policy_kwargs.features: got 'structured'; allowed: 'random' (structured needs bandit/token_tree)"
        )
    if policy == "transformer":
        d, h = kwargs.get("d", 16), kwargs.get("heads", 2)
        if d % h:
            raise ValueError(f"policy_kwargs.d: got {d}; allowed: a multiple of heads = {h}")
        if kwargs.get("layers", 1) > 2:
            raise ValueError(f"policy_kwargs.layers: got {kwargs['layers']}; allowed: 1 or 2")


class Policy:
    """θ → z for all states. ``params(R)`` gives the initial parameters (leaf tensors, leading axis R)."""

    name = "policy"

    def __init__(self, model, prior: Tensor, kwargs: dict):
        self.model, self.prior = model, prior
        self.kw = {**KWARGS[self.name], **kwargs}
        self.gen = torch.Generator().manual_seed(int(self.kw.get("seed", 0)))
        self.S, self.V = prior.shape
        self._init_gen: Tensor | None = None

    def _randn(self, *shape) -> Tensor:
        return torch.randn(*shape, generator=self.gen, dtype=self.prior.dtype).to(self.prior.device)

    def params(self, R: int) -> dict[str, Tensor]:
        """The initial parameters, the same on every call (the generator is rewound to where the features
        left it), so ``Simulator.init_state``, ``load_state`` and ``kernel_gain`` all start from one θ0."""
        if self._init_gen is None:
            self._init_gen = self.gen.get_state()
        else:
            self.gen.set_state(self._init_gen)
        return self._params(R)

    def _params(self, R: int) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits(self, params: dict[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Tabular(Policy):
    name = "tabular"

    def _params(self, R):
        return {"z": self.prior[None].repeat(R, 1, 1)}

    def logits(self, params):
        return params["z"]


class LogLinear(Policy):
    name = "loglinear"

    def __init__(self, model, prior, kwargs):
        super().__init__(model, prior, kwargs)
        d = self.kw["d"]
        phi = self._randn(self.S, self.V, d) * (self.kw["scale"] / math.sqrt(d))
        if self.kw["features"] == "structured":
            best = model.qstar.max(-1, keepdim=True).values
            correct = (model.qstar >= best - 1e-12) & (best > 0)
            phi[..., 0] = correct.to(phi.dtype) * self.kw["scale"]
        self.phi = phi

    def _params(self, R):
        return {"theta": torch.zeros(R, self.kw["d"], dtype=self.prior.dtype, device=self.prior.device)}

    def logits(self, params):
        return self.prior + torch.einsum("svd,rd->rsv", self.phi, params["theta"])


class LowRank(Policy):
    name = "lowrank"

    def _params(self, R):
        r = self.kw["rank"]
        u = self._randn(self.S, r) * (self.kw["scale"] / math.sqrt(r))
        return {
            "u": u[None].repeat(R, 1, 1),
            "w": torch.zeros(R, self.V, r, dtype=self.prior.dtype, device=self.prior.device),
        }

    def logits(self, params):
        return self.prior + torch.einsum("rsk,rvk->rsv", params["u"], params["w"])


def _prefix_tokens(model) -> tuple[Tensor, Tensor, Tensor]:
    """For every tree state: its prompt (S,), depth (S,) and the tokens of its prefix (S, T − 1), −1 past
    the depth."""
    P, V, T = model.n_prompts, model.n_actions, model.horizon
    prompt, depth, toks = [], [], []
    for t in range(T):
        n = P * V**t
        idx = torch.arange(n)
        prompt.append(idx // V**t)
        depth.append(torch.full((n,), t))
        prefix = idx % V**t
        cols = []
        for j in range(T - 1):
            if j < t:
                cols.append((prefix // V ** (t - 1 - j)) % V)
            else:
                cols.append(torch.full((n,), -1))
        toks.append(torch.stack(cols, -1) if cols else torch.zeros(n, 0, dtype=torch.long))
    return torch.cat(prompt), torch.cat(depth), torch.cat(toks)


class MLP(Policy):
    name = "mlp"

    def __init__(self, model, prior, kwargs):
        super().__init__(model, prior, kwargs)
        P, V, T = model.n_prompts, model.n_actions, model.horizon
        prompt, depth, toks = _prefix_tokens(model)
        x = [torch.nn.functional.one_hot(prompt, P), torch.nn.functional.one_hot(depth, T)]
        for j in range(T - 1):
            col = toks[:, j]
            x.append(torch.nn.functional.one_hot(col.clamp_min(0), V) * (col >= 0)[:, None])
        self.x = torch.cat(x, -1).to(prior.dtype).to(prior.device)  # (S, F)

    def _params(self, R):
        F, H = self.x.shape[1], self.kw["hidden"]
        w1 = self._randn(F, H) * (self.kw["scale"] / math.sqrt(F))
        return {
            "w1": w1[None].repeat(R, 1, 1),
            "b1": torch.zeros(R, H, dtype=self.prior.dtype, device=self.prior.device),
            "w2": torch.zeros(R, H, self.V, dtype=self.prior.dtype, device=self.prior.device),
        }

    def logits(self, params):
        h = torch.tanh(torch.einsum("sf,rfh->rsh", self.x, params["w1"]) + params["b1"][:, None])
        return self.prior + torch.einsum("rsh,rhv->rsv", h, params["w2"])


def _norm(x: Tensor) -> Tensor:
    """Layer norm without parameters (written out: ``Tensor.var`` is several times slower in float64)."""
    c = x - x.mean(-1, keepdim=True)
    return c * torch.rsqrt((c * c).mean(-1, keepdim=True) + 1e-5)


class Transformer(Policy):
    name = "transformer"

    def __init__(self, model, prior, kwargs):
        super().__init__(model, prior, kwargs)
        P, V, T = model.n_prompts, model.n_actions, model.horizon
        # the V^(T−1) full-length prefixes of each prompt: [prompt token, y_1 … y_{T−1}], input ids with the
        # prompt tokens first (0..P−1) and the vocabulary after (P..P+V−1)
        n = V ** (T - 1)
        idx = torch.arange(n)
        ys = [(idx // V ** (T - 2 - j)) % V for j in range(T - 1)]
        seq = torch.stack([torch.zeros(n, dtype=torch.long), *[y + P for y in ys]], -1)  # (n, T)
        seq = seq[None].repeat(P, 1, 1)
        seq[:, :, 0] = torch.arange(P)[:, None]
        self.seq = seq.to(prior.device)  # (P, n, T)
        # state rows of the tree, level by level, pick the first full prefix that extends them
        rows = []
        for t in range(T):
            k = torch.arange(P * V**t)
            p, prefix = k // V**t, k % V**t
            rows.append(p * n * T + (prefix * V ** (T - 1 - t)) * T + t)
        self.pick = torch.cat(rows).to(prior.device)  # (S,) into the flattened (P, n, T) outputs
        self.causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=prior.device), 1)

    def _params(self, R):
        d, L, T = self.kw["d"], self.kw["layers"], self.model.horizon
        s = self.kw["scale"]
        n_in = self.model.n_prompts + self.V

        def rep(x):
            return x[None].repeat(R, *([1] * x.ndim))

        p = {"emb": rep(self._randn(n_in, d) * s), "pos": rep(self._randn(T, d) * s)}
        for i in range(L):
            for m in ("q", "k", "v", "o"):
                p[f"{m}{i}"] = rep(self._randn(d, d) * (s / math.sqrt(d)))
            p[f"f{i}"] = rep(self._randn(d, 2 * d) * (s / math.sqrt(d)))
            p[f"g{i}"] = rep(self._randn(2 * d, d) * (s / math.sqrt(2 * d)))
        p["head"] = torch.zeros(R, d, self.V, dtype=self.prior.dtype, device=self.prior.device)
        return p

    def logits(self, params):
        R = params["emb"].shape[0]
        d, H = self.kw["d"], self.kw["heads"]
        x = params["emb"][:, self.seq] + params["pos"][:, None, None]  # (R, P, n, T, d)
        for i in range(self.kw["layers"]):
            h = _norm(x)
            q, k, v = (torch.einsum("rpntd,rde->rpnte", h, params[f"{m}{i}"]) for m in "qkv")
            split = lambda t: t.reshape(*t.shape[:-1], H, d // H).transpose(-2, -3)  # noqa: E731
            q, k, v = split(q), split(k), split(v)  # (R, P, n, H, T, dh)
            att = q @ k.transpose(-1, -2) / math.sqrt(d // H)
            att = att.masked_fill(self.causal, -torch.inf).softmax(-1)
            y = (att @ v).transpose(-2, -3).reshape(x.shape)
            x = x + torch.einsum("rpntd,rde->rpnte", y, params[f"o{i}"])
            h = _norm(x)
            x = x + torch.einsum(
                "rpntf,rfd->rpntd",
                torch.tanh(torch.einsum("rpntd,rdf->rpntf", h, params[f"f{i}"])),
                params[f"g{i}"],
            )
        out = torch.einsum("rpntd,rdv->rpntv", _norm(x), params["head"])  # (R, P, n, T, V)
        return self.prior + out.reshape(R, -1, self.V)[:, self.pick]


CLASSES = {c.name: c for c in (Tabular, LogLinear, LowRank, MLP, Transformer)}


def build(name: str, model, prior: Tensor, kwargs: dict) -> Policy:
    return CLASSES[name](model, prior, kwargs)
