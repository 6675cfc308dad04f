"""decoding-explorer: record and explore every step of how a language model decodes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from explorer.api import compare, decode, parse_constraints, plan, tokenize_prompt
from explorer.constraints import AnyOf, Phrase
from explorer.errors import ExplorerError, ModelNotFoundError, ParameterError, TraceFormatError
from explorer.export import export_html, read_export
from explorer.fork import ForkPoint, decode_branch
from explorer.models.base import CausalLM, ModelInfo
from explorer.params import DecodeParams
from explorer.strategies import names as _strategy_names
from explorer.trace import Candidate, Finished, Hypothesis, Result, Step, Trace

if TYPE_CHECKING:
    from explorer.models.registry import available_models, load_model

__all__ = [
    "STRATEGY_NAMES",
    "AnyOf",
    "Candidate",
    "CausalLM",
    "DecodeParams",
    "ExplorerError",
    "Finished",
    "ForkPoint",
    "Hypothesis",
    "ModelInfo",
    "ModelNotFoundError",
    "ParameterError",
    "Phrase",
    "Result",
    "Step",
    "Trace",
    "TraceFormatError",
    "available_models",
    "compare",
    "decode",
    "decode_branch",
    "export_html",
    "load_model",
    "parse_constraints",
    "plan",
    "read_export",
    "tokenize_prompt",
]
__version__ = "0.1.0"

#: The registered strategies' names (``explorer.strategies.REGISTRY`` has their specs).
STRATEGY_NAMES: tuple[str, ...] = _strategy_names()


def __getattr__(name: str) -> Any:
    """``load_model`` and ``available_models`` import transformers' loaders on first use only."""
    if name in ("load_model", "available_models"):
        from explorer.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'explorer' has no attribute {name!r}")
