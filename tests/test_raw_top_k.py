"""The model's own top-k recorded beside the processed top-k (format 1.5): the union per hypothesis, each candidate's
raw rank, what each processor did to it, older traces still loading, and decoding left as it was."""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise
from typing import Any

import pytest

import explorer
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.trace import Candidate, Trace
from explorer.trace_codec import trace_from_dict, trace_to_dict

#: A prompt holding tiny-random's own favourites (its greedy continuation of 5, 6, 7, 5, 6), so that a repetition
#: penalty pushes them down.
PROMPT = [5, 6, 7, 5, 6, 191, 34, 573, 149, 940, 339, 5, 6]
#: Processors that push the model's favourites down (repetition) and out (a repeated bigram).
PUSHING: dict[str, Any] = {"repetition_penalty": 3.0, "no_repeat_ngram_size": 2, "max_new_tokens": 6}


def by_hyp(trace: Trace) -> dict[int, tuple[Candidate, ...]]:
    """Every hypothesis's candidates, by hypothesis id."""
    return {h.id: h.candidates for s in trace.steps for h in s.hypotheses}


@pytest.mark.parametrize(("strategy", "params"), [
    ("greedy", {}), ("beam", {"num_beams": 3}), ("diverse", {"num_beams": 4, "num_beam_groups": 2,
                                                            "diversity_penalty": 1.0}),
])
def test_the_record_is_the_union_of_both_top_ks_and_the_selected(tiny: CausalLM, strategy: str,
                                                                  params: dict[str, Any]) -> None:
    """Against a run recording the whole vocabulary: the recorded tokens are exactly the k best by score, the k
    best by raw log-prob and the picked ones; their numbers and raw ranks are the full record's."""
    k = 3
    small = explorer.decode(tiny, PROMPT, strategy, record_top_k=k, **PUSHING, **params)
    full = explorer.decode(tiny, PROMPT, strategy, record_top_k=1000, **PUSHING, **params)
    assert check_trace(small) == []
    assert check_trace(full) == []
    whole = by_hyp(full)
    assert set(whole) == set(by_hyp(small))
    pushed = 0
    for hyp_id, cands in by_hyp(small).items():
        every = {c.token_id: c for c in whole[hyp_id]}
        assert len(every) == 1000  # tiny-random's whole vocabulary
        by_score = {c.token_id for c in every.values() if c.rank < k}
        by_raw = {c.token_id for c in every.values() if c.raw_rank is not None and c.raw_rank < k}
        picked = {c.token_id for c in every.values() if c.fate in ("kept", "finished")}
        recorded = {c.token_id for c in cands}
        if strategy == "greedy":
            assert recorded == by_score | by_raw | picked
        else:  # the beam family also records every continuation its search weighed, with that fate
            assert recorded >= by_score | by_raw | picked
            assert all(every[t].fate != "masked" for t in recorded - by_score - by_raw)
        for c in cands:
            assert c.raw_rank == every[c.token_id].raw_rank
            assert (c.logprob, c.score, c.adjustments) == (every[c.token_id].logprob, every[c.token_id].score,
                                                           every[c.token_id].adjustments)
        pushed += len(by_raw - by_score)
    assert pushed, "the processors should push some of the model's favourites out of the top-k"


def test_raw_ranks_are_places_by_raw_log_prob(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, "beam", num_beams=2, record_top_k=1000, **PUSHING)
    for cands in by_hyp(trace).values():
        ordered = sorted(cands, key=lambda c: -c.logprob)
        assert [c.raw_rank for c in sorted(cands, key=lambda c: c.raw_rank or 0)][:5] == [0, 1, 2, 3, 4]
        assert ordered[0].raw_rank == 0
        assert all(a.raw_rank < b.raw_rank for a, b in pairwise(ordered)  # type: ignore[operator]
                   if a.logprob > b.logprob)


def test_a_masked_favourite_is_recorded_with_its_processor(tiny: CausalLM) -> None:
    """With one recorded candidate, the model's favourite still shows when no_repeat_ngram masked it."""
    prompt = [6, 573, 7, *PROMPT]  # tiny-random's favourite after it is 573, which would repeat the bigram (6, 573)
    trace = explorer.decode(tiny, prompt, "greedy", max_new_tokens=1, no_repeat_ngram_size=2, record_top_k=1)
    cands = trace.steps[0].hypotheses[0].candidates
    assert (cands[0].rank, cands[0].raw_rank) == (0, 1)  # the processed best, the model's second
    fav = next(c for c in cands if c.raw_rank == 0)
    assert fav.token_id == 573
    assert (fav.fate, fav.score) == ("masked", -math.inf)
    assert (fav.masked_by, fav.reason) == ("no_repeat_ngram", "masked by no_repeat_ngram")
    assert fav.pushed_down_by == ("no_repeat_ngram",)
    assert check_trace(trace) == []


