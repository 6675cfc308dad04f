"""Forking a run: a branch decoded after a forced token, grafted onto its source so that the two compare.

A branch is decoded as a researcher reproduces it with the reference: ``generate()`` on a longer prompt, the
source's prompt followed by the fixed tokens (the forked hypothesis's tokens and the forced token). :func:`graft`
then puts the decoded trace back where it belongs: its prompt is the source's, every path starts with the fixed
tokens, its steps are numbered from the fork on (the first is the fork's step + 1), and its summed log-probs and
scores include the fixed tokens' (read from the source's recorded candidates). The beam family's length-penalised
scores are computed again over the whole length, so that a branch's results compare with its source's; the order
stays the branch's own, since its search ranked its hypotheses on the continuation alone. ``meta["branch"]``
records what was grafted (:class:`Prefix` reads it back).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from explorer.errors import TraceFormatError
from explorer.scoring import length_penalty
from explorer.trace import Candidate, Finished, Hypothesis, Result, Step, Trace
from explorer.trace_codec import candidate_from_dict, candidate_to_dict

if TYPE_CHECKING:
    from explorer.models.base import CausalLM

__all__ = ["RANKED_ON", "ForkPoint", "Prefix", "branch_request", "decode_branch", "graft", "prefix_of", "ranked_score"]

#: What a branch's ranking means, for its ``meta["branch"]["ranked_on"]`` and the captions that explain scores.
RANKED_ON = ("a branch's log-probs, scores and lengths include its fixed tokens (the forked path and the forced "
             "token), but its search ranked its hypotheses on the continuation after the forced token alone")


@dataclass(frozen=True)
class ForkPoint:
    """Where a branch leaves its source: the source trace, the recorded hypothesis it forks at, and the forced
    token (one of that hypothesis's recorded candidates); ``name`` and ``node`` say, for the record, what the source
    and the node are called (a panel's key, a tree node's key)."""

    source: Trace
    hypothesis: Hypothesis
    token_id: int
    name: str = ""
    node: str = ""

    @property
    def candidate(self) -> Candidate:
        """The forced token's recorded candidate (``ValueError`` when the hypothesis did not record it)."""
        found = next((c for c in self.hypothesis.candidates if c.token_id == self.token_id), None)
        if found is None:
            raise ValueError(f"token {self.token_id} is not a recorded candidate of hypothesis {self.hypothesis.id}")
        return found

    @property
    def step(self) -> int:
        """The index of the source's step that holds the hypothesis (``ValueError`` when it holds none)."""
        for step in self.source.steps:
            if any(h.id == self.hypothesis.id for h in step.hypotheses):
                return step.index
        raise ValueError(f"hypothesis {self.hypothesis.id} is not a recorded hypothesis of the source")

    @property
    def fixed_ids(self) -> tuple[int, ...]:
        """The tokens a branch starts with: the hypothesis's and the forced one."""
        return (*self.hypothesis.token_ids, self.token_id)


@dataclass(frozen=True)
class Prefix:
    """What a grafted branch starts with, read back from its ``meta["branch"]``.

    ``step`` is the source's step it forked at (the branch's first step is ``step + 1``); ``token_ids`` the fixed
    tokens (the forked path, then the forced token); ``path`` the source's recorded candidate behind each fixed token
    (``None`` where the source did not record it; ``child`` cleared: the source's ids are not the branch's) and
    ``entropies`` the entropy each was chosen from; ``logprob`` the model's summed log-prob of the fixed tokens
    (``None`` when a candidate is missing) and ``score`` their summed token scores, the forced one's included.
    """

    step: int
    token_ids: tuple[int, ...]
    path: tuple[Candidate | None, ...]
    entropies: tuple[float | None, ...]
    logprob: float | None
    score: float

    @property
    def first_step(self) -> int:
        """The index of the branch's first step."""
        return self.step + 1

    @property
    def forced(self) -> Candidate | None:
        """The forced token's candidate (as the source recorded it)."""
        return self.path[-1]


def _walk(source: Trace, hyp: Hypothesis) -> tuple[list[Candidate | None], list[float | None]]:
    """The candidate behind each of ``hyp``'s tokens in ``source`` and the entropy it was chosen from, from the
    source's own prefix (a fork of a fork) on; ``None`` where a record is missing."""
    hyps = {h.id: h for s in source.steps for h in s.hypotheses}
    made = {c.child: c for s in source.steps for h in s.hypotheses for c in h.candidates
            if c.child is not None and c.fate == "kept"}
    links: list[tuple[Candidate | None, float | None]] = []
    cur, seen = hyp, set()
    while cur.parent is not None and cur.id not in seen and cur.parent in hyps:  # a loaded trace could loop
        seen.add(cur.id)
        parent = hyps[cur.parent]
        links.append((made.get(cur.id), parent.entropy))
        cur = parent
    links.reverse()
    base = prefix_of(source)
    cands: list[Candidate | None] = [*(base.path if base is not None else ()), *(c for c, _ in links)]
    ents: list[float | None] = [*(base.entropies if base is not None else ()), *(e for _, e in links)]
    # The last len(hyp.token_ids) of each: a broken chain (a loaded trace) leaves the start unknown (None).
    unknown: list[None] = [None] * len(hyp.token_ids)
    cands, ents = [*unknown, *cands][len(cands):], [*unknown, *ents][len(ents):]
    return [c if c is not None and c.token_id == t else None for c, t in zip(cands, hyp.token_ids, strict=True)], ents


def _fout(x: float | None) -> float | str | None:
    """A float as the trace document holds it (non-finite values as text)."""
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _fin(x: Any) -> float | None:
    """A document float back (``None`` stays ``None``)."""
    if x is None:
        return None
    return {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}[x] if isinstance(x, str) else float(x)


def _record(at: ForkPoint, trace: Trace) -> tuple[dict[str, Any], Prefix]:
    """The branch's ``meta["branch"]`` (plain JSON values, so that a saved branch reads back equal) and its prefix."""
    forced = at.candidate
    cands, ents = _walk(at.source, at.hypothesis)
    path = tuple(None if c is None else replace(c, child=None) for c in (*cands, forced))
    entropies = (*ents, at.hypothesis.entropy)
    logprob = None if any(c is None for c in path) else math.fsum(c.logprob for c in path if c is not None)
    prefix = Prefix(at.step, at.fixed_ids, path, entropies, logprob, forced.total)
    record = {
        "source": at.name, "node": at.node, "step": prefix.step, "token_id": at.token_id, "token_text": forced.text,
        "fixed_tokens": len(prefix.token_ids), "prefix_token_ids": list(at.hypothesis.token_ids),
        "path": [None if c is None else candidate_to_dict(c) for c in path],
        "entropies": [_fout(e) for e in entropies], "logprob": _fout(logprob), "score": _fout(prefix.score),
        "ranked_on": RANKED_ON,
        "decoded_with": {k: trace.params[k] for k in ("max_new_tokens", "min_new_tokens") if k in trace.params},
    }
    return record, prefix


def prefix_of(trace: Trace) -> Prefix | None:
    """The prefix a grafted branch starts with (``None``: not a grafted branch). A ``meta["branch"]`` that does not
    add up raises :class:`~explorer.errors.TraceFormatError` (one line).

    >>> import explorer
    >>> prefix_of(explorer.decode(explorer.load_model("tiny-random"), [5], strategy="greedy", max_new_tokens=1))
    """
    record = trace.meta.get("branch")
    if not isinstance(record, Mapping) or "path" not in record:
        return None  # not a branch, or one saved before branches were grafted (its tree starts at step 0)
    try:
        fixed = (*(int(t) for t in record["prefix_token_ids"]), int(record["token_id"]))
        path = tuple(None if c is None else candidate_from_dict(c) for c in record["path"])
        entropies = tuple(_fin(e) for e in record["entropies"])
        prefix = Prefix(int(record["step"]), fixed, path, entropies, _fin(record["logprob"]),
                        float(_fin(record["score"]) or 0.0))
    except (KeyError, TypeError, ValueError) as error:
        raise TraceFormatError(f"invalid trace at meta/branch: {type(error).__name__} {error}") from None
    if len(path) != len(fixed) or len(entropies) != len(fixed) or any(
            c is not None and c.token_id != t for c, t in zip(path, fixed, strict=False)):
        raise TraceFormatError("invalid trace at meta/branch: its path does not match its prefix and forced token")
    return prefix


def _normalized(summed: float, length: int, lp: float | None) -> float:
    """A finished path's score as the strategy ranks it: ``summed / length ** lp`` (``lp`` None: the sum)."""
    return summed if lp is None or length == 0 else summed / length ** lp


def ranked_score(trace: Trace, result: Result) -> float:
    """The score ``trace``'s search ranked ``result`` by: its ``score``, but for a grafted branch the continuation's
    own (the fixed tokens' part taken out, the length penalty over the continuation's length).

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5], strategy="beam", max_new_tokens=2)
    >>> ranked_score(t, t.results[0]) == t.results[0].score
    True
    """
    prefix = prefix_of(trace)
    if prefix is None:
        return result.score
    lp = length_penalty(trace)
    n = len(result.token_ids)
    summed = _summed(result, trace, lp, n) - prefix.score
    return _normalized(summed, n - len(prefix.token_ids), lp)


def _summed(result: Result, trace: Trace, lp: float | None, length: int) -> float:
    """A result's summed token scores: its finished entry's, else its score with the length penalty undone."""
    fin = next((f for s in trace.steps for f in s.finished if f.id == result.source), None)
    if fin is not None:
        return fin.score
    return result.score if lp is None or length == 0 else result.score * length ** lp


def _hypothesis(h: Hypothesis, fixed: tuple[int, ...], score: float) -> Hypothesis:
    """A branch's hypothesis after the fixed tokens: its path and its scores (and its candidates' totals)."""
    cands = tuple(replace(c, total=c.total + score) for c in h.candidates)
    return replace(h, token_ids=(*fixed, *h.token_ids), score=h.score + score, candidates=cands)


def _finished(f: Finished, fixed: tuple[int, ...], score: float, offset: int, lp: float | None) -> Finished:
    """A branch's finished entry after the fixed tokens: path, step, length, sum, and its length-penalised score
    computed again over the whole length."""
    summed, length = f.score + score, f.length + len(fixed)
    return replace(f, step=f.step + offset, token_ids=(*fixed, *f.token_ids), score=summed, length=length,
                   normalized_score=_normalized(summed, length, lp))


def _step(s: Step, fixed: tuple[int, ...], score: float, offset: int, lp: float | None) -> Step:
    """A branch's step, numbered from the fork on."""
    return replace(s, index=s.index + offset, hypotheses=tuple(_hypothesis(h, fixed, score) for h in s.hypotheses),
                   finished=tuple(_finished(f, fixed, score, offset, lp) for f in s.finished))


def _result(r: Result, trace: Trace, prefix: Prefix, offset: int, decode: Callable[[list[int]], str]) -> Result:
    """A branch's result after the fixed tokens: its whole path, text and score."""
    lp = length_penalty(trace)
    tokens = (*prefix.token_ids, *r.token_ids)
    summed = _summed(r, trace, lp, len(r.token_ids)) + prefix.score
    return replace(r, token_ids=tokens, text=decode(list(tokens)), score=_normalized(summed, len(tokens), lp),
                   finished_step=r.finished_step + offset)


def graft(trace: Trace, at: ForkPoint, decode: Callable[[list[int]], str]) -> Trace:
    """``trace``, decoded from ``at``'s source prompt + fixed tokens, put back on its source: a branch that
    compares with it (see the module's docstring). ``decode`` turns token ids into text (the model's).

    >>> import explorer
    >>> m = explorer.load_model("tiny-random")
    >>> src = explorer.decode(m, [5, 6], strategy="greedy", max_new_tokens=4)
    >>> hyp = src.steps[2].hypotheses[0]
    >>> at = ForkPoint(src, hyp, hyp.candidates[0].token_id)
    >>> cont = explorer.decode(m, [5, 6, *at.fixed_ids], strategy="greedy", max_new_tokens=1)
    >>> branch = graft(cont, at, m.tokenizer.decode)
    >>> branch.steps[0].index, branch.results[0].token_ids == src.results[0].token_ids
    (3, True)
    """
    if trace.prompt_token_ids != (*at.source.prompt_token_ids, *at.fixed_ids):
        raise ValueError("the branch was not decoded from its source's prompt followed by the fixed tokens")
    record, prefix = _record(at, trace)
    offset, lp = prefix.first_step, length_penalty(trace)
    steps = tuple(_step(s, prefix.token_ids, prefix.score, offset, lp) for s in trace.steps)
    results = tuple(_result(r, trace, prefix, offset, decode) for r in trace.results)
    params = {**trace.params, **{k: at.source.params[k] for k in ("max_new_tokens", "min_new_tokens", "chat")
                                 if k in at.source.params}}
    return replace(trace, prompt=at.source.prompt, prompt_token_ids=at.source.prompt_token_ids, params=params,
                   steps=steps, results=results, meta={**trace.meta, "branch": record})


def branch_request(at: ForkPoint) -> tuple[tuple[int, ...], dict[str, Any], list[Any]]:
    """Prompt ids, parameters and constraints that decode the branch at ``at``: the source's prompt ids and the
    fixed tokens; the source's parameters with ``max_new_tokens`` (and ``min_new_tokens``) reduced by the tokens now
    fixed. ``ValueError`` when the forced token is not a recorded candidate, is end-of-sequence, or leaves nothing to
    decode.

    >>> import explorer
    >>> src = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="beam", max_new_tokens=4)
    >>> hyp = src.steps[1].hypotheses[0]
    >>> prompt, params, _ = branch_request(ForkPoint(src, hyp, hyp.candidates[1].token_id))
    >>> len(prompt), params["max_new_tokens"]
    (4, 2)
    """
    fixed = len(at.fixed_ids)
    if at.candidate.token_id in at.source.eos_token_ids:
        raise ValueError("the forced token is end-of-sequence: there is nothing to continue")
    params = {k: v for k, v in at.source.params.items() if k not in ("strategy", "chat")}
    left = int(params.get("max_new_tokens", 0)) - fixed
    if left < 1:
        raise ValueError(f"max_new_tokens={params.get('max_new_tokens')} leaves no token after the {fixed} fixed")
    params["max_new_tokens"] = left
    params["min_new_tokens"] = max(0, int(params.get("min_new_tokens", 0)) - fixed)
    constraints: list[Any] = [
        c["token_ids"] if c.get("kind") == "phrase" else c["options"] for c in at.source.constraints
    ]
    return (*at.source.prompt_token_ids, *at.fixed_ids), params, constraints


def decode_branch(model: CausalLM, at: ForkPoint) -> Trace:
    """Decode the branch at ``at`` with ``model`` and graft it onto its source (what the app's force button does).

    >>> import explorer
    >>> m = explorer.load_model("tiny-random")
    >>> src = explorer.decode(m, [5, 6], strategy="greedy", max_new_tokens=5)
    >>> hyp = src.steps[2].hypotheses[0]
    >>> branch = decode_branch(m, ForkPoint(src, hyp, hyp.candidates[1].token_id))
    >>> [s.index for s in branch.steps], branch.results[0].token_ids[:2] == src.results[0].token_ids[:2]
    ([3, 4], True)
    """
    from explorer.api import decode

    prompt, params, constraints = branch_request(at)
    return graft(decode(model, prompt, at.source.strategy, constraints=constraints, **params), at,
                 model.tokenizer.decode)
