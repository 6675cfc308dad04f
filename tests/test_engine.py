"""Every strategy on the tiny model: traces keep their invariants, record what was selected, and reproduce."""

from __future__ import annotations

import math
from typing import Any

import pytest

import explorer
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.strategies import get
from explorer.trace import Hypothesis, Trace

PROMPT = [5, 6, 7, 8, 9]
RUNS: list[tuple[str, dict[str, Any]]] = [
    ("greedy", {}),
    ("greedy", {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "min_new_tokens": 4}),
    ("sample", {"seed": 3, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "num_return_sequences": 3}),
    ("sample", {"seed": 4, "min_p": 0.05, "typical_p": 0.9}),
    ("beam", {"num_beams": 4, "num_return_sequences": 3}),
    ("beam", {"num_beams": 3, "length_penalty": 0.0, "early_stopping": True, "repetition_penalty": 1.2}),
    ("beam", {"num_beams": 5, "length_penalty": 2.0, "early_stopping": "never", "no_repeat_ngram_size": 3}),
    ("beam-sample", {"num_beams": 3, "seed": 5, "temperature": 1.2}),
    ("diverse", {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 0.7, "num_return_sequences": 4}),
    ("constrained", {"num_beams": 4, "constraints": [[400, 401], [[500, 501], [77]]]}),
]


RECORD_TOP_K = 10  # the default: candidates recorded per hypothesis, besides the selected ones


def _fates_agree(trace: Trace, hyp: Hypothesis, max_new_tokens: int) -> None:
    """Each candidate's fate matches its numbers: masked exactly when its score is -inf, a child exactly when kept
    or finished, and finished (not kept) exactly when its token is eos or the last one allowed."""
    for c in hyp.candidates:
        assert (c.fate == "masked") == (c.score == -math.inf), c
        assert (c.child is not None) == (c.fate in ("kept", "finished")), c
        if c.fate in ("kept", "finished"):
            ends = c.token_id in trace.eos_token_ids or len(hyp.token_ids) + 1 == max_new_tokens
            assert (c.fate == "finished") == ends, c


@pytest.mark.parametrize(("strategy", "params"), RUNS)
def test_invariants_hold(tiny: CausalLM, strategy: str, params: dict[str, Any]) -> None:
    trace = explorer.decode(tiny, PROMPT, strategy, max_new_tokens=12, **params)
    assert check_trace(trace) == []
    assert trace.results
    assert len(trace.steps) <= 12
    for step in trace.steps:
        assert step.hypotheses
        for hyp in step.hypotheses:
            ranks = [c.rank for c in hyp.candidates]
            assert ranks[:RECORD_TOP_K] == list(range(RECORD_TOP_K))  # the vocabulary's best tokens, best first
            assert all(rank >= RECORD_TOP_K for rank in ranks[RECORD_TOP_K:])  # then selected ones from further
            _fates_agree(trace, hyp, 12)
            picked = [c for c in hyp.candidates if c.fate in ("kept", "finished")]
            if get(strategy).family == "rows":
                assert len(picked) == 1  # one row, one token drawn
            if strategy == "greedy":
                assert picked == [hyp.candidates[0]]  # the argmax, rank 0


@pytest.mark.parametrize(("strategy", "params"), RUNS)
def test_same_input_same_trace(tiny: CausalLM, strategy: str, params: dict[str, Any]) -> None:
    a = explorer.decode(tiny, PROMPT, strategy, max_new_tokens=6, **params)
    b = explorer.decode(tiny, PROMPT, strategy, max_new_tokens=6, **params)
    strip = [[(h.id, h.token_ids, h.score, h.candidates) for h in s.hypotheses] for s in a.steps]
    assert strip == [[(h.id, h.token_ids, h.score, h.candidates) for h in s.hypotheses] for s in b.steps]
    assert a.results == b.results


def test_record_top_k_bounds_candidates_but_keeps_the_selected(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, "beam", num_beams=4, max_new_tokens=6, record_top_k=0)
    assert check_trace(trace) == []
    for step in trace.steps:
        for hyp in step.hypotheses:
            assert all(c.fate in ("kept", "finished", "pruned") for c in hyp.candidates)
    wide = explorer.decode(tiny, PROMPT, "beam", num_beams=4, max_new_tokens=6, record_top_k=25)
    assert all(len(h.candidates) >= 25 for s in wide.steps for h in s.hypotheses)


def test_processor_adjustments_are_recorded(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, "beam", num_beams=2, max_new_tokens=8, repetition_penalty=2.0)
    assert trace.processors == ("repetition_penalty",)
    seen = set(PROMPT)
    changed = [c for s in trace.steps for h in s.hypotheses for c in h.candidates
               if c.token_id in seen | set(h.token_ids)]
    assert changed, "a repeated token should appear among the candidates"
    for c in changed:
        (name, change), = c.adjustments
        assert name == "repetition_penalty"
        assert change == pytest.approx(c.logprob, rel=1e-5)  # log-prob doubled: the change equals it


