"""Exercise checks and grading helpers: right answers pass, wrong ones fail, no answer gives a hint."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import explorer
from explorer import teaching
from explorer.figures._theme import blend, contrast_ratio
from explorer.models.base import CausalLM
from explorer.trace import ContrastCandidate, Contrastive, DolaCandidate, LayerContrast, Trace


@pytest.fixture(scope="module")
def d2l() -> CausalLM:
    return explorer.load_model("toy:d2l-beam")


@pytest.fixture(scope="module")
def beam(d2l: CausalLM) -> Trace:
    return explorer.decode(d2l, "<s>", "beam", num_beams=2, max_new_tokens=5, length_penalty=0.0)


#: Notebook 06's toy target and draft: the next word's probabilities after the last word.
SPEC_TARGET = {"a": {"a": 0.5, "b": 0.3, "c": 0.2}, "b": {"a": 0.2, "b": 0.2, "c": 0.3, "<eos>": 0.3},
               "c": {"a": 0.1, "b": 0.6, "<eos>": 0.3}}
SPEC_DRAFT = {"a": {"a": 0.2, "b": 0.5, "c": 0.3}, "b": {"a": 0.5, "b": 0.1, "c": 0.1, "<eos>": 0.3},
              "c": {"a": 0.4, "b": 0.2, "<eos>": 0.4}}


@pytest.fixture(scope="module")
def inside(tiny: CausalLM) -> tuple[Trace, Trace]:
    """A DoLa run and a contrastive search run of tiny-random whose step 0 holds records written by hand (below), so
    that the right answers are known: layer 4 diverges most (6 of layers 2 and 6); " Paris" scores -0.5 - (-2.0) =
    1.5 and " the" was cut (-inf); with alpha 0.5 " it" scores 0.5 x 0.2 - 0.5 x 0.1 = 0.05, " of" -0.05 and " I"
    -0.2, with alpha 0 " I" (0.5) wins."""
    dola = explorer.decode(tiny, "Hello there", "dola", dola_layers=(0, 1), max_new_tokens=2)
    contrastive = explorer.decode(tiny, "Hello there", "contrastive", penalty_alpha=0.5, top_k=3, max_new_tokens=2)
    layers = LayerContrast((2, 4, 6), (0.1, 0.3, 0.2), 4, 8, 2, (
        DolaCandidate(10, " Paris", -0.5, -2.0, 1.5, True), DolaCandidate(11, " Lyon", -1.0, -1.5, 0.5, True),
        DolaCandidate(12, " the", -4.0, -3.0, -math.inf, False)), ((0.1, 3), (0.2, 1), (0.3, 1), (0.6, 0)))
    ranking = Contrastive(0.5, (ContrastCandidate(20, " I", 0.5, 0.9, 0, 5, -0.2),
                                ContrastCandidate(21, " of", 0.3, 0.4, 1, 6, -0.05),
                                ContrastCandidate(22, " it", 0.2, 0.1, 0, 5, 0.05)), 2)

    def first(trace: Trace, **record: Any) -> Trace:
        return dataclasses.replace(trace, steps=(dataclasses.replace(trace.steps[0], **record), *trace.steps[1:]))

    return first(dola, dola=layers), first(contrastive, contrastive=ranking)


@pytest.fixture(scope="module")
def spec_toys(tmp_path_factory: pytest.TempPathFactory) -> tuple[CausalLM, CausalLM]:
    import json

    folder = tmp_path_factory.mktemp("spec")
    models = []
    for name, table in (("target", SPEC_TARGET), ("draft", SPEC_DRAFT)):
        path = folder / f"{name}.json"
        path.write_text(json.dumps({"name": name, "tokens": ["a", "b", "c"], "table": table}), encoding="utf-8")
        models.append(explorer.load_model(str(path)))
    return models[0], models[1]


def test_next_probabilities_and_the_expected_tokens_per_forward(spec_toys: tuple[CausalLM, CausalLM]) -> None:
    target, _ = spec_toys
    after_b = teaching.next_probabilities(target, target.tokenizer.encode("b"))
    assert after_b == pytest.approx({"c": 0.3, "<eos>": 0.3, "a": 0.2, "b": 0.2})
    assert next(iter(teaching.next_probabilities(target, target.tokenizer.encode("c")))) == "b"
    assert teaching.expected_tokens_per_forward(0.0, 5) == 1.0
    assert teaching.expected_tokens_per_forward(1.0, 5) == 6.0
    assert teaching.expected_tokens_per_forward(0.5, 2) == pytest.approx(1.75)


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


def test_every_check_gives_a_hint_for_no_answer(d2l: CausalLM, beam: Trace, spec_toys: tuple[CausalLM, CausalLM],
                                                inside: tuple[Trace, Trace]) -> None:
    target, draft = spec_toys
    dola, contrastive = inside
    calls = {
        "check_premature_layer": (dola, 0), "check_contrast_score": (dola, 0, " Paris"),
        "check_contrastive_choice": (contrastive, 0),
        "check_acceptance_probability": (target, draft, "a", "b"), "check_residual_token": (target, draft, "b"),
        "check_tokens_per_forward": (0.7, 3),
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
    not_a_number = teaching.check_best_probability(beam, "about 0.05")
    assert not not_a_number
    assert not_a_number.answered
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


# --- one answer, every natural spelling ----------------------------------------------------------------------------

Check = Callable[[Any], teaching.Feedback]


@pytest.fixture(scope="module")
def checks(d2l: CausalLM, beam: Trace, spec_toys: tuple[CausalLM, CausalLM],
           inside: tuple[Trace, Trace]) -> dict[str, Check]:
    """Every check on a toy run (or a record written by hand) whose right answer is known by hand (in the
    comments)."""
    target, draft = spec_toys
    dola, contrastive = inside
    how = explorer.load_model("toy:how-to-generate")
    cake = explorer.load_model("toy:constrained")
    weather = explorer.load_model("toy:diverse")
    greedy = explorer.decode(d2l, "<s>", "greedy", max_new_tokens=5)
    two = explorer.decode(how, "The", "beam", num_beams=2, max_new_tokens=5, num_return_sequences=2)
    cool = explorer.decode(how, "The", "sample", max_new_tokens=1, seed=0, temperature=0.5, top_k=2)
    three = explorer.decode(cake, "I", "constrained", constraints=["cake"], num_beams=3, max_new_tokens=5,
                            length_penalty=0.0)
    groups = explorer.decode(weather, "The weather is", "diverse", num_beams=3, num_beam_groups=3,
                             diversity_penalty=0.7, max_new_tokens=5, num_return_sequences=3)
    nice = weather.tokenizer.encode("nice")[0]
    return {
        "live": lambda a: teaching.check_live_hypotheses(beam, 1, a),  # 2 beams
        "divergence": lambda a: teaching.check_divergence_step(greedy, beam, a),  # A B C vs A C B: 1
        "steps": lambda a: teaching.check_steps_run(beam, a),  # A C B <eos>: 4
        "surviving": lambda a: teaching.check_surviving_tokens(cool, 0, "top_k", a),  # nice, dog of 3: 2
        "distinct": lambda a: teaching.check_distinct_results(two, a),  # dog has, nice woman: 2
        "completion": lambda a: teaching.check_completion_step(three, a),  # I love cake: step 1
        "best": lambda a: teaching.check_best_probability(beam, a),  # 0.5 x 0.3 x 0.6 x 0.6 = 0.054
        "processed": lambda a: teaching.check_processed_probability(cool, "dog", a),  # 0.16 / 0.41 = 0.390
        "penalty": lambda a: teaching.check_penalty(groups, 0, 2, nice, a),  # groups 0 and 1 chose nice: -1.4
        "satisfied": lambda a: teaching.check_constraints_satisfied(three, a),  # True
        "result": lambda a: teaching.check_result_text(beam, a),  # A C B
        "survivor": lambda a: teaching.check_survivor(d2l, beam, 2, a),  # A B or A C
        "pruned": lambda a: teaching.check_pruned_token(two, 0, a),  # car
        "forced": lambda a: teaching.check_forced_token(three, 0, a),  # cake
        "group": lambda a: teaching.check_group_result(groups, 2, a),  # bad outside
        "acceptance": lambda a: teaching.check_acceptance_probability(target, draft, "a", "b", a),  # 0.3 / 0.5
        "residual": lambda a: teaching.check_residual_token(target, draft, "b", a),  # c 0.2 of 0.3, b 0.1
        "per forward": lambda a: teaching.check_tokens_per_forward(0.7, 3, a),  # (1 - 0.7^4) / 0.3 = 2.533
        "premature": lambda a: teaching.check_premature_layer(dola, 0, a),  # divergences 0.1, 0.3, 0.2: layer 4
        "contrast": lambda a: teaching.check_contrast_score(dola, 0, "Paris", a),  # -0.5 - (-2.0) = 1.5
        "contrastive": lambda a: teaching.check_contrastive_choice(contrastive, 0, a),  # alpha 0.5: it 0.05
    }


# For each check: spellings of the right answer (all accepted), and wrong answers, each with what the check must
# say: "" for a plain "not quite", or the words that tell the student what kind of answer it expects.
SPELLINGS: dict[str, tuple[tuple[Any, ...], tuple[tuple[Any, str], ...]]] = {
    "live": ((2, 2.0, "2", " 2 ", "2.0", "\t2\n", np.int64(2), torch.tensor(2)),
             ((3, ""), ("3", ""), (" 1 ", ""), (2.5, "whole number"), ("2.5", "whole number"),
              ("two", "whole number"), ("", "whole number"), ([2], "whole number"), (torch.tensor([2, 2]), "whole"))),
    "divergence": ((1, 1.0, "1", " 1 ", np.int64(1)), ((True, "whole number"), (0, ""), ("2", ""))),
    "steps": ((4, "4", " 4 ", 4.0), ((5, ""), (" 3", ""), ("4 steps", "whole number"))),
    "surviving": ((2, "2", 2.0), ((3, ""), ("3", ""))),
    "distinct": ((2, " 2 ", np.float64(2.0)), ((1, ""), (True, "whole number"))),
    "completion": ((1, "1", 1.0), ((2, ""), ("0", ""), (True, "whole number"))),
    "best": ((0.054, "0.054", " 0.054 ", "5.4%", "5.4 %", "27/500", np.float64(0.054), 0.0541),
             ((0.048, ""), ("0.048", ""), ("4.8%", ""), (5.4, "between 0 and 1"), ("54", "between 0 and 1"),
              (True, "probability"), ("about 0.05", "probability"))),
    "processed": ((0.39, "0.39", "39%", 16 / 41), ((0.16, ""), ("0.3", ""), ("25%", ""))),  # 0.16 unnormalised
    "penalty": ((-1.4, "-1.4", " -1.4 ", "\N{MINUS SIGN}1.4", "-7/5", np.float64(-1.4)),
                ((-0.7, ""), ("0", ""), (1.4, "lowers the score"), ("1.4", "lowers the score"),
                 (True, "a number"))),
    "satisfied": ((True, "True", "true", " yes ", "YES", np.bool_(True)),
                  ((False, ""), ("False", ""), ("no", ""), (np.bool_(False), ""), (1, "True or False"),
                   ("maybe", "True or False"))),
    "result": (("A C B", " A C B ", "A  C B", "A C B\n"), (("A B C", ""), ("A C", ""), (3, "text"))),
    "survivor": (("A B", " A C ", "A  B"), (("A A", ""), ("A B C", ""), (["A", "B"], "text"))),
    "pruned": (("car", " car", "car "), (("dog", ""), ("nice", ""), (1, "token"))),
    "forced": (("cake", " cake "), (("like", ""), ("love", ""), (2, "token"))),
    "group": (("bad outside", " bad  outside "), (("nice today", ""), ("bad", ""), (None, "Hint"))),
    "acceptance": ((0.6, "0.6", "60%", "3/5", " 0.6 "), ((0.5, ""), ("0.3", ""), (1.2, "between 0 and 1"),
                                                        ("b", "probability"))),
    "residual": (("c", " c "), (("a", ""), ("b", ""), ("<eos>", ""), (3, "token"))),
    "per forward": ((2.533, "2.533", " 2.5333 ", 2.5333333), ((3, ""), ("2.1", ""), (4, ""), ("many", "a number"))),
    "premature": ((4, 4.0, "4", " 4 ", np.int64(4)),
                  ((6, ""), ("2", ""), (3, "not a candidate"), (8, "not a candidate"), ("four", "whole number"),
                   (4.5, "whole number"))),
    "contrast": ((1.5, "1.5", " 1.5 ", "3/2", 1.504, np.float64(1.5)),
                 ((-1.5, ""), ("2.5", ""), (0.5, ""), (math.exp(1.5), "ratio"), ("-inf", ""), ("big", "a number"))),
    "contrastive": (("it", " it", "it "), ((" I", ""), ("of", ""), ("cake", "not a candidate"), (2, "token"))),
}


def test_every_check_has_spellings(checks: dict[str, Check]) -> None:
    assert set(SPELLINGS) == set(checks)
    names = {name for name, fn in inspect.getmembers(teaching, inspect.isfunction)
             if name.startswith("check_") and "answer" in inspect.signature(fn).parameters}
    assert len(names) == len(checks)


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_a_check_accepts_every_spelling_of_the_right_answer_and_no_wrong_one(name: str,
                                                                             checks: dict[str, Check]) -> None:
    rights, wrongs = SPELLINGS[name]
    check = checks[name]
    for right in rights:
        feedback = check(right)
        assert feedback, f"{name}: {right!r} was rejected: {feedback}"
        assert feedback.message.startswith("yes"), feedback.message
    for wrong, says in wrongs:
        feedback = check(wrong)
        assert not feedback, f"{name}: the wrong answer {wrong!r} was accepted"
        assert feedback.answered == (wrong is not None), f"{name}: {wrong!r}"
        assert says in feedback.message, f"{name}: {wrong!r} gave {feedback.message!r}, expected {says!r}"
        if not says:
            assert feedback.message.startswith("not quite"), f"{name}: {wrong!r} gave {feedback.message!r}"


# --- inside the model (notebook 07) ---------------------------------------------------------------------------------


def test_the_inside_checks_ask_what_if(inside: tuple[Trace, Trace]) -> None:
    """Other candidate layers, a token the plausibility cut removed, another alpha: each judged from the record."""
    dola, contrastive = inside
    assert teaching.check_premature_layer(dola, 0, 6, layers=(2, 6))  # 0.2 > 0.1
    assert not teaching.check_premature_layer(dola, 0, 2, layers=[2, 6])
    assert "not a candidate" in teaching.check_premature_layer(dola, 0, 4, layers=(2, 6)).message
    for cut in (-math.inf, "-inf", " -Infinity ", "\N{MINUS SIGN}inf"):
        assert teaching.check_contrast_score(dola, 0, " the", cut), cut
    assert "plausibility cut" in teaching.check_contrast_score(dola, 0, "the", -1.0).message
    assert teaching.check_contrast_score(dola, 0, " Lyon", "0.5")
    assert teaching.check_contrastive_choice(contrastive, 0, " I", alpha=0.0)  # 0.5 x 1 beats 0.3 and 0.2
    assert not teaching.check_contrastive_choice(contrastive, 0, "it", alpha=0.0)
    assert teaching.check_contrastive_choice(contrastive, 0, "it", alpha=1.0)  # the smallest penalty, 0.1


def test_the_inside_checks_refuse_what_is_not_recorded(beam: Trace, inside: tuple[Trace, Trace]) -> None:
    dola, contrastive = inside
    with pytest.raises(ValueError, match="not 'dola'"):
        teaching.check_premature_layer(beam, 0, 4)
    with pytest.raises(ValueError, match="not 'contrastive'"):
        teaching.check_contrastive_choice(dola, 0, "I")
    with pytest.raises(ValueError, match="candidate layers"):
        teaching.check_premature_layer(dola, 0, 4, layers=(4, 5))
    with pytest.raises(ValueError, match="not recorded"):
        teaching.check_contrast_score(dola, 0, " Rome", 1.0)
    with pytest.raises(ValueError, match="step=9"):
        teaching.check_contrast_score(contrastive, 9, " I", 1.0)


def test_the_inside_checks_agree_with_real_runs(tiny: CausalLM) -> None:
    """On tiny-random: the run's own choices are the right answers, and at step 0 another set of layers or another
    alpha gives what a run with those settings picks."""
    dola = explorer.decode(tiny, "Hello there", "dola", dola_layers=(0, 1), repetition_penalty=1.2, max_new_tokens=3)
    for step in dola.steps:
        record = step.dola
        assert record is not None
        assert teaching.check_premature_layer(dola, step.index, record.chosen_layer)
        for c in record.candidates:
            if c.plausible:
                assert teaching.check_contrast_score(dola, step.index, c.text, c.final_logprob - c.premature_logprob)
    alone = explorer.decode(tiny, "Hello there", "dola", dola_layers=(0,), max_new_tokens=1).steps[0].dola
    assert alone is not None
    assert teaching.check_premature_layer(dola, 0, alone.chosen_layer, layers=(0,))
    search = explorer.decode(tiny, "Hello there", "contrastive", penalty_alpha=0.6, top_k=3, max_new_tokens=3)
    for step in search.steps:
        ranking = step.contrastive
        assert ranking is not None
        assert teaching.check_contrastive_choice(search, step.index, ranking.candidates[ranking.chosen].text)
    for alpha in (0.0, 0.3, 0.9):
        again = explorer.decode(tiny, "Hello there", "contrastive", penalty_alpha=alpha, top_k=3, max_new_tokens=1)
        winner = tiny.tokenizer.token_text(again.results[0].token_ids[0])
        assert teaching.check_contrastive_choice(search, 0, winner, alpha=alpha), alpha
