"""The app's one state object (frozen dataclasses) and the pure functions that turn an event into a new state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from explorer.app._params import carry_params, check_params, default_params, takes_constraints
from explorer.text import clip, visible
from explorer.trace import Trace

if TYPE_CHECKING:
    from explorer.lens import Lens, LensGrid

__all__ = [
    "MAX_EDITABLE",
    "MAX_PANELS",
    "AppState",
    "Branch",
    "NodeLens",
    "Panel",
    "ResultLens",
    "Selection",
    "add_branch",
    "add_loaded",
    "add_panel",
    "finish_run",
    "initial_state",
    "lens_panel",
    "panel_by_id",
    "panel_failed",
    "panel_finished",
    "recheck",
    "remove_panel",
    "run_settings",
    "select",
    "set_app_errors",
    "set_constraints",
    "set_field",
    "set_grid",
    "set_lens",
    "set_model_errors",
    "set_param",
    "set_progress",
    "set_strategy",
    "set_upto_step",
    "stale",
    "start_run",
]

#: Panels the user edits and runs (the "add panel" button stops here).
MAX_EDITABLE = 4
#: All panels, branches and loaded traces included.
MAX_PANELS = 8

PanelKind = Literal["edit", "branch", "loaded"]
TreeColor = Literal["score", "logprob", "group"]


@dataclass(frozen=True)
class Branch:
    """Where a branch panel came from: the source panel, the node it forked at, and the forced token."""

    source: int
    node: str
    step: int
    token_id: int
    token_text: str
    fixed: int


@dataclass(frozen=True, eq=False)
class Panel:
    """One column of the app: a strategy with its knobs, or a read-only branch or loaded trace.

    ``errors`` maps a control (a knob's name, ``strategy``, ``constraints``, ``panel``) to its inline message.
    Equality is identity: a changed panel is a new object, so views compare panels with ``is``.
    """

    id: int
    kind: PanelKind
    strategy: str
    params: Mapping[str, Any]
    constraints: str = ""
    trace: Trace | None = None
    errors: Mapping[str, str] = field(default_factory=dict)
    branch: Branch | None = None
    name: str = ""
    #: The settings the panel's trace was made with (:func:`run_settings`, taken when Run started it).
    ran: tuple[object, ...] | None = None

    @property
    def label(self) -> str:
        """What the panel is called in its header, the trees and the summary."""
        if self.branch is not None:
            b = self.branch
            return f'{self.strategy} ↳ step {b.step} "{clip(visible(b.token_text), 24)}"'
        if self.kind == "loaded":
            return f"{clip(visible(self.name), 40)} ({self.strategy})"
        return self.strategy

    @property
    def key(self) -> str:
        """A unique name for the figures: ``#<id> <label>``."""
        return f"#{self.id} {self.label}"

    @property
    def editable(self) -> bool:
        """Whether Run decodes this panel (branches and loaded traces are kept as they are)."""
        return self.kind == "edit"


@dataclass(frozen=True)
class Selection:
    """A clicked tree node: the panel and the node key (``h<id>``, ``f<id>``, ``c<step>.<hyp>.<token>``)."""

    panel: int
    node: str


@dataclass(frozen=True, eq=False)
class NodeLens:
    """The logit lens of a selected node, computed when it was clicked: the selection it belongs to, the lens at
    the end of prompt + the node's tokens (``token``: the token the run took next from there, spelled
    ``token_text``), or a one-line ``note`` saying why there is none (or, ``pending``, that it is being read);
    ``ms`` is what it took."""

    selection: Selection
    lens: Lens | None
    note: str = ""
    token_text: str = ""
    ms: float = 0.0
    pending: bool = False


@dataclass(frozen=True, eq=False)
class ResultLens:
    """The logit lens along a panel's best result, computed on request: for ``trace`` (a new run of the panel makes
    it stale), the grid, or a one-line ``note`` saying why there is none; ``ms`` is what it took."""

    panel: int
    trace: Trace
    grid: LensGrid | None
    note: str = ""
    ms: float = 0.0


@dataclass(frozen=True, eq=False)
class AppState:
    """Everything the views draw. ``errors`` holds inline messages of the controls above the panels
    (``model``, ``precision``, ``prompt``, ``chat``, ``max_new_tokens``, ``load``, ``force``, ``panels``);
    ``pending`` the panels the current run has still to decode. ``dtype`` is the model's precision."""

    model: str
    dtype: str = "float32"
    prompt: str = "The recipe needs"
    chat: bool = False
    max_new_tokens: int = 20
    panels: tuple[Panel, ...] = ()
    selection: Selection | None = None
    upto_step: int | None = None
    running: bool = False
    pending: tuple[int, ...] = ()
    status: str = "ready"
    progress: tuple[int, int] = (0, 1)
    errors: Mapping[str, str] = field(default_factory=dict)
    tree_color: TreeColor = "score"
    show_pruned: bool = True
    text_color: Literal["entropy", "probability"] = "entropy"
    next_id: int = 1
    lens: NodeLens | None = None
    grid: ResultLens | None = None


def run_settings(state: AppState, panel: Panel) -> tuple[object, ...]:
    """Everything a panel's run depends on: model, precision, prompt, chat, token budget, strategy, knobs and
    constraints (compared, never hashed: knob values may be lists)."""
    return (state.model, state.dtype, state.prompt, state.chat, state.max_new_tokens, panel.strategy,
            repr(sorted(panel.params.items())), panel.constraints)


def stale(state: AppState, panel: Panel) -> bool:
    """Whether an editable panel's trace no longer matches its settings (they changed since its run)."""
    return panel.editable and panel.trace is not None and panel.ran is not None and \
        panel.ran != run_settings(state, panel)


def initial_state(model: str, strategies: tuple[str, ...] = ("greedy", "beam")) -> AppState:
    """The state the app opens with: one panel per strategy, with their defaults."""
    state = AppState(model=model)
    for strategy in strategies:
        state = add_panel(state, strategy)
    return state


def lens_panel(state: AppState) -> Panel | None:
    """The panel whose best result the logit lens reads along: the selected node's, else the first with a trace."""
    selected = panel_by_id(state, state.selection.panel) if state.selection is not None else None
    if selected is not None and selected.trace is not None:
        return selected
    return next((p for p in state.panels if p.trace is not None), None)


def panel_by_id(state: AppState, panel_id: int) -> Panel | None:
    """The panel with this id, or ``None`` when it was removed."""
    return next((p for p in state.panels if p.id == panel_id), None)


def _with_panel(state: AppState, panel_id: int, **changes: Any) -> AppState:
    """``state`` with one panel replaced by a copy carrying ``changes`` (unchanged if the panel is gone)."""
    panels = tuple(replace(p, **changes) if p.id == panel_id else p for p in state.panels)
    return replace(state, panels=panels)


def _revalidate(state: AppState, panel_id: int) -> AppState:
    """Recheck a panel's knobs; constraint errors (set by their own event) are kept."""
    panel = panel_by_id(state, panel_id)
    if panel is None or not panel.editable:
        return state
    kept = {k: v for k, v in panel.errors.items() if k == "constraints"}
    return _with_panel(state, panel_id, errors={**check_params(panel.strategy, panel.params, state.max_new_tokens),
                                                **kept})


def recheck(state: AppState, panel_id: int) -> AppState:
    """Validate a panel's knobs again (after a model change: what the old model refused is forgotten)."""
    return _revalidate(state, panel_id)


def _free_id(state: AppState) -> int:
    """The number a new panel gets: the smallest one no panel holds and no branch names as its source (numbers
    stay small as panels come and go, and a branch never points at a newcomer)."""
    taken = {p.id for p in state.panels} | {p.branch.source for p in state.panels if p.branch is not None}
    return next(i for i in range(1, len(taken) + 2) if i not in taken)


def add_panel(state: AppState, strategy: str = "beam") -> AppState:
    """A new editable panel with the defaults of ``strategy`` (no-op with an error past the limits)."""
    editable = sum(p.editable for p in state.panels)
    if editable >= MAX_EDITABLE or len(state.panels) >= MAX_PANELS:
        return set_app_errors(state, {"panels": f"at most {MAX_EDITABLE} strategy panels ({MAX_PANELS} panels in "
                                                "all): remove one first"})
    panel = Panel(id=_free_id(state), kind="edit", strategy=strategy, params=default_params(strategy))
    errors = {k: v for k, v in state.errors.items() if k != "panels"}
    return replace(state, panels=(*state.panels, panel), next_id=panel.id + 1, errors=errors)


def remove_panel(state: AppState, panel_id: int) -> AppState:
    """Drop a panel (and the selection, if it was in it)."""
    selection = state.selection if state.selection is None or state.selection.panel != panel_id else None
    errors = {k: v for k, v in state.errors.items() if k != "panels"}
    return replace(state, panels=tuple(p for p in state.panels if p.id != panel_id), selection=selection,
                   errors=errors)


def set_strategy(state: AppState, panel_id: int, strategy: str) -> AppState:
    """Change a panel's strategy: its knobs become the new defaults, keeping changed values that still apply."""
    panel = panel_by_id(state, panel_id)
    if panel is None or panel.strategy == strategy:
        return state
    params = carry_params(panel.strategy, panel.params, strategy)
    errors = {k: v for k, v in panel.errors.items() if k == "constraints" and takes_constraints(strategy)}
    return _revalidate(_with_panel(state, panel_id, strategy=strategy, params=params, errors=errors), panel_id)


def set_param(state: AppState, panel_id: int, name: str, value: Any) -> AppState:
    """Change one knob of a panel and validate the panel again."""
    panel = panel_by_id(state, panel_id)
    if panel is None:
        return state
    return _revalidate(_with_panel(state, panel_id, params={**panel.params, name: value}), panel_id)


def set_model_errors(state: AppState, panel_id: int, errors: Mapping[str, str]) -> AppState:
    """Add what the model refuses of a panel's knobs (``{control: message}``) to its inline errors."""
    panel = panel_by_id(state, panel_id)
    if panel is None or not errors:
        return state
    return _with_panel(state, panel_id, errors={**panel.errors, **errors})


def set_lens(state: AppState, lens: NodeLens | None) -> AppState:
    """The logit lens of the selected node (``None``: none)."""
    return replace(state, lens=lens)


def set_grid(state: AppState, grid: ResultLens | None) -> AppState:
    """The logit lens along a panel's result (``None``: none)."""
    return replace(state, grid=grid)


def set_constraints(state: AppState, panel_id: int, text: str, error: str) -> AppState:
    """Change a panel's constraints text, with the error its tokenization gave (empty when fine)."""
    panel = panel_by_id(state, panel_id)
    if panel is None:
        return state
    errors = {k: v for k, v in panel.errors.items() if k != "constraints"}
    if error:
        errors["constraints"] = error
    return _with_panel(state, panel_id, constraints=text, errors=errors)


def set_field(state: AppState, **changes: Any) -> AppState:
    """Change top-level fields (``prompt``, ``chat``, ``max_new_tokens``, ``model``, ``tree_color``, ...); their
    inline errors are cleared, and panels are validated again when ``max_new_tokens`` changes."""
    errors = {k: v for k, v in state.errors.items() if k not in changes}
    new = replace(state, errors=errors, **changes)
    if "max_new_tokens" in changes:
        for panel in new.panels:
            new = _revalidate(new, panel.id)
    return new


def set_app_errors(state: AppState, errors: Mapping[str, str], status: str | None = None) -> AppState:
    """Add inline errors of the controls above the panels (and set the status line when given)."""
    return replace(state, errors={**state.errors, **errors}, status=state.status if status is None else status)


def set_upto_step(state: AppState, step: int | None) -> AppState:
    """Show the trees up to ``step`` (``None``: every step)."""
    return replace(state, upto_step=step)


def select(state: AppState, panel_id: int | None, node: str | None = None) -> AppState:
    """Select a tree node (``None`` clears the selection) and clear the force error."""
    errors = {k: v for k, v in state.errors.items() if k != "force"}
    selection = None if panel_id is None or node is None else Selection(panel_id, node)
    return replace(state, selection=selection, errors=errors)


def start_run(state: AppState, panel_ids: tuple[int, ...], total_steps: int, status: str) -> AppState:
    """A run begins: the panels it decodes lose their old traces, Run is disabled, progress starts at 0."""
    panels = tuple(replace(p, trace=None) if p.id in panel_ids else p for p in state.panels)
    selection = state.selection if state.selection is None or state.selection.panel not in panel_ids else None
    return replace(state, panels=panels, running=True, pending=panel_ids, status=status,
                   progress=(0, max(total_steps, 1)), selection=selection, upto_step=None)


def set_progress(state: AppState, done: int, status: str | None = None) -> AppState:
    """Move the progress bar (and say which panel runs)."""
    return replace(state, progress=(done, state.progress[1]), status=state.status if status is None else status)


def panel_finished(state: AppState, panel_id: int, trace: Trace) -> AppState:
    """A panel's trace is in."""
    pending = tuple(p for p in state.pending if p != panel_id)
    return replace(_with_panel(state, panel_id, trace=trace), pending=pending)


def panel_failed(state: AppState, panel_id: int, control: str, message: str) -> AppState:
    """A panel's run failed: the message goes under the control that caused it, or above the panels."""
    panel = panel_by_id(state, panel_id)
    state = replace(state, pending=tuple(p for p in state.pending if p != panel_id))
    if panel is None:
        return state
    if control in ("prompt", "chat", "max_new_tokens"):
        return set_app_errors(state, {control: message})
    return _with_panel(state, panel_id, errors={**panel.errors, control: message}, trace=None)


def finish_run(state: AppState, status: str) -> AppState:
    """The run is over: Run is enabled again and the status line says how it ended; the progress bar is full, or
    empty after an error."""
    total = state.progress[1]
    return replace(state, running=False, pending=(), status=status,
                   progress=(0 if status.startswith("error") else total, total))


def add_branch(state: AppState, source: Panel, branch: Branch, params: Mapping[str, Any]) -> AppState:
    """A read-only panel beside ``source`` for a forced token; its trace arrives with the run."""
    if len(state.panels) >= MAX_PANELS:
        return set_app_errors(state, {"force": f"at most {MAX_PANELS} panels: remove one first"})
    panel = Panel(id=_free_id(state), kind="branch", strategy=source.strategy, params=params,
                  constraints=source.constraints, branch=branch)
    at = next(i for i, p in enumerate(state.panels) if p.id == source.id) + 1
    at += sum(1 for p in state.panels[at:] if p.branch is not None and p.branch.source == source.id)
    panels = (*state.panels[:at], panel, *state.panels[at:])
    return replace(state, panels=panels, next_id=panel.id + 1)


def add_loaded(state: AppState, trace: Trace, name: str) -> AppState:
    """A read-only panel showing a loaded trace."""
    if len(state.panels) >= MAX_PANELS:
        return set_app_errors(state, {"load": f"at most {MAX_PANELS} panels: remove one first"})
    panel = Panel(id=_free_id(state), kind="loaded", strategy=trace.strategy, params=dict(trace.params),
                  trace=trace, name=name)
    errors = {k: v for k, v in state.errors.items() if k != "load"}
    return replace(state, panels=(*state.panels, panel), next_id=panel.id + 1, errors=errors)
