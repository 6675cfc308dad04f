"""One scoring vocabulary for every view: a path's log-prob (the model's), its score (what the strategy ranks by).

- **log-prob**: the summed log-probability the model gives the generated tokens, before any processor. The same
  quantity for every strategy: of two results, the one with the higher log-prob is the one the model finds more
  likely.
- **score**: what the strategy ranks by. A token's score is its log-prob after the processors (repetition penalty,
  temperature, the diversity penalty of diverse beam search, ...); a hypothesis's score is the sum of its tokens'.
  The beam family ranks finished hypotheses by ``summed token scores / length ** length_penalty``; the other
  strategies never length-penalise, so their result's score is the plain sum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from explorer.trace import Candidate, Trace

__all__ = ["DIVERSITY", "LOGPROB_MEANS", "PathScores", "length_penalty", "path_scores", "score_formula",
           "score_means"]

#: The name of the diversity penalty's adjustment in a candidate's ``adjustments``.
DIVERSITY = "diversity_penalty"

#: What "log-prob" means, in one line for captions and legends.
LOGPROB_MEANS = ("log-prob: the model's summed log-probability of the generated tokens, before any processor "
                 "(higher = more likely; comparable across strategies)")


@dataclass(frozen=True)
class PathScores:
    """A path's log-prob (``None`` when a token's candidate was not recorded) and the diversity penalty's part of
    its summed token scores (``None`` when no token carried that adjustment: not a diverse beam search)."""

    logprob: float | None
    diversity: float | None


def path_scores(tokens: Iterable[Candidate | None]) -> PathScores:
    """Sum the model's log-probs and the diversity penalty's adjustments of a path's candidates (``None``: a token
    whose candidate was not recorded).

    >>> import explorer
    >>> from explorer.figures._paths import result_path
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=3)
    >>> scores = path_scores(result_path(t, t.results[0]).tokens)
    >>> abs(scores.logprob - t.results[0].score) < 1e-5, scores.diversity
    (True, None)
    """
    logprob: float | None = 0.0
    diversity: float | None = None
    for cand in tokens:
        if cand is None:
            logprob = None
            continue
        if logprob is not None:
            logprob += cand.logprob
        for name, value in cand.adjustments:
            if name == DIVERSITY:
                diversity = (diversity or 0.0) + value
    return PathScores(logprob, diversity)


def length_penalty(trace: Trace) -> float | None:
    """The exponent of the length penalty ``trace``'s finished scores were divided by (``None``: the strategy does
    not length-penalise; a strategy this version does not know is taken as one that does not).

    >>> import explorer
    >>> m = explorer.load_model("tiny-random")
    >>> [length_penalty(explorer.decode(m, [5], strategy=s, max_new_tokens=1)) for s in ("greedy", "beam")]
    [None, 1.0]
    """
    from explorer.strategies import registry

    if trace.strategy not in registry.names() or registry.get(trace.strategy).family != "beam":
        return None
    return float(trace.params.get("length_penalty", 1.0))


def score_formula(trace: Trace) -> str:
    """How ``trace``'s results are scored, in one line (plain text); for a grafted branch (:mod:`explorer.fork`),
    that its search ranked the continuation alone.

    >>> import explorer
    >>> m = explorer.load_model("tiny-random")
    >>> score_formula(explorer.decode(m, [5], strategy="beam", max_new_tokens=1, length_penalty=0.5))
    'score = summed token scores / length^0.5'
    >>> score_formula(explorer.decode(m, [5], strategy="greedy", max_new_tokens=1))
    'score = summed token scores (no length penalty)'
    """
    from explorer.fork import prefix_of

    lp = length_penalty(trace)
    text = "score = summed token scores" + (" (no length penalty)" if lp is None else f" / length^{lp:g}")
    if prefix_of(trace) is not None:
        text += "; a branch's sum and length include its fixed tokens, but its search ranked the continuation alone"
    return text


def score_means(traces: Iterable[Trace]) -> str:
    """What "score" means for these traces, once for all of them (plain text): the formula of each strategy, and
    the diversity penalty's part where a diverse search ran, and how a grafted branch (:mod:`explorer.fork`) ranked.

    >>> import explorer
    >>> m = explorer.load_model("tiny-random")
    >>> text = score_means([explorer.decode(m, [5], strategy=s, max_new_tokens=1) for s in ("greedy", "beam")])
    >>> text.split("; ")[1:]
    ['greedy: no length penalty', 'beam: / length^1']
    """
    from explorer.fork import RANKED_ON, prefix_of

    parts: dict[str, str] = {}
    diverse = branch = False
    for trace in traces:
        lp = length_penalty(trace)
        parts.setdefault(trace.strategy, "no length penalty" if lp is None else f"/ length^{lp:g}")
        diverse = diverse or float(trace.params.get("diversity_penalty") or 0.0) != 0.0
        branch = branch or prefix_of(trace) is not None
    text = ("score: what the strategy ranks by, the summed token scores (log-probs after the processors); "
            + "; ".join(f"{name}: {how}" for name, how in parts.items()))
    if diverse:
        text += "; diversity: the diversity penalty's part of the summed token scores (already in the score)"
    if branch:
        text += f"; {RANKED_ON}"
    return text

