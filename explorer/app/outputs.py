"""The app's outputs: ONE ``FigureWidget`` for every panel's tree, ONE for details, the selection and the summary,
and the inside-the-model views (``explorer.app._inside``: one widget per figure, made together after the first run).

Each is redrawn only when what it shows changed, the page's theme included; the figure widgets are updated in place
(a new plotly widget would load plotly's multi-megabyte module in the page again; served by Voila, the page imports it
once from a cached file: ``explorer.serve.assets``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from explorer import figures
from explorer.app._banks import ConstraintViews
from explorer.app._inside import InsideViews, Speller
from explorer.app._nodes import NodeInfo
from explorer.app._width import figure_width
from explorer.app.controls import html_widget, sync
from explorer.app.state import AppState, Panel, panel_by_id
from explorer.app.theme import on_page
from explorer.app.views import Same, keyed_traces, placeholder, selection_html, show_figure
from explorer.figures import Theme
from explorer.serve.assets import figure_widget
from explorer.trace import Trace

__all__ = ["Outputs"]

ClickHandler = Callable[[Any, Any, Any], None]


class Outputs:
    """Trees, details, selection text and the summary table, drawn from the state."""

    def __init__(self, on_click: ClickHandler, on_grid: Callable[[], None] = lambda: None) -> None:
        self.tree = figure_widget(on_page(placeholder("press Run to see the search trees")))
        self.tree.add_class("explorer-tree")
        #: The trees' colour bar, above them, pinned to the window's top while the figure scrolls (empty by group).
        self.scale = html_widget()
        self.scale.add_class("explorer-scale")
        # The details figure is made with the first trace, not with the page: each plotly widget loads a 5 MB
        # module in the page, and anywidget gives up on a widget whose module takes over 2 s (then drops its
        # updates), which two loading side by side with the page can take on a slow machine.
        self.details: Any = None
        self.details_box = widgets.VBox([html_widget(
            "<div class='explorer-muted'>score timelines, and the candidates of a clicked node, show here after a "
            "run</div>")])
        self.selection = html_widget()
        self.selection.add_class("explorer-selection")
        self.summary = html_widget()
        self.summary.add_class("explorer-summary-view")
        #: DoLa's and contrastive search's figures at the selected step, and the logit lens.
        self.inside = InsideViews(on_grid)
        #: A constrained panel's progress and banks at the selected step.
        self.constraints = ConstraintViews(on_click)
        #: The page's theme (``ThemeProbe`` reports it): the figures are drawn in it.
        self.theme: Theme = "light"
        #: The width of the box the trees are in (``WidthProbe`` reports it; 0: not yet): they are drawn to fit it.
        self.width = 0
        self._on_click = on_click
        self._deps: dict[str, object] = {}
        self._layouts: dict[int, tuple[Trace, Any]] = {}

    def _changed(self, view: str, deps: object) -> bool:
        """Whether ``view``'s inputs differ from when it was last drawn (and remember them)."""
        if view in self._deps and self._deps[view] == deps:
            return False
        self._deps[view] = deps
        return True

    def _layout(self, panel: Panel) -> Any:
        """The panel's tree layout, computed once per trace."""
        assert panel.trace is not None
        cached = self._layouts.get(panel.id)
        if cached is None or cached[0] is not panel.trace:
            cached = self._layouts[panel.id] = (panel.trace, figures.tree_layout(panel.trace))
        return cached[1]

    def render(self, state: AppState, info: NodeInfo | None, speller: Speller = lambda _: None) -> None:
        """Redraw what changed (``speller`` spells a trace's token ids when its model is the loaded one)."""
        traced = [p for p in state.panels if p.trace is not None]
        self._layouts = {k: v for k, v in self._layouts.items() if any(p.id == k for p in traced)}
        ident = tuple((p.key, Same(p.trace)) for p in traced)
        # The box's width matters only once there are trees: the page reports it as it loads, while plotly's module
        # may still be loading into the tree's widget, and a redraw of the placeholder then is one update too many.
        width = self.width if traced else None
        look = (state.tree_color, state.show_pruned, state.upto_step, state.selection, self.theme, width)
        if self._changed("tree", (ident, *look)):
            self._draw_tree(state, traced)
        if self._changed("summary", ident):
            sync(self.summary, figures.results_table_html(keyed_traces(state.panels)) if traced else "")
        if self._changed("details", (ident, state.selection, self.theme)):
            self._draw_details(state, traced, info)
        self.inside.render(state, info, self.theme, speller)
        self.constraints.render(state, info, self.theme)

    def _draw_tree(self, state: AppState, traced: list[Panel]) -> None:
        """All panels' trees in the box's width (side by side, in rows when they do not fit), up to the scrubbed
        step, the selected node ringed."""
        if not traced:
            show_figure(self.tree, placeholder("press Run to see the search trees", theme=self.theme))
            sync(self.scale, "")
            return
        selected = None
        panel = panel_by_id(state, state.selection.panel) if state.selection is not None else None
        if panel is not None and state.selection is not None and panel.trace is not None:
            selected = (panel.key, state.selection.node)
        fig = figures.search_trees({p.key: self._layout(p) for p in traced}, color=state.tree_color,
                                   show_pruned=state.show_pruned, upto_step=state.upto_step, selected=selected,
                                   theme=self.theme, width=figure_width(self.width), color_bar=False)
        show_figure(self.tree, fig, self._on_click)
        sync(self.scale, figures.color_scale_html(fig, figures.COLOR_TITLES.get(state.tree_color, "")))

    def _draw_details(self, state: AppState, traced: list[Panel], info: NodeInfo | None) -> None:
        """The selected hypothesis's candidates; when nothing is selected, the first assisted panel's speculation
        view (round by round: what was drafted, kept, refused), else every panel's score timeline."""
        panel = panel_by_id(state, state.selection.panel) if state.selection is not None else None
        sync(self.selection, selection_html(panel, info))
        assisted = next((p for p in traced if p.trace is not None and any(s.speculation for s in p.trace.steps)),
                        None)
        if panel is not None and panel.trace is not None and info is not None and info.hypothesis is not None:
            fig = figures.step_candidates(panel.trace, info.hypothesis.id, theme=self.theme)
        elif assisted is not None and assisted.trace is not None:
            fig = figures.speculation_rounds(assisted.trace, theme=self.theme)
            fig.update_layout(title_text=f"{assisted.key} · {fig.layout.title.text}")
        elif traced:
            fig = figures.score_timelines(keyed_traces(state.panels), theme=self.theme)
        elif self.details is None:
            return
        else:
            fig = placeholder("score timelines and candidates show here after a run", theme=self.theme)
        if self.details is None:
            self.details = figure_widget(on_page(fig))
            self.details.add_class("explorer-details")
            self.details_box.children = (self.details,)
        else:
            show_figure(self.details, fig)
