"""Logits processors, each pure and each named, built from decoding parameters in the reference's order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from explorer.params import DecodeParams
from explorer.processors.base import Context, Processor, run_processors
from explorer.processors.penalties import (
    BadWords,
    HammingDiversity,
    MinNewTokens,
    NoRepeatNGram,
    RepetitionPenalty,
)
from explorer.processors.warpers import MinP, Temperature, TopK, TopP, TypicalP

if TYPE_CHECKING:
    from explorer.strategies.registry import StrategySpec

__all__ = [
    "BadWords",
    "Context",
    "HammingDiversity",
    "MinNewTokens",
    "MinP",
    "NoRepeatNGram",
    "Processor",
    "RepetitionPenalty",
    "Temperature",
    "TopK",
    "TopP",
    "TypicalP",
    "build_processors",
    "run_processors",
]


def build_processors(p: DecodeParams, spec: StrategySpec, eos_token_ids: tuple[int, ...]) -> tuple[Processor, ...]:
    """The processors ``p`` asks for, in the order transformers 4.56.2 applies them.

    Penalties first (diversity, repetition, n-gram, bad words, min new tokens), then the sampling warpers
    (temperature, top-k, top-p, min-p, typical-p) for strategies that sample. The warpers keep at least one token,
    or one more than the eos ids in the beam family (a beam must be able to continue).

    >>> from explorer.strategies import get, make_params
    >>> [proc.name for proc in build_processors(make_params("sample", temperature=0.7, top_k=5), get("sample"), (2,))]
    ['temperature', 'top_k']
    """
    out: list[Processor] = []
    if p.diversity_penalty > 0:
        out.append(HammingDiversity(p.diversity_penalty))
    if p.repetition_penalty != 1.0:
        out.append(RepetitionPenalty(p.repetition_penalty))
    if p.no_repeat_ngram_size > 0:
        out.append(NoRepeatNGram(p.no_repeat_ngram_size))
    if p.bad_words_ids:
        out.append(BadWords(_ids(p.bad_words_ids), eos_token_ids))
    if p.min_new_tokens > 0:
        out.append(MinNewTokens(p.min_new_tokens, eos_token_ids))
    if spec.sampling:
        out += _warpers(p, len(eos_token_ids) + 1 if spec.family == "beam" else 1)
    return tuple(out)


def _warpers(p: DecodeParams, keep: int) -> list[Processor]:
    """The sampling warpers ``p`` asks for, each keeping at least ``keep`` tokens."""
    out: list[Processor] = []
    if p.temperature != 1.0:
        out.append(Temperature(p.temperature))
    if p.top_k:
        out.append(TopK(p.top_k, keep))
    if p.top_p < 1.0:
        out.append(TopP(p.top_p, keep))
    if p.min_p is not None:
        out.append(MinP(p.min_p, keep))
    if p.typical_p < 1.0:
        out.append(TypicalP(p.typical_p, keep))
    return out


def _ids(sequences: tuple[tuple[int, ...] | str, ...]) -> tuple[tuple[int, ...], ...]:
    """Token sequences already tokenized (``explorer.api.plan`` turns phrases into ids before processors exist)."""
    if any(isinstance(seq, str) for seq in sequences):
        raise TypeError("phrases must be tokenized before building processors (explorer.api.plan does it)")
    return tuple(seq for seq in sequences if not isinstance(seq, str))
