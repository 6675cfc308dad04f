"""Decoding strategies: small step functions over a search state, looked up by name."""

from __future__ import annotations

from explorer.strategies import beam, constrained, diverse, greedy
from explorer.strategies.base import STRATEGIES, Outcome, Setup, Strategy

__all__ = ["STRATEGIES", "Outcome", "Setup", "Strategy", "beam", "constrained", "diverse", "greedy"]
