"""The app's widgets without a browser: set values, click buttons, and check the state and what is shown."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from ipywidgets import HTML, Widget
from ipywidgets.widgets.widget import _instances
from ipywidgets.widgets.widget_description import DescriptionWidget
from plotly.callbacks import Points
from widget_text import visible_error

from explorer.app import Explorer
from explorer.app._nodes import describe
from explorer.app.explorer import DEFAULT_MODEL_ENV
from explorer.figures._paths import result_path
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.trace_io import dump_trace, load_trace


def _node_trace(app: Explorer, name: str) -> Any:
    """The first tree trace called ``name`` (hypothesis, pruned, ...)."""
    return next(t for t in app.outputs.tree.data if t.name == name and t.customdata is not None)


def _click(app: Explorer, trace: Any, index: int) -> None:
    """What plotly does when a marker is clicked."""
    app.controller.on_tree_click(trace, Points(point_inds=[index], trace_index=0), None)


def test_the_app_shows_as_one_widget(app: Explorer) -> None:
    bundle = app._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == app.widget.model_id
    assert "explorer-app" in app.widget._dom_classes
    assert [p.box._dom_classes[-1] for p in (app.panel(0), app.panel(1))] == ["explorer-panel"] * 2


def test_a_run_fills_every_panel(app: Explorer) -> None:
    app.controls.run.click()  # the threaded path; wait for it below
    for thread in threading.enumerate():
        if thread.name == "explorer-run":
            thread.join()
    assert app.state.status.startswith("done: 2 panels, 12 steps")
    assert all(p.trace is not None and len(p.trace.steps) == 6 for p in app.state.panels)
    for index in range(2):
        results = app.panel(index).results.value
        assert '<table class="explorer-table"' in results
        assert 'class="explorer-unc explorer-unc-entropy"' in results  # the text coloured by entropy
    assert app.controls.progress.value == app.controls.progress.max == 12
    assert not app.controls.run.disabled
    assert app.controls.stop.disabled
    assert 'class="explorer-summary"' in app.outputs.summary.value
    keys = {row[0] for t in app.outputs.tree.data if t.customdata is not None for row in t.customdata}
    assert keys == {"#1 greedy", "#2 beam"}


def test_run_is_disabled_while_running(app: Explorer) -> None:
    seen: list[bool] = []
    app.controls.progress.observe(lambda _: seen.append(app.controls.run.disabled), names="value")
    thread = app.run()
    assert thread is not None
    thread.join()
    assert seen
    assert all(seen[:-1])
    assert app.run(wait=True) is not None
    assert app.state.status.startswith("done")


def test_an_invalid_parameter_shows_under_its_control_and_nothing_runs(app: Explorer) -> None:
    panel = app.panel(1)
    panel.strategy.value = "diverse"
    panel.knobs["num_beam_groups"].value = 3
    message = "num_beam_groups=3 is invalid: expected an integer >= 2 that divides num_beams=4"
    assert visible_error(panel.errors["num_beam_groups"]) == message
    assert app.run(wait=True) is None
    assert app.state.status == f"error: {message}"
    assert all(p.trace is None for p in app.state.panels)
    assert "no trace yet" in panel.results.value
    panel.knobs["num_beam_groups"].value = 2
    assert visible_error(panel.errors["num_beam_groups"]) == ""


def test_global_errors_show_under_their_controls(app: Explorer) -> None:
    app.controls.max_new_tokens.value = 0
    assert app.run(wait=True) is None
    assert visible_error(app.controls.errors["max_new_tokens"]).startswith("max_new_tokens=0 is invalid")
    app.controls.max_new_tokens.value = 3
    app.controls.prompt.value = ""
    assert app.run(wait=True) is None
    assert visible_error(app.controls.errors["prompt"]).startswith("prompt='' is invalid")


def test_only_the_knobs_of_the_strategy_show(app: Explorer) -> None:
    panel = app.panel(0)
    shown = {name for name, row in panel.rows.items() if row in panel.basic_box.children}
    assert shown == {"repetition_penalty", "no_repeat_ngram_size", "min_new_tokens"}
    assert panel.more.selected_index is None  # "more settings" starts folded, its knobs not made yet
    assert set(panel.knobs) == shown
    assert panel.more_box.children == ()
    panel.more.selected_index = 0
    more = {name for name, row in panel.rows.items() if row in panel.more_box.children}
    assert {"bad_words_ids", "record_top_k"} <= more
    assert panel.knobs["record_top_k"].value == 10
    panel.strategy.value = "sample"
    shown = {name for name, row in panel.rows.items() if row in panel.basic_box.children}
    assert {"temperature", "top_k", "top_p", "seed", "num_return_sequences"} <= shown
    assert panel.knobs["temperature"].value == 1.0
    assert panel.knobs["seed"].value == ""


def test_a_fresh_page_holds_few_widget_models(tiny: CausalLM) -> None:
    """The browser builds every widget model it is sent before Run is usable (998 models took 4.4 s to a usable
    page, 311 take 2.6 s): a panel makes only its strategy's basic knobs, the others the first time "more
    settings" opens, and every HTML widget and every knob of a kind shares one style model."""
    before = set(_instances)
    fresh = Explorer(tiny)
    made = [_instances[k] for k in set(_instances) - before]
    assert len(made) < 340, Counter(type(w).__name__ for w in made).most_common(8)
    assert len({w.style.model_id for w in made if isinstance(w, HTML)}) == 1
    styles = Counter(type(w).__name__ for w in made if type(w).__name__.endswith("Style"))
    assert styles["HTMLStyle"] <= 1, styles
    assert styles["DescriptionStyle"] <= 6, styles
    greedy = fresh.panel(0)
    assert set(greedy.knobs) == {"repetition_penalty", "no_repeat_ngram_size", "min_new_tokens"}
    greedy.strategy.value = "sample"
    greedy.knobs["temperature"].value = 0.7
    greedy.strategy.value = "greedy"
    greedy.strategy.value = "sample"  # a knob made once keeps following the state
    assert greedy.knobs["temperature"].value == 1.0 == fresh.state.panels[0].params["temperature"]
    greedy.more.selected_index = 0
    made_late = [w for r in greedy.rows.values() for w in r.children if isinstance(w, DescriptionWidget)]
    assert len(made_late) > 20
    assert [w.description for w in made_late if w.tooltip is None] == []


