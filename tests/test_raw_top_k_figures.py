"""What the processors did, in the figures: masked and pushed-down candidates drawn apart in the candidates chart and
the tree, each hover naming the processor (trace format 1.5's raw top-k)."""

from __future__ import annotations

from typing import Any

import pytest
from test_raw_top_k import PROMPT, as_1_3, by_hyp

import explorer
from explorer.figures import search_tree, step_candidates
from explorer.figures._style import moved, pushed_out
from explorer.models.base import CausalLM
from explorer.trace import Candidate

#: A prompt after which tiny-random's favourite (573) would repeat the bigram (6, 573): no_repeat_ngram masks it.
MASKING = [6, 573, 7, *PROMPT]
#: Each mark's prompt, processors, and what names the processor in a hover.
MARKS: dict[str, tuple[list[int], dict[str, Any], str]] = {
    "masked": (MASKING, {"no_repeat_ngram_size": 2}, "masked by no_repeat_ngram (the model's rank 1)"),
    "pushed down": (PROMPT, {"repetition_penalty": 3.0}, "pushed down by repetition_penalty: the model's rank 1"),
}


def _marked(c: Candidate, k: int) -> str:
    return "masked" if c.fate == "masked" else "pushed down" if c.fate == "pruned" and pushed_out(c, k) else ""


@pytest.mark.parametrize("kind", list(MARKS))
def test_candidates_chart_marks_masked_and_pushed_down_bars(tiny: CausalLM, kind: str) -> None:
    prompt, params, words = MARKS[kind]
    trace = explorer.decode(tiny, prompt, "greedy", record_top_k=2, max_new_tokens=2, **params)
    hyp = trace.steps[0].hypotheses[0]
    fig = step_candidates(trace, hyp.id)
    processed = fig.data[1]
    marks = dict(zip(processed.customdata, processed.text, strict=True))
    signs = {"masked": "✕", "pushed down": "↓", "": ""}
    assert [marks[c.token_id] for c in hyp.candidates] == [signs[_marked(c, 2)] for c in hyp.candidates]
    assert signs[kind] in marks.values()
    assert kind in {t.name for t in fig.data[2:]}  # its legend entry
    hover = dict(zip(processed.customdata, processed.hovertext, strict=True))
    assert any(words in hover[c.token_id] for c in hyp.candidates if _marked(c, 2) == kind)


@pytest.mark.parametrize("kind", list(MARKS))
def test_tree_draws_masked_and_pushed_down_leaves_apart(tiny: CausalLM, kind: str) -> None:
    prompt, params, words = MARKS[kind]
    trace = explorer.decode(tiny, prompt, "beam", num_beams=2, record_top_k=2, max_new_tokens=3, **params)
    fig = search_tree(trace)
    leaves = next(t for t in fig.data if t.name == kind and t.hovertext is not None)
    assert leaves.marker.symbol == {"masked": "x-thin-open", "pushed down": "triangle-down"}[kind]
    assert len(leaves.x) == sum(_marked(c, 2) == kind for cands in by_hyp(trace).values() for c in cands)
    assert any(words in h for h in leaves.hovertext)


def test_hovers_say_what_the_processors_did(tiny: CausalLM) -> None:
    masked = explorer.decode(tiny, MASKING, "greedy", max_new_tokens=1, no_repeat_ngram_size=2, record_top_k=1)
    fav = next(c for c in masked.steps[0].hypotheses[0].candidates if c.raw_rank == 0)
    assert moved(fav) == "masked by no_repeat_ngram (the model's rank 1)"
    pushed = explorer.decode(tiny, PROMPT, "greedy", record_top_k=2, repetition_penalty=5.0, max_new_tokens=4)
    out = [c for cands in by_hyp(pushed).values() for c in cands if pushed_out(c, 2)]
    assert out
    for c in out:
        words = moved(c)
        assert words is not None
        assert c.raw_rank is not None
        assert words.startswith(f"pushed down by repetition_penalty: the model's rank {c.raw_rank + 1} → rank "
                                f"{c.rank + 1}")


def test_a_1_3_trace_draws_as_before(tiny: CausalLM) -> None:
    """No raw ranks: no pushed-down kind, no words on what moved, the figures drawn."""
    trace = explorer.decode(tiny, PROMPT, "beam", num_beams=2, record_top_k=2, repetition_penalty=3.0,
                            max_new_tokens=3)
    old = as_1_3(trace)
    assert all(moved(c) is None for cands in by_hyp(old).values() for c in cands)
    assert "↓" not in step_candidates(old, 0).data[1].text
    assert not [t for t in search_tree(old).data if t.name == "pushed down"]
    assert [t for t in search_tree(trace).data if t.name == "pushed down"]
