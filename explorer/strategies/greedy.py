"""Greedy and sampling: each row picks one token per step (the argmax, or a seeded draw) until eos."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from explorer.processors.base import Context
from explorer.strategies._entropy import row_entropies
from explorer.strategies._record import Values, read_candidates
from explorer.strategies.base import (
    ENDS,
    Ending,
    Outcome,
    Setup,
    ending,
    masked_rows,
    nothing_to,
    sample_rows,
    score_logits,
)
from explorer.strategies.registry import StrategySpec, register
from explorer.trace import Candidate, Fate, Finished, Hypothesis, Result, Step

__all__ = ["GREEDY", "SAMPLE", "Greedy", "RowsState"]


@dataclass(frozen=True)
class RowsState:
    """Independent rows: tokens (prompt included), cumulative scores, node ids, and which rows still run."""

    sequences: torch.Tensor
    scores: tuple[float, ...]
    hyp_ids: tuple[int, ...]
    parent_ids: tuple[int | None, ...]
    finished: tuple[Finished | None, ...]
    next_id: int
    stop: str = "running"

    @property
    def alive(self) -> tuple[bool, ...]:
        """Rows that have not finished."""
        return tuple(f is None for f in self.finished)


@dataclass(frozen=True)
class Greedy:
    """Take the best-scoring token at every step (``sampling``: draw it from the processed distribution)."""

    sampling: bool = False

    def initial(self, setup: Setup) -> tuple[RowsState, int]:
        """One row (``num_return_sequences`` rows when sampling), all starting from the prompt."""
        rows = setup.params.num_return_sequences if self.sampling else 1
        prompt = torch.tensor([setup.prompt_ids] * rows, dtype=torch.long)
        return RowsState(prompt, (0.0,) * rows, tuple(range(rows)), (None,) * rows, (None,) * rows, rows), rows

    def step(self, state: RowsState, logits: torch.Tensor, index: int, setup: Setup) -> Outcome:
        """Pick one token per live row; rows that hit eos, a stop string, the time limit or the budget finish."""
        scored, processed = score_logits(logits, state.sequences, setup, Context(setup.prompt_length))
        picked = self._pick(processed, state, index, setup)  # [rows]
        chosen = picked.tolist()
        live = [r for r, alive in enumerate(state.alive) if alive]
        extra = {r: [chosen[r]] for r in live}
        values = read_candidates(scored, live, setup.params.record_top_k, extra, {(r, chosen[r]) for r in live})
        entropy = row_entropies(scored.final, live)
        time_up = setup.criteria.time_up()
        scores, finished = list(state.scores), list(state.finished)
        hyp_ids, parent_ids = list(state.hyp_ids), list(state.parent_ids)
        hyps: list[Hypothesis] = []
        next_id = state.next_id
        for r in live:
            tok, child = chosen[r], next_id
            next_id += 1
            why = ending(state.sequences[r], tok, index, setup, time_up)
            mine = next(v for v in values[r] if v.token_id == tok)
            scores[r] = state.scores[r] + mine.score
            generated = tuple(state.sequences[r, setup.prompt_length :].tolist())
            if why is not None:
                finished[r] = Finished(child, state.hyp_ids[r], index, 0, (*generated, tok), scores[r], scores[r],
                                       len(generated) + 1, why, True)
            else:
                hyp_ids[r], parent_ids[r] = child, state.hyp_ids[r]
            cands = tuple(self._candidate(v, tok, why, child, state.scores[r], setup) for v in values[r])
            hyps.append(Hypothesis(state.hyp_ids[r], state.parent_ids[r], r, 0, generated, state.scores[r], cands,
                                   entropy=entropy[r]))
        fed = torch.where(torch.tensor(state.alive), picked, setup.pad_token_id)
        new_finished = tuple(f for f, old in zip(finished, state.finished, strict=True) if old is None and f)
        done = all(f is not None for f in finished)
        stop = _stop(new_finished, index + 1 >= setup.params.max_new_tokens) if done else "running"
        new_state = RowsState(torch.cat([state.sequences, fed[:, None]], dim=1), tuple(scores), tuple(hyp_ids),
                              tuple(parent_ids), tuple(finished), next_id, stop)
        step = Step(index, tuple(hyps), new_finished, tuple(f.id for f in finished if f is not None))
        return Outcome(new_state, step, None if done else fed, None, done)

    def _pick(self, processed: torch.Tensor, state: RowsState, index: int, setup: Setup) -> torch.Tensor:
        """Each row's token: the argmax of its processed scores, or a draw from them (finished rows too: ignored)."""
        if self.sampling:
            return sample_rows(processed, 1, setup, index, list(state.alive)).squeeze(1)
        if any(bool(empty) and alive for empty, alive in zip(masked_rows(processed), state.alive, strict=True)):
            raise nothing_to("choose", index, setup)  # the reference would pick token 0 with a NaN log-prob
        return torch.argmax(processed, dim=-1)

    def _candidate(
        self, v: Values, chosen: int, ends: Ending | None, child: int, parent_score: float, setup: Setup
    ) -> Candidate:
        """A recorded candidate with its fate: the picked token is kept (or finished), the rest lose."""
        text = setup.token_text(v.token_id)
        total = parent_score + v.score
        if v.token_id == chosen:
            fate: Fate = "kept" if ends is None else "finished"
            why = ("sampled" if self.sampling else "highest score") if ends is None else ENDS[ends]
            return v.candidate(text, total, fate, why, child)
        if v.score == -math.inf:
            return v.candidate(text, total, "masked",
                             f"masked by {v.masked_by}")
        why = "not drawn" if self.sampling else "not the highest score"
        return v.candidate(text, total, "pruned", why)

    def results(self, state: RowsState, setup: Setup) -> tuple[Result, ...]:
        """Every row's sequence (a row stopped early stands as it is), best score first."""
        rows = []
        for r, fin in enumerate(state.finished):
            tokens = fin.token_ids if fin else tuple(state.sequences[r, setup.prompt_length :].tolist())
            step = fin.step if fin else len(tokens) - 1
            source = fin.id if fin else state.hyp_ids[r]
            rows.append(Result(0, tokens, setup.decode(list(tokens)), state.scores[r], step,
                               bool(tokens) and tokens[-1] in setup.eos_token_ids, source=source))
        rows.sort(key=lambda res: -res.score)
        return tuple(replace(res, rank=rank) for rank, res in enumerate(rows))

    def stop_reason(self, state: RowsState) -> str:
        """``eos``, ``max_new_tokens`` or ``running``."""
        return state.stop


def _stop(ended: tuple[Finished, ...], last: bool) -> str:
    """Why the run stopped: the time limit, the budget (``last`` step), else how its last rows ended."""
    reasons = {f.reason for f in ended}
    if "max_time" in reasons:
        return "max_time"
    if last:
        return "max_new_tokens"
    return "stop_string" if "stop_string" in reasons else "eos"


GREEDY = register(StrategySpec(
    "greedy", "the best token at every step", Greedy(), "rows"))
SAMPLE = register(StrategySpec(
    "sample", "a seeded draw from the processed distribution (same seed, same trace)", Greedy(sampling=True), "rows",
    uses=frozenset({"sampling", "returns"})))
