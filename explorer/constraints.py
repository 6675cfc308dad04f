"""Constraints for constrained beam search, tracked per hypothesis as immutable values."""

# The tracker reproduces transformers 4.56.2 (`ConstraintListState` and friends), quirks included:
# a token that breaks the constraint in progress is not retried against the pending ones, and the
# broken constraint goes to the END of the pending list, whose order decides which constraint a
# token advances. Every transition returns a new state; nothing is mutated.

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple, TypedDict

from explorer.errors import ParameterError

__all__ = [
    "Advance",
    "AnyOf",
    "Constraint",
    "ConstraintLine",
    "ConstraintState",
    "Phrase",
    "Progress",
    "advance_candidates",
    "is_satisfied_by",
]

TokenIds = tuple[int, ...]


def _check_ids(name: str, ids: Iterable[int]) -> TokenIds:
    try:
        ids = tuple(ids)
    except TypeError:
        raise ParameterError(name, ids, "a non-empty sequence of token ids") from None
    if not ids:
        raise ParameterError(name, ids, "a non-empty sequence of token ids")
    if any(not isinstance(t, int) or isinstance(t, bool) or t < 0 for t in ids):
        raise ParameterError(name, ids, "token ids that are integers >= 0")
    return ids


@dataclass(frozen=True)
class Phrase:
    """These tokens must appear, in this order and contiguously.

    >>> Phrase((4, 4, 5)).seqlen
    3
    """

    token_ids: TokenIds
    text: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_ids", _check_ids("token_ids", self.token_ids))

    @property
    def options(self) -> tuple[TokenIds, ...]:
        """The phrase as a one-option disjunction (the two kinds share the matching code)."""
        return (self.token_ids,)

    @property
    def seqlen(self) -> int:
        """Number of tokens needed to fulfil the phrase."""
        return len(self.token_ids)


@dataclass(frozen=True)
class AnyOf:
    """One of these token sequences must appear; none may be a prefix of (or equal to) another.

    >>> AnyOf(((5, 6), (5, 7, 8))).seqlen
    3
    """

    options: tuple[TokenIds, ...]
    texts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        try:
            options = tuple(_check_ids("options", option) for option in self.options)
        except TypeError:
            raise ParameterError("options", self.options, "a list of token sequences") from None
        if not options:
            raise ParameterError("options", options, "a non-empty list of token sequences")
        # The reference counts the leaves of the options' trie and rejects the list when there are
        # fewer leaves than options: exactly when one option is a prefix of, or equal to, another.
        for i, a in enumerate(options):
            for j, b in enumerate(options):
                if i != j and b[: len(a)] == a:
                    raise ParameterError("options", options, "no option that is a prefix of another")
        object.__setattr__(self, "options", options)
        if self.texts is not None:
            texts = tuple(self.texts)
            if len(texts) != len(options):
                raise ParameterError("texts", texts, f"one text per option ({len(options)})")
            object.__setattr__(self, "texts", texts)

    @property
    def seqlen(self) -> int:
        """Length of the longest option (the reference's `seqlen`, used by the bank)."""
        return max(len(option) for option in self.options)


Constraint = Phrase | AnyOf


def _next_tokens(constraint: Constraint, prefix: Sequence[int]) -> TokenIds:
    """Tokens extending `prefix` along some option, in the reference trie's (insertion) order."""
    n = len(prefix)
    found: dict[int, None] = {}
    for option in constraint.options:
        if len(option) > n and all(option[k] == prefix[k] for k in range(n)):
            found.setdefault(option[n])
    return tuple(found)


class ConstraintLine(TypedDict):
    """One constraint's line in `ConstraintState.progress()`."""

    status: Literal["complete", "in_progress", "pending"]
    matched: int
    matched_tokens: list[int]
    length: int


class Progress(TypedDict):
    """Plain-values description of a `ConstraintState`, for the trace."""

    constraints: list[ConstraintLine]
    pending_order: list[int]
    bank: int
    completed: bool


