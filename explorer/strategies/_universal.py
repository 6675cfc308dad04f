"""Universal assisted decoding: a draft model with another tokenizer, re-encoded through text each round.

As the reference (transformers 5.x ``AssistedCandidateGeneratorDifferentTokenizers``) does it: the target's text is
decoded and encoded with the draft's tokenizer (after the first round only a look-behind window of it, aligned with
the draft's previous tokens by the longest diagonal of equal tokens), the draft model drafts in its own vocabulary,
and its tokens are decoded and encoded with the target's tokenizer the same way, giving the drafted target tokens.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import torch
from transformers import PreTrainedTokenizerBase

from explorer.models.base import Verifier
from explorer.models.hf import quiet_warnings
from explorer.models.tokenizer import Tokenizer
from explorer.strategies._drafts import Draft, ModelDraft
from explorer.strategies.base import Setup

__all__ = ["LOOKBEHIND", "Reencoded", "Translated", "align", "hf_tokenizer", "shared_tokens"]

#: The reference's ``target_lookbehind`` and ``assistant_lookbehind`` (both 10 by default).
LOOKBEHIND = 10


class _HasTokenizer(Protocol):
    @property
    def tokenizer(self) -> object: ...


def hf_tokenizer(model: _HasTokenizer) -> PreTrainedTokenizerBase | None:
    """The transformers tokenizer behind ``model``'s, or ``None`` (a toy table's words cannot be re-encoded as the
    reference does)."""
    tokenizer = model.tokenizer
    return tokenizer.hf if isinstance(tokenizer, Tokenizer) else None


def _tail(ids: list[int], count: int) -> list[int]:
    """The last ``count`` of ``ids``, all of them for 0 (as a tensor's ``[:, -count:]`` reads)."""
    return ids[-count:] if count > 0 else list(ids)


def align(old: list[int], new: list[int]) -> tuple[int, list[int], list[int]] | None:
    """Where ``new`` (a re-encoded window) continues ``old``: the longest run of equal tokens on a diagonal of the
    ``new x old`` comparison (the first in row order among the longest), read as the reference reads it: the
    number of ``old``'s last tokens to replace, the tokens that are new, and the replacements. ``None`` when no token
    of ``new`` is in ``old``.

    >>> align([5, 6, 7], [6, 7, 8, 9])
    (0, [8, 9], [])
    >>> align([5, 6, 7], [6, 4, 8])
    (1, [8], [4])
    """
    best: tuple[int, int, int] | None = None  # (length, row, column)
    for i, token in enumerate(new):
        for j, other in enumerate(old):
            if token != other or (i > 0 and j > 0 and new[i - 1] == old[j - 1]):
                continue  # not equal, or inside a run that started earlier
            length = 1
            while i + length < len(new) and j + length < len(old) and new[i + length] == old[j + length]:
                length += 1
            if best is None or length > best[0]:
                best = (length, i, j)
    if best is None:
        return None
    length, row, column = best
    start, replace = row + length, len(old) - (column + length)
    return replace, new[start + replace :], new[start : start + replace]


class Reencoded:
    """A draft model with another tokenizer for greedy verification (universal assisted decoding), drafting as the
    reference's does.

    Each round the target's text goes to the draft's vocabulary through text (:meth:`to_draft`), the draft model
    drafts there with its own cache and schedule (a :class:`ModelDraft`: the same stops and lengths), and its tokens
    come back through text (:meth:`to_target`). The drafted target tokens have no draft probabilities: the draft's
    are over its own vocabulary, and a target token may be part of a draft token or span several.
    """

    name = "assistant_model (re-encoded)"

    def __init__(self, model: Verifier, target: PreTrainedTokenizerBase, draft: PreTrainedTokenizerBase,
                 setup: Setup) -> None:
        self.model, self.drafter, self.setup = model, ModelDraft(model, setup, False), setup
        self.target, self.draft_tokenizer = target, draft
        self.previous: list[int] | None = None  # the draft's tokens after the last round (its draft included)
        self.previous_length = 0  # the target's text length at the last round

    @property
    def length(self) -> int:
        """The draft length it will ask for next."""
        return self.drafter.length

    def propose(self, ids: list[int]) -> Draft:
        """The drafted target tokens after the target's text ``ids``."""
        clock, asked = time.perf_counter(), self.drafter.length
        draft_ids, remove = self.to_draft(ids)
        if not draft_ids:  # the text is only special tokens: nothing to draft from (the target takes a plain step)
            return Draft((), None, asked, (time.perf_counter() - clock) * 1000.0)
        held = max(0, len(draft_ids) - 2 - remove)  # the reference's cache crop (never longer than the cache)
        if self.drafter.cache is not None:
            held = min(held, self.model.cache_length(self.drafter.cache))
        tokens, _ = self.drafter.draft(draft_ids, self.drafter.resume(draft_ids, held), asked)
        target_ids = self.to_target(ids, draft_ids, draft_ids + tokens)
        self.previous, self.previous_length = draft_ids + tokens, len(ids)
        return Draft(tuple(target_ids[len(ids) :]), None, asked, (time.perf_counter() - clock) * 1000.0)

    def update(self, matches: int, drafted: int) -> None:
        """The schedule, counted in target tokens (as the reference counts them)."""
        self.drafter.update(matches, drafted)

    def _recode(self, ids: list[int], source: PreTrainedTokenizerBase, destination: PreTrainedTokenizerBase,
                ) -> list[int]:
        """``ids`` decoded by ``source`` (special tokens dropped, spaces cleaned up) and encoded by ``destination``
        (with its special tokens, if it adds any)."""
        with quiet_warnings():  # transformers 5 warns that it ignores the clean-up for BPE tokenizers
            text = source.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)
            return [int(t) for t in destination(text, add_special_tokens=True)["input_ids"]]

    def to_draft(self, ids: list[int]) -> tuple[list[int], int]:
        """The target's text ``ids`` in the draft's vocabulary, and how many of the draft's cached positions it
        replaced: the whole text re-encoded at first (and while it is within the look-behind), later the text from
        ``LOOKBEHIND`` tokens before the last round's length, aligned with the draft's previous tokens."""
        if self.previous is None or self.previous_length <= LOOKBEHIND:
            self.previous_length = len(ids)
            return self._recode(ids, self.target, self.draft_tokenizer), 0
        window = self._recode(ids[self.previous_length - LOOKBEHIND :], self.target, self.draft_tokenizer)
        aligned = align(_tail(self.previous, len(window)), window)
        draft_ids = list(self.previous)
        if aligned is None:
            return draft_ids + window, 0
        replace, new, replacements = aligned
        if replace == 0 or not replacements:
            return draft_ids + new, 0
        draft_ids = draft_ids[: len(draft_ids) - (replace - len(replacements))]
        return [*draft_ids[: len(draft_ids) - len(replacements)], *replacements, *new], replace

    def to_target(self, ids: list[int], draft_ids: list[int], drafted: list[int]) -> list[int]:
        """The target's text followed by the drafted tokens in its vocabulary: the draft's tokens from
        ``LOOKBEHIND`` before its input's end re-encoded, aligned with the target's text, cut at the budget."""
        start = len(draft_ids) - LOOKBEHIND  # negative for a short input: its last tokens, as the reference slices
        window = self._recode(drafted[start:], self.draft_tokenizer, self.target)
        aligned = align(_tail(ids, len(window)), window)
        added = window if aligned is None else aligned[1]
        return [*ids, *added][: self.setup.max_length]


