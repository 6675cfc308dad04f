"""The constraint view in the app, without a browser: a constrained panel's progress and banks in the details, at the
selected step, linked both ways with the tree; and the raw top-k a recording knob keeps."""

from __future__ import annotations

import re

import pytest
from plotly.callbacks import Points

from explorer.app import Explorer
from explorer.app._banks import banks_html
from explorer.app._nodes import describe
from explorer.invariants import check_trace


@pytest.fixture
def constrained(app: Explorer) -> Explorer:
    """Greedy beside constrained beam search (" flour", 3 beams), run."""
    app.panel(1).strategy.value = "constrained"
    app.panel(1).knobs["num_beams"].value = 3
    app.panel(1).constraints.value = " flour"
    app.run(wait=True)
    assert app.state.status.startswith("done: 2 panels"), app.state.status
    return app


def _banks_step(app: Explorer) -> int:
    match = re.search(r"Banks at step (\d+)", app.outputs.constraints.banks.value)
    assert match is not None
    return int(match.group(1))


def test_a_run_without_constraints_shows_no_constraint_view(app: Explorer) -> None:
    app.run(wait=True)
    assert app.outputs.constraints.box.layout.display == "none"
    assert app.outputs.constraints.figure is None


def test_the_constraint_view_shows_the_last_step_until_a_node_is_selected(constrained: Explorer) -> None:
    app = constrained
    trace = app.state.panels[1].trace
    assert trace is not None
    view = app.outputs.constraints
    assert view.box.layout.display == ""
    assert _banks_step(app) == len(trace.steps) - 1
    fig = view.figure
    assert "#2 constrained · Constraint progress" in fig.layout.title.text
    assert {s.x0 for s in fig.layout.shapes} == {len(trace.steps) - 1}  # a line in each row
    beams = trace.steps[-1].hypotheses
    assert view.banks.value.count("<tr") == len(beams) + 1  # a header, then one row per beam
    for hyp in beams:
        assert hyp.constraint is not None
        assert f"<td>h{hyp.id}" in view.banks.value


def test_selecting_a_node_shows_that_steps_banks_with_the_node_marked(constrained: Explorer) -> None:
    app = constrained
    panel = app.state.panels[1]
    assert panel.trace is not None
    hyp = panel.trace.steps[2].hypotheses[1]
    app.select(panel.id, f"h{hyp.id}")
    assert _banks_step(app) == describe(panel.trace, f"h{hyp.id}").step == 2
    assert re.search(rf"<tr class='explorer-bank-selected'[^>]*><td>{hyp.slot}</td><td>h{hyp.id}\b",
                     app.outputs.constraints.banks.value)
    assert {s.x0 for s in app.outputs.constraints.figure.layout.shapes} == {2}
    # A node of the greedy panel moves the step too, and marks no beam.
    app.select(app.state.panels[0].id, "h3")
    assert _banks_step(app) == describe(app.state.panels[0].trace, "h3").step  # type: ignore[arg-type]
    assert "explorer-bank-selected" not in app.outputs.constraints.banks.value


def test_a_click_in_the_progress_figure_selects_the_node_in_the_tree(constrained: Explorer) -> None:
    app = constrained
    fig = app.outputs.constraints.figure
    dots = next(t for t in fig.data if t.name == "hypothesis" and t.customdata is not None and len(t.customdata) > 3)
    panel_key, node = dots.customdata[3]
    assert panel_key == app.state.panels[1].key
    assert dots._click_callbacks  # the handler plotly's widget calls on a click is attached
    for handler in dots._click_callbacks:
        handler(dots, Points(point_inds=[3], trace_index=0), None)
    assert app.state.selection is not None
    assert (app.state.selection.panel, app.state.selection.node) == (app.state.panels[1].id, node)
    assert _banks_step(app) == describe(app.state.panels[1].trace, node).step  # type: ignore[arg-type]


def test_banks_html_counts_a_complete_constraint(constrained: Explorer) -> None:
    trace = constrained.state.panels[1].trace
    assert trace is not None
    done = next((s, h) for s in trace.steps for h in s.hypotheses if h.constraint and h.constraint.completed)
    text = banks_html(trace, done[0], done[1].id)
    assert "✓ 2/2" in text
    assert "all met" in text
    assert "&lt;" not in text.replace("<", "")  # the token text is escaped, never markup


def test_recorded_candidates_keep_the_models_favourites(app: Explorer) -> None:
    """The recording knob: with 2 candidates and a strong repetition penalty, the model's favourites that the
    penalty pushed out are recorded too, and the candidates chart marks them (tiny-random's first at step 10)."""
    app.controls.max_new_tokens.value = 12
    panel = app.panel(0)
    panel.knobs["record_top_k"].value = 2
    panel.knobs["repetition_penalty"].value = 5.0
    app.run(wait=True)
    trace = app.state.panels[0].trace
    assert trace is not None
    assert trace.params["record_top_k"] == 2
    hyp = next(h for s in trace.steps for h in s.hypotheses
               if any(c.raw_rank is not None and c.raw_rank < 2 <= c.rank for c in h.candidates))
    app.select(app.state.panels[0].id, f"h{hyp.id}")
    processed = app.outputs.details.data[1]
    assert "↓" in list(processed.text)


def test_a_constrained_branch_shows_its_banks_at_its_own_steps(constrained: Explorer) -> None:
    """A branch of a constrained search numbers its steps from its fork: a node of it shows the banks of its step,
    the progress figure is marked there, and the scrubber spans its steps once its source is gone."""
    app = constrained
    source = app.state.panels[1]
    assert source.trace is not None
    hyp = source.trace.steps[2].hypotheses[0]
    app.select(source.id, f"h{hyp.id}")
    thread = app.force(hyp.candidates[1].token_id)
    assert thread is not None
    thread.join()
    branch = app.state.panels[2]
    assert branch.trace is not None
    assert branch.trace.steps[0].index == 3
    assert check_trace(branch.trace) == []
    node = branch.trace.steps[1].hypotheses[0]
    app.select(branch.id, f"h{node.id}")
    assert _banks_step(app) == 4
    assert {s.x0 for s in app.outputs.constraints.figure.layout.shapes} == {4}
    for panel in (0, 0):  # greedy, then the constrained source: the branch is left alone
        app.panel(panel).remove.click()
    assert [p.kind for p in app.state.panels] == ["branch"]
    assert app.controls.scrubber.max == branch.trace.steps[-1].index == 5
