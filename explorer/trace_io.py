"""Traces as JSON documents: plain dicts, atomic saving, and validated loading of untrusted input."""

from __future__ import annotations

import gc
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

import jsonschema
from jsonschema.exceptions import ValidationError

from explorer.errors import TraceFormatError
from explorer.trace import (
    FORMAT_VERSION,
    Candidate,
    ConstraintProgress,
    Finished,
    Hypothesis,
    Result,
    Step,
    Trace,
)

__all__ = [
    "MAX_TRACE_BYTES",
    "dump_trace",
    "load_trace",
    "loads_trace",
    "trace_from_dict",
    "trace_schema",
    "trace_to_dict",
    "validate_document",
]

#: Largest trace document :func:`load_trace` reads (bytes); larger input is refused before parsing.
MAX_TRACE_BYTES = 64 * 1024 * 1024

_NONFINITE_OUT = {math.inf: "inf", -math.inf: "-inf"}
_NONFINITE_IN = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_MAJOR = FORMAT_VERSION.split(".", 1)[0]
_VERSION = re.compile(r"^([0-9]+)\.[0-9]+$")

JSONDoc = dict[str, Any]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects, then restore it as it was.

    A full collection triggered midway through a big trace costs more than the build itself (0.6 s against
    0.03 s for a 16-beam, 100-step trace); records are acyclic, so nothing is left for the collector.

    >>> import gc
    >>> with gc_paused():
    ...     gc.isenabled()
    False
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


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
    """One candidate as a dict."""
    return {
        "token_id": c.token_id, "text": c.text, "logprob": _fout(c.logprob), "score": _fout(c.score),
        "total": _fout(c.total), "rank": c.rank, "adjustments": [[n, _fout(v)] for n, v in c.adjustments],
        "fate": c.fate, "reason": c.reason, "child": c.child,
    }


def _progress_out(p: ConstraintProgress | None) -> JSONDoc | None:
    """Constraint progress as a dict (``None`` stays ``None``)."""
    if p is None:
        return None
    return {"status": list(p.status), "matched": list(p.matched), "lengths": list(p.lengths), "bank": p.bank,
            "completed": p.completed}


def _hypothesis_out(h: Hypothesis) -> JSONDoc:
    """One hypothesis with its candidates as a dict."""
    return {
        "id": h.id, "parent": h.parent, "slot": h.slot, "group": h.group, "token_ids": list(h.token_ids),
        "score": _fout(h.score), "candidates": [_candidate_out(c) for c in h.candidates],
        "constraint": _progress_out(h.constraint), "forced": h.forced,
    }


def _finished_out(f: Finished) -> JSONDoc:
    """One finished entry as a dict."""
    return {
        "id": f.id, "hypothesis": f.hypothesis, "step": f.step, "group": f.group, "token_ids": list(f.token_ids),
        "score": _fout(f.score), "normalized_score": _fout(f.normalized_score), "length": f.length,
        "reason": f.reason, "accepted": f.accepted, "note": f.note,
    }


def _step_out(s: Step) -> JSONDoc:
    """One step as a dict."""
    return {
        "index": s.index, "hypotheses": [_hypothesis_out(h) for h in s.hypotheses],
        "finished": [_finished_out(f) for f in s.finished], "pool": list(s.pool),
        "done_groups": list(s.done_groups), "forward_ms": _fout(s.forward_ms), "search_ms": _fout(s.search_ms),
    }


def _result_out(r: Result) -> JSONDoc:
    """One result as a dict."""
    return {
        "rank": r.rank, "token_ids": list(r.token_ids), "text": r.text, "score": _fout(r.score),
        "finished_step": r.finished_step, "ended_with_eos": r.ended_with_eos, "group": r.group,
        "source": r.source, "constraints_satisfied": r.constraints_satisfied,
    }