def test_an_error_in_a_folded_knob_is_kept_and_shown_when_it_unfolds(app: Explorer) -> None:
    panel = app.panel(1)
    panel.knobs["sequence_bias"].value = "no bias here"  # made on first use, before "more settings" opened
    assert visible_error(panel.errors["sequence_bias"]).startswith("sequence_bias='no bias here' is invalid")
    panel.more.selected_index = 0
    assert panel.rows["sequence_bias"] in panel.more_box.children
    assert panel.knobs["sequence_bias"].value == "no bias here"


def test_widgets_closed_by_a_notebook_are_made_again(tiny: CausalLM) -> None:
    """``Widget.close_all()`` (a notebook's "clear") closes the shared styles too: the next app makes new ones."""
    Explorer(tiny)
    Widget.close_all()
    fresh = Explorer(tiny)
    assert fresh.panel(0).title.style.comm is not None
    assert fresh.run(wait=True) is not None


def test_the_knobs_under_more_settings_reach_the_trace(app: Explorer) -> None:
    """Text boxes parse as the command line does (a line per item, PHRASE = BIAS, [ids]); a checkbox is a flag."""
    panel = app.panel(1)
    panel.knobs["stop_strings"].value = "\\n\nzz"
    panel.knobs["sequence_bias"].value = " the = 2.5\n[7] = -1"
    panel.knobs["remove_invalid_values"].value = True
    panel.knobs["exponential_decay_length_penalty"].value = "3, 1.2"
    panel.knobs["record_top_k"].value = 4
    params = app.state.panels[1].params
    assert params["stop_strings"] == ("\n", "zz")
    assert params["sequence_bias"] == ((" the", 2.5), ((7,), -1.0))
    assert params["exponential_decay_length_penalty"] == (3, 1.2)
    assert app.state.panels[1].errors == {}
    app.run(wait=True)
    trace = app.state.panels[1].trace
    assert trace is not None
    assert trace.params["sequence_bias"] == [[[260], 2.5], [[7], -1.0]]
    assert trace.params["remove_invalid_values"] is True
    assert max(len(h.candidates) for s in trace.steps for h in s.hypotheses) <= 4 + 4  # top 4 + the picked ones
    panel.knobs["sequence_bias"].value = "no bias here"
    assert visible_error(panel.errors["sequence_bias"]).startswith("sequence_bias='no bias here' is invalid")


