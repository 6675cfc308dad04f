"""Diverse (group) beam search, as the reference's ``_group_beam_search`` with its ``BeamSearchScorer``.

The beams are split into ``num_beam_groups`` groups stepped one after another; a group's scores are lowered by
``diversity_penalty`` for every beam of an earlier group that chose the same token at this step (Hamming
diversity, Vijayakumar et al. 2016). Each group keeps its own pool of ``num_beams / num_beam_groups`` finished
hypotheses; a group whose pool can no longer improve is done and feeds padding from then on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from explorer.errors import ParameterError
from explorer.params import DecodeParams
from explorer.processors.base import Context, run_processors
from explorer.strategies._pool import Pool, best_of
from explorer.strategies._record import Scored
from explorer.strategies.base import NEG, BeamRow, FateInfo, Fates, Outcome, Setup, halted, record_beams, refate
from explorer.strategies.registry import StrategySpec, beam_rules, register
from explorer.trace import Finished, Hypothesis, Result, Step

__all__ = ["DIVERSE", "Diverse", "GroupState"]


@dataclass(frozen=True)
class GroupState:
    """Rows of all groups side by side (group g owns rows ``g*size .. (g+1)*size - 1``) and one pool per group."""

    sequences: torch.Tensor
    scores: torch.Tensor  # [num_beams] cumulative
    hyp_ids: tuple[int, ...]
    parent_ids: tuple[int | None, ...]
    pools: tuple[Pool, ...]
    done: tuple[bool, ...]
    next_id: int
    stop: str = "running"
    finalized: bool = False


@dataclass(frozen=True)
class _GroupStep:
    """What one group decided at one step."""

    scores: list[float]
    tokens: list[int]
    rows: list[int]  # group-local parent index of each new beam
    pool: Pool
    done: bool
    finished: list[Finished]
    hypotheses: list[Hypothesis]
    first_child: int
    next_id: int


@dataclass(frozen=True)
class _Ranked:
    """A group's best ``2 * size`` continuations (more with several eos ids), best first."""

    scores: list[float]  # cumulative
    beams: list[int]  # group-local row each continues
    tokens: list[int]


@dataclass(frozen=True)
class _Selection:
    """What the ranked continuations became: the kept ranks (the next beams), fates, pool entries, the pool."""

    kept: list[int]
    fates: Fates
    finished: list[Finished]
    pool: Pool
    next_id: int


def _rank(totals: torch.Tensor, setup: Setup) -> _Ranked:
    """The top continuations of ``totals`` ``[size, vocab]`` (cumulative scores) over the whole group."""
    size, vocab = totals.shape
    k = max(2, 1 + len(setup.eos_token_ids)) * size
    top, flat = torch.topk(totals.view(1, size * vocab), k, dim=1, largest=True, sorted=True)
    beams = torch.div(flat, vocab, rounding_mode="floor")
    return _Ranked(top[0].tolist(), beams[0].tolist(), (flat % vocab)[0].tolist())


