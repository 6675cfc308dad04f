"""``Explorer``: the app's view. Controls emit events to a ``Controller``, which makes the next state; the view
redraws from it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import ipywidgets as widgets

from explorer import figures
from explorer.app import state as st
from explorer.app._export import ExportControls
from explorer.app._nodes import NodeInfo, describe
from explorer.app._params import takes_constraints
from explorer.app._width import WidthProbe
from explorer.app.controller import DEFAULT_MODEL_ENV, Controller, model_registry
from explorer.app.controls import Controls, fill_tooltips, html_widget
from explorer.app.outputs import Outputs
from explorer.app.panels import PanelControls
from explorer.app.state import AppState, panel_by_id
from explorer.app.theme import ThemeProbe, theme_class
from explorer.app.views import (
    STYLE,
    Same,
    force_options,
    keyed_traces,
    panel_summary_html,
    results_html,
    save_html,
)
from explorer.figures import resolve_theme
from explorer.models.base import CausalLM
from explorer.models.precision import DEFAULT_DTYPE
from explorer.trace import Trace

__all__ = ["DEFAULT_MODEL_ENV", "STALE", "Explorer"]

#: What a panel says above its results when its settings changed since its run.
STALE = "stale: settings changed since this run (press Run to update)"


class Explorer:
    """The decoding explorer: a prompt, up to four strategy panels side by side, Run, and linked views.

    ``Explorer().widget`` is the root widget; a notebook cell ending in ``Explorer()`` shows the app. ``model`` is
    a built-in name, a local model folder or a loaded ``CausalLM``; by default the model named by
    ``$DECODING_EXPLORER_MODEL``, else ``smollm2-135m``. ``dtype`` is the precision a named model opens in
    (``"float32"``, the default and the only one equal to the reference, ``"bfloat16"`` or ``"float16"``; a loaded
    model keeps its own). A model that fails to load is reported inline.

    >>> app = Explorer("tiny-random")  # doctest: +SKIP
    >>> app.run(wait=True); app.state.status  # doctest: +SKIP
    'done: 2 panels, 40 steps, decoding 0.3 s; 0.5 s from Run until sent to the page'
    """

    def __init__(self, model: str | CausalLM | None = None, *, dtype: str = DEFAULT_DTYPE) -> None:
        self.controller = Controller(model, dtype, self._draw)
        self.controls = Controls(sorted(model_registry().available_models()))
        self.outputs = Outputs(self.controller.on_tree_click, self.controller.on_lens_grid)
        self.export = ExportControls(lambda color: self.controller.on_field({"text_color": color}))
        self._panels: dict[int, PanelControls] = {}
        self._seen: dict[int, tuple[object, ...]] = {}
        self._shown: dict[int, tuple[object, ...]] = {}
        self._info: tuple[object, NodeInfo | None] = (None, None)
        self._add_box = widgets.VBox([self.controls.add, self.controls.errors["panels"]])
        self._panel_row = widgets.Box(layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        self.theme_probe = ThemeProbe(layout=widgets.Layout(display="none"))
        self.width_probe = WidthProbe()
        self.width_probe.add_class("explorer-width-probe")
        self.widget = self._layout()
        fill_tooltips(self.widget, *vars(self.controls).values())
        self._connect()
        self.controller.set(self.controller.state)

    @property
    def state(self) -> AppState:
        """The current state (a frozen value)."""
        return self.controller.state

    @property
    def model(self) -> CausalLM | None:
        """The loaded model (``None`` when loading failed)."""
        return self.controller.model

    def panel(self, index: int) -> PanelControls:
        """The widgets of the ``index``-th panel shown."""
        return self._panels[self.state.panels[index].id]

    def run(self, *, wait: bool = False) -> threading.Thread | None:
        """Decode every strategy panel, side by side in one batched run, in a background thread (``wait``: until
        it ends). Invalid input is shown inline and nothing runs (``None`` is returned)."""
        return self.controller.run(wait=wait)

    def stop(self) -> None:
        """End the run after its current step; the partial traces are kept."""
        self.controller.stop()

    def select(self, panel_id: int | None, node: str | None = None, *, wait: bool = True) -> threading.Thread | None:
        """Select tree node ``node`` of panel ``panel_id`` (``None``: clear the selection); its logit lens is read
        before this returns (``wait``), else in a background thread, which is returned."""
        return self.controller.select(panel_id, node, wait=wait)

    def force(self, token_id: int | None = None, *, wait: bool = False) -> threading.Thread | None:
        """Re-decode the selected hypothesis with ``token_id`` (default: the one picked) forced, as a new branch
        panel beside its source. Problems are shown under the force button and ``None`` is returned."""
        picked = token_id if token_id is not None else self.controls.force_token.value
        return self.controller.force(None if picked is None else int(picked), wait=wait)

    def load_bytes(self, content: bytes, name: str) -> None:
        """Add a read-only panel with the trace in an uploaded file; problems go under the load button."""
        self.controller.load_bytes(content, name)

    def _ipython_display_(self) -> None:
        """Show the app in a notebook (its MIME bundle, below)."""
        from IPython.display import display

        cast(Callable[..., None], display)(self._repr_mimebundle_(), raw=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The root widget's view, for front ends that ask for a MIME bundle; as plain text (where a saved notebook
        is shown without widgets), what to do."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict) and "text/plain" in bundle:
            bundle["text/plain"] = "Decoding explorer: an interactive app (run the cell to start it)"
        return bundle

    # --- building -----------------------------------------------------------------------------------------------

    def _layout(self) -> Any:
        """The page: settings, panels, Run, summary, trees, then details of the selection."""
        c, o = self.controls, self.outputs
        title = html_widget(STYLE)
        root = widgets.VBox([
            title, c.top(), self._panel_row, c.run_row(), o.summary, self.export.box,
            html_widget("<h3 style='margin: 8px 0 2px'>Search trees</h3>"), self._tree_section(),
            html_widget("<h3 style='margin: 8px 0 2px'>Selected node</h3>"), o.selection, c.force_row(), o.details_box,
            o.constraints.box, o.inside.box, self.theme_probe,
        ])
        root.add_class("explorer-app")
        root.add_class(theme_class(self.outputs.theme))
        return root

    def _tree_section(self) -> Any:
        """The trees' options and step scrubber, then the trees under their colour bar, which stays at the top of
        the window (at the right, a line high) while a figure taller than the window (panels in rows) scrolls under
        it: the colours can be read whichever row is in view."""
        section = widgets.VBox([self.outputs.scale, self.width_probe, self.outputs.tree])
        section.add_class("explorer-tree-section")
        trees = widgets.VBox([self.controls.tree_row(), section])
        trees.add_class("explorer-trees")
        return trees

    def _connect(self) -> None:
        """Wire every control to the controller's event."""
        c, ctl = self.controls, self.controller
        c.model.observe(lambda ch: ctl.on_model(str(ch["new"])), names="value")
        c.precision.observe(lambda ch: ctl.on_precision(str(ch["new"])), names="value")
        c.prompt.observe(lambda ch: ctl.on_field({"prompt": str(ch["new"])}), names="value")
        c.chat.observe(lambda ch: ctl.on_field({"chat": bool(ch["new"])}), names="value")
        c.max_new_tokens.observe(lambda ch: ctl.on_field({"max_new_tokens": int(ch["new"])}), names="value")
        c.color.observe(lambda ch: ctl.on_field({"tree_color": str(ch["new"])}), names="value")
        c.pruned.observe(lambda ch: ctl.on_field({"show_pruned": bool(ch["new"])}), names="value")
        c.scrubber.observe(lambda ch: ctl.on_scrub(int(ch["new"]), int(c.scrubber.max)), names="value")
        c.upload.observe(self._uploaded, names="value")
        c.add.on_click(lambda _: ctl.on_add())
        c.run.on_click(lambda _: ctl.on_run())
        c.stop.on_click(lambda _: ctl.stop())
        c.force.on_click(lambda _: ctl.on_force(None if c.force_token.value is None else int(c.force_token.value)))
        c.clear.on_click(lambda _: ctl.on_clear())
        self.export.button.on_click(lambda _: self.export_html())
        self.theme_probe.observe(lambda ch: ctl.on_view(lambda: self._theme(str(ch["new"]))), names="theme")
        self.width_probe.observe(lambda ch: ctl.on_view(lambda: setattr(self.outputs, "width", int(ch["new"]))),
                                 names="width")

    def export_html(self) -> None:
        """Offer every panel's trace as one HTML page (in the page's theme) from a download link beside the button."""
        self.export.export(keyed_traces(self.state.panels), self.outputs.theme)

    def _uploaded(self, change: dict[str, Any]) -> None:
        """Files were uploaded: load each, then empty the upload widget."""
        self.controller.on_upload(change["new"])
        if change["new"]:
            self.controls.upload.value = ()

    def _theme(self, theme: str) -> None:
        """The page's theme was read, or changed: the root's class follows, and the figures are drawn in it."""
        self.widget.remove_class(theme_class(self.outputs.theme))
        self.outputs.theme = resolve_theme(theme)
        self.widget.add_class(theme_class(self.outputs.theme))

    # --- rendering ----------------------------------------------------------------------------------------------

    def _draw(self, state: AppState) -> None:
        """Set every widget from ``state``, redrawing only what changed (the controller's ``set_state``: it holds
        its lock and ignores the events this raises)."""
        description = model_registry().available_models().get(state.model, "")
        self.controls.render(state, f"<span class='explorer-muted'>{description}</span>")
        self._render_panels(state)
        info = self._selected_info(state)
        self.controls.render_force(*force_options(info))
        self.controls.render_scrubber(state)
        self.outputs.render(state, info, self._speller)
        self.export.render(state.text_color, keyed_traces(state.panels))

    def _speller(self, trace: Trace) -> Callable[[int], str] | None:
        """How to spell ``trace``'s token ids: the loaded model's tokenizer, when that model made the trace."""
        model = self.controller.model
        return model.tokenizer.token_text if model is not None and model.info.name == trace.model else None

    def lens_along(self, panel_id: int | None = None) -> None:
        """Compute the logit lens along a panel's best result (default: the selected node's panel, else the first
        with a trace) and show it; a one-line note says why when there is none."""
        self.controller.lens_along(panel_id)

    def _selected_info(self, state: AppState) -> NodeInfo | None:
        """What the selected node is, worked out once per selection and trace."""
        selection = state.selection
        panel = panel_by_id(state, selection.panel) if selection is not None else None
        if selection is None or panel is None or panel.trace is None:
            return None
        key = (selection, Same(panel.trace))
        if self._info[0] != key:
            try:
                self._info = (key, describe(panel.trace, selection.node))
            except KeyError:
                self._info = (key, None)
        return self._info[1]

    def _render_panels(self, state: AppState) -> None:
        """One ``PanelControls`` per panel: made on first sight, redrawn when its panel changed, dropped with it."""
        for gone in set(self._panels) - {p.id for p in state.panels}:
            del self._panels[gone]
            self._seen.pop(gone, None)
            self._shown.pop(gone, None)
        for panel in state.panels:
            controls = self._panels.get(panel.id)
            if controls is None:
                controls = self._panels[panel.id] = PanelControls(panel.id, self.controller)
            seen = (panel, state.model, panel.id in state.pending, self._label_of(state, panel), state.text_color,
                    st.stale(state, panel))
            if self._seen.get(panel.id) != seen:
                self._seen[panel.id] = seen
                self._render_panel(state, panel, controls)
        children = (*(self._panels[p.id].box for p in state.panels), self._add_box)
        if tuple(self._panel_row.children) != children:
            self._panel_row.children = children

    @staticmethod
    def _label_of(state: AppState, panel: st.Panel) -> str | None:
        """The key of a branch's source panel (``None`` when it was removed or there is none)."""
        source = panel_by_id(state, panel.branch.source) if panel.branch is not None else None
        return source.key if source is not None else None

    def _render_panel(self, state: AppState, panel: st.Panel, controls: PanelControls) -> None:
        """A panel's controls, results, save link and (read-only panels) summary."""
        preview = self.controller.constraint_preview(panel.constraints)[0] if takes_constraints(panel.strategy) else ""
        controls.render(panel, preview)
        if not panel.editable:
            controls.summary.value = panel_summary_html(panel, self._label_of(state, panel))
        note = "running…" if panel.id in state.pending else ""
        color = state.text_color
        stale = STALE if st.stale(state, panel) else ""
        shown = (Same(panel.trace), note, color, stale)
        if self._shown.get(panel.id) != shown:
            self._shown[panel.id] = shown
            controls.results.value = results_html(
                panel.trace, lambda t, rank: figures.uncertainty_html(t, rank, by=color, css=False), note, stale)
            controls.save.value = save_html(panel)
