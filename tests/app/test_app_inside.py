"""Inside the model in the app, without a browser: DoLa's and contrastive search's knobs and their inline errors,
their figures in the details at the selected step, the logit lens of a clicked node and along a result."""

from __future__ import annotations

from typing import Any

import pytest
from widget_text import shown_text, visible_error

from explorer.app import Explorer
from explorer.app._nodes import describe
from explorer.models.base import CausalLM
from explorer.models.table import TableModel


def _basic(app: Explorer, index: int) -> list[str]:
    """The basic knobs of a panel, in order, with their section titles (``<search>``)."""
    panel = app.panel(index)
    out = []
    for child in panel.basic_box.children:
        if child in panel.titles.values():
            out.append(f"<{shown_text(child)}>")
        else:
            out.append(next(name for name, row in panel.rows.items() if row is child))
    return out


def _shown(app: Explorer) -> list[str]:
    """The inside figures shown (not hidden), by role, in order."""
    inside = app.outputs.inside
    return [next(role for role, box in inside.holders.items() if box is child) for child in inside.side.children
            if child.layout.display != "none"]


def _node_at_step(app: Explorer, panel_index: int, step: int) -> str:
    """A hypothesis node of a panel's tree whose decision is step ``step``."""
    trace = app.state.panels[panel_index].trace
    assert trace is not None
    return next(f"h{h.id}" for s in trace.steps for h in s.hypotheses if describe(trace, f"h{h.id}").step == step)


@pytest.fixture
def inside(app: Explorer) -> Explorer:
    """Greedy beside DoLa (layers 0 and 1 of tiny-random) and contrastive search, run."""
    app.panel(1).strategy.value = "dola"
    app.panel(1).knobs["dola_layers"].value = "0, 1"
    app.controls.add.click()
    app.panel(2).strategy.value = "contrastive"
    app.run(wait=True)
    assert app.state.status.startswith("done: 3 panels"), app.state.status
    return app


def test_dola_shows_its_layers_knob_as_text(app: Explorer) -> None:
    app.panel(1).strategy.value = "dola"
    assert _basic(app, 1)[:2] == ["<search>", "dola_layers"]
    knob = app.panel(1).knobs["dola_layers"]
    assert knob.value == "high"
    for text, value in (("low", "low"), (" 0, 1", (0, 1)), ("[1]", (1,)), ("High", "high")):
        knob.value = text
        assert app.state.panels[1].params["dola_layers"] == value
        assert app.state.panels[1].errors == {}


def test_contrastive_shows_alpha_and_top_k_as_search_knobs(app: Explorer) -> None:
    app.panel(1).strategy.value = "contrastive"
    basic = _basic(app, 1)
    assert basic[:3] == ["<search>", "penalty_alpha", "top_k"]
    assert "<sampling warpers>" not in basic
    knobs = app.panel(1).knobs
    assert (knobs["penalty_alpha"].value, knobs["top_k"].value) == (0.6, 4)
    assert knobs["top_k"].description == "top-k candidates"
    app.panel(1).strategy.value = "sample"  # the same knob, a sampling warper again, off by default
    assert "top_k" in _basic(app, 1)[_basic(app, 1).index("<sampling warpers>"):]
    assert (knobs["top_k"].value, knobs["top_k"].description) == (0, "top-k (0 = off)")


@pytest.mark.parametrize(("strategy", "knob", "value", "message"), [
    ("dola", "dola_layers", "1, 5", "dola_layers='1,5' is invalid: expected layer indices from 0 to 1 (tiny-random "
                                    "has 2 layers; 5 is outside)"),
    ("dola", "dola_layers", "middle", "dola_layers='middle' is invalid: expected high, low or layer indices"),
    ("contrastive", "penalty_alpha", 1.5, "penalty_alpha=1.5 is invalid"),
    ("contrastive", "penalty_alpha", -0.1, "penalty_alpha=-0.1 is invalid"),
    ("contrastive", "top_k", 1, "top_k=1 is invalid: expected an integer >= 2 for contrastive search"),
])
def test_bad_values_are_one_line_inline_errors_and_nothing_runs(app: Explorer, strategy: str, knob: str,
                                                                 value: Any, message: str) -> None:
    panel = app.panel(1)
    panel.strategy.value = strategy
    panel.knobs[knob].value = value
    shown = visible_error(panel.errors[knob])
    assert shown.startswith(message), shown
    assert "\n" not in shown
    assert app.run(wait=True) is None
    assert app.state.status == f"error: {shown}"
    assert all(p.trace is None for p in app.state.panels)


