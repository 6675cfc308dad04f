"""Allowed text: a word list or a regular expression over the generated text, as a prefix_allowed_tokens_fn."""

from __future__ import annotations

import pytest
import regex
import torch

import explorer
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.processors.allowed import allowed_text, words_pattern


def _allowed(model: CausalLM, prompt: str, text: str, **rule: object) -> list[str]:
    """The texts of the tokens allowed after ``prompt + text``."""
    prompt_ids = model.tokenizer.encode(prompt)
    fn = allowed_text(model.tokenizer, model.info.vocab_size, model.info.eos_token_ids, len(prompt_ids), **rule)  # type: ignore[arg-type]
    ids = torch.tensor(prompt_ids + model.tokenizer.encode(text)) if text else torch.tensor(prompt_ids)
    return sorted(model.tokenizer.token_text(t) for t in fn(0, ids))


def test_a_word_list_allows_its_words_and_eos_after_a_whole_word() -> None:
    toy = explorer.load_model("toy:how-to-generate")
    assert _allowed(toy, "The", "", words=["dog", "has"]) == ["dog", "has"]
    assert _allowed(toy, "The", "dog", words=["dog", "has"]) == ["<eos>", "dog", "has"]
    trace = explorer.decode(toy, "The", "beam", num_beams=2, max_new_tokens=3, allowed_words=["dog", "has"])
    assert {r.text for r in trace.results} <= {"dog has", "dog has dog", "dog dog", "has", "dog"}
    assert check_trace(trace) == []


def test_a_regex_allows_exactly_the_tokens_that_keep_a_full_match_possible(tiny: CausalLM) -> None:
    pattern = r" (yes|no)\."
    texts = _allowed(tiny, "Answer:", "", pattern=pattern)
    assert texts
    assert all(regex.fullmatch(pattern, piece, partial=True) for piece in texts)
    assert " yes" in texts or " y" in texts
    assert _allowed(tiny, "Answer:", " no", pattern=pattern) == ["."]
    assert _allowed(tiny, "Answer:", " no.", pattern=pattern) == ["<|im_end|>"]  # a full match: only eos


def test_every_result_keeps_to_the_rule(tiny: CausalLM) -> None:
    pattern = r"( [a-z]+)+"
    for strategy in ("greedy", "beam", "diverse"):
        trace = explorer.decode(tiny, [5, 6, 7], strategy, max_new_tokens=6, allowed_regex=pattern)
        assert "prefix_allowed_tokens" in trace.processors
        assert check_trace(trace) == []
        for r in trace.results:
            assert regex.fullmatch(pattern, r.text, partial=True), r.text


def test_words_become_a_pattern() -> None:
    assert regex.fullmatch(words_pattern(["yes", "no"]), " yes no\nyes")
    assert not regex.fullmatch(words_pattern(["yes", "no"]), "yesno")


def test_one_rule_at_a_time_and_a_pattern_must_compile(tiny: CausalLM) -> None:
    with pytest.raises(explorer.ParameterError, match="allowed_regex=' x' is invalid: expected unset while "
                                                      "allowed_words is set"):
        explorer.decode(tiny, [5, 6], "greedy", allowed_words=["a"], allowed_regex=" x")
    with pytest.raises(explorer.ParameterError, match=r"allowed_regex='\(' is invalid: expected None or a regular"):
        explorer.decode(tiny, [5, 6], "greedy", allowed_regex="(")
    with pytest.raises(explorer.ParameterError, match=r"allowed_words=.*expected words without spaces"):
        explorer.decode(tiny, [5, 6], "greedy", allowed_words=["two words"])


def test_a_rule_nothing_can_follow_stops_with_one_line() -> None:
    toy = explorer.load_model("toy:how-to-generate")
    with pytest.raises(explorer.ExplorerError, match="prefix_allowed_tokens_fn returned no token"):
        explorer.decode(toy, "The", "greedy", max_new_tokens=3, allowed_regex="zebra")


@pytest.mark.slow
def test_smollm2_answers_within_the_rule(smollm2: CausalLM) -> None:
    pattern = r" ?(Yes|No)\."
    trace = explorer.decode(smollm2, "Is the sky blue? Answer with yes or no.", "greedy", chat=True,
                            max_new_tokens=6, allowed_regex=pattern)
    best = trace.results[0]
    assert best.ended_with_eos
    assert regex.fullmatch(pattern, best.text), best.text
