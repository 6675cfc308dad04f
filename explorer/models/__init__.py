"""Models for the engine: the ``CausalLM`` protocol and ``load_model`` for the built-in and Hugging Face models.

``load_model`` and ``available_models`` are imported on first use, so ``explorer.models.base`` stays cheap to
import (no transformers) for code that only needs the protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from explorer.models.base import CausalLM, ModelInfo, TokenizerLike

if TYPE_CHECKING:
    from explorer.models.registry import available_models, load_model

__all__ = ["CausalLM", "ModelInfo", "TokenizerLike", "available_models", "load_model"]

_LAZY = {"available_models", "load_model"}


def __getattr__(name: str) -> Any:
    """Import the registry on first use of ``load_model`` / ``available_models``."""
    if name in _LAZY:
        from explorer.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'explorer.models' has no attribute {name!r}")
