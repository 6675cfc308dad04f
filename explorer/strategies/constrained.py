"""Constrained beam search, as the reference's ``_constrained_beam_search`` with ``ConstrainedBeamSearchScorer``.

Each step takes the best ``num_beams`` continuations as beam search does, then adds "forced" candidates: every
beam's tokens that advance its constraints. All of them are ranked by bank (how much of the constraints they
fulfil) and score, and taken round-robin over the banks, so hypotheses at every level of progress survive. A
hypothesis may only finish (eos) once its constraints are met.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from explorer.constraints import ConstraintState, advance_candidates, is_satisfied_by
from explorer.errors import ParameterError
from explorer.params import DecodeParams
from explorer.processors.base import Context
from explorer.strategies._pool import Pool, best_of
from explorer.strategies._record import Scored
from explorer.strategies.base import (
    NEG,
    BeamRow,
    FateInfo,
    Fates,
    Outcome,
    Setup,
    halted,
    record_beams,
    refate,
    score_log_probs,
)
from explorer.strategies.registry import StrategySpec, beam_rules, register
from explorer.trace import ConstraintProgress, Finished, Result, Step

__all__ = ["CONSTRAINED", "Constrained", "ConstrainedState"]



@dataclass(frozen=True)
class ConstrainedState:
    """Running beams, each with its constraint state (fed prompt and tokens), and the finished pool."""

    sequences: torch.Tensor
    scores: torch.Tensor  # [num_beams]
    hyp_ids: tuple[int, ...]
    parent_ids: tuple[int | None, ...]
    states: tuple[ConstraintState, ...]
    forced: tuple[bool, ...]
    pool: Pool
    next_id: int
    stop: str = "running"
    finalized: bool = False


@dataclass(frozen=True)
class _Selection:
    """The beams chosen for the next step, before and after the bank sort."""

    scores: torch.Tensor
    tokens: torch.Tensor
    rows: torch.Tensor
    forced: list[bool]
    banks: list[int]


@dataclass(frozen=True)
class Constrained:
    """Beam search that forces phrasal and disjunctive constraints into its hypotheses."""

    def initial(self, setup: Setup) -> tuple[ConstrainedState, int]:
        """All beams start as the prompt (its tokens already count towards the constraints)."""
        n = setup.params.num_beams
        scores = torch.zeros(n, dtype=torch.float)
        scores[1:] = NEG
        start = ConstraintState.from_tokens(setup.constraints, setup.prompt_ids)
        return ConstrainedState(
            torch.tensor([setup.prompt_ids] * n, dtype=torch.long), scores, tuple(range(n)),
            (None,) * n, (start,) * n, (False,) * n, Pool(n), n,
        ), n

    def step(self, state: ConstrainedState, logits: torch.Tensor, index: int, setup: Setup) -> Outcome:
        """Top-k, pool the satisfied endings, add forced candidates, sort by bank, check for the end."""
        p, n, vocab = setup.params, setup.params.num_beams, logits.shape[-1]
        scored = score_log_probs(logits, state.sequences, setup, Context(setup.prompt_length))
        all_vocab = scored.final + state.scores[:, None]
        top, flat = torch.topk(all_vocab.view(1, n * vocab), 2 * n, dim=1, largest=True, sorted=True)
        beams, tokens, tops = (flat / vocab).long()[0].tolist(), (flat % vocab)[0].tolist(), top[0].tolist()
        cur_len = state.sequences.shape[1] + 1
        first_child, next_id = state.next_id, state.next_id + n
        pool: Pool = state.pool
        fates: Fates = {}
        fins: list[Finished] = []
        picked: list[int] = []
        for rank in range(2 * n):
            key = (beams[rank], tokens[rank])
            if tokens[rank] in setup.eos_token_ids:
                if rank >= n:
                    fates.setdefault(key, ("pruned", f"eos ranked {rank + 1} of {2 * n}: only the first {n} may "
                                           "finish", None))
                elif not state.states[beams[rank]].completed:
                    fates.setdefault(key, ("pruned", "eos before the constraints are met", None))
                else:
                    fin = self._finish(state, beams[rank], tokens[rank], tops[rank], cur_len, index, next_id, setup)
                    pool, fin = pool.offer(fin)
                    fins.append(fin)
                    next_id += 1
                    fates.setdefault(key, ("finished", f"eos, ranked {rank + 1} of {2 * n}", fin.id))
            else:
                picked.append(rank)
            if len(picked) == n:
                break
        sel = self._bank_sort(state, all_vocab, [tops[r] for r in picked], [tokens[r] for r in picked],
                              [beams[r] for r in picked], setup)
        self._fates(fates, sel, beams, tokens, picked, first_child, n)
        done = pool.is_done(max(tops), cur_len, setup.prompt_length, setup.max_length, p.early_stopping,
                            p.length_penalty)
        rows, toks = sel.rows, sel.tokens
        sequences = torch.cat([state.sequences[rows], toks[:, None]], dim=1)
        stop = "early_stopping" if done else "max_new_tokens" if index + 1 >= p.max_new_tokens else (
            halted(sequences, setup, setup.criteria.time_up()) or "running")  # the reference's criteria, every row
        step = self._record(state, scored, fates, index, setup, fins, pool)
        new_state = ConstrainedState(
            sequences, sel.scores, tuple(range(first_child, first_child + n)),
            tuple(state.hyp_ids[r] for r in rows.tolist()),
            tuple(state.states[r].add(t) for r, t in zip(rows.tolist(), toks.tolist(), strict=True)),
            tuple(sel.forced), pool, next_id, stop,
        )
        finished_now = stop != "running"
        if finished_now:
            new_state, step = _end(new_state, step, setup, done)
        return Outcome(new_state, step, None if finished_now else toks, None if finished_now else rows,
                       finished_now)

    def _finish(
        self, state: ConstrainedState, row: int, token: int, score: float, cur_len: int, index: int, entry_id: int,
        setup: Setup,
    ) -> Finished:
        """A hypothesis that met its constraints and chose eos."""
        length = cur_len - setup.prompt_length
        generated = (*state.sequences[row, setup.prompt_length :].tolist(), token)
        source = state.hyp_ids[row]
        return Finished(entry_id, -1 if source is None else source, index, 0, tuple(generated), score,
                        score / (length**setup.params.length_penalty), length, "eos", True)

    def _bank_sort(
        self, state: ConstrainedState, all_vocab: torch.Tensor, scores: list[float], tokens: list[int],
        rows: list[int], setup: Setup,
    ) -> _Selection:
        """The reference's ``step_sentence_constraint``: add forced candidates, sort by bank, round-robin."""
        n = setup.params.num_beams
        prompt = setup.prompt_length
        generated = [tuple(r) for r in state.sequences[:, prompt:].tolist()]
        seen = [generated[r] + (t,) for r, t in zip(rows, tokens, strict=True)]
        banks = [state.states[r].add(t).bank for r, t in zip(rows, tokens, strict=True)]
        new_rows, new_tokens, new_banks = [], [], []
        for row in range(n):
            for cand in advance_candidates(state.states[row]):
                seq = generated[row] + (cand.token,)
                if seq not in seen:
                    seen.append(seq)
                    new_rows.append(row)
                    new_tokens.append(cand.token)
                    new_banks.append(cand.bank)
        base_scores = torch.tensor(scores, dtype=torch.float)
        if not new_rows:
            return _Selection(base_scores, torch.tensor(tokens), torch.tensor(rows), [False] * n, banks)
        all_scores = torch.cat((base_scores, all_vocab[new_rows, new_tokens]))
        all_banks = torch.tensor(banks + new_banks)
        order = (all_banks * 100 + all_scores).sort(descending=True).indices
        increments, counter, current = [], -1, None
        for bank in all_banks[order].tolist():
            counter = counter + 1 if bank == current else 0
            current = bank
            increments.append(counter)
        order = order[torch.tensor(np.argsort(increments, kind="mergesort"))][:n]
        chosen = order.tolist()
        return _Selection(all_scores[order], torch.tensor(tokens + new_tokens)[order],
                          torch.tensor(rows + new_rows)[order], [i >= len(rows) for i in chosen],
                          [(banks + new_banks)[i] for i in chosen])

    @staticmethod
    def _fates(fates: Fates, sel: _Selection, beams: list[int], tokens: list[int], picked: list[int],
               first_child: int, n: int) -> None:
        """Kept (with the new beam's id), dropped by the bank sort, or never picked."""
        kept = {(r, t): slot for slot, (r, t) in enumerate(zip(sel.rows.tolist(), sel.tokens.tolist(),
                                                                 strict=True))}
        for (r, t), slot in kept.items():
            how = "forced: advances a constraint" if sel.forced[slot] else "top score"
            fates[(r, t)] = ("kept", f"{how}; bank {sel.banks[slot]}, continues as beam {slot}", first_child + slot)
        for rank in picked:
            fates.setdefault((beams[rank], tokens[rank]), ("pruned", "lost the bank sort to better-banked beams",
                                                           None))
        for rank in range(2 * n):
            fates.setdefault((beams[rank], tokens[rank]),
                             ("pruned", f"ranked {rank + 1} of {2 * n}: the {n} beams were already filled", None))

    def _record(
        self, state: ConstrainedState, scored: Scored, fates: Fates, index: int, setup: Setup,
        fins: list[Finished], pool: Pool,
    ) -> Step:
        """The step's record, with each hypothesis's constraint progress."""
        beams = [
            BeamRow(r, r, 0, hyp_id, state.parent_ids[r], tuple(state.sequences[r, setup.prompt_length :].tolist()),
                    float(state.scores[r]), progress_of(state.states[r]), state.forced[r])
            for r, hyp_id in enumerate(state.hyp_ids)
        ]
        hyps = record_beams(scored, setup, fates, f"below the top {2 * setup.params.num_beams} continuations", beams)
        ranked = sorted(pool.entries, key=lambda e: -e.normalized_score)
        return Step(index, tuple(hyps), tuple(fins), tuple(e.id for e in ranked))

    def results(self, state: ConstrainedState, setup: Setup) -> tuple[Result, ...]:
        """The pool's best, best first, each saying whether it really contains every constraint."""
        if not state.finalized:
            state, _ = _finalize(state, setup)
        return tuple(
            Result(rank, e.token_ids, setup.decode(list(e.token_ids)), e.normalized_score, e.step,
                   e.reason == "eos", source=e.id,
                   constraints_satisfied=is_satisfied_by(setup.constraints, e.token_ids))
            for rank, e in enumerate(best_of((state.pool,), setup.params.num_return_sequences))
        )

    def stop_reason(self, state: ConstrainedState) -> str:
        """Why the search stopped."""
        return state.stop


