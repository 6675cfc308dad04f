"""The details' "inside the model" views: DoLa's layer choice and one step's contrast, contrastive search's
candidates at one step, the logit lens of the clicked node, and (on request) the logit lens along a result.

Each figure has its own ``FigureWidget``, all made together after the first run (a plotly widget made with the page
would load plotly's module while the page loads) and then updated in place, hidden while it has nothing to show.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go

from explorer import figures
from explorer.app._nodes import NodeInfo, step_at
from explorer.app.controls import html_widget, sync
from explorer.app.state import AppState, NodeLens, Panel, ResultLens, lens_panel, panel_by_id
from explorer.app.theme import on_page
from explorer.app.views import Same, placeholder, show_figure
from explorer.figures import Theme
from explorer.figures._style import esc_name
from explorer.serve.assets import figure_widget
from explorer.trace import Trace

__all__ = ["ROLES", "InsideViews", "Speller", "inside_panels"]

#: The figures, in the order they show.
ROLES = ("dola_layers", "dola_contrast", "contrastive", "lens", "grid")
#: Widths (px) of the figures that sit side by side.
SIDE_WIDTH = 600
#: ``speller(trace)``: how to spell a token id of ``trace``'s model (``None``: the loaded model is another one).
Speller = Callable[[Trace], Callable[[int], str] | None]


def _records(trace: Trace | None, kind: str) -> bool:
    """Whether ``trace`` recorded ``kind`` (``dola`` or ``contrastive``) at its steps."""
    return trace is not None and any(getattr(s, kind) is not None for s in trace.steps)


def inside_panels(state: AppState) -> dict[str, Panel]:
    """The panel whose DoLa, and whose contrastive search, the details show: the selected node's panel when it is
    one, else the first panel that is."""
    selected = panel_by_id(state, state.selection.panel) if state.selection is not None else None
    out: dict[str, Panel] = {}
    for kind in ("dola", "contrastive"):
        if selected is not None and _records(selected.trace, kind):
            out[kind] = selected
        else:
            found = next((p for p in state.panels if _records(p.trace, kind)), None)
            if found is not None:
                out[kind] = found
    return out


def _prefixed(fig: go.Figure, key: str) -> go.Figure:
    """``fig`` with the panel's name in front of its title."""
    return fig.update_layout(title_text=f"{esc_name(key)} · {fig.layout.title.text}")


