"""``notebooks/app.ipynb``: committed without outputs, and it runs (on tiny-random) to one widget view."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "app.ipynb"


def test_the_notebook_is_committed_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert len(code) == 1
    assert "".join(code[0]["source"]).strip().endswith("Explorer()")
    assert code[0]["outputs"] == []
    assert code[0]["execution_count"] is None


def test_the_notebook_shows_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODING_EXPLORER_MODEL", "tiny-random")
    for name in ("JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[-1].outputs
    assert len(outputs) == 1
    assert outputs[0].output_type in ("display_data", "execute_result")
    assert "application/vnd.jupyter.widget-view+json" in outputs[0].data
