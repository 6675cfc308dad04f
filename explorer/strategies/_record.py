"""Reading candidates off the processor stages: per row the processed top-k, the raw top-k and the selected tokens,
each with its adjustments (what every processor did to it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from explorer.processors.numeric import MASKED_FLOOR
from explorer.trace import Candidate, Fate

__all__ = ["Scored", "Values", "read_candidates"]


@dataclass(frozen=True)
class Scored:
    """Processor stages of one step in log-probability space: ``stages[0]`` raw log-probs, ``stages[-1]`` final.

    ``names[i]`` is the processor that turned ``stages[i]`` into ``stages[i + 1]``.
    """

    stages: tuple[torch.Tensor, ...]
    names: tuple[str, ...]

    @property
    def final(self) -> torch.Tensor:
        """The scores the strategy ranks by, ``[rows, vocab]``."""
        return self.stages[-1]


@dataclass(frozen=True)
class Values:
    """The recorded numbers of one candidate token of one row."""

    token_id: int
    logprob: float
    score: float
    rank: int
    adjustments: tuple[tuple[str, float], ...]
    masked_by: str | None
    raw_rank: int | None = None

    def candidate(self, text: str, total: float, fate: Fate, reason: str, child: int | None = None) -> Candidate:
        """The trace's record of this candidate, with its text, total score and fate."""
        return Candidate(self.token_id, text, self.logprob, self.score, total, self.rank, self.adjustments, fate,
                         reason, child, self.raw_rank)


def _delta(before: float, after: float) -> float:
    """Change made by one processor; ``-inf`` when it masked the token, 0 when it was masked already."""
    if after == -math.inf:
        return 0.0 if before == -math.inf else -math.inf
    return after - before


def read_candidates(
    scored: Scored, rows: list[int], k: int, extra: dict[int, list[int]] | None = None,
    required: set[tuple[int, int]] | None = None,
) -> dict[int, list[Values]]:
    """For each of ``rows``: its ``k`` best tokens by final score, then those of the model's ``k`` best (raw
    log-probs, before any processor) not among them, then any ``extra[row]`` tokens not yet listed.

    The raw best are kept even when a processor masked them (that is what they are recorded for: what a processor
    pushed down or out). An extra token with a final score of ``-inf`` is left out unless ``(row, token)`` is in
    ``required`` (the selected tokens, which are always recorded). Each token's ``raw_rank`` is its place by raw
    log-prob.

    >>> s = Scored((torch.log(torch.tensor([[0.5, 0.3, 0.2]])),), ())
    >>> [v.token_id for v in read_candidates(s, [0], 2, {0: [2]})[0]]
    [0, 1, 2]
    """
    extra = extra or {}
    needed = required or set()
    final = scored.final
    top = _best(scored, rows, min(k, final.shape[-1]))
    raw_top = top if len(scored.stages) == 1 else _raw_best(scored, rows, min(k, final.shape[-1]))
    wanted: list[list[int]] = []
    for row, best, raw_best in zip(rows, top, raw_top, strict=True):
        listed = best + [t for t in raw_best if t not in best]
        more = [
            t for t in dict.fromkeys(extra.get(row, ()))
            if t not in listed and ((row, t) in needed or float(final[row, t]) > MASKED_FLOOR)
        ]
        wanted.append(listed + more)
    flat_rows = torch.tensor([row for row, toks in zip(rows, wanted, strict=True) for _ in toks], dtype=torch.long)
    flat_toks = torch.tensor([t for toks in wanted for t in toks], dtype=torch.long)
    values = [[_masked_as_inf(v) for v in stage[flat_rows, flat_toks].tolist()] for stage in scored.stages]
    ranks = _places(final, rows, wanted, top, values[-1])
    raw_ranks = _places(scored.stages[0], rows, wanted, raw_top, values[0])
    out: dict[int, list[Values]] = {}
    i = 0
    for row, toks in zip(rows, wanted, strict=True):
        out[row] = []
        for tok in toks:
            column = [stage_values[i] for stage_values in values]
            out[row].append(_values(tok, column, ranks[i], raw_ranks[i], scored.names))
            i += 1
    return out


def _raw_best(scored: Scored, rows: list[int], k: int) -> list[list[int]]:
    """Per row, the model's ``k`` best tokens by raw log-prob (any the model gives no probability left out)."""
    if k == 0:
        return [[] for _ in rows]
    values, top = torch.topk(scored.stages[0][rows], k)
    return [[t for t, v in zip(toks, vals, strict=True) if v > -math.inf]
            for toks, vals in zip(top.tolist(), values.tolist(), strict=True)]


def _places(stage: torch.Tensor, rows: list[int], wanted: list[list[int]], ranked: list[list[int]],
            values: list[float]) -> list[int]:
    """Each listed token's place in ``stage``: its position in its row's ``ranked`` list (a top-k), else how many
    tokens of the row score strictly higher than its recorded value (one comparison per row, for those few tokens).
    ``values`` are the listed tokens' recorded values, flat in ``wanted`` order."""
    out: list[int] = []
    i = 0
    for row, toks, best in zip(rows, wanted, ranked, strict=True):
        place = {t: j for j, t in enumerate(best)}
        unknown = [values[i + j] for j, t in enumerate(toks) if t not in place]
        counts = iter(())
        if unknown:
            threshold = torch.tensor(unknown, dtype=stage.dtype)[:, None]
            counts = iter((stage[row] > threshold).sum(dim=-1).tolist())
        out += [place[t] if t in place else int(next(counts)) for t in toks]
        i += len(toks)
    return out


def _best(scored: Scored, rows: list[int], k: int) -> list[list[int]]:
    """Per row, the ``k`` best tokens by final score; masked slots go to the masked tokens the model liked best.

    Tokens the model itself gives no probability (raw ``-inf``) are never listed unless selected.
    """
    if k == 0:
        return [[] for _ in rows]
    final = scored.final[rows]
    values, top = torch.topk(final, k)
    if bool((values[:, -1] > MASKED_FLOOR).all()):
        return top.tolist()
    raw = scored.stages[0][rows]
    masked = torch.where(final <= MASKED_FLOOR, raw, -math.inf)
    masked_values, masked_top = torch.topk(masked, k)
    out = []
    for i in range(len(rows)):
        best = [t for t, v in zip(top[i].tolist(), values[i].tolist(), strict=True) if v > MASKED_FLOOR]
        more = [t for t, v in zip(masked_top[i].tolist(), masked_values[i].tolist(), strict=True) if v > -math.inf]
        out.append(best + more[: k - len(best)])
    return out


def _masked_as_inf(value: float) -> float:
    """A score as the trace records it: at or below float32's lowest (``remove_invalid_values``' stand-in for
    ``-inf``) it is ``-inf``, a masked token."""
    return -math.inf if value <= MASKED_FLOOR else value


def _values(token_id: int, column: list[float], rank: int, raw_rank: int, names: tuple[str, ...]) -> Values:
    """Assemble one candidate's numbers from its value at every stage."""
    adjustments = tuple(
        (name, _delta(column[j], column[j + 1])) for j, name in enumerate(names)
    )
    masked_by = next((name for name, change in adjustments if change == -math.inf), None)
    if masked_by is None and column[0] == -math.inf:
        masked_by = "model"
    return Values(token_id, column[0], column[-1], rank, adjustments, masked_by, raw_rank)
