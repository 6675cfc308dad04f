"""Processors that change numbers, not choices: invalid values replaced, and scores renormalised to log-probs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from explorer.processors.base import Context

__all__ = ["MASKED_FLOOR", "InfNanRemove", "Renormalize"]

#: float32's lowest value, what ``InfNanRemove`` puts in place of ``-inf``. A trace records a score at or below it as
#: ``-inf`` (masked): it carries no probability, and sums with it are meaningless.
MASKED_FLOOR = float(torch.finfo(torch.float32).min)


@dataclass(frozen=True)
class InfNanRemove:
    """Replace NaN with 0 and ``±inf`` with float32's largest and lowest values (``remove_invalid_values``).

    >>> InfNanRemove()(torch.zeros(1, 0), torch.tensor([[float("nan"), float("-inf"), 1.0]]), Context(0)).tolist()
    [[0.0, -3.4028234663852886e+38, 1.0]]
    """

    name: str = "remove_invalid_values"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        finfo = torch.finfo(scores.dtype)
        out = torch.where(scores != scores, 0.0, scores)
        out = torch.where(scores == float("inf"), finfo.max, out)
        return torch.where(scores == float("-inf"), finfo.min, out)


@dataclass(frozen=True)
class Renormalize:
    """Log-softmax the scores after every other processor (``renormalize_logits``), so they are log-probabilities
    again: in the beam family the beams then add up renormalised scores.

    >>> Renormalize()(torch.zeros(1, 0), torch.tensor([[0.0, 0.0]]), Context(0)).exp().tolist()
    [[0.5, 0.5]]
    """

    name: str = "renormalize_logits"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        return torch.log_softmax(scores, dim=-1)
