"""``Explorer``: the app. Controls emit events, pure functions make the next state, views redraw from it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import ipywidgets as widgets

from explorer import figures
from explorer.app import state as st
from explorer.app._actions import Actions, event, one_line
from explorer.app._nodes import NodeInfo, describe
from explorer.app._params import takes_constraints
from explorer.app._run import Hooks, Runner
from explorer.app.controls import Controls
from explorer.app.outputs import Outputs
from explorer.app.panels import PanelControls
from explorer.app.state import AppState, panel_by_id
from explorer.app.theme import ThemeProbe, theme_class
from explorer.app.views import STYLE, Same, force_options, panel_summary_html, results_html, save_html
from explorer.errors import ExplorerError, ParameterError
from explorer.figures import resolve_theme
from explorer.models.base import CausalLM
from explorer.models.precision import DEFAULT_DTYPE, DTYPES, base_name

__all__ = ["DEFAULT_MODEL_ENV", "Explorer"]

#: Environment variable naming the model ``Explorer()`` opens with (else SmolLM2).
DEFAULT_MODEL_ENV = "DECODING_EXPLORER_MODEL"


def _registry() -> Any:
    """The model registry, imported on first use (it pulls in transformers)."""
    from explorer.models import registry

    return registry


class Explorer(Actions):
    """The decoding explorer: a prompt, up to four strategy panels side by side, Run, and linked views.

    ``Explorer().widget`` is the root widget; a notebook cell ending in ``Explorer()`` shows the app. ``model`` is
    a built-in name, a local model folder or a loaded ``CausalLM``; by default the model named by
    ``$DECODING_EXPLORER_MODEL``, else ``smollm2-135m``. ``dtype`` is the precision a named model opens in
    (``"float32"``, the default and the only one equal to the reference, ``"bfloat16"`` or ``"float16"``; a loaded
    model keeps its own). A model that fails to load is reported inline.

    >>> app = Explorer("tiny-random")  # doctest: +SKIP
    >>> app.run(wait=True); app.state.status  # doctest: +SKIP
    'done: 2 panels, 40 steps, 0.3 s'
    """

    def __init__(self, model: str | CausalLM | None = None, *, dtype: str = DEFAULT_DTYPE) -> None:
        self._lock = threading.RLock()
        self._rendering = False
        self._model = None
        name, error = self._open(model, dtype)
        self._state = st.initial_state(name)
        if self._model is not None and self._model.info.dtype in DTYPES:
            self._state = replace(self._state, dtype=self._model.info.dtype)
        if error:
            self._state = st.set_app_errors(self._state, {"model": error}, f"error: {error}")
        self.controls = Controls(sorted(_registry().available_models()))
        self.outputs = Outputs(self.on_tree_click)
        self._panels: dict[int, PanelControls] = {}
        self._seen: dict[int, tuple[object, ...]] = {}
        self._shown: dict[int, tuple[object, ...]] = {}
        self._info: tuple[object, NodeInfo | None] = (None, None)
        self._runner = Runner(self._current_model, Hooks(self._job_started, self._job_progress, self._job_trace,
                                                          self._job_error, self._run_ended))
        self._add_box = widgets.VBox([self.controls.add, self.controls.errors["panels"]])
        self._panel_row = widgets.Box(layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        self.theme_probe = ThemeProbe(layout=widgets.Layout(display="none"))
        self.widget = self._layout()
        self._connect()
        with self._lock:
            self._render()

    @property
    def state(self) -> AppState:
        """The current state (a frozen value)."""
        return self._state

    @property
    def model(self) -> CausalLM | None:
        """The loaded model (``None`` when loading failed)."""
        return self._model

    def panel(self, index: int) -> PanelControls:
        """The widgets of the ``index``-th panel shown."""
        return self._panels[self._state.panels[index].id]

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

    def _open(self, model: str | CausalLM | None, dtype: str) -> tuple[str, str]:
        """Load the first model: its name (without a precision suffix), and the loading error (empty when it
        loaded)."""
        if model is not None and not isinstance(model, str):
            self._model = model
            return base_name(model.info.name, model.info.dtype) if model.info.dtype in DTYPES else model.info.name, ""
        name = model or os.environ.get(DEFAULT_MODEL_ENV, "").strip() or _registry().DEFAULT_MODEL
        try:
            self._model = _registry().load_model(name, dtype=dtype)
        except Exception as error:  # shown inline: the app still opens
            return name, one_line(error)
        return name, ""

    def _current_model(self) -> CausalLM:
        """The model a job decodes with."""
        if self._model is None:
            raise ExplorerError("no model is loaded: choose one above")
        return self._model

    def _layout(self) -> Any:
        """The page: settings, panels, Run, summary, trees, then details of the selection."""
        c, o = self.controls, self.outputs
        title = widgets.HTML(STYLE)
        root = widgets.VBox([
            title, c.top(), self._panel_row, c.run_row(), o.summary,
            widgets.HTML("<h3 style='margin: 8px 0 2px'>Search trees</h3>"), c.tree_row(), o.tree,
            widgets.HTML("<h3 style='margin: 8px 0 2px'>Selected node</h3>"), o.selection, c.force_row(), o.details_box,
            self.theme_probe,
        ])
        root.add_class("explorer-app")
        root.add_class(theme_class(self.outputs.theme))
        return root

    def _connect(self) -> None:
        """Wire every control to its event."""
        c = self.controls
        c.model.observe(lambda ch: self.on_model(str(ch["new"])), names="value")
        c.precision.observe(lambda ch: self.on_precision(str(ch["new"])), names="value")
        c.prompt.observe(lambda ch: self.on_field({"prompt": str(ch["new"])}), names="value")
        c.chat.observe(lambda ch: self.on_field({"chat": bool(ch["new"])}), names="value")
        c.max_new_tokens.observe(lambda ch: self.on_field({"max_new_tokens": int(ch["new"])}), names="value")
        c.color.observe(lambda ch: self.on_field({"tree_color": str(ch["new"])}), names="value")
        c.pruned.observe(lambda ch: self.on_field({"show_pruned": bool(ch["new"])}), names="value")
        c.scrubber.observe(lambda ch: self.on_scrub(int(ch["new"])), names="value")
        c.upload.observe(lambda ch: self.on_upload(ch["new"]), names="value")
        c.add.on_click(lambda _: self.on_add())
        c.run.on_click(lambda _: self.on_run())
        c.stop.on_click(lambda _: self.stop())
        c.force.on_click(lambda _: self.on_force())
        c.clear.on_click(lambda _: self.on_clear())
        self.theme_probe.observe(lambda ch: self.on_theme(str(ch["new"])), names="theme")

    # --- events -------------------------------------------------------------------------------------------------

    @event
    def on_field(self, changes: dict[str, Any]) -> None:
        """Prompt, chat toggle, max new tokens, tree colour or pruned toggle changed."""
        self._set(st.set_field(self._state, **changes))

    @event
    def on_model(self, name: str) -> None:
        """A model was chosen: load it (errors inline) and check every panel's constraints against it."""
        name = name.strip()
        if not name or (name == self._state.model and self._model is not None):
            return
        if self._state.running:
            raise ExplorerError("a run is under way: stop it before changing the model")
        self._set(replace(st.set_field(self._state, model=name), status=f"loading model {name}…"))
        self._load(name, self._state.dtype)

    @event
    def on_precision(self, dtype: str) -> None:
        """A precision was chosen: load the model in it."""
        if dtype == self._state.dtype and self._model is not None:
            return
        if self._state.running:
            raise ExplorerError("a run is under way: stop it before changing the precision")
        self._set(replace(self._state, dtype=dtype, status=f"loading model {self._state.model} in {dtype}…"))
        self._load(self._state.model, dtype)

    def _load(self, name: str, dtype: str) -> None:
        """Load ``name`` in ``dtype`` and check every panel's constraints against it; a failure is shown under the
        model box. A model that refuses a lower precision (a toy table) is loaded in float32, and the precision
        box says why."""
        notes: dict[str, str] = {}
        try:
            try:
                model = _registry().load_model(name, dtype=dtype)
            except ParameterError as error:
                if error.name != "dtype" or dtype == DEFAULT_DTYPE:
                    raise
                notes["precision"] = one_line(error)
                model = _registry().load_model(name)
        except Exception as error:  # any loading failure is reported inline
            self._model = None
            self._set(st.set_app_errors(self._state, {"model": one_line(error)}, f"error: {one_line(error)}"))
            return
        self._model = model
        errors = {**{k: v for k, v in self._state.errors.items() if k != "precision"}, **notes}
        state = replace(self._state, dtype=model.info.dtype if notes else dtype, errors=errors,
                        status=f"model {model.info.name} loaded")
        for panel in state.panels:
            state = st.set_constraints(state, panel.id, panel.constraints, self._constraint_preview(
                panel.constraints)[1] if takes_constraints(panel.strategy) else "")
        self._set(state)

    @event
    def on_theme(self, theme: str) -> None:
        """The page's theme was read, or changed: the root's class follows, and the figures are drawn again in it."""
        self.widget.remove_class(theme_class(self.outputs.theme))
        self.outputs.theme = resolve_theme(theme)
        self.widget.add_class(theme_class(self.outputs.theme))
        self._set(self._state)

    @event
    def on_strategy(self, panel_id: int, strategy: str) -> None:
        self._set(st.set_strategy(self._state, panel_id, strategy))
        panel = panel_by_id(self._state, panel_id)
        if panel is not None and takes_constraints(strategy):
            self.on_constraints(panel_id, panel.constraints)

    @event
    def on_param(self, panel_id: int, name: str, value: Any) -> None:
        self._set(st.set_param(self._state, panel_id, name, value))

    @event
    def on_constraints(self, panel_id: int, text: str) -> None:
        error = self._constraint_preview(text)[1] if text.strip() else ""
        self._set(st.set_constraints(self._state, panel_id, text, error))

    @event
    def on_remove(self, panel_id: int) -> None:
        if self._state.running:
            raise ExplorerError("a run is under way: stop it before removing a panel")
        self._set(st.remove_panel(self._state, panel_id))

    @event
    def on_add(self) -> None:
        self._set(st.add_panel(self._state))

    @event
    def on_run(self) -> None:
        self.run()

    @event
    def on_force(self) -> None:
        self.force()

    @event
    def on_clear(self) -> None:
        self.select(None)

    @event
    def on_scrub(self, value: int) -> None:
        """The scrubber at its end shows every step."""
        self._set(st.set_upto_step(self._state, None if value >= self.controls.scrubber.max else value))

    @event
    def on_upload(self, files: Any) -> None:
        """Load every uploaded file as a read-only panel, then empty the upload widget."""
        for item in tuple(files or ()):
            self.load_bytes(bytes(item["content"]), str(item["name"]))
        if files:
            self.controls.upload.value = ()

    def _picked_token(self) -> int:
        value = self.controls.force_token.value
        if value is None:
            raise ExplorerError("pick a token to force first")
        return int(value)

    # --- rendering ----------------------------------------------------------------------------------------------

    def _set(self, state: AppState) -> None:
        """Take a new state and redraw what changed (the lock is held by every caller)."""
        with self._lock:
            self._state = state
            self._render()

    def _render(self) -> None:
        """Set every widget from the state; the events this raises are ignored."""
        self._rendering = True
        try:
            state = self._state
            description = _registry().available_models().get(state.model, "")
            self.controls.render(state, f"<span class='explorer-muted'>{description}</span>")
            self._render_panels(state)
            info = self._selected_info()
            self.controls.render_force(*force_options(info))
            self.controls.render_scrubber(state)
            self.outputs.render(state, info)
        finally:
            self._rendering = False

    def _selected_info(self) -> NodeInfo | None:
        """What the selected node is, worked out once per selection and trace."""
        selection = self._state.selection
        panel = panel_by_id(self._state, selection.panel) if selection is not None else None
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
                controls = self._panels[panel.id] = PanelControls(panel.id, self)
            seen = (panel, state.model, panel.id in state.pending, self._label_of(state, panel))
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
        preview = self._constraint_preview(panel.constraints)[0] if takes_constraints(panel.strategy) else ""
        controls.render(panel, preview)
        if not panel.editable:
            controls.summary.value = panel_summary_html(panel, self._label_of(state, panel))
        note = "running…" if panel.id in state.pending else ""
        shown = (Same(panel.trace), note)
        if self._shown.get(panel.id) != shown:
            self._shown[panel.id] = shown
            controls.results.value = results_html(panel.trace, figures.tokens_html, note)
            controls.save.value = save_html(panel)
