"""The checks of ``python -m theory verify``, one module per topic, each registered where it is defined
(``theory.checks._base.REGISTRY``). The topics are imported in row order: the order gives each check its
child seed, so a row's numbers do not depend on which other rows run."""

import importlib

from theory.checks._base import REGISTRY, random_logits

TOPICS = ("dynamics", "law", "tokens", "qae", "control", "nft")
"""L1-N7, E8, K9, Q11-Q14, PI1-PI2, NFT1"""

for _topic in TOPICS:
    importlib.import_module(f"theory.checks.{_topic}")

__all__ = ["REGISTRY", "TOPICS", "random_logits"]
