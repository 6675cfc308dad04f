"""Recording one round of assisted decoding: a chain of hypotheses (one per token the round added) and its
:class:`~explorer.trace.Speculation` (what was drafted, each verdict and why, the target's own token)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from explorer.strategies._drafts import Draft
from explorer.strategies._entropy import row_entropies
from explorer.strategies._record import Scored, Values, read_candidates
from explorer.strategies._verify import Verdict as Verification
from explorer.strategies.base import ENDS, Ending, Setup
from explorer.trace import Candidate, Drafted, Fate, Finished, Hypothesis, Speculation, Step, Verdict

__all__ = ["Round", "Text", "record_round"]

#: Tokens of the residual recorded after a rejection.
RESIDUAL_TOP = 5


@dataclass(frozen=True)
class Text:
    """The run so far: its tokens (prompt included), summed score, the live hypothesis, and the ids used."""

    ids: tuple[int, ...]
    score: float = 0.0
    hyp_id: int = 0
    parent: int | None = None
    next_id: int = 1
    finished: Finished | None = None


@dataclass(frozen=True)
class Round:
    """Everything one round produced, for the record: the draft, the target's scores at each of its ``k + 1``
    positions, the verdict, the tokens kept after eos and the budget cut it, and where the draft comes from."""

    index: int
    draft: Draft
    scored: tuple[Scored, ...]
    verdict: Verification
    kept: tuple[int, ...]
    source: str
    sampling: bool
    next_length: int


def _ending(text: Text, token: int, last: bool, setup: Setup, time_up: bool) -> Ending | None:
    """Why the text ends with ``token``: eos; at the round's last token the stop strings and the time limit (the
    reference checks its stopping criteria once per round); the token budget."""
    if token in setup.eos_token_ids:
        return "eos"
    if last:
        criterion = setup.criteria.reason([*text.ids, token], time_up)
        if criterion is not None:
            return criterion
    return "max_length" if len(text.ids) + 1 - setup.prompt_length >= setup.params.max_new_tokens else None


def record_round(text: Text, r: Round, setup: Setup) -> tuple[Step, Text]:
    """The step of round ``r`` and the text after it."""
    hyps: list[Hypothesis] = []
    time_up = setup.criteria.time_up()
    for j, token in enumerate(r.kept):
        drafted = r.draft.tokens[j] if j < len(r.draft.tokens) else None
        values = read_candidates(r.scored[j], [0], setup.params.record_top_k,
                                 {0: [token] + ([drafted] if drafted is not None else [])}, {(0, token)})[0]
        why = _ending(text, token, j == len(r.kept) - 1, setup, time_up)
        child = text.next_id
        role = "accepted" if j < r.verdict.matches else ("correction" if drafted is not None else "bonus")
        cands = tuple(_candidate(v, token, drafted, role, why, child, text.score, r.sampling, setup) for v in values)
        hyps.append(Hypothesis(text.hyp_id, text.parent, 0, 0, text.ids[setup.prompt_length :], text.score, cands,
                               entropy=row_entropies(r.scored[j].final, [0])[0]))
        score = text.score + next(v.score for v in values if v.token_id == token)
        generated = (*text.ids[setup.prompt_length :], token)
        finished = None if why is None else Finished(child, text.hyp_id, r.index, 0, generated, score, score,
                                                     len(generated), why, True)
        parent, hyp_id = (text.parent, text.hyp_id) if why is not None else (text.hyp_id, child)
        text = Text((*text.ids, token), score, hyp_id, parent, child + 1, finished)
        if finished is not None:
            break
    done = () if text.finished is None else (text.finished,)
    step = Step(r.index, tuple(hyps), done, tuple(f.id for f in done), speculation=_speculation(r, setup))
    return step, text


_CHOSEN = {
    (False, "accepted"): "drafted, and the target's best token too",
    (False, "correction"): "the target's best token (a correction)",
    (False, "bonus"): "the target's best token (a bonus after a fully accepted draft)",
    (True, "accepted"): "drafted, and accepted",
    (True, "correction"): "drawn by the target (a correction)",
    (True, "bonus"): "drawn by the target (a bonus after a fully accepted draft)",
}


def _candidate(v: Values, chosen: int, drafted: int | None, role: str, why: Ending | None, child: int,
               parent_score: float, sampling: bool, setup: Setup) -> Candidate:
    """A recorded candidate at one position: the token the round kept there, the drafted token it refused, the rest."""
    text, total = setup.token_text(v.token_id), parent_score + v.score
    if v.token_id == chosen:
        fate: Fate = "kept" if why is None else "finished"
        reason = _CHOSEN[(sampling, role)] + ("" if why is None else "; " + ENDS[why])
        return v.candidate(text, total, fate, reason, child)
    if v.score == -math.inf:
        return v.candidate(text, total, "masked",
                         f"masked by {v.masked_by}")
    if v.token_id == drafted:
        return v.candidate(text, total, "pruned",
                         "drafted, and rejected by the target")
    why_not = "not drawn" if sampling else "not the highest score"
    return v.candidate(text, total, "pruned", why_not)


def _speculation(r: Round, setup: Setup) -> Speculation:
    """The round's :class:`Speculation`: every drafted token's verdict, the target's own token, the residual."""
    k, matches, kept = len(r.draft.tokens), r.verdict.matches, len(r.kept)
    q = None if r.draft.scores is None else torch.softmax(r.draft.scores, dim=-1)
    drafted = []
    for i, token in enumerate(r.draft.tokens):
        p = float(torch.exp(r.scored[i].final[0, token]))
        qi = None if q is None else float(q[i, token])
        draw = None if r.verdict.draws is None else r.verdict.draws[i]
        verdict, reason = _verdict(i, matches, kept, p, qi, draw, r, setup)
        drafted.append(Drafted(token, setup.token_text(token), qi, p, verdict, reason, draw))
    added = r.verdict.tokens[matches] if kept == matches + 1 else None
    kind: Literal["bonus", "correction"] | None = None
    if added is not None:
        kind = "correction" if matches < k else "bonus"
    residual: tuple[tuple[int, float], ...] = ()
    if r.verdict.residual is not None:
        top = torch.topk(r.verdict.residual, min(RESIDUAL_TOP, setup.vocab_size))
        residual = tuple((int(t), float(pr)) for t, pr in zip(top.indices, top.values, strict=True) if pr > 0)
    return Speculation(r.source, tuple(drafted), added, kind, residual, r.draft.asked, r.next_length, r.draft.ms)


def _verdict(i: int, matches: int, kept: int, p: float, q: float | None, draw: float | None, r: Round,
             setup: Setup) -> tuple[Verdict, str]:
    """Drafted token ``i``'s verdict and the reason in words."""
    if i > matches:
        return "unchecked", "after a rejection: not checked"
    if i == matches:
        target = setup.token_text(r.verdict.tokens[matches])
        if draw is not None and q is not None:
            return "rejected", f"draw {draw:.3f} > p/q = {p / q:.3f}"
        return "rejected", f"the target {'drew' if r.sampling else 'prefers'} {target!r}"
    if i >= kept:
        return "dropped", "accepted, but the text ended before it (eos or the token budget)"
    if draw is not None and q is not None:
        return "accepted", f"draw {draw:.3f} <= p/q = {p / q:.3f}"
    return "accepted", "the target drew it too" if r.sampling else "the target's best token too"

