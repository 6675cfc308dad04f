"""The app's text colouring (entropy or probability, with its legend) and "export HTML": the comparison as one page
from a download link, which the app's load button takes back."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

from widget_text import visible_error

import explorer
from explorer.app import Explorer


def _page(app: Explorer) -> tuple[str, bytes]:
    """The export link's file name and page."""
    match = re.search(r'download="([^"]+)" href="data:text/html;base64,([^"]+)"', app.export.link.value)
    assert match is not None, app.export.link.value
    return match.group(1), base64.b64decode(match.group(2))


def _upload(app: Explorer, name: str, content: bytes) -> None:
    app.controls.upload.value = ({"name": name, "type": "text/html", "size": len(content),
                                  "content": memoryview(content), "last_modified": datetime.now(UTC)},)


def test_results_are_coloured_by_entropy_or_probability(app: Explorer) -> None:
    """Entropy by default, with its legend; the dropdown switches every panel's texts and the legend."""
    app.run(wait=True)
    assert "explorer-unc-entropy" in app.panel(0).results.value
    assert "entropy of the distribution" in app.export.legend.value
    assert "<style>" in app.export.legend.value  # the bins' colours, once for the page
    app.export.color.value = "probability"
    assert app.state.text_color == "probability"
    for i in (0, 1):
        assert "explorer-unc-probability" in app.panel(i).results.value
        assert "explorer-unc-entropy" not in app.panel(i).results.value
    assert "probability of each token" in app.export.legend.value


def test_export_html_gives_the_comparison_as_one_page(app: Explorer) -> None:
    """The link holds a page with every panel's trace, in the page's theme; a new run takes the stale link away."""
    app.export_html()
    assert "press Run first" in app.export.link.value
    app.run(wait=True)
    app.export.button.click()
    name, page = _page(app)
    assert name.startswith("decoding-explorer-")
    assert name.endswith(".html")
    assert b'class="explorer-export explorer-theme-light"' in page
    traces = explorer.read_export(page)
    assert traces == {p.key: p.trace for p in app.state.panels}
    app.run(wait=True)
    assert app.export.link.value == ""


def test_an_exported_page_loads_back_as_panels(app: Explorer) -> None:
    """Uploading the page adds one read-only panel per trace in it; a broken page is one inline error."""
    app.run(wait=True)
    app.export_html()
    _, page = _page(app)
    _upload(app, "run.html", page)
    loaded = app.state.panels[2:]
    assert [p.kind for p in loaded] == ["loaded", "loaded"]
    assert [p.trace for p in loaded] == [p.trace for p in app.state.panels[:2]]
    assert loaded[0].name == "run.html: #1 greedy"
    _upload(app, "broken.html", b"<!DOCTYPE html><p>no trace here</p>")
    assert visible_error(app.controls.errors["load"]).startswith("broken.html holds no trace")
    assert len(app.state.panels) == 4
