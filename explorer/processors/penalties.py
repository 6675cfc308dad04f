"""Processors that penalise or forbid tokens: repetition, n-gram repeats, bad words, early eos, group diversity."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from explorer.processors.base import Context

__all__ = ["BadWords", "HammingDiversity", "MinNewTokens", "NoRepeatNGram", "RepetitionPenalty"]


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
class BadWords:
    """Forbid token sequences: a single token always, a longer one when the row ends with all but its last token.

    Sequences equal to a lone eos token are ignored, and a sequence longer than the row is skipped, as in the
    reference (eos cannot be banned this way).

    >>> BadWords(((4,), (2, 3)), eos_token_ids=(9,))(torch.tensor([[1, 2]]), torch.zeros(1, 5), Context(0)).tolist()
    [[0.0, 0.0, 0.0, -inf, -inf]]
    """

    sequences: tuple[tuple[int, ...], ...]
    eos_token_ids: tuple[int, ...] = ()
    name: str = "bad_words"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        bias = torch.zeros_like(scores)
        sequences = [s for s in self.sequences if not (len(s) == 1 and s[0] in self.eos_token_ids)]
        for seq in sequences:
            if len(seq) == 1:
                bias[:, seq[0]] = -math.inf
            elif len(seq) <= ids.shape[1]:
                prefix = torch.tensor(seq[:-1], dtype=ids.dtype)
                matches = torch.eq(ids[:, -(len(seq) - 1) :], prefix).all(dim=1)
                bias[matches, seq[-1]] = -math.inf
        return scores + bias


@dataclass(frozen=True)
class MinNewTokens:
    """Forbid eos until ``min_new_tokens`` tokens have been generated.

    >>> MinNewTokens(2, (1,))(torch.tensor([[7, 8]]), torch.zeros(1, 3), Context(prompt_length=1)).tolist()
    [[0.0, -inf, 0.0]]
    """

    min_new_tokens: int
    eos_token_ids: tuple[int, ...]
    name: str = "min_new_tokens"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        if ids.shape[-1] - context.prompt_length >= self.min_new_tokens:
            return scores.clone()
        is_eos = torch.zeros(scores.shape[-1], dtype=torch.bool)
        is_eos[list(self.eos_token_ids)] = True
        return torch.where(is_eos, -math.inf, scores)


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