def test_the_constraints_preview_follows_the_text(app: Explorer) -> None:
    panel = app.panel(1)
    panel.strategy.value = "constrained"
    assert panel.constraint_box in panel.box.children
    panel.constraints.value = " flour"
    assert "␣fl" in panel.preview.value
    assert "[832, 461]" in panel.preview.value
    panel.constraints.value = " flour\n sugar| honey"
    assert panel.preview.value.count("<div>") == 2
    assert "[393, 87, 280]" in panel.preview.value
    panel.constraints.value = "a||b"
    assert visible_error(panel.errors["constraints"]).startswith("constraint option")
    panel.constraints.value = " flour"
    assert visible_error(panel.errors["constraints"]) == ""
    app.run(wait=True)
    assert app.state.panels[1].trace is not None
    assert app.state.panels[1].trace.constraints[0]["text"] == " flour"


def test_panels_can_be_added_up_to_four_and_removed(app: Explorer) -> None:
    for _ in range(3):
        app.controls.add.click()
    assert len(app.state.panels) == 4
    assert len(app._panel_row.children) == 5
    assert visible_error(app.controls.errors["panels"]).startswith("at most 4 strategy panels")
    app.panel(0).remove.click()
    assert [p.id for p in app.state.panels] == [2, 3, 4]
    assert visible_error(app.controls.errors["panels"]) == ""
    app.run(wait=True)
    assert app.state.status.startswith("done: 3 panels")


def test_the_colour_bar_sits_above_the_trees_and_follows_the_colouring(app: Explorer) -> None:
    """The trees' colour bar is a widget of its own above the trees (the page keeps it in view), not in the figure,
    over the figure's own colour range; colouring by group has none."""
    assert app.outputs.scale.value == ""
    (section,) = [w for box in app.widget.children for w in getattr(box, "children", ())
                  if "explorer-tree-section" in w._dom_classes]
    assert section.children[0] is app.outputs.scale
    assert section.children[-1] is app.outputs.tree
    app.run(wait=True)
    axis = app.outputs.tree.layout.coloraxis
    assert axis.showscale is False
    assert not [a for a in app.outputs.tree.layout.annotations if a.name == "colour bar"]
    bar = app.outputs.scale.value
    assert "path score (summed)" in bar
    assert f"from {axis.cmin:.3f} (darkest) to {axis.cmax:.3f} (brightest)" in bar
    app.controls.color.value = "logprob"
    assert "token log-prob" in app.outputs.scale.value
    assert f"from {app.outputs.tree.layout.coloraxis.cmin:.3f}" in app.outputs.scale.value
    app.controls.color.value = "group"
    assert app.outputs.scale.value == ""


def test_the_step_scrubber_cuts_the_trees(app: Explorer) -> None:
    app.run(wait=True)
    shown = sum(len(t.x) for t in app.outputs.tree.data if t.x is not None)
    assert app.controls.scrubber.max == 5
    assert app.controls.scrubber.value == 5
    app.controls.scrubber.value = 1
    assert app.state.upto_step == 1
    assert sum(len(t.x) for t in app.outputs.tree.data if t.x is not None) < shown
    app.controls.scrubber.value = 5
    assert app.state.upto_step is None


