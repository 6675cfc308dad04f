"""Invariants every trace keeps; ``check_trace`` lists the broken ones (tests, graders and loaders use it)."""

from __future__ import annotations

import math
from itertools import pairwise

from explorer.errors import TraceFormatError
from explorer.fork import Prefix, prefix_of, ranked_score
from explorer.strategies import REGISTRY, StrategySpec
from explorer.trace import PLACEHOLDER, Finished, Hypothesis, Step, Trace

__all__ = ["check_trace"]

TOLERANCE = 1e-4  # relative: float32 sums over many steps


def _spec(trace: Trace) -> StrategySpec | None:
    """The registry entry of the trace's strategy (``None`` for one this version does not know: its
    strategy-specific checks are skipped)."""
    return REGISTRY.get(trace.strategy)


def _close(a: float, b: float) -> bool:
    """Equal up to float32 accumulation error (relative for large magnitudes); NaN only matches NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))


def _tied(a: float, b: float) -> bool:
    """The same score (two NaN scores count as tied: format 1.0 traces recorded NaN for a row where every token was
    masked)."""
    return a == b or (math.isnan(a) and math.isnan(b))


def _contains(tokens: tuple[int, ...], needle: tuple[int, ...]) -> bool:
    """Whether ``needle`` occurs contiguously in ``tokens``."""
    return any(tokens[i : i + len(needle)] == needle for i in range(len(tokens) - len(needle) + 1))


def check_trace(trace: Trace) -> list[str]:
    """Every broken invariant, as a readable line; an empty list means the trace is consistent.

    - each hypothesis after the first step, and each finished entry, comes from a recorded candidate of its
      parent with the same token (the selected token is among the recorded candidates) and extends its parent's
      tokens, and every kept or finished candidate leads to one;
    - a hypothesis's score is its parent's score plus that candidate's score (cumulative sums), and so is a
      finished entry's;
    - a finished entry's ``length`` is its number of tokens, and its ``normalized_score`` is its score divided by
      ``length ** length_penalty`` in the beam family (the rows family, greedy and sample: the score itself);
    - each candidate's ``logprob`` plus its processors' adjustments gives its ``score``, and its ``total`` is its
      hypothesis's score plus its ``score``;
    - a candidate's ``rank`` is its place among the vocabulary by ``score`` (0 = best): within a hypothesis a higher
      score has a better rank, and no rank is better than the number of recorded candidates scoring higher; its
      ``raw_rank`` the same by its raw ``logprob``;
    - beams within a step (and group) are sorted by score, except in constrained search (sorted by bank);
    - steps are numbered 0, 1, 2, ...; a grafted branch's (:mod:`explorer.fork`) from its fork's step + 1, and
      every hypothesis, finished entry and result of it starts with its fixed tokens, its first hypotheses score
      what the fixed tokens scored (the forced candidate's total in the source), and its recorded log-prob is the
      sum of its path's;
    - results are sorted best first (a branch's by the score its search ranked them by, on the continuation), hold
      generated tokens only, end with eos exactly when they say so;
    - a result from a recorded finished entry holds its tokens and its ``normalized_score``;
    - a result marked as satisfying its constraints contains each of them;
    - a DoLa step contrasted its most divergent candidate layer, and its token is the best plausible contrast
      score's unless a processor moved it; a contrastive search step's winner has the highest score, each score is
      ``(1 - alpha) * prob - alpha * penalty``, and the winner is the token the step kept.

    A hypothesis or finished entry scoring at or below :data:`~explorer.trace.PLACEHOLDER` (the reference's -1e9
    filler beams) is not checked as a sum. Candidates with tied scores may share a rank (see ``_check_ranks``).

    >>> import explorer
    >>> check_trace(explorer.decode(explorer.load_model("tiny-random"), [5, 6], "beam", max_new_tokens=4))
    []
    """
    try:
        prefix = prefix_of(trace)
    except TraceFormatError as error:
        return [str(error)]
    problems = _check_numbering(trace, prefix)
    by_id: dict[int, Hypothesis] = {}
    for step in trace.steps:
        for hyp in step.hypotheses:
            by_id[hyp.id] = hyp
    first = trace.steps[0].index if trace.steps else 0
    for step in trace.steps:
        for hyp in step.hypotheses:
            problems += _check_parent(hyp, by_id, step.index, first)
            problems += _check_candidates(hyp, step.index)
            problems += _check_ranks(hyp, step.index)
        for fin in step.finished:
            problems += _check_finished(trace, fin, by_id.get(fin.hypothesis), step.index)
        problems += _check_order(trace, step.hypotheses, step.index)
        problems += _check_inside(trace, step)
    problems += _check_links(trace)
    problems += _check_results(trace)
    return problems


def _check_numbering(trace: Trace, prefix: Prefix | None) -> list[str]:
    """Steps are numbered in order from 0, a grafted branch's from its fork's step + 1; a branch's paths start
    with its fixed tokens, and its recorded prefix adds up."""
    first = 0 if prefix is None else prefix.first_step
    if [s.index for s in trace.steps] != list(range(first, first + len(trace.steps))):
        return [f"steps are not numbered from {first} in order: {[s.index for s in trace.steps][:8]}"]
    if prefix is None:
        return []
    problems = []
    fixed, n = prefix.token_ids, len(prefix.token_ids)
    paths = [("hypothesis", h.id, h.token_ids) for s in trace.steps for h in s.hypotheses] + [
        ("finished entry", f.id, f.token_ids) for s in trace.steps for f in s.finished] + [
        ("result", r.rank, r.token_ids) for r in trace.results]
    astray = [(what, ident) for what, ident, ids in paths if ids[:n] != fixed]
    if astray:
        problems.append(f"branch: {len(astray)} paths do not start with its fixed tokens, e.g. {astray[0][0]} "
                        f"{astray[0][1]}")
    roots = [h for s in trace.steps for h in s.hypotheses if h.parent is None]
    problems += [f"branch: first hypothesis {h.id} scores {h.score}, its fixed tokens {prefix.score}" for h in roots
                 if h.score > PLACEHOLDER and not _close(h.score, prefix.score)]
    forced = prefix.forced
    if forced is not None and not _close(forced.total, prefix.score):
        problems.append(f"branch: fixed tokens score {prefix.score}, the forced candidate's total {forced.total}")
    if prefix.logprob is not None and (any(c is None for c in prefix.path) or not _close(
            prefix.logprob, math.fsum(c.logprob for c in prefix.path if c is not None))):
        problems.append(f"branch: fixed tokens' log-prob {prefix.logprob} is not the sum of their candidates'")
    return problems


def _check_inside(trace: Trace, step: Step) -> list[str]:
    """DoLa's and contrastive search's records agree with themselves and with the token the step took."""
    problems = []
    taken = {c.token_id for h in step.hypotheses for c in h.candidates if c.fate in ("kept", "finished")}
    d = step.dola
    if d is not None:
        if d.chosen_layer not in d.layers or (len(d.layers) > 1 and d.divergences[d.layers.index(d.chosen_layer)]
                                               < max(d.divergences)):
            problems.append(f"step {step.index}: DoLa contrasted layer {d.chosen_layer}, not the most divergent")
        plausible = [c for c in d.candidates if c.plausible]
        if not plausible or any(c.contrast == -math.inf for c in plausible):
            problems.append(f"step {step.index}: DoLa recorded no plausible token, or one without a contrast score")
        if not trace.processors and plausible and max(plausible, key=lambda c: c.contrast).token_id not in taken:
            problems.append(f"step {step.index}: DoLa's best contrast score is not the token it took")
    c = step.contrastive
    if c is not None:
        scores = [x.score for x in c.candidates]
        if not scores or scores[c.chosen] < max(scores):
            problems.append(f"step {step.index}: contrastive search's winner does not have the highest score")
        if any(not _close(x.score, (1 - c.alpha) * x.prob - c.alpha * x.penalty) for x in c.candidates):
            problems.append(f"step {step.index}: a contrastive score is not (1 - alpha) * prob - alpha * penalty")
        if scores and c.candidates[c.chosen].token_id not in taken:
            problems.append(f"step {step.index}: contrastive search's winner is not the token the step took")
    return problems


def _check_links(trace: Trace) -> list[str]:
    """Kept candidates become the next step's hypotheses (or, in a round of assisted decoding, the next one in
    the step's chain); finished ones become that step's finished entries.

    A complete run keeps nothing at its last step, and its results come from recorded finished entries.
    """
    problems = []
    complete = trace.stop_reason not in ("stopped", "interrupted")
    finished_ids = {f.id for step in trace.steps for f in step.finished}
    for i, step in enumerate(trace.steps):
        later = {h.id for h in trace.steps[i + 1].hypotheses} if i + 1 < len(trace.steps) else set()
        if step.speculation is not None:  # a round of assisted decoding: its hypotheses form a chain
            later |= {h.id for h in step.hypotheses}
        here = {f.id for f in step.finished}
        for hyp in step.hypotheses:
            for c in hyp.candidates:
                if c.fate == "kept" and c.child not in later and (complete or i + 1 < len(trace.steps)):
                    problems.append(f"step {step.index}: kept candidate {c.token_id} of {hyp.id} leads nowhere")
                if c.fate == "finished" and c.child not in here:
                    problems.append(f"step {step.index}: finished candidate {c.token_id} of {hyp.id} has no entry")
    if complete:
        for r in trace.results:
            if r.source not in finished_ids:
                problems.append(f"result {r.rank} comes from {r.source}, not a recorded finished entry")
    return problems


def _check_parent(hyp: Hypothesis, by_id: dict[int, Hypothesis], index: int, first: int) -> list[str]:
    """The hypothesis extends a recorded candidate of its parent, and its score adds up (a parent is needed after
    the ``first`` step)."""
    if hyp.parent is None:
        return [] if index == first else [f"step {index}: hypothesis {hyp.id} has no parent"]
    parent = by_id.get(hyp.parent)
    if parent is None:
        return [f"step {index}: hypothesis {hyp.id} names a missing parent {hyp.parent}"]
    match = [c for c in parent.candidates if c.child == hyp.id]
    if not match and hyp.score <= PLACEHOLDER:
        # An ending kept as a beam (score -1e9) because too few continuations were possible: the reference does
        # this; its candidate is recorded as finished, and the zombie beam links to it by token.
        match = [c for c in parent.candidates if c.fate == "finished" and c.token_id == hyp.token_ids[-1]]
    if not match or match[0].token_id != hyp.token_ids[-1] or parent.token_ids != hyp.token_ids[:-1]:
        return [f"step {index}: hypothesis {hyp.id} is not a recorded candidate of {parent.id}"]
    if hyp.score > PLACEHOLDER and not _close(parent.score + match[0].score, hyp.score):
        return [f"step {index}: hypothesis {hyp.id} scores {hyp.score}, parent + token = "
                f"{parent.score + match[0].score}"]
    return []


def _check_finished(trace: Trace, fin: Finished, source: Hypothesis | None, index: int) -> list[str]:
    """The entry extends a recorded candidate of its hypothesis; its score, length and normalized score add up."""
    match = [] if source is None or not fin.token_ids else [
        c for c in source.candidates if c.child == fin.id and c.token_id == fin.token_ids[-1]]
    if source is None or not match or source.token_ids != fin.token_ids[:-1]:
        return [f"step {index}: finished entry {fin.id} has no matching recorded candidate"]
    if fin.length != len(fin.token_ids):
        return [f"step {index}: finished entry {fin.id} has length {fin.length} for {len(fin.token_ids)} tokens"]
    if fin.score <= PLACEHOLDER:
        return []
    if not _close(source.score + match[0].score, fin.score):
        return [f"step {index}: finished entry {fin.id} scores {fin.score}, hypothesis + token = "
                f"{source.score + match[0].score}"]
    spec = _spec(trace)
    if spec is None:
        return []
    if spec.family == "rows":
        expected, how = fin.score, "score"
    else:
        expected, how = fin.score / fin.length ** float(trace.params.get("length_penalty", 1.0)), \
            "score / length ** length_penalty"
    if not _close(expected, fin.normalized_score):
        return [f"step {index}: finished entry {fin.id}: normalized_score = {fin.normalized_score}, {how} = "
                f"{expected}"]
    return []


def _check_candidates(hyp: Hypothesis, index: int) -> list[str]:
    """Each candidate's adjustments explain its score, and its total is the hypothesis's score plus that."""
    problems = []
    for c in hyp.candidates:
        adjusted = c.logprob + sum(change for _, change in c.adjustments)
        if c.score > -math.inf and not _close(adjusted, c.score):
            problems.append(f"step {index}: hypothesis {hyp.id} token {c.token_id}: logprob + adjustments = "
                            f"{adjusted}, score = {c.score}")
        if not _close(hyp.score + c.score, c.total):
            problems.append(f"step {index}: hypothesis {hyp.id} token {c.token_id}: total = {c.total}, "
                            f"hypothesis score + score = {hyp.score + c.score}")
    return problems


def _check_ranks(hyp: Hypothesis, index: int) -> list[str]:
    """Candidates' ranks are places among the whole vocabulary (0 = best) by their processed ``score``, and their
    raw ranks (format 1.5) places by their raw ``logprob``.

    A strictly higher score has a strictly better rank, and no rank is better than the number of recorded candidates
    that score strictly higher. Tied scores may share a rank: the engine places the top ``record_top_k`` in
    ``torch.topk`` order but any other recorded candidate after every token that scores strictly higher.
    """
    problems = _check_places(hyp, index, "score", "rank")
    if all(c.raw_rank is not None for c in hyp.candidates):
        problems += _check_places(hyp, index, "logprob", "raw_rank")
    return problems


#: How a broken order reads, by the place checked: (what "higher" means, the verb of the place).
_PLACES = {"rank": ("scores", "ranks", "scoring higher"),
           "raw_rank": ("has a raw log-prob", "raw-ranks", "with a higher raw log-prob")}


def _check_places(hyp: Hypothesis, index: int, value: str, place: str) -> list[str]:
    """Candidates placed by ``place`` (``rank`` or ``raw_rank``) are in the order of their ``value``."""
    above, ranks, higher_words = _PLACES[place]
    ranked = sorted(hyp.candidates, key=lambda c: getattr(c, place))
    higher = 0  # how many recorded candidates score strictly higher than the current one
    for i, c in enumerate(ranked):
        v, r = getattr(c, value), getattr(c, place)
        if i and not _tied(getattr(ranked[i - 1], value), v):
            before = ranked[i - 1]
            if v > getattr(before, value) or r == getattr(before, place):
                hi, lo = (c, before) if v > getattr(before, value) else (before, c)
                return [f"step {index}: hypothesis {hyp.id} token {hi.token_id} {above} above token {lo.token_id} "
                        f"({getattr(hi, value)} > {getattr(lo, value)}) but {ranks} {getattr(hi, place)}, "
                        f"not before {getattr(lo, place)}"]
            higher = i
        if r < higher:
            return [f"step {index}: hypothesis {hyp.id} token {c.token_id} has {place.replace('_', ' ')} {r} < "
                    f"{higher}, the number of recorded candidates {higher_words}"]
    return []


def _check_order(trace: Trace, hyps: tuple[Hypothesis, ...], index: int) -> list[str]:
    """Beams come sorted by score within their group (not in constrained search, which sorts by bank).

    Beam-sample draws its continuations at random but keeps the best of them in order, as beam search does.
    """
    spec = _spec(trace)
    if spec is None or not spec.sorted_beams:
        return []
    groups: dict[int, list[float]] = {}
    for hyp in hyps:
        groups.setdefault(hyp.group, []).append(hyp.score)
    for group, scores in groups.items():
        if any(a < b for a, b in pairwise(scores)):
            return [f"step {index}: beams of group {group} are not sorted by score: {scores}"]
    return []


def _check_results(trace: Trace) -> list[str]:
    """Results: sorted, as their finished entries, generated tokens only, eos and constraints where claimed."""
    problems = []
    scores = [ranked_score(trace, r) for r in trace.results]
    if any(a < b for a, b in pairwise(scores)):
        problems.append(f"results are not sorted best first (as their search ranked them): {scores}")
    finished = {f.id: f for step in trace.steps for f in step.finished}
    eos = set(trace.eos_token_ids)
    for r in trace.results:
        fin = finished.get(r.source) if r.source is not None else None
        if fin is not None and r.token_ids != fin.token_ids:
            problems.append(f"result {r.rank}: tokens {list(r.token_ids)} differ from its finished entry {fin.id}'s "
                            f"{list(fin.token_ids)}")
        if fin is not None and not _close(r.score, fin.normalized_score):
            problems.append(f"result {r.rank} scores {r.score}, its finished entry {fin.id} has normalized_score "
                            f"{fin.normalized_score}")
        ends = bool(r.token_ids) and r.token_ids[-1] in eos
        if ends != r.ended_with_eos or any(t in eos for t in r.token_ids[:-1]):
            problems.append(f"result {r.rank}: eos placement does not match ended_with_eos={r.ended_with_eos}")
        if len(r.token_ids) > int(trace.params.get("max_new_tokens", len(r.token_ids))):
            problems.append(f"result {r.rank}: more tokens than max_new_tokens")
        if r.constraints_satisfied:
            for c in trace.constraints:
                options = [tuple(c["token_ids"])] if c["kind"] == "phrase" else [tuple(o) for o in c["options"]]
                if not any(_contains(r.token_ids, o) for o in options):
                    problems.append(f"result {r.rank}: marked as satisfying its constraints but misses {c}")
    return problems
