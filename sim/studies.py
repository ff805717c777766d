"""Study settings shared by the checks of ``python -m sim verify`` and the figures: where a verify row and a
figure measure the same thing, both build their runs from the one definition here."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.run import SimConfig

TREE = {"n_prompts": 8, "vocab": 4, "horizon": 4, "correct_frac": 0.5}
"""The token tree of most training-claim studies: 8 prompts, 4 tokens per step, 4 steps, half the leaves
correct (``sim.envs.make_token_tree``; the environment seed is the study's)."""


def tree_config(env_seed: int, seed: int, **fields) -> SimConfig:
    """A run on ``TREE`` with this environment seed and sampling seed, exact pass@1 only; ``fields``: every
    other ``SimConfig`` field (update, controllers, runs, steps, lr, ...)."""
    return SimConfig(**{"env": "token_tree", "env_kwargs": {**TREE, "seed": env_seed}, "seed": seed,
                        "pass_k": (1,), **fields})  # fmt: skip


CLIP_LR = 10.0
"""η of the clip-family studies: at η = 1 no token's ratio leaves [0.8, 1.2] in 4 epochs, so clip-higher
cannot act"""


@dataclass(frozen=True)
class Sweep:
    """One knob of one method, swept on ``TREE`` with PPO (4 epochs per rollout, η = ``CLIP_LR``): sim verify
    M6 and figure 10."""

    method: str
    controller: str
    knob: str
    values: tuple
    pipeline: tuple
    fixed: dict = field(default_factory=dict)
    shown: float = 0.0
    """the value figure 10 draws as a curve"""

    @property
    def label(self) -> str:
        return f"{self.method} {self.knob}"

    def config(self, value: float, env_seed: int, seed: int, runs: int = 16, steps: int = 60) -> SimConfig:
        return tree_config(
            env_seed, seed, update="ppo", epochs=4, runs=runs, steps=steps, lr=CLIP_LR,
            controllers=self.pipeline, hyperparameters={self.controller: {**self.fixed, self.knob: value}},
        )  # fmt: skip


CLIP_SWEEPS = (
    Sweep("clip-higher", "ppo_clip", "eps_hi", (0.2, 0.28, 0.4), ("grpo", "ppo_clip"), shown=0.28),
    Sweep(
        "Clip-Cov", "clip_cov", "frac", (0.0, 0.01, 0.03, 0.1), ("grpo", "ppo_clip", "clip_cov"), shown=0.03
    ),
    Sweep("KL-Cov", "kl_cov", "beta", (0.0, 0.5, 1.0, 2.0), ("grpo", "kl_cov"), {"frac": 0.02}, shown=1.0),
)
"""clip-higher's ε_high, Clip-Cov's share of detached tokens, KL-Cov's β (without a PPO clip, as in the
paper); the first value of Clip-Cov and KL-Cov is GRPO itself"""
