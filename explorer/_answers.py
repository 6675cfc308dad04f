"""How the exercise checks read a student's answer: one answer in any of its natural spellings (2, 2.0, "2", " 2 ").

Each reader returns the answer as a plain Python value, or ``None`` when it is not of that kind at all (``"two"``
for a number, ``True`` for a count): a check then says what kind of answer it expects instead of "wrong". A reader
never turns one answer into another: ``2.5`` is not a count, ``1`` is not ``True``.
"""

from __future__ import annotations

import numbers
from fractions import Fraction

__all__ = ["count", "number", "probability", "truth"]


def _plain(answer: object) -> object:
    """A one-element numpy, torch or pandas value as the Python value it holds; anything else unchanged."""
    if answer is None or isinstance(answer, str | bytes | bool | int | float):
        return answer
    item = getattr(answer, "item", None)
    if not callable(item):
        return answer
    try:
        return item()
    except (ValueError, RuntimeError, TypeError, IndexError):  # more than one element: not a single answer
        return answer


def number(answer: object) -> float | None:
    """``answer`` as a number: an int or float (numpy's too), or text that spells one (``" -1.4 "``, ``"9/25"``).

    >>> number(2), number(" -1.4 "), number("9/25"), number("2e-1")
    (2.0, -1.4, 0.36, 0.2)
    >>> number(True), number("two"), number([2]), number(None)
    (None, None, None, None)
    """
    value = _plain(answer)
    if isinstance(value, bool):  # True == 1 in Python, but True is not a number anyone means
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip().replace("\N{MINUS SIGN}", "-")))
        except (ValueError, ZeroDivisionError):
            return None
    return None


def count(answer: object) -> int | None:
    """``answer`` as a whole number (a count, a step): ``2``, ``2.0``, ``"2"`` and ``" 2 "`` are all 2.

    >>> count(2), count(2.0), count(" 2 "), count("2.0")
    (2, 2, 2, 2)
    >>> count(2.5), count(True), count("2 steps")
    (None, None, None)
    """
    value = number(answer)
    return int(value) if value is not None and value.is_integer() else None


def probability(answer: object) -> float | None:
    """``answer`` as a probability: a number, or a percentage in text (``"36%"`` is 0.36).

    >>> probability(0.36), probability("0.36"), probability(" 36 % "), probability("9/25")
    (0.36, 0.36, 0.36, 0.36)
    """
    value = _plain(answer)
    if isinstance(value, str) and value.strip().endswith("%"):
        percent = number(value.strip()[:-1])
        return None if percent is None else percent / 100
    return number(value)


def truth(answer: object) -> bool | None:
    """``answer`` as True or False: a bool (numpy's too), or the words true, false, yes, no in any case.

    >>> truth(True), truth(" yes "), truth("False"), truth(1), truth("maybe")
    (True, True, False, None, None)
    """
    value = _plain(answer)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "yes": True, "false": False, "no": False}.get(value.strip().lower())
    return None
