"""Contrastive search: of the ``top_k`` most probable tokens, take the one whose hidden state is least like the
text's so far, traded against the model's confidence: ``(1 - alpha) * p - alpha * max cosine similarity``.

Each step, as the reference (transformers 4.55.4 ``_contrastive_search``) does: the processed next-token
distribution's ``top_k`` tokens are fed in one forward of ``top_k`` rows (the cache copied into each), their last
layer's hidden states are compared with every position's of the text (prompt included), and the best score wins;
the winner's row of that forward gives the next step's logits and cache. The step records every candidate's
confidence, penalty, most similar position and score (:class:`~explorer.trace.Contrastive`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from explorer.errors import ParameterError
from explorer.models.base import CausalLM
from explorer.params import DecodeParams
from explorer.processors.base import Context, run_processors
from explorer.strategies._record import Values
from explorer.strategies.base import Ending, Setup, masked_rows, nothing_to
from explorer.strategies.dola import layered
from explorer.strategies.greedy import Greedy, RowsState
from explorer.strategies.registry import StrategySpec, register
from explorer.trace import Candidate, ContrastCandidate, Contrastive, Step

if TYPE_CHECKING:
    from explorer.engine import Run

__all__ = ["CONTRASTIVE", "Ranking", "rank"]


@dataclass(frozen=True)
class Ranking:
    """The candidates' numbers at one step (each ``[top_k]``) and the winner's index."""

    penalty: torch.Tensor
    similar_to: torch.Tensor
    score: torch.Tensor
    chosen: int


@torch.no_grad()
def rank(context: torch.Tensor, candidates: torch.Tensor, probs: torch.Tensor, alpha: float) -> Ranking:
    """Rank ``top_k`` candidates (hidden states ``[top_k, 1, hidden]``, probabilities ``[top_k]``) against the
    context's hidden states ``[1, positions, hidden]``, with the reference's operations and shapes (so its float32
    rounding): cosine similarity to every position, the largest is the degeneration penalty."""
    k = candidates.shape[0]
    context = context.repeat_interleave(k, dim=0)  # [k, positions, hidden]
    norm_context = context / context.norm(dim=2, keepdim=True)
    norm_next = candidates / candidates.norm(dim=2, keepdim=True)
    cosine = torch.matmul(norm_context, norm_next.transpose(1, 2)).squeeze(-1)  # [k, positions]
    penalty, where = torch.max(cosine, dim=-1)
    score = (1.0 - alpha) * probs.view(-1) - alpha * penalty
    chosen = int(torch.stack(torch.split(score, k)).max(dim=-1).indices[0])
    return Ranking(penalty, where, score, chosen)


@dataclass(frozen=True)
class _Chosen(Greedy):
    """A greedy step whose token was chosen by contrastive search (recorded with its reasons)."""

    token: int = 0
    top_k: tuple[int, ...] = ()

    def _pick(self, processed: torch.Tensor, state: RowsState, index: int, setup: Setup) -> torch.Tensor:
        return torch.tensor([self.token] * processed.shape[0], dtype=torch.long)

    def _candidate(self, v: Values, chosen: int, ends: Ending | None, child: int, parent_score: float,
                   setup: Setup) -> Candidate:
        c = super()._candidate(v, chosen, ends, child, parent_score, setup)
        if c.fate == "kept":
            return replace(c, reason="highest contrastive score")
        if c.fate == "pruned":
            return replace(c, reason="a lower contrastive score" if v.token_id in self.top_k
                           else f"not among the top_k={len(self.top_k)} most probable")
        return c


def _rules(p: DecodeParams) -> None:
    """Contrastive search ranks at least two candidates."""
    if p.top_k < 2:
        raise ParameterError("top_k", p.top_k, "an integer >= 2 for contrastive search (the candidates it ranks)")


def check_model(model: CausalLM, p: DecodeParams) -> None:
    """The model has layers, and at least ``top_k`` tokens."""
    lm = layered(model, "contrastive")
    if p.top_k > lm.info.vocab_size:
        raise ParameterError("top_k", p.top_k, f"at most the vocabulary's {lm.info.vocab_size} tokens")


def drive(model: CausalLM, spec: StrategySpec, setup: Setup, on_step: Callable[[Step], None] | None,
          should_stop: Callable[[], bool] | None) -> Run:
    """Run contrastive search to the end: top_k candidates in one forward, rank, keep the winner's row; repeat.

    ``should_stop`` is asked between steps; Ctrl-C ends the run too; either way the partial trace is kept.
    """
    from explorer.engine import Run

    began = time.perf_counter()
    lm = layered(model, spec.name)
    k, alpha = setup.params.top_k, setup.params.penalty_alpha
    state: RowsState = Greedy().initial(setup)[0]
    steps: list[Step] = []
    stop = "running"
    try:
        with torch.inference_mode():
            clock = time.perf_counter()
            logits, hidden, cache = lm.forward_layers(torch.tensor([list(setup.prompt_ids)]), None)
            context = hidden[-1]  # [1, positions, hidden]: the last layer's, what candidates are compared with
            prompt_ms = (time.perf_counter() - clock) * 1000.0
            while True:
                index = len(steps)
                processed = run_processors(setup.processors, state.sequences, logits, Context(setup.prompt_length))[-1]
                if bool(masked_rows(processed)[0]):
                    raise nothing_to("choose", index, setup)
                top_probs, top_ids = torch.topk(torch.softmax(processed, dim=-1), dim=-1, k=k)  # [1, k]
                clock = time.perf_counter()
                rows = lm.select(cache, torch.zeros(k, dtype=torch.long))
                cand_logits, cand_hidden, rows = lm.forward_layers(top_ids.view(-1, 1), rows)  # [k, vocab]
                forward_ms, clock = (time.perf_counter() - clock) * 1000.0 + prompt_ms, time.perf_counter()
                prompt_ms = 0.0
                ranking = rank(context, cand_hidden[-1], top_probs, alpha)
                ids = top_ids[0].tolist()
                token = ids[ranking.chosen]
                outcome = _Chosen(token=token, top_k=tuple(ids)).step(state, logits, index, setup)
                state = outcome.state
                text = [*setup.prompt_ids, *state.sequences[0, setup.prompt_length : -1].tolist()]
                record = Contrastive(alpha, tuple(
                    ContrastCandidate(t, setup.token_text(t), float(top_probs[0, j]), float(ranking.penalty[j]),
                                      int(ranking.similar_to[j]), text[int(ranking.similar_to[j])],
                                      float(ranking.score[j]))
                    for j, t in enumerate(ids)), ranking.chosen)
                step = replace(outcome.step, contrastive=record, forward_ms=forward_ms,
                               search_ms=(time.perf_counter() - clock) * 1000.0)
                steps.append(step)
                if on_step is not None:
                    on_step(step)
                if outcome.done or outcome.tokens is None:
                    break
                if should_stop is not None and should_stop():
                    stop = "stopped"
                    break
                chosen = torch.tensor([ranking.chosen])
                cache = lm.select(rows, chosen)
                logits = cand_logits[ranking.chosen : ranking.chosen + 1]
                context = torch.cat([context, cand_hidden[-1][ranking.chosen].unsqueeze(0)], dim=1)
    except KeyboardInterrupt:
        stop = "interrupted"
    greedy = Greedy()
    if stop == "running":
        stop = greedy.stop_reason(state)
    with torch.inference_mode():
        results = greedy.results(state, setup)
    return Run(tuple(steps), results, stop, (time.perf_counter() - began) * 1000.0)


CONTRASTIVE = register(StrategySpec(
    "contrastive", "of the top_k most probable tokens, the one least like the text so far: (1 - alpha) * p - alpha "
    "* max cosine similarity of hidden states", Greedy(), "rows", uses=frozenset({"contrastive"}),
    defaults={"top_k": 4}, rules=_rules, needs=frozenset({"hidden_states"}), driver=drive, check_model=check_model))
