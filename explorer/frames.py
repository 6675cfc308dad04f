"""Traces as pandas tables: a tidy candidates frame, and the search tree as node and edge frames."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from explorer._util import gc_paused
from explorer.fork import prefix_of
from explorer.trace import Candidate, Finished, Hypothesis, Result, Trace

__all__ = ["CANDIDATE_COLUMNS", "EDGE_COLUMNS", "NODE_COLUMNS", "candidates_frame", "tree_frames"]

Spec = tuple[tuple[str, str], ...]

#: Columns of :func:`candidates_frame` and their dtypes, in order; ``bank`` and ``constraints_completed`` follow
#: ``forced`` for constrained traces, and one float column ``adj_<processor>`` per processor comes last.
CANDIDATE_COLUMNS: Spec = (
    ("step", "int64"), ("hyp_id", "int64"), ("parent_id", "Int64"), ("slot", "int64"), ("group", "int64"),
    ("hyp_score", "float64"), ("hyp_length", "int64"), ("forced", "bool"), ("position", "int64"),
    ("token_id", "int64"), ("text", "string"), ("logprob", "float64"), ("prob", "float64"), ("score", "float64"),
    ("total", "float64"), ("rank", "int64"), ("raw_rank", "Int64"), ("fate", "string"), ("reason", "string"),
    ("child", "Int64"),
)
_CONSTRAINT_COLUMNS: Spec = (("bank", "Int64"), ("constraints_completed", "boolean"))

#: Columns of the nodes frame of :func:`tree_frames` and their dtypes, in order.
NODE_COLUMNS: Spec = (
    ("node", "string"), ("id", "Int64"), ("kind", "string"), ("step", "int64"), ("depth", "int64"),
    ("slot", "Int64"), ("group", "int64"), ("parent", "string"), ("parent_id", "Int64"), ("token_id", "Int64"),
    ("text", "string"), ("score", "float64"), ("logprob", "float64"), ("fate", "string"), ("why", "string"),
    ("normalized_score", "float64"), ("accepted", "boolean"), ("reason", "string"), ("note", "string"),
    ("expanded", "bool"), ("in_result", "bool"), ("result_rank", "Int64"), ("path_logprob", "float64"),
)

#: Columns of the edges frame of :func:`tree_frames` and their dtypes, in order.
EDGE_COLUMNS: Spec = (
    ("parent", "string"), ("child", "string"), ("parent_id", "Int64"), ("child_id", "Int64"), ("step", "int64"),
    ("token_id", "int64"), ("text", "string"), ("fate", "string"), ("logprob", "float64"), ("score", "float64"),
    ("total", "float64"),
)

_EXTENSION = frozenset({"Int64", "boolean", "string"})


def _frame(rows: Sequence[Sequence[Any]], spec: Spec) -> pd.DataFrame:
    """A DataFrame from row tuples, column by column with fixed dtypes (also when there are no rows)."""
    columns: Iterable[Sequence[Any]] = zip(*rows, strict=True) if rows else ([] for _ in spec)
    data = {
        name: pd.array(values, dtype=dtype) if dtype in _EXTENSION else np.asarray(values, dtype=dtype)
        for (name, dtype), values in zip(spec, columns, strict=True)
    }
    return pd.DataFrame(data, columns=[name for name, _ in spec])


# --- candidates -----------------------------------------------------------------------------------------------


def _adjustment_names(trace: Trace) -> list[str]:
    """Processor names in run order, then any other name a candidate's adjustments use."""
    names = dict.fromkeys(trace.processors)
    for step in trace.steps:
        for hyp in step.hypotheses:
            for cand in hyp.candidates:
                names.update(dict.fromkeys(name for name, _ in cand.adjustments))
    return list(names)


def _adjustments(cand: Candidate, names: list[str]) -> tuple[float, ...]:
    """The change each named processor made (0.0 when it made none; summed if a name repeats)."""
    made: dict[str, float] = {}
    for name, value in cand.adjustments:
        made[name] = made.get(name, 0.0) + value
    return tuple(made.get(name, 0.0) for name in names)