def test_pushed_down_names_the_processor_that_lowered_it(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, "greedy", record_top_k=2, repetition_penalty=5.0, max_new_tokens=4)
    out = [c for cands in by_hyp(trace).values() for c in cands
           if c.raw_rank is not None and c.raw_rank < 2 <= c.rank and c.fate == "pruned"]
    assert out, "a repetition penalty of 5 should push a repeated favourite out of the top 2"
    for c in out:
        assert c.token_id in PROMPT or c.fate == "pruned"
        assert c.pushed_down_by == ("repetition_penalty",)
        assert c.masked_by is None


@pytest.mark.parametrize("strategy", ["greedy", "beam", "constrained", "sample"])
def test_recording_does_not_change_decoding(tiny: CausalLM, strategy: str) -> None:
    params: dict[str, Any] = {"num_beams": 3} if strategy in ("beam", "constrained") else \
        {"seed": 3} if strategy == "sample" else {}
    if strategy == "constrained":
        params["constraints"] = [[9]]
    runs = [explorer.decode(tiny, PROMPT, strategy, record_top_k=k, **PUSHING, **params) for k in (0, 2, 50)]
    first = runs[0]
    for other in runs[1:]:
        assert [(r.token_ids, r.score) for r in other.results] == [(r.token_ids, r.score) for r in first.results]
        assert [[(h.id, h.token_ids, h.score) for h in s.hypotheses] for s in other.steps] == \
            [[(h.id, h.token_ids, h.score) for h in s.hypotheses] for s in first.steps]


# --- the trace format ---------------------------------------------------------------------------------------


def as_1_3(trace: Trace) -> Trace:
    """``trace`` as a format 1.3 document held it: no entropies (1.4), no raw ranks (1.5)."""
    doc = trace_to_dict(trace)
    doc["version"] = "1.3"
    for s in doc["steps"]:
        for h in s["hypotheses"]:
            h.pop("entropy", None)
            for c in h["candidates"]:
                del c["raw_rank"]
    return trace_from_dict(doc)


def test_format_1_5_round_trips_raw_ranks(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, "beam", num_beams=2, record_top_k=3, **PUSHING)
    doc = trace_to_dict(trace)
    assert doc["version"] == "1.5"
    cand = doc["steps"][1]["hypotheses"][0]["candidates"][0]
    assert isinstance(cand["raw_rank"], int)
    assert trace_from_dict(doc) == trace
    assert explorer.Trace.from_json(trace.to_json()) == trace


def test_a_1_3_document_loads_without_raw_ranks(tiny: CausalLM) -> None:
    """A format 1.3 document has no raw_rank: it loads, its candidates' raw ranks unknown, and checks out."""
    old = as_1_3(explorer.decode(tiny, PROMPT, "beam", num_beams=2, record_top_k=3, **PUSHING))
    assert old.version == "1.3"
    assert all(c.raw_rank is None for cands in by_hyp(old).values() for c in cands)
    assert check_trace(old) == []


def test_a_broken_raw_rank_is_caught(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, "greedy", record_top_k=3, **PUSHING)
    step = trace.steps[1]
    hyp = step.hypotheses[0]
    best = min(hyp.candidates, key=lambda c: c.raw_rank or 0)
    worst = max(hyp.candidates, key=lambda c: c.raw_rank or 0)
    cands = tuple(dataclasses.replace(c, raw_rank=worst.raw_rank) if c is best else
                  dataclasses.replace(c, raw_rank=best.raw_rank) if c is worst else c for c in hyp.candidates)
    broken = dataclasses.replace(trace, steps=(trace.steps[0], dataclasses.replace(
        step, hypotheses=(dataclasses.replace(hyp, candidates=cands),)), *trace.steps[2:]))
    problems = check_trace(broken)
    assert len(problems) == 1
    assert "has a raw log-prob above token" in problems[0]
    assert "but raw-ranks" in problems[0]
