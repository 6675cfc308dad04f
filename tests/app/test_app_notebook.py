"""``notebooks/app.ipynb``: committed without outputs, and it runs (on tiny-random) to one widget view."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from notebook_filter import clean

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "app.ipynb"


def test_the_notebook_is_committed_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert len(code) == 1
    assert "".join(code[0]["source"]).strip().endswith("Explorer()")
    assert code[0]["outputs"] == []
    assert code[0]["execution_count"] is None


def test_the_notebook_tells_its_reader_to_run_the_cell() -> None:
    """Before the cell: a line for the notebook's reader (run the cell; what a reopened notebook shows until then),
    tagged so that the web app (Voila) leaves it out."""
    title, note, code = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    assert title["cell_type"] == note["cell_type"] == "markdown"
    assert "".join(title["source"]).startswith("# Decoding explorer")
    text = "".join(note["source"])
    assert text.startswith("**Run the cell below**")
    assert "Error displaying widget: model not found" in text
    assert note["metadata"]["tags"] == ["notebook-only"]
    template = (NOTEBOOK.parents[1] / "explorer/app/jupyter/voila/templates/explorer/index.html.j2").read_text()
    assert "'notebook-only' not in cell.metadata.get('tags', [])" in template
    assert code["cell_type"] == "code"


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
    assert "run the cell" in outputs[0].data["text/plain"]  # where widgets do not show (a file viewer)
    assert clean(nbformat.writes(nb)) == NOTEBOOK.read_text(encoding="utf-8")  # saved, nothing to commit