def trace_to_dict(trace: Trace) -> JSONDoc:
    """The trace as plain JSON values (the document ``trace.schema.json`` describes).

    Tuples become lists, candidates' adjustments ``[name, value]`` pairs, and non-finite floats the strings
    ``"-inf"``, ``"inf"`` and ``"nan"``. ``params`` and ``meta`` are free-form: their tuples become lists too.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=2)
    >>> doc = trace_to_dict(t)
    >>> doc["version"], len(doc["steps"]), trace_from_dict(doc) == t
    ('1.0', 2, True)
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
        d["forced"],
    )


def _finished_in(d: JSONDoc) -> Finished:
    """One finished entry from its dict."""
    return Finished(
        int(d["id"]), int(d["hypothesis"]), int(d["step"]), int(d["group"]), _ints(d["token_ids"]),
        _fin(d["score"]), _fin(d["normalized_score"]), int(d["length"]), d["reason"], d["accepted"], d["note"],
    )


def _step_in(d: JSONDoc) -> Step:
    """One step from its dict."""
    return Step(
        int(d["index"]), tuple(_hypothesis_in(h) for h in d["hypotheses"]),
        tuple(_finished_in(f) for f in d["finished"]), _ints(d["pool"]), _ints(d["done_groups"]),
        _fin(d["forward_ms"]), _fin(d["search_ms"]),
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


# --- validation -----------------------------------------------------------------------------------------------


@cache
def trace_schema() -> JSONDoc:
    """The JSON Schema (Draft 2020-12) of trace documents, shipped as ``explorer/trace.schema.json``.

    >>> trace_schema()["title"]
    'Trace'
    """
    text = resources.files("explorer").joinpath("trace.schema.json").read_text(encoding="utf-8")
    return cast(JSONDoc, json.loads(text))


@cache
def _validator() -> jsonschema.Draft202012Validator:
    """The reference validator: exact messages and paths for a document the fast check refused."""
    return jsonschema.Draft202012Validator(trace_schema())


@cache
def _fast_check() -> Check:
    """The schema compiled to plain Python predicates (about 10x faster than ``jsonschema`` on big traces)."""
    schema = trace_schema()
    return _Compiler(schema.get("$defs", {})).compile(schema)


def _check_version(doc: object) -> None:
    """Refuse anything but an object whose ``version`` has our major version."""
    if not isinstance(doc, dict):
        raise TraceFormatError(f"a trace document must be a JSON object, not {_json_type(doc)}")
    if "version" not in doc:
        raise TraceFormatError(f"trace has no format version: expected {_MAJOR}.x")
    version = doc["version"]
    match = _VERSION.match(version) if isinstance(version, str) else None
    if match is None or match.group(1) != _MAJOR:
        shown = version if isinstance(version, str) else json.dumps(version)
        raise TraceFormatError(f"trace format version {_short(shown)} is not supported: expected {_MAJOR}.x")


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _short(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters, on one line."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: ValidationError) -> str:
    """One line for a schema violation: where in the document, and what is wrong."""
    where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "anyOf" and error.schema.get("title") == "float":
        what = f"{_short(repr(error.instance))} is not a number or one of '-inf', 'inf', 'nan'"
    elif error.validator in ("anyOf", "oneOf") and error.context:
        # the alternative that got furthest explains best (null-or-record fields fail "type: null" at once)
        return _describe(max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type")))
    else:
        what = _short(error.message)
    return f"invalid trace at {where}: {what}"


def validate_document(doc: object) -> None:
    """Check a parsed document: its version first, then the schema; raise on the first problem found.

    >>> validate_document({"version": "1.0"})
    Traceback (most recent call last):
    ...
    explorer.errors.TraceFormatError: invalid trace at (top level): 'model' is a required property
    """
    _check_version(doc)
    if _fast_check()(doc):
        return
    error = next(_validator().iter_errors(doc), None)
    if error is not None:
        raise TraceFormatError(_describe(error))


# --- fast schema check ----------------------------------------------------------------------------------------

Check = Callable[[Any], bool]

_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "number": lambda x: isinstance(x, int | float) and not isinstance(x, bool),
    "integer": lambda x: (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer()),
}
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default"})


def _all(checks: list[Check]) -> Check:
    """A predicate true when every one of ``checks`` is."""
    if len(checks) == 1:
        return checks[0]

    def check(x: Any) -> bool:
        return all(one(x) for one in checks)

    return check


def _any(checks: list[Check]) -> Check:
    """A predicate true when one of ``checks`` is."""
    if len(checks) == 1:
        return checks[0]

    def check(x: Any) -> bool:
        return any(one(x) for one in checks)

    return check


def _recursive(_: Any) -> bool:
    """Placeholder of a reference being compiled (never called)."""
    raise AssertionError("recursive schema reference")


class _Compiler:
    """Turns the subset of Draft 2020-12 the trace schema uses into nested Python predicates.

    Only a yes/no answer: :func:`validate_document` asks ``jsonschema`` for the message when the answer is no, and
    the tests check that both agree on many mutated documents. Unknown keywords raise, so a schema edit that this
    compiler does not understand cannot pass silently.
    """

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        """The predicate of one (sub)schema."""
        if schema is True or schema is False:
            return lambda _: bool(schema)
        checks = [self._keyword(key, value, schema) for key, value in schema.items() if key not in _ANNOTATIONS]
        kept = [c for c in checks if c is not None]
        return _all(kept) if kept else (lambda _: True)

    def _ref(self, ref: str) -> Check:
        """A ``#/$defs/name`` reference, compiled once (the trace schema has no recursive references)."""
        name = ref.removeprefix("#/$defs/")
        if name not in self.refs:
            self.refs[name] = _recursive
            self.refs[name] = self.compile(self.defs[name])
        if self.refs[name] is _recursive:
            raise ValueError(f"the fast check does not support recursive references ({ref})")
        return self.refs[name]

    def _keyword(self, key: str, value: Any, schema: dict[str, Any]) -> Check | None:
        """The predicate of one keyword (``None`` for those handled by a sibling)."""
        simple = self._simple(key, value)
        if simple is not None:
            return simple
        if key in ("properties", "required", "additionalProperties"):
            return self._object(key, value, schema)
        if key in ("items", "prefixItems", "minItems"):
            return self._array(key, value, schema)
        if key in ("if", "then", "else"):
            return self._conditional(schema) if key == "if" else None
        raise ValueError(f"trace schema keyword {key!r} is not supported by the fast check")

    def _simple(self, key: str, value: Any) -> Check | None:
        """Keywords that stand alone."""
        if key == "$ref":
            return self._ref(value)
        if key == "type":
            return _any([_TYPES[name] for name in ([value] if isinstance(value, str) else value)])
        if key in ("enum", "const"):
            allowed = tuple(value if key == "enum" else [value])
            if not all(isinstance(v, str) for v in allowed):
                raise ValueError("the fast check supports string enums only")
            return lambda x: isinstance(x, str) and x in allowed
        if key == "pattern":
            regex = re.compile(value)
            return lambda x: not isinstance(x, str) or regex.search(x) is not None
        if key == "minimum":
            return lambda x: not _TYPES["number"](x) or x >= value
        if key in ("anyOf", "allOf"):
            parts = [self.compile(s) for s in value]
            return _any(parts) if key == "anyOf" else _all(parts)
        return None

    def _object(self, key: str, value: Any, schema: dict[str, Any]) -> Check | None:
        """``properties`` (with ``required`` and ``additionalProperties: false``); the others defer to it."""
        if key == "additionalProperties" and value is not False:
            raise ValueError("the fast check supports additionalProperties: false only")
        if key != "properties" and "properties" in schema:
            return None
        props = {name: self.compile(sub) for name, sub in schema.get("properties", {}).items()}
        required = tuple(schema.get("required", ()))
        closed = schema.get("additionalProperties") is False
        allowed = frozenset(props)

        def check(x: Any) -> bool:
            if not isinstance(x, dict):
                return True
            if closed and not allowed.issuperset(x):
                return False
            for name in required:
                if name not in x:
                    return False
            return all(prop(x[name]) for name, prop in props.items() if name in x)

        return check

    def _array(self, key: str, value: Any, schema: dict[str, Any]) -> Check | None:
        """``items``, ``prefixItems`` and ``minItems`` together, compiled once (on ``items``, else the first)."""
        present = [k for k in ("items", "prefixItems", "minItems") if k in schema]
        if key != present[0]:
            return None
        prefix = [self.compile(s) for s in schema.get("prefixItems", ())]
        rest = schema.get("items", True)
        item = None if rest is False else self.compile(rest)
        least = schema.get("minItems", 0)

        def check(x: Any) -> bool:
            if not isinstance(x, list):
                return True
            if len(x) < least or (item is None and len(x) > len(prefix)):
                return False
            for one, value in zip(prefix, x, strict=False):
                if not one(value):
                    return False
            return item is None or all(item(v) for v in x[len(prefix):])

        return check

    def _conditional(self, schema: dict[str, Any]) -> Check:
        """``if`` / ``then`` / ``else``."""
        test = self.compile(schema["if"])
        then = self.compile(schema.get("then", True))
        other = self.compile(schema.get("else", True))
        return lambda x: then(x) if test(x) else other(x)


