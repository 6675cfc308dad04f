"""Verifying a draft: greedy (keep drafted tokens while they are the target's argmax) and speculative sampling
(keep a drafted token with probability min(1, p / q); after a rejection draw from the normalised max(0, p - q))."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Verdict", "verify_greedy", "verify_sampling"]


@dataclass(frozen=True)
class Verdict:
    """What the target made of a draft of ``k`` tokens.

    ``tokens`` are the drafted tokens it accepted (``matches`` of them) followed by its own next token: ``k + 1``
    at most, before eos or the budget cut them. ``draws`` are speculative sampling's uniform draws (one per drafted
    token); ``residual`` the distribution the correction was drawn from after a rejection (``[vocab]``).
    """

    tokens: tuple[int, ...]
    matches: int
    draws: tuple[float, ...] | None = None
    residual: torch.Tensor | None = None


def _leading(accepted: list[bool]) -> int:
    """How many of ``accepted`` hold before the first that does not."""
    count = 0
    for ok in accepted:
        if not ok:
            break
        count += 1
    return count


def verify_greedy(processed: torch.Tensor, drafted: tuple[int, ...]) -> Verdict:
    """Greedy verification: ``processed`` ``[k + 1, vocab]`` are the target's processed scores after the text and
    after each drafted prefix; drafted tokens are kept while they equal its argmax, then the argmax follows.

    >>> verify_greedy(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]), (1, 1)).tokens
    (1, 0)
    """
    best = torch.argmax(processed, dim=-1).tolist()  # [k + 1]
    matches = _leading([d == b for d, b in zip(drafted, best, strict=False)])
    return Verdict((*drafted[:matches], best[matches]), matches)


def verify_sampling(processed: torch.Tensor, drafted: tuple[int, ...], draft_scores: torch.Tensor | None,
                    generator: torch.Generator | None) -> Verdict:
    """Sampling verification, with the run's generator.

    With the draft's processed scores (``[k, vocab]``): speculative sampling (Leviathan et al. 2023, algorithm 1, as
    the reference runs it): draw ``u`` per drafted token, keep it while ``u <= p / q``; after the first rejection
    draw from ``max(0, p - q)`` normalised, after a fully accepted draft from ``p``. The text is distributed exactly
    as sampling from the target alone. Without them (prompt lookup): draw the target's token at every position and
    keep drafted tokens while they equal the draws.
    """
    probs = torch.softmax(processed, dim=-1)  # [k + 1, vocab]: p at every position
    k = len(drafted)
    if draft_scores is None:
        drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()  # [k + 1]
        matches = _leading([d == t for d, t in zip(drafted, drawn, strict=False)])
        return Verdict(tuple(drawn[: matches + 1]), matches)
    q = torch.softmax(draft_scores, dim=-1)  # [k, vocab]
    index = torch.arange(k)
    picked = torch.tensor(drafted, dtype=torch.long)
    ratio = probs[index, picked] / q[index, picked]  # p / q of each drafted token
    draws = torch.rand(k, generator=generator)
    matches = _leading((draws <= ratio).tolist())
    if matches < k:
        residual = torch.clamp(probs[matches] - q[matches], min=0)
        residual = residual / residual.sum()
    else:
        residual = probs[matches]
    token = int(torch.multinomial(residual, 1, generator=generator))
    return Verdict((*drafted[:matches], token), matches, tuple(draws.tolist()), residual if matches < k else None)
