"""Processors that penalise or bias tokens: repetition, n-gram repeats, group diversity, sequence bias, and the
length penalty that makes eos ever more likely."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from explorer.processors.base import Context

__all__ = ["ExponentialDecayLength", "HammingDiversity", "NoRepeatNGram", "RepetitionPenalty", "SequenceBias"]


@dataclass(frozen=True)
class RepetitionPenalty:
    """Divide the score of every token already in the row (prompt included) by ``penalty`` (multiply if negative).

    >>> RepetitionPenalty(2.0)(torch.tensor([[1]]), torch.tensor([[-1.0, -1.0]]), Context(0)).tolist()
    [[-1.0, -2.0]]
    """

    penalty: float
    name: str = "repetition_penalty"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        seen = torch.gather(scores, 1, ids)
        penalised = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return scores.scatter(1, ids, penalised)


@dataclass(frozen=True)
class NoRepeatNGram:
    """Forbid any token that would repeat an n-gram already in the row (prompt included).

    >>> NoRepeatNGram(2)(torch.tensor([[3, 4, 3]]), torch.zeros(1, 6), Context(0))[0, 4].item()
    -inf
    """

    size: int
    name: str = "no_repeat_ngram"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        out = scores.clone()
        length = ids.shape[-1]
        if length + 1 < self.size:
            return out
        for row, tokens in enumerate(ids.tolist()):
            banned = _banned_after(tokens, self.size)
            if banned:
                out[row, banned] = -math.inf
        return out


def _banned_after(tokens: list[int], size: int) -> list[int]:
    """Tokens that would complete an n-gram of ``size`` already seen, given the row's last ``size - 1`` tokens."""
    prefix = tuple(tokens[len(tokens) + 1 - size :]) if size > 1 else ()
    banned: list[int] = []
    for start in range(len(tokens) - size + 1):
        if tuple(tokens[start : start + size - 1]) == prefix:
            banned.append(tokens[start + size - 1])
    return banned


@dataclass(frozen=True)
class HammingDiversity:
    """Subtract ``penalty`` times the number of earlier groups' beams that chose each token at this step.

    >>> ctx = Context(0, previous_group_tokens=torch.tensor([1, 1]))
    >>> HammingDiversity(0.5)(torch.zeros(1, 0), torch.zeros(1, 3), ctx).tolist()
    [[0.0, -1.0, 0.0]]
    """

    penalty: float
    name: str = "diversity_penalty"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        previous = context.previous_group_tokens
        if previous is None or previous.numel() == 0:
            return scores
        frequency = torch.bincount(previous, minlength=scores.shape[-1])
        return scores - self.penalty * frequency


@dataclass(frozen=True)
class SequenceBias:
    """Add a bias to a token when the row ends with the rest of its sequence (a lone token: always), as the
    reference's ``sequence_bias``: several sequences ending in the same token add up.

    >>> SequenceBias((((4,), -1.0), ((1, 2), 2.5)))(torch.tensor([[0, 1]]), torch.zeros(1, 5), Context(0)).tolist()
    [[0.0, 0.0, 2.5, 0.0, -1.0]]
    """

    biases: tuple[tuple[tuple[int, ...], float], ...]
    name: str = "sequence_bias"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        bias = torch.zeros_like(scores)
        for seq, value in self.biases:
            if len(seq) == 1:
                bias[:, seq[0]] += value
            elif len(seq) <= ids.shape[1]:  # a sequence longer than the row is ignored, as in the reference
                prefix = torch.tensor(seq[:-1], dtype=ids.dtype)
                matches = torch.eq(ids[:, -(len(seq) - 1) :], prefix).all(dim=1)
                bias[:, seq[-1]] += torch.where(matches, value, 0.0)
        return scores + bias


@dataclass(frozen=True)
class ExponentialDecayLength:
    """After ``start`` new tokens, raise eos by ``|score| * (factor ** n - 1)``, n the tokens past ``start``
    (``exponential_decay_length_penalty``): ever more likely to end. A masked eos is left masked.

    >>> ExponentialDecayLength(1, 2.0, (0,))(torch.tensor([[5, 6, 7]]), torch.tensor([[-4.0, -1.0]]),
    ...                                      Context(prompt_length=1)).tolist()
    [[0.0, -1.0]]
    """

    start: int
    factor: float
    eos_token_ids: tuple[int, ...]
    name: str = "exponential_decay_length_penalty"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        past = ids.shape[-1] - (context.prompt_length + self.start)
        if past <= 0:
            return scores
        eos = list(self.eos_token_ids)
        penalties = torch.zeros_like(scores)
        penalty = torch.abs(scores[:, eos]) * (pow(self.factor, past) - 1)
        # a masked eos stays masked, as in transformers 5.x (4.56 added inf to -inf: NaN, which wins every top-k)
        penalties[:, eos] = penalty.masked_fill(~torch.isfinite(scores[:, eos]), 0.0)
        return scores + penalties
