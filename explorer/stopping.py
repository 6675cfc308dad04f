"""Stopping criteria besides eos and the token budget: stop strings and a time limit, as the reference checks them.

The reference (``StopStringCriteria``) stops a row when a stop string occurs in the row's text, prompt included,
and ends inside the row's last token: ``"stop"`` stops ``["st", "op"]``, ``["unstop"]`` and ``["sto", "pper"]``,
but not ``["stop", "at"]`` (an occurrence that ended earlier was already checked). ``MaxTimeCriteria`` stops every
row once the run has taken ``max_time`` seconds, counted from before the prompt's forward pass.

How each strategy applies them follows the reference: greedy and sample end the row; beam search and beam-sample
treat a continuation that stops like one that ends with eos (it may enter the finished pool); diverse and
constrained search stop only when every row stops, then offer their running beams to the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Criteria", "StopReason", "StopStrings"]

#: Why one row stopped besides eos and the budget.
StopReason = Literal["stop_string", "max_time"]


@dataclass(frozen=True)
class StopStrings:
    """A row stops when one of ``strings`` occurs in its text and ends inside its last token.

    >>> texts = {1: "The", 2: " st", 3: "opped", 4: " at"}
    >>> stop = StopStrings(("stop",), texts.__getitem__)
    >>> stop.hit([1, 2, 3]), stop.hit([1, 2, 3, 4])
    (True, False)
    """

    strings: tuple[str, ...]
    token_text: Callable[[int], str]

    def hit(self, ids: Sequence[int]) -> bool:
        """Whether the row ``ids`` (prompt included, its newest token last) completes a stop string now."""
        if not ids:
            return False
        longest = max(len(s) for s in self.strings)  # every token holds a character: that many tokens suffice
        before = "".join(self.token_text(t) for t in ids[-longest:-1])
        text = before + self.token_text(ids[-1])
        for s in self.strings:
            found = text.find(s, max(0, len(before) - len(s) + 1))  # an occurrence that ends in the last token
            if found != -1:
                return True
        return False


@dataclass(frozen=True)
class Criteria:
    """The stopping criteria of one run: its stop strings (if any) and its deadline (a ``perf_counter`` reading,
    set when the run starts; ``None``: no time limit)."""

    stop_strings: StopStrings | None = None
    deadline: float | None = None

    def time_up(self) -> bool:
        """Whether the run has used its time."""
        return self.deadline is not None and time.perf_counter() > self.deadline

    def reason(self, ids: Sequence[int], time_up: bool) -> StopReason | None:
        """Why row ``ids`` (prompt included, newest token last) stops now, ``None`` when it does not
        (``time_up``: the run's time has run out, asked once per step)."""
        if self.stop_strings is not None and self.stop_strings.hit(ids):
            return "stop_string"
        return "max_time" if time_up else None
