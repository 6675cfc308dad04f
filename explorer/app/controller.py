"""The app's controller: it holds the state and the model, turns events into new states, and runs decodes."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Concatenate, ParamSpec, TypeVar

from explorer.app import state as st
from explorer.app._constraints import preview_html
from explorer.app._lens import node_lens, result_lens
from explorer.app._nodes import describe
from explorer.app._params import control_for, model_errors, takes_constraints
from explorer.app._plan import plan_branch, plan_run
from explorer.app._run import Hooks, Job, RunEnd, Runner, one_line
from explorer.app.state import AppState, panel_by_id
from explorer.errors import ExplorerError, ParameterError
from explorer.export import read_export
from explorer.models.base import CausalLM
from explorer.models.precision import DEFAULT_DTYPE, DTYPES, base_name
from explorer.trace import Trace
from explorer.trace_io import loads_trace

__all__ = ["DEFAULT_MODEL_ENV", "Controller", "event", "model_registry"]

#: Environment variable naming the model ``Explorer()`` opens with (else SmolLM2).
DEFAULT_MODEL_ENV = "DECODING_EXPLORER_MODEL"

P = ParamSpec("P")
C = TypeVar("C", bound="Controller")


def model_registry() -> Any:
    """The model registry, imported on first use (it pulls in transformers)."""
    from explorer.models import registry

    return registry


def event(method: Callable[Concatenate[C, P], None]) -> Callable[Concatenate[C, P], None]:
    """An event handler: ignored while the view draws a state (setting a widget raises events of its own); an
    exception never reaches the page (the status line says ``error: ...`` instead)."""

    def handler(self: C, /, *args: P.args, **kwargs: P.kwargs) -> None:
        with self.lock:
            if self._drawing:
                return
            try:
                method(self, *args, **kwargs)
            except Exception as error:
                self._apply(replace(self.state, status=f"error: {one_line(error)}"))

    functools.update_wrapper(handler, method)
    return handler


#: Seconds a clicked node's logit lens waits before it is computed (see :meth:`Controller._read_lens`).
LENS_DELAY = 0.4


class Controller:
    """Holds the app's state and model; every change goes through :meth:`set`, which calls ``set_state`` (the view
    redraws from the state it is given). Runs and forks decode in a background thread (``runner``).

    ``model`` is a built-in name, a local model folder or a loaded ``CausalLM`` (``None``: ``$DECODING_EXPLORER_MODEL``,
    else the default model); a model that fails to load leaves ``model`` at ``None`` and says why inline.
    """

    def __init__(self, model: str | CausalLM | None, dtype: str, set_state: Callable[[AppState], None]) -> None:
        self.lock = threading.RLock()
        self._lens_lock = threading.Lock()  # one logit lens computed at a time
        self._drawing = False
        self._set_state = set_state
        self.model: CausalLM | None = None
        name, error = self._open(model, dtype)
        self.state = st.initial_state(name)
        if self.model is not None and self.model.info.dtype in DTYPES:
            self.state = replace(self.state, dtype=self.model.info.dtype)
        if error:
            self.state = st.set_app_errors(self.state, {"model": error}, f"error: {error}")
        self._began = time.perf_counter()  # when Run (or a fork) was clicked
        self.runner = Runner(self._current_model, Hooks(self._job_started, self._job_progress, self._job_trace,
                                                        self._job_error, self._run_ended))

    def set(self, state: AppState) -> None:
        """Take ``state`` and have the view draw it (events raised while it draws are ignored)."""
        with self.lock:
            self.state = state
            self._drawing = True
            try:
                self._set_state(state)
            finally:
                self._drawing = False

    def _apply(self, state: AppState) -> None:
        """:meth:`set`, with an error while drawing sent to the status line instead of up the stack (a run's thread
        must always get to its end, and the page must never show a traceback)."""
        with self.lock:
            try:
                self.set(state)
            except Exception as error:
                self.state = replace(self.state, status=f"error: {one_line(error)}")
                with contextlib.suppress(Exception):
                    self.set(self.state)

    # --- runs ---------------------------------------------------------------------------------------------------

    def run(self, *, wait: bool = False) -> threading.Thread | None:
        """Decode every strategy panel side by side in a background thread (``wait``: until it ends); invalid input
        is shown inline and nothing runs (``None``)."""
        with self.lock:
            if self.state.running:
                return None
            self._began = time.perf_counter()
            state, jobs = plan_run(self.state, self.model)
            if jobs:
                total = sum(job.max_steps for job in jobs)
                state = st.start_run(state, tuple(j.panel_id for j in jobs), total, f"running 0/{len(jobs)}…")
            self.set(state)
        return self.runner.start(jobs, wait=wait) if jobs else None

    def stop(self) -> None:
        """End the run after its current step; the partial traces are kept."""
        with self.lock:
            if self.state.running:
                self.runner.stop()
                self.set(replace(self.state, status="stopping…"))

    def force(self, token_id: int | None, *, wait: bool = False) -> threading.Thread | None:
        """Re-decode the selected hypothesis with ``token_id`` forced, as a new branch panel beside its source;
        problems are shown under the force button and nothing runs (``None``)."""
        with self.lock:
            self._began = time.perf_counter()
            try:
                state, job = plan_branch(self.state, self.model, token_id)
            except ExplorerError as error:
                self.set(st.set_app_errors(self.state, {"force": one_line(error)}))
                return None
            self.set(state)
        return self.runner.start([job], wait=wait)

    def _current_model(self) -> CausalLM:
        """The model a job decodes with."""
        if self.model is None:
            raise ExplorerError("no model is loaded: choose one above")
        return self.model

    def _job_started(self, jobs: Sequence[Job], number: int, total: int) -> None:
        with self.lock:
            if len(jobs) > 1:
                status = f"running {len(jobs)} panels side by side…"
            else:
                panel = panel_by_id(self.state, jobs[0].panel_id)
                label = panel.label if panel is not None else f"panel #{jobs[0].panel_id}"
                status = f"running {number}/{total}: {label}…"
            self._apply(st.set_progress(self.state, self.state.progress[0], status=status))

    def _job_progress(self, steps: int) -> None:
        with self.lock:
            self._apply(st.set_progress(self.state, steps))

    def _job_trace(self, job: Job, trace: Trace) -> None:
        with self.lock:
            self._apply(st.panel_finished(self.state, job.panel_id, trace))

    def _job_error(self, job: Job, error: Exception) -> None:
        with self.lock:
            control = control_for(error.name, job.strategy) if isinstance(error, ParameterError) else "panel"
            self._apply(st.panel_failed(self.state, job.panel_id, control, one_line(error)))

    def _run_ended(self, end: RunEnd) -> None:
        """The run is over: the status says so, with the time from the click on Run until the page was sent every
        result (what the user waited, but for the browser drawing the last figures)."""
        with self.lock:
            waited = time.perf_counter() - self._began
            status = end.status if end.outcome == "error" else f"{end.status}; {waited:.1f} s from Run until sent " \
                "to the page"
            self._apply(st.finish_run(self.state, status))

    # --- events (from the view's widgets) -----------------------------------------------------------------------

    @event
    def on_field(self, changes: dict[str, Any]) -> None:
        """Prompt, chat toggle, max new tokens, tree colour or pruned toggle changed."""
        self.set(st.set_field(self.state, **changes))

    @event
    def on_model(self, name: str) -> None:
        """A model was chosen: load it (errors inline) and check every panel's constraints against it."""
        name = name.strip()
        if not name or (name == self.state.model and self.model is not None):
            return
        if self.state.running:
            raise ExplorerError("a run is under way: stop it before changing the model")
        self.set(replace(st.set_field(self.state, model=name), status=f"loading model {name}…"))
        self._load(name, self.state.dtype)

    @event
    def on_precision(self, dtype: str) -> None:
        """A precision was chosen: load the model in it."""
        if dtype == self.state.dtype and self.model is not None:
            return
        if self.state.running:
            raise ExplorerError("a run is under way: stop it before changing the precision")
        self.set(replace(self.state, dtype=dtype, status=f"loading model {self.state.model} in {dtype}…"))
        self._load(self.state.model, dtype)

    @event
    def on_strategy(self, panel_id: int, strategy: str) -> None:
        self.set(self._with_model_errors(st.set_strategy(self.state, panel_id, strategy), panel_id))
        panel = panel_by_id(self.state, panel_id)
        if panel is not None and takes_constraints(strategy):
            self.on_constraints(panel_id, panel.constraints)

    @event
    def on_param(self, panel_id: int, name: str, value: Any) -> None:
        self.set(self._with_model_errors(st.set_param(self.state, panel_id, name, value), panel_id))

    def _with_model_errors(self, state: AppState, panel_id: int) -> AppState:
        """``state`` with what the loaded model refuses of a panel's knobs shown under them (DoLa layers past the
        model's last, a strategy reading layers on a next-token table)."""
        panel = panel_by_id(state, panel_id)
        if panel is None or not panel.editable:
            return state
        return st.set_model_errors(state, panel_id, model_errors(panel.strategy, panel.params, state.max_new_tokens,
                                                                 self.model))

    @event
    def on_lens_grid(self) -> None:
        """The "logit lens along the result" button."""
        self.lens_along()

    @event
    def on_constraints(self, panel_id: int, text: str) -> None:
        error = self.constraint_preview(text)[1] if text.strip() else ""
        self.set(st.set_constraints(self.state, panel_id, text, error))

    @event
    def on_remove(self, panel_id: int) -> None:
        if self.state.running:
            raise ExplorerError("a run is under way: stop it before removing a panel")
        self.set(st.remove_panel(self.state, panel_id))

    @event
    def on_add(self) -> None:
        self.set(st.add_panel(self.state))

    @event
    def on_run(self) -> None:
        self.run()

    @event
    def on_force(self, token_id: int | None) -> None:
        self.force(token_id)

    @event
    def on_clear(self) -> None:
        self.select(None)

    @event
    def on_scrub(self, value: int, last: int) -> None:
        """The scrubber moved to ``value`` of ``0..last``; at its end it shows every step."""
        self.set(st.set_upto_step(self.state, None if value >= last else value))

    @event
    def on_upload(self, files: Any) -> None:
        """Load every uploaded file as a read-only panel."""
        for item in tuple(files or ()):
            self.load_bytes(bytes(item["content"]), str(item["name"]))

    @event
    def on_view(self, change: Callable[[], None]) -> None:
        """Something only the view holds changed (the page's theme): ``change()`` applies it, then the view redraws."""
        change()
        self.set(self.state)

    @event
    def on_tree_click(self, trace: Any, points: Any, selector: Any = None) -> None:
        """A click on a tree marker: its ``customdata`` is ``[panel key, node key]``."""
        indices = list(getattr(points, "point_inds", []) or [])
        if not indices or trace.customdata is None:
            return
        panel_key, node = (str(v) for v in list(trace.customdata[indices[0]])[:2])
        panel_id = next((p.id for p in self.state.panels if p.key == panel_key and p.trace is not None), None)
        if panel_id is None:
            raise ExplorerError(f"no panel {panel_key!r} in the trees")
        self.select(panel_id, node, wait=False)

    # --- selection, models and traces ---------------------------------------------------------------------------

    def select(self, panel_id: int | None, node: str | None = None, *, wait: bool = True) -> threading.Thread | None:
        """Select tree node ``node`` of panel ``panel_id`` (``None``: clear the selection). The node's details are
        drawn at once; its logit lens (a forward of its text: seconds deep in a long run on a laptop) follows,
        computed here (``wait``) or in a background thread, which is returned."""
        with self.lock:
            panel = panel_by_id(self.state, panel_id) if panel_id is not None else None
            if panel_id is not None and (panel is None or panel.trace is None or node is None):
                raise ExplorerError(f"panel #{panel_id} has no trace to select in")
            state = st.select(self.state, panel_id, node)
            if panel is None or panel.trace is None or node is None or state.selection is None:
                self.set(st.set_lens(state, None))
                return None
            try:
                info = describe(panel.trace, node)
            except KeyError:
                raise ExplorerError(f"node {node!r} is not in the tree of {panel.key}") from None
            # The node's details first; then its logit lens (one forward of its text), which the view adds.
            selection = state.selection
            self.set(st.set_lens(state, st.NodeLens(selection, None, "reading the logit lens…", pending=True)))
            model = self.model

        def read() -> None:
            self._read_lens(lambda: node_lens(model, panel, selection, info), selection, delay=0.0 if wait else
                            LENS_DELAY)

        if wait:
            read()
            return None
        thread = threading.Thread(target=read, name="logit-lens", daemon=True)
        thread.start()
        return thread

    def _read_lens(self, compute: Callable[[], st.NodeLens], selection: st.Selection, delay: float) -> None:
        """Compute a node's logit lens and show it, unless another node was selected meanwhile (then nothing is
        computed, or the result is dropped). After ``delay`` seconds: the page draws the click's details first
        (a forward beside it would take the cores the browser draws with); one lens at a time."""
        time.sleep(delay)
        with self._lens_lock:
            if self.state.selection != selection:
                return
            try:
                lens = compute()
            except Exception as error:  # a thread's failure must reach the page as a note, not stay "reading"
                lens = st.NodeLens(selection, None, f"no logit lens: {one_line(error)}")
        with self.lock:
            if self.state.selection == selection:
                self._apply(st.set_lens(self.state, lens))

    def lens_along(self, panel_id: int | None = None) -> None:
        """Compute the logit lens along the best result of panel ``panel_id`` (default: the selected node's panel,
        else the first panel with a trace); a note says why when there is none."""
        with self.lock:
            panel = st.lens_panel(self.state) if panel_id is None else panel_by_id(self.state, panel_id)
            if panel is None or panel.trace is None:
                raise ExplorerError("no result to read the logit lens along: run first")
            self.set(replace(self.state, status=f"reading the logit lens along {panel.key}…"))
            grid = result_lens(self.model, panel)
            status = (f"logit lens along {panel.key}: {grid.ms / 1000:.2f} s" if grid.grid is not None
                      else f"error: {grid.note}")
            self.set(replace(st.set_grid(self.state, grid), status=status))

    def load_bytes(self, content: bytes, name: str) -> None:
        """Add a read-only panel with the trace in an uploaded file (each trace of a page written by
        ``explorer.export_html``); problems go under the load button."""
        with self.lock:
            try:
                if content.lstrip()[:1] == b"<":
                    traces = {f"{name}: {panel}": t for panel, t in read_export(content, name=name).items()}
                else:
                    traces = {name: loads_trace(content, source=name)}
            except ExplorerError as error:
                self.set(st.set_app_errors(self.state, {"load": one_line(error)}))
                return
            state = self.state
            for label, trace in traces.items():
                state = st.add_loaded(state, trace, label)
            self.set(state)

    def constraint_preview(self, text: str) -> tuple[str, str]:
        """Tokenization preview (HTML) and error of a constraints text with the current model."""
        if self.model is None:
            return "", "no model is loaded" if text.strip() else ""
        return preview_html(self.model, text)

    def _open(self, model: str | CausalLM | None, dtype: str) -> tuple[str, str]:
        """Load the first model: its name (without a precision suffix), and the loading error (empty when it
        loaded)."""
        if model is not None and not isinstance(model, str):
            self.model = model
            return base_name(model.info.name, model.info.dtype) if model.info.dtype in DTYPES else model.info.name, ""
        name = model or os.environ.get(DEFAULT_MODEL_ENV, "").strip() or model_registry().DEFAULT_MODEL
        try:
            self.model = model_registry().load_model(name, dtype=dtype)
        except Exception as error:  # shown inline: the app still opens
            return name, one_line(error)
        return name, ""

    def _load(self, name: str, dtype: str) -> None:
        """Load ``name`` in ``dtype`` and check every panel's constraints against it; a failure is shown under the
        model box. A model that refuses a lower precision (a toy table) is loaded in float32, and the precision
        box says why."""
        notes: dict[str, str] = {}
        try:
            try:
                model = model_registry().load_model(name, dtype=dtype)
            except ParameterError as error:
                if error.name != "dtype" or dtype == DEFAULT_DTYPE:
                    raise
                notes["precision"] = one_line(error)
                model = model_registry().load_model(name)
        except Exception as error:  # any loading failure is reported inline
            self.model = None
            self.set(st.set_app_errors(self.state, {"model": one_line(error)}, f"error: {one_line(error)}"))
            return
        self.model = model
        errors = {**{k: v for k, v in self.state.errors.items() if k != "precision"}, **notes}
        state = replace(self.state, dtype=model.info.dtype if notes else dtype, errors=errors,
                        status=f"model {model.info.name} loaded")
        for panel in state.panels:
            state = st.set_constraints(st.recheck(state, panel.id), panel.id, panel.constraints,
                                       self.constraint_preview(panel.constraints)[1]
                                       if takes_constraints(panel.strategy) else "")
            state = self._with_model_errors(state, panel.id)
        self.set(state)