@dataclass(frozen=True)
class Diverse:
    """Group beam search with a Hamming diversity penalty between groups."""

    def initial(self, setup: Setup) -> tuple[GroupState, int]:
        """The first beam of every group starts from the prompt; the others are -1e9 placeholders."""
        p = setup.params
        size = p.num_beams // p.num_beam_groups
        scores = torch.full((p.num_beams,), NEG, dtype=torch.float)
        scores[::size] = 0
        ids = tuple(range(p.num_beams))
        pools = tuple(Pool(size) for _ in range(p.num_beam_groups))
        prompt = torch.tensor([setup.prompt_ids] * p.num_beams, dtype=torch.long)
        return GroupState(prompt, scores, ids, (None,) * p.num_beams, pools, (False,) * p.num_beam_groups,
                          p.num_beams), p.num_beams

    def step(self, state: GroupState, logits: torch.Tensor, index: int, setup: Setup) -> Outcome:
        """Step every group in turn, each penalised by the tokens the earlier groups just chose."""
        p = setup.params
        size = p.num_beams // p.num_beam_groups
        beams = _NextBeams.of(state)
        for g in range(p.num_beam_groups):
            rows = list(range(g * size, (g + 1) * size))  # group g's rows of logits (num_beams, vocab)
            context = Context(setup.prompt_length, previous_group_tokens=beams.tokens[: g * size])
            beams.take(state, g, rows, self._group_step(state, logits, rows, g, context, index, setup, beams.next_id))
        sequences = torch.cat([state.sequences[beams.parents], beams.tokens[:, None]], dim=1)  # (num_beams, len + 1)
        stop = _stop(all(beams.done), index + 1 >= p.max_new_tokens, sequences, setup)
        new_state = GroupState(sequences, beams.scores, tuple(beams.hyp_ids), tuple(beams.parent_ids),
                               tuple(beams.pools), tuple(beams.done), beams.next_id, stop)
        ending = stop != "running"
        new_state, changes = _late_fates(state, new_state, beams, setup)
        pool_ids = tuple(e.id for e in best_of(new_state.pools, sum(len(pl.entries) for pl in new_state.pools)))
        step = Step(index, tuple(refate(beams.hypotheses, changes)), tuple(beams.finished), pool_ids,
                    tuple(g for g, d in enumerate(state.done) if d))
        return Outcome(new_state, step, None if ending else beams.tokens, None if ending else beams.parents, ending)

    def _group_step(
        self, state: GroupState, logits: torch.Tensor, rows: list[int], g: int, context: Context, index: int,
        setup: Setup, next_id: int,
    ) -> _GroupStep:
        """One group: score its rows, rank their continuations, fill the group's beams and pool from the top."""
        p = setup.params
        size = len(rows)
        if state.done[g]:  # the reference feeds a done group padding and ignores its scores
            return _GroupStep([0.0] * size, [setup.pad_token_id] * size, [0] * size, state.pools[g], True, [],
                              [], next_id, next_id)
        ids = state.sequences[rows]  # [size, length]
        stages = run_processors(setup.processors, ids, torch.log_softmax(logits[rows], dim=-1), context)
        scored = Scored(tuple(stages), tuple(proc.name for proc in setup.processors))
        ranked = _rank(scored.final + state.scores[rows][:, None], setup)
        pick = self._select(state, ranked, rows, g, index, setup, next_id)
        done = pick.pool.is_done(max(ranked.scores), ids.shape[1] + 1, setup.prompt_length, setup.max_length,
                                 p.early_stopping, p.length_penalty)
        hyps = self._record(state, scored, rows, g, pick.fates, setup)
        kept = pick.kept
        return _GroupStep([ranked.scores[r] for r in kept], [ranked.tokens[r] for r in kept],
                          [ranked.beams[r] for r in kept], pick.pool, done, pick.finished, hyps, next_id,
                          pick.next_id)

    def _select(
        self, state: GroupState, ranked: _Ranked, rows: list[int], g: int, index: int, setup: Setup, next_id: int,
    ) -> _Selection:
        """Walk the ranked continuations: eos among the first ``size`` goes to the pool, the others fill the
        group's beams until they are full; every continuation gets its fate."""
        size, k = len(rows), len(ranked.tokens)
        cur_len = state.sequences.shape[1] + 1
        pool = state.pools[g]
        kept: list[int] = []
        fates: Fates = {}
        fins: list[Finished] = []
        first_child, next_id = next_id, next_id + size
        for rank in range(k):
            key = (ranked.beams[rank], ranked.tokens[rank])
            if ranked.tokens[rank] not in setup.eos_token_ids:
                fates.setdefault(key, ("kept", f"ranked {rank + 1} of {k}: continues as beam {len(kept)} of "
                                       f"group {g}", first_child + len(kept)))
                kept.append(rank)
            elif rank >= size:
                fates.setdefault(key, ("pruned", f"eos ranked {rank + 1} of {k}: only the first {size} may finish",
                                       None))
                continue
            else:
                fin, pool = self._finish(state, rows, key[0], key[1], ranked.scores[rank], cur_len, pool, index, g,
                                         setup, next_id)
                next_id += 1
                fins.append(fin)
                verdict = "entered the group's pool" if fin.accepted else "below the group's pool"
                fates.setdefault(key, ("finished", f"eos, ranked {rank + 1} of {k}: {verdict}", fin.id))
            if len(kept) == size:
                break
        for rank in range(k):
            fates.setdefault((ranked.beams[rank], ranked.tokens[rank]),
                             ("pruned", f"ranked {rank + 1} of {k}: the group's {size} beams were already filled",
                              None))
        return _Selection(kept, fates, fins, pool, next_id)

    def _finish(
        self, state: GroupState, rows: list[int], beam: int, token: int, score: float, cur_len: int, pool: Pool,
        index: int, g: int, setup: Setup, entry_id: int,
    ) -> tuple[Finished, Pool]:
        """Offer a hypothesis that chose eos to the group's pool."""
        row = rows[beam]
        length = cur_len - setup.prompt_length
        generated = (*state.sequences[row, setup.prompt_length :].tolist(), token)
        normalized = score / (length**setup.params.length_penalty)
        source = state.hyp_ids[row]
        fin = Finished(entry_id, source if source is not None else -1, index, g, tuple(generated), score,
                       normalized, length, "eos", True)
        new_pool, fin = pool.offer(fin, _REJECTED)
        return fin, new_pool

    def _record(
        self, state: GroupState, scored: Scored, rows: list[int], g: int, fates: Fates, setup: Setup,
    ) -> list[Hypothesis]:
        """The group's real beams with their top candidates and fates (fates keyed by row within the group)."""
        beams = [
            BeamRow(i, r, g, state.hyp_ids[r], state.parent_ids[r],
                    tuple(state.sequences[r, setup.prompt_length :].tolist()), float(state.scores[r]))
            for i, r in enumerate(rows)
        ]
        return record_beams(scored, setup, fates, f"below the group's top {2 * len(rows)} continuations", beams)

    def results(self, state: GroupState, setup: Setup) -> tuple[Result, ...]:
        """The best over all groups' pools, best first (running beams join their pools when the search ends)."""
        if not state.finalized:
            state, _ = _finalize(state, setup)
        best = best_of(state.pools, setup.params.num_return_sequences)
        return tuple(
            Result(rank, e.token_ids, setup.decode(list(e.token_ids)), e.normalized_score, e.step,
                   e.reason == "eos", group=e.group, source=e.id)
            for rank, e in enumerate(best)
        )

    def stop_reason(self, state: GroupState) -> str:
        """Why the search stopped."""
        return state.stop


