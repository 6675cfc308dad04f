"""Models for the engine: the ``CausalLM`` protocol and ``load_model`` for the built-in and Hugging Face models."""

from __future__ import annotations

from explorer.models.base import CausalLM, ModelInfo, TokenizerLike
from explorer.models.registry import available_models, load_model

__all__ = ["CausalLM", "ModelInfo", "TokenizerLike", "available_models", "load_model"]
