"""Beam search (and beam-sample), step for step as the reference's vectorised ``_beam_search`` does it.

Each step scores ``num_beams x vocab`` continuations, keeps the top ``2 * num_beams`` (or samples them), sends
those that end among the first ``num_beams`` to the finished pool (length-penalised), and continues with the best
``num_beams`` that did not end. The pool holds ``num_beams`` slots; placeholders score ``-1e9``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from explorer.processors.base import Context
from explorer.strategies._record import Scored
from explorer.strategies.base import (
    NEG,
    BeamRow,
    Ending,
    FateInfo,
    Fates,
    Outcome,
    Setup,
    ending,
    masked_rows,
    nothing_to,
    record_beams,
    refate,
    sample_rows,
    score_log_probs,
)
from explorer.strategies.registry import StrategySpec, beam_rules, register
from explorer.trace import PLACEHOLDER, Finished, Result, Step

__all__ = ["BEAM", "BEAM_SAMPLE", "Beam", "BeamState"]



@dataclass(frozen=True)
class BeamState:
    """Running beams (rows) and the finished pool, as the reference keeps them (batch of one)."""

    sequences: torch.Tensor  # [num_beams, length], prompt included
    scores: torch.Tensor  # [1, num_beams] running cumulative scores
    hyp_ids: tuple[int, ...]  # trace ids of the rows
    parent_ids: tuple[int | None, ...]
    pool_scores: torch.Tensor  # [1, num_beams] length-penalised; -1e9 for empty slots
    pool_finished: torch.Tensor  # [1, num_beams] bool: slot holds a finished hypothesis
    pool: tuple[Finished | None, ...]
    improvable: torch.Tensor  # [1, 1] bool: the early-stop heuristic still sees room to improve
    next_id: int
    stop: str = "running"


@dataclass(frozen=True)
class _Picks:
    """The top (or sampled) ``2 * num_beams`` continuations of one step."""

    log_probs: torch.Tensor  # [1, k] cumulative scores
    rows: list[int]
    tokens: list[int]
    hits: torch.Tensor  # [1, k] bool: ends here (eos or the length limit)
    running: torch.Tensor  # [1, k] the scores with endings pushed down by -1e9 (what the next beams carry)
    keep: list[int]  # positions (into the k) that continue as the next beams, in beam order
    ends: list[Ending | None]  # why each pick ends (the finished entry's reason), None: it runs on


@dataclass(frozen=True)
class Beam:
    """Beam search over ``num_beams`` hypotheses with the reference's finished-pool and early-stopping rules."""

    sampling: bool = False

    def initial(self, setup: Setup) -> tuple[BeamState, int]:
        """All beams start as the prompt; only the first counts (the others score -1e9 so they are not chosen)."""
        n = setup.params.num_beams
        scores = torch.zeros((1, n), dtype=torch.float)
        scores[:, 1:] = NEG
        state = BeamState(
            torch.tensor([setup.prompt_ids] * n, dtype=torch.long), scores, tuple(range(n)),
            (None,) * n, torch.full((1, n), NEG), torch.zeros((1, n), dtype=torch.bool), (None,) * n,
            torch.ones((1, 1), dtype=torch.bool), n,
        )
        return state, n

    def step(self, state: BeamState, logits: torch.Tensor, index: int, setup: Setup) -> Outcome:
        """Score, select, update the pool, and decide whether the search goes on."""
        p, n, vocab = setup.params, setup.params.num_beams, logits.shape[-1]
        cur_len = setup.prompt_length + index
        scored = score_log_probs(logits, state.sequences, setup, Context(setup.prompt_length))
        if bool(masked_rows(scored.final)[state.scores[0] > PLACEHOLDER].all()):
            # every real beam is stuck: the reference would end with its -1e9 placeholders as the results
            raise nothing_to("sample" if self.sampling else "choose", index, setup)
        picks = self._pick(scored.final, state, setup, cur_len, vocab, setup.criteria.time_up())
        new_scores = picks.running[:, picks.keep]  # as the reference: an ending kept as a beam carries -1e9
        pool_scores, pool_finished, pool, fins = self._update_pool(state, picks, setup, index, cur_len)
        next_len = cur_len + 1
        hyp_len = setup.max_length - setup.prompt_length if p.early_stopping == "never" and p.length_penalty > 0 \
            else next_len - setup.prompt_length
        best_possible = new_scores[:, :1] / (hyp_len**p.length_penalty)
        worst = torch.where(pool_finished, torch.min(pool_scores, dim=1, keepdim=True)[0], NEG)
        improvable = state.improvable & torch.any(best_possible > worst, dim=-1, keepdim=True)
        open_beam = not (bool(torch.all(pool_finished)) and p.early_stopping is True)
        can_continue = not bool(torch.all(picks.hits))
        done = not (bool(torch.any(improvable)) and open_beam and can_continue)
        child_ids = tuple(range(state.next_id, state.next_id + n))
        step = self._record(state, scored, picks, fins, child_ids, index, setup, pool)
        rows = torch.tensor([picks.rows[j] for j in picks.keep], dtype=torch.long)
        tokens = torch.tensor([picks.tokens[j] for j in picks.keep], dtype=torch.long)
        stop = "running"
        if done:
            stop = _ended(picks) if not can_continue else ("early_stopping" if open_beam else "pool_full")
        new_state = BeamState(
            torch.cat([state.sequences[rows], tokens[:, None]], dim=1), new_scores, child_ids,
            tuple(state.hyp_ids[r] for r in rows.tolist()), pool_scores, pool_finished, pool, improvable,
            state.next_id + n + len(fins), stop,
        )
        if done and can_continue:  # stopped early: the beams kept for a next step are dropped
            why = "the search stopped: " + ("no running beam can beat the pool" if open_beam else "the pool is full")
            hyps = refate(list(step.hypotheses), dict.fromkeys(child_ids, ("pruned", why, None)))
            step = replace(step, hypotheses=tuple(hyps))
        return Outcome(new_state, step, None if done else tokens, None if done else rows, done)

    def _pick(
        self, final: torch.Tensor, state: BeamState, setup: Setup, cur_len: int, vocab: int, time_up: bool,
    ) -> _Picks:
        """Top ``2 * num_beams`` continuations over all beams (sampled without replacement for beam-sample), and
        which of them end (eos, a stop string, the time limit, the budget: the reference's stopping criteria)."""
        n = setup.params.num_beams
        k = max(2, 1 + len(setup.eos_token_ids)) * n
        accumulated = (final + state.scores[0, :, None]).reshape(1, n * vocab)
        if self.sampling:
            flat = sample_rows(accumulated, k, setup, cur_len - setup.prompt_length)
            top = torch.gather(accumulated, 1, flat)
        else:
            top, flat = torch.topk(accumulated, k=k)
        rows, tokens = (flat // vocab)[0].tolist(), (flat % vocab)[0].tolist()
        index = cur_len - setup.prompt_length
        ends = [ending(state.sequences[r], t, index, setup, time_up) for r, t in zip(rows, tokens, strict=True)]
        hits = torch.tensor([[e is not None for e in ends]])
        running = top + hits.to(torch.float32) * NEG
        keep = torch.topk(running, k=n)[1][0].tolist()
        return _Picks(top, rows, tokens, hits, running, keep, ends)

    def _update_pool(
        self, state: BeamState, picks: _Picks, setup: Setup, index: int, cur_len: int
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[Finished | None, ...], dict[int, Finished]]:
        """Merge this step's endings (only those among the first ``num_beams``) into the pool, best first."""
        p, n = setup.params, setup.params.num_beams
        k = picks.log_probs.shape[1]
        top_mask = torch.arange(k)[None, :] < n
        did_finish = picks.hits & top_mask
        length = cur_len + 1 - setup.prompt_length
        normalized = picks.log_probs / (length**p.length_penalty)
        full = bool(torch.all(state.pool_finished)) and p.early_stopping is True
        masked = normalized + float(full) * NEG
        masked = masked + (~state.improvable).to(torch.float32) * NEG
        masked = masked + (~did_finish) * NEG
        merged = torch.cat((state.pool_scores, masked), dim=1)
        chosen = torch.topk(merged, k=n)[1]
        chosen_list = chosen[0].tolist()
        fins: dict[int, Finished] = {}
        next_id = state.next_id + n
        for j in range(k):
            if not bool(did_finish[0, j]):
                continue
            accepted = (state.pool_scores.shape[1] + j) in chosen_list
            note = "" if accepted else _rejection(full, bool(state.improvable))
            reason = picks.ends[j]
            assert reason is not None  # a hit has a reason
            row = picks.rows[j]
            generated = (*state.sequences[row, setup.prompt_length :].tolist(), picks.tokens[j])
            source = state.hyp_ids[row]
            fins[j] = Finished(next_id, source if source is not None else -1, index, 0, generated,
                               float(picks.log_probs[0, j]), float(normalized[0, j]), length, reason, accepted, note)
            next_id += 1
        entries = list(state.pool) + [fins.get(j) for j in range(k)]
        flags = torch.cat((state.pool_finished, did_finish), dim=1)
        pool = tuple(entries[i] if bool(flags[0, i]) else None for i in chosen_list)
        return (torch.gather(merged, 1, chosen), torch.gather(flags, 1, chosen), pool, fins)

    def _record(
        self, state: BeamState, scored: Scored, picks: _Picks, fins: dict[int, Finished],
        child_ids: tuple[int, ...], index: int, setup: Setup, pool: tuple[Finished | None, ...],
    ) -> Step:
        """The step's record: every real beam with its top candidates and their fates."""
        n = setup.params.num_beams
        fates: Fates = {}
        for j in range(len(picks.tokens)):
            fates.setdefault((picks.rows[j], picks.tokens[j]), _fate(j, picks, fins, child_ids, n, self.sampling))
        beams = [
            BeamRow(r, r, 0, hyp_id, state.parent_ids[r], tuple(state.sequences[r, setup.prompt_length :].tolist()),
                    float(state.scores[0, r]))
            for r, hyp_id in enumerate(state.hyp_ids)
        ]
        why = f"not among the {2 * n} drawn continuations" if self.sampling else \
            f"below the top {2 * n} continuations over all beams"
        hyps = record_beams(scored, setup, fates, why, beams)
        return Step(index, tuple(hyps), tuple(fins.values()), tuple(f.id for f in pool if f is not None))

    def results(self, state: BeamState, setup: Setup) -> tuple[Result, ...]:
        """The pool's best ``num_return_sequences``, best first, scored as the reference's ``sequences_scores``.

        A run stopped from outside has no full pool yet: its running beams fill the empty places, ranked by their
        length-penalised scores.
        """
        p = setup.params
        ranked = [(float(state.pool_scores[0, i]), e) for i, e in enumerate(state.pool) if e is not None]
        if state.stop == "running":
            for r, source in enumerate(state.parent_ids):
                if source is None:
                    continue
                generated = tuple(state.sequences[r, setup.prompt_length :].tolist())
                score = float(state.scores[0, r])
                normalized = score / (len(generated) ** p.length_penalty)
                ranked.append((normalized, Finished(state.next_id + r, source, len(generated) - 1, 0, generated,
                                                    score, normalized, len(generated), "end_of_search", True)))
            ranked.sort(key=lambda pair: -pair[0])
        return tuple(
            Result(rank, e.token_ids, setup.decode(list(e.token_ids)), score, e.step, e.reason == "eos",
                   source=e.id)
            for rank, (score, e) in enumerate(ranked[: p.num_return_sequences])
        )

    def stop_reason(self, state: BeamState) -> str:
        """Why the search stopped."""
        return state.stop


def _ended(picks: _Picks) -> str:
    """Why a search ends when every continuation ends: the time limit, the budget, stop strings, or eos."""
    for reason, stop in (("max_time", "max_time"), ("max_length", "max_new_tokens"), ("stop_string", "stop_string")):
        if reason in picks.ends:
            return stop
    return "eos"


def _rejection(full: bool, improvable: bool) -> str:
    """Why a hypothesis that ended did not enter the pool."""
    if full:
        return "the pool is full and early_stopping=True"
    if not improvable:
        return "the early-stopping heuristic says the pool cannot improve"
    return "its length-penalised score is below every hypothesis in the pool"


def _fate(
    j: int, picks: _Picks, fins: dict[int, Finished], child_ids: tuple[int, ...], n: int, sampling: bool
) -> FateInfo:
    """Fate of the j-th picked continuation."""
    k = len(picks.tokens)
    chosen = "drawn" if sampling else "ranked"
    if bool(picks.hits[0, j]):
        if j in fins:
            fin = fins[j]
            verdict = "entered the finished pool" if fin.accepted else f"not pooled: {fin.note}"
            return "finished", f"{fin.reason}, {chosen} {j + 1} of {k}: {verdict}", fin.id
        if j in picks.keep and not bool(torch.all(picks.hits)):  # too few other continuations: the reference
            # keeps the ending as a beam scoring -1e9 (when every pick ends, the search ends instead)
            slot = picks.keep.index(j)
            return "kept", f"ends, but {chosen} {j + 1} of {k}: kept as beam {slot} with score -1e9", child_ids[slot]
        return "pruned", f"ends, but {chosen} {j + 1} of {k}: only the first {n} may finish", None
    if j in picks.keep:
        slot = picks.keep.index(j)
        return "kept", f"{chosen} {j + 1} of {k}: continues as beam {slot}", child_ids[slot]
    return "pruned", f"{chosen} {j + 1} of {k}: the {n} beams were already filled", None


BEAM = register(StrategySpec(
    "beam", "beam search, the reference's finished pool and early stopping", Beam(), "beam",
    uses=frozenset({"beam", "returns"}), defaults={"num_beams": 4}, rules=beam_rules, sorted_beams=True))
BEAM_SAMPLE = register(StrategySpec(
    "beam-sample", "beam search that samples its `2 x num_beams` continuations", Beam(sampling=True), "beam",
    uses=frozenset({"beam", "returns", "sampling"}), defaults={"num_beams": 4}, rules=beam_rules, sorted_beams=True))
