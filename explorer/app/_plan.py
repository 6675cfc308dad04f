"""Before a run: check the prompt, every panel's knobs and constraints, and turn the panels (or a fork) into jobs."""

from __future__ import annotations

from dataclasses import replace

from explorer.api import parse_constraints, tokenize_prompt
from explorer.app import state as st
from explorer.app._constraints import constraint_specs
from explorer.app._nodes import NodeInfo, describe
from explorer.app._params import GLOBAL_CONTROLS, check_params, model_errors, takes_constraints
from explorer.app._run import Job
from explorer.app.state import AppState, Branch, Panel, panel_by_id
from explorer.errors import ExplorerError, ParameterError
from explorer.fork import ForkPoint, branch_request
from explorer.models.base import CausalLM

__all__ = ["plan_branch", "plan_run"]


def _prompt_errors(state: AppState, model: CausalLM) -> dict[str, str]:
    """Inline errors of the prompt and the chat toggle."""
    try:
        tokenize_prompt(model, state.prompt, chat=state.chat)
    except ParameterError as error:
        return {error.name if error.name in GLOBAL_CONTROLS else "prompt": str(error)}
    except ExplorerError as error:  # e.g. a tokenizer without a chat template
        return {"chat" if state.chat else "prompt": str(error)}
    return {}


def _constraint_error(panel: Panel, model: CausalLM) -> tuple[list[object], str]:
    """The constraints of a ``constrained`` panel as ``decode`` takes them, or the error they give."""
    if not takes_constraints(panel.strategy):
        return [], ""
    try:
        specs = constraint_specs(panel.constraints)
        if not specs:
            raise ParameterError("constraints", [], f"at least one constraint for strategy {panel.strategy!r}")
        parse_constraints(model, specs)
    except ExplorerError as error:
        return [], str(error)
    return list(specs), ""


def _panel_job(state: AppState, panel: Panel, model: CausalLM) -> tuple[Job | None, dict[str, str]]:
    """A panel's job, or its errors (by control; ``max_new_tokens`` is a control above the panels)."""
    errors = check_params(panel.strategy, panel.params, state.max_new_tokens) or model_errors(
        panel.strategy, panel.params, state.max_new_tokens, model)
    specs, constraint_error = _constraint_error(panel, model)
    if constraint_error:
        errors["constraints"] = constraint_error
    if errors:
        return None, errors
    params = {**panel.params, "max_new_tokens": state.max_new_tokens}
    return Job(panel.id, state.prompt, panel.strategy, params, chat=state.chat, constraints=specs,
               label=panel.key), {}


def plan_run(state: AppState, model: CausalLM | None) -> tuple[AppState, list[Job]]:
    """The jobs of every editable panel, or (when anything is invalid) no job and the state with every error
    shown inline, every panel keeping its last trace, and the status line saying ``error: <first message>``."""
    if model is None:
        return replace(state, status="error: no model is loaded: choose one above"), []
    app_errors = _prompt_errors(state, model)
    jobs: list[Job] = []
    panels: list[Panel] = []
    for panel in state.panels:
        if not panel.editable:
            panels.append(panel)
            continue
        job, errors = _panel_job(state, panel, model)
        for name in GLOBAL_CONTROLS:
            if name in errors:
                app_errors[name] = errors.pop(name)
        # A refused run keeps every panel's last trace (marked stale when its settings changed since).
        panels.append(replace(panel, errors=errors))
        if job is not None:
            jobs.append(job)
    messages = list(app_errors.values()) + [m for p in panels for m in p.errors.values()]
    kept = {k: v for k, v in state.errors.items() if k not in GLOBAL_CONTROLS}
    new = replace(state, panels=tuple(panels), errors={**kept, **app_errors})
    if messages:
        return replace(new, status=f"error: {messages[0]}", progress=(0, 1)), []
    if not jobs:
        return replace(new, status="error: no strategy panel to run: add one", progress=(0, 1)), []
    running = {job.panel_id for job in jobs}
    ran = tuple(replace(p, ran=st.run_settings(state, p)) if p.id in running else p for p in new.panels)
    return replace(new, panels=ran), jobs


def _fork_point(state: AppState, model: CausalLM | None) -> tuple[Panel, str, NodeInfo]:
    """The selected panel, node and what it is, when a token can be forced there (else ``ExplorerError``)."""
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
    if model is None or panel.trace.model != model.info.name:
        raise ExplorerError(f"this trace was made with model {panel.trace.model!r}: load that model first")
    return panel, selection.node, info


def plan_branch(state: AppState, model: CausalLM | None, token_id: int | None) -> tuple[AppState, Job]:
    """Forcing ``token_id`` at the selected node: the state with a new branch panel beside its source, running,
    and the job that decodes it. What cannot be forced raises ``ExplorerError`` (shown under the force button)."""
    panel, node, info = _fork_point(state, model)
    if token_id is None:
        raise ExplorerError("pick a token to force first")
    assert panel.trace is not None
    assert info.hypothesis is not None
    cand = next((c for c in info.hypothesis.candidates if c.token_id == token_id), None)
    if cand is None:
        raise ExplorerError(f"token {token_id} is not a recorded candidate of node {node}")
    fork = ForkPoint(panel.trace, info.hypothesis, token_id, panel.key, node)
    try:
        prompt, params, constraints = branch_request(fork)
    except ValueError as error:
        raise ExplorerError(str(error)) from None
    branch = Branch(panel.id, node, info.step, token_id, cand.text, len(info.hypothesis.token_ids) + 1)
    # The panel lists the knobs of the whole path (its trace is grafted onto the source's prompt): the source's budget.
    whole = {**params, **{k: panel.trace.params[k] for k in ("max_new_tokens", "min_new_tokens")
                          if k in panel.trace.params}}
    new = st.add_branch(st.select(state, panel.id, node), panel, branch, whole)
    if len(new.panels) == len(state.panels):
        raise ExplorerError(new.errors.get("force", "no room for another panel"))
    job = Job(new.next_id - 1, prompt, panel.strategy, params, constraints=constraints, fork=fork)
    added = panel_by_id(new, job.panel_id)
    status = f"running {added.label if added is not None else 'the branch'}…"
    return st.start_run(new, (job.panel_id,), job.max_steps, status), job
