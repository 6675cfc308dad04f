"""Sampling warpers: temperature, top-k, top-p, min-p, typical-p, epsilon and eta cutoffs (strategies that sample)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from explorer.processors.base import Context

__all__ = ["EpsilonCutoff", "EtaCutoff", "MinP", "Temperature", "TopK", "TopP", "TypicalP"]


def _mask_sorted(scores: torch.Tensor, order: torch.Tensor, drop_sorted: torch.Tensor) -> torch.Tensor:
    """Mask the tokens marked in ``drop_sorted``, which is indexed in ``order`` (a sort of each row)."""
    return scores.masked_fill(drop_sorted.scatter(1, order, drop_sorted), -math.inf)


@dataclass(frozen=True)
class Temperature:
    """Divide scores by ``temperature`` (< 1 sharpens, > 1 flattens).

    >>> Temperature(0.5)(torch.zeros(1, 0), torch.tensor([[1.0, -1.0]]), Context(0)).tolist()
    [[2.0, -2.0]]
    """

    temperature: float
    name: str = "temperature"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        return scores / self.temperature


@dataclass(frozen=True)
class TopK:
    """Keep the ``top_k`` best tokens (ties with the k-th kept too), mask the rest.

    >>> TopK(2)(torch.zeros(1, 0), torch.tensor([[3.0, 1.0, 2.0]]), Context(0)).tolist()
    [[3.0, -inf, 2.0]]
    """

    top_k: int
    min_tokens_to_keep: int = 1
    name: str = "top_k"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        k = min(max(self.top_k, self.min_tokens_to_keep), scores.shape[-1])
        kth_best = torch.topk(scores, k)[0][..., -1, None]
        return scores.masked_fill(scores < kth_best, -math.inf)


@dataclass(frozen=True)
class TopP:
    """Keep the smallest set of best tokens whose probability adds up to at least ``top_p`` (nucleus).

    >>> TopP(0.5)(torch.zeros(1, 0), torch.tensor([[0.0, 2.0, 0.0]]), Context(0)).tolist()
    [[-inf, 2.0, -inf]]
    """

    top_p: float
    min_tokens_to_keep: int = 1
    name: str = "top_p"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        ascending, order = torch.sort(scores, descending=False)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative <= (1 - self.top_p)
        drop_sorted[..., -self.min_tokens_to_keep :] = False
        return _mask_sorted(scores, order, drop_sorted)


@dataclass(frozen=True)
class MinP:
    """Mask tokens whose probability is below ``min_p`` times the best token's probability.

    >>> MinP(0.5)(torch.zeros(1, 0), torch.tensor([[0.0, math.log(0.4)]]), Context(0)).tolist()
    [[0.0, -inf]]
    """

    min_p: float
    min_tokens_to_keep: int = 1
    name: str = "min_p"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)
        threshold = self.min_p * probs.max(dim=-1, keepdim=True)[0]
        order = torch.argsort(scores, descending=True, dim=-1)
        drop_sorted = torch.gather(probs < threshold, dim=-1, index=order)
        drop_sorted[..., : self.min_tokens_to_keep] = False
        return _mask_sorted(scores, order, drop_sorted)


@dataclass(frozen=True)
class TypicalP:
    """Keep the tokens whose surprise is closest to the entropy, until their mass reaches ``typical_p``.

    >>> TypicalP(0.5)(torch.zeros(1, 0), torch.tensor([[0.0, 0.0, -9.0]]), Context(0))[0, 2].item()
    -inf
    """

    typical_p: float
    min_tokens_to_keep: int = 1
    name: str = "typical_p"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        logp = torch.log_softmax(scores, dim=-1)
        entropy = -(logp * logp.exp()).nansum(-1, keepdim=True)
        distance = torch.abs(-logp - entropy)
        by_distance, order = torch.sort(distance, descending=False)
        cumulative = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < self.typical_p).sum(dim=1).clamp(max=by_distance.shape[-1] - 1)
        drop_sorted = by_distance > by_distance.gather(1, last.view(-1, 1))
        drop_sorted[..., : self.min_tokens_to_keep] = False
        return _mask_sorted(scores, order, drop_sorted)


def _keep_best(scores: torch.Tensor, drop: torch.Tensor, keep: int) -> torch.Tensor:
    """Mask ``drop`` but never the ``keep`` best tokens of a row."""
    kth_best = torch.topk(scores, min(keep, scores.shape[-1]))[0][..., -1, None]
    return scores.masked_fill(drop & (scores < kth_best), -math.inf)


@dataclass(frozen=True)
class EpsilonCutoff:
    """Mask tokens whose probability is below ``epsilon`` (truncation sampling, Hewitt et al. 2022).

    >>> EpsilonCutoff(0.2)(torch.zeros(1, 0), torch.tensor([[0.9, 0.1]]).log(), Context(0))[0, 1].item()
    -inf
    """

    epsilon: float
    min_tokens_to_keep: int = 1
    name: str = "epsilon_cutoff"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        return _keep_best(scores, scores.softmax(dim=-1) < self.epsilon, self.min_tokens_to_keep)


@dataclass(frozen=True)
class EtaCutoff:
    """Mask tokens below ``min(eta, sqrt(eta) * exp(-entropy))``: a cut that loosens when the distribution is
    flat (eta sampling, Hewitt et al. 2022).

    >>> EtaCutoff(0.5)(torch.zeros(1, 0), torch.tensor([[0.0, -3.0]]), Context(0))[0, 1].item()
    -inf
    """

    epsilon: float
    min_tokens_to_keep: int = 1
    name: str = "eta_cutoff"

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor:
        entropy = torch.distributions.Categorical(logits=scores).entropy()  # type: ignore[no-untyped-call]
        epsilon = torch.tensor(self.epsilon)
        eta = torch.min(epsilon, torch.sqrt(epsilon) * torch.exp(-entropy))[..., None]
        return _keep_best(scores, scores.softmax(dim=-1) < eta, self.min_tokens_to_keep)
