"""controllers: the shared entropy controllers (torch only; nothing from sim/ or llm/).

One loss, decomposed (DESIGN.md): advantage transforms, per-token weights (or the PPO surrogate),
per-token penalties and extra loss terms. Controllers are looked up by name:

    import controllers as C
    pipe = C.Pipeline([C.get("grpo"), C.get("ppo_clip", eps_hi=0.28), C.get("entropy_bonus", coef=1e-3)])
    loss, metrics = C.policy_loss(batch, pipe, agg="token-mean")
"""

from controllers import advantages as _advantages  # noqa: F401  (registers the controllers)
from controllers import surrogates as _surrogates  # noqa: F401
from controllers.agg import AGG_MODES, agg_loss
from controllers.base import Controller, Pipeline, Terms, get, names, register
from controllers.batch import TokenBatch
from controllers.loss import policy_loss, telemetry

__all__ = [
    "AGG_MODES",
    "Controller",
    "Pipeline",
    "Terms",
    "TokenBatch",
    "agg_loss",
    "get",
    "names",
    "policy_loss",
    "register",
    "telemetry",
]