_REJECTED = "its length-penalised score is below the group's pool"


@dataclass
class _NextBeams:
    """The next beams of every group, filled in one group at a time during a step."""

    tokens: torch.Tensor  # (num_beams,) the token each new beam feeds
    parents: torch.Tensor  # (num_beams,) the row each new beam continues
    scores: torch.Tensor  # (num_beams,) cumulative
    hyp_ids: list[int]
    parent_ids: list[int | None]
    pools: list[Pool]
    done: list[bool]
    next_id: int
    hypotheses: list[Hypothesis] = field(default_factory=list)
    finished: list[Finished] = field(default_factory=list)

    @staticmethod
    def of(state: GroupState) -> _NextBeams:
        """Nothing decided yet: the state's scores, ids, pools and done flags."""
        n = len(state.hyp_ids)
        return _NextBeams(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), state.scores.clone(),
                          list(state.hyp_ids), list(state.parent_ids), list(state.pools), list(state.done),
                          state.next_id)

    def take(self, state: GroupState, g: int, rows: list[int], gs: _GroupStep) -> None:
        """Group ``g``'s decision for its ``rows``."""
        self.next_id = gs.next_id
        self.scores[rows] = torch.tensor(gs.scores, dtype=torch.float)
        self.tokens[rows] = torch.tensor(gs.tokens, dtype=torch.long)
        self.parents[rows] = torch.tensor([rows[0] + r for r in gs.rows], dtype=torch.long)
        if not state.done[g]:
            for slot, r in enumerate(rows):
                self.parent_ids[r] = state.hyp_ids[rows[0] + gs.rows[slot]]
                self.hyp_ids[r] = gs.first_child + slot
        self.pools[g], self.done[g] = gs.pool, gs.done
        self.hypotheses += gs.hypotheses
        self.finished += gs.finished