def _hyp_part(step: int, hyp: Hypothesis, constrained: bool) -> tuple[Any, ...]:
    """The columns a hypothesis gives each of its candidates' rows."""
    part: tuple[Any, ...] = (step, hyp.id, hyp.parent, hyp.slot, hyp.group, hyp.score, len(hyp.token_ids),
                             hyp.forced)
    if constrained:
        progress = hyp.constraint
        part += (None, None) if progress is None else (progress.bank, progress.completed)
    return part


def candidates_frame(trace: Trace) -> pd.DataFrame:
    """One row per (step, hypothesis, recorded candidate), with the processors' adjustments as columns.

    Columns are :data:`CANDIDATE_COLUMNS` (``prob`` is ``exp(logprob)``; ``position`` the candidate's place in the
    hypothesis's recorded list; ``raw_rank`` its place by raw log-prob, missing in traces older than format 1.5),
    plus ``bank`` and ``constraints_completed`` for constrained traces, plus one
    ``adj_<processor>`` column per processor: ``logprob + sum(adj_*) == score`` up to float rounding.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=2)
    >>> df = candidates_frame(t)
    >>> len(df) == sum(len(h.candidates) for s in t.steps for h in s.hypotheses), df.loc[0, "fate"]
    (True, 'kept')
    """
    constrained = bool(trace.constraints) or any(h.constraint for s in trace.steps for h in s.hypotheses)
    names = _adjustment_names(trace)
    rows: list[tuple[Any, ...]] = []
    with gc_paused():
        for step in trace.steps:
            for hyp in step.hypotheses:
                part = _hyp_part(step.index, hyp, constrained)
                for pos, c in enumerate(hyp.candidates):
                    rows.append((*part, pos, c.token_id, c.text, c.logprob, math.exp(c.logprob), c.score, c.total,
                                 c.rank, c.raw_rank, c.fate, c.reason, c.child, *_adjustments(c, names)))
    spec = CANDIDATE_COLUMNS[:8] + (_CONSTRAINT_COLUMNS if constrained else ()) + CANDIDATE_COLUMNS[8:]
    return _frame(rows, spec + tuple((f"adj_{name}", "float64") for name in names))


# --- tree -----------------------------------------------------------------------------------------------------

_NAN = math.nan


@dataclass
class _Tree:
    """Nodes and edges under construction, keyed by node key; ``tokens`` and ``up`` serve the result paths."""

    nodes: dict[str, list[Any]] = field(default_factory=dict)
    edges: list[tuple[Any, ...]] = field(default_factory=list)
    up: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, tuple[int, ...]] = field(default_factory=dict)
    creator: dict[int, Candidate] = field(default_factory=dict)
    #: A root's path log-prob and the token that made it: 0 and none, but a grafted branch's fixed tokens' log-prob
    #: (NaN when unknown) and its forced token.
    root_logprob: float = 0.0
    root_token: Candidate | None = None


_COL = {name: i for i, (name, _) in enumerate(NODE_COLUMNS)}


def _node(key: str, ident: int | None, kind: str, step: int, depth: int, slot: int | None, group: int,
          parent: str | None, parent_id: int | None) -> list[Any]:
    """A node row with its identity filled in and the rest empty."""
    return [key, ident, kind, step, depth, slot, group, parent, parent_id, None, None, _NAN, _NAN, None, None,
            _NAN, None, None, None, False, False, None, _NAN]


def _set_token(row: list[Any], cand: Candidate | None, tree: _Tree, parent: str | None) -> None:
    """Fill the columns a node takes from the candidate that created it, and its path's log-prob (the parent's
    plus the token's; 0 at a root)."""
    if parent is None:
        root = row[_COL["kind"]] == "hypothesis"
        row[_COL["path_logprob"]] = tree.root_logprob if root else _NAN
        cand = tree.root_token if root and cand is None else cand
    elif cand is not None and parent in tree.nodes:
        row[_COL["path_logprob"]] = tree.nodes[parent][_COL["path_logprob"]] + cand.logprob
    if cand is not None:
        row[_COL["token_id"]], row[_COL["text"]], row[_COL["logprob"]] = cand.token_id, cand.text, cand.logprob
        row[_COL["fate"]], row[_COL["why"]] = cand.fate, cand.reason


