"""Figures: built from real traces of every strategy, checked on their data (nodes, edges, hover, customdata)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import explorer
from explorer.figures import (
    COLOR_TITLES,
    color_scale_html,
    constraint_progress,
    node_at,
    results_table_html,
    score_timelines,
    search_tree,
    search_trees,
    step_candidates,
    tokens_html,
    tree_layout,
    visible,
)
from explorer.figures._paths import result_path
from explorer.figures._scale import nice_ticks
from explorer.frames import tree_frames
from explorer.models.base import CausalLM
from explorer.models.table import TableModel
from explorer.scoring import length_penalty, path_scores
from explorer.trace import Candidate, Trace

PROMPT = [5, 6, 7, 8]

RUNS: dict[str, dict[str, Any]] = {
    "greedy": {"strategy": "greedy", "max_new_tokens": 8},
    "sample": {"strategy": "sample", "seed": 3, "top_k": 3, "num_return_sequences": 3, "max_new_tokens": 6},
    "beam": {"strategy": "beam", "num_beams": 4, "max_new_tokens": 10, "num_return_sequences": 2},
    "beam-sample": {"strategy": "beam-sample", "num_beams": 3, "seed": 1, "max_new_tokens": 8},
    "diverse": {"strategy": "diverse", "num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 1.0,
                "max_new_tokens": 8, "num_return_sequences": 3},
    "constrained": {"strategy": "constrained", "num_beams": 4, "constraints": [[400, 401], [[500, 501], [9]]],
                    "max_new_tokens": 8},
    "processors": {"strategy": "beam", "max_new_tokens": 6, "min_new_tokens": 3, "no_repeat_ngram_size": 2,
                   "repetition_penalty": 1.3, "record_top_k": 12},
    "unrecorded": {"strategy": "beam", "max_new_tokens": 4, "record_top_k": 0},
}
TOY_RUNS: dict[str, dict[str, Any]] = {
    "toy-greedy": {"strategy": "greedy", "max_new_tokens": 5},
    "toy-beam": {"strategy": "beam", "num_beams": 2, "max_new_tokens": 5},
    "toy-beam-3": {"strategy": "beam", "num_beams": 3, "max_new_tokens": 5, "num_return_sequences": 3},
}


def _stop_after(steps: int) -> Any:
    """A should_stop callback that stops the run after ``steps`` steps."""
    answers: Iterator[bool] = iter([False] * (steps - 1) + [True] * 100)
    return lambda: next(answers)


@pytest.fixture(scope="module")
def traces(tiny: CausalLM, toy: TableModel) -> dict[str, Trace]:
    """Real traces of every strategy on tiny-random and the textbook toy, plus a beam run stopped from outside."""
    out = {name: explorer.decode(tiny, PROMPT, **kw) for name, kw in RUNS.items()}
    out |= {name: explorer.decode(toy, "The", **kw) for name, kw in TOY_RUNS.items()}
    out["stopped"] = explorer.decode(tiny, PROMPT, "beam", num_beams=3, max_new_tokens=9, should_stop=_stop_after(4))
    return out


ALL = [*RUNS, *TOY_RUNS, "stopped"]


def _points(fig: go.Figure) -> list[tuple[Any, str, str]]:
    """Every drawn clickable marker of a figure: (trace, panel, node key); the invisible click targets on top of the
    hypotheses and finished entries are left out (they repeat those nodes)."""
    out = []
    for trace in fig.data:
        if trace.customdata is not None and trace.mode and "markers" in trace.mode and trace.name != "click targets":
            out += [(trace, row[0], row[1]) for row in trace.customdata]
    return out


def _named(fig: go.Figure, name: str) -> list[Any]:
    """The drawn traces called ``name`` (not the legend's own entries, which hold no points)."""
    return [t for t in fig.data if t.name == name and (t.customdata is not None or t.mode == "lines")]


def _segments(trace: Any) -> int:
    """Edges in a polyline broken by gaps (NaN or None)."""
    xs = [None if x is None or (isinstance(x, float) and math.isnan(x)) else x for x in trace.x]
    return sum(1 for i in range(0, len(xs), 3) if xs[i] is not None)


def _keys(fig: go.Figure, name: str) -> list[str]:
    return [row[1] for t in _named(fig, name) for row in t.customdata]


# --- search tree ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_one_marker_per_hypothesis_per_step(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    fig = search_tree(trace)
    keys = _keys(fig, "hypothesis")
    recorded = [f"h{h.id}" for s in trace.steps for h in s.hypotheses]
    assert len(keys) == len(set(keys))
    assert set(recorded) <= set(keys)
    nodes, _ = tree_frames(trace)
    assert sorted(keys) == sorted(nodes.loc[nodes["kind"] == "hypothesis", "node"])  # plus unexpanded ones


@pytest.mark.parametrize("name", ALL)
def test_every_node_once_and_customdata_maps_back(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    nodes, _ = tree_frames(trace)
    points = _points(search_tree(trace))
    keys = [key for _, _, key in points]
    assert sorted(keys) == sorted(nodes["node"])
    assert all(panel is None for _, panel, _ in points)
    assert {node_at(list(row))[1] for t in search_tree(trace).data if t.customdata is not None
            for row in t.customdata} == set(nodes["node"])


@pytest.mark.parametrize("name", ALL)
def test_edges_one_per_parent_link(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    nodes, edges = tree_frames(trace)
    fig = search_tree(trace)
    tree = sum(_segments(t) for t in fig.data if t.name in ("edges", "pruned edges"))
    assert tree == int(nodes["parent"].notna().sum())
    if all(h.candidates for s in trace.steps for h in s.hypotheses):
        assert tree == len(edges)
    leaves = nodes["kind"].isin(["pruned", "masked"])
    assert _segments(_named(fig, "pruned edges")[0]) == int((leaves & nodes["parent"].notna()).sum())


@pytest.mark.parametrize("name", ALL)
def test_nodes_never_overlap(traces: dict[str, Trace], name: str) -> None:
    lay = tree_layout(traces[name])
    places = set(zip(lay.x.round(6).tolist(), lay.y.round(6).tolist(), strict=True))
    assert len(places) == len(lay)


def test_lattice_positions(traces: dict[str, Trace]) -> None:
    trace = traces["beam"]
    lay = tree_layout(trace)
    for step in trace.steps:
        for hyp in step.hypotheses:
            i = list(lay.key).index(f"h{hyp.id}")
            assert (lay.x[i], lay.y[i]) == (len(hyp.token_ids), hyp.slot)
    leaves = np.isin(lay.kind, ["pruned", "masked"])
    parent_y = lay.y[lay.parent[leaves]]
    assert (np.abs(lay.y[leaves] - parent_y) < 0.5).all()  # a leaf stays in its parent's band
    assert (lay.x[leaves] == lay.x[lay.parent[leaves]] + 1).all()


@pytest.mark.parametrize("name", ["greedy", "sample", "beam", "diverse", "toy-beam"])
def test_show_pruned_toggles_leaves(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    with_leaves, without = search_tree(trace), search_tree(trace, show_pruned=False)
    assert _keys(with_leaves, "pruned")
    assert not _named(without, "pruned")
    assert not _named(without, "masked")
    assert not any(key.startswith("c") for _, _, key in _points(without))
    assert _segments(_named(without, "pruned edges")[0]) == 0
    assert _keys(without, "hypothesis") == _keys(with_leaves, "hypothesis")


def test_masked_leaves_have_their_own_marker(traces: dict[str, Trace]) -> None:
    fig = search_tree(traces["sample"])  # top_k=3 masks the rest of the recorded ten
    masked = _named(fig, "masked")
    assert masked
    assert masked[0].marker.symbol != _named(fig, "pruned")[0].marker.symbol
    assert all("masked by top_k" in h for h in masked[0].hovertext)


@pytest.mark.parametrize("name", ["beam", "toy-beam", "toy-beam-3", "diverse", "constrained", "greedy"])
def test_finished_entries_show_their_normalized_score(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    fig = search_tree(trace)
    entries = {f"f{f.id}": f for s in trace.steps for f in s.finished}
    shown = {row[1]: (t, i) for t in fig.data if t.name and t.name.startswith("finished") and t.customdata is not None
             for i, row in enumerate(t.customdata)}
    assert set(shown) == set(entries)
    for key, (t, i) in shown.items():
        fin = entries[key]
        assert f"<b>score {fin.normalized_score:.3f}</b>" in t.hovertext[i]
        if length_penalty(trace) is None:  # greedy never length-penalises: its hover must not say it does
            assert "no length penalty" in t.hovertext[i]
            assert "length^" not in t.hovertext[i]
        else:
            assert f"= {fin.score:.3f} / {fin.length}^" in t.hovertext[i]
        assert t.name == ("finished (accepted)" if fin.accepted else "finished (not accepted)")
        assert t.text[i] == "" or t.text[i].endswith(f"{fin.normalized_score:.2f}")  # few: labelled where room
        assert t.marker.symbol == ("diamond" if fin.accepted else "diamond-open")
    assert any(t.text[i] for t, i in shown.values())


def test_toy_beam_tree_is_the_textbook_one(traces: dict[str, Trace]) -> None:
    fig = search_tree(traces["toy-beam"])
    labels = dict(zip(_keys(fig, "hypothesis"), _named(fig, "hypothesis")[0].text, strict=True))
    assert sorted(labels.values()) == ["dog", "has", "nice", "prompt", "woman"]
    finished = _named(fig, "finished (accepted)")[0]
    assert any("-0.34" in text for text in finished.text)  # "The dog has": 0.9 * 0.4, length-penalised


@pytest.mark.parametrize("name", ["beam", "toy-beam-3", "sample", "diverse", "constrained", "stopped"])
def test_result_paths_are_highlighted(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    nodes, _ = tree_frames(trace)
    fig = search_tree(trace)
    ranks = sorted(int(r) for r in nodes["result_rank"].dropna().unique())
    assert ranks
    assert ranks[0] == 0
    for rank in ranks:
        (line,) = _named(fig, f"result {rank}")
        on_path = nodes[(nodes["result_rank"] == rank) & nodes["parent"].notna()]
        assert _segments(line) == len(on_path)
    assert _named(fig, "result 0")[0].line.width > _named(fig, "edges")[0].line.width
    hovers = dict(zip(_keys(fig, "hypothesis"), _named(fig, "hypothesis")[0].hovertext, strict=True))
    rank_of = dict(zip(nodes["node"], nodes["result_rank"], strict=True))
    for key, hover in hovers.items():  # a star exactly on the nodes of a result's path, naming the best result
        starred = re.findall(r"★ on the path of result (\d+)", hover)
        assert starred == ([] if pd.isna(rank_of[key]) else [str(rank_of[key])]), key
    (root,) = nodes.loc[(nodes["result_rank"] == 0) & nodes["parent"].isna(), "node"]  # result 0's root
    assert "★ on the path of result 0" in hovers[root]


@pytest.mark.parametrize("color", ["score", "logprob", "group"])
def test_color_modes(traces: dict[str, Trace], color: str) -> None:
    fig = search_tree(traces["diverse"], color=color)  # type: ignore[arg-type]
    (hyps,) = _named(fig, "hypothesis")
    if color == "group":
        assert fig.layout.coloraxis.colorscale is None
        assert [t.name for t in fig.data if t.name and t.name.startswith("group")] == ["group 0", "group 1", "group 2"]
        groups = {int(g) for g in hyps.marker.color}
        assert groups == {0, 1, 2}
    else:
        assert hyps.marker.coloraxis == "coloraxis"
        assert [a.text for a in fig.layout.annotations if a.name == "colour bar"] == [
            "path score (summed)" if color == "score" else "token log-prob"]
        lay = tree_layout(traces["diverse"])
        values = lay.score if color == "score" else lay.logprob
        assert np.allclose(np.asarray(hyps.marker.color), values[lay.kind == "hypothesis"])


@pytest.mark.parametrize("color", ["score", "logprob"])
def test_the_colour_bar_as_html_matches_the_figures_scale(traces: dict[str, Trace], color: str) -> None:
    fig = search_trees({"beam": traces["beam"], "diverse": traces["diverse"]}, color=color,  # type: ignore[arg-type]
                       color_bar=False)
    axis = fig.layout.coloraxis
    assert axis.showscale is False
    assert not [a for a in fig.layout.annotations if a.name == "colour bar"]
    bar = color_scale_html(fig, COLOR_TITLES[color])
    assert bar.count(COLOR_TITLES[color]) == 1
    ticks = [float(t.replace("\N{MINUS SIGN}", "-")) for t in re.findall(r'explorer-scale-tick"[^>]*>([^<]+)<', bar)]
    places = [float(x) for x in re.findall(r"left: ([0-9.]+)%", bar)]
    assert len(ticks) >= 3
    assert ticks[0] >= axis.cmin - 1e-9
    assert ticks[-1] <= axis.cmax + 1e-9
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    assert np.allclose(places, [100 * (t - axis.cmin) / (axis.cmax - axis.cmin) for t in ticks], atol=0.01)
    drawn = search_trees({"beam": traces["beam"], "diverse": traces["diverse"]}, color=color)  # type: ignore[arg-type]
    assert drawn.layout.coloraxis.showscale is not False
    # without the bar the top margin is 40 px lower, and the panels keep their size in pixels
    assert drawn.layout.margin.t - fig.layout.margin.t == drawn.layout.height - fig.layout.height == 40
    assert drawn.layout.yaxis.domain == fig.layout.yaxis.domain


def test_nice_ticks() -> None:
    assert nice_ticks(-14.08, -0.21) == [-12.5, -10.0, -7.5, -5.0, -2.5]
    assert nice_ticks(-14.08, -0.21, 7) == [-14.0, -12.0, -10.0, -8.0, -6.0, -4.0, -2.0]
    assert nice_ticks(-0.93, -0.02) == [-0.8, -0.6, -0.4, -0.2]
    assert nice_ticks(-3.3, -0.7, 5)[0] == -3.0
    assert nice_ticks(2.0, 2.0) == [2.0]
    assert nice_ticks(-1e-7, 0.0) == [-1e-7, -8e-8, -6e-8, -4e-8, -2e-8, 0.0]


def test_placeholder_rows_do_not_stretch_the_colour_scale() -> None:
    # Four beams on a toy with fewer continuations: the reference fills beams with -1e9 rows.
    toy = explorer.load_model("toy:d2l-beam")
    trace = explorer.decode(toy, toy.prompt, "beam", num_beams=4, max_new_tokens=6)  # type: ignore[attr-defined]
    scores = [h.score for s in trace.steps for h in s.hypotheses]
    assert min(scores) <= -1e9
    real = [x for x in scores if x > -1e8]
    axis = search_tree(trace).layout.coloraxis  # over hypotheses and finished entries, placeholders left out
    assert -10 < axis.cmin <= min(real)
    assert axis.cmax >= max(real)


def test_unknown_color_mode_is_refused(traces: dict[str, Trace]) -> None:
    with pytest.raises(explorer.ParameterError, match="color='hue'"):
        search_tree(traces["beam"], color="hue")  # type: ignore[arg-type]


def test_hover_has_processors_constraints_and_fates(traces: dict[str, Trace]) -> None:
    hovers = "".join(h for t in search_tree(traces["sample"]).data if t.hovertext is not None
                     for h in t.hovertext)
    assert re.search(r"top_k [+-]\d\.\d{3}", hovers)
    assert "top_k \N{MINUS SIGN}\N{INFINITY}" in hovers
    assert "log-prob " in hovers
    assert " · p " in hovers
    assert "path: log-prob " in hovers
    assert "token score" in hovers
    assert "pruned: not drawn" in hovers
    assert "kept: sampled" in hovers
    assert "masked: masked by top_k" in hovers
    quiet = "".join(h for t in search_tree(traces["processors"]).data if t.hovertext is not None
                    for h in t.hovertext)
    assert "repetition_penalty +0.000" not in quiet
    assert "repetition_penalty -0.000" not in quiet
    constrained = "".join(h for t in search_tree(traces["constrained"]).data if t.hovertext is not None
                          for h in t.hovertext)
    assert "constraints:" in constrained
    assert "bank " in constrained
    assert re.search(r"\d/\d", constrained)
    assert "[400, 401]" in constrained  # the constraint's name


def _with_markup(trace: Trace, words: dict[str, str]) -> Trace:
    """The trace with some candidates' text replaced (traces are frozen dataclasses)."""
    def swap(c: Candidate) -> Candidate:
        return dataclasses.replace(c, text=words[c.text]) if c.text in words else c

    steps = tuple(dataclasses.replace(s, hypotheses=tuple(
        dataclasses.replace(h, candidates=tuple(swap(c) for c in h.candidates)) for h in s.hypotheses))
        for s in trace.steps)
    return dataclasses.replace(trace, steps=steps)


def test_hover_and_labels_escape_token_markup(traces: dict[str, Trace]) -> None:
    evil = _with_markup(traces["toy-beam"], {"dog": "<b>dog</b>", "car": "<img src=x onerror=alert(1)>&"})
    fig = search_tree(evil)
    strings = [s for t in fig.data for attr in ("hovertext", "text") if getattr(t, attr) is not None
               for s in getattr(t, attr)]
    joined = "\n".join(strings)
    assert "<b>dog</b>" not in joined
    assert "<img" not in joined
    assert "&lt;b&gt;dog&lt;/b&gt;" in joined
    assert "&lt;img" in joined
    assert "&amp;" in joined
    bars = step_candidates(evil, evil.steps[0].hypotheses[0].id)
    assert "&lt;b&gt;dog&lt;/b&gt;" in bars.data[0].x
    assert "<b>dog</b>" not in "".join(bars.data[0].hovertext)


def test_whitespace_is_made_visible() -> None:
    assert visible(" a\tb\n\r") == "␣a⇥b⏎␍"
    assert visible("") == "∅"
    assert visible("\x03") == "\u2403"
    assert visible("\u200b") == "⟨U+200B⟩"
    assert visible("\n" + " " * 8) == "⏎␣\N{MULTIPLICATION SIGN}8"


@pytest.mark.parametrize("name", ["beam", "diverse", "toy-beam", "stopped"])
def test_upto_step_shows_what_those_steps_decided(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    nodes, _ = tree_frames(trace)
    step = dict(zip(nodes["node"], nodes["step"], strict=True))
    kind = dict(zip(nodes["node"], nodes["kind"], strict=True))
    counts = []
    for upto in range(-1, len(trace.steps)):
        keys = [key for _, _, key in _points(search_tree(trace, upto_step=upto))]
        decided = [step[k] - 1 if kind[k] == "hypothesis" else step[k] for k in keys]
        assert all(d <= upto for d in decided)
        assert sorted(keys) == sorted(k for k in nodes["node"]
                                      if (step[k] - 1 if kind[k] == "hypothesis" else step[k]) <= upto
                                      or (kind[k] == "hypothesis" and step[k] == 0))
        counts.append(len(keys))
    assert counts == sorted(counts)
    assert counts[-1] == len(nodes)
    full, scrubbed = search_tree(trace), search_tree(trace, upto_step=0)
    assert full.layout.xaxis.range == scrubbed.layout.xaxis.range  # scrubbing does not rescale


def test_unexpanded_hypotheses_say_so(traces: dict[str, Trace]) -> None:
    trace = traces["stopped"]
    nodes, _ = tree_frames(trace)
    unexpanded = set(nodes.loc[(nodes["kind"] == "hypothesis") & ~nodes["expanded"], "node"])
    assert unexpanded
    fig = search_tree(trace)
    hovers = dict(zip(_keys(fig, "hypothesis"), _named(fig, "hypothesis")[0].hovertext, strict=True))
    assert {k for k, h in hovers.items() if "never expanded" in h} == unexpanded


def test_titles(traces: dict[str, Trace]) -> None:
    assert search_tree(traces["beam"]).layout.title.text == "beam, 4 beams · tiny-random"
    assert search_tree(traces["beam"], title="mine").layout.title.text == "mine"
    assert search_trees({"a": traces["beam"]}).layout.title.text is None
    assert search_trees({"a": traces["beam"]}, title="both").layout.title.text == "both"


def _rings(fig: go.Figure) -> list[tuple[str, str, float, float]]:
    """The rings drawn: ``(name, axis, x, y)`` of each shape named ``selected ...``."""
    return [(shape.name, shape.xref, shape.xanchor, shape.yanchor) for shape in fig.layout.shapes
            if str(shape.name).startswith("selected ")]


def test_selected_node_gets_a_ring(traces: dict[str, Trace]) -> None:
    trace = traces["beam"]
    hyp = trace.steps[2].hypotheses[1]
    key = f"h{hyp.id}"
    fig = search_tree(trace, selected=key)
    (ring,) = _rings(fig)
    lay = tree_layout(trace)
    row = int(np.flatnonzero(lay.key == key)[0])
    assert ring == (f"selected {key}", "x", lay.x[row], lay.y[row])
    (shape,) = fig.layout.shapes
    assert shape.type == "circle"
    assert shape.xsizemode == shape.ysizemode == "pixel"
    # No ring for an unknown node, nor for one the scrubber has not reached yet.
    assert not _rings(search_tree(trace, selected="h999999"))
    assert not _rings(search_tree(trace, selected=key, upto_step=0))
    assert not _rings(search_tree(trace))


def test_a_big_tree_draws_each_nodes_best_pruned_leaves(traces: dict[str, Trace],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond ``LEAVES_UP_TO`` pruned leaves, each node keeps its best-scored few; the legend says how many."""
    from explorer.figures import _tree

    lay = tree_layout(traces["beam"])
    pruned = lay.kind == "pruned"
    parents = np.unique(lay.parent[pruned])
    monkeypatch.setattr(_tree, "LEAVES_UP_TO", 2 * len(parents))
    fig = search_tree(lay)
    (leaves,) = [t for t in fig.data if t.name == "pruned" or str(t.name).startswith("pruned (")]
    assert leaves.name == "pruned (best 2 per node)"
    drawn = {str(row[1]) for row in leaves.customdata}
    for parent in parents:
        rows = np.flatnonzero(pruned & (lay.parent == parent))
        best = rows[np.argsort(-lay.score[rows], kind="stable")][:2]
        assert {str(k) for k in lay.key[rows]} & drawn == {str(k) for k in lay.key[best]}
    others = [t for t in fig.data if t.name in ("hypothesis", "pushed down", "masked") and t.customdata is not None]
    assert sum(len(t.x) for t in others) == int(np.isin(lay.kind, ("hypothesis", "pushed down", "masked")).sum())
    monkeypatch.setattr(_tree, "LEAVES_UP_TO", int(pruned.sum()))
    (everything,) = [t for t in search_tree(lay).data if t.name == "pruned"]
    assert everything.name == "pruned"
    assert len(everything.x) == int(pruned.sum())


def test_search_trees_one_panel_per_trace(traces: dict[str, Trace]) -> None:
    panels = {"greedy": traces["greedy"], "beam": traces["beam"], "diverse": traces["diverse"],
              "constrained": traces["constrained"]}
    fig = search_trees(panels, selected=("beam", "h0"))
    assert [a.text for a in fig.layout.annotations if a.name != "colour bar"] == list(panels)
    axes = {t.xaxis for t in fig.data}
    assert axes == {"x", "x2", "x3", "x4"}
    cells = [(fig.layout[f"xaxis{s}"].domain, fig.layout[f"yaxis{s}"].domain) for s in ("", "2", "3", "4")]
    for (ax, ay), (bx, by) in itertools.combinations(cells, 2):  # side by side, or in rows (900 px: two of two)
        assert ax[1] <= bx[0] or bx[1] <= ax[0] or ay[1] <= by[0] or by[1] <= ay[0]
    wide = search_trees(panels, width=1864).layout  # wide: one row
    assert wide.yaxis4.domain == wide.yaxis.domain == (0.0, 1.0)
    for suffix, (name, trace) in zip(("", "2", "3", "4"), panels.items(), strict=True):
        keys = {row[1] for t in fig.data if t.xaxis == f"x{suffix}" and t.customdata is not None
                for row in t.customdata if row[0] == name}
        assert keys == set(tree_frames(trace)[0]["node"])
    assert [(name, axis) for name, axis, _, _ in _rings(fig)] == [("selected h0", "x2")]  # the beam panel's
    assert sum(1 for t in fig.data if t.showlegend is not False and t.name == "hypothesis") == 1
    assert fig.layout.coloraxis.cmin <= min(tree_layout(t).score.min() for t in panels.values()
                                            if t.strategy != "constrained")


def test_a_layout_redraws_like_its_trace(traces: dict[str, Trace]) -> None:
    trace = traces["constrained"]
    lay = tree_layout(trace)
    assert list(lay.key) == list(tree_frames(trace)[0]["node"])  # one row per node, in tree_frames' order
    assert search_tree(lay, upto_step=3).to_json() == search_tree(trace, upto_step=3).to_json()
    assert search_trees({"a": lay}).to_json() == search_trees({"a": trace}).to_json()


def test_figures_are_pure(traces: dict[str, Trace]) -> None:
    trace = traces["diverse"]
    before = dataclasses.astuple(trace)
    first = search_tree(trace, color="group").to_json()
    assert search_tree(trace, color="group").to_json() == first
    assert dataclasses.astuple(trace) == before


def test_node_at_reads_customdata() -> None:
    assert node_at(["beam", "h12"]) == ("beam", "h12")
    assert node_at([None, "c3.4.5"]) == (None, "c3.4.5")
    assert node_at("f2") == (None, "f2")
    assert node_at(["h1"]) == (None, "h1")


def test_large_trees_use_webgl(tiny: CausalLM) -> None:
    """How fast this figure builds is measured in benchmarks/bench_scaling.py (traces and figures)."""
    trace = explorer.decode(tiny, [5, 6, 7], "beam", num_beams=16, max_new_tokens=100, length_penalty=0.0,
                            early_stopping="never")
    lay = tree_layout(trace)
    fig = search_tree(lay)
    assert {t.type for t in fig.data if t.name in ("pruned", "hypothesis", "edges")} == {"scattergl"}
    assert sum(1 for t in fig.data if t.name == "edges") == 1
    assert len(_keys(fig, "hypothesis")) == sum(len(s.hypotheses) for s in trace.steps)
    assert search_tree(lay, upto_step=50).to_json() == search_tree(trace, upto_step=50).to_json()  # scrubbing
    small = search_tree(explorer.decode(tiny, PROMPT, "greedy", max_new_tokens=3))
    assert {t.type for t in small.data} == {"scatter"}


# --- step candidates --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["greedy", "sample", "beam", "diverse", "constrained", "processors", "toy-beam"])
def test_step_candidates_has_a_bar_per_candidate(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    hyp = trace.steps[min(2, len(trace.steps) - 1)].hypotheses[0]
    fig = step_candidates(trace, hyp.id)
    raw, done = _named(fig, "raw probability")[0], _named(fig, "processed probability")[0]
    assert len(raw.x) == len(done.x) == len(hyp.candidates) == len(set(raw.x))
    assert np.allclose(raw.y, [math.exp(c.logprob) for c in hyp.candidates])
    assert np.allclose(done.y, [math.exp(c.score) for c in hyp.candidates])
    for c, hover in zip(hyp.candidates, raw.hovertext, strict=True):
        assert c.fate in hover
        assert c.reason.split(":")[0] in hover
    assert {t.name for t in fig.data} >= {c.fate for c in hyp.candidates}
    assert raw.marker.pattern.shape == "/"
    assert done.marker.pattern.shape is None


def test_step_candidates_edge_cases(traces: dict[str, Trace]) -> None:
    with pytest.raises(KeyError):
        step_candidates(traces["beam"], 10**6)
    trace = traces["unrecorded"]
    root = dataclasses.replace(trace.steps[0].hypotheses[0], candidates=())
    bare = dataclasses.replace(trace, steps=(dataclasses.replace(trace.steps[0], hypotheses=(root,)),))
    empty = step_candidates(bare, root.id)
    assert not empty.data
    assert "No candidates" in empty.layout.annotations[0].text
    sample = step_candidates(traces["sample"], traces["sample"].steps[1].hypotheses[0].id)
    assert "masked" in {t.name for t in sample.data}
    assert any("top_k" in h for h in sample.data[0].hovertext)


# --- score timelines --------------------------------------------------------------------------------------------


def test_score_timelines_end_at_each_result(traces: dict[str, Trace]) -> None:
    panels = {name: traces[name] for name in ("greedy", "sample", "beam", "diverse", "constrained", "toy-beam",
                                              "stopped", "unrecorded")}
    fig = score_timelines(panels)
    assert len(fig.data) == sum(len(t.results) for t in panels.values())
    lines = iter(fig.data)
    colors: dict[str, str] = {}
    for name, trace in panels.items():
        for result in trace.results:
            line = next(lines)
            assert line.name.startswith(f"{name} · result {result.rank} (log-prob ")
            assert line.name.endswith(f", score {result.score:.3f})")
            logprob = path_scores(result_path(trace, result).tokens).logprob
            if logprob is not None:  # the line ends at the path's log-prob, the score is in the hover
                assert line.y[-1] == pytest.approx(logprob)
                assert line.x[-1] == len(result.token_ids)
            assert f"<b>score {result.score:.3f}</b>" in line.hovertext[-1]
            assert line.x[0] == 0
            assert line.y[0] == 0.0
            assert line.line.color == colors.setdefault(name, line.line.color)  # one colour per panel
    beam = [t for t in fig.data if t.name.startswith("beam")]
    assert beam[0].line.dash != beam[1].line.dash  # one dash per rank
    assert len({t.line.color for t in fig.data if " · result 0 (" in t.name}) == len(panels)


def test_score_timelines_follow_the_path(traces: dict[str, Trace]) -> None:
    trace = traces["toy-beam"]  # "The dog has <eos>": 0.4, 0.9, then eos
    line = score_timelines({"beam": trace}).data[0]
    assert list(line.x) == [0, 1, 2, 3]
    assert line.y[1] == pytest.approx(math.log(0.4))
    assert line.y[2] == pytest.approx(math.log(0.36))
    assert line.y[3] == pytest.approx(math.log(0.36))
    assert f"{math.log(0.36) / 3:.3f}" in line.hovertext[-1]  # the length-penalised final score


# --- constraint progress ----------------------------------------------------------------------------------------


def test_constraint_progress_on_a_constrained_run(traces: dict[str, Trace]) -> None:
    trace = traces["constrained"]
    fig = constraint_progress(trace)
    assert [a.text for a in fig.layout.annotations][:2] == ["[400, 401] · tokens matched",
                                                            "any of [500, 501] | [9] · tokens matched"]
    dots = [row[1] for t in fig.data if t.name in ("hypothesis", "forced") and t.xaxis == "x"
            for row in t.customdata]
    assert sorted(dots) == sorted(f"h{h.id}" for s in trace.steps for h in s.hypotheses)
    assert _named(fig, "result 0")
    assert {"completed", "reset"} <= {t.name for t in fig.data}
    completed = {row[1] for t in _named(fig, "completed") for row in t.customdata}
    hyps = {f"h{h.id}": h for s in trace.steps for h in s.hypotheses}
    assert all("complete" in hyps[key].constraint.status for key in completed)  # type: ignore[union-attr]


def test_constraint_progress_marks_completions_and_resets(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, "The cake needs", "constrained", num_beams=4,
                            constraints=[" flour", [" sugar", " honey"]], max_new_tokens=12)
    fig = constraint_progress(trace)
    assert sum(len(t.x) for t in _named(fig, "completed")) > 0
    assert sum(len(t.x) for t in _named(fig, "reset")) > 0
    assert "flour" in fig.layout.annotations[0].text


@pytest.mark.parametrize("name", ["greedy", "beam", "diverse", "toy-beam"])
def test_constraint_progress_without_constraints(traces: dict[str, Trace], name: str) -> None:
    fig = constraint_progress(traces[name])
    assert not fig.data
    assert fig.layout.annotations[0].text == f"This run ({traces[name].strategy}) has no constraints."


# --- html -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["greedy", "beam", "diverse", "constrained", "toy-beam", "stopped", "unrecorded"])
def test_tokens_html_has_a_span_per_token(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    for result in trace.results:
        snippet = tokens_html(trace, result.rank)
        assert snippet.startswith('<div class="explorer-tokens"')
        assert snippet.count('class="explorer-token"') == len(result.token_ids)
        shades = re.findall(r"background:rgba\([^)]*,([0-9.]+)\)", snippet)
        assert len(shades) == len(result.token_ids)  # the picked candidates are always recorded


def test_tokens_html_without_recorded_candidates(traces: dict[str, Trace]) -> None:
    trace = traces["toy-beam"]
    bare = dataclasses.replace(trace, steps=tuple(dataclasses.replace(s, hypotheses=tuple(
        dataclasses.replace(h, candidates=()) for h in s.hypotheses)) for s in trace.steps))
    snippet = tokens_html(bare)
    assert snippet.count("probability not recorded") == len(trace.results[0].token_ids)
    assert "background:rgba" not in snippet
    assert "⟨4⟩" in snippet


def test_tokens_html_shades_by_probability_and_escapes(traces: dict[str, Trace]) -> None:
    trace = _with_markup(traces["toy-beam"], {"dog": "<script>x</script>", "has": "a\nb"})
    snippet = tokens_html(trace)
    assert "<script>" not in snippet
    assert "&lt;script&gt;x&lt;/script&gt;" in snippet
    assert "a⏎<br>b" in snippet
    shades = [float(a) for a in re.findall(r"background:rgba\([^)]*,([0-9.]+)\)", snippet)]
    assert shades[0] > shades[1] > shades[2]  # p = 0.4, 0.9, 1.0: the unlikely token is darker
    assert 'title="#0 &lt;script&gt;x&lt;/script&gt; (id 4)&#10;p 40.0%' in snippet
    with pytest.raises(IndexError):
        tokens_html(trace, rank=5)


def test_results_table_html(traces: dict[str, Trace]) -> None:
    panels = {"beam": traces["beam"], "constrained": traces["constrained"], "<i>x</i>": traces["toy-beam"]}
    table = results_table_html(panels)
    assert table.startswith('<table class="explorer-summary"')
    assert table.count("<tr>") == 1 + sum(len(t.results) for t in panels.values())
    assert "<i>x</i>" not in table
    assert "&lt;i&gt;x&lt;/i&gt;" in table
    assert f"{traces['beam'].results[1].score:.3f}" in table
    satisfied = "✓" if traces["constrained"].results[0].constraints_satisfied else "✗"
    assert f">{satisfied}</td>" in table
    evil = dataclasses.replace(traces["toy-beam"], results=tuple(
        dataclasses.replace(r, text='"><script>') for r in traces["toy-beam"].results))
    assert "<script>" not in results_table_html({"e": evil})
    assert 'title="&quot;&gt;' in results_table_html({"e": evil})


def test_frames_are_not_needed_twice(traces: dict[str, Trace]) -> None:
    """tree_layout keeps plain arrays; pandas objects do not leak into the figure."""
    fig = search_tree(traces["beam"])
    assert not any(isinstance(v, pd.Series) for t in fig.data for v in (t.x, t.y))


def test_hostile_token_text_is_made_visible_and_escaped() -> None:
    """Control characters, bidi overrides, markup, emoji and right-to-left text in tokens cannot break a page."""
    from explorer.figures._style import safe

    shown = safe("\u202eabc\u2066<b>x</b>\x07\u200f")
    for raw in ("\u202e", "\u2066", "\x07", "\u200f", "<b>"):
        assert raw not in shown
    for symbol in ("⟨U+202E⟩", "⟨U+2066⟩", "␇", "&lt;b&gt;"):
        assert symbol in shown
    assert safe("שלום 🙂") == "שלום␣🙂"


# --- one scoring vocabulary -------------------------------------------------------------------------------------


def test_results_table_compares_log_probs_across_strategies(traces: dict[str, Trace]) -> None:
    """Every result has a log-prob (the model's summed log-probability, the same for every strategy) beside its
    score (what its strategy ranks by); diverse results show the diversity penalty's part; the caption says it."""
    panels = {name: traces[name] for name in ("greedy", "beam", "diverse")}
    table = results_table_html(panels)
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert heads[3:6] == ["log-prob", "score", "diversity"]
    logprobs = [float(v.replace("\N{MINUS SIGN}", "-")) for v in
                re.findall(r'class="explorer-logprob"[^>]*>([^<]*)<', table)]
    want = [path_scores(result_path(t, r).tokens).logprob for t in panels.values() for r in t.results]
    assert logprobs == pytest.approx(want, abs=1e-3)
    beam = panels["beam"].results[0]
    assert beam.score != pytest.approx(path_scores(result_path(panels["beam"], beam).tokens).logprob)  # divided
    for said in ("/ length^", "no length penalty", "log-prob: the model"):
        assert said in table
    group1 = [r for r in panels["diverse"].results if r.group == 1]
    if group1:
        part = path_scores(result_path(panels["diverse"], group1[0]).tokens).diversity
        assert part is not None  # a later group pays for tokens an earlier one took (0 when it took none)
        assert part <= 0


def test_hypotheses_have_click_targets_after_the_leaves(traces: dict[str, Trace]) -> None:
    """plotly.js gives a click to the point nearest the cursor less its marker's radius, floored at
    ``1 - 3 / radius``: a leaf's small marker beats a hypothesis's at its own centre. Targets of radius 3 on every
    hypothesis and finished entry, later in the figure than the leaves, tie at 0 and win (the later trace)."""
    fig = search_tree(traces["beam"], show_pruned=True)
    names = [t.name for t in fig.data]
    targets = fig.data[names.index("click targets")]
    assert names.index("click targets") > max(names.index(k) for k in ("pruned", "hypothesis"))
    assert targets.marker.size <= 6
    assert targets.showlegend is False
    scored = [row[1] for t in fig.data if t.name in ("hypothesis", "finished (accepted)", "finished (not accepted)")
              and t.customdata is not None for row in t.customdata]
    assert sorted(row[1] for row in targets.customdata) == sorted(scored)