def shared_tokens(target: PreTrainedTokenizerBase, draft: PreTrainedTokenizerBase) -> dict[int, int]:
    """Draft id -> target id of every token both vocabularies spell the same (the draft's word-start sign read as
    the target's, when they differ), as the reference's ``AssistantToTargetTranslator`` pairs them.

    >>> from explorer.models.tiny_bpe import bpe_tokenizer
    >>> shared_tokens(bpe_tokenizer(), bpe_tokenizer())[2]
    2
    """
    target_vocab, draft_vocab = target.get_vocab(), draft.get_vocab()
    target_space, draft_space = _space_sign(target), _space_sign(draft)
    if target_space and draft_space and target_space != draft_space:
        draft_vocab = {(target_space + tok[1:] if tok.startswith(draft_space) else tok): i
                       for tok, i in draft_vocab.items()}
    return {i: target_vocab[tok] for tok, i in draft_vocab.items() if tok in target_vocab}


def _space_sign(tokenizer: PreTrainedTokenizerBase) -> str:
    """The first character of the token a lone space encodes to (``Ġ`` for byte-level BPE, ``▁`` for SentencePiece)."""
    ids = tokenizer(" ", add_special_tokens=False)["input_ids"]
    return str(tokenizer.convert_ids_to_tokens(ids)[0])[0] if ids else ""