def _add_hypothesis(tree: _Tree, step: int, hyp: Hypothesis) -> None:
    """A recorded (expanded) hypothesis."""
    key, parent = f"h{hyp.id}", None if hyp.parent is None else f"h{hyp.parent}"
    row = _node(key, hyp.id, "hypothesis", step, len(hyp.token_ids), hyp.slot, hyp.group, parent, hyp.parent)
    row[_COL["score"]], row[_COL["expanded"]] = hyp.score, True
    _set_token(row, tree.creator.get(hyp.id), tree, parent)
    tree.nodes[key], tree.tokens[key] = row, hyp.token_ids
    if parent is not None:
        tree.up[key] = parent


def _add_finished(tree: _Tree, fin: Finished, hyp_slot: dict[int, int]) -> None:
    """A finished entry, child of the hypothesis that ended."""
    key = f"f{fin.id}"
    known = f"h{fin.hypothesis}" in tree.nodes
    parent = f"h{fin.hypothesis}" if known else None
    row = _node(key, fin.id, "finished", fin.step, len(fin.token_ids), hyp_slot.get(fin.hypothesis), fin.group,
                parent, fin.hypothesis if known else None)
    row[_COL["score"]], row[_COL["normalized_score"]] = fin.score, fin.normalized_score
    row[_COL["accepted"]], row[_COL["reason"]], row[_COL["note"]] = fin.accepted, fin.reason, fin.note
    _set_token(row, tree.creator.get(fin.id), tree, parent)
    tree.nodes[key], tree.tokens[key] = row, fin.token_ids
    if parent is not None:
        tree.up[key] = parent


def _add_leaf(tree: _Tree, step: int, hyp: Hypothesis, cand: Candidate, key: str) -> None:
    """A candidate that made no recorded node: a pruned or masked leaf, or a hypothesis never expanded."""
    opened = cand.fate == "kept" and cand.child is not None
    row = _node(key, cand.child if opened else None, "hypothesis" if opened else cand.fate,
                step + 1 if opened else step, len(hyp.token_ids) + 1, None if opened else hyp.slot, hyp.group,
                f"h{hyp.id}", hyp.id)
    row[_COL["score"]] = cand.total
    _set_token(row, cand, tree, f"h{hyp.id}")
    tree.nodes[key], tree.up[key] = row, f"h{hyp.id}"
    if opened:
        tree.tokens[key] = (*hyp.token_ids, cand.token_id)


def _child_key(tree: _Tree, step: int, hyp: Hypothesis, cand: Candidate, leaves: bool) -> str | None:
    """The node key a candidate leads to, adding a leaf node when it has no recorded one (None: left out)."""
    if cand.child is not None and cand.fate == "kept":
        key = f"h{cand.child}"
        if key not in tree.nodes:
            _add_leaf(tree, step, hyp, cand, key)  # a hypothesis the search stopped before expanding
        return key
    if cand.child is not None and cand.fate == "finished" and f"f{cand.child}" in tree.nodes:
        return f"f{cand.child}"
    if not leaves:
        return None
    key = f"c{step}.{hyp.id}.{cand.token_id}"
    _add_leaf(tree, step, hyp, cand, key)
    return key


