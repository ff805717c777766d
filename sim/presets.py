"""Typed presets for ``python -m sim run --preset NAME`` (command-line options override their fields)."""

from __future__ import annotations

from sim.run import SimConfig

PRESETS: dict[str, SimConfig] = {
    "quick": SimConfig(env="bandit", env_kwargs={"n_prompts": 8, "n_arms": 8}, runs=8, steps=20, lr=0.5),
    "bandit-exact-pg": SimConfig(
        env="bandit",
        env_kwargs={"n_prompts": 64, "n_arms": 32, "correct": "rare"},
        update="exact_pg",
        controllers=(),
        runs=64,
        steps=300,
        lr=1.0,
    ),
    "bandit-grpo": SimConfig(
        env="bandit", env_kwargs={"n_prompts": 32, "n_arms": 32}, update="grpo", runs=64, steps=300, lr=0.5
    ),
    "tree-grpo": SimConfig(
        env="token_tree", update="grpo", controllers=("grpo", "ppo_clip"), runs=32, steps=300, lr=1.0
    ),
    "tree-clip-cov": SimConfig(
        env="token_tree",
        update="ppo",
        epochs=2,
        minibatches=2,
        controllers=("grpo", "ppo_clip", "clip_cov"),
        hyperparameters={"clip_cov": {"frac": 0.01}},
        runs=32,
        steps=300,
        lr=1.0,
    ),
}
