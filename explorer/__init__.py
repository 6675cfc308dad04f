"""decoding-explorer: record and explore every step of how a language model decodes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from explorer.api import compare, decode, parse_constraints, plan, tokenize_prompt
    from explorer.constraints import AnyOf, Phrase
    from explorer.errors import ExplorerError, ModelNotFoundError, ParameterError, TraceFormatError
    from explorer.export import export_html, read_export
    from explorer.fork import ForkPoint, decode_branch
    from explorer.models.base import CausalLM, ModelInfo
    from explorer.models.registry import available_models, load_model
    from explorer.params import DecodeParams
    from explorer.trace import Candidate, Finished, Hypothesis, Result, Step, Trace

    STRATEGY_NAMES: tuple[str, ...]

#: Where each public name lives. ``import explorer`` imports none of them (nor torch): a Jupyter server that loads
#: ``explorer.serve.assets`` as an extension (every student's server on ``make hub``) stays small; the first use of
#: a name imports its module.
_HOMES = {
    "compare": "explorer.api", "decode": "explorer.api", "parse_constraints": "explorer.api", "plan": "explorer.api",
    "tokenize_prompt": "explorer.api", "AnyOf": "explorer.constraints", "Phrase": "explorer.constraints",
    "ExplorerError": "explorer.errors", "ModelNotFoundError": "explorer.errors", "ParameterError": "explorer.errors",
    "TraceFormatError": "explorer.errors", "export_html": "explorer.export", "read_export": "explorer.export",
    "ForkPoint": "explorer.fork", "decode_branch": "explorer.fork", "CausalLM": "explorer.models.base",
    "ModelInfo": "explorer.models.base", "available_models": "explorer.models.registry",
    "load_model": "explorer.models.registry", "DecodeParams": "explorer.params", "Candidate": "explorer.trace",
    "Finished": "explorer.trace", "Hypothesis": "explorer.trace", "Result": "explorer.trace", "Step": "explorer.trace",
    "Trace": "explorer.trace",
}  # fmt: skip

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



def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (and kept: the next use is a plain attribute)."""
    if name == "STRATEGY_NAMES":  # the registered strategies' names (``explorer.strategies.REGISTRY``: their specs)
        value: Any = importlib.import_module("explorer.strategies").names()
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'explorer' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
