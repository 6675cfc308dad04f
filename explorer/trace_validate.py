"""Checking a parsed trace document: its format version first, then the JSON Schema (``trace.schema.json``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any, cast

import fastjsonschema
import jsonschema
from jsonschema.exceptions import ValidationError

from explorer.errors import TraceFormatError
from explorer.trace import FORMAT_VERSION

__all__ = ["short", "trace_schema", "validate_document"]

_MAJOR = FORMAT_VERSION.split(".", 1)[0]
_VERSION = re.compile(r"^([0-9]+)\.[0-9]+$")


@cache
def trace_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07) of trace documents, shipped as ``explorer/trace.schema.json``.

    >>> trace_schema()["title"]
    'Trace'
    """
    text = resources.files("explorer").joinpath("trace.schema.json").read_text(encoding="utf-8")
    return cast(dict[str, Any], json.loads(text))


# Speed decides the checker. On the largest trace the loader accepts (61.8 MB of JSON, 64 beams x 108 steps x 40
# candidates; benchmarks/bench_validate.py, 2 loaded cores): fastjsonschema 1.6-1.8 s, the hand-written predicate
# compiler this replaced 3.0-4.3 s, jsonschema 90-93 s. fastjsonschema (compiled Python, draft-07) checks every
# document; jsonschema runs only on a refused one, for the message with its exact place in the document.
@cache
def _fast_check() -> Callable[[Any], Any]:
    """The schema compiled to Python by fastjsonschema: raises ``JsonSchemaException`` on a refused document."""
    return cast(Callable[[Any], Any], fastjsonschema.compile(trace_schema()))


@cache
def _validator() -> jsonschema.Draft7Validator:
    """The reference validator: exact messages and paths for a document the fast check refused."""
    return jsonschema.Draft7Validator(trace_schema())


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
        raise TraceFormatError(f"trace format version {short(shown)} is not supported: expected {_MAJOR}.x")


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def short(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters, on one line.

    >>> short("a\\nb"), len(short("x" * 500))
    ('a\\\\nb', 120)
    """
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: ValidationError) -> str:
    """One line for a schema violation: where in the document, and what is wrong."""
    where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "anyOf" and error.schema.get("title") == "float":
        what = f"{short(repr(error.instance))} is not a number or one of '-inf', 'inf', 'nan'"
    elif error.validator in ("anyOf", "oneOf") and error.context:
        # the alternative that got furthest explains best (null-or-record fields fail "type: null" at once)
        return _describe(max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type")))
    else:
        what = short(error.message)
    return f"invalid trace at {where}: {what}"


def validate_document(doc: object) -> None:
    """Check a parsed document: its version first, then the schema; raise on the first problem found.

    >>> validate_document({"version": "1.0"})
    Traceback (most recent call last):
    ...
    explorer.errors.TraceFormatError: invalid trace at (top level): 'model' is a required property
    """
    _check_version(doc)
    try:
        _fast_check()(doc)
    except fastjsonschema.JsonSchemaException as refused:
        error = next(_validator().iter_errors(doc), None)
        raise TraceFormatError(_describe(error) if error is not None else
                               f"invalid trace: {short(str(refused))}") from None
