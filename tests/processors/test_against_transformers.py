"""Every processor, in the reference's order, against the installed transformers' own processors: the list that
``generate()`` builds for the same settings, applied stage by stage to the same random scores, gives the same
numbers (bit for bit) as ours. Group beam search's diversity penalty left 5.x; test_reference.py covers it."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from transformers import GenerationConfig

from explorer.models.base import CausalLM
from explorer.processors import Context, build_processors
from explorer.strategies import get, make_params

EOS = 2
PROMPT = 3  # the first 3 tokens of every row are the prompt


def _prefix(batch_id: int, ids: torch.Tensor) -> list[int]:
    """A prefix rule that depends on the row: its last token's neighbours, and eos."""
    last = int(ids[-1])
    return [EOS, (last + 1) % 50, (last + 7) % 50, batch_id + 10]


SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("greedy", {"sequence_bias": {(4,): 1.5, (9, 3): -2.0, (1, 2, 8): 0.75}, "repetition_penalty": 1.3,
                "no_repeat_ngram_size": 2, "bad_words_ids": [[6], [5, 7]], "min_length": 9, "min_new_tokens": 4,
                "forced_eos_token_id": EOS, "remove_invalid_values": True,
                "exponential_decay_length_penalty": (1, 1.6), "suppress_tokens": [11, 12],
                "renormalize_logits": True}),
    ("sample", {"temperature": 0.7, "top_k": 30, "top_p": 0.95, "min_p": 0.01, "typical_p": 0.98,
                "epsilon_cutoff": 0.002, "eta_cutoff": 0.003, "min_length": 4, "renormalize_logits": True}),
    ("beam-sample", {"num_beams": 3, "epsilon_cutoff": 0.05, "eta_cutoff": 0.05, "top_k": 3,
                     "sequence_bias": {(4,): 3.0}}),
    ("beam", {"num_beams": 3, "suppress_tokens": [1, 5], "exponential_decay_length_penalty": (0, 3.0),
              "forced_eos_token_id": [EOS, 7], "min_length": 5}),
    # eos masked by min_new_tokens, then raised by the decay: it stays masked (4.56 made it NaN)
    ("beam", {"num_beams": 2, "exponential_decay_length_penalty": (0, 2.0), "min_new_tokens": 6}),
]


def _reference(hf: Any, strategy: str, params: dict[str, Any], rows: int) -> list[Any]:
    """transformers' processors for the same settings, as ``generate()`` builds them."""
    p = dict(params)
    beams = p.pop("num_beams", 1)  # rows of one prompt: its beams, or the sequences sampled from it
    config = GenerationConfig(do_sample=get(strategy).sampling, eos_token_id=EOS, pad_token_id=EOS,
                              max_length=PROMPT + 8, num_beams=beams, num_return_sequences=rows, **p)
    config._eos_token_tensor = torch.tensor([EOS])  # what generate() sets before building the list
    processors = hf._get_logits_processor(config, input_ids_seq_length=PROMPT, prefix_allowed_tokens_fn=_prefix,
                                          device="cpu")
    return list(processors)


@pytest.mark.parametrize(("strategy", "params"), SETTINGS, ids=[s for s, _ in SETTINGS])
@pytest.mark.parametrize("length", [PROMPT, PROMPT + 2, PROMPT + 7])
def test_same_processors_same_order_same_numbers(tiny: CausalLM, strategy: str, params: dict[str, Any],
                                                 length: int) -> None:
    p = make_params(strategy, max_new_tokens=8, **params)
    ours = build_processors(p, get(strategy), (EOS,), _prefix)
    spec = get(strategy)
    rows = p.num_beams if spec.family == "beam" else 2 if spec.sampling else 1
    theirs = _reference(tiny.hf, strategy, params, rows)  # type: ignore[attr-defined]
    assert len(ours) == len(theirs), ([o.name for o in ours], [type(t).__name__ for t in theirs])
    generator = torch.Generator().manual_seed(length)
    ids = torch.randint(0, 50, (rows, length), generator=generator)
    scores = torch.randn(rows, 50, generator=generator) * 3
    if get(strategy).family == "beam":
        scores = torch.log_softmax(scores, dim=-1)  # the beam family's processors see log-probs
    mine, reference = scores, scores
    for our, their in zip(ours, theirs, strict=True):
        mine = our(ids, mine, Context(PROMPT))
        reference = their(ids, reference)
        assert torch.equal(mine, reference), f"{our.name} ({type(their).__name__}) differs at length {length}"
    assert not bool(torch.isnan(mine).any())
    assert math.isfinite(float(mine.max()))
