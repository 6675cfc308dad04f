"""Each hypothesis's recorded entropy (trace format 1.4) against the distribution recomputed by hand."""

from __future__ import annotations

import math

import pytest
import torch

import explorer
from explorer.models.base import CausalLM
from explorer.trace import Hypothesis, Trace


def _entropy(scores: list[float]) -> float:
    """Entropy in nats of the softmax of ``scores``, in float64 (masked ``-inf`` tokens add nothing)."""
    top = max(scores)
    weights = [math.exp(s - top) for s in scores if s != -math.inf]
    total = sum(weights)
    return -sum(w / total * math.log(w / total) for w in weights)


def test_greedy_entropy_is_the_models_distribution(tiny: CausalLM) -> None:
    """With no processor the first step's entropy is the entropy of the model's next-token distribution."""
    trace = explorer.decode(tiny, [5, 6, 7], "greedy", max_new_tokens=3)
    logits = tiny.start([5, 6, 7])[0][0].double()
    expected = float(-(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum())
    first = trace.steps[0].hypotheses[0].entropy
    assert first is not None
    assert first == pytest.approx(expected, rel=1e-5)
    assert 0 < expected < math.log(tiny.info.vocab_size)


@pytest.mark.parametrize("run", [
    {"strategy": "beam", "num_beams": 2, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2},
    {"strategy": "sample", "seed": 3, "temperature": 0.7, "top_k": 3},
    {"strategy": "diverse", "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0},
])
def test_entropy_is_of_the_processed_distribution(tiny: CausalLM, run: dict[str, object]) -> None:
    """Every candidate recorded (``record_top_k`` = the vocabulary): each hypothesis's entropy is the softmax's of its
    candidates' final scores, processors (penalties, warpers, the diversity penalty) included."""
    trace = explorer.decode(tiny, [5, 6, 7], max_new_tokens=4, record_top_k=tiny.info.vocab_size, **run)
    hyps = [h for s in trace.steps for h in s.hypotheses if h.score > explorer.trace.PLACEHOLDER]
    assert hyps
    for h in hyps:
        assert len(h.candidates) == tiny.info.vocab_size
        assert h.entropy == pytest.approx(_entropy([c.score for c in h.candidates]), rel=1e-4, abs=1e-6)
    if run["strategy"] == "sample":  # top_k 3 leaves at most three tokens: at most log 3
        assert all(h.entropy is not None and h.entropy <= math.log(3) + 1e-6 for h in hyps)


def test_entropy_round_trips_and_is_optional(tiny: CausalLM) -> None:
    """Written as a float, read back equal; a document without it (before 1.4) reads as ``None``."""
    trace = explorer.decode(tiny, [5, 6, 7], "beam", num_beams=2, max_new_tokens=3)
    assert Trace.from_json(trace.to_json()) == trace
    doc = explorer.trace_io.trace_to_dict(trace)
    for step in doc["steps"]:
        for h in step["hypotheses"]:
            del h["entropy"]
    old = explorer.trace_io.trace_from_dict(doc)
    first: Hypothesis = old.steps[0].hypotheses[0]
    assert first.entropy is None
    assert first.candidates == trace.steps[0].hypotheses[0].candidates
