"""What a decoding parameter may hold: its check (one-line error), its text form (CLI and app) and its widget.

Every parameter of :class:`explorer.params.DecodeParams` names one of these. ``check`` raises
:class:`~explorer.errors.ParameterError` saying what is allowed; ``normalize`` turns lists into tuples (and
``"true"`` into ``True``); ``parse`` reads the text a command-line flag or an app box holds (what does not parse
stays text, and ``check`` then says why); ``show`` writes a value back as that text.

Token sequences are given as phrases (text, tokenized as written) or as token ids in brackets: ``" flour"``,
``"[832, 461]"``. The API also takes ids as lists; :func:`explorer.api.plan` tokenizes the phrases.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from explorer.errors import ParameterError

__all__ = [
    "Biases",
    "Check",
    "Choice",
    "DecayPenalty",
    "DolaLayers",
    "Flag",
    "Float",
    "Function",
    "Int",
    "ModelName",
    "Optional",
    "Pattern",
    "PrefixFunction",
    "Texts",
    "TokenIds",
    "TokenSeqs",
    "Widget",
    "Words",
    "parse_tokens",
]

#: ``prefix_allowed_tokens_fn(batch_id, ids) -> allowed token ids``: ``ids`` is one row, prompt included (1-D).
PrefixFunction = Callable[[int, Any], Sequence[int]]

#: How the app edits a parameter: a number box, a text box (optional numbers and pairs), a choice, a checkbox,
#: a box of lines (one item per line), or nothing (API only).
Widget = Literal["int", "float", "text", "choice", "bool", "lines", "none"]

_IDS = re.compile(r"^\[\s*\d+(\s*,\s*\d+)*\s*\]$")


def parse_tokens(text: str) -> str | tuple[int, ...]:
    """One token sequence as typed: ``[12, 13]`` is token ids, anything else a phrase tokenized as written.

    >>> parse_tokens("[12, 13]"), parse_tokens(" flour")
    ((12, 13), ' flour')
    """
    stripped = text.strip()
    if _IDS.match(stripped):
        return tuple(int(t) for t in stripped[1:-1].split(","))
    return text


def _show_tokens(item: str | Sequence[int]) -> str:
    """A token sequence as ``parse_tokens`` reads it back."""
    return item if isinstance(item, str) else "[" + ", ".join(str(t) for t in item) + "]"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Check:
    """Base of the parameter types: identity text forms, no widget."""

    widget: Widget = "none"
    allowed: str = ""

    def ok(self, value: Any) -> bool:
        """Whether ``value`` is allowed."""
        return True

    def check(self, name: str, value: Any) -> None:
        """Raise ``ParameterError`` unless ``value`` is allowed."""
        if not self.ok(value):
            raise ParameterError(name, value, self.allowed)

    def normalize(self, value: Any) -> Any:
        """The value as ``DecodeParams`` holds it (tuples for lists)."""
        return value

    def parse(self, text: str) -> Any:
        """The value a flag or a box holds as text (what does not parse stays text)."""
        return text

    def parse_flag(self, text: str) -> tuple[Any, ...]:
        """The items one occurrence of a repeatable flag adds (list-valued parameters)."""
        return (self.parse(text),)

    def show(self, value: Any) -> str:
        """The value as text, for a box."""
        return "" if value is None else str(value)

    def resolve(self, name: str, value: Any, tokens: Tokenize) -> Any:
        """The value of parameter ``name`` with its phrases turned into token ids by ``tokens`` (which checks ids
        too): the form a run and its trace hold. Only token-valued parameters have phrases."""
        return value


#: Turns a phrase, or token ids, into checked token ids (raising ``ParameterError`` naming the parameter).
Tokenize = Callable[[str | tuple[int, ...]], tuple[int, ...]]


@dataclass(frozen=True)
class Int(Check):
    """An integer from ``low`` to ``high`` (no upper bound when ``None``).

    >>> Int(1, 64).allowed
    'an integer from 1 to 64'
    """

    low: int
    high: int | None = None
    widget: Widget = "int"

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"an integer from {self.low} to {self.high}" if self.high is not None else f"an integer >= {self.low}"

    def ok(self, value: Any) -> bool:
        return _is_int(value) and value >= self.low and (self.high is None or value <= self.high)

    def parse(self, text: str) -> Any:
        try:
            return int(text.strip())
        except ValueError:
            return text


@dataclass(frozen=True)
class Float(Check):
    """A finite number, bounded below and above (open bounds exclude the bound).

    >>> Float(0, 1, low_open=True).allowed, Float(0, low_open=True).allowed, Float().allowed
    ('a number in (0, 1]', 'a number > 0', 'a finite number')
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    widget: Widget = "float"

    @property
    def allowed(self) -> str:  # type: ignore[override]
        if self.low is not None and self.high is not None:
            return (f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"a number {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"a number {'<' if self.high_open else '<='} {self.high:g}"
        return "a finite number"

    def ok(self, value: Any) -> bool:
        if not _is_number(value):
            return False
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return low_ok and (self.high is None or (value < self.high if self.high_open else value <= self.high))

    def parse(self, text: str) -> Any:
        try:
            return float(text.strip())
        except ValueError:
            return text


@dataclass(frozen=True)
class Optional(Check):
    """``None`` (off), or a value of ``inner``; typed as text, empty meaning ``None``.

    >>> Optional(Float(0, 1)).parse(" "), Optional(Int(0)).parse("7")
    (None, 7)
    """

    inner: Check
    widget: Widget = "text"

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"None or {self.inner.allowed}"

    def ok(self, value: Any) -> bool:
        return value is None or self.inner.ok(value)

    def check(self, name: str, value: Any) -> None:
        if value is not None:
            self.inner.check(name, value)

    def normalize(self, value: Any) -> Any:
        return None if value is None else self.inner.normalize(value)

    def parse(self, text: str) -> Any:
        return None if not text.strip() else self.inner.parse(text)

    def show(self, value: Any) -> str:
        return "" if value is None else self.inner.show(value)


@dataclass(frozen=True)
class Choice(Check):
    """One of ``values``; text ``"true"`` and ``"false"`` stand for the booleans.

    >>> Choice((False, True, "never")).parse("true")
    True
    """

    values: tuple[Any, ...]
    widget: Widget = "choice"

    @property
    def allowed(self) -> str:  # type: ignore[override]
        shown = [str(v).lower() if isinstance(v, bool) else repr(v) for v in self.values]
        return ", ".join(shown[:-1]) + " or " + shown[-1]

    def ok(self, value: Any) -> bool:
        return any(value is v if isinstance(v, bool) else value == v for v in self.values)

    def normalize(self, value: Any) -> Any:
        return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value

    def parse(self, text: str) -> Any:
        return self.normalize(text.strip().lower())

    def show(self, value: Any) -> str:
        return str(value).lower()


@dataclass(frozen=True)
class Flag(Check):
    """``True`` or ``False``."""

    widget: Widget = "bool"
    allowed: str = "true or false"

    def ok(self, value: Any) -> bool:
        return isinstance(value, bool)

    def parse(self, text: str) -> Any:
        return {"true": True, "false": False}.get(text.strip().lower(), text)


class _Lines(Check, ABC):
    """A tuple of items, typed one per line (one per flag on the command line)."""

    widget: Widget = "lines"

    @abstractmethod
    def item_ok(self, item: Any) -> bool:
        """Whether one item is allowed."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, tuple) and all(self.item_ok(item) for item in value)

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, tuple):
            raise ParameterError(name, value, self.allowed)
        for item in value:
            if not self.item_ok(item):
                raise ParameterError(name, item, self.allowed)

    def normalize(self, value: Any) -> Any:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return value
        return tuple(self.normalize_item(item) for item in value)

    def normalize_item(self, item: Any) -> Any:
        return tuple(item) if isinstance(item, list | tuple) else item

    def parse(self, text: str) -> Any:
        return tuple(self.parse_item(line) for line in text.replace("\r", "").split("\n") if line.strip())

    def parse_item(self, text: str) -> Any:
        return text

    def parse_flag(self, text: str) -> tuple[Any, ...]:
        """The items of one command-line flag (one item, kept whole: it may hold a newline)."""
        return (self.parse_item(text),)

    def show(self, value: Any) -> str:
        return "\n".join(self.show_item(item) for item in value) if isinstance(value, tuple) else str(value)

    def show_item(self, item: Any) -> str:
        return str(item)


def _token_seq_ok(item: Any) -> bool:
    """A non-empty phrase or a non-empty tuple of token ids >= 0."""
    if isinstance(item, str):
        return bool(item)
    return isinstance(item, tuple) and bool(item) and all(_is_int(t) and t >= 0 for t in item)


class TokenSeqs(_Lines):
    """Token sequences (``bad_words_ids``): phrases or token ids.

    >>> TokenSeqs().parse(" cake\\n[12, 13]")
    (' cake', (12, 13))
    """

    allowed = "phrases or non-empty lists of token ids >= 0"

    def item_ok(self, item: Any) -> bool:
        return _token_seq_ok(item)

    def parse_item(self, text: str) -> Any:
        return parse_tokens(text)

    def show_item(self, item: Any) -> str:
        return _show_tokens(item)

    def resolve(self, name: str, value: Any, tokens: Tokenize) -> Any:
        return tuple(tokens(item) for item in value)


class TokenIds(_Lines):
    """Single tokens (``suppress_tokens``, ``forced_eos_token_id``): token ids, or one-token phrases.

    >>> TokenIds().parse("[7, 8]\\n the")
    (7, 8, ' the')
    """

    allowed = "token ids >= 0 (or phrases of one token)"

    def item_ok(self, item: Any) -> bool:
        return (_is_int(item) and item >= 0) or (isinstance(item, str) and bool(item))

    def normalize(self, value: Any) -> Any:
        return (value,) if _is_int(value) else super().normalize(value)

    def normalize_item(self, item: Any) -> Any:
        return item

    def parse_flag(self, text: str) -> tuple[Any, ...]:
        return tuple(self.parse(text))

    def parse(self, text: str) -> Any:
        items: list[Any] = []
        for line in text.replace("\r", "").split("\n"):
            if line.strip():
                parsed = parse_tokens(line)
                items.extend(parsed if isinstance(parsed, tuple) else (parsed,))
        return tuple(items)

    def show_item(self, item: Any) -> str:
        return f"[{item}]" if _is_int(item) else str(item)

    def resolve(self, name: str, value: Any, tokens: Tokenize) -> Any:
        if value is None:
            return None
        out = []
        for item in value:
            ids = tokens((item,) if _is_int(item) else item)
            if len(ids) != 1:
                raise ParameterError(name, item, f"single tokens: a phrase of one token, not {len(ids)}")
            out.append(ids[0])
        return tuple(out)


class Biases(_Lines):
    """``sequence_bias``: (token sequence, bias) pairs; typed ``PHRASE = BIAS`` or ``[ids] = BIAS`` per line.

    >>> Biases().parse(" cake = -2.5")
    ((' cake', -2.5),)
    >>> Biases().normalize({(12, 13): 1.0})
    (((12, 13), 1.0),)
    """

    allowed = "(phrase or token ids, finite bias) pairs, typed PHRASE = BIAS"

    def item_ok(self, item: Any) -> bool:
        return isinstance(item, tuple) and len(item) == 2 and _token_seq_ok(item[0]) and _is_number(item[1])

    def normalize(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            value = list(value.items())
        return super().normalize(value)

    def normalize_item(self, item: Any) -> Any:
        if isinstance(item, list | tuple) and len(item) == 2:
            seq = item[0]
            return (tuple(seq) if isinstance(seq, list | tuple) else seq, item[1])
        return item

    def parse_item(self, text: str) -> Any:
        phrase, equals, bias = text.rpartition("=")
        if not equals:
            return text
        try:
            return (parse_tokens(phrase.rstrip() if phrase.strip() else phrase), float(bias))
        except ValueError:
            return text

    def show_item(self, item: Any) -> str:
        return f"{_show_tokens(item[0])} = {item[1]:g}" if self.item_ok(item) else str(item)

    def resolve(self, name: str, value: Any, tokens: Tokenize) -> Any:
        return tuple((tokens(seq), float(bias)) for seq, bias in value)


class Texts(_Lines):
    r"""Strings (``stop_strings``); typed one per line, with ``\n``, ``\t`` and ``\\`` for a newline, a tab and a
    backslash.

    >>> Texts().parse("\\n\nEnd")
    ('\n', 'End')
    """

    allowed = "non-empty strings"

    def item_ok(self, item: Any) -> bool:
        return isinstance(item, str) and bool(item)

    def normalize(self, value: Any) -> Any:
        return (value,) if isinstance(value, str) else super().normalize(value)

    def parse_item(self, text: str) -> Any:
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)

    def show_item(self, item: Any) -> str:
        return str(item).replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


class Words(_Lines):
    """Words without spaces (``allowed_words``); typed separated by spaces, commas or lines.

    >>> Words().parse("yes, no\\nmaybe")
    ('yes', 'no', 'maybe')
    """

    allowed = "words without spaces"

    def item_ok(self, item: Any) -> bool:
        return isinstance(item, str) and bool(item) and not any(ch.isspace() for ch in item)

    def parse(self, text: str) -> Any:
        return tuple(word for word in re.split(r"[\s,]+", text) if word)

    def parse_flag(self, text: str) -> tuple[Any, ...]:
        return tuple(self.parse(text))


@dataclass(frozen=True)
class Pattern(Check):
    """A regular expression (``allowed_regex``), in the syntax of the ``regex`` package (Python's ``re`` and more)."""

    widget: Widget = "text"
    allowed: str = "None or a regular expression that compiles"

    def ok(self, value: Any) -> bool:
        if value is None:
            return True
        if not isinstance(value, str) or not value:
            return False
        import regex

        try:
            regex.compile(value)
        except regex.error:
            return False
        return True

    def parse(self, text: str) -> Any:
        return text or None


@dataclass(frozen=True)
class ModelName(Check):
    """The name of a model ``explorer.load_model`` accepts (a draft model): non-empty text, checked when loaded.

    >>> ModelName().parse(" "), ModelName().parse("smollm2-135m")
    (None, 'smollm2-135m')
    """

    widget: Widget = "text"
    allowed: str = "None or a model name (see explorer.available_models())"

    def ok(self, value: Any) -> bool:
        return value is None or (isinstance(value, str) and bool(value.strip()))

    def parse(self, text: str) -> Any:
        return text.strip() or None


@dataclass(frozen=True)
class DecayPenalty(Check):
    """``exponential_decay_length_penalty``: ``(start_index, decay_factor)``, typed ``START, FACTOR``.

    >>> DecayPenalty().parse("5, 1.5")
    (5, 1.5)
    """

    widget: Widget = "text"
    allowed: str = "None or (start_index >= 0, decay_factor > 0), typed START, FACTOR"

    def ok(self, value: Any) -> bool:
        return value is None or (isinstance(value, tuple) and len(value) == 2 and _is_int(value[0])
                                 and value[0] >= 0 and _is_number(value[1]) and value[1] > 0)

    def normalize(self, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    def parse(self, text: str) -> Any:
        if not text.strip():
            return None
        start, comma, factor = text.partition(",")
        try:
            return (int(start), float(factor)) if comma else text
        except ValueError:
            return text

    def show(self, value: Any) -> str:
        return "" if value is None else f"{value[0]}, {value[1]:g}" if self.ok(value) else str(value)


@dataclass(frozen=True)
class DolaLayers(Check):
    """``dola_layers``: ``"high"``, ``"low"`` or layer indices (at least one, each >= 0; the model's own number of
    layers is checked when a run is planned), typed ``high``, ``low`` or ``8, 16, 24``.

    >>> DolaLayers().parse(" 8, 16,24"), DolaLayers().parse("High"), DolaLayers().show((8, 16))
    ((8, 16, 24), 'high', '8, 16')
    """

    widget: Widget = "text"
    allowed: str = "high, low or layer indices >= 0 (e.g. 8, 16, 24)"

    def ok(self, value: Any) -> bool:
        if isinstance(value, str):
            return value in ("high", "low")
        return (isinstance(value, tuple) and len(value) > 0 and all(_is_int(i) and i >= 0 for i in value)
                and len(set(value)) == len(value))

    def normalize(self, value: Any) -> Any:
        if isinstance(value, list):
            return tuple(value)
        return value.strip().lower() if isinstance(value, str) else value

    def parse(self, text: str) -> Any:
        stripped = text.strip().strip("[]").strip()
        if stripped.lower() in ("high", "low"):
            return stripped.lower()
        try:
            return tuple(int(part) for part in stripped.split(","))
        except ValueError:
            return text

    def show(self, value: Any) -> str:
        return ", ".join(str(i) for i in value) if isinstance(value, tuple) else str(value)


@dataclass(frozen=True)
class Function(Check):
    """A Python function (``prefix_allowed_tokens_fn``): API only; no text form."""

    allowed: str = "None or a function of (batch_id, token ids) returning the allowed token ids"

    def ok(self, value: Any) -> bool:
        return value is None or callable(value)
