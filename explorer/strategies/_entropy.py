"""The entropy of the distribution each row's next token is chosen from: a log-softmax, an exp and a sum per step."""

from __future__ import annotations

import math

import torch

__all__ = ["row_entropies"]


def row_entropies(scores: torch.Tensor, rows: list[int]) -> dict[int, float | None]:
    """Entropy in nats of ``softmax(scores[row])`` for each of ``rows`` (``None`` where every token is masked).

    ``scores`` are a step's final (processed) scores ``[rows, vocab]``; masked tokens (``-inf`` or float32's lowest)
    have probability 0 and add nothing. The softmax renormalises, so beam search's processed log-probs (which
    processors leave unnormalised) give the entropy of the distribution the row ranks its tokens by.

    >>> row_entropies(torch.log(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])), [0, 1])
    {0: 0.6931471824645996, 1: 0.0}
    """
    if not rows:
        return {}
    logp = torch.log_softmax(scores[rows].float(), dim=-1)
    # p * log p with 0 * -inf taken as 0 (a masked token); a row with every token masked stays NaN: None.
    values = (-(logp.exp() * logp.nan_to_num(nan=math.nan, neginf=0.0)).sum(dim=-1)).tolist()
    return {row: (value + 0.0 if math.isfinite(value) else None) for row, value in zip(rows, values, strict=True)}
