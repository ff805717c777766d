"""controllers: the shared entropy controllers (torch only; nothing from sim/ or llm/).

One loss, decomposed (docs/design.md): advantage transforms, per-token weights (or the PPO surrogate),
per-token penalties and extra loss terms. Controllers are looked up by name:

    import controllers as C
    pipe = C.Pipeline([C.get("grpo"), C.get("ppo_clip", eps_hi=0.28), C.get("entropy_bonus", coef=1e-3)])
    loss, metrics = C.policy_loss(batch, pipe, agg="token-mean")

or, as every command line writes it, ``C.spec.build("grpo ppo_clip eps_hi=0.28 entropy_bonus coef=1e-3")``.
"""

from controllers import advantages as _advantages  # noqa: F401  (registers the controllers)
from controllers import batchlevel as _batchlevel  # noqa: F401
from controllers import contract, data, dist, groups, spec
from controllers import extras as _extras  # noqa: F401
from controllers import guidance as _guidance  # noqa: F401
from controllers import nft as _nft  # noqa: F401
from controllers import penalties as _penalties  # noqa: F401
from controllers import pi as _pi  # noqa: F401
from controllers import shaping as _shaping  # noqa: F401
from controllers import surrogates as _surrogates  # noqa: F401
from controllers import value as _value  # noqa: F401
from controllers import weights as _weights  # noqa: F401
from controllers.agg import AGG_MODES, agg_loss
from controllers.base import Controller, Pipeline, Terms, get, names, register
from controllers.batch import TokenBatch
from controllers.batchlevel import mixed_groups
from controllers.contract import Host
from controllers.data import select_prompts
from controllers.extras import nucleus_entropy
from controllers.groups import cluster_entropy
from controllers.loss import policy_loss, telemetry
from controllers.shaping import distinct_n, group_diversity, ngram_embedding

__all__ = [
    "AGG_MODES",
    "Controller",
    "Host",
    "Pipeline",
    "Terms",
    "TokenBatch",
    "agg_loss",
    "cluster_entropy",
    "contract",
    "data",
    "dist",
    "distinct_n",
    "get",
    "group_diversity",
    "groups",
    "mixed_groups",
    "names",
    "ngram_embedding",
    "nucleus_entropy",
    "policy_loss",
    "register",
    "select_prompts",
    "spec",
    "telemetry",
]
