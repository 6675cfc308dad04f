"""Decoding strategies: each a module that registers its :class:`StrategySpec`; importing this package loads them all.

A new strategy is one module here (its search and its ``register(StrategySpec(...))``) plus its line below.
"""

from __future__ import annotations

# Registration order is the order of the README's table, the CLI's choices and the app's menu.
# isort: off
from explorer.strategies import greedy, beam, diverse, constrained, assisted, dola, contrastive  # noqa: F401
# isort: on
from explorer.strategies.base import Outcome, Setup, Strategy
from explorer.strategies.registry import REGISTRY, StrategySpec, get, make_params, names, params_of

__all__ = ["REGISTRY", "Outcome", "Setup", "Strategy", "StrategySpec", "get", "make_params", "names", "params_of"]
