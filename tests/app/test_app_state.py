"""The app's pure parts: state updates, parameter rules, constraint parsing, node descriptions, branch requests."""

from __future__ import annotations

import pytest

import explorer
from explorer.app import state as st
from explorer.app._constraints import constraint_specs, preview_html
from explorer.app._nodes import describe
from explorer.app._params import carry_params, check_params, control_for, default_params, knobs_for, parse_text
from explorer.app._plan import plan_run
from explorer.errors import ParameterError
from explorer.fork import ForkPoint, branch_request
from explorer.models.base import CausalLM


def test_initial_state_has_greedy_and_beam_with_engine_defaults() -> None:
    state = st.initial_state("tiny-random")
    assert [p.strategy for p in state.panels] == ["greedy", "beam"]
    assert state.panels[1].params["num_beams"] == explorer.DecodeParams(num_beams=4).num_beams
    assert all(p.editable and p.trace is None for p in state.panels)


def test_knobs_apply_per_strategy() -> None:
    basic = {p.name for p in knobs_for("greedy") if p.basic}
    assert basic == {"repetition_penalty", "no_repeat_ngram_size", "min_new_tokens"}
    assert {"bad_words_ids", "record_top_k"} <= {p.name for p in knobs_for("greedy")}
    assert "num_beam_groups" in {p.name for p in knobs_for("diverse")}
    assert "temperature" in {p.name for p in knobs_for("beam-sample")}
    assert "temperature" not in {p.name for p in knobs_for("beam")}
    assert default_params("sample")["seed"] is None


def test_changing_strategy_keeps_changed_values_that_still_apply() -> None:
    params = carry_params("beam", {**default_params("beam"), "num_beams": 6, "repetition_penalty": 1.3}, "diverse")
    assert params["num_beams"] == 6
    assert params["repetition_penalty"] == 1.3
    assert params["num_beam_groups"] == 2
    assert "num_beams" not in carry_params("beam", {"num_beams": 6}, "greedy")


def test_an_invalid_knob_gives_an_inline_error_for_that_knob() -> None:
    state = st.initial_state("m", ("diverse",))
    pid = state.panels[0].id
    state = st.set_param(state, pid, "num_beam_groups", 3)
    assert state.panels[0].errors == {
        "num_beam_groups": "num_beam_groups=3 is invalid: expected an integer >= 2 that divides num_beams=4"}
    state = st.set_param(state, pid, "num_beam_groups", 2)
    assert state.panels[0].errors == {}


def test_errors_map_to_controls() -> None:
    assert control_for("max_new_tokens", "beam") == "max_new_tokens"
    assert control_for("constraint", "constrained") == "constraints"
    assert control_for("bad_words_ids", "beam") == "bad_words_ids"
    assert control_for("temperature", "beam") == "panel"  # not a knob of beam panels
    assert check_params("greedy", {"repetition_penalty": 0.0}, 5) == {
        "repetition_penalty": "repetition_penalty=0.0 is invalid: expected a number > 0"}
    assert "max_new_tokens" in check_params("greedy", {}, 0)


def test_optional_knobs_parse_text() -> None:
    assert parse_text("seed", "") is None
    assert parse_text("seed", "12") == 12
    assert parse_text("min_p", "0.1") == 0.1
    assert check_params("sample", {"seed": parse_text("seed", "x")}, 5) == {
        "seed": "seed='x' is invalid: expected an integer >= 0"}


def test_panels_are_limited_and_removable() -> None:
    state = st.initial_state("m")
    for _ in range(5):
        state = st.add_panel(state)
    assert sum(p.editable for p in state.panels) == st.MAX_EDITABLE
    assert "at most 4" in state.errors["panels"]
    state = st.remove_panel(state, state.panels[0].id)
    assert len(state.panels) == 3
    assert "panels" not in state.errors


