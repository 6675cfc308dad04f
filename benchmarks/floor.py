"""The floor every benchmark measures against: a bare KV-cache forward loop, no search and no recording."""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import DynamicCache

from explorer.models.hf import cache_keyword


def bare_loop(model: Any, prompt: list[int], rows: int, steps: int, *, gather: bool = False) -> tuple[float, float]:
    """Seconds of the prefill of ``prompt`` as ``rows`` rows and of the ``steps - 1`` single-token forwards after
    it, each feeding every row its argmax (with ``gather``: the cache is first reordered as beam search must,
    every row moving, by the model adapter's own ``select``)."""
    hf = model.hf
    keyword = cache_keyword(hf)  # "cache" (transformers >= 5.24) or "past_key_values"
    ids = torch.tensor([prompt] * rows)
    order = torch.roll(torch.arange(rows), 1)  # not the identity: every row moves, as beams do
    with torch.inference_mode():
        start = time.perf_counter()
        cache: Any = DynamicCache(config=hf.config)
        out = hf(input_ids=ids, use_cache=True, logits_to_keep=1, **{keyword: cache})
        cache = out[keyword]
        prefilled = time.perf_counter()
        for _ in range(steps - 1):
            token = out.logits[:, -1, :].argmax(-1, keepdim=True)
            if gather:
                cache = model.select(cache, order)
            out = hf(input_ids=token, use_cache=True, logits_to_keep=1, **{keyword: cache})
            cache = out[keyword]
        end = time.perf_counter()
    return prefilled - start, end - prefilled
