"""Lookups over a trace's records, and the path of each result back to the root, for the figures."""

from __future__ import annotations

from dataclasses import dataclass

from explorer.fork import Prefix, prefix_of
from explorer.trace import Candidate, Finished, Hypothesis, Result, Trace

__all__ = ["Index", "ResultPath", "index", "result_path"]


@dataclass(frozen=True, eq=False)
class Index:
    """A trace's records by id: hypotheses (with their step), finished entries, and candidates by what they made.

    ``made[("h", id)]`` is the kept candidate that created hypothesis ``id``, ``made[("f", id)]`` the candidate that
    created finished entry ``id``; ``leaf[(step, hyp, token)]`` any recorded candidate; ``text`` a token's text;
    ``prefix`` a grafted branch's fixed tokens (:func:`explorer.fork.prefix_of`), ``None`` for any other trace.
    """

    hyps: dict[int, Hypothesis]
    step_of: dict[int, int]
    fins: dict[int, Finished]
    made: dict[tuple[str, int], Candidate]
    leaf: dict[tuple[int, int, int], Candidate]
    text: dict[int, str]
    prefix: Prefix | None = None


def index(trace: Trace) -> Index:
    """Every record of ``trace`` by id."""
    hyps: dict[int, Hypothesis] = {}
    step_of: dict[int, int] = {}
    fins: dict[int, Finished] = {}
    made: dict[tuple[str, int], Candidate] = {}
    leaf: dict[tuple[int, int, int], Candidate] = {}
    text: dict[int, str] = {}
    for step in trace.steps:
        for fin in step.finished:
            fins[fin.id] = fin
        for hyp in step.hypotheses:
            hyps[hyp.id], step_of[hyp.id] = hyp, step.index
            for c in hyp.candidates:
                leaf[(step.index, hyp.id, c.token_id)] = c
                text.setdefault(c.token_id, c.text)
                if c.child is not None and c.fate in ("kept", "finished"):
                    made["h" if c.fate == "kept" else "f", c.child] = c
    prefix = prefix_of(trace)
    for fixed in prefix.path if prefix is not None else ():
        if fixed is not None:
            text.setdefault(fixed.token_id, fixed.text)
    return Index(hyps, step_of, fins, made, leaf, text, prefix)


@dataclass(frozen=True)
class ResultPath:
    """A result's path: the recorded hypotheses from the root on, and the candidate behind each of its tokens.

    ``tail`` is what ends the path after the last hypothesis: the finished entry that became the result, or
    ``None``; ``last`` the candidate that made it (or the kept candidate of a hypothesis never expanded).
    """

    result: Result
    hyps: tuple[Hypothesis, ...]
    tokens: tuple[Candidate | None, ...]
    tail: Finished | None
    last: Candidate | None


def _end(idx: Index, result: Result) -> tuple[Hypothesis | None, Finished | None, Candidate | None]:
    """The last recorded hypothesis of a result's path, its finished entry, and the candidate after it."""
    if result.source is not None and result.source in idx.fins:
        fin = idx.fins[result.source]
        return idx.hyps.get(fin.hypothesis), fin, idx.made.get(("f", fin.id))
    if result.source is not None and result.source in idx.hyps:
        return idx.hyps[result.source], None, None
    best: Hypothesis | None = None  # the deepest hypothesis of the group whose tokens start the result
    for hyp in idx.hyps.values():
        n = len(hyp.token_ids)
        if hyp.group == result.group and result.token_ids[:n] == hyp.token_ids and n <= len(result.token_ids):
            best = hyp if best is None or n > len(best.token_ids) else best
    if best is None or len(best.token_ids) == len(result.token_ids):
        return best, None, None
    nxt = result.token_ids[len(best.token_ids)]
    return best, None, next((c for c in best.candidates if c.token_id == nxt and c.fate == "kept"), None)


def result_path(trace: Trace, result: Result, idx: Index | None = None) -> ResultPath:
    """Walk ``result`` back to the root: its hypotheses, and the candidate behind each token (``None``: unrecorded);
    a grafted branch's fixed tokens come from the source's candidates its record keeps.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=3)
    >>> path = result_path(t, t.results[0])
    >>> len(path.hyps), len(path.tokens), path.tail is not None
    (3, 3, True)
    """
    idx = idx or index(trace)
    end, tail, last = _end(idx, result)
    chain: list[Hypothesis] = []
    seen: set[int] = set()
    while end is not None and end.id not in seen:  # a loaded trace could link in a circle
        seen.add(end.id)
        chain.append(end)
        end = idx.hyps.get(end.parent) if end.parent is not None else None
    chain.reverse()
    by_depth: dict[int, Candidate | None] = {len(h.token_ids): idx.made.get(("h", h.id)) for h in chain}
    by_depth.update((i + 1, c) for i, c in enumerate(idx.prefix.path if idx.prefix is not None else ()))
    if last is not None:
        by_depth[len(chain[-1].token_ids) + 1 if chain else 1] = last
    picked = (by_depth.get(i + 1) for i in range(len(result.token_ids)))
    tokens = tuple(c if c is not None and c.token_id == t else None
                   for c, t in zip(picked, result.token_ids, strict=True))
    return ResultPath(result, tuple(chain), tokens, tail, last)