def _late_fates(
    state: GroupState, new_state: GroupState, beams: _NextBeams, setup: Setup,
) -> tuple[GroupState, dict[int | None, FateInfo]]:
    """Fates decided after every group stepped: the beams of a group done just now are pruned, and when the search
    ends every running beam is offered to its pool (``new_state`` finalized, the entries added to ``beams``)."""
    groups = len(state.done)
    size = len(state.hyp_ids) // groups
    changes: dict[int | None, FateInfo] = {}
    for g in range(groups):
        if beams.done[g] and not state.done[g]:
            for r in range(g * size, (g + 1) * size):
                changes[beams.hyp_ids[r]] = ("pruned", f"group {g} is done: no running beam can beat its pool", None)
    if new_state.stop == "running":
        return new_state, changes
    new_state, final = _finalize(new_state, setup)
    for row, entry in final:
        beams.finished.append(entry)
        verdict = "accepted" if entry.accepted else "below the pool's worst"
        changes[beams.hyp_ids[row]] = ("finished", f"the search ends here: offered to the pool, {verdict}", entry.id)
    return new_state, changes


def _stop(all_done: bool, at_limit: bool, sequences: torch.Tensor, setup: Setup) -> str:
    """Whether (and why) the search ends after this step: every group done, the budget, or (as the reference checks
    its criteria over all rows) every row ending on a stop string or the time limit; ``running`` otherwise."""
    if all_done:
        return "early_stopping"
    if at_limit:
        return "max_new_tokens"
    return halted(sequences, setup, setup.criteria.time_up()) or "running"


def _finalize(state: GroupState, setup: Setup) -> tuple[GroupState, list[tuple[int, Finished]]]:
    """The reference's finalize: each group not done offers its running beams to its pool; (row, entry) pairs."""
    p = setup.params
    size = p.num_beams // p.num_beam_groups
    pools, entries, next_id = list(state.pools), [], state.next_id
    step = state.sequences.shape[1] - setup.prompt_length - 1
    for g in range(p.num_beam_groups):
        if state.done[g]:
            continue
        for r in range(g * size, (g + 1) * size):
            generated = tuple(state.sequences[r, setup.prompt_length :].tolist())
            score = float(state.scores[r])
            source = state.parent_ids[r]
            entry = Finished(next_id, -1 if source is None else source, step, g, generated, score,
                             score / (len(generated) ** p.length_penalty), len(generated), "end_of_search", True)
            next_id += 1
            pools[g], entry = pools[g].offer(entry, _REJECTED)
            entries.append((r, entry))
    return replace(state, pools=tuple(pools), next_id=next_id, finalized=True), entries


def _rules(p: DecodeParams) -> None:
    """At least two groups of equal size, and at most ``num_beams`` results."""
    if p.num_beams < 2:
        raise ParameterError("num_beams", p.num_beams, "an integer >= 2 for diverse")
    if p.num_beam_groups < 2 or p.num_beams % p.num_beam_groups:
        raise ParameterError("num_beam_groups", p.num_beam_groups,
                             f"an integer >= 2 that divides num_beams={p.num_beams}")
    beam_rules(p)


DIVERSE = register(StrategySpec(
    "diverse", "group beam search with a Hamming diversity penalty (Vijayakumar et al.)", Diverse(), "beam",
    uses=frozenset({"beam", "returns", "groups"}), rules=_rules, sorted_beams=True,
    defaults={"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0}))