def test_clicking_a_node_fills_the_details(app: Explorer) -> None:
    app.run(wait=True)
    timelines = [t.name for t in app.outputs.details.data]
    hyps = _node_trace(app, "hypothesis")
    panel_key, node = hyps.customdata[0]
    _click(app, hyps, 0)
    assert app.state.selection is not None
    assert app.state.selection.node == node
    assert [t.name for t in app.outputs.details.data] != timelines
    assert f"node {node}" in app.outputs.selection.value
    assert panel_key in app.outputs.selection.value
    assert len(app.controls.force_token.options) > 1
    app.controls.clear.click()
    assert app.state.selection is None
    assert [t.name for t in app.outputs.details.data] == timelines


def test_a_bad_click_is_reported_not_raised(app: Explorer) -> None:
    app.run(wait=True)
    hyps = _node_trace(app, "hypothesis")
    hyps.customdata = [["#9 nothing", "h0"]]
    _click(app, hyps, 0)
    assert app.state.status.startswith("error: ")
    assert app.state.selection is None


def _force(app: Explorer, panel: int, node: str, token_id: int) -> None:
    """Select ``node`` of panel ``panel``, force ``token_id`` there and wait for the branch."""
    app.select(panel, node)
    app.controls.force_token.value = token_id
    thread = app.force()
    assert thread is not None
    thread.join()
    assert app.state.status.startswith("done: 1 panel")


def _depths(app: Explorer, key: str) -> list[float]:
    """The x (tokens generated) of every tree marker of panel ``key``."""
    return [float(x) for t in app.outputs.tree.data if t.customdata is not None
            for x, row in zip(t.x, t.customdata, strict=True) if x is not None and row[0] == key]


def test_force_and_continue_makes_a_branch_grafted_onto_its_source(app: Explorer) -> None:
    """A branch reads as its source does: the source's prompt, its paths starting with the fixed tokens, its steps
    and its tree from the fork on, and its log-prob and score over the whole path."""
    app.run(wait=True)
    beam = app.state.panels[1]
    assert beam.trace is not None
    hyp = beam.trace.steps[2].hypotheses[0]
    forced = hyp.candidates[3]
    _force(app, beam.id, f"h{hyp.id}", forced.token_id)
    branch = app.state.panels[2]
    assert branch.kind == "branch"
    assert branch.branch is not None
    assert branch.trace is not None
    relation = (branch.branch.source, branch.branch.node, branch.branch.token_id)
    assert relation == (beam.id, f"h{hyp.id}", forced.token_id)
    assert branch.label == f'beam ↳ step 2 "{forced.text.replace(" ", "␣")}"'
    trace = branch.trace
    fixed = (*hyp.token_ids, forced.token_id)
    assert trace.prompt_token_ids == beam.trace.prompt_token_ids
    assert trace.params["max_new_tokens"] == 6
    assert trace.meta["branch"]["decoded_with"]["max_new_tokens"] == 6 - 3
    assert trace.meta["branch"]["token_id"] == forced.token_id
    assert trace.steps[0].index == 3
    assert all(r.token_ids[:3] == fixed for r in trace.results)
    assert check_trace(trace) == []
    assert min(_depths(app, branch.key)) == 3  # the branch's tree starts at its fork, beside its source's
    assert min(_depths(app, beam.key)) == 0
    path = result_path(trace, trace.results[0]).tokens
    assert None not in path
    source_logprob = describe(beam.trace, f"h{hyp.id}").logprob
    assert source_logprob is not None
    fixed_logprob = sum(c.logprob for c in path[:3] if c is not None)
    assert fixed_logprob == pytest.approx(source_logprob + forced.logprob)
    assert trace.meta["branch"]["logprob"] == pytest.approx(fixed_logprob)
    assert trace.meta["branch"]["score"] == pytest.approx(forced.total)
    logprob = sum(c.logprob for c in path if c is not None)
    results = app.panel(2).results.value
    assert f"<td class=\"explorer-logprob\">{logprob:.3f}</td>" in results
    assert f"<td class=\"explorer-score\">{trace.results[0].score:.3f}</td>" in results
    assert "ranked the continuation alone" in results
    assert "branch of #2 beam" in app.panel(2).summary.value
    root = trace.steps[0].hypotheses[0]
    app.select(branch.id, f"h{root.id}")
    line = app.outputs.selection.value
    assert f"step 3 · 3 tokens · log-prob {fixed_logprob:.3f} · score {forced.total:.3f}" in line
    link = re.search(r'href="data:application/json;base64,([^"]+)"', app.panel(2).save.value)
    assert link is not None
    assert load_trace(base64.b64decode(link.group(1)).decode("utf-8")) == trace


