"""Fixtures of the model tests: a temporary model cache folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder for this test (``$DECODING_EXPLORER_CACHE``)."""
    monkeypatch.setenv("DECODING_EXPLORER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