def _finalize(state: ConstrainedState, setup: Setup) -> tuple[ConstrainedState, list[Finished | None]]:
    """The reference's finalize: running beams that meet the constraints join the pool; if fewer than
    ``num_return_sequences`` do, all the others are offered too. One entry (or None: not offered) per row."""
    if state.stop == "early_stopping":
        return replace(state, finalized=True), [None] * len(state.hyp_ids)
    p = setup.params
    step = state.sequences.shape[1] - setup.prompt_length - 1
    entries: list[Finished | None] = []
    for r, source in enumerate(state.parent_ids):
        generated = tuple(state.sequences[r, setup.prompt_length :].tolist())
        score = float(state.scores[r])
        entries.append(Finished(state.next_id + r, -1 if source is None else source, step, 0, generated, score,
                                score / (len(generated) ** p.length_penalty), len(generated), "end_of_search",
                                True))
    met = [state.states[r].completed for r in range(len(entries))]
    pool = state.pool
    order = [r for r in range(len(entries)) if met[r]]
    if len(order) < p.num_return_sequences:
        order += [r for r in range(len(entries)) if not met[r]]
    for r in range(len(entries)):
        if r not in order:
            entries[r] = None
    for r in order:
        entry = entries[r]
        assert entry is not None
        if not met[r]:
            entry = replace(entry, note="offered although it misses a constraint (too few beams meet them)")
        pool, entries[r] = pool.offer(entry)
    done = replace(state, pool=pool, next_id=state.next_id + len(entries), finalized=True)
    return done, entries