@dataclass(frozen=True)
class ConstraintState:
    """Progress of one hypothesis through a list of constraints (the reference's `ConstraintListState`).

    `complete` lists constraint indices in completion order (`complete_tokens` the tokens that
    completed each); `in_progress` is the index being matched, `matched` its matched prefix;
    `pending` is the untouched constraints in the reference's order.

    >>> s = ConstraintState.initial((Phrase((4, 5)),)).add(4)
    >>> (s.in_progress, s.matched, s.pending, s.bank)
    (0, (4,), (), 1)
    """

    constraints: tuple[Constraint, ...]
    complete: tuple[int, ...] = ()
    complete_tokens: tuple[TokenIds, ...] = ()
    in_progress: int | None = None
    matched: TokenIds = ()
    pending: tuple[int, ...] = ()
    completed: bool = False

    @classmethod
    def initial(cls, constraints: Sequence[Constraint]) -> ConstraintState:
        """The state before any token: every constraint pending, in the given order.

        >>> ConstraintState.initial((Phrase((1,)), AnyOf(((2,), (3,))))).advance_tokens()
        (1, 2, 3)
        """
        constraints = tuple(constraints)
        if not constraints or not all(isinstance(c, Phrase | AnyOf) for c in constraints):
            raise ParameterError("constraints", constraints, "a non-empty list of Phrase / AnyOf")
        return cls(constraints, pending=tuple(range(len(constraints))))

    @classmethod
    def from_tokens(cls, constraints: Sequence[Constraint], token_ids: Iterable[int]) -> ConstraintState:
        """Replay `token_ids` from the initial state (the reference's `reset`), stopping once completed.

        >>> ConstraintState.from_tokens((Phrase((4, 4, 5)),), (4, 4, 4, 5)).completed
        False
        """
        state = cls.initial(constraints)
        for token in token_ids:
            state = state.add(token)
            if state.completed:
                break
        return state

    @property
    def max_seqlen(self) -> int:
        """Longest `seqlen` over the constraints: the bank's unit."""
        return max(c.seqlen for c in self.constraints)

    @property
    def bank(self) -> int:
        """The reference's `get_bank()`: credit for complete constraints and the one in progress.

        >>> ConstraintState.from_tokens((Phrase((1, 2)), Phrase((3,))), (3, 1)).bank
        3
        """
        bank = len(self.complete) * self.max_seqlen
        if self.in_progress is not None:
            remaining = self.constraints[self.in_progress].seqlen - len(self.matched)
            bank += self.max_seqlen - remaining
        return bank

    def add(self, token: int) -> ConstraintState:
        """The state after generating `token` (the reference's `add`); a completed state never changes.

        >>> s = ConstraintState.initial((Phrase((4, 4, 5)),)).add(4).add(4).add(4)
        >>> (s.in_progress, s.pending)
        (None, (0,))
        """
        if self.completed:
            return self
        if self.in_progress is not None:
            index = self.in_progress
            if token not in _next_tokens(self.constraints[index], self.matched):
                # Broken: back to the end of the pending list; this token is not retried on the others.
                return replace(self, in_progress=None, matched=(), pending=(*self.pending, index))
            return self._stepped(index, (*self.matched, token), self.pending)
        for position, index in enumerate(self.pending):
            if token in _next_tokens(self.constraints[index], ()):
                rest = self.pending[:position] + self.pending[position + 1 :]
                return self._stepped(index, (token,), rest)
        return self

    def _stepped(self, index: int, matched: TokenIds, pending: tuple[int, ...]) -> ConstraintState:
        if _next_tokens(self.constraints[index], matched):
            return replace(self, in_progress=index, matched=matched, pending=pending)
        return replace(
            self,
            complete=(*self.complete, index),
            complete_tokens=(*self.complete_tokens, matched),
            in_progress=None,
            matched=(),
            pending=pending,
            completed=not pending,
        )

    def advance_tokens(self) -> TokenIds:
        """Tokens that make progress (the reference's `advance()`, `()` for its `None`).

        >>> ConstraintState.initial((AnyOf(((5, 6), (5, 7))),)).add(5).advance_tokens()
        (6, 7)
        """
        if self.in_progress is not None:
            return _next_tokens(self.constraints[self.in_progress], self.matched)
        return tuple(t for index in self.pending for t in _next_tokens(self.constraints[index], ()))

    def progress(self) -> Progress:
        """Per-constraint status, matched count and length, plus the bank, as plain values.

        >>> ConstraintState.initial((Phrase((4, 5)),)).add(4).progress()["constraints"][0]["status"]
        'in_progress'
        """
        lines: list[ConstraintLine] = []
        for index, constraint in enumerate(self.constraints):
            status: Literal["complete", "in_progress", "pending"] = "pending"
            tokens: TokenIds = ()
            if index in self.complete:
                status, tokens = "complete", self.complete_tokens[self.complete.index(index)]
            elif index == self.in_progress:
                status, tokens = "in_progress", self.matched
            lines.append(
                {
                    "status": status,
                    "matched": len(tokens),
                    "matched_tokens": list(tokens),
                    "length": constraint.seqlen,
                }
            )
        return {
            "constraints": lines,
            "pending_order": list(self.pending),
            "bank": self.bank,
            "completed": self.completed,
        }


