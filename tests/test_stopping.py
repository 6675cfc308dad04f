"""Stop strings and the time limit in every strategy: why a row or the search stops, what the trace keeps."""

from __future__ import annotations

from typing import Any

import pytest

import explorer
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.stopping import StopStrings

PROMPT = [5, 6, 7, 8]
TEXTS = {1: "The", 2: " st", 3: "opped", 4: " at", 5: "stop", 6: "unstop", 7: "s", 8: "to", 9: "p"}


@pytest.mark.parametrize(
    ("ids", "hit"),
    [([1, 2, 3], True), ([1, 2, 3, 4], False), ([5], True), ([6], True), ([7, 8, 9], True), ([1, 7, 8], False),
     ([1, 8, 9], False)],
)
def test_a_stop_string_must_end_in_the_newest_token(ids: list[int], hit: bool) -> None:
    assert StopStrings(("stop",), TEXTS.__getitem__).hit(ids) is hit


def test_a_stop_string_may_start_in_the_prompt() -> None:
    assert StopStrings(("The st",), TEXTS.__getitem__).hit([1, 2])


def _first_tokens(tiny: CausalLM, strategy: str, **params: Any) -> str:
    """The text of the first result without stop strings (to pick a stop string the run will meet)."""
    return explorer.decode(tiny, PROMPT, strategy, max_new_tokens=12, **params).results[0].text


def test_greedy_and_sample_end_the_row_on_a_stop_string(tiny: CausalLM) -> None:
    text = _first_tokens(tiny, "greedy")
    stop = text[6:9]  # met after a few tokens
    trace = explorer.decode(tiny, PROMPT, "greedy", max_new_tokens=12, stop_strings=[stop])
    best = trace.results[0]
    assert stop in best.text
    assert not best.ended_with_eos
    assert trace.stop_reason == "stop_string"
    assert [f.reason for s in trace.steps for f in s.finished] == ["stop_string"]
    assert len(trace.steps) < 12
    assert check_trace(trace) == []
    sampled = explorer.decode(tiny, PROMPT, "sample", seed=3, num_return_sequences=3, max_new_tokens=12,
                              stop_strings=["a", "e"])
    assert all(f.reason in ("stop_string", "max_length", "eos") for s in sampled.steps for f in s.finished)
    assert check_trace(sampled) == []


def test_beam_search_treats_a_stop_string_like_eos(tiny: CausalLM) -> None:
    text = _first_tokens(tiny, "beam", num_beams=3)
    trace = explorer.decode(tiny, PROMPT, "beam", num_beams=3, max_new_tokens=12, stop_strings=[text[4:7]])
    reasons = {f.reason for s in trace.steps for f in s.finished}
    assert "stop_string" in reasons
    assert check_trace(trace) == []


@pytest.mark.parametrize(("strategy", "params"), [
    ("greedy", {}), ("sample", {"seed": 1, "num_return_sequences": 2}), ("beam", {"num_beams": 3}),
    ("beam-sample", {"num_beams": 2, "seed": 2}), ("diverse", {}), ("constrained", {"constraints": [[400, 401]]}),
])
def test_a_time_limit_ends_the_run_after_its_first_step(tiny: CausalLM, strategy: str, params: dict[str, Any]) -> None:
    """A limit already spent when the first step is checked (as the reference checks it: after the first token):
    every strategy stops there with results, and the trace holds that step."""
    trace = explorer.decode(tiny, PROMPT, strategy, max_new_tokens=10, max_time=1e-9, **params)
    assert trace.stop_reason == "max_time"
    assert len(trace.steps) == 1
    assert trace.results
    assert all(len(r.token_ids) == 1 for r in trace.results)
    assert check_trace(trace) == []


@pytest.mark.slow
def test_a_time_limit_keeps_the_partial_trace_on_smollm2(smollm2: CausalLM) -> None:
    """How far a run gets is not deterministic: what it keeps is."""
    trace = explorer.decode(smollm2, "Tell me a long story about bread.", "beam", chat=True, num_beams=4,
                            max_new_tokens=200, min_new_tokens=200, max_time=1.0)
    assert trace.stop_reason == "max_time"
    assert 1 <= len(trace.steps) < 200
    assert len(trace.results) == 1
    assert trace.steps[-1].finished  # the last step's continuations ended there, as the reference ends them
    assert {f.reason for f in trace.steps[-1].finished} == {"max_time"}
    assert check_trace(trace) == []
    assert explorer.Trace.from_json(trace.to_json()) == trace


@pytest.mark.parametrize(("strategy", "params"), [("diverse", {}), ("constrained", {"constraints": [[400, 401]]})])
def test_group_and_constrained_search_stop_only_when_every_row_stops(
    tiny: CausalLM, strategy: str, params: dict[str, Any]
) -> None:
    """As the reference (all(stopping_criteria)): one stopping row does not end the search; every row does."""
    plain = explorer.decode(tiny, PROMPT, strategy, max_new_tokens=8, **params)
    first = plain.steps[0].hypotheses[0].candidates[0]  # the best row's first token stops it, not the others
    some = explorer.decode(tiny, PROMPT, strategy, max_new_tokens=8, stop_strings=[first.text], **params)
    rows = [c for h in some.steps[0].hypotheses for c in h.candidates if c.fate == "kept"]
    assert any(c.text == first.text for c in rows)
    assert not all(first.text in c.text for c in rows)
    assert (some.stop_reason, len(some.steps)) == (plain.stop_reason, len(plain.steps))
    every = explorer.decode(tiny, PROMPT, strategy, max_new_tokens=8, stop_strings=list("abcdefghijklmnopqrstuvwxyz"),
                            **params)
    assert every.stop_reason == "stop_string"
    assert len(every.steps) < 8
    assert every.results
    assert check_trace(every) == []