def test_constraint_lines() -> None:
    assert constraint_specs(" flour\n\n sugar| honey\r\n") == [" flour", [" sugar", " honey"]]
    with pytest.raises(ParameterError, match="constraint option"):
        constraint_specs("a| |b")


def test_constraint_preview_shows_pieces_and_ids(tiny: CausalLM) -> None:
    text, error = preview_html(tiny, " flour")
    assert error == ""
    assert "␣fl" in text
    assert "[832, 461]" in text
    assert preview_html(tiny, "a||b")[1].startswith("constraint option")


def test_a_run_plan_refuses_invalid_panels_and_empty_constraints(tiny: CausalLM) -> None:
    state = st.initial_state(tiny.info.name, ("greedy", "constrained"))
    new, jobs = plan_run(state, tiny)
    assert jobs == []
    assert new.status.startswith("error: ")
    assert "at least one constraint" in new.panels[1].errors["constraints"]
    new, jobs = plan_run(st.set_constraints(state, state.panels[1].id, " flour", ""), tiny)
    assert [j.strategy for j in jobs] == ["greedy", "constrained"]
    assert jobs[1].constraints == [" flour"]
    new, jobs = plan_run(st.set_field(state, prompt="  "), tiny)
    assert jobs == []
    assert "prompt" in new.errors


def test_nodes_and_branch_requests(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, [5, 6, 7], "beam", max_new_tokens=4)
    hyp = trace.steps[2].hypotheses[0]
    info = describe(trace, f"h{hyp.id}")
    assert info.kind == "hypothesis"
    assert info.token_ids == hyp.token_ids
    assert info.step == 2
    cand = hyp.candidates[-1]
    leaf = describe(trace, f"c2.{hyp.id}.{cand.token_id}")
    assert leaf.hypothesis == hyp
    assert leaf.preselect == cand.token_id
    prompt, params, constraints = branch_request(ForkPoint(trace, hyp, cand.token_id))
    assert prompt == (5, 6, 7, *hyp.token_ids, cand.token_id)
    assert params["max_new_tokens"] == 4 - 3
    assert params["num_beams"] == 4
    assert constraints == []
    last = trace.steps[3].hypotheses[0]
    with pytest.raises(ValueError, match="leaves no token"):
        branch_request(ForkPoint(trace, last, last.candidates[0].token_id))
    with pytest.raises(ValueError, match="not a recorded candidate"):
        branch_request(ForkPoint(trace, hyp, 10**6))
    with pytest.raises(KeyError):
        describe(trace, "h9999")


def test_panel_numbers_stay_small_as_panels_come_and_go() -> None:
    """A new panel takes the smallest free number (not #7, #8 after a few removals), never one a branch names as
    its source."""
    state = st.initial_state("m", ("greedy", "beam", "diverse"))
    assert [p.id for p in state.panels] == [1, 2, 3]
    state = st.remove_panel(st.remove_panel(state, 2), 3)
    state = st.add_panel(st.add_panel(state, "beam"), "diverse")
    assert [p.key for p in state.panels] == ["#1 greedy", "#2 beam", "#3 diverse"]
    source = state.panels[1]
    branch = st.Branch(source.id, "h3", 1, 5, "x", 2)
    state = st.add_branch(state, source, branch, dict(source.params))
    assert [p.id for p in state.panels] == [1, 2, 4, 3]
    assert state.next_id - 1 == 4  # the branch just added: the fork's job is its panel
    state = st.add_panel(st.remove_panel(state, 2), "sample")  # #2 is gone, but its branch still names it
    assert [p.id for p in state.panels] == [1, 4, 3, 5]


def test_the_progress_bar_empties_after_an_error() -> None:
    state = st.start_run(st.initial_state("m"), (1, 2), 40, "running")
    assert st.finish_run(st.set_progress(state, 40), "done: 2 panels").progress == (40, 40)
    assert st.finish_run(st.set_progress(state, 13), "error: out of memory").progress == (0, 40)
