"""Universal assisted decoding (a draft with another tokenizer): the alignment of re-encoded tokens against the
reference's own, the second tokenizer, greedy's text, and what is refused."""

from __future__ import annotations

import random

import pytest
import torch
from transformers.generation.candidate_generator import AssistedCandidateGeneratorDifferentTokenizers as Reference

import explorer
from explorer.invariants import check_trace
from explorer.models import tiny_bpe
from explorer.models.base import CausalLM
from explorer.strategies._universal import align


def _reference_align(old: list[int], new: list[int]) -> tuple[int, list[int], list[int]] | None:
    replace, fresh, replacements = Reference._get_tokens_diag(torch.tensor([old]), torch.tensor([new]))
    if replace is None:
        return None
    return int(replace), fresh[0].tolist(), replacements[0].tolist()


def test_align_is_the_references_longest_diagonal() -> None:
    """On thousands of short sequences over a few tokens (many ties, repeats, no overlap at all)."""
    rng = random.Random(0)
    for _ in range(3000):
        old = [rng.randrange(4) for _ in range(rng.randint(1, 9))]
        new = [rng.randrange(5) for _ in range(rng.randint(1, 9))]
        assert align(old, new) == _reference_align(old, new), (old, new)


def test_the_second_tokenizer_is_its_own_and_the_same_every_time() -> None:
    first, second = tiny_bpe.bpe_tokenizer(), tiny_bpe.bpe_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    assert len(first) == tiny_bpe.VOCAB
    text = "The best way to bake bread is"
    assert first.decode(first(text)["input_ids"]) == text
    assert first(text)["input_ids"] != explorer.load_model("tiny-random").tokenizer.encode(text)
    assert [first.convert_ids_to_tokens(i) for i in range(3)] == list(tiny_bpe.SPECIAL)


def test_a_draft_with_another_tokenizer_keeps_greedys_text(tiny: CausalLM) -> None:
    prompt = list(explorer.tokenize_prompt(tiny, "The weather today is"))
    trace = explorer.decode(tiny, prompt, "assisted", assistant_model="tiny-random-bpe", max_new_tokens=20,
                            num_assistant_tokens=4)
    greedy = explorer.decode(tiny, prompt, "greedy", max_new_tokens=20)
    assert trace.results[0].token_ids == greedy.results[0].token_ids
    assert check_trace(trace) == []
    drafted = [d for s in trace.steps if s.speculation for d in s.speculation.drafted]
    assert drafted
    assert all(d.draft_prob is None for d in drafted)  # q is over the draft's vocabulary
    assert explorer.Trace.from_json(trace.to_json()) == trace


def test_a_toy_table_cannot_be_re_encoded(tiny: CausalLM) -> None:
    with pytest.raises(explorer.ParameterError, match="transformers tokenizers on both sides") as error:
        explorer.decode(tiny, "Hello", "assisted", assistant_model="toy:how-to-generate", max_new_tokens=3)
    assert "\n" not in str(error.value)
