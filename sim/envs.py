"""Environments: the Bandit and the TokenTree, as enumerable trees (``sim.tree``) and as gymnasium envs.

``make_bandit`` / ``make_token_tree`` return a ``TreeEnvSpec``: the tree shape, the leaf rewards
(P, V^T) — the probability that a response is judged correct — and the base-model prior logits (S, V).
The simulator uses the spec directly (exact, batched); ``BanditEnv`` / ``TokenTreeEnv`` expose the same
MDP through the gymnasium API (ids ``entrolab/Bandit-v0``, ``entrolab/TokenTree-v0``), one episode = one
prompt drawn uniformly, one response sampled token by token, reward at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import gymnasium as gym
import numpy as np

from sim.tree import TreeShape


def _err(name: str, value, allowed: str) -> ValueError:
    return ValueError(f"{name}: got {value!r}; allowed: {allowed}")


def _int(name: str, value, lo: int, hi: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < lo
        or (hi is not None and value > hi)
    ):
        raise _err(name, value, f"an integer in [{lo}, {'inf' if hi is None else hi}]")
    return int(value)


def _real(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (lo <= value <= hi):
        raise _err(name, value, f"a number in [{lo}, {hi}]")
    return float(value)


def _choice(name: str, value, choices) -> str:
    if value not in choices:
        raise _err(name, value, ", ".join(map(repr, choices)))
    return value


@dataclass(frozen=True)
class TreeEnvSpec:
    """An enumerable environment: shape, leaf rewards (P, V^T) in [0, 1], prior logits (S, V)."""

    name: str
    shape: TreeShape
    rewards: np.ndarray
    prior: np.ndarray
    bernoulli: bool = False  # sampled reward ~ Bernoulli(rewards) (else rewards are {0, 1} and exact)
    fork: np.ndarray | None = None  # TokenTree: (S,) True for the high-entropy fork states of the prior

    @property
    def n_prompts(self) -> int:
        return self.shape.n_prompts

    def answer_of_leaf(self) -> np.ndarray:
        """(V^T,) answer id of each leaf: its last token (for SEED-GRPO's answer clusters)."""
        return np.arange(self.shape.n_leaves) % self.shape.vocab


MAX_BANDIT_ARMS = 20_000_000
"""prompts × arms of the largest bandit: its construction holds about six (P, n) arrays of 8 bytes (1 GB)"""


def make_bandit(
    n_prompts: int = 64,
    n_arms: int = 16,
    correct_frac: float = 0.25,
    difficulty: str = "fixed",
    prior: str = "gaussian",
    prior_scale: float = 1.0,
    correct: str = "random",
    rewards: str = "binary",
    seed: int = 0,
) -> TreeEnvSpec:
    """P prompts × n arms (each arm a whole response).

    correct_frac: mean share of correct arms per prompt; difficulty "fixed" (every prompt round(frac·n),
    at least 1) or "beta" (share ~ Beta with that mean and concentration 2, so some prompts are hard and
    some easy; at least 1 correct arm). prior: "gaussian" z ~ N(0, prior_scale²) or "zipf" z = −s·log(rank).
    correct: which arms are correct — "random", "rare" (the least likely under the prior) or "common".
    rewards: "binary" (exact 0/1) or "bernoulli" (each arm correct with probability U(0, 1) scaled so
    correct arms have p ≥ 0.5 and wrong ones p < 0.5; sampled rewards are draws).
    """
    P = _int("n_prompts", n_prompts, 1)
    n = _int("n_arms", n_arms, 2)
    if P * n > MAX_BANDIT_ARMS:  # before any array: a few (P, n) float64 arrays are built here
        raise _err(
            "n_arms", n, f"P·n ≤ {MAX_BANDIT_ARMS:,} arms in all (got {P}·{n}); lower n_arms or n_prompts"
        )
    frac = _real("correct_frac", correct_frac, 0.0, 1.0)
    _choice("difficulty", difficulty, ("fixed", "beta"))
    _choice("prior", prior, ("gaussian", "zipf"))
    scale = _real("prior_scale", prior_scale, 0.0, 100.0)
    _choice("correct", correct, ("random", "rare", "common"))
    _choice("rewards", rewards, ("binary", "bernoulli"))
    rng = np.random.default_rng(seed)
    if prior == "gaussian":
        z = rng.normal(0.0, scale, (P, n))
    else:
        ranks = np.argsort(rng.random((P, n)), axis=1) + 1
        z = -scale * np.log(ranks)
    if difficulty == "fixed":
        k = np.full(P, max(1, round(frac * n)))
    else:
        conc = 2.0
        share = rng.beta(max(frac * conc, 1e-3), max((1 - frac) * conc, 1e-3), P)
        k = np.clip(np.round(share * n), 1, n).astype(int)
    order = {
        "random": np.argsort(rng.random((P, n)), axis=1),
        "rare": np.argsort(z, axis=1),
        "common": np.argsort(-z, axis=1),
    }[correct]
    is_correct = np.zeros((P, n), bool)
    for p in range(P):  # construction only, once per environment
        is_correct[p, order[p, : k[p]]] = True
    if rewards == "binary":
        r = is_correct.astype(np.float64)
    else:
        u = rng.random((P, n))
        r = np.where(is_correct, 0.5 + 0.5 * u, 0.5 * u)
    return TreeEnvSpec("bandit", TreeShape(P, n, 1), r, z, bernoulli=rewards == "bernoulli")


def make_token_tree(
    n_prompts: int = 8,
    vocab: int = 4,
    horizon: int = 5,
    fork_frac: float = 0.2,
    det_margin: float = 5.0,
    fork_scale: float = 0.3,
    correct_frac: float = 0.3,
    seed: int = 0,
) -> TreeEnvSpec:
    """An autoregressive token MDP: every prefix is a state (P·(V^T − 1)/(V − 1) states).

    Base prior: a ``fork_frac`` minority of "fork" states with nearly flat logits (N(0, fork_scale²):
    high entropy) and a majority of near-deterministic states (one token ``det_margin`` nats above
    N(0, 1) others), like an LLM's few high-entropy forking tokens. Verifier: each complete response
    (leaf) is correct with probability ``correct_frac``, drawn once per environment (seeded).
    """
    P = _int("n_prompts", n_prompts, 1)
    V = _int("vocab", vocab, 2)
    T = _int("horizon", horizon, 1)
    shape = TreeShape(P, V, T)
    if shape.n_leaves * P > 2_000_000:
        raise _err(
            "horizon", T, f"P·V^T ≤ 2,000,000 leaves (got {P}·{V}^{T}); lower vocab, horizon or n_prompts"
        )
    ff = _real("fork_frac", fork_frac, 0.0, 1.0)
    margin = _real("det_margin", det_margin, 0.0, 100.0)
    fs = _real("fork_scale", fork_scale, 0.0, 100.0)
    cf = _real("correct_frac", correct_frac, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    S = shape.n_states
    fork = rng.random(S) < ff
    z = rng.normal(0.0, 1.0, (S, V))
    top = rng.integers(0, V, S)
    z[np.arange(S), top] += margin
    z[fork] = rng.normal(0.0, fs, (int(fork.sum()), V))
    r = (rng.random((P, shape.n_leaves)) < cf).astype(np.float64)
    return TreeEnvSpec("token_tree", shape, r, z, fork=fork)


@dataclass(frozen=True)
class MdpEnvSpec:
    """A gymnasium toy-text MDP as padded transition tables (see ``sim.mdp``): (S, A, K) arrays ``next``,
    ``prob``, ``cont`` (episode goes on), ``succ`` (episode ends in success); P start states (the prompts),
    horizon H, prior logits (S, A)."""

    name: str
    next: np.ndarray
    prob: np.ndarray
    cont: np.ndarray
    succ: np.ndarray
    start: np.ndarray
    horizon: int
    prior: np.ndarray
    bernoulli: bool = False

    @property
    def n_prompts(self) -> int:
        return int(self.start.shape[0])

    @property
    def n_states(self) -> int:
        return int(self.next.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.next.shape[1])


TOY_TEXT = ("FrozenLake-v1", "CliffWalking-v1", "Taxi-v3")
# kwargs whose dynamics gymnasium's transition table P does not hold
_NOT_IN_TABLE = {"fickle_passenger", "fickle_probability", "render_mode", "max_episode_steps"}


def _gym_make(env_id: str, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return gym.make(env_id, **kwargs)
        except gym.error.Error:
            if env_id == "Taxi-v3":  # gymnasium >= 1.3 keeps only Taxi-v4 (same default dynamics)
                return gym.make("Taxi-v4", **kwargs)
            raise


def make_toytext(
    env_id: str,
    horizon: int | None = None,
    n_prompts: int = 16,
    prior_scale: float = 0.0,
    seed: int = 0,
    **gym_kwargs,
) -> MdpEnvSpec:
    """Gymnasium's FrozenLake-v1, CliffWalking-v1 or Taxi-v3 from its transition table ``env.unwrapped.P``.

    horizon: steps per episode (default: gymnasium's time limit, 100 where it has none). n_prompts: at
    most this many start states, a seeded sample of the support of the env's initial distribution (all
    of it when smaller: FrozenLake and CliffWalking have one). Success = terminating with the largest
    terminal reward in the table. prior: uniform logits plus N(0, prior_scale²) noise. gym_kwargs go to
    ``gymnasium.make`` (e.g. ``is_slippery=False``, ``map_name="8x8"``).
    """
    _choice("env", env_id, TOY_TEXT)
    bad = sorted(set(gym_kwargs) & _NOT_IN_TABLE)
    if bad:
        raise _err(bad[0], gym_kwargs[bad[0]], "not supported: its dynamics are not in the transition table")
    try:
        env = _gym_make(env_id, **gym_kwargs)
    except TypeError as e:
        raise ValueError(f"env_kwargs: {e}; allowed: the arguments of gymnasium.make({env_id!r})") from None
    limit = env.spec.max_episode_steps if env.spec is not None else None
    H = _int("horizon", horizon if horizon is not None else (limit or 100), 1, 10_000)
    n_p = _int("n_prompts", n_prompts, 1)
    scale = _real("prior_scale", prior_scale, 0.0, 100.0)
    u = env.unwrapped
    table = u.P
    S, A = u.observation_space.n, u.action_space.n
    K = max(len(table[s][a]) for s in range(S) for a in range(A))
    best = max(r for s in range(S) for a in range(A) for (_, _, r, done) in table[s][a] if done)
    nxt = np.zeros((S, A, K), np.int64)
    prob, cont, succ = (np.zeros((S, A, K)) for _ in range(3))
    for s in range(S):
        for a in range(A):
            for k, (p, s2, r, done) in enumerate(table[s][a]):
                nxt[s, a, k], prob[s, a, k] = s2, p
                cont[s, a, k] = 0.0 if done else 1.0
                succ[s, a, k] = 1.0 if done and r == best else 0.0
    rng = np.random.default_rng(seed)
    support = np.flatnonzero(np.asarray(u.initial_state_distrib) > 0)
    start = np.sort(rng.choice(support, size=min(n_p, support.size), replace=False))
    prior = rng.normal(0.0, scale, (S, A)) if scale > 0 else np.zeros((S, A))
    env.close()
    return MdpEnvSpec(env_id, nxt, prob, cont, succ, start, H, prior)


def _toytext_builder(env_id: str):
    def build(**kwargs) -> MdpEnvSpec:
        return make_toytext(env_id, **kwargs)

    build.__name__ = f"make_toytext({env_id!r})"
    return build


BUILDERS = {
    "bandit": make_bandit,
    "token_tree": make_token_tree,
    **{env_id: _toytext_builder(env_id) for env_id in TOY_TEXT},
}


class TreeEnv(gym.Env):
    """Gymnasium view of a TreeEnvSpec: observation = state index, action = token, reward at the end.

    The episode's policy is the caller's; the env only follows the tree and draws the verifier reward
    (Bernoulli(rewards[leaf]) — exact 0/1 for binary rewards).
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, spec: TreeEnvSpec | None = None, **kwargs):
        self.tree = spec if spec is not None else self._default(**kwargs)
        s = self.tree.shape
        self.observation_space = gym.spaces.Discrete(s.n_states)
        self.action_space = gym.spaces.Discrete(s.vocab)
        self._prompt = 0
        self._t = 0
        self._prefix = 0

    def _default(self, **kwargs) -> TreeEnvSpec:  # pragma: no cover - overridden
        raise NotImplementedError

    def _state(self) -> int:
        s = self.tree.shape
        return s.level_slice(self._t).start + self._prompt * s.vocab**self._t + self._prefix

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._prompt = int(self.np_random.integers(self.tree.shape.n_prompts))
        self._t, self._prefix = 0, 0
        return self._state(), {"prompt": self._prompt}

    def step(self, action):
        s = self.tree.shape
        if not self.action_space.contains(action):
            raise ValueError(f"action: got {action!r}; allowed: an integer in [0, {s.vocab - 1}]")
        self._prefix = self._prefix * s.vocab + int(action)
        self._t += 1
        if self._t < s.horizon:
            return self._state(), 0.0, False, False, {}
        p = float(self.tree.rewards[self._prompt, self._prefix])
        reward = float(self.np_random.random() < p)
        leaf = self._prefix
        self._t, self._prefix = 0, 0  # terminal observation: the prompt's root
        return self._state(), reward, True, False, {"leaf": leaf, "p_correct": p}


class BanditEnv(TreeEnv):
    def _default(self, **kwargs) -> TreeEnvSpec:
        return make_bandit(**kwargs)


class TokenTreeEnv(TreeEnv):
    def _default(self, **kwargs) -> TreeEnvSpec:
        return make_token_tree(**kwargs)


def register() -> None:
    """Register the gymnasium ids (idempotent)."""
    for env_id, entry in (("entrolab/Bandit-v0", BanditEnv), ("entrolab/TokenTree-v0", TokenTreeEnv)):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry)


register()