# --- text and files -------------------------------------------------------------------------------------------


def dump_trace(trace: Trace, path: str | os.PathLike[str] | None = None, *, indent: int | None = None) -> str:
    """The trace as JSON text (compact unless ``indent``); also written atomically to ``path`` when given.

    The file is written to a temporary sibling, flushed to disk and renamed over ``path``, so a crash or an error
    never leaves a half-written trace behind. It holds the returned text plus a final newline.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=2)
    >>> dump_trace(t)[:16]
    '{"version":"1.0"'
    """
    separators = (",", ":") if indent is None else (",", ": ")
    with gc_paused():
        text = json.dumps(_trace_out(trace), indent=indent, separators=separators, allow_nan=False)
    if path is not None:
        _write_atomically(Path(path), text + "\n")
    return text


def _write_atomically(target: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``target``, fsync it, then rename it over ``target``."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Flush the folder entry of a renamed file to disk where the platform allows it (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def loads_trace(text: str | bytes) -> Trace:
    """Read a trace from JSON text only (never a path): for uploads and other untrusted bytes.

    >>> loads_trace("not json")
    Traceback (most recent call last):
    ...
    explorer.errors.TraceFormatError: trace is not valid JSON: Expecting value at line 1, column 1
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8"))
    _check_size(size, "trace text")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise TraceFormatError("trace is not UTF-8 text") from None
    doc = _parse(text)
    validate_document(doc)
    return trace_from_dict(doc, validate=False)


def load_trace(source: str | os.PathLike[str]) -> Trace:
    """Read a trace from JSON text or a file, treating it as untrusted input.

    A ``str`` whose first non-blank character is ``{`` is JSON text; anything else is a path. Input over
    :data:`MAX_TRACE_BYTES` is refused, the text is parsed with ``json`` only, the version is checked, then the
    schema; every problem raises :class:`TraceFormatError` with one line saying what and where.

    >>> load_trace('{"version": "1.0", "model": 3}')
    Traceback (most recent call last):
    ...
    explorer.errors.TraceFormatError: invalid trace at (top level): 'strategy' is a required property
    """
    if isinstance(source, str) and source.lstrip().startswith("{"):
        _check_size(len(source) if source.isascii() else len(source.encode("utf-8")), "trace text")
        text = source
    else:
        text = _read_file(Path(source))
    doc = _parse(text)
    validate_document(doc)
    return trace_from_dict(doc, validate=False)


def _check_size(size: int, what: str) -> None:
    """Refuse input over the cap."""
    if size > MAX_TRACE_BYTES:
        raise TraceFormatError(f"{what} is {_bytes(size)}, over the {_bytes(MAX_TRACE_BYTES)} limit "
                               "(explorer.trace_io.MAX_TRACE_BYTES)")


def _bytes(size: int) -> str:
    """A byte count for people: exact bytes below 1 MiB, MiB above."""
    return f"{size} bytes" if size < 1024 * 1024 else f"{size / (1024 * 1024):.1f} MiB ({size} bytes)"


def _read_file(path: Path) -> str:
    """The text of a trace file, refusing missing, unreadable, oversized or non-UTF-8 files."""
    name = _short(str(path))
    try:
        with path.open("rb") as handle:
            _check_size(os.fstat(handle.fileno()).st_size, f"trace file {name}")
            data = handle.read(MAX_TRACE_BYTES + 1)
    except FileNotFoundError:
        raise TraceFormatError(f"trace file {name} does not exist") from None
    except OSError as exc:
        raise TraceFormatError(f"cannot read trace file {name}: {exc.strerror or exc}") from None
    _check_size(len(data), f"trace file {name}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"trace file {name} is not UTF-8 text (byte {exc.start})") from None


def _reject_constant(name: str) -> float:
    """``json`` hook: the non-standard literals NaN and Infinity are not JSON."""
    raise TraceFormatError(f"trace is not valid JSON: {name} is not a JSON value (write \"inf\", \"-inf\", \"nan\")")


def _parse(text: str) -> Any:
    """Parse JSON text strictly, with one-line errors giving the line and column."""
    try:
        with gc_paused():
            return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(f"trace is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") \
            from None
    except RecursionError:
        raise TraceFormatError("trace is not valid JSON: nested too deeply") from None