def _end(state: ConstrainedState, step: Step, setup: Setup, early: bool) -> tuple[ConstrainedState, Step]:
    """The last step: running beams join the pool (or are dropped) and the record says so."""
    state, entries = _finalize(state, setup)
    changes: dict[int | None, FateInfo] = {}
    for r, entry in enumerate(entries):
        if entry is not None:
            verdict = "accepted" if entry.accepted else "below the pool's worst"
            changes[state.hyp_ids[r]] = ("finished", f"the search ends here: offered to the pool, {verdict}",
                                         entry.id)
        elif early:
            changes[state.hyp_ids[r]] = ("pruned", "the search stopped: no running beam can beat the pool", None)
        else:
            changes[state.hyp_ids[r]] = ("pruned", "the search ends here: misses a constraint, not offered",
                                         None)
    final = [e for e in entries if e is not None]
    ranked = sorted(state.pool.entries, key=lambda e: -e.normalized_score)
    return state, replace(step, hypotheses=tuple(refate(list(step.hypotheses), changes)),
                          finished=step.finished + tuple(final), pool=tuple(e.id for e in ranked))


def progress_of(state: ConstraintState) -> ConstraintProgress:
    """The trace's plain-values view of a constraint state."""
    info = state.progress()
    lines = info["constraints"]
    return ConstraintProgress(
        tuple(line["status"] for line in lines), tuple(line["matched"] for line in lines),
        tuple(line["length"] for line in lines), info["bank"], info["completed"],
    )


def _rules(p: DecodeParams) -> None:
    """At least two beams (the bank sort needs room), and at most ``num_beams`` results."""
    if p.num_beams < 2:
        raise ParameterError("num_beams", p.num_beams, "an integer >= 2 for constrained")
    beam_rules(p)


CONSTRAINED = register(StrategySpec(
    "constrained", "constrained beam search with phrasal and disjunctive constraints and banks", Constrained(),
    "beam", uses=frozenset({"beam", "returns"}), defaults={"num_beams": 4}, rules=_rules, constraints=True))
