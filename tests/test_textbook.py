"""Hand-checked searches on the textbook tree: greedy misses the better sequence that beam search finds."""

from __future__ import annotations

import math

import pytest

import explorer
from explorer.invariants import check_trace
from explorer.models.table import TableModel


def words(model: TableModel, ids: tuple[int, ...]) -> list[str]:
    return [model.tokenizer.token_text(t) for t in ids]


def test_greedy_takes_the_nice_woman(toy: TableModel) -> None:
    trace = explorer.decode(toy, "The", "greedy", max_new_tokens=5)
    best = trace.results[0]
    assert words(toy, best.token_ids) == ["nice", "woman", "<eos>"]
    assert math.exp(best.score) == pytest.approx(0.5 * 0.4)
    assert check_trace(trace) == []


def test_beam_search_with_two_beams_finds_the_dog_has(toy: TableModel) -> None:
    trace = explorer.decode(toy, "The", "beam", num_beams=2, max_new_tokens=5, length_penalty=0.0,
                            num_return_sequences=2)
    assert [words(toy, r.token_ids) for r in trace.results] == [["dog", "has", "<eos>"], ["nice", "woman", "<eos>"]]
    assert math.exp(trace.results[0].score) == pytest.approx(0.4 * 0.9)
    assert math.exp(trace.results[1].score) == pytest.approx(0.5 * 0.4)
    assert check_trace(trace) == []


def test_the_beam_tree_records_what_was_kept_and_pruned(toy: TableModel) -> None:
    trace = explorer.decode(toy, "The", "beam", num_beams=2, max_new_tokens=5, length_penalty=0.0)
    first = trace.steps[0].hypotheses[0]
    fates = {c.text: c.fate for c in first.candidates}
    assert fates == {"nice": "kept", "dog": "kept", "car": "pruned"}
    second = {words(toy, h.token_ids)[0]: h for h in trace.steps[1].hypotheses}
    nice = {c.text: c.fate for c in second["nice"].candidates}
    assert nice["woman"] == "kept"
    assert nice["house"] == nice["guy"] == "pruned"
    assert {c.text: c.fate for c in second["dog"].candidates}["has"] == "kept"
    # at the third step both beams end: both enter the pool, best first
    last = trace.steps[2]
    assert [f.accepted for f in last.finished] == [True, True]
    assert last.pool == tuple(f.id for f in last.finished)


def test_length_penalty_divides_by_length(toy: TableModel) -> None:
    trace = explorer.decode(toy, "The", "beam", num_beams=2, max_new_tokens=5, length_penalty=1.0)
    best = trace.results[0]
    assert best.score == pytest.approx(math.log(0.36) / 3, rel=1e-6)


def test_sampling_with_a_seed_is_reproducible(toy: TableModel) -> None:
    a = explorer.decode(toy, "The", "sample", seed=7, max_new_tokens=5, num_return_sequences=8)
    b = explorer.decode(toy, "The", "sample", seed=7, max_new_tokens=5, num_return_sequences=8)
    assert [r.token_ids for r in a.results] == [r.token_ids for r in b.results]
    assert len({r.token_ids for r in a.results}) > 1
    assert check_trace(a) == []
