"""Live agreement with the installed transformers 5.x: greedy and beam search, token for token and score for score.

(5.x dropped group and constrained beam search; those are checked against 4.56.2 fixtures in test_reference.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import explorer
from explorer.models.base import CausalLM

TINY_CASES: list[tuple[list[int], dict[str, Any]]] = [
    ([5, 6, 7, 8, 9], {"strategy": "greedy", "max_new_tokens": 15}),
    ([100, 200, 300], {"strategy": "greedy", "max_new_tokens": 12, "repetition_penalty": 1.4}),
    ([11, 12, 13], {"strategy": "greedy", "max_new_tokens": 12, "no_repeat_ngram_size": 2, "min_new_tokens": 5}),
    ([5, 6, 7, 8, 9], {"strategy": "beam", "num_beams": 4, "max_new_tokens": 15, "num_return_sequences": 4}),
    ([100, 200, 300], {"strategy": "beam", "num_beams": 3, "max_new_tokens": 12, "length_penalty": 0.0,
                       "early_stopping": True}),
    ([11, 12, 13], {"strategy": "beam", "num_beams": 5, "max_new_tokens": 12, "length_penalty": 2.0,
                    "early_stopping": "never", "num_return_sequences": 2, "repetition_penalty": 1.2}),
    ([7, 8], {"strategy": "beam", "num_beams": 2, "max_new_tokens": 10, "length_penalty": -1.0,
              "no_repeat_ngram_size": 3}),
]


def generate(model: CausalLM, prompt: list[int], params: dict[str, Any]) -> tuple[list[list[int]], list[float]]:
    """Run transformers' own generate() with the same settings; generated ids (through eos) and scores."""
    hf = model.hf  # type: ignore[attr-defined]
    p = dict(params)
    strategy = p.pop("strategy")
    ids = torch.tensor([prompt])
    eos = model.info.eos_token_ids[0]
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, eos_token_id=eos, pad_token_id=eos,
                      num_beams=p.pop("num_beams", 1), return_dict_in_generate=True, output_scores=True, **p)
    sequences = []
    for row in out.sequences[:, len(prompt):].tolist():
        sequences.append(row[: row.index(eos) + 1] if eos in row else row)
    scores = out.sequences_scores.tolist() if strategy == "beam" else [float("nan")] * len(sequences)
    return sequences, scores


def check(model: CausalLM, prompt: list[int], params: dict[str, Any]) -> None:
    p = dict(params)
    trace = explorer.decode(model, prompt, p.pop("strategy"), **p)
    sequences, scores = generate(model, prompt, params)
    assert [list(r.token_ids) for r in trace.results] == sequences
    if params["strategy"] == "beam":
        assert [r.score for r in trace.results] == pytest.approx(scores, abs=1e-4)


@pytest.mark.reference
@pytest.mark.parametrize(("prompt", "params"), TINY_CASES)
def test_tiny_random_matches_transformers(tiny: CausalLM, prompt: list[int], params: dict[str, Any]) -> None:
    check(tiny, prompt, params)


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.parametrize(
    ("prompt", "chat", "params"),
    [
        ("The best way to bake bread is", False, {"strategy": "greedy", "max_new_tokens": 12}),
        ("The best way to bake bread is", False, {"strategy": "beam", "num_beams": 4, "max_new_tokens": 12,
                                                  "num_return_sequences": 2}),
        ("Name a fruit.", True, {"strategy": "beam", "num_beams": 3, "max_new_tokens": 16,
                                 "early_stopping": True}),
    ],
)
def test_smollm2_matches_transformers(smollm2: CausalLM, prompt: str, chat: bool, params: dict[str, Any]) -> None:
    check(smollm2, list(explorer.tokenize_prompt(smollm2, prompt, chat=chat)), params)


def test_seeded_sampling_matches_transformers(tiny: CausalLM) -> None:
    """Same seed, same draws as transformers' sampler (both use torch.multinomial on the same probabilities)."""
    prompt = [5, 6, 7]
    trace = explorer.decode(tiny, prompt, "sample", seed=11, max_new_tokens=12, temperature=0.9, top_k=50)
    torch.manual_seed(11)
    ids = torch.tensor([prompt])
    out = tiny.hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.9,  # type: ignore[attr-defined]
                           top_k=50, top_p=1.0, max_new_tokens=12, eos_token_id=2, pad_token_id=2)
    row = out[0, len(prompt):].tolist()
    assert list(trace.results[0].token_ids) == (row[: row.index(2) + 1] if 2 in row else row)
