"""Traces as JSON text and files: atomic saving, and loading of untrusted input (size cap, UTF-8, strict JSON).

The plain-dict codec lives in :mod:`explorer.trace_codec` and the version and schema checks in
:mod:`explorer.trace_validate`; both are re-exported here.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from explorer._util import gc_paused
from explorer.errors import TraceFormatError
from explorer.fork import prefix_of
from explorer.trace import Trace
from explorer.trace_codec import trace_from_dict, trace_to_dict
from explorer.trace_validate import short, trace_schema, validate_document

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

#: Largest trace document :func:`load_trace` and :func:`loads_trace` read (bytes); larger input is refused first.
MAX_TRACE_BYTES = 64 * 1024 * 1024


def dump_trace(trace: Trace, path: str | os.PathLike[str] | None = None, *, indent: int | None = None) -> str:
    """The trace as JSON text (compact unless ``indent``); also written atomically to ``path`` when given.

    The file is written to a temporary sibling, flushed to disk and renamed over ``path``, so a crash or an error
    never leaves a half-written trace behind. It holds the returned text plus a final newline.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=2)
    >>> dump_trace(t)[:16]
    '{"version":"1.5"'
    """
    separators = (",", ":") if indent is None else (",", ": ")
    with gc_paused():
        text = json.dumps(trace_to_dict(trace), indent=indent, separators=separators, allow_nan=False)
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


def loads_trace(text: str | bytes, source: str = "trace text") -> Trace:
    """Read a trace from JSON text or bytes only (never a path): for uploads and other untrusted input.

    Bytes must be UTF-8 (a byte-order mark is allowed); ``source`` names the input in error messages, e.g. an
    uploaded file's name. Size, encoding, JSON, version and schema are checked here for every caller.

    >>> loads_trace(b"not json", source="upload.json")
    Traceback (most recent call last):
    ...
    explorer.errors.TraceFormatError: upload.json is not a trace: expected a JSON object
    >>> loads_trace(b'{"version": ', source="upload.json")
    Traceback (most recent call last):
    ...
    explorer.errors.TraceFormatError: upload.json: trace is not valid JSON: Expecting value at line 1, column 13
    """
    if isinstance(text, bytes):
        _check_size(len(text), source)
        text = _utf8(text, source)
    else:
        _check_size(len(text) if text.isascii() else len(text.encode("utf-8")), source)
    if not text.lstrip().startswith("{"):
        page = " (a page from explorer.export_html? explorer.read_export reads its traces)" \
            if text.lstrip().startswith("<") else ""
        raise TraceFormatError(f"{source} is not a trace: expected a JSON object{page}")
    if source == "trace text":
        return _trace_of(text)
    try:
        return _trace_of(text)
    except TraceFormatError as error:
        raise TraceFormatError(f"{source}: {error}") from None


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
        return loads_trace(source)
    return _trace_of(_read_file(Path(source)))


def _trace_of(text: str) -> Trace:
    """Parse, check version and schema, and build the trace."""
    doc = _parse(text)
    validate_document(doc)
    trace = trace_from_dict(doc, validate=False)
    prefix_of(trace)  # a branch's record must add up (the schema checks its shape only)
    return trace


def _check_size(size: int, what: str) -> None:
    """Refuse input over the cap."""
    if size > MAX_TRACE_BYTES:
        raise TraceFormatError(f"{what} is {_bytes(size)}, over the {_bytes(MAX_TRACE_BYTES)} limit "
                               "(explorer.trace_io.MAX_TRACE_BYTES)")


def _bytes(size: int) -> str:
    """A byte count for people: exact bytes below 1 MiB, MiB above."""
    return f"{size} bytes" if size < 1024 * 1024 else f"{size / (1024 * 1024):.1f} MiB ({size} bytes)"


def _utf8(data: bytes, what: str) -> str:
    """Bytes as UTF-8 text (a leading byte-order mark is dropped), or one line saying where they are not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"{what} is not UTF-8 text (byte {exc.start})") from None


def _read_file(path: Path) -> str:
    """The text of a trace file, refusing missing, unreadable, oversized or non-UTF-8 files."""
    name = f"trace file {short(str(path))}"
    try:
        with path.open("rb") as handle:
            _check_size(os.fstat(handle.fileno()).st_size, name)
            data = handle.read(MAX_TRACE_BYTES + 1)
    except FileNotFoundError:
        raise TraceFormatError(f"{name} does not exist") from None
    except OSError as exc:
        raise TraceFormatError(f"cannot read {name}: {exc.strerror or exc}") from None
    _check_size(len(data), name)
    return _utf8(data, name)


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
