"""Invalid values replaced and scores renormalised; how a trace records the stand-in for -inf."""

from __future__ import annotations

import math

import pytest
import torch

import explorer
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.processors import Context, InfNanRemove, Renormalize
from explorer.processors.numeric import MASKED_FLOOR

INF = math.inf


def test_inf_nan_remove_replaces_every_invalid_value() -> None:
    out = InfNanRemove()(torch.zeros(1, 0), torch.tensor([[math.nan, INF, -INF, 2.0]]), Context(0))
    big = torch.finfo(torch.float32).max
    assert out.tolist() == [[0.0, big, -big, 2.0]]
    assert out[0, 2].item() == MASKED_FLOOR


def test_renormalize_gives_log_probabilities() -> None:
    out = Renormalize()(torch.zeros(1, 0), torch.tensor([[1.0, 2.0, -INF]]), Context(0))
    assert out.exp().sum().item() == pytest.approx(1.0)
    assert out[0, 2].item() == -INF


def test_a_trace_records_the_stand_in_for_minus_inf_as_masked(tiny: CausalLM) -> None:
    """remove_invalid_values turns no_repeat_ngram's -inf into float32's lowest: the candidate is still masked, by
    no_repeat_ngram, with no change from remove_invalid_values, and every invariant holds."""
    trace = explorer.decode(tiny, [5, 6, 5], "greedy", max_new_tokens=3, no_repeat_ngram_size=2,
                            remove_invalid_values=True, record_top_k=1000)
    assert trace.processors == ("no_repeat_ngram", "remove_invalid_values")
    banned = next(c for c in trace.steps[0].hypotheses[0].candidates if c.token_id == 6)
    assert (banned.fate, banned.score, banned.reason) == ("masked", -INF, "masked by no_repeat_ngram")
    assert banned.adjustments == (("no_repeat_ngram", -INF), ("remove_invalid_values", 0.0))
    assert check_trace(trace) == []
    plain = explorer.decode(tiny, [5, 6, 5], "greedy", max_new_tokens=3, no_repeat_ngram_size=2)
    assert trace.results[0].token_ids == plain.results[0].token_ids


def test_renormalized_beams_add_up_renormalized_scores(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, [5, 6, 7], "beam", num_beams=2, max_new_tokens=4, repetition_penalty=2.0,
                            renormalize_logits=True)
    assert trace.processors == ("repetition_penalty", "renormalize_logits")
    assert check_trace(trace) == []
    changes = {round(dict(c.adjustments)["renormalize_logits"], 4)
               for s in trace.steps for h in s.hypotheses for c in h.candidates}
    assert min(changes) >= 0 < max(changes)  # the penalty took mass away: renormalising gives it back