def test_masked_candidates_name_their_processor(tiny: CausalLM) -> None:
    prompt = [5, 6, 5]  # after the last 5, token 6 would repeat the bigram (5, 6)
    trace = explorer.decode(tiny, prompt, "greedy", max_new_tokens=4, no_repeat_ngram_size=2, record_top_k=1000)
    masked = []
    for step in trace.steps:
        for hyp in step.hypotheses:
            seq = [*prompt, *hyp.token_ids]
            banned = {seq[i + 1] for i in range(len(seq) - 1) if seq[i] == seq[-1]}
            here = [c for c in hyp.candidates if c.fate == "masked"]
            assert {c.token_id for c in here} == banned  # the whole vocabulary is recorded: every ban shows
            masked += here
    assert [c.token_id for c in masked] == [6]
    for c in masked:
        assert c.reason == "masked by no_repeat_ngram"
        assert c.score == -math.inf
        assert c.adjustments == (("no_repeat_ngram", -math.inf),)


def test_greedy_equals_beam_with_one_beam_without_eos(tiny: CausalLM) -> None:
    greedy = explorer.decode(tiny, PROMPT, "greedy", max_new_tokens=10)
    beam = explorer.decode(tiny, PROMPT, "beam", num_beams=1, max_new_tokens=10, length_penalty=0.0)
    assert greedy.results[0].token_ids == beam.results[0].token_ids
    assert greedy.results[0].score == pytest.approx(beam.results[0].score, abs=1e-4)


def test_on_step_sees_every_step_and_should_stop_ends_early(tiny: CausalLM) -> None:
    seen: list[int] = []
    trace = explorer.decode(tiny, PROMPT, "beam", max_new_tokens=10, on_step=lambda s: seen.append(s.index),
                            should_stop=lambda: len(seen) >= 3)
    assert seen == [0, 1, 2]
    assert trace.stop_reason == "stopped"
    assert len(trace.steps) == 3


def test_timing_is_recorded(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, "beam", max_new_tokens=5)
    assert trace.total_ms > 0
    assert all(s.forward_ms > 0 and s.search_ms > 0 for s in trace.steps)


def test_text_prompt_and_chat(tiny: CausalLM) -> None:
    plain = explorer.decode(tiny, "Hello there", "greedy", max_new_tokens=3)
    chat = explorer.decode(tiny, "Hello there", "greedy", chat=True, max_new_tokens=3)
    assert plain.prompt_token_ids == tuple(tiny.tokenizer.encode("Hello there"))
    assert len(chat.prompt_token_ids) > len(plain.prompt_token_ids)
    assert chat.params["chat"] is True


def test_constraints_given_as_text_are_tokenized_as_written(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, "The cake needs", "constrained", constraints=[" flour"], max_new_tokens=8)
    assert trace.constraints[0]["token_ids"] == tiny.tokenizer.encode(" flour")
    assert trace.constraints[0]["text"] == " flour"
    progress = [h.constraint for s in trace.steps for h in s.hypotheses]
    assert all(p is not None for p in progress)


@pytest.mark.parametrize(("strategy", "params"), RUNS)
def test_a_stopped_run_keeps_its_partial_trace_and_results(
    tiny: CausalLM, strategy: str, params: dict[str, Any]
) -> None:
    steps: list[int] = []
    trace = explorer.decode(tiny, PROMPT, strategy, max_new_tokens=12, on_step=lambda s: steps.append(s.index),
                            should_stop=lambda: len(steps) >= 3, **params)
    assert trace.stop_reason == "stopped"
    assert len(trace.steps) == 3
    assert trace.results
    assert all(len(r.token_ids) <= 3 for r in trace.results)
    assert check_trace(trace) == []


# --- runs that leave nothing to choose, and overflowing parameters (one clear line, never NaN) ----------------------


def test_greedy_with_every_token_masked_is_one_clear_error() -> None:
    """toy:constrained knows only eos after two tokens; min_new_tokens=7 masks it: nothing is left at step 2."""
    toy = explorer.load_model("toy:constrained")
    with pytest.raises(explorer.ExplorerError) as info:
        explorer.decode(toy, toy.prompt, "greedy", max_new_tokens=8, min_new_tokens=7)  # type: ignore[attr-defined]
    assert str(info.value) == "nothing to choose at step 2: every token is masked (processors: min_new_tokens)"


def test_beam_search_with_every_beam_masked_is_one_clear_error() -> None:
    """The reference ends such a search with its -1e9 placeholders as results (prompt and padding): here the step
    that has nothing to choose says so, as greedy and sampling do."""
    toy = explorer.load_model("toy:how-to-generate")
    with pytest.raises(explorer.ExplorerError, match=r"^nothing to choose at step 2: every token is masked"):
        explorer.decode(toy, "The", "beam", num_beams=1, max_new_tokens=9, min_new_tokens=8)
    with pytest.raises(explorer.ExplorerError, match=r"^nothing to sample at step 2: every token is masked"):
        explorer.decode(toy, "The", "beam-sample", num_beams=2, max_new_tokens=9, min_new_tokens=8, seed=0)


def test_a_beam_with_a_way_out_still_runs(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, "beam", num_beams=3, max_new_tokens=6, min_new_tokens=6)
    assert trace.results
    assert check_trace(trace) == []


def test_a_length_penalty_that_would_overflow_is_refused(tiny: CausalLM) -> None:
    """length ** 400 overflows a float for 8 tokens (the reference raises OverflowError): [-5, 5] is allowed."""
    with pytest.raises(explorer.ParameterError) as info:
        explorer.decode(tiny, PROMPT, "beam", max_new_tokens=8, length_penalty=400)
    assert str(info.value) == "length_penalty=400 is invalid: expected a number in [-5, 5]"
    trace = explorer.decode(tiny, PROMPT, "beam", max_new_tokens=8, length_penalty=-5)
    assert all(math.isfinite(r.score) for r in trace.results)
