"""``HFCausalLM`` on the tiny model: start/step agree with ``generate()`` bit for bit, and ``select`` gathers rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from transformers import DynamicCache

from explorer.errors import ExplorerError
from explorer.models.base import CausalLM
from explorer.models.hf import HFCausalLM, align_weights


def _lm(model: CausalLM) -> HFCausalLM:
    assert isinstance(model, HFCausalLM)
    return model


def _layers(cache: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    assert isinstance(cache, DynamicCache)
    return [(layer.keys, layer.values) for layer in cache.layers]  # type: ignore[misc]


def _snapshot(cache: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(k.clone(), v.clone()) for k, v in _layers(cache)]


def _same(a: list[tuple[torch.Tensor, torch.Tensor]], b: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x, y) and torch.equal(u, w) for (x, u), (y, w) in zip(a, b, strict=True)
    )


def _generate(lm: HFCausalLM, prompt: list[int], **kwargs: Any) -> Any:
    ids = torch.tensor([prompt])
    return lm.hf.generate(  # type: ignore[operator]
        ids, return_dict_in_generate=True, output_logits=True, eos_token_id=2, pad_token_id=2, **kwargs
    )


def _four_distinct_rows(lm: HFCausalLM) -> tuple[object, torch.Tensor]:
    """A 4-row cache whose rows differ (each fed a different token), and the next tokens to feed."""
    _, cache = lm.start(lm.tokenizer.encode("The quick brown fox"), rows=4)
    _, cache = lm.step(torch.tensor([10, 200, 300, 999]), cache)
    return cache, torch.tensor([5, 17, 243, 64])


def test_greedy_start_step_equals_generate_bit_for_bit(tiny: CausalLM) -> None:
    lm = _lm(tiny)
    prompt = lm.tokenizer.chat("Write a short poem about flour.")
    out = _generate(lm, prompt, do_sample=False, max_new_tokens=12, min_new_tokens=12)
    logits, cache = lm.start(prompt)
    tokens = []
    for expected in out.logits:
        assert logits.shape == (1, 1000)
        assert logits.dtype == torch.float32
        assert torch.equal(logits, expected)
        tokens.append(int(logits.argmax(-1)))
        logits, cache = lm.step(logits.argmax(-1), cache)
    assert tokens == out.sequences[0, len(prompt) :].tolist()


def test_start_with_rows_equals_the_batched_prefill_of_beam_search(tiny: CausalLM) -> None:
    lm = _lm(tiny)
    prompt = lm.tokenizer.encode("Once upon a time")
    out = _generate(lm, prompt, do_sample=False, num_beams=4, max_new_tokens=2)
    logits, cache = lm.start(prompt, rows=4)
    assert logits.shape == (4, 1000)
    assert torch.equal(logits, out.logits[0])
    assert all(k.shape[0] == 4 for k, _ in _layers(cache))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch on one thread: with two, CPU attention's result for a row depends on its place in the batch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_select_with_a_permutation_then_step_equals_stepping_permuted_rows(tiny: CausalLM, one_thread: None) -> None:
    lm = _lm(tiny)
    cache, tokens = _four_distinct_rows(lm)
    order = torch.tensor([2, 0, 3, 1])
    permuted, _ = lm.step(tokens[order], lm.select(cache, order))
    straight, _ = lm.step(tokens, lm.select(cache, torch.arange(4)))
    assert torch.equal(permuted, straight[order])


def test_select_with_a_permutation_agrees_closely_on_any_thread_count(tiny: CausalLM) -> None:
    lm = _lm(tiny)
    cache, tokens = _four_distinct_rows(lm)
    order = torch.tensor([3, 2, 1, 0])
    permuted, _ = lm.step(tokens[order], lm.select(cache, order))
    straight, _ = lm.step(tokens, lm.select(cache, torch.arange(4)))
    torch.testing.assert_close(permuted, straight[order], rtol=0, atol=1e-4)


def test_select_leaves_its_argument_intact_and_usable(tiny: CausalLM) -> None:
    lm = _lm(tiny)
    cache, tokens = _four_distinct_rows(lm)
    before = _snapshot(cache)
    fork = lm.select(cache, torch.tensor([1, 1, 0]))
    lm.step(tokens[:3], fork)
    assert _same(_snapshot(cache), before)
    assert not any(k.data_ptr() == f.data_ptr() for (k, _), (f, _) in zip(_layers(cache), _layers(fork), strict=True))
    again, _ = lm.step(tokens, cache)
    fresh, _ = lm.step(tokens, lm.select(_four_distinct_rows(lm)[0], torch.arange(4)))
    assert torch.equal(again, fresh)


def test_select_shrinks_and_copies_rows(tiny: CausalLM) -> None:
    lm = _lm(tiny)
    cache, _ = _four_distinct_rows(lm)
    picked = lm.select(cache, torch.tensor([3, 3]))
    for (k, v), (pk, pv) in zip(_layers(cache), _layers(picked), strict=True):
        assert torch.equal(pk, k[[3, 3]])
        assert torch.equal(pv, v[[3, 3]])


def test_logits_belong_to_the_caller(tiny: CausalLM) -> None:
    logits, _ = tiny.start([5, 6, 7])
    logits[0, 0] = float("-inf")  # an ordinary tensor: editing it in place is allowed
    again, _ = tiny.start([5, 6, 7])
    assert torch.isfinite(again).all()


@pytest.mark.parametrize(
    ("prompt", "message"),
    [([], "prompt_ids is empty"), ([5, 1000], "token id 1000 is invalid"), ([-1], "token id -1 is invalid")],
)
def test_start_refuses_bad_prompts(tiny: CausalLM, prompt: list[int], message: str) -> None:
    with pytest.raises(ExplorerError, match=message):
        tiny.start(prompt)


def test_start_refuses_zero_rows(tiny: CausalLM) -> None:
    with pytest.raises(ExplorerError, match="rows=0"):
        tiny.start([5], rows=0)


def test_step_refuses_a_foreign_cache_or_a_row_mismatch(tiny: CausalLM) -> None:
    _, cache = tiny.start([5, 6], rows=2)
    with pytest.raises(ExplorerError, match="3 tokens for a cache of 2 rows"):
        tiny.step(torch.tensor([1, 2, 3]), cache)
    with pytest.raises(ExplorerError, match="expected the cache returned by start"):
        tiny.step(torch.tensor([1]), object())


def test_align_weights_copies_only_misaligned_tensors_and_keeps_ties() -> None:
    module = torch.nn.Linear(3, 4, bias=False)
    storage = torch.zeros(13)
    module.weight.data = storage[1:13].view(4, 3)  # starts 4 bytes into its storage
    shared = torch.nn.ModuleList([module, module])
    assert align_weights(shared) == 1
    assert module.weight.data_ptr() % 64 == 0
    assert align_weights(shared) == 0


def test_info(tiny: CausalLM) -> None:
    info = tiny.info
    assert (info.name, info.vocab_size, info.eos_token_ids, info.pad_token_id) == ("tiny-random", 1000, (2,), 2)
    assert (info.max_context, info.dtype) == (2048, "float32")
