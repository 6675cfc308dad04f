"""Allowed text: a list of words or a regular expression over the generated text, turned into the reference's
``prefix_allowed_tokens_fn`` (what the command line and the app offer in place of a Python function).

The rule: the generated text (the new tokens decoded, prompt excluded) must always be the beginning of a string that
the expression matches in full (``regex`` syntax, a superset of Python's ``re``). At each step a token is allowed
when the text so far plus the token's text can still be completed to a full match, and eos is allowed when the
text so far already matches in full. Tokens that add no text (special tokens) or only part of a character (a
byte-level piece that is not whole UTF-8) are never allowed: the expression sees text, not bytes. A word list
``("yes", "no")`` is the expression ``\\s*(?:yes|no)(?:\\s+(?:yes|no))*``: those words, separated by whitespace.

In a branch forked from a trace the prompt holds the fixed tokens, so the rule applies to what follows the fork.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import regex
import torch

from explorer.models.base import TokenizerLike

__all__ = ["AllowedText", "allowed_text", "words_pattern"]


def words_pattern(words: Sequence[str]) -> str:
    """The expression of a word list: the words, separated by whitespace (leading whitespace allowed).

    >>> words_pattern(["yes", "no"])
    '\\\\s*(?:yes|no)(?:\\\\s+(?:yes|no))*'
    """
    alternatives = "|".join(regex.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))
    return rf"\s*(?:{alternatives})(?:\s+(?:{alternatives}))*"


@dataclass(frozen=True)
class _Pieces:
    """Every token's text after an empty text (``first``) and after some text (``later``), sorted for the walk.

    A table model's tokens are words joined by spaces, so its pieces differ (``"dog"`` / ``" dog"``); a byte-level
    tokenizer's are equal. Tokens that add nothing, or part of a character, are left out.
    """

    first: tuple[tuple[str, int], ...]
    later: tuple[tuple[str, int], ...]


_PIECES: weakref.WeakKeyDictionary[Any, _Pieces] = weakref.WeakKeyDictionary()
#: Texts whose allowed tokens a rule remembers (a rule lives as long as its run).
_CACHED = 64


def _pieces(tokenizer: TokenizerLike, vocab_size: int, eos: tuple[int, ...]) -> _Pieces:
    """The tokenizer's pieces, computed once per tokenizer (a decode of every token, about a second for SmolLM2)."""
    cached = _PIECES.get(tokenizer)
    if cached is not None:
        return cached
    anchor = next(t for t in range(vocab_size) if t not in eos and _whole(tokenizer.decode([t])))
    base = tokenizer.decode([anchor])
    first, later = [], []
    for token in range(vocab_size):
        if token in eos:
            continue
        alone, after = tokenizer.decode([token]), tokenizer.decode([anchor, token])[len(base):]
        if _whole(alone):
            first.append((alone, token))
        if _whole(after):
            later.append((after, token))
    pieces = _Pieces(tuple(sorted(first)), tuple(sorted(later)))
    _PIECES[tokenizer] = pieces
    return pieces


def _whole(text: str) -> bool:
    """Text that a token can add: not empty, and no replacement character (a piece of a multi-byte character)."""
    return bool(text) and "\ufffd" not in text


@dataclass(frozen=True, eq=False)
class AllowedText:
    """A ``prefix_allowed_tokens_fn`` for the text rule of ``pattern`` (see the module's docstring).

    >>> import explorer
    >>> toy = explorer.load_model("toy:how-to-generate")
    >>> fn = allowed_text(toy.tokenizer, toy.info.vocab_size, toy.info.eos_token_ids, 1, words=["dog", "has"])
    >>> [toy.tokenizer.token_text(t) for t in fn(0, torch.tensor(toy.tokenizer.encode("The")))]
    ['dog', 'has']
    """

    pattern: str
    pieces: _Pieces
    prompt_length: int
    eos_token_ids: tuple[int, ...]
    decode: Any = field(repr=False)
    compiled: Any = field(init=False, repr=False)
    _seen: dict[str, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", regex.compile(self.pattern))

    def __call__(self, batch_id: int, ids: torch.Tensor) -> list[int]:
        text = self.decode([t for t in ids[self.prompt_length:].tolist() if t not in self.eos_token_ids])
        if text not in self._seen:  # beams share their texts; a step's rows often ask for the same one
            if len(self._seen) >= _CACHED:
                self._seen.clear()
            self._seen[text] = self._allowed(text)
        return list(self._seen[text])

    def _allowed(self, text: str) -> tuple[int, ...]:
        """Token ids allowed after ``text``: eos when it matches in full, and every token it can still grow by."""
        items = self.pieces.later if text else self.pieces.first
        keys = [piece for piece, _ in items]
        allowed = list(self.eos_token_ids) if self.compiled.fullmatch(text) is not None else []
        stack = [(0, len(items), 0)]  # ranges of ``items`` sharing their first ``depth`` characters, all viable
        while stack:
            lo, hi, depth = stack.pop()
            while lo < hi and len(keys[lo]) == depth:  # tokens that end here: their whole text is viable
                allowed.append(items[lo][1])
                lo += 1
            while lo < hi:
                stem = keys[lo][: depth + 1]
                end = bisect.bisect_left(keys, stem[:-1] + chr(ord(stem[-1]) + 1), lo, hi)
                if self.compiled.fullmatch(text + stem, partial=True) is not None:
                    stack.append((lo, end, depth + 1))
                lo = end
        return tuple(sorted(allowed))


def allowed_text(
    tokenizer: TokenizerLike, vocab_size: int, eos_token_ids: tuple[int, ...], prompt_length: int, *,
    words: Sequence[str] = (), pattern: str | None = None,
) -> AllowedText:
    """The ``prefix_allowed_tokens_fn`` of a word list or of a regular expression (exactly one of them)."""
    if (pattern is None) == (not words):
        raise ValueError("allowed_text needs either words or a pattern")
    return AllowedText(pattern if pattern is not None else words_pattern(words),
                       _pieces(tokenizer, vocab_size, eos_token_ids), prompt_length, eos_token_ids, tokenizer.decode)