def test_a_model_change_rechecks_what_the_model_refuses(app: Explorer) -> None:
    panel = app.panel(1)
    panel.strategy.value = "dola"
    panel.knobs["dola_layers"].value = "0, 1"
    assert app.state.panels[1].errors == {}
    app.controller.on_model("toy:how-to-generate")  # a next-token table: no layers to read
    assert visible_error(panel.errors["strategy"]).startswith(
        "strategy='dola' is invalid: expected a model with layers: toy:how-to-generate has none to read")
    assert app.run(wait=True) is None
    app.controller.on_model("tiny-random")
    assert app.state.panels[1].errors == {}
    panel.knobs["dola_layers"].value = "2"
    assert visible_error(panel.errors["dola_layers"]).startswith("dola_layers='2' is invalid")


def test_dola_beside_greedy_shows_its_figures_at_the_clicked_step(inside: Explorer) -> None:
    app = inside
    dola = app.state.panels[1].trace
    assert dola is not None
    assert _shown(app) == ["dola_layers", "dola_contrast", "contrastive"]
    figures = app.outputs.inside.figures
    star = next(t for t in figures["dola_layers"].data if t.meta == "chosen")
    assert list(star.y) == [s.dola.chosen_layer for s in dola.steps if s.dola]
    assert "#2 dola · DoLa's layer choice" in figures["dola_layers"].layout.title.text
    assert "DoLa at step 0:" in figures["dola_contrast"].layout.title.text
    # A click on a node of the greedy panel selects its step in the DoLa and contrastive figures too.
    app.select(app.state.panels[0].id, _node_at_step(app, 0, 3))
    step = dola.steps[3].dola
    assert step is not None
    title = figures["dola_contrast"].layout.title.text
    assert f"DoLa at step 3: final layer {step.final_layer} contrasted with layer {step.chosen_layer}" in title
    cut = next(t for t in figures["dola_contrast"].data if t.meta == "cut")
    assert list(cut.customdata) == [c.token_id for c in step.candidates if not c.plausible]
    assert "Contrastive search at step 3" in figures["contrastive"].layout.title.text


def test_contrastive_figure_follows_the_selected_step(inside: Explorer) -> None:
    app = inside
    trace = app.state.panels[2].trace
    assert trace is not None
    for step in (1, 4):
        app.select(app.state.panels[2].id, _node_at_step(app, 2, step))
        record = trace.steps[step].contrastive
        assert record is not None
        fig = app.outputs.inside.figures["contrastive"]
        assert fig.layout.title.text.startswith(f"#3 contrastive · Contrastive search at step {step}")
        chosen = next(t for t in fig.data if t.meta == "chosen")
        assert list(chosen.customdata) == [record.chosen]
        iso = sorted(t.customdata[0] for t in fig.data if t.meta == "iso")
        assert iso == pytest.approx(sorted(c.score for c in record.candidates))
        hover = " ".join(chosen.hovertext)
        assert f"position {record.candidates[record.chosen].similar_to} " in hover
        assert "#" not in hover.split("most like position")[1].split("</b>")[0]  # spelled by the model's tokenizer


def test_a_clicked_node_gets_its_logit_lens(inside: Explorer, tiny: CausalLM) -> None:
    app = inside
    assert "click a node" in shown_text(app.outputs.inside.lens_note)
    node = _node_at_step(app, 0, 2)
    app.select(app.state.panels[0].id, node)
    lens = app.state.lens
    assert lens is not None
    assert lens.lens is not None
    trace = app.state.panels[0].trace
    assert trace is not None
    info = describe(trace, node)
    assert lens.lens.token_ids == (*trace.prompt_token_ids, *info.token_ids)
    assert lens.lens.token == trace.results[0].token_ids[2]  # the token greedy took next from there
    assert [layer.layer for layer in lens.lens.layers] == [0, 1, 2]
    assert _shown(app)[-1] == "lens"
    fig = app.outputs.inside.figures["lens"]
    top = next(t for t in fig.data if t.meta == "top")
    assert [row[0] for row in top.z] == pytest.approx([layer.top[0][2] for layer in lens.lens.layers])
    assert f"node {node}" in fig.layout.title.text
    assert shown_text(app.outputs.inside.lens_note).startswith(f"logit lens at node {node}: one forward, ")
    app.controls.clear.click()
    assert _shown(app)[-1] != "lens"