def test_a_fork_of_a_fork_starts_where_it_forked(app: Explorer) -> None:
    app.run(wait=True)
    greedy = app.state.panels[0]
    assert greedy.trace is not None
    hyp = greedy.trace.steps[1].hypotheses[0]
    _force(app, greedy.id, f"h{hyp.id}", hyp.candidates[1].token_id)
    first = app.state.panels[1]
    assert first.trace is not None
    assert first.branch is not None
    deeper = first.trace.steps[1].hypotheses[0]
    assert first.trace.steps[1].index == 3
    _force(app, first.id, f"h{deeper.id}", deeper.candidates[2].token_id)
    second = next(p for p in app.state.panels if p.branch is not None and p.branch.source == first.id)
    assert second.trace is not None
    assert second.trace.steps[0].index == 4
    assert second.trace.results[0].token_ids[:4] == (*deeper.token_ids, deeper.candidates[2].token_id)
    assert second.trace.results[0].token_ids[:2] == first.trace.results[0].token_ids[:2]
    assert len(second.trace.results[0].token_ids) == 6
    assert check_trace(second.trace) == []
    assert min(_depths(app, second.key)) == 4
    assert "-</td>" not in app.panel(app.state.panels.index(second)).results.value  # every log-prob is known


def test_force_without_a_selection_says_so(app: Explorer) -> None:
    app.controls.force.click()
    assert visible_error(app.controls.errors["force"]) == "select a node of a tree first"


def test_save_gives_the_trace_as_json(app: Explorer) -> None:
    app.run(wait=True)
    link = app.panel(1).save.value
    match = re.search(r'download="([^"]+)" href="data:application/json;base64,([^"]+)"', link)
    assert match is not None
    assert match.group(1) == "trace-2-beam.json"
    text = base64.b64decode(match.group(2)).decode("utf-8")
    assert load_trace(text) == app.state.panels[1].trace
    json.loads(text)


def _upload(app: Explorer, name: str, content: bytes) -> None:
    app.controls.upload.value = ({"name": name, "type": "application/json", "size": len(content),
                                  "content": memoryview(content),
                                  "last_modified": datetime.now(UTC)},)


def test_loading_a_trace_adds_a_read_only_panel(app: Explorer, tiny: CausalLM) -> None:
    import explorer

    trace = explorer.decode(tiny, "Hello", "diverse", max_new_tokens=3)
    _upload(app, "mine.json", dump_trace(trace).encode())
    loaded = app.state.panels[-1]
    assert loaded.kind == "loaded"
    assert loaded.trace == trace
    assert loaded.label == "mine.json (diverse)"
    assert app.controls.upload.value == ()
    assert app.panel(2).summary in app.panel(2).box.children
    assert app.panel(2).strategy not in app.panel(2).box.children
    assert "#3 mine.json (diverse)" in {row[0] for t in app.outputs.tree.data if t.customdata is not None
                                        for row in t.customdata}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00", "broken.json is not UTF-8 text"),
        (b"/etc/passwd", "broken.json is not a trace: expected a JSON object"),
        (b'{"version": "1.0"}', "broken.json: invalid trace"),
        (b'{"version": ', "broken.json: trace is not valid JSON"),
    ],
)
def test_loading_a_broken_file_shows_an_inline_error(app: Explorer, content: bytes, message: str) -> None:
    _upload(app, "broken.json", content)
    assert visible_error(app.controls.errors["load"]).startswith(message)
    assert len(app.state.panels) == 2


