"""The app on the tiny model, with short runs."""

from __future__ import annotations

import pytest

from explorer.app import Explorer
from explorer.models.base import CausalLM


@pytest.fixture
def app(tiny: CausalLM) -> Explorer:
    """A fresh explorer (greedy and beam panels) on tiny-random, decoding 6 new tokens."""
    explorer_app = Explorer(tiny)
    explorer_app.controls.max_new_tokens.value = 6
    return explorer_app
