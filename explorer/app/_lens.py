"""The logit lens in the app, computed on demand with the loaded model: at a clicked node, and along a result."""

from __future__ import annotations

import time

from explorer.app._nodes import NodeInfo
from explorer.app._run import one_line
from explorer.app.state import NodeLens, Panel, ResultLens, Selection
from explorer.errors import ExplorerError
from explorer.lens import lens_grid, logit_lens
from explorer.models.base import CausalLM
from explorer.trace import Trace

__all__ = ["TOP", "node_lens", "result_lens"]

#: Tokens shown per layer at a node.
TOP = 5


def _refusal(model: CausalLM | None, trace: Trace) -> str:
    """Why the loaded model cannot read this trace's layers ("" when it can)."""
    if model is None:
        return "no model is loaded: the logit lens needs one"
    if trace.model != model.info.name:
        return f"the logit lens reads the model that made the run: load {trace.model} first"
    if model.info.num_layers == 0:
        return f"no logit lens: {model.info.name} has no layers to read (a next-token table)"
    return ""


def _next_token(info: NodeInfo) -> int | None:
    """The token the run took next from a hypothesis node (its best kept candidate), else ``None``."""
    if info.kind != "hypothesis" or info.hypothesis is None:
        return None
    taken = [c for c in info.hypothesis.candidates if c.fate in ("kept", "finished")]
    return max(taken, key=lambda c: c.score).token_id if taken else None


def node_lens(model: CausalLM | None, panel: Panel, selection: Selection, info: NodeInfo) -> NodeLens:
    """The logit lens at the end of the prompt and the node's tokens (one forward), asked about the token the run
    took next from there; a one-line note instead when the model cannot give it."""
    assert panel.trace is not None
    note = _refusal(model, panel.trace)
    if note or model is None:
        return NodeLens(selection, None, note)
    token = _next_token(info)
    began = time.perf_counter()
    try:
        lens = logit_lens(model, [*panel.trace.prompt_token_ids, *info.token_ids], top=TOP, token=token)
    except ExplorerError as error:
        return NodeLens(selection, None, one_line(error))
    ms = (time.perf_counter() - began) * 1000.0
    text = model.tokenizer.token_text(token) if token is not None else ""
    return NodeLens(selection, lens, "", text, ms)


def result_lens(model: CausalLM | None, panel: Panel) -> ResultLens:
    """The logit lens along the panel's best result (one forward of prompt and result); a note when there is none."""
    trace = panel.trace
    assert trace is not None
    note = _refusal(model, trace)
    best = min(trace.results, key=lambda r: r.rank, default=None)
    if not note and (best is None or not best.token_ids):
        note = "no logit lens along the result: it has no generated token"
    if note or model is None or best is None:
        return ResultLens(panel.id, trace, None, note)
    began = time.perf_counter()
    try:
        grid = lens_grid(model, [*trace.prompt_token_ids, *best.token_ids], len(trace.prompt_token_ids))
    except ExplorerError as error:
        return ResultLens(panel.id, trace, None, one_line(error))
    return ResultLens(panel.id, trace, grid, "", (time.perf_counter() - began) * 1000.0)
