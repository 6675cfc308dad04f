"""Exercise checks and grading helpers: right answers pass, wrong ones fail, no answer gives a hint."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest

import explorer
from explorer import teaching
from explorer.figures._theme import blend, contrast_ratio
from explorer.models.base import CausalLM
from explorer.trace import Trace


@pytest.fixture(scope="module")
def d2l() -> CausalLM:
    return explorer.load_model("toy:d2l-beam")


@pytest.fixture(scope="module")
def beam(d2l: CausalLM) -> Trace:
    return explorer.decode(d2l, "<s>", "beam", num_beams=2, max_new_tokens=5, length_penalty=0.0)


def test_feedback_shows_right_wrong_and_pending() -> None:
    right = teaching.Feedback(True, "yes")
    wrong = teaching.Feedback(False, "no <b>")
    pending = teaching.Feedback(False, "no answer yet", answered=False)
    for feedback, truth, mark, verdict in ((right, True, "✓", "right"), (wrong, False, "✗", "wrong"),
                                           (pending, False, "…", "pending")):
        assert bool(feedback) is truth
        assert str(feedback).startswith(mark)
        assert feedback.verdict == verdict
        assert f"solid {teaching.FEEDBACK_COLORS[verdict]}" in feedback._repr_html_()
        assert "color:" not in feedback._repr_html_()  # the text keeps the page's colour, light or dark
    assert "&lt;b&gt;" in wrong._repr_html_()
    assert len(set(teaching.FEEDBACK_COLORS.values())) == 3


@pytest.mark.parametrize("verdict", ["right", "wrong", "pending"])
def test_feedback_reads_on_a_light_and_a_dark_page(verdict: str) -> None:
    """The verdict's bar holds 3:1 (a graphical object) on both pages, and the text, in each page's own colour, 4.5:1
    on the verdict's tint."""
    colour = teaching.FEEDBACK_COLORS[verdict]
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    for page, ink in (("#FFFFFF", "rgba(0,0,0,0.87)"), ("#111111", "rgba(255,255,255,0.87)")):
        assert contrast_ratio(colour, page) >= 3.0, (verdict, page)
        tint = blend(f"rgba({r},{g},{b},0.14)", page)
        assert contrast_ratio(ink, tint) >= 4.5, (verdict, page)


def test_every_check_gives_a_hint_for_no_answer(d2l: CausalLM, beam: Trace) -> None:
    calls = {
        "check_best_probability": (beam,), "check_live_hypotheses": (beam, 1), "check_survivor": (d2l, beam, 1),
        "check_divergence_step": (beam, beam), "check_result_text": (beam,), "check_steps_run": (beam,),
        "check_processed_probability": (beam, "A"), "check_surviving_tokens": (beam, 0, "top_k"),
        "check_distinct_results": (beam,), "check_penalty": (beam, 0, 0, 1), "check_completion_step": (beam,),
        "check_forced_token": (beam, 0), "check_constraints_satisfied": (beam,), "check_group_result": (beam, 0),
        "check_pruned_token": (beam, 0),
    }
    checks = {name for name, fn in inspect.getmembers(teaching, inspect.isfunction)
              if name.startswith("check_") and "answer" in inspect.signature(fn).parameters}
    assert checks == set(calls)
    for name, args in calls.items():
        feedback = getattr(teaching, name)(*args, answer=None)
        assert not feedback.answered, name
        assert "Hint" in feedback.message, name


def test_probability_and_divergence(d2l: CausalLM, beam: Trace) -> None:
    greedy = explorer.decode(d2l, "<s>", "greedy", max_new_tokens=5)
    assert math.exp(teaching.result_logprob(beam)) == pytest.approx(0.054)
    assert teaching.check_best_probability(beam, 0.054)
    assert not teaching.check_best_probability(beam, 0.048)
    not_a_number = teaching.check_best_probability(beam, "0.054")  # type: ignore[arg-type]
    assert not not_a_number
    assert "expected a probability" in not_a_number.message
    assert teaching.divergence_step(greedy, beam) == 1  # A B C vs A C B
    assert teaching.divergence_step(beam, beam) is None
    assert teaching.check_divergence_step(greedy, beam, 1)
    assert not teaching.check_divergence_step(greedy, beam, 2)


def test_length_penalised_results_keep_their_summed_log_prob(d2l: CausalLM) -> None:
    run = explorer.decode(d2l, "<s>", "beam", num_beams=2, max_new_tokens=5, length_penalty=1.0)
    assert math.exp(teaching.result_logprob(run)) == pytest.approx(0.054)
    assert run.results[0].score == pytest.approx(math.log(0.054) / 4)


def test_a_handed_in_trace_reproduces_and_an_edited_one_does_not(d2l: CausalLM) -> None:
    tiny = explorer.load_model("tiny-random")
    for trace in (
        explorer.decode(tiny, "Hello there", "sample", seed=5, max_new_tokens=4, num_return_sequences=3),
        explorer.decode(tiny, "Hello there", "constrained", constraints=[" the", [" a", " an"]], max_new_tokens=6),
        explorer.decode(tiny, "Hi", "diverse", max_new_tokens=4, no_repeat_ngram_size=2, bad_words=[" the"]),
    ):
        loaded = Trace.from_json(trace.to_json())
        assert teaching.check_reproduces(tiny, loaded), trace.strategy
    first = trace.results[0]
    edited = dataclasses.replace(trace, results=(dataclasses.replace(first, score=first.score + 0.5),))
    assert not teaching.check_reproduces(tiny, edited)
    assert not teaching.check_reproduces(d2l, trace)  # made with another model
