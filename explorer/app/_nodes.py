"""Tree nodes read back from a trace: what a clicked node is, and its path."""

from __future__ import annotations

from dataclasses import dataclass, replace

from explorer.fork import prefix_of
from explorer.scoring import path_scores
from explorer.trace import Candidate, Hypothesis, Step, Trace

__all__ = ["NodeInfo", "describe", "step_at"]


@dataclass(frozen=True)
class NodeInfo:
    """A tree node as the details area shows it.

    ``hypothesis`` is the recorded hypothesis whose candidates the details show and from which a token can be
    forced (for a leaf or finished entry: the one it grew from); ``preselect`` the token that node chose.
    ``score`` is the path's summed token scores, ``normalized_score`` a finished entry's score as the pool ranks
    it (``length`` its length there), ``logprob`` the model's summed log-prob of the path (``None``: a token's
    candidate was not recorded).
    """

    key: str
    kind: str
    step: int
    token_ids: tuple[int, ...]
    text: str
    score: float
    normalized_score: float | None
    hypothesis: Hypothesis | None
    preselect: int | None
    note: str = ""
    logprob: float | None = None
    length: int | None = None


def _hypotheses(trace: Trace) -> dict[int, tuple[int, Hypothesis]]:
    """Every recorded hypothesis by id, with the index of its step."""
    return {h.id: (s.index, h) for s in trace.steps for h in s.hypotheses}


def _texts(trace: Trace) -> dict[int, str]:
    """Display text of every token the trace recorded a candidate for (a branch's fixed tokens included)."""
    prefix = prefix_of(trace)
    fixed = {c.token_id: c.text for c in (prefix.path if prefix is not None else ()) if c is not None}
    return {**fixed, **{c.token_id: c.text for s in trace.steps for h in s.hypotheses for c in h.candidates}}


def _text(trace: Trace, token_ids: tuple[int, ...]) -> str:
    """The path's text, token by token (a token never recorded shows as ``⟨id⟩``)."""
    texts = _texts(trace)
    return "".join(texts.get(t, f"⟨{t}⟩") for t in token_ids)


def _from_candidate(trace: Trace, key: str, step: int, hyp: Hypothesis, cand: Candidate, kind: str) -> NodeInfo:
    """A node made by one candidate of ``hyp`` (a leaf, or a hypothesis the search never expanded)."""
    tokens = (*hyp.token_ids, cand.token_id)
    return NodeInfo(key, kind, step, tokens, _text(trace, tokens), cand.total, None, hyp, cand.token_id,
                    cand.reason)


def _unexpanded(trace: Trace, key: str, hyp_id: int) -> NodeInfo:
    """A hypothesis the search created but stopped before expanding: found through the candidate that made it."""
    for index, parent in _hypotheses(trace).values():
        for cand in parent.candidates:
            if cand.child == hyp_id and cand.fate == "kept":
                return _from_candidate(trace, key, index, parent, cand, "unexpanded")
    raise KeyError(key)


def _path_logprob(trace: Trace, info: NodeInfo) -> float | None:
    """The model's summed log-prob of a node's tokens: its own token, then the hypotheses back to the root, then a
    grafted branch's fixed tokens (``None`` when a candidate on the way was not recorded)."""
    if not info.token_ids:
        return 0.0
    hyp = info.hypothesis
    if hyp is None:
        return None
    made = {c.child: c for s in trace.steps for h in s.hypotheses for c in h.candidates
            if c.child is not None and c.fate == "kept"}
    hyps = {h.id: h for _, h in _hypotheses(trace).values()}
    tokens: list[Candidate | None] = []
    if info.kind != "hypothesis" and info.preselect is not None:
        tokens.append(next((c for c in hyp.candidates if c.token_id == info.preselect), None))
    seen: set[int] = set()
    while hyp.parent is not None and hyp.id not in seen:  # a loaded trace could loop
        seen.add(hyp.id)
        tokens.append(made.get(hyp.id))
        parent = hyps.get(hyp.parent)
        if parent is None:
            return None
        hyp = parent
    prefix = prefix_of(trace)
    tokens += reversed(prefix.path) if prefix is not None else ()
    return path_scores(tokens).logprob if len(tokens) == len(info.token_ids) else None


def describe(trace: Trace, key: str) -> NodeInfo:
    """What node ``key`` of ``trace``'s tree is, with its path's log-prob. Unknown keys raise ``KeyError``.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="beam", max_new_tokens=3)
    >>> info = describe(t, "h0")
    >>> info.kind, info.token_ids, len(info.hypothesis.candidates) > 0, info.logprob
    ('hypothesis', (), True, 0.0)
    """
    info = _describe(trace, key)
    return replace(info, logprob=_path_logprob(trace, info))


def _describe(trace: Trace, key: str) -> NodeInfo:
    """What node ``key`` of ``trace``'s tree is (its log-prob not filled in)."""
    hyps = _hypotheses(trace)
    try:
        if key.startswith("h"):
            hyp_id = int(key[1:])
            if hyp_id not in hyps:
                return _unexpanded(trace, key, hyp_id)
            index, hyp = hyps[hyp_id]
            return NodeInfo(key, "hypothesis", index, hyp.token_ids, _text(trace, hyp.token_ids), hyp.score, None,
                            hyp, None)
        if key.startswith("f"):
            return _finished(trace, key, int(key[1:]), hyps)
        if key.startswith("c"):
            _, hyp_text, token_text = key[1:].split(".")
            index, hyp = hyps[int(hyp_text)]
            cand = next(c for c in hyp.candidates if c.token_id == int(token_text))
            return _from_candidate(trace, key, index, hyp, cand, cand.fate)
    except (ValueError, StopIteration):
        raise KeyError(key) from None
    raise KeyError(key)


def _finished(trace: Trace, key: str, fin_id: int, hyps: dict[int, tuple[int, Hypothesis]]) -> NodeInfo:
    """A finished entry: its tokens and both scores; the hypothesis it ended from, if recorded."""
    fin = next((f for s in trace.steps for f in s.finished if f.id == fin_id), None)
    if fin is None:
        raise KeyError(key)
    _, hyp = hyps.get(fin.hypothesis, (fin.step, None))
    preselect = fin.token_ids[-1] if hyp is not None and len(fin.token_ids) > len(hyp.token_ids) else None
    note = f"{fin.reason}, {'accepted into' if fin.accepted else 'refused by'} the pool" + (
        f" ({fin.note})" if fin.note else "")
    return NodeInfo(key, "finished", fin.step, fin.token_ids, _text(trace, fin.token_ids), fin.score,
                    fin.normalized_score, hyp, preselect, note, length=fin.length)


def step_at(trace: Trace, index: int) -> Step:
    """The step of ``trace`` numbered ``index``, else the nearest one (a branch's steps start at its fork's step +
    1; a selection elsewhere may be before or past them). The trace must have a step.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=3)
    >>> step_at(t, 1).index, step_at(t, 9).index
    (1, 2)
    """
    first = trace.steps[0].index
    return trace.steps[max(0, min(index - first, len(trace.steps) - 1))]
