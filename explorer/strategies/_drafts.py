"""Candidate sources of assisted decoding: a draft model with its own cache, or n-gram lookup in the text so far.

Each follows the reference (transformers 5.x ``AssistedCandidateGenerator`` and ``PromptLookupCandidateGenerator``)
in what it proposes and when: the same draft lengths, the same stops, the same forwards of the draft model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import torch

from explorer.processors.base import Context, run_processors
from explorer.processors.numeric import MASKED_FLOOR
from explorer.strategies.base import Setup

__all__ = ["Draft", "DraftModel", "ModelDraft", "PromptLookup", "Source", "lookup"]


@dataclass(frozen=True)
class Draft:
    """One round's proposal: the drafted tokens, the draft's processed scores for each (``q = softmax`` of a row;
    ``None`` for prompt lookup, which has no distribution), the length the schedule asked for, and the time taken."""

    tokens: tuple[int, ...]
    scores: torch.Tensor | None  # [len(tokens), vocab]
    asked: int
    ms: float


class Source(Protocol):
    """Where drafts come from: ``propose`` a draft after ``ids`` (prompt included), then learn how it went."""

    name: str

    @property
    def length(self) -> int:
        """The draft length it will ask for next."""
        ...

    def propose(self, ids: list[int]) -> Draft:
        """The draft for the text ``ids``."""
        ...

    def update(self, matches: int, drafted: int) -> None:
        """After a round: ``matches`` of the ``drafted`` tokens went into the text."""
        ...


class DraftModel(Protocol):
    """What a draft model must do: feed tokens to its own cache in one forward, and take positions back out."""

    def extend(self, tokens: list[int], cache: object | None, keep: int) -> tuple[torch.Tensor, object]:
        """Float32 logits ``[keep, vocab]`` of the last ``keep`` positions after ``tokens``, and the cache."""
        ...

    def crop(self, cache: object, length: int) -> object:
        """The cache holding only its first ``length`` positions."""
        ...


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class ModelDraft:
    """A draft model (``assistant_model``, or the target's first layers: ``assistant_early_exit``) with its own KV
    cache, drafting as the reference's assistant does.

    Each round it takes back its cache to all but the last two tokens of the text and feeds those two in one forward
    (the reference's bookkeeping, which makes its logits, and so its drafts, the same), then one token at a time.
    It drafts with the target's processors (and warpers when sampling) until it has drafted ``length`` tokens, the
    budget is one token short, it drafted eos, or its probability of its token fell below
    ``assistant_confidence_threshold``. The ``heuristic`` schedules lengthen the draft by 2 after a fully accepted
    round and shorten it by 1 otherwise (each run starts from ``num_assistant_tokens``: a trace is reproducible).
    """

    def __init__(self, model: DraftModel, setup: Setup, sampling: bool, name: str = "assistant_model") -> None:
        p = setup.params
        self.model, self.setup, self.sampling, self.name = model, setup, sampling, name
        self.length = p.num_assistant_tokens
        self.schedule = p.num_assistant_tokens_schedule
        self.threshold = p.assistant_confidence_threshold
        self.cache: object | None = None
        self.allowed: torch.Tensor | None = None  # [vocab] bool: the only tokens it may draft (None: all)

    def propose(self, ids: list[int]) -> Draft:
        """Draft after ``ids``: tokens and the draft's processed scores for each."""
        clock, asked = time.perf_counter(), self.length
        budget = min(asked, self.setup.max_length - len(ids) - 1)
        if budget <= 0:
            return Draft((), None, asked, _ms(clock))
        tokens, rows = self.draft(ids, self.resume(ids, len(ids) - 2), budget)
        return Draft(tuple(tokens), torch.stack(rows) if rows else None, asked, _ms(clock))

    def draft(self, ids: list[int], logits: torch.Tensor, budget: int) -> tuple[list[int], list[torch.Tensor]]:
        """Draft up to ``budget`` tokens after ``ids`` (in the draft's vocabulary), starting from the draft's
        ``logits`` after them: the tokens and the processed scores of each."""
        tokens: list[int] = []
        rows: list[torch.Tensor] = []
        while True:
            if self.allowed is not None:
                logits = logits.masked_fill(~self.allowed, -math.inf)
            seq = torch.tensor([ids + tokens], dtype=torch.long)
            processed = run_processors(self.setup.processors, seq, logits[None], Context(self.setup.prompt_length))
            row = processed[-1][0]  # [vocab]
            if bool((row <= MASKED_FLOOR).all()):
                break  # nothing may follow: the draft ends here (the target says why, if it gets there)
            token = self._pick(row)
            tokens.append(token)
            rows.append(row)
            if len(tokens) >= budget or token in self.setup.eos_token_ids or self._unsure(row, token):
                break
            out, self.cache = self.model.extend([token], self.cache, 1)
            logits = out[0]
        return tokens, rows

    def resume(self, ids: list[int], held: int) -> torch.Tensor:
        """The draft's logits after ``ids``: a prefill the first time, else its cache cut to ``held`` positions and
        the rest fed in one forward."""
        if self.cache is None:
            out, self.cache = self.model.extend(ids, None, 1)
        else:
            self.cache = self.model.crop(self.cache, held)
            out, self.cache = self.model.extend(ids[held:], self.cache, 1)
        return out[0]

    def _pick(self, row: torch.Tensor) -> int:
        """The drafted token: the argmax of the processed scores, or a draw from them when sampling."""
        if self.sampling:
            return int(torch.multinomial(torch.softmax(row, dim=-1), 1, generator=self.setup.generator))
        return int(torch.argmax(row))

    def _unsure(self, row: torch.Tensor, token: int) -> bool:
        """The reference's confidence stop: the draft's probability of its token is below the threshold."""
        return self.threshold > 0 and float(torch.softmax(row, dim=-1)[token]) < self.threshold

    def update(self, matches: int, drafted: int) -> None:
        """The schedule: ``heuristic`` and ``heuristic_transient`` add 2 after a fully accepted draft, else take 1."""
        if self.schedule in ("heuristic", "heuristic_transient"):
            self.length = self.length + 2 if matches == drafted else max(1, self.length - 1)


class PromptLookup:
    """Prompt lookup (``prompt_lookup_num_tokens``): the tokens that followed the last n-gram's earliest earlier
    occurrence in the text, trying n = ``max_matching_ngram_size`` (2 when unset) down to 1."""

    name = "prompt_lookup"

    def __init__(self, setup: Setup) -> None:
        p = setup.params
        self.setup = setup
        self.length = int(p.prompt_lookup_num_tokens or 0)
        self.ngram = p.max_matching_ngram_size or 2

    def propose(self, ids: list[int]) -> Draft:
        """The looked-up continuation of ``ids`` (possibly none)."""
        clock = time.perf_counter()
        tokens = lookup(ids, self.length, self.ngram, self.setup)
        return Draft(tokens, None, self.length, _ms(clock))

    def update(self, matches: int, drafted: int) -> None:
        """Prompt lookup keeps its length."""


def lookup(ids: list[int], count: int, ngram: int, setup: Setup) -> tuple[int, ...]:
    """The reference's n-gram lookup: for n from ``ngram`` down to 1, the first earlier occurrence of the last n
    tokens that some tokens follow gives up to ``count`` of them; tokens the processors would mask (on uniform
    scores) cut the draft there (nothing left: the next occurrence is tried), and so does eos.

    >>> from explorer.strategies import make_params
    >>> setup = Setup((1, 2, 3, 1, 2), make_params("greedy", max_new_tokens=5), (), (), (0,), 0, 9, str, str)
    >>> lookup([1, 2, 3, 1, 2], 3, 2, setup)
    (3, 1, 2)
    """
    length = len(ids)
    if setup.max_length == length + 1:
        return ()
    for size in range(min(ngram, length - 1), 0, -1):
        tail = ids[-size:]
        for start in range(length - size + 1):
            if ids[start : start + size] != tail:
                continue
            begin, end = start + size, min(start + size + count, length, setup.max_length)
            if begin >= end:
                continue
            chosen = _allowed(ids, ids[begin:end], setup)
            if not chosen:
                continue
            eos = [i for i, t in enumerate(chosen) if t in setup.eos_token_ids]
            return tuple(chosen[: eos[0]] if eos else chosen)
    return ()


def _allowed(ids: list[int], chosen: list[int], setup: Setup) -> list[int]:
    """``chosen`` up to the first token the processors mask after ``ids`` and the tokens before it (uniform
    scores, as the reference checks)."""
    uniform = torch.ones(1, setup.vocab_size)
    context = Context(setup.prompt_length)
    for i, token in enumerate(chosen):
        seq = torch.tensor([ids + chosen[:i]], dtype=torch.long)
        if float(run_processors(setup.processors, seq, uniform, context)[-1][0, token]) <= MASKED_FLOOR:
            return chosen[:i]
    return chosen