class InsideViews:
    """Figures of DoLa and contrastive search panels at the selected step, and the logit lens."""

    def __init__(self, on_grid: Callable[[], None]) -> None:
        self.header = html_widget("<h3 style='margin: 8px 0 2px'>Inside the model</h3>")
        #: Each role's ``FigureWidget``, and the box that holds it (hidden while the role has nothing to show).
        self.figures: dict[str, Any] = {}
        self.holders: dict[str, Any] = {}
        self.side = widgets.Box(layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        self.side.add_class("explorer-inside")
        self.lens_note = html_widget()
        self.lens_note.add_class("explorer-lens-note")
        self.grid_button = widgets.Button(description="logit lens along the result", icon="",
                                          layout=widgets.Layout(width="auto"))
        self.grid_button.add_class("explorer-lens-grid")
        self.grid_button.on_click(lambda _: on_grid())
        self.grid_note = html_widget()
        self.grid_note.add_class("explorer-grid-note")
        self.grid_box = widgets.VBox()
        self.box = widgets.VBox([self.header, self.side, self.lens_note,
                                 widgets.HBox([self.grid_button, self.grid_note],
                                              layout=widgets.Layout(align_items="center")), self.grid_box])
        self.box.add_class("explorer-inside-box")
        self.box.layout.display = "none"  # until a run
        self._deps: dict[str, object] = {}

    def _changed(self, view: str, deps: object) -> bool:
        if view in self._deps and self._deps[view] == deps:
            return False
        self._deps[view] = deps
        return True

    def _make_widgets(self, theme: Theme) -> None:
        """Every role's widget at once, each in a hidden holder, the first time there is something to show: a plotly
        widget made in the same message burst as updates of its neighbours is sometimes never drawn, and its
        neighbours' updates then fail in the page ("Error setting state")."""
        if self.figures:
            return
        for role in ROLES:
            widget = self.figures[role] = figure_widget(on_page(placeholder("", theme=theme)))
            widget.add_class(f"explorer-{role.replace('_', '-')}")
            self.holders[role] = widgets.Box([widget], layout=widgets.Layout(display="none"))
        self.side.children = tuple(self.holders[r] for r in ROLES if r != "grid")
        self.grid_box.children = (self.holders["grid"],)

    def _show(self, role: str, deps: object, make: Callable[[], go.Figure]) -> Any:
        """The role's widget showing ``make()`` (drawn again only when ``deps`` changed), its holder shown."""
        widget = self.figures[role]
        if self._changed(role, deps):
            show_figure(widget, make())
        sync(self.holders[role].layout, "", "display")
        return widget

    def _hide(self, *roles: str) -> None:
        for role in roles:
            if role in self.holders:
                sync(self.holders[role].layout, "none", "display")

    def render(self, state: AppState, info: NodeInfo | None, theme: Theme, speller: Speller) -> None:
        """Redraw what changed."""
        traced = tuple((p.key, Same(p.trace)) for p in state.panels if p.trace is not None)
        if state.running:  # drawn once the run is over: a burst of new plotly widgets and updates breaks some
            sync(self.grid_button, True, "disabled")
            return
        if not traced and not self.figures:
            return
        self._make_widgets(theme)
        step = info.step if info is not None else 0
        self._draw_records(state, step, theme, speller)
        self._draw_lens(state, info, theme)
        panel = lens_panel(state)
        grid = state.grid if state.grid is not None and panel is not None and state.grid.trace is panel.trace \
            else None
        if self._changed("grid-area", (traced, Same(grid), panel.key if panel else None, theme)):
            self._draw_grid(panel, grid, theme)
        sync(self.box.layout, "" if traced else "none", "display")

    def _draw_records(self, state: AppState, step: int, theme: Theme, speller: Speller) -> None:
        """DoLa's two figures and contrastive search's, at the selected step."""
        chosen = inside_panels(state)
        dola = chosen.get("dola")
        if dola is not None and dola.trace is not None:
            trace, key = dola.trace, dola.key
            at = step_at(trace, step)
            width = min(1280, max(SIDE_WIDTH, 220 + 44 * len(trace.steps)))
            self._show("dola_layers", (key, Same(trace), theme), lambda: _prefixed(
                figures.dola_layers(trace, theme=theme).update_layout(width=width), key))
            self._show("dola_contrast", (key, Same(trace), at.index, theme), lambda: _prefixed(
                figures.dola_contrast(at, theme=theme).update_layout(width=SIDE_WIDTH), key))
        else:
            self._hide("dola_layers", "dola_contrast")
        contrastive = chosen.get("contrastive")
        if contrastive is not None and contrastive.trace is not None:
            trace, key = contrastive.trace, contrastive.key
            at = step_at(trace, step)
            self._show("contrastive", (key, Same(trace), at.index, theme), lambda: _prefixed(
                figures.contrastive_scores(at, theme=theme, token_text=speller(trace)).update_layout(
                    width=SIDE_WIDTH), key))
        else:
            self._hide("contrastive")

    def _draw_lens(self, state: AppState, info: NodeInfo | None, theme: Theme) -> None:
        """The clicked node's logit lens, with a line on how long it took (or why there is none)."""
        lens = state.lens if state.lens is not None and state.lens.selection == state.selection else None
        sync(self.lens_note, self._lens_note(state, lens))
        if lens is None or lens.lens is None:
            self._hide("lens")
            return
        panel = panel_by_id(state, lens.selection.panel)
        key = f"{panel.key} · node {lens.selection.node}" if panel is not None else lens.selection.node
        reading, text = lens.lens, info.text if info is not None else None
        self._show("lens", (Same(lens), theme), lambda: _prefixed(figures.lens_top(
            reading, theme=theme, token_text=lens.token_text or None, text=text).update_layout(width=SIDE_WIDTH), key))

    @staticmethod
    def _lens_note(state: AppState, lens: NodeLens | None) -> str:
        """One line under the figures: how long the clicked node's lens took, why there is none, or what to do."""
        if state.selection is None:
            return ("<div class='explorer-muted'>click a node of a tree to read the logit lens there: each layer's "
                    "best next tokens</div>")
        if lens is None:
            return ""
        if lens.lens is None:
            refused = "" if lens.pending else " explorer-lens-refused"
            return f"<div class='explorer-muted{refused}'>{html.escape(lens.note)}</div>"
        return (f"<div class='explorer-muted'>logit lens at node {html.escape(lens.selection.node)}: one forward, "
                f"{lens.ms / 1000:.2f} s</div>")

    def _draw_grid(self, panel: Panel | None, grid: ResultLens | None, theme: Theme) -> None:
        """The button, and the lens along the result once asked for."""
        sync(self.grid_button, f"logit lens along the result of {panel.key}" if panel is not None
             else "logit lens along the result", "description")
        sync(self.grid_button, panel is None, "disabled")
        if grid is None:
            sync(self.grid_note, "<span class='explorer-muted'>one forward of the whole text, on request</span>")
            self._hide("grid")
            return
        if grid.grid is None:
            sync(self.grid_note, f"<span class='explorer-muted explorer-lens-refused'>{html.escape(grid.note)}</span>")
            self._hide("grid")
            return
        sync(self.grid_note, f"<span class='explorer-muted'>one forward, {grid.ms / 1000:.2f} s</span>")
        columns = grid.grid.probs.shape[1]
        assert panel is not None
        reading, key = grid.grid, panel.key
        width = min(1600, max(SIDE_WIDTH, 240 + 58 * columns))
        self._show("grid", (Same(grid), theme), lambda: _prefixed(
            figures.lens_heatmap(reading, theme=theme).update_layout(width=width), key))
