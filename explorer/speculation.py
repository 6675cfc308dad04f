"""Assisted decoding's rounds as numbers: a tidy frame (one row per drafted token) and the run's totals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from explorer.trace import Trace

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DRAFTED_COLUMNS", "SpeculationStats", "drafted_frame", "speculation_stats"]

#: Columns of :func:`drafted_frame` and their dtypes, in order.
DRAFTED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("step", "int64"), ("position", "int64"), ("source", "string"), ("token_id", "int64"), ("text", "string"),
    ("draft_prob", "Float64"), ("target_prob", "float64"), ("ratio", "Float64"), ("draw", "Float64"),
    ("verdict", "string"), ("reason", "string"), ("draft_length", "int64"), ("next_draft_length", "int64"),
    ("draft_ms", "float64"), ("target_ms", "float64"),
)


@dataclass(frozen=True)
class SpeculationStats:
    """A run of assisted decoding in totals: target forwards, tokens generated, tokens drafted and accepted, and
    where the time went."""

    forwards: int
    tokens: int
    drafted: int
    accepted: int
    draft_ms: float
    target_ms: float

    @property
    def tokens_per_forward(self) -> float:
        """Tokens gained per target forward (1 without a draft)."""
        return self.tokens / self.forwards if self.forwards else 0.0

    @property
    def acceptance(self) -> float:
        """Share of drafted tokens the target accepted (0 when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else 0.0


def speculation_stats(trace: Trace) -> SpeculationStats | None:
    """The totals of an assisted trace (``None`` for a trace of another strategy).

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [1, 2, 1, 2, 1], "assisted",
    ...                     prompt_lookup_num_tokens=3, max_new_tokens=6)
    >>> stats = speculation_stats(t)
    >>> stats.forwards == len(t.steps), stats.tokens == len(t.results[0].token_ids)
    (True, True)
    """
    rounds = [s for s in trace.steps if s.speculation is not None]
    if not rounds:
        return None
    drafted = sum(len(s.speculation.drafted) for s in rounds if s.speculation)
    accepted = sum(s.speculation.accepted for s in rounds if s.speculation)
    tokens = sum(len(s.hypotheses) for s in rounds)
    return SpeculationStats(len(rounds), tokens, drafted, accepted,
                            sum(s.speculation.draft_ms for s in rounds if s.speculation),
                            sum(s.forward_ms for s in rounds))


def drafted_frame(trace: Trace) -> pd.DataFrame:
    """One row per drafted token of every round: its probabilities under draft and target, ``p / q``, the draw,
    the verdict and why, and the round's draft lengths and times (empty for a trace of another strategy)."""
    import pandas as pd

    rows = []
    for step in trace.steps:
        spec = step.speculation
        if spec is None:
            continue
        for i, d in enumerate(spec.drafted):
            ratio = None if not d.draft_prob else d.target_prob / d.draft_prob
            rows.append((step.index, i, spec.source, d.token_id, d.text, d.draft_prob, d.target_prob, ratio, d.draw,
                         d.verdict, d.reason, spec.draft_length, spec.next_draft_length, spec.draft_ms,
                         step.forward_ms))
    columns = [name for name, _ in DRAFTED_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype(dict(DRAFTED_COLUMNS))
