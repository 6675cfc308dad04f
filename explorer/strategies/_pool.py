"""The finished-hypothesis pool of group and constrained beam search (the reference's ``BeamHypotheses``), immutable."""

from __future__ import annotations

from dataclasses import dataclass, replace

from explorer.trace import Finished

__all__ = ["Pool", "best_of"]


@dataclass(frozen=True)
class Pool:
    """Up to ``capacity`` finished hypotheses, kept in insertion order (the order breaks score ties).

    >>> pool = Pool(capacity=1)
    >>> pool.worst
    1000000000.0
    """

    capacity: int
    entries: tuple[Finished, ...] = ()
    worst: float = 1e9

    def add(self, entry: Finished) -> Pool:
        """Admit ``entry`` if there is room or it beats the worst; evict the worst when over capacity."""
        score = entry.normalized_score
        if len(self.entries) >= self.capacity and not score > self.worst:
            return self
        entries = (*self.entries, entry)
        if len(entries) <= self.capacity:
            return Pool(self.capacity, entries, min(score, self.worst))
        ranked = sorted((e.normalized_score, i) for i, e in enumerate(entries))
        evict = ranked[0][1]
        return Pool(self.capacity, entries[:evict] + entries[evict + 1 :], ranked[1][0])

    def offer(self, entry: Finished, rejected: str = "its length-penalised score is below the pool's") -> tuple[
        Pool, Finished
    ]:
        """Add ``entry``; when it does not get in, return it marked rejected with the reason ``rejected``."""
        pool = self.add(entry)
        if pool is self:
            return self, replace(entry, accepted=False, note=rejected)
        return pool, entry

    def is_done(
        self, best_sum: float, cur_len: int, prompt_length: int, max_length: int,
        early_stopping: bool | str, length_penalty: float,
    ) -> bool:
        """Whether no running hypothesis can still enter the pool (the reference's heuristic)."""
        if len(self.entries) < self.capacity:
            return False
        if early_stopping is True:
            return True
        if early_stopping == "never" and length_penalty > 0.0:
            best = best_sum / (max_length - prompt_length) ** length_penalty
        else:
            best = best_sum / (cur_len - prompt_length) ** length_penalty
        return bool(self.worst >= best)

    def __contains__(self, entry: object) -> bool:
        return any(e is entry for e in self.entries)


def best_of(pools: tuple[Pool, ...], count: int) -> list[Finished]:
    """The ``count`` best entries over ``pools``, as the reference's finalize picks them (stable sort, pop)."""
    ranked = sorted((e for pool in pools for e in pool.entries), key=lambda e: e.normalized_score)
    return [ranked.pop() for _ in range(min(count, len(ranked)))]
