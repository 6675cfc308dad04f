"""The strategy contract (a small step function over a search state) and the helpers strategies share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import torch

from explorer.constraints import Constraint
from explorer.errors import ExplorerError
from explorer.params import DecodeParams
from explorer.processors.base import Context, Processor, run_processors
from explorer.processors.numeric import MASKED_FLOOR
from explorer.stopping import Criteria, StopReason
from explorer.strategies._entropy import row_entropies
from explorer.strategies._record import Scored, read_candidates
from explorer.trace import PLACEHOLDER, ConstraintProgress, Fate, Hypothesis, Result, Step

__all__ = [
    "ENDS",
    "NEG",
    "Ending",
    "FateInfo",
    "Fates",
    "Outcome",
    "Setup",
    "Strategy",
    "ending",
    "halted",
    "masked_rows",
    "nothing_to",
    "refate",
    "score_log_probs",
    "score_logits",
    "unpicked",
]


#: The reference's "impossible" score: placeholder beams and empty pool slots start here, and an ending kept as a
#: beam is pushed down by it (:data:`explorer.trace.PLACEHOLDER` is the threshold that recognises them in a trace).
NEG = -1.0e9

#: A candidate's fate, the reason in words, and the id of what it became (new hypothesis or finished entry).
FateInfo = tuple[Fate, str, int | None]
#: Fates of the candidates a step picked, by (row, token).
Fates = dict[tuple[int, int], FateInfo]


@dataclass(frozen=True)
class Setup:
    """Everything fixed for one run that a strategy needs besides its state and the logits."""

    prompt_ids: tuple[int, ...]
    params: DecodeParams
    processors: tuple[Processor, ...]
    constraints: tuple[Constraint, ...]
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    vocab_size: int
    token_text: Callable[[int], str]
    decode: Callable[[list[int]], str]
    generator: torch.Generator | None = None
    criteria: Criteria = field(default_factory=Criteria)

    def started(self, at: float) -> Setup:
        """This setup for a run that starts at ``at`` (a ``perf_counter`` reading): ``max_time`` counts from then."""
        if self.params.max_time is None:
            return self
        return replace(self, criteria=replace(self.criteria, deadline=at + self.params.max_time))

    @property
    def prompt_length(self) -> int:
        """Number of prompt tokens."""
        return len(self.prompt_ids)

    @property
    def max_length(self) -> int:
        """Prompt plus the new-token budget: the reference's ``max_length``."""
        return len(self.prompt_ids) + self.params.max_new_tokens

    @property
    def eos(self) -> torch.Tensor:
        """The eos ids as a tensor, for ``torch.isin``."""
        return torch.tensor(self.eos_token_ids, dtype=torch.long)


@dataclass(frozen=True)
class Outcome:
    """What one strategy step returns: the next state, the step's record and what to feed the model next.

    ``parents[i]`` is the cache row that row ``i`` continues (``None``: rows unchanged); ``tokens[i]`` the token
    it is fed. ``done`` ends the search (no further forward pass).
    """

    state: Any
    step: Step
    tokens: torch.Tensor | None
    parents: torch.Tensor | None
    done: bool


class Strategy(Protocol):
    """A decoding strategy: an initial state, a pure step, and the results of a final state."""

    def initial(self, setup: Setup) -> tuple[Any, int]:
        """The first state and how many rows the prompt's cache is copied into."""
        ...

    def step(self, state: Any, logits: torch.Tensor, index: int, setup: Setup) -> Outcome:
        """One decoding step from the logits of every row."""
        ...

    def results(self, state: Any, setup: Setup) -> tuple[Result, ...]:
        """The returned sequences, best first."""
        ...

    def stop_reason(self, state: Any) -> str:
        """Why the search ended (or would end now)."""
        ...


def score_log_probs(logits: torch.Tensor, ids: torch.Tensor, setup: Setup, context: Context) -> Scored:
    """Beam family: log-softmax first, then every processor (the reference's order)."""
    stages = run_processors(setup.processors, ids, torch.log_softmax(logits, dim=-1), context)
    return Scored(tuple(stages), tuple(p.name for p in setup.processors))


def score_logits(
    logits: torch.Tensor, ids: torch.Tensor, setup: Setup, context: Context
) -> tuple[Scored, torch.Tensor]:
    """Greedy and sampling: processors on raw logits (the reference's order), each stage read as log-probs.

    Returns the stages in log-prob space and the processed logits themselves, which the strategy picks from
    (argmax or sampling), exactly as the reference does.
    """
    stages = run_processors(setup.processors, ids, logits, context)
    names = tuple(p.name for p in setup.processors)
    return Scored(tuple(torch.log_softmax(s, dim=-1) for s in stages), names), stages[-1]


def unpicked(masked_by: str | None, why: str) -> FateInfo:
    """Fate of a recorded candidate that the step did not pick: masked by a processor, or pruned for ``why``."""
    if masked_by is not None:
        return ("masked", f"masked by {masked_by}", None)
    return ("pruned", why, None)


def refate(hyps: list[Hypothesis], changes: dict[int | None, FateInfo]) -> list[Hypothesis]:
    """Rewrite the fate of candidates by the id of what they became (``changes``: old child id -> new fate).

    Used when the search ends: candidates kept for a next step that never comes are finished or dropped.
    A ``None`` key (a placeholder row) matches nothing.
    """
    changes = {k: v for k, v in changes.items() if k is not None}
    out = []
    for hyp in hyps:
        if any(c.child in changes for c in hyp.candidates):
            cands = tuple(
                replace(c, fate=changes[c.child][0], reason=changes[c.child][1], child=changes[c.child][2])
                if c.child in changes else c
                for c in hyp.candidates
            )
            hyp = replace(hyp, candidates=cands)
        out.append(hyp)
    return out