class Translated:
    """A draft model with another tokenizer for speculative sampling, as the reference's
    ``UniversalSpeculativeDecodingGenerator`` does it: the draft drafts only tokens both vocabularies share (the same
    text), so each drafted token is one target token and its ``q`` is a distribution over the target's vocabulary;
    the text, re-encoded at first, then grows by the target's newest token (by the shared table, or through text).
    """

    name = "assistant_model (shared tokens)"

    def __init__(self, model: Verifier, target: PreTrainedTokenizerBase, draft: PreTrainedTokenizerBase,
                 setup: Setup) -> None:
        self.model, self.drafter, self.setup = model, ModelDraft(model, setup, True), setup
        self.target, self.draft_tokenizer = target, draft
        shared = {d: t for d, t in shared_tokens(target, draft).items()  # tokens both models have logits for
                  if d < model.info.vocab_size and t < setup.vocab_size}
        self.to_target, self.to_draft_id = shared, {t: d for d, t in shared.items()}
        allowed = torch.zeros(model.info.vocab_size, dtype=torch.bool)
        allowed[list(shared)] = True
        self.drafter.allowed = allowed
        self.previous: list[int] | None = None  # the draft's tokens after the last round (its draft included)
        self.with_draft = 0  # the target's text length with the last round's draft

    @property
    def length(self) -> int:
        """The draft length it will ask for next."""
        return self.drafter.length

    def propose(self, ids: list[int]) -> Draft:
        """The drafted target tokens after the target's text ``ids``, with the draft's scores on the target's
        vocabulary (``-inf`` off the shared tokens)."""
        clock, asked = time.perf_counter(), self.drafter.length
        draft_ids, added = self.to_draft(ids)
        budget = min(asked, self.setup.max_length - len(ids) - 1)
        if budget <= 0 or not draft_ids:
            return Draft((), None, asked, (time.perf_counter() - clock) * 1000.0)
        held = max(0, len(draft_ids) - 1 - added)
        if self.drafter.cache is not None:
            held = min(held, self.model.cache_length(self.drafter.cache))
        tokens, rows = self.drafter.draft(draft_ids, self.drafter.resume(draft_ids, held), budget)
        self.previous, self.with_draft = draft_ids + tokens, len(ids) + len(tokens)
        scores = torch.full((len(rows), self.setup.vocab_size), -math.inf)
        if rows:
            source = torch.tensor(list(self.to_target))
            scores[:, torch.tensor(list(self.to_target.values()))] = torch.stack(rows)[:, source]
        drafted = tuple(self.to_target[t] for t in tokens)
        return Draft(drafted, scores if rows else None, asked, (time.perf_counter() - clock) * 1000.0)

    def update(self, matches: int, drafted: int) -> None:
        """The schedule (see :class:`ModelDraft`)."""
        self.drafter.update(matches, drafted)

    def to_draft(self, ids: list[int]) -> tuple[list[int], int]:
        """The target's text in the draft's vocabulary and how many tokens are new: the whole text re-encoded at
        first; later the last round's draft without what the target refused, and the target's newest token."""
        if self.previous is None:
            fresh = self._encode(ids)
            return fresh, len(fresh)
        mapped = self.to_draft_id.get(ids[-1])
        fresh = [mapped] if mapped is not None else self._encode(ids[-1:])
        refused = self.with_draft + 1 - len(ids)
        kept = self.previous[: len(self.previous) - refused] if refused > 0 else self.previous
        return [*kept, *fresh], len(fresh)

    def _encode(self, ids: list[int]) -> list[int]:
        """Target ids through text into the draft's vocabulary (no special tokens added)."""
        with quiet_warnings():
            text = self.target.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)
            return [int(t) for t in self.draft_tokenizer(text, add_special_tokens=False)["input_ids"]]
