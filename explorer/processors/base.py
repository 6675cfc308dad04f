"""The processor contract: a pure function of (token ids, scores) that returns new scores and never mutates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

__all__ = ["Context", "Processor", "run_processors"]


@dataclass(frozen=True)
class Context:
    """What a processor may know besides the ids and scores of its rows.

    ``prompt_length`` is the number of prompt tokens at the start of every row; ``previous_group_tokens`` holds the
    tokens that earlier beam groups chose at this step (diverse search), ``None`` elsewhere.
    """

    prompt_length: int
    previous_group_tokens: torch.Tensor | None = None


class Processor(Protocol):
    """``(ids [rows, length], scores [rows, vocab], context) -> new scores [rows, vocab]``.

    ``name`` labels the processor's adjustment in the trace. A processor never changes ``scores`` in place.
    """

    @property
    def name(self) -> str:
        """Label of the processor's adjustment in the trace."""
        ...

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor, context: Context) -> torch.Tensor: ...


def run_processors(
    processors: tuple[Processor, ...], ids: torch.Tensor, scores: torch.Tensor, context: Context
) -> list[torch.Tensor]:
    """Apply ``processors`` in order and return every stage: ``[scores, after 1st, after 2nd, ...]``.

    The stages are kept (not copied) so that the adjustment of each processor can be read off for the few
    candidates a trace records.

    >>> from explorer.processors import Temperature
    >>> stages = run_processors((Temperature(2.0),), torch.zeros(1, 0), torch.tensor([[2.0, 4.0]]), Context(0))
    >>> stages[-1].tolist()
    [[1.0, 2.0]]
    """
    stages = [scores]
    for processor in processors:
        scores = processor(ids, scores, context)
        stages.append(scores)
    return stages