def test_a_click_draws_the_details_before_the_lens_and_the_last_click_wins(inside: Explorer) -> None:
    """A click (``wait=False``, as the tree's click handler selects) returns with the node's details drawn and its
    lens pending; the lens follows from a thread. Of two quick clicks only the second node's lens is shown."""
    app = inside
    panel = app.state.panels[0]
    first, second = _node_at_step(app, 0, 1), _node_at_step(app, 0, 3)
    thread = app.select(panel.id, first, wait=False)
    assert thread is not None
    lens = app.state.lens
    assert lens is not None
    assert lens.pending
    assert lens.lens is None
    assert f"node {first}" in app.outputs.selection.value
    later = app.select(panel.id, second, wait=False)
    assert later is not None
    thread.join(30)
    later.join(30)
    lens = app.state.lens
    assert lens is not None
    assert lens.lens is not None
    assert lens.selection.node == second
    trace = panel.trace
    assert trace is not None
    assert lens.lens.token_ids == (*trace.prompt_token_ids, *describe(trace, second).token_ids)


def test_a_lens_that_fails_says_so(inside: Explorer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while reading a node's lens (in its thread) ends as a one-line note, never "reading" for ever."""
    from explorer.app import controller

    def broken(*_args: object) -> None:
        raise RuntimeError("the forward failed")

    monkeypatch.setattr(controller, "node_lens", broken)
    app = inside
    thread = app.select(app.state.panels[0].id, _node_at_step(app, 0, 1), wait=False)
    assert thread is not None
    thread.join(30)
    lens = app.state.lens
    assert lens is not None
    assert not lens.pending
    assert lens.note == "no logit lens: the forward failed"


def test_the_lens_along_a_result_on_request(inside: Explorer) -> None:
    app = inside
    button = app.outputs.inside.grid_button
    assert button.description == "logit lens along the result of #1 greedy"
    holder = app.outputs.inside.holders["grid"]
    assert holder.layout.display == "none"
    app.select(app.state.panels[1].id, _node_at_step(app, 1, 1))
    assert button.description == "logit lens along the result of #2 dola"
    button.click()
    grid = app.state.grid
    assert grid is not None
    assert grid.grid is not None
    dola = app.state.panels[1].trace
    assert dola is not None
    assert grid.grid.tokens == dola.results[0].token_ids
    fig = app.outputs.inside.figures["grid"]
    assert app.outputs.inside.grid_box.children == (holder,)
    assert holder.children == (fig,)
    assert holder.layout.display != "none"
    assert next(t for t in fig.data if t.meta == "lens").z.shape == (3, len(dola.results[0].token_ids))
    assert app.state.status.startswith("logit lens along #2 dola: ")
    app.run(wait=True)  # a new run: the old lens is gone
    assert holder.layout.display == "none"


def test_a_model_without_layers_gets_a_one_line_note(toy: TableModel) -> None:
    app = Explorer(toy)
    app.controls.prompt.value = "The"
    app.controls.max_new_tokens.value = 3
    app.run(wait=True)
    assert app.state.status.startswith("done"), app.state.status
    assert _shown(app) == []
    app.select(app.state.panels[0].id, "h0")
    note = shown_text(app.outputs.inside.lens_note)
    assert note == "no logit lens: toy-how-to-generate has no layers to read (a next-token table)"
    assert "explorer-lens-refused" in app.outputs.inside.lens_note.value
    app.outputs.inside.grid_button.click()
    assert shown_text(app.outputs.inside.grid_note) == note
    assert app.outputs.inside.holders["grid"].layout.display == "none"


def test_no_plotly_widget_comes_with_the_page(app: Explorer) -> None:
    """The inside views' figure widgets are made after the first run, all at once (see ``explorer.app._inside``)."""
    inside = app.outputs.inside
    assert inside.figures == {}
    assert inside.box.layout.display == "none"
    app.run(wait=True)
    assert set(inside.figures) == {"dola_layers", "dola_contrast", "contrastive", "lens", "grid"}
    assert inside.box.layout.display == ""
    assert all(holder.layout.display == "none" for holder in inside.holders.values())  # greedy and beam: nothing