@dataclass(frozen=True)
class BeamRow:
    """One live beam to record: ``local`` is its row in the scored tensors and in the fates' keys."""

    local: int
    slot: int
    group: int
    hyp_id: int
    parent_id: int | None
    token_ids: tuple[int, ...]
    score: float
    constraint: ConstraintProgress | None = None
    forced: bool = False

    @property
    def placeholder(self) -> bool:
        """One of the reference's -1e9 copies of the prompt at the first step (not a real hypothesis)."""
        return self.parent_id is None and self.score <= PLACEHOLDER




def record_beams(scored: Scored, setup: Setup, fates: Fates, pruned_why: str, beams: list[BeamRow]) -> list[Hypothesis]:
    """Each beam with its top candidates plus every picked one, each with its fate (``pruned_why`` if unpicked).

    Placeholder rows are left out unless one of their continuations was kept or finished (a degenerate search
    with fewer possible tokens than beams), so that every hypothesis has its parent in the record.
    """
    picked = {row for (row, _), fate in fates.items() if fate[0] in ("kept", "finished")}
    beams = [b for b in beams if not b.placeholder or b.local in picked]
    locals_ = [b.local for b in beams]
    extra: dict[int, list[int]] = {r: [] for r in locals_}
    for row, token in fates:
        if row in extra:
            extra[row].append(token)
    required = {key for key, fate in fates.items() if fate[0] in ("kept", "finished")}
    values = read_candidates(scored, locals_, setup.params.record_top_k, extra, required)
    entropy = row_entropies(scored.final, locals_)
    hyps = []
    for b in beams:
        cands = []
        for v in values[b.local]:
            fate, why, child = fates.get((b.local, v.token_id), unpicked(v.masked_by, pruned_why))
            cands.append(v.candidate(setup.token_text(v.token_id), b.score + v.score, fate, why, child))
        hyps.append(Hypothesis(b.hyp_id, b.parent_id, b.slot, b.group, b.token_ids, b.score, tuple(cands),
                               b.constraint, b.forced, entropy[b.local]))
    return hyps


#: Why a row ends (a finished entry's ``reason``).
Ending = Literal["eos", "max_length", "stop_string", "max_time"]
ENDS: dict[str, str] = {"eos": "ends the sequence", "max_length": "ends the sequence: the token budget is spent",
                         "stop_string": "ends the sequence: a stop string", "max_time": "ends the sequence: time is up"}


def ending(row: torch.Tensor, token: int, index: int, setup: Setup, time_up: bool) -> Ending | None:
    """Why ``row`` (prompt included) ends with ``token``, or ``None``: eos, a stop string, the time limit
    (``time_up``, asked once per step) or the token budget, in that order when several hold."""
    if token in setup.eos_token_ids:
        return "eos"
    ids = [*row.tolist(), token] if setup.criteria.stop_strings is not None else [token]
    criterion = setup.criteria.reason(ids, time_up)
    if criterion is not None:
        return criterion
    return "max_length" if index + 1 >= setup.params.max_new_tokens else None


def halted(sequences: torch.Tensor, setup: Setup, time_up: bool) -> StopReason | None:
    """Why every row of ``sequences`` (prompt included) stops now, or ``None``: the reference's check of its stopping
    criteria over all rows in group and constrained beam search (a row ending with eos, a done group's padding,
    counts as stopped)."""
    if not time_up and setup.criteria.stop_strings is None:
        return None
    reasons = [setup.criteria.reason(row, time_up) for row in sequences.tolist()]
    ended = [r is not None or row[-1] in setup.eos_token_ids for r, row in zip(reasons, sequences.tolist(),
                                                                                strict=True)]
    if not all(ended):
        return None
    return "max_time" if time_up else "stop_string"


def masked_rows(scores: torch.Tensor) -> torch.Tensor:
    """``[rows]`` bool: rows where every token is masked (``-inf``, ``remove_invalid_values``' stand-in for it, or
    NaN, which renormalising a masked row gives)."""
    return ((scores <= MASKED_FLOOR) | scores.isnan()).all(dim=-1)


def nothing_to(verb: str, index: int, setup: Setup) -> ExplorerError:
    """The error of a step where a row has nothing left to choose (or sample) from."""
    return ExplorerError(f"nothing to {verb} at step {index}: every token is masked "
                         f"(processors: {', '.join(p.name for p in setup.processors) or 'none'})")


def sample_rows(
    scores: torch.Tensor, count: int, setup: Setup, index: int, live: list[bool] | None = None
) -> torch.Tensor:
    """``torch.multinomial`` over ``softmax(scores)`` per row, as the reference draws, with the run's generator.

    A live row where every token is masked has nothing to draw from: that is a clear error, not a NaN crash.
    (A finished row's draw is thrown away; if it has nothing to draw from it draws from a uniform row.)
    """
    empty = masked_rows(scores)
    live = live if live is not None else [True] * scores.shape[0]
    if any(bool(e) and alive for e, alive in zip(empty.tolist(), live, strict=True)):
        raise nothing_to("sample", index, setup)
    if bool(empty.any()):
        scores = torch.where(empty[:, None], torch.zeros_like(scores), scores)
    possible = int((scores > MASKED_FLOOR).sum(dim=-1).min())
    if possible < count:
        raise ExplorerError(f"nothing to sample at step {index}: {count} draws without replacement need {count} "
                            f"possible continuations, the processors left {possible} (loosen top_k/top_p/min_p/"
                            "typical_p or use fewer beams)")
    return torch.multinomial(torch.softmax(scores, dim=-1), count, generator=setup.generator)