def _build(trace: Trace, leaves: bool) -> _Tree:
    """Every node and edge: the recorded hypotheses and finished entries first, then what the candidates add."""
    tree = _Tree()
    prefix = prefix_of(trace)
    if prefix is not None:
        tree.root_logprob = _NAN if prefix.logprob is None else prefix.logprob
        tree.root_token = None if prefix.forced is None else replace(prefix.forced, fate="kept", reason="forced")
    tree.creator = {c.child: c for s in trace.steps for h in s.hypotheses for c in h.candidates
                    if c.child is not None and c.fate in ("kept", "finished")}
    slots = {h.id: h.slot for s in trace.steps for h in s.hypotheses}
    for step in trace.steps:
        for hyp in step.hypotheses:
            _add_hypothesis(tree, step.index, hyp)
        for fin in step.finished:
            _add_finished(tree, fin, slots)
    for step in trace.steps:
        for hyp in step.hypotheses:
            for c in hyp.candidates:
                key = _child_key(tree, step.index, hyp, c, leaves)
                if key is not None:
                    tree.edges.append((f"h{hyp.id}", key, hyp.id, tree.nodes[key][_COL["id"]], step.index,
                                       c.token_id, c.text, c.fate, c.logprob, c.score, c.total))
    return tree


def _result_start(tree: _Tree, result: Result) -> str | None:
    """The node a result came from: its source entry or hypothesis, else the hypothesis with its tokens."""
    for key in (f"f{result.source}", f"h{result.source}"):
        if result.source is not None and key in tree.nodes:
            return key
    for key, tokens in tree.tokens.items():
        if tokens == result.token_ids and key[0] == "h" and tree.nodes[key][_COL["group"]] == result.group:
            return key
    return None


def _mark_results(tree: _Tree, trace: Trace) -> None:
    """Set ``in_result`` and ``result_rank`` along the path of every result, from its node back to the root."""
    for result in trace.results:
        key, seen = _result_start(tree, result), set()
        while key is not None and key not in seen:  # a loaded trace could link in a circle
            seen.add(key)
            row = tree.nodes[key]
            row[_COL["in_result"]] = True
            best = row[_COL["result_rank"]]
            row[_COL["result_rank"]] = result.rank if best is None else min(best, result.rank)
            key = tree.up.get(key)


def tree_frames(trace: Trace, *, leaves: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The search tree as ``(nodes, edges)`` DataFrames (columns :data:`NODE_COLUMNS`, :data:`EDGE_COLUMNS`).

    Every node has a unique string key ``node``: ``"h<id>"`` for a hypothesis, ``"f<id>"`` for a finished entry,
    ``"c<step>.<hypothesis id>.<token id>"`` for a candidate leaf (a pruned or masked candidate; ``leaves=False``
    leaves them out). ``id`` is the trace's own id (``<NA>`` for leaves); ``parent`` / ``parent_id`` point to the
    node it grew from, ``depth`` is its number of generated tokens. ``kind`` is ``hypothesis``, ``finished``, or
    the leaf's fate (``pruned``, ``masked``). Hypotheses the search created but stopped before expanding (the last
    kept candidates of a run cut short) are hypotheses with ``expanded`` False, ``step`` one past their parent's.
    Token columns (``token_id``, ``text``, ``logprob``, ``fate``, ``why``) come from the candidate that created the
    node; ``score`` is the node's summed token scores (what the search ranks live hypotheses by),
    ``normalized_score`` a finished entry's score as the pool ranks it (length-penalised in the beam family),
    ``path_logprob`` the summed log-prob the model gives the node's tokens (NaN when a token's candidate was not
    recorded). Edges link ``parent`` to ``child`` keys, one per recorded candidate, with its token, fate and scores.
    ``in_result`` marks every node on the path of a returned result (``result_rank`` the
    best such rank): from the result's ``source`` entry back to the root, or, when the source was never recorded
    (diverse and constrained runs that hit ``max_new_tokens``), from the unexpanded hypothesis with its tokens.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="beam", max_new_tokens=3)
    >>> nodes, edges = tree_frames(t)
    >>> nodes["node"].is_unique, bool(edges["child"].isin(nodes["node"]).all()), nodes.loc[0, "node"]
    (True, True, 'h0')
    """
    with gc_paused():
        tree = _build(trace, leaves)
        _mark_results(tree, trace)
    return _frame(list(tree.nodes.values()), NODE_COLUMNS), _frame(tree.edges, EDGE_COLUMNS)