def test_stop_keeps_the_partial_trace_one_after_another(app: Explorer) -> None:
    app.controller.runner.batched = False
    app.controls.max_new_tokens.value = 200
    app.controls.progress.observe(lambda ch: app.controls.stop.click() if ch["new"] == 3 else None, names="value")
    thread = app.run()
    assert thread is not None
    thread.join()
    first, second = app.state.panels
    assert app.state.status.startswith("stopped: 1 of 2 panels, 3 steps")
    assert first.trace is not None
    assert first.trace.stop_reason == "stopped"
    assert len(first.trace.steps) == 3
    assert second.trace is None
    assert "stop: stopped" in app.panel(0).results.value


def test_the_model_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEFAULT_MODEL_ENV, "tiny-random")
    app = Explorer()
    assert app.state.model == "tiny-random"
    assert app.model is not None
    assert app.controls.model.value == "tiny-random"


def test_a_model_that_fails_to_load_is_reported_inline(tmp_path: Any) -> None:
    app = Explorer(str(tmp_path))
    assert app.model is None
    assert "has no config.json" in visible_error(app.controls.errors["model"])
    assert app.run(wait=True) is None
    assert app.state.status.startswith("error: no model is loaded")
    app.controls.model.value = "tiny-random"
    assert app.model is not None
    assert visible_error(app.controls.errors["model"]) == ""


def test_a_refused_run_keeps_the_traces_and_changed_settings_mark_them_stale(app: Explorer) -> None:
    """A Run refused for a bad value keeps every panel's last trace and tables; a panel whose settings changed
    since its run says so, until the next run."""
    assert app.run(wait=True) is not None
    traces = [p.trace for p in app.state.panels]
    assert all(t is not None for t in traces)
    greedy, beam = app.panel(0), app.panel(1)
    assert "stale" not in greedy.results.value
    assert "stale" not in beam.results.value
    beam.knobs["num_beams"].value = 3  # the beam panel's settings change: its trace is stale, greedy's is not
    assert "stale: settings changed since this run" in beam.results.value
    assert "stale" not in greedy.results.value
    app.controls.max_new_tokens.value = 0  # refused: the run does not start
    assert app.run(wait=True) is None
    assert app.state.status.startswith("error: ")
    assert [p.trace for p in app.state.panels] == traces  # nothing lost
    assert "stale" in greedy.results.value  # the budget changed for both
    assert "explorer-result-head" in beam.results.value  # the old results are still shown
    app.controls.max_new_tokens.value = 6
    app.controls.prompt.value = app.state.prompt + " again"
    assert app.run(wait=True) is not None
    assert "stale" not in greedy.results.value
    assert "stale" not in beam.results.value


def test_every_labelled_widget_has_a_tooltip_and_the_status_says_what_it_timed(app: Explorer) -> None:
    """ipywidgets writes a missing tooltip as ``title="null"`` (about a hundred of them on the page); the status
    line gives the decoding time and the time from Run until the page was sent everything."""
    app.run(wait=True)
    shown, todo = [], [app.widget, *(c.box for c in app._panels.values()),
                       *(w for c in app._panels.values() for w in (*c.rows.values(), c.constraint_box))]
    while todo:
        widget = todo.pop()
        shown += [widget] if isinstance(widget, DescriptionWidget) else []
        todo.extend(getattr(widget, "children", ()) or ())
    assert len(shown) > 40
    assert [(type(w).__name__, w.description) for w in shown if w.tooltip is None] == []
    assert re.fullmatch(r"done: 2 panels, 12 steps, decoding \d+\.\d s; \d+\.\d s from Run until sent to the page",
                        app.state.status), app.state.status
    assert app.controls.progress.value == app.controls.progress.max
