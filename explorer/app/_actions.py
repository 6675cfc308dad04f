"""What the app does beyond a pure state change: runs in the background, forks, loading models and traces."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Concatenate, ParamSpec, TypeVar

from explorer.app import state as st
from explorer.app._constraints import preview_html
from explorer.app._nodes import NodeInfo, branch_request, describe
from explorer.app._params import control_for
from explorer.app._plan import plan_run
from explorer.app._run import Job, RunEnd, Runner, one_line
from explorer.app.outputs import Outputs
from explorer.app.state import AppState, Branch, Panel, panel_by_id
from explorer.errors import ExplorerError, ParameterError
from explorer.models.base import CausalLM
from explorer.trace import Trace
from explorer.trace_io import loads_trace

__all__ = ["Actions", "event", "one_line"]

P = ParamSpec("P")
S = TypeVar("S", bound="Actions")


def event(method: Callable[Concatenate[S, P], None]) -> Callable[Concatenate[S, P], None]:
    """An event handler: ignored while the app sets its own widgets; an exception never reaches the page (the
    status line says ``error: ...`` instead)."""

    def handler(self: S, /, *args: P.args, **kwargs: P.kwargs) -> None:
        with self._lock:
            if self._rendering:
                return
            try:
                method(self, *args, **kwargs)
            except Exception as error:
                self._apply(replace(self._state, status=f"error: {one_line(error)}"))

    functools.update_wrapper(handler, method)
    return handler


class Actions:
    """Mixed into ``Explorer``: the parts that load, decode and fork. ``_set`` takes a state and redraws."""

    _lock: threading.RLock
    _rendering: bool
    _state: AppState
    _model: CausalLM | None
    _runner: Runner
    outputs: Outputs

    def _set(self, state: AppState) -> None:
        raise NotImplementedError

    def _apply(self, state: AppState) -> None:
        """Take ``state`` and redraw; an error while drawing goes to the status line instead of up the stack (a
        run's thread must always get to its end, and the page must never show a traceback)."""
        with self._lock:
            try:
                self._set(state)
            except Exception as error:
                self._state = replace(self._state, status=f"error: {one_line(error)}")
                with contextlib.suppress(Exception):
                    self._set(self._state)

    # --- runs ---------------------------------------------------------------------------------------------------

    def run(self, *, wait: bool = False) -> threading.Thread | None:
        """Decode every strategy panel, side by side in one batched run, in a background thread (``wait``: until
        it ends).

        Invalid input is shown inline and nothing runs (``None`` is returned)."""
        with self._lock:
            if self._state.running:
                return None
            state, jobs = plan_run(self._state, self._model)
            if jobs:
                total = sum(job.max_steps for job in jobs)
                state = st.start_run(state, tuple(j.panel_id for j in jobs), total, f"running 0/{len(jobs)}…")
            self._set(state)
        return self._runner.start(jobs, wait=wait) if jobs else None

    def stop(self) -> None:
        """End the run after its current step; the partial traces are kept."""
        with self._lock:
            if self._state.running:
                self._runner.stop()
                self._set(replace(self._state, status="stopping…"))

    def _job_started(self, jobs: Sequence[Job], number: int, total: int) -> None:
        with self._lock:
            if len(jobs) > 1:
                status = f"running {len(jobs)} panels side by side…"
            else:
                panel = panel_by_id(self._state, jobs[0].panel_id)
                label = panel.label if panel is not None else f"panel #{jobs[0].panel_id}"
                status = f"running {number}/{total}: {label}…"
            self._apply(st.set_progress(self._state, self._state.progress[0], status=status))

    def _job_progress(self, steps: int) -> None:
        with self._lock:
            self._apply(st.set_progress(self._state, steps))

    def _job_trace(self, job: Job, trace: Trace) -> None:
        with self._lock:
            self._apply(st.panel_finished(self._state, job.panel_id, trace))

    def _job_error(self, job: Job, error: Exception) -> None:
        with self._lock:
            control = control_for(error.name, job.strategy) if isinstance(error, ParameterError) else "panel"
            self._apply(st.panel_failed(self._state, job.panel_id, control, one_line(error)))

    def _run_ended(self, end: RunEnd) -> None:
        with self._lock:
            self._apply(st.finish_run(self._state, end.status))

    # --- selection and forks ------------------------------------------------------------------------------------

    def select(self, panel_id: int | None, node: str | None = None) -> None:
        """Select tree node ``node`` of panel ``panel_id`` (``None``: clear the selection)."""
        with self._lock:
            panel = panel_by_id(self._state, panel_id) if panel_id is not None else None
            if panel_id is not None and (panel is None or panel.trace is None or node is None):
                raise ExplorerError(f"panel #{panel_id} has no trace to select in")
            if panel is not None and panel.trace is not None and node is not None:
                try:
                    describe(panel.trace, node)
                except KeyError:
                    raise ExplorerError(f"node {node!r} is not in the tree of {panel.key}") from None
            self._set(st.select(self._state, panel_id, node))

    @event
    def on_tree_click(self, trace: Any, points: Any, selector: Any = None) -> None:
        """A click on a tree marker: its ``customdata`` is ``[panel key, node key]``."""
        indices = list(getattr(points, "point_inds", []) or [])
        if not indices or trace.customdata is None:
            return
        panel_key, node = (str(v) for v in list(trace.customdata[indices[0]])[:2])
        panel_id = self.outputs.keys.get(panel_key)
        if panel_id is None:
            raise ExplorerError(f"no panel {panel_key!r} in the trees")
        self.select(panel_id, node)

    def force(self, token_id: int | None = None, *, wait: bool = False) -> threading.Thread | None:
        """Re-decode the selected hypothesis with ``token_id`` (default: the one picked) forced, as a new branch
        panel beside its source. Problems are shown under the force button and ``None`` is returned."""
        with self._lock:
            try:
                state, job = self._branch(token_id)
            except ExplorerError as error:
                self._set(st.set_app_errors(self._state, {"force": one_line(error)}))
                return None
            self._set(state)
        return self._runner.start([job], wait=wait)

    def _fork_point(self) -> tuple[Panel, str, NodeInfo]:
        """The selected panel, node and what it is, when a token can be forced there (else ``ExplorerError``)."""
        state = self._state
        if state.running:
            raise ExplorerError("a run is under way: wait for it or stop it first")
        selection = state.selection
        panel = panel_by_id(state, selection.panel) if selection is not None else None
        if selection is None or panel is None or panel.trace is None:
            raise ExplorerError("select a node of a tree first")
        try:
            info = describe(panel.trace, selection.node)
        except KeyError:
            raise ExplorerError(f"node {selection.node!r} is not in the tree of {panel.key}") from None
        if info.hypothesis is None:
            raise ExplorerError(f"node {selection.node} has no recorded candidates to force")
        if self._model is None or panel.trace.model != self._model.info.name:
            raise ExplorerError(f"this trace was made with model {panel.trace.model!r}: load that model first")
        return panel, selection.node, info

    def _branch(self, token_id: int | None) -> tuple[AppState, Job]:
        """The state with a new branch panel beside its source, and the job that decodes it."""
        panel, node, info = self._fork_point()
        assert panel.trace is not None
        assert info.hypothesis is not None
        token = token_id if token_id is not None else self._picked_token()
        cand = next((c for c in info.hypothesis.candidates if c.token_id == token), None)
        if cand is None:
            raise ExplorerError(f"token {token} is not a recorded candidate of node {node}")
        try:
            prompt, params, constraints = branch_request(panel.trace, info.hypothesis, token)
        except ValueError as error:
            raise ExplorerError(str(error)) from None
        branch = Branch(panel.id, node, info.step, token, cand.text, len(info.hypothesis.token_ids) + 1)
        new = st.add_branch(st.select(self._state, panel.id, node), panel, branch, params)
        if len(new.panels) == len(self._state.panels):
            raise ExplorerError(new.errors.get("force", "no room for another panel"))
        meta = {"branch": {"source": panel.key, "node": node, "step": branch.step, "token_id": token,
                           "token_text": cand.text, "fixed_tokens": branch.fixed}}
        job = Job(new.next_id - 1, prompt, panel.strategy, params, constraints=constraints, meta=meta)
        added = panel_by_id(new, job.panel_id)
        status = f"running {added.label if added is not None else 'the branch'}…"
        return st.start_run(new, (job.panel_id,), job.max_steps, status), job

    def _picked_token(self) -> int:
        raise NotImplementedError

    # --- models and traces --------------------------------------------------------------------------------------

    def _constraint_preview(self, text: str) -> tuple[str, str]:
        """Tokenization preview (HTML) and error of a constraints text with the current model."""
        if self._model is None:
            return "", "no model is loaded" if text.strip() else ""
        return preview_html(self._model, text)

    def load_bytes(self, content: bytes, name: str) -> None:
        """Add a read-only panel with the trace in an uploaded file; problems go under the load button."""
        with self._lock:
            try:
                trace = loads_trace(content, source=name)
            except ExplorerError as error:
                self._set(st.set_app_errors(self._state, {"load": one_line(error)}))
                return
            self._set(st.add_loaded(self._state, trace, name))
