"""Frames: the tidy candidates table and the tree's nodes and edges, checked against direct counts over traces."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

import explorer
from explorer.frames import CANDIDATE_COLUMNS, EDGE_COLUMNS, NODE_COLUMNS, candidates_frame, tree_frames
from explorer.models.base import CausalLM
from explorer.strategies import get
from explorer.trace import Candidate, Finished, Hypothesis, Result, Step, Trace

PROMPT = [5, 6, 7, 8]

RUNS: dict[str, dict[str, Any]] = {
    "greedy": {"strategy": "greedy", "max_new_tokens": 8},
    "sample": {"strategy": "sample", "seed": 3, "top_k": 3, "num_return_sequences": 3, "max_new_tokens": 6},
    "beam": {"strategy": "beam", "num_beams": 4, "max_new_tokens": 12},
    "beam-early": {"strategy": "beam", "num_beams": 3, "max_new_tokens": 30, "early_stopping": True},
    "beam-sample": {"strategy": "beam-sample", "num_beams": 3, "seed": 1, "max_new_tokens": 8},
    "diverse": {"strategy": "diverse", "num_beams": 6, "num_beam_groups": 3, "max_new_tokens": 8,
                "num_return_sequences": 3},
    "constrained": {"strategy": "constrained", "constraints": [[400, 401]], "max_new_tokens": 8},
    "constrained-any": {"strategy": "constrained", "constraints": [[[500, 501], [9]]], "max_new_tokens": 8,
                        "num_return_sequences": 2},
    "processors": {"strategy": "beam", "max_new_tokens": 6, "min_new_tokens": 3, "no_repeat_ngram_size": 3,
                   "repetition_penalty": 1.3, "top_k": 0, "record_top_k": 20},
    "unrecorded": {"strategy": "beam", "max_new_tokens": 5, "record_top_k": 0},
    "whole-vocab": {"strategy": "greedy", "max_new_tokens": 2, "repetition_penalty": 1.3, "record_top_k": 1000},
}


def _stopper(after: int) -> Any:
    """A should_stop callback that stops after ``after`` steps."""
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= after

    return should_stop


@pytest.fixture(scope="module")
def traces(tiny: CausalLM) -> dict[str, Trace]:
    """Real traces of the runs above, plus runs stopped from outside (their last hypotheses never expand)."""
    out = {name: explorer.decode(tiny, PROMPT, **kw) for name, kw in RUNS.items()}
    out["greedy-stopped"] = explorer.decode(tiny, PROMPT, "greedy", max_new_tokens=9, should_stop=_stopper(3))
    out["sample-stopped"] = explorer.decode(tiny, PROMPT, "sample", seed=5, num_return_sequences=2,
                                            max_new_tokens=9, should_stop=_stopper(3))
    return out


ALL = [*RUNS, "greedy-stopped", "sample-stopped"]


def _candidates(trace: Trace) -> list[tuple[int, Hypothesis, Candidate]]:
    """Every recorded candidate with its step and hypothesis."""
    return [(s.index, h, c) for s in trace.steps for h in s.hypotheses for c in h.candidates]


def _empty_trace() -> Trace:
    return Trace("m", "beam", None, (1,), {}, (), (), (2,), (), (), "stopped", 0.0)


# --- candidates -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_one_row_per_recorded_candidate(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    df = candidates_frame(trace)
    expected = _candidates(trace)
    assert len(df) == len(expected)
    assert list(df["token_id"]) == [c.token_id for _, _, c in expected]
    assert list(df["hyp_id"]) == [h.id for _, h, _ in expected]
    assert list(df["step"]) == [s for s, _, _ in expected]
    assert list(df["fate"]) == [c.fate for _, _, c in expected]
    assert df["child"].tolist() == [pd.NA if c.child is None else c.child for _, _, c in expected]


@pytest.mark.parametrize("name", ALL)
def test_documented_columns_and_dtypes(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    df = candidates_frame(trace)
    constrained = get(trace.strategy).constraints
    base = [c for c, _ in CANDIDATE_COLUMNS]
    extra = ["bank", "constraints_completed"] if constrained else []
    adj = [f"adj_{p}" for p in trace.processors]
    assert list(df.columns) == base[:8] + extra + base[8:] + adj
    for column, dtype in CANDIDATE_COLUMNS:
        assert str(df[column].dtype) == dtype, column
    assert all(df[a].dtype == np.float64 for a in adj)
    if constrained:
        assert str(df["bank"].dtype) == "Int64"
        assert str(df["constraints_completed"].dtype) == "boolean"


def test_brief_columns_are_all_there(traces: dict[str, Trace]) -> None:
    wanted = {"step", "hyp_id", "parent_id", "slot", "group", "hyp_score", "hyp_length", "token_id", "text",
              "logprob", "prob", "score", "total", "rank", "fate", "reason", "child", "forced", "bank",
              "constraints_completed"}
    assert wanted <= set(candidates_frame(traces["constrained"]).columns)


@pytest.mark.parametrize("name", ALL)
def test_adjustments_sum_to_the_score(traces: dict[str, Trace], name: str) -> None:
    df = candidates_frame(traces[name])
    adj = [c for c in df.columns if c.startswith("adj_")]
    finite = np.isfinite(df["score"])
    rebuilt = df.loc[finite, "logprob"] + df.loc[finite, adj].sum(axis=1)
    assert np.allclose(rebuilt, df.loc[finite, "score"], rtol=0, atol=1e-5)
    masked = df[df["fate"] == "masked"]
    assert (masked["score"] == -math.inf).all()
    if adj and len(masked):
        assert (np.isinf(masked[adj]).any(axis=1) | np.isinf(masked["logprob"])).all()


def test_masked_and_processor_columns(traces: dict[str, Trace]) -> None:
    df = candidates_frame(traces["sample"])
    assert (df["fate"] == "masked").any()
    assert (df.loc[df["fate"] == "masked", "adj_top_k"] == -math.inf).all()
    proc = candidates_frame(traces["processors"])
    assert {"adj_repetition_penalty", "adj_no_repeat_ngram", "adj_min_new_tokens"} <= set(proc.columns)
    whole = candidates_frame(traces["whole-vocab"])
    assert len(whole) == 2000
    penalised = whole[whole["adj_repetition_penalty"] < 0]  # greedy renormalises: the others gain a little
    assert set(penalised.loc[penalised["step"] == 0, "token_id"]) == set(PROMPT)


def test_probabilities_and_hypothesis_columns(traces: dict[str, Trace]) -> None:
    trace = traces["beam"]
    df = candidates_frame(trace)
    assert np.allclose(df["prob"], np.exp(df["logprob"]))
    for _, row in df.drop_duplicates("hyp_id").iterrows():
        hyp = trace.hypothesis(int(row["hyp_id"]))
        assert (row["hyp_score"], row["hyp_length"], row["slot"]) == (hyp.score, len(hyp.token_ids), hyp.slot)
        assert (pd.isna(row["parent_id"]) and hyp.parent is None) or row["parent_id"] == hyp.parent


def test_constraint_columns(traces: dict[str, Trace]) -> None:
    trace = traces["constrained"]
    df = candidates_frame(trace)
    for (_, hyp, _), bank, done, forced in zip(_candidates(trace), df["bank"], df["constraints_completed"],
                                               df["forced"], strict=True):
        assert hyp.constraint is not None
        assert (bank, done, forced) == (hyp.constraint.bank, hyp.constraint.completed, hyp.forced)
    assert df["forced"].any()
    assert "bank" not in candidates_frame(traces["beam"]).columns


def test_empty_trace_has_the_columns() -> None:
    df = candidates_frame(_empty_trace())
    assert df.empty
    assert [c for c, _ in CANDIDATE_COLUMNS] == list(df.columns)
    assert str(df["token_id"].dtype) == "int64"
    assert str(df["child"].dtype) == "Int64"
    nodes, edges = tree_frames(_empty_trace())
    assert nodes.empty
    assert edges.empty
    assert list(nodes.columns) == [c for c, _ in NODE_COLUMNS]
    assert list(edges.columns) == [c for c, _ in EDGE_COLUMNS]


def test_trace_methods_delegate(traces: dict[str, Trace]) -> None:
    trace = traces["greedy"]
    pd.testing.assert_frame_equal(trace.to_frame(), candidates_frame(trace))
    pd.testing.assert_frame_equal(trace.tree_frames()[0], tree_frames(trace)[0])


# --- tree -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_tree_shape(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    nodes, edges = tree_frames(trace)
    assert nodes["node"].is_unique
    assert [str(nodes[c].dtype) for c, _ in NODE_COLUMNS] == [d for _, d in NODE_COLUMNS]
    assert [str(edges[c].dtype) for c, _ in EDGE_COLUMNS] == [d for _, d in EDGE_COLUMNS]
    assert edges["parent"].isin(nodes["node"]).all()
    assert edges["child"].isin(nodes["node"]).all()
    assert edges["child"].is_unique  # a tree: one way into every node
    roots = nodes[nodes["parent"].isna()]
    assert set(roots["kind"]) == {"hypothesis"}
    assert (roots["depth"] == 0).all()
    assert len(edges) == len(nodes) - len(roots) == len(_candidates(trace))
    by_key = nodes.set_index("node")
    assert (by_key.loc[edges["child"], "parent"].to_numpy() == edges["parent"].to_numpy()).all()
    assert (by_key.loc[edges["child"], "depth"].to_numpy() == by_key.loc[edges["parent"], "depth"].to_numpy() + 1).all()


@pytest.mark.parametrize("name", ALL)
def test_tree_nodes_match_the_trace(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    nodes, _ = tree_frames(trace)
    hyps = [h for s in trace.steps for h in s.hypotheses]
    fins = [f for s in trace.steps for f in s.finished]
    expanded = nodes[nodes["expanded"]]
    assert list(expanded["node"]) == [f"h{h.id}" for h in hyps]
    assert list(expanded["score"]) == [h.score for h in hyps]
    finished = nodes[nodes["kind"] == "finished"]
    assert list(finished["node"]) == [f"f{f.id}" for f in fins]
    assert list(finished["normalized_score"]) == [f.normalized_score for f in fins]
    assert finished["reason"].tolist() == [f.reason for f in fins]
    assert finished["accepted"].tolist() == [f.accepted for f in fins]
    losers = [(s, h, c) for s, h, c in _candidates(trace) if c.fate in ("pruned", "masked")]
    leaves = nodes[nodes["kind"].isin(["pruned", "masked"])]
    assert list(leaves["node"]) == [f"c{s}.{h.id}.{c.token_id}" for s, h, c in losers]
    assert leaves["id"].isna().all()
    for hyp in hyps:
        row = nodes[nodes["node"] == f"h{hyp.id}"].iloc[0]
        if hyp.parent is None:
            assert pd.isna(row["token_id"])
        else:
            assert row["token_id"] == hyp.token_ids[-1]
            assert row["parent"] == f"h{hyp.parent}"


def test_unexpanded_hypotheses(traces: dict[str, Trace]) -> None:
    trace = traces["diverse"]
    nodes, _ = tree_frames(trace)
    opened = nodes[(nodes["kind"] == "hypothesis") & ~nodes["expanded"]]
    last = trace.steps[-1]
    kept = [c for h in last.hypotheses for c in h.candidates if c.fate == "kept"]
    assert sorted(opened["id"]) == sorted(c.child for c in kept if c.child is not None)
    assert (opened["step"] == last.index + 1).all()


def test_leaves_can_be_left_out(traces: dict[str, Trace]) -> None:
    trace = traces["beam"]
    nodes, edges = tree_frames(trace, leaves=False)
    assert set(nodes["kind"]) == {"hypothesis", "finished"}
    assert edges["child"].isin(nodes["node"]).all()
    assert len(edges) == len(nodes) - 1


def _walk_sources(trace: Trace, nodes: pd.DataFrame) -> set[str]:
    """Result paths via the trace's own links: source entry, the hypothesis that ended, its parents."""
    fins = {f.id: f for s in trace.steps for f in s.finished}
    marked: set[str] = set()
    for result in trace.results:
        assert result.source is not None
        if result.source in fins:
            marked.add(f"f{result.source}")
            hyp_id: int | None = fins[result.source].hypothesis
        else:  # a row stopped from outside: its last hypothesis was never expanded
            row = nodes[nodes["node"] == f"h{result.source}"].iloc[0]
            marked.add(str(row["node"]))
            hyp_id = int(row["parent_id"])
        while hyp_id is not None:
            marked.add(f"h{hyp_id}")
            hyp_id = trace.hypothesis(hyp_id).parent
    return marked


