"""The codec: a :class:`~explorer.trace.Trace` as plain JSON values and back, exactly (non-finite floats as text)."""

from __future__ import annotations

import math
from typing import Any

from explorer._util import gc_paused
from explorer.trace import (
    Candidate,
    ConstraintProgress,
    ContrastCandidate,
    Contrastive,
    DolaCandidate,
    Drafted,
    Finished,
    Hypothesis,
    LayerContrast,
    Result,
    Speculation,
    Step,
    Trace,
)
from explorer.trace_validate import validate_document

__all__ = ["JSONDoc", "candidate_from_dict", "candidate_to_dict", "trace_from_dict", "trace_to_dict"]

JSONDoc = dict[str, Any]

_NONFINITE_OUT = {math.inf: "inf", -math.inf: "-inf"}
_NONFINITE_IN = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# --- encoding -------------------------------------------------------------------------------------------------


def _fout(x: float) -> float | str:
    """A float as JSON can hold it: non-finite values become ``"inf"``, ``"-inf"`` or ``"nan"``."""
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else _NONFINITE_OUT[x]


def _plain(value: Any) -> Any:
    """A free-form value (params, meta, constraints) as JSON values: tuples become lists, non-finite floats strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return _fout(value)
    return value


def _candidate_out(c: Candidate) -> JSONDoc:
    """One candidate as a dict (``raw_rank`` only where it is known: a trace read from format 1.3 or older has none)."""
    out = {
        "token_id": c.token_id, "text": c.text, "logprob": _fout(c.logprob), "score": _fout(c.score),
        "total": _fout(c.total), "rank": c.rank, "adjustments": [[n, _fout(v)] for n, v in c.adjustments],
        "fate": c.fate, "reason": c.reason, "child": c.child,
    }
    if c.raw_rank is not None:
        out["raw_rank"] = c.raw_rank
    return out


def _progress_out(p: ConstraintProgress | None) -> JSONDoc | None:
    """Constraint progress as a dict (``None`` stays ``None``)."""
    if p is None:
        return None
    return {"status": list(p.status), "matched": list(p.matched), "lengths": list(p.lengths), "bank": p.bank,
            "completed": p.completed}


def _hypothesis_out(h: Hypothesis) -> JSONDoc:
    """One hypothesis with its candidates as a dict (``entropy`` only where it was recorded, format 1.4)."""
    out = {
        "id": h.id, "parent": h.parent, "slot": h.slot, "group": h.group, "token_ids": list(h.token_ids),
        "score": _fout(h.score), "candidates": [_candidate_out(c) for c in h.candidates],
        "constraint": _progress_out(h.constraint), "forced": h.forced,
    }
    if h.entropy is not None:
        out["entropy"] = _fout(h.entropy)
    return out


def _finished_out(f: Finished) -> JSONDoc:
    """One finished entry as a dict."""
    return {
        "id": f.id, "hypothesis": f.hypothesis, "step": f.step, "group": f.group, "token_ids": list(f.token_ids),
        "score": _fout(f.score), "normalized_score": _fout(f.normalized_score), "length": f.length,
        "reason": f.reason, "accepted": f.accepted, "note": f.note,
    }


def _opt_fout(x: float | None) -> float | str | None:
    """A float or null."""
    return None if x is None else _fout(x)


def _speculation_out(s: Speculation) -> JSONDoc:
    """One round of assisted decoding as a dict."""
    drafted = [{"token_id": d.token_id, "text": d.text, "draft_prob": _opt_fout(d.draft_prob),
                "target_prob": _fout(d.target_prob), "verdict": d.verdict, "reason": d.reason,
                "draw": _opt_fout(d.draw)} for d in s.drafted]
    return {"source": s.source, "drafted": drafted, "added": s.added, "added_kind": s.added_kind,
            "residual": [[t, _fout(p)] for t, p in s.residual], "draft_length": s.draft_length,
            "next_draft_length": s.next_draft_length, "draft_ms": _fout(s.draft_ms)}


def _dola_out(d: LayerContrast) -> JSONDoc:
    """One step of DoLa as a dict."""
    candidates = [{"token_id": c.token_id, "text": c.text, "final_logprob": _fout(c.final_logprob),
                   "premature_logprob": _fout(c.premature_logprob), "contrast": _fout(c.contrast),
                   "plausible": c.plausible} for c in d.candidates]
    return {"layers": list(d.layers), "divergences": [_fout(x) for x in d.divergences], "chosen_layer": d.chosen_layer,
            "final_layer": d.final_layer, "plausible": d.plausible, "candidates": candidates,
            "layer_probs": [[_fout(p), r] for p, r in d.layer_probs]}


def _contrastive_out(c: Contrastive) -> JSONDoc:
    """One step of contrastive search as a dict."""
    candidates = [{"token_id": x.token_id, "text": x.text, "prob": _fout(x.prob), "penalty": _fout(x.penalty),
                   "similar_to": x.similar_to, "similar_token": x.similar_token, "score": _fout(x.score)}
                  for x in c.candidates]
    return {"alpha": _fout(c.alpha), "candidates": candidates, "chosen": c.chosen}


def _step_out(s: Step) -> JSONDoc:
    """One step as a dict (``speculation``, ``dola`` and ``contrastive`` only where there is one, as earlier readers
    expect)."""
    out = {
        "index": s.index, "hypotheses": [_hypothesis_out(h) for h in s.hypotheses],
        "finished": [_finished_out(f) for f in s.finished], "pool": list(s.pool),
        "done_groups": list(s.done_groups), "forward_ms": _fout(s.forward_ms), "search_ms": _fout(s.search_ms),
    }
    if s.speculation is not None:
        out["speculation"] = _speculation_out(s.speculation)
    if s.dola is not None:
        out["dola"] = _dola_out(s.dola)
    if s.contrastive is not None:
        out["contrastive"] = _contrastive_out(s.contrastive)
    return out


def _result_out(r: Result) -> JSONDoc:
    """One result as a dict."""
    return {
        "rank": r.rank, "token_ids": list(r.token_ids), "text": r.text, "score": _fout(r.score),
        "finished_step": r.finished_step, "ended_with_eos": r.ended_with_eos, "group": r.group,
        "source": r.source, "constraints_satisfied": r.constraints_satisfied,
    }


def candidate_to_dict(candidate: Candidate) -> JSONDoc:
    """One candidate as the document holds it (the inverse of :func:`candidate_from_dict`).

    >>> from explorer.trace import Candidate
    >>> c = Candidate(7, "a", -0.5, float("-inf"), float("-inf"), 3, (("top_k", float("-inf")),), "masked", "cut")
    >>> candidate_to_dict(c)["score"], candidate_from_dict(candidate_to_dict(c)) == c
    ('-inf', True)
    """
    return _candidate_out(candidate)


def candidate_from_dict(doc: JSONDoc) -> Candidate:
    """One candidate from its dict (as :func:`candidate_to_dict` wrote it)."""
    return _candidate_in(doc)


def trace_to_dict(trace: Trace) -> JSONDoc:
    """The trace as plain JSON values (the document ``trace.schema.json`` describes).

    Tuples become lists, candidates' adjustments ``[name, value]`` pairs, and non-finite floats the strings
    ``"-inf"``, ``"inf"`` and ``"nan"``. ``params`` and ``meta`` are free-form: their tuples become lists too.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=2)
    >>> doc = trace_to_dict(t)
    >>> doc["version"], len(doc["steps"]), trace_from_dict(doc) == t
    ('1.5', 2, True)
    """
    with gc_paused():
        return _trace_out(trace)


def _trace_out(trace: Trace) -> JSONDoc:
    """The top-level document."""
    return {
        "version": trace.version, "model": trace.model, "strategy": trace.strategy, "prompt": trace.prompt,
        "prompt_token_ids": list(trace.prompt_token_ids), "params": _plain(trace.params),
        "constraints": _plain(trace.constraints), "processors": list(trace.processors),
        "eos_token_ids": list(trace.eos_token_ids), "steps": [_step_out(s) for s in trace.steps],
        "results": [_result_out(r) for r in trace.results], "stop_reason": trace.stop_reason,
        "total_ms": _fout(trace.total_ms), "meta": _plain(trace.meta),
    }


# --- decoding -------------------------------------------------------------------------------------------------


def _fin(x: float | str) -> float:
    """A JSON float back to a Python float (``"-inf"``, ``"inf"``, ``"nan"`` included)."""
    return _NONFINITE_IN[x] if isinstance(x, str) else float(x)


def _ints(values: list[Any]) -> tuple[int, ...]:
    """A JSON list of integers as a tuple of ints."""
    return tuple(int(v) for v in values)


def _opt_int(value: Any) -> int | None:
    """An integer or null."""
    return None if value is None else int(value)


def _candidate_in(d: JSONDoc) -> Candidate:
    """One candidate from its dict."""
    return Candidate(
        int(d["token_id"]), d["text"], _fin(d["logprob"]), _fin(d["score"]), _fin(d["total"]), int(d["rank"]),
        tuple((name, _fin(v)) for name, v in d["adjustments"]), d["fate"], d["reason"], _opt_int(d["child"]),
        _opt_int(d.get("raw_rank")),
    )


def _progress_in(d: JSONDoc | None) -> ConstraintProgress | None:
    """Constraint progress from its dict (or ``None``)."""
    if d is None:
        return None
    return ConstraintProgress(tuple(d["status"]), _ints(d["matched"]), _ints(d["lengths"]), int(d["bank"]),
                              d["completed"])


def _hypothesis_in(d: JSONDoc) -> Hypothesis:
    """One hypothesis from its dict."""
    return Hypothesis(
        int(d["id"]), _opt_int(d["parent"]), int(d["slot"]), int(d["group"]), _ints(d["token_ids"]),
        _fin(d["score"]), tuple(_candidate_in(c) for c in d["candidates"]), _progress_in(d["constraint"]),
        d["forced"], _opt_fin(d.get("entropy")),
    )


def _finished_in(d: JSONDoc) -> Finished:
    """One finished entry from its dict."""
    return Finished(
        int(d["id"]), int(d["hypothesis"]), int(d["step"]), int(d["group"]), _ints(d["token_ids"]),
        _fin(d["score"]), _fin(d["normalized_score"]), int(d["length"]), d["reason"], d["accepted"], d["note"],
    )


def _opt_fin(x: float | str | None) -> float | None:
    """A JSON float or null."""
    return None if x is None else _fin(x)


def _speculation_in(d: JSONDoc | None) -> Speculation | None:
    """One round of assisted decoding from its dict (``None``: a step of another strategy)."""
    if d is None:
        return None
    drafted = tuple(Drafted(int(x["token_id"]), x["text"], _opt_fin(x["draft_prob"]), _fin(x["target_prob"]),
                            x["verdict"], x["reason"], _opt_fin(x["draw"])) for x in d["drafted"])
    return Speculation(d["source"], drafted, _opt_int(d["added"]), d["added_kind"],
                       tuple((int(t), _fin(p)) for t, p in d["residual"]), int(d["draft_length"]),
                       int(d["next_draft_length"]), _fin(d["draft_ms"]))


def _dola_in(d: JSONDoc | None) -> LayerContrast | None:
    """One step of DoLa from its dict (``None``: a step of another strategy)."""
    if d is None:
        return None
    candidates = tuple(DolaCandidate(int(c["token_id"]), c["text"], _fin(c["final_logprob"]),
                                     _fin(c["premature_logprob"]), _fin(c["contrast"]), c["plausible"])
                       for c in d["candidates"])
    return LayerContrast(_ints(d["layers"]), tuple(_fin(x) for x in d["divergences"]), int(d["chosen_layer"]),
                         int(d["final_layer"]), int(d["plausible"]), candidates,
                         tuple((_fin(p), int(r)) for p, r in d["layer_probs"]))


def _contrastive_in(d: JSONDoc | None) -> Contrastive | None:
    """One step of contrastive search from its dict (``None``: a step of another strategy)."""
    if d is None:
        return None
    candidates = tuple(ContrastCandidate(int(x["token_id"]), x["text"], _fin(x["prob"]), _fin(x["penalty"]),
                                         int(x["similar_to"]), int(x["similar_token"]), _fin(x["score"]))
                       for x in d["candidates"])
    return Contrastive(_fin(d["alpha"]), candidates, int(d["chosen"]))


def _step_in(d: JSONDoc) -> Step:
    """One step from its dict."""
    return Step(
        int(d["index"]), tuple(_hypothesis_in(h) for h in d["hypotheses"]),
        tuple(_finished_in(f) for f in d["finished"]), _ints(d["pool"]), _ints(d["done_groups"]),
        _fin(d["forward_ms"]), _fin(d["search_ms"]), _speculation_in(d.get("speculation")), _dola_in(d.get("dola")),
        _contrastive_in(d.get("contrastive")),
    )


def _result_in(d: JSONDoc) -> Result:
    """One result from its dict."""
    return Result(
        int(d["rank"]), _ints(d["token_ids"]), d["text"], _fin(d["score"]), int(d["finished_step"]),
        d["ended_with_eos"], int(d["group"]), _opt_int(d["source"]), d["constraints_satisfied"],
    )


def trace_from_dict(doc: JSONDoc, *, validate: bool = True) -> Trace:
    """The :class:`Trace` a document describes; checks its version and schema first unless ``validate=False``.

    Exact inverse of :func:`trace_to_dict`: ``trace_from_dict(trace_to_dict(t)) == t`` (traces hold no NaN, which
    would compare unequal to itself). Raises :class:`TraceFormatError` for a document that does not fit.

    >>> trace_from_dict({"version": "2.0"})
    Traceback (most recent call last):
    ...
    explorer.errors.TraceFormatError: trace format version 2.0 is not supported: expected 1.x
    """
    if validate:
        validate_document(doc)
    with gc_paused():
        return _trace_in(doc)


def _trace_in(doc: JSONDoc) -> Trace:
    """The trace from a valid top-level document."""
    return Trace(
        model=doc["model"], strategy=doc["strategy"], prompt=doc["prompt"],
        prompt_token_ids=_ints(doc["prompt_token_ids"]), params=doc["params"],
        constraints=tuple(doc["constraints"]), processors=tuple(doc["processors"]),
        eos_token_ids=_ints(doc["eos_token_ids"]), steps=tuple(_step_in(s) for s in doc["steps"]),
        results=tuple(_result_in(r) for r in doc["results"]), stop_reason=doc["stop_reason"],
        total_ms=_fin(doc["total_ms"]), version=doc["version"], meta=doc["meta"],
    )
