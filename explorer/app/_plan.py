"""Before a run: check the prompt, every panel's knobs and constraints, and turn the panels into jobs."""

from __future__ import annotations

from dataclasses import replace

from explorer.api import parse_constraints, tokenize_prompt
from explorer.app._constraints import constraint_specs
from explorer.app._params import GLOBAL_CONTROLS, check_params, takes_constraints
from explorer.app._run import Job
from explorer.app.state import AppState, Panel
from explorer.errors import ExplorerError, ParameterError
from explorer.models.base import CausalLM

__all__ = ["plan_run"]


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
    errors = check_params(panel.strategy, panel.params, state.max_new_tokens)
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
    shown inline, the failing panels without a trace, and the status line saying ``error: <first message>``."""
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
        panels.append(replace(panel, errors=errors, trace=None) if errors else replace(panel, errors={}))
        if job is not None:
            jobs.append(job)
    messages = list(app_errors.values()) + [m for p in panels for m in p.errors.values()]
    kept = {k: v for k, v in state.errors.items() if k not in GLOBAL_CONTROLS}
    new = replace(state, panels=tuple(panels), errors={**kept, **app_errors})
    if messages:
        return replace(new, status=f"error: {messages[0]}"), []
    if not jobs:
        return replace(new, status="error: no strategy panel to run: add one"), []
    return new, jobs
