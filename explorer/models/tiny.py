"""``tiny-random``: a seeded two-layer Llama with a real-text tokenizer (SmolLM2's first 1000 ids), for fast tests."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import torch
from tokenizers import Tokenizer as BackendTokenizer
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from explorer.models.hf import HFCausalLM
from explorer.models.tokenizer import Tokenizer

__all__ = ["NAME", "SEED", "build_model", "load_tiny", "seeded_llama", "tiny_config", "tiny_tokenizer"]

NAME = "tiny-random"
SEED = 0


def tiny_config() -> LlamaConfig:
    """The tiny Llama's config: 1000-token vocabulary, 2 layers of width 64, tied embeddings.

    ``pad_token_id=2`` makes transformers zero row 2 of the (tied) embedding, so the logit of token 2
    (``<|im_end|>``, the eos) is exactly 0 at every step; transformers 4.56.2 does the same.
    """
    return LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        initializer_range=0.5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )


def build_model() -> LlamaForCausalLM:
    """Seed 0, then build: the same weights as these two lines give in transformers 4.56.2 and 5.x.

    The caller's RNG state and default dtype are left as they were.
    """
    return seeded_llama(tiny_config(), SEED)


def seeded_llama(config: LlamaConfig, seed: int) -> LlamaForCausalLM:
    """A float32 Llama of ``config`` built right after ``torch.manual_seed(seed)``, in eval mode; the caller's RNG
    state and default dtype are left as they were."""
    default_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.set_default_dtype(torch.float32)
        try:
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        finally:
            torch.set_default_dtype(default_dtype)
    torch.nn.Module.eval(model)
    return model


def _data_text(name: str) -> str:
    """Text of a file shipped in ``explorer/data``."""
    return resources.files("explorer").joinpath("data", name).read_text(encoding="utf-8")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """The SmolLM2 tokenizer truncated to ids < 1000 (byte-level BPE, ChatML template), from package data."""
    config: dict[str, Any] = json.loads(_data_text("tiny-tokenizer-config.json"))
    backend = BackendTokenizer.from_str(_data_text("tiny-tokenizer.json"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, **config)  # type: ignore[no-untyped-call]


def load_tiny() -> HFCausalLM:
    """``tiny-random`` as a ``CausalLM`` (well under a second; no file but the packaged tokenizer)."""
    return HFCausalLM(build_model(), Tokenizer(tiny_tokenizer()), NAME)
