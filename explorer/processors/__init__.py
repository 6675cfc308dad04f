"""Logits processors, each pure and each named, built from decoding parameters in the reference's order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from explorer.params import DecodeParams
from explorer.processors.base import Context, Processor, run_processors
from explorer.processors.masks import (
    BadWords,
    ForcedEOS,
    MinLength,
    MinNewTokens,
    PrefixConstrained,
    PrefixFunction,
    SuppressTokens,
)
from explorer.processors.numeric import InfNanRemove, Renormalize
from explorer.processors.penalties import (
    ExponentialDecayLength,
    HammingDiversity,
    NoRepeatNGram,
    RepetitionPenalty,
    SequenceBias,
)
from explorer.processors.warpers import EpsilonCutoff, EtaCutoff, MinP, Temperature, TopK, TopP, TypicalP

if TYPE_CHECKING:
    from explorer.strategies.registry import StrategySpec

__all__ = [
    "BadWords",
    "Context",
    "EpsilonCutoff",
    "EtaCutoff",
    "ExponentialDecayLength",
    "ForcedEOS",
    "HammingDiversity",
    "InfNanRemove",
    "MinLength",
    "MinNewTokens",
    "MinP",
    "NoRepeatNGram",
    "PrefixConstrained",
    "Processor",
    "Renormalize",
    "RepetitionPenalty",
    "SequenceBias",
    "SuppressTokens",
    "Temperature",
    "TopK",
    "TopP",
    "TypicalP",
    "build_processors",
    "run_processors",
]


def build_processors(
    p: DecodeParams, spec: StrategySpec, eos_token_ids: tuple[int, ...], prefix: PrefixFunction | None = None,
) -> tuple[Processor, ...]:
    """The processors ``p`` asks for, in the order transformers 4.56.2 (and 5.x) applies them.

    Biases and penalties first (sequence bias, diversity, repetition, n-gram, bad words), then the masks (min
    length, min new tokens, the prefix rule ``prefix``, forced eos), invalid values, the eos length penalty,
    suppressed tokens; then the sampling warpers, for strategies that sample; renormalisation last. The warpers
    keep at least one token, or one more than the eos ids in the beam family (a beam must be able to continue).
    ``p``'s token-valued parameters hold ids by now (``explorer.api.plan`` tokenizes phrases).

    >>> from explorer.strategies import get, make_params
    >>> [proc.name for proc in build_processors(make_params("sample", temperature=0.7, top_k=5), get("sample"), (2,))]
    ['temperature', 'top_k']
    """
    out = _penalties(p, eos_token_ids)
    out += _masks(p, eos_token_ids, prefix)
    if p.remove_invalid_values:
        out.append(InfNanRemove())
    if p.exponential_decay_length_penalty is not None:
        start, factor = p.exponential_decay_length_penalty
        out.append(ExponentialDecayLength(start, factor, eos_token_ids))
    if p.suppress_tokens:
        out.append(SuppressTokens(_ints(p.suppress_tokens)))
    if spec.sampling:
        out += _warpers(p, len(eos_token_ids) + 1 if spec.family == "beam" else 1)
    if p.renormalize_logits:
        out.append(Renormalize())
    return tuple(out)


def _penalties(p: DecodeParams, eos_token_ids: tuple[int, ...]) -> list[Processor]:
    """Sequence bias, diversity, repetition, n-gram and bad-words processors."""
    out: list[Processor] = []
    if p.sequence_bias:
        biases = {_seq(seq): float(bias) for seq, bias in p.sequence_bias}  # a later entry replaces an earlier one
        out.append(SequenceBias(tuple(biases.items())))
    if p.diversity_penalty > 0:
        out.append(HammingDiversity(p.diversity_penalty))
    if p.repetition_penalty != 1.0:
        out.append(RepetitionPenalty(p.repetition_penalty))
    if p.no_repeat_ngram_size > 0:
        out.append(NoRepeatNGram(p.no_repeat_ngram_size))
    if p.bad_words_ids:
        out.append(BadWords(tuple(_seq(seq) for seq in p.bad_words_ids), eos_token_ids))
    return out


def _masks(p: DecodeParams, eos_token_ids: tuple[int, ...], prefix: PrefixFunction | None) -> list[Processor]:
    """Min length, min new tokens, the prefix rule and forced eos."""
    out: list[Processor] = []
    if p.min_length > 0:
        out.append(MinLength(p.min_length, eos_token_ids))
    if p.min_new_tokens > 0:
        out.append(MinNewTokens(p.min_new_tokens, eos_token_ids))
    if prefix is not None:
        out.append(PrefixConstrained(prefix))
    if p.forced_eos_token_id:
        out.append(ForcedEOS(p.max_new_tokens, _ints(p.forced_eos_token_id)))
    return out


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
    if p.epsilon_cutoff > 0:
        out.append(EpsilonCutoff(p.epsilon_cutoff, keep))
    if p.eta_cutoff > 0:
        out.append(EtaCutoff(p.eta_cutoff, keep))
    return out


def _seq(seq: tuple[int, ...] | str) -> tuple[int, ...]:
    """A token sequence already tokenized (``explorer.api.plan`` turns phrases into ids before processors exist)."""
    if isinstance(seq, str):
        raise TypeError("phrases must be tokenized before building processors (explorer.api.plan does it)")
    return seq


def _ints(tokens: tuple[int | str, ...]) -> tuple[int, ...]:
    """Single tokens already tokenized."""
    if any(isinstance(t, str) for t in tokens):
        raise TypeError("phrases must be tokenized before building processors (explorer.api.plan does it)")
    return tuple(int(t) for t in tokens)
