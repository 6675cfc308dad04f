"""Shared fixtures: the tiny seeded model, the textbook toy table, and SmolLM2 (slow, loaded once)."""

from __future__ import annotations

import pytest

import explorer
from explorer.models.base import CausalLM
from explorer.models.table import HOW_TO_GENERATE, TableModel


@pytest.fixture(scope="session")
def tiny() -> CausalLM:
    """The seeded tiny Llama (vocab 1000), ~2 ms a step."""
    return explorer.load_model("tiny-random")


@pytest.fixture(scope="session")
def toy() -> TableModel:
    """The "How to generate text" tree as a table model."""
    return TableModel("toy-how-to-generate", HOW_TO_GENERATE)


@pytest.fixture(scope="session")
def smollm2() -> CausalLM:
    """SmolLM2-135M-Instruct, prepared into the cache on first use (~35 s), then ~3 s."""
    return explorer.load_model("smollm2-135m")
