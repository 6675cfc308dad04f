"""The app's text colouring choice, its legend, and "export HTML": the comparison as one page, downloaded from a
link (a data URI, as the panels' "save trace" links: no server needed)."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Mapping

import ipywidgets as widgets

from explorer.app.controls import html_widget
from explorer.errors import ExplorerError
from explorer.export import export_html
from explorer.figures import Uncertainty, uncertainty_legend
from explorer.trace import Trace

__all__ = ["MAX_EXPORT_LINK_BYTES", "ExportControls", "export_link"]

#: Largest page offered as a download link (a data URI travels through the websocket).
MAX_EXPORT_LINK_BYTES = 64 * 1024 * 1024


def export_link(traces: Mapping[str, Trace], theme: str) -> str:
    """A download link holding the page of ``traces`` (panel keys to traces) in ``theme``, or a one-line note.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=2)
    >>> export_link({"#1 greedy": t}, "light").startswith('<a class="explorer-export-link" download=')
    True
    """
    if not traces:
        return '<span class="explorer-error">no trace to export: press Run first</span>'
    try:
        page = export_html(dict(traces), theme=theme).encode("utf-8")
    except ExplorerError as error:
        return f'<span class="explorer-error">{html.escape(str(error))}</span>'
    if len(page) > MAX_EXPORT_LINK_BYTES:
        return ('<span class="explorer-muted">the page is too large to download from the app: write it in Python '
                "with explorer.export_html(traces, path)</span>")
    data = base64.b64encode(page).decode("ascii")
    name = f"decoding-explorer-{time.strftime('%Y%m%d-%H%M%S')}.html"
    return (f'<a class="explorer-export-link" download="{name}" href="data:text/html;base64,{data}">'
            f"download the page ({len(page) / 2**20:.1f} MB, {len(traces)} panel{'s' if len(traces) != 1 else ''})"
            "</a>")


class ExportControls:
    """How result texts are coloured (with the legend), and the export button with its download link."""

    def __init__(self, on_color: Callable[[str], None]) -> None:
        self.color = widgets.Dropdown(options=(("entropy", "entropy"), ("probability", "probability")),
                                      description="text colour", layout=widgets.Layout(width="220px"))
        self.color.add_class("explorer-text-color")
        self.color.observe(lambda change: on_color(str(change["new"])), names="value")
        self.legend = html_widget()
        self.legend.add_class("explorer-text-legend")
        self.button = widgets.Button(description="export HTML", tooltip="the whole comparison as one HTML page: "
                                     "trees, results, candidates, coloured texts and the traces; opens offline",
                                     layout=widgets.Layout(width="120px"))
        self.button.add_class("explorer-export")
        self.link = html_widget()
        self.link.add_class("explorer-export-link-box")
        self.box = widgets.VBox([widgets.HBox([self.color, self.button, self.link],
                                              layout=widgets.Layout(align_items="center")), self.legend])
        self._exported: tuple[tuple[str, Trace], ...] | None = None

    def render(self, color: Uncertainty, traces: Mapping[str, Trace]) -> None:
        """The colour choice and its legend; the link goes when the traces it holds are no longer the panels'."""
        if self.color.value != color:
            self.color.value = color
        legend = uncertainty_legend(color)
        if self.legend.value != legend:
            self.legend.value = legend
        if self._exported is not None and not _same(self._exported, traces):
            self._exported = None
            self.link.value = ""

    def export(self, traces: Mapping[str, Trace], theme: str) -> None:
        """Make the page of ``traces`` and offer it as a link."""
        self.link.value = '<span class="explorer-muted">writing the page…</span>'
        self.link.value = export_link(traces, theme)
        self._exported = tuple(traces.items()) if traces else None


def _same(exported: tuple[tuple[str, Trace], ...], traces: Mapping[str, Trace]) -> bool:
    """Whether the panels still hold the traces exported, by identity (a new run is a new trace even when equal)."""
    now = tuple(traces.items())
    return len(now) == len(exported) and all(k == k2 and t is t2 for (k, t), (k2, t2) in zip(exported, now,
                                                                                            strict=True))