def _prefix_paths(trace: Trace, nodes: pd.DataFrame) -> set[str]:
    """Result paths by tokens: the result's group's hypotheses whose tokens start the result, plus its entry."""
    tokens = {f"h{h.id}": (h.token_ids, h.group) for s in trace.steps for h in s.hypotheses}
    for _, hyp, cand in _candidates(trace):
        if cand.fate == "kept" and f"h{cand.child}" not in tokens:
            tokens[f"h{cand.child}"] = ((*hyp.token_ids, cand.token_id), hyp.group)
    fins = {f.id for s in trace.steps for f in s.finished}
    marked = {f"f{r.source}" for r in trace.results if r.source in fins}
    for result in trace.results:
        marked |= {key for key, (toks, group) in tokens.items()
                   if group == result.group and result.token_ids[: len(toks)] == toks}
    return marked & set(nodes["node"])


@pytest.mark.parametrize("name", ALL)
def test_in_result_marks_exactly_the_result_paths(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    nodes, _ = tree_frames(trace)
    beam_family = get(trace.strategy).family == "beam"
    expected = _prefix_paths(trace, nodes) if beam_family else _walk_sources(trace, nodes)
    assert set(nodes.loc[nodes["in_result"], "node"]) == expected
    assert bool(trace.results) == bool(expected)
    best = nodes[nodes["result_rank"] == 0]
    assert len(best) == len(trace.results[0].token_ids) + 1  # the root, then one node per token
    assert sorted(best["depth"]) == list(range(len(best)))


@pytest.mark.parametrize("name", ["diverse", "constrained", "constrained-any"])
def test_results_of_complete_runs_end_at_recorded_finished_entries(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    nodes, _ = tree_frames(trace)
    for result in trace.results:
        path = nodes[nodes["result_rank"] == result.rank]
        end = path[path["depth"] == path["depth"].max()].iloc[0]
        assert (end["kind"], end["node"]) == ("finished", f"f{result.source}")


@pytest.mark.parametrize("name", ["greedy-stopped"])
def test_results_from_unrecorded_entries_end_at_unexpanded_hypotheses(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    nodes, _ = tree_frames(trace)
    recorded = {f.id for s in trace.steps for f in s.finished}
    for result in trace.results:
        assert result.source not in recorded
        path = nodes[nodes["result_rank"] == result.rank]
        end = path[path["depth"] == path["depth"].max()].iloc[0]
        assert (end["kind"], bool(end["expanded"]), end["depth"]) == ("hypothesis", False, len(result.token_ids))


# --- speed ----------------------------------------------------------------------------------------------------


def _big_trace(beams: int = 16, steps: int = 100, per: int = 10) -> Trace:
    """A synthetic trace shaped like a 16-beam, 100-step beam search (each beam keeps one child)."""
    out, next_id, live = [], beams, list(range(beams))
    for index in range(steps):
        hyps = []
        for slot, hyp_id in enumerate(live):
            cands = tuple(Candidate(t, f"t{t}", -1.0 - t, -1.0 - t, -2.0 - t, t, (("p", 0.0),),
                                    "kept" if t == 0 else "pruned", "r", next_id + slot if t == 0 else None)
                          for t in range(per))
            hyps.append(Hypothesis(hyp_id, None if index == 0 else hyp_id - beams, slot, 0, (0,) * index, -1.0,
                                   cands))
        out.append(Step(index, tuple(hyps)))
        live, next_id = list(range(next_id, next_id + beams)), next_id + beams
    fin = Finished(next_id, live[0] - beams, steps - 1, 0, (0,) * steps, -1.0, -1.0, steps, "max_length", True)
    out[-1] = Step(steps - 1, out[-1].hypotheses, (fin,))
    result = Result(0, fin.token_ids, "", -1.0, steps - 1, False, source=fin.id)
    return Trace("m", "beam", None, (1,), {}, (), ("p",), (2,), tuple(out), (result,), "max_new_tokens", 1.0)


def test_frames_of_a_16x100_trace_have_a_row_per_candidate() -> None:
    """Their speed is measured in benchmarks/bench_scaling.py (traces and figures)."""
    trace = _big_trace()
    df = candidates_frame(trace)
    _, edges = tree_frames(trace)
    assert len(df) == 16_000
    assert len(edges) == 16_000


def test_a_circular_loaded_trace_does_not_hang() -> None:
    cand = Candidate(3, "x", -1.0, -1.0, -1.0, 0, (), "kept", "r", 0)
    hyps = (Hypothesis(0, 1, 0, 0, (), 0.0, (cand,)), Hypothesis(1, 0, 1, 0, (), 0.0, (cand,)))
    result = Result(0, (3,), "x", -1.0, 0, False, source=0)
    trace = Trace("m", "beam", None, (1,), {}, (), (), (2,), (Step(0, hyps),), (result,), "stopped", 0.0)
    nodes, _ = tree_frames(trace)
    assert set(nodes.loc[nodes["in_result"], "node"]) == {"h0", "h1"}


@pytest.mark.parametrize("name", ["greedy", "beam", "diverse", "processors", "unrecorded"])
def test_path_logprob_is_the_models_sum_along_the_path(traces: dict[str, Trace], name: str) -> None:
    """``path_logprob`` of a node is the model's summed log-prob of its tokens (before any processor), so that it
    compares across strategies; it is NaN where a token's candidate was not recorded."""
    trace = traces[name]
    nodes, _ = tree_frames(trace)
    by_key = nodes.set_index("node")
    made = {c.child: c for s in trace.steps for h in s.hypotheses for c in h.candidates
            if c.child is not None and c.fate == "kept"}
    for step in trace.steps:
        for hyp in step.hypotheses:
            total, node, seen = 0.0, hyp, 0
            while node.parent is not None and seen < 1000:
                cand = made.get(node.id)
                total = math.nan if cand is None else total + cand.logprob
                node, seen = trace.hypothesis(node.parent), seen + 1
            got = by_key.loc[f"h{hyp.id}", "path_logprob"]
            assert (math.isnan(got) and math.isnan(total)) or got == pytest.approx(total, abs=1e-9)
