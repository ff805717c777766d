"""One interface over the two environment families, on a device: exact quantities and sampled episodes.

``EnvModel.exact(z)`` returns an object with ``pi``, ``reach`` (R, S), ``adv`` (R, S, A) (so the exact PG
step is reach·π·adv and the natural-PG step adv), ``entropy`` (R, S) and ``success`` (R, P);
``EnvModel.sample(z, n, gen)`` returns states, tokens, mask (R, P, n, T), the probability that each
episode is judged correct ``p_correct`` and an answer id ``answer`` (R, P, n).
"""

from __future__ import annotations

import torch

import controllers as C
from sim import mdp
from sim import tree as tr
from sim.envs import MdpEnvSpec, TreeEnvSpec


class TreeModel:
    fixed_length = True  # every response has exactly T tokens

    def __init__(self, spec: TreeEnvSpec, device: torch.device, dtype: torch.dtype):
        self.spec, self.shape = spec, spec.shape
        self.n_prompts, self.n_states, self.n_actions = (
            spec.shape.n_prompts,
            spec.shape.n_states,
            spec.shape.vocab,
        )
        self.horizon = spec.shape.horizon
        self.rewards = torch.as_tensor(spec.rewards, dtype=dtype, device=device)  # (P, L)
        self.answers = torch.as_tensor(spec.answer_of_leaf(), device=device)
        self.qstar = self._qstar()  # (S, V)
        self.best = self.rewards.max(-1).values  # (P,)

    def _qstar(self) -> torch.Tensor:
        """(S, V) the best expected reward reachable after taking token a in state s (the optimal Q)."""
        P, V, T = self.n_prompts, self.n_actions, self.horizon
        q = torch.empty(self.n_states, V, dtype=self.rewards.dtype, device=self.rewards.device)
        for t in range(T):
            sub = self.rewards.reshape(P, V ** (t + 1), V ** (T - t - 1)).max(-1).values  # (P, V^(t+1))
            q[self.shape.level_slice(t)] = sub.reshape(P * V**t, V)
        return q

    def answer_entropy(self, leaf_prob: torch.Tensor) -> torch.Tensor:
        """(P,) exact semantic entropy of each prompt's answers, nats: the entropy of the distribution of
        answer ids (a leaf's last token) under the leaf probabilities (P, V^T)."""
        P, L = leaf_prob.shape
        group = torch.arange(P, device=leaf_prob.device).repeat_interleave(L)
        cluster = self.answers.to(leaf_prob.device).repeat(P)
        return C.cluster_entropy(cluster, group, P, weight=leaf_prob.reshape(-1), dtype=leaf_prob.dtype)

    def guide_logits(self, margin: float = 50.0) -> torch.Tensor:
        """(S, V) logits of the optimal policy (uniform over the tokens that keep the best reward
        reachable; the others ``margin`` nats below): LUFFY's guide in the simulator."""
        best = self.qstar.max(-1, keepdim=True).values
        return torch.where(self.qstar >= best - 1e-12, 0.0, -margin).to(self.qstar.dtype)

    def step_correct(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(…, T) 1.0 where the token keeps the prompt's best reward reachable (an exact step judge: the
        prefix so far is still on a path to a best leaf), else 0.0; 0.0 for prompts whose best reward is 0."""
        q = self.qstar[states, tokens]
        prompt = self._prompt_of(states)
        best = self.best[prompt]
        return ((q >= best - 1e-12) & (best > 0)).to(q.dtype)

    def _prompt_of(self, states: torch.Tensor) -> torch.Tensor:
        """Prompt index of each state row (levels are prompt-major)."""
        out = torch.empty_like(states)
        for t in range(self.horizon):
            sl = self.shape.level_slice(t)
            inside = (states >= sl.start) & (states < sl.stop)
            out = torch.where(inside, (states - sl.start) // (self.n_actions**t), out)
        return out

    def exact(self, z: torch.Tensor) -> tr.Exact:
        return tr.exact(self.shape, z, self.rewards)

    def sample(self, z: torch.Tensor, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        states, tokens = tr.sample(self.shape, z, n, gen)  # (R, P, n, T)
        leaf = tr.leaf_index(self.shape, tokens)
        prompt = torch.arange(self.n_prompts, device=z.device)[None, :, None]
        return {
            "states": states,
            "tokens": tokens,
            "mask": torch.ones(states.shape, dtype=z.dtype, device=z.device),
            "p_correct": self.rewards[prompt, leaf],
            "answer": self.answers[leaf],
        }


class MdpModel:
    fixed_length = False  # episodes end early

    def __init__(self, spec: MdpEnvSpec, device: torch.device, dtype: torch.dtype):
        self.spec = spec
        self.n_prompts, self.n_states, self.n_actions = spec.n_prompts, spec.n_states, spec.n_actions
        self.horizon = spec.horizon
        f = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
        self.table = mdp.Transitions(
            torch.as_tensor(spec.next, device=device), f(spec.prob), f(spec.cont), f(spec.succ)
        )
        self.start = torch.as_tensor(spec.start, device=device)

    def exact(self, z: torch.Tensor) -> mdp.MdpExact:
        return mdp.exact(self.table, z, self.start, self.horizon)

    def sample(self, z: torch.Tensor, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        ep = mdp.sample(self.table, z, self.start, self.horizon, n, gen)
        return {
            "states": ep["states"],
            "tokens": ep["tokens"],
            "mask": ep["mask"],
            "p_correct": ep["success"],
            "answer": ep["final"],  # the state the episode ended in
        }


def model(spec: TreeEnvSpec | MdpEnvSpec, device: torch.device, dtype: torch.dtype):
    return (TreeModel if isinstance(spec, TreeEnvSpec) else MdpModel)(spec, device, dtype)


def visit_weights(reach: torch.Tensor) -> torch.Tensor:
    """(R, S) share of all expected tokens spent in each state: Σ_s w(s)·f(s) is the expected
    token-mean of f over a large batch (on trees every response has T tokens: w = d(s)/(T·P))."""
    return reach / reach.sum(-1, keepdim=True)