class Advance(NamedTuple):
    """A token that advances a constraint, the (true) state after it, and the bank the reference sorts it by."""

    token: int
    state: ConstraintState
    bank: int


def advance_candidates(state: ConstraintState) -> tuple[Advance, ...]:
    """What `step_sentence_constraint` builds for one beam: each advance token, its state and bank.

    Every advance token is listed (the caller drops duplicate sequences, as the reference does);
    `state` is the true next state, while `bank` reproduces the reference's aliasing (see below).

    >>> s = ConstraintState.initial((AnyOf(((5, 6), (5, 7))),)).add(5)
    >>> [(c.token, c.bank, c.state.bank) for c in advance_candidates(s)]
    [(6, 2, 2), (7, 0, 2)]
    """
    if state.completed:
        return ()
    tokens = state.advance_tokens()
    if state.in_progress is None:
        # Pending constraints are fresh copies in the reference: each candidate is independent.
        return tuple(Advance(t, nxt, nxt.bank) for t in tokens for nxt in (state.add(t),))
    # Quirk: the reference does `new = advance_state.copy(stateful=True); new.add(token)` per token.
    # For a DisjunctiveConstraint in progress the copy SHARES the `current_seq` list, so each `add`
    # sees the tokens appended by the earlier copies (a sibling then usually breaks, resetting that
    # copy), and the copies still holding the list are banked on its final length, because all
    # `get_bank()` calls come after the loop. A phrase in progress has one advance token, so this
    # simulation reduces to the plain transition. Only that one bank sort is affected: the next step
    # rebuilds every state from the full token sequence (`reset`).
    constraint, unit, done = state.constraints[state.in_progress], state.max_seqlen, len(state.complete)
    shared = list(state.matched)
    banks: list[int | None] = []  # None: still holds the shared list, banked after the loop
    for token in tokens:
        if token not in _next_tokens(constraint, shared):
            banks.append(done * unit)
            continue
        shared.append(token)
        banks.append(None if _next_tokens(constraint, shared) else (done + 1) * unit)
    held = done * unit + unit - (constraint.seqlen - len(shared))
    return tuple(
        Advance(t, state.add(t), held if bank is None else bank) for t, bank in zip(tokens, banks, strict=True)
    )


def is_satisfied_by(constraints: Sequence[Constraint], token_ids: Sequence[int]) -> bool:
    """The plain truth: every constraint has (one of) its sequences contiguously in `token_ids`.

    >>> is_satisfied_by((Phrase((4, 4, 5)),), (4, 4, 4, 5))
    True
    """
    ids = tuple(token_ids)

    def occurs(option: TokenIds) -> bool:
        n = len(option)
        return any(ids[k : k + n] == option for k in range(len(ids) - n + 1))

    return all(any(occurs(option) for option in c.options) for c in constraints)
