"""Processors that forbid tokens: bad words, eos before a minimum length, suppressed tokens, a prefix rule, and eos
forced at the last step."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from explorer.errors import ExplorerError
from explorer.param_types import PrefixFunction
from explorer.processors.base import Context

__all__ = [
    "BadWords", "ForcedEOS", "MinLength", "MinNewTokens", "PrefixConstrained", "PrefixFunction", "SuppressTokens",
]


def _mask_tokens(scores: torch.Tensor, tokens: Sequence[int]) -> torch.Tensor:
    """``scores`` with ``tokens`` set to ``-inf`` in every row (a new tensor)."""
    hit = torch.zeros(scores.shape[-1], dtype=torch.bool)
    hit[list(tokens)] = True
    return torch.where(hit, -math.inf, scores)


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
        return _mask_tokens(scores, self.eos_token_ids)


@dataclass(frozen=True)
class MinLength:
    """Forbid eos while the row, prompt included, is shorter than ``min_length`` tokens (the reference's
    ``min_length``, which counts the prompt; ``min_new_tokens`` does not).

    >>> MinLength(4, (1,))(torch.tensor([[7, 8, 9]]), torch.zeros(1, 3), Context(prompt_length=2)).tolist()
    [[0.0, -inf, 0.0]]
    """

    min_length: int
    eos_token_ids: tuple[int, ...]
    name: str = "min_length"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        if ids.shape[-1] >= self.min_length:
            return scores.clone()
        return _mask_tokens(scores, self.eos_token_ids)


@dataclass(frozen=True)
class SuppressTokens:
    """Forbid ``tokens`` at every step.

    >>> SuppressTokens((0, 2))(torch.tensor([[1]]), torch.zeros(1, 3), Context(0)).tolist()
    [[-inf, 0.0, -inf]]
    """

    tokens: tuple[int, ...]
    name: str = "suppress_tokens"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        return _mask_tokens(scores, self.tokens)


@dataclass(frozen=True)
class ForcedEOS:
    """At the last step the budget allows, forbid everything but ``eos_token_ids`` (which score 0).

    >>> ForcedEOS(2, (1,))(torch.tensor([[7, 8]]), torch.full((1, 3), -5.0), Context(prompt_length=1)).tolist()
    [[-inf, 0.0, -inf]]
    """

    max_new_tokens: int
    eos_token_ids: tuple[int, ...]
    name: str = "forced_eos"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        if ids.shape[-1] != context.prompt_length + self.max_new_tokens - 1:
            return scores
        forced = torch.full_like(scores, -math.inf)
        forced[:, list(self.eos_token_ids)] = 0.0
        return forced


@dataclass(frozen=True)
class PrefixConstrained:
    """Allow only the tokens ``function(batch_id, row_ids)`` returns for each row (the reference's
    ``prefix_allowed_tokens_fn``). ``batch_id`` is the prompt's place in the batch: 0, a run having one prompt (as
    transformers 5.x numbers it; 4.56 gave each of several sampled sequences a number of its own).

    >>> PrefixConstrained(lambda batch, ids: [int(ids[-1]) + 1])(torch.tensor([[0, 1]]), torch.zeros(1, 3),
    ...                                                          Context(0)).tolist()
    [[-inf, -inf, 0.0]]
    """

    function: PrefixFunction
    name: str = "prefix_allowed_tokens"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        mask = torch.full_like(scores, -math.inf)
        for row in range(ids.shape[0]):
            allowed = list(self.function(0, ids[row]))
            if not allowed:
                raise ExplorerError(f"prefix_allowed_tokens_fn returned no token for row {row} at "
                                    f"{ids.shape[-1] - context.prompt_length} new tokens: the constraint cannot be met")
            mask[row, allowed] = 0.0
        return scores + mask
