"""``check_trace`` accepts real traces of every strategy and refuses each way of breaking one, one problem at a time."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

import explorer
from explorer import invariants
from explorer.fork import ForkPoint, decode_branch
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.models.table import TableModel
from explorer.strategies import REGISTRY
from explorer.trace import PLACEHOLDER, Candidate, Finished, Hypothesis, Trace

PROMPT = [5, 6, 7, 8, 9]
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "greedy": ("greedy", {"repetition_penalty": 1.3}),
    "sample": ("sample", {"seed": 3, "top_k": 40, "num_return_sequences": 3}),
    "beam": ("beam", {"num_beams": 4, "num_return_sequences": 3}),
    "beam-sample": ("beam-sample", {"seed": 11, "num_beams": 4, "num_return_sequences": 3, "top_k": 50}),
    "diverse": ("diverse", {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 0.7,
                            "num_return_sequences": 4}),
    "constrained": ("constrained", {"num_beams": 4, "constraints": [[400, 401], [[500, 501], [77]]]}),
}
TINY = tuple(RUNS)
UNCONSTRAINED = tuple(run for run in TINY if run != "constrained")  # a changed result token unmakes no constraint
BRANCH = ("branch",)
MISSING = 10**6  # an id no record has


@pytest.fixture(scope="module")
def traces(tiny: CausalLM, toy: TableModel) -> dict[str, Trace]:
    """Valid traces: every strategy on tiny-random (8 steps, no eos), and the toy beam search, which ends on eos."""
    out = {name: explorer.decode(tiny, PROMPT, strategy, max_new_tokens=8, **params)
           for name, (strategy, params) in RUNS.items()}
    out["toy-beam"] = explorer.decode(toy, "The", "beam", num_beams=2, max_new_tokens=5)
    out["dola"] = explorer.decode(tiny, PROMPT, "dola", dola_layers=(0, 1), max_new_tokens=8)
    out["contrastive"] = explorer.decode(tiny, PROMPT, "contrastive", penalty_alpha=0.6, top_k=4, max_new_tokens=8)
    hyp = out["beam"].steps[2].hypotheses[0]  # a branch forced there, grafted onto its source (first step: 3)
    out["branch"] = decode_branch(tiny, ForkPoint(out["beam"], hyp, hyp.candidates[1].token_id))
    return out


# --- editing frozen records -------------------------------------------------------------------------------------


def _with_hyp(trace: Trace, hyp_id: int, **changes: Any) -> Trace:
    """``trace`` with the hypothesis ``hyp_id`` changed."""
    steps = tuple(replace(s, hypotheses=tuple(replace(h, **changes) if h.id == hyp_id else h for h in s.hypotheses))
                  for s in trace.steps)
    return replace(trace, steps=steps)


def _with_candidate(trace: Trace, hyp: Hypothesis, cand: Candidate, **changes: Any) -> Trace:
    """``trace`` with one candidate of ``hyp`` changed."""
    return _with_hyp(trace, hyp.id, candidates=tuple(replace(c, **changes) if c is cand else c
                                                     for c in hyp.candidates))


def _with_finished(trace: Trace, fin: Finished, **changes: Any) -> Trace:
    """``trace`` with the finished entry ``fin`` changed."""
    steps = tuple(replace(s, finished=tuple(replace(f, **changes) if f is fin else f for f in s.finished))
                  for s in trace.steps)
    return replace(trace, steps=steps)


def _with_result(trace: Trace, rank: int, **changes: Any) -> Trace:
    """``trace`` with its result of rank ``rank`` changed."""
    return replace(trace, results=tuple(replace(r, **changes) if r.rank == rank else r for r in trace.results))


def _with_entry(trace: Trace, fin: Finished, **changes: Any) -> Trace:
    """``trace`` with the finished entry ``fin`` changed, and the results made from it following it."""
    new = replace(fin, **changes)
    results = tuple(replace(r, token_ids=new.token_ids, score=new.normalized_score) if r.source == fin.id else r
                    for r in trace.results)
    return replace(_with_finished(trace, fin, **changes), results=results)


def _stopped(trace: Trace) -> Trace:
    """``trace`` as if stopped from outside after its last step: its results come from beams still running, which
    no finished entry records (so only the checks of results themselves judge them)."""
    return replace(trace, stop_reason="stopped", results=tuple(replace(r, source=None) for r in trace.results))


def _retokened(trace: Trace, hyp: Hypothesis, tokens: tuple[int, ...]) -> Trace:
    """``trace`` with the tokens of ``hyp`` (a hypothesis of the last step) changed, and with them those of the
    finished entries it made and of the results made from those: only ``hyp`` itself no longer fits its parent."""
    entries = {f.id for s in trace.steps for f in s.finished if f.hypothesis == hyp.id}
    steps = tuple(replace(s, finished=tuple(replace(f, token_ids=(*tokens, f.token_ids[-1])) if f.id in entries else f
                                            for f in s.finished)) for s in trace.steps)
    results = tuple(replace(r, token_ids=(*tokens, r.token_ids[-1])) if r.source in entries else r
                    for r in trace.results)
    return _with_hyp(replace(trace, steps=steps, results=results), hyp.id, token_ids=tokens)


def _other_token(trace: Trace, *avoid: int) -> int:
    """A token id that is neither eos nor any of ``avoid``."""
    return next(t for t in range(3, 1000) if t not in avoid and t not in trace.eos_token_ids)


# --- where to break a trace -------------------------------------------------------------------------------------


def _last_hyp(trace: Trace) -> Hypothesis:
    """The last hypothesis of the last step: it has a parent, and no hypothesis extends it."""
    hyp = trace.steps[-1].hypotheses[-1]
    assert hyp.parent is not None
    assert len(hyp.token_ids) >= 2
    return hyp


def _lowerable(trace: Trace) -> Hypothesis:
    """A hypothesis of the last step that can score lower without unsorting anything: the last beam of its group
    (where beams are sorted), and no result but the last one comes from it."""
    hyps = trace.steps[-1].hypotheses
    tails = {h.group: h.id for h in hyps}
    returned = {r.source: r.rank for r in trace.results}

    def harmless(hyp: Hypothesis) -> bool:
        ranks = {returned[f.id] for f in trace.steps[-1].finished if f.hypothesis == hyp.id and f.id in returned}
        last_beam = not REGISTRY[trace.strategy].sorted_beams or hyp.id in tails.values()
        return ranks <= {len(trace.results) - 1} and last_beam

    return next(h for h in hyps if h.parent is not None and harmless(h))


def _pruned(trace: Trace) -> tuple[Hypothesis, Candidate]:
    """A pruned candidate (with a finite score) of the first step, which is not the last one."""
    assert len(trace.steps) > 1
    return next((h, c) for h in trace.steps[0].hypotheses for c in h.candidates
                if c.fate == "pruned" and c.score > float("-inf"))


def _first_finished(trace: Trace) -> Finished:
    """The first recorded finished entry that no result comes from (the first one if every entry is returned)."""
    entries = [f for s in trace.steps for f in s.finished]
    returned = {r.source for r in trace.results}
    return next((f for f in entries if f.id not in returned), entries[0])


def _last_returned(trace: Trace) -> Finished:
    """The finished entry the last result comes from (lowering both keeps the results sorted)."""
    last = trace.results[-1]
    return next(f for s in trace.steps for f in s.finished if f.id == last.source)


def _ranked(trace: Trace) -> Hypothesis:
    """A hypothesis of the first step whose candidates all score differently (the finite ones, ranked 0, 1, ...)."""
    return next(h for h in trace.steps[0].hypotheses
                if len({c.score for c in h.candidates}) == len(h.candidates) >= 3)


# --- one break per check ----------------------------------------------------------------------------------------


def _orphan(trace: Trace) -> Trace:
    return _with_hyp(trace, _last_hyp(trace).id, parent=None)


def _missing_parent(trace: Trace) -> Trace:
    return _with_hyp(trace, _last_hyp(trace).id, parent=MISSING)


def _unlinked(trace: Trace) -> Trace:
    """Claims a real hypothesis as parent (the first root), none of whose candidates became this one."""
    hyp, root = _last_hyp(trace), trace.steps[0].hypotheses[0]
    assert hyp.parent != root.id
    return _with_hyp(trace, hyp.id, parent=root.id)


def _wrong_last_token(trace: Trace) -> Trace:
    hyp = _last_hyp(trace)
    return _retokened(trace, hyp, (*hyp.token_ids[:-1], _other_token(trace, hyp.token_ids[-1])))


def _wrong_prefix(trace: Trace) -> Trace:
    hyp = _last_hyp(trace)
    return _retokened(trace, hyp, (_other_token(trace, hyp.token_ids[0]), *hyp.token_ids[1:]))


def _score_not_cumulative(trace: Trace) -> Trace:
    """Lowers a hypothesis's score and with it everything summed from it (its candidates' totals, its finished entries
    and the results made from them): only its own sum is wrong."""
    hyp = _lowerable(trace)
    penalty = 0.0 if REGISTRY[trace.strategy].family == "rows" else float(trace.params["length_penalty"])
    broken = _with_hyp(trace, hyp.id, score=hyp.score - 1.0,
                       candidates=tuple(replace(c, total=c.total - 1.0) for c in hyp.candidates))
    for fin in [f for s in broken.steps for f in s.finished if f.hypothesis == hyp.id]:
        broken = _with_entry(broken, fin, score=fin.score - 1.0,
                             normalized_score=fin.normalized_score - 1.0 / fin.length**penalty)
    return broken


def _logprob_off(trace: Trace) -> Trace:
    hyp, cand = _pruned(trace)  # its raw rank dropped: a moved log-prob breaks the raw order too (checked apart)
    return _with_candidate(trace, hyp, cand, logprob=cand.logprob + 0.5, raw_rank=None)


def _adjustment_off(trace: Trace) -> Trace:
    hyp, cand = _pruned(trace)
    assert cand.adjustments, "this run should have a processor"
    (name, change), *rest = cand.adjustments
    return _with_candidate(trace, hyp, cand, adjustments=((name, change + 0.5), *rest))


def _entry_without_source(trace: Trace) -> Trace:
    return _with_finished(trace, _first_finished(trace), hypothesis=MISSING)


def _entry_token_differs(trace: Trace) -> Trace:
    fin = _first_finished(trace)
    return _with_entry(trace, fin, token_ids=(*fin.token_ids[:-1], _other_token(trace, fin.token_ids[-1])))


def _entry_prefix_differs(trace: Trace) -> Trace:
    """The entry (and the result made from it) no longer extends its hypothesis's tokens."""
    fin = _last_returned(trace)
    tokens = (_other_token(trace, fin.token_ids[0]), *fin.token_ids[1:])
    return _with_result(_with_finished(trace, fin, token_ids=tokens), trace.results[-1].rank, token_ids=tokens)


def _entry_length_off(trace: Trace) -> Trace:
    fin = _first_finished(trace)
    return _with_finished(trace, fin, length=fin.length + 1)


def _entry_score_off(trace: Trace) -> Trace:
    fin = _first_finished(trace)
    assert fin.score > PLACEHOLDER
    return _with_finished(trace, fin, score=fin.score - 1.0)


def _entry_normalized_off(trace: Trace) -> Trace:
    """Lowers an entry's normalized score and the (last) result made from it alike: only the entry is wrong."""
    fin = _last_returned(trace)
    last = trace.results[-1]
    broken = _with_finished(trace, fin, normalized_score=fin.normalized_score - 1.0)
    return _with_result(broken, last.rank, score=last.score - 1.0)


def _total_off(trace: Trace) -> Trace:
    hyp, cand = _pruned(trace)
    return _with_candidate(trace, hyp, cand, total=cand.total - 1.0)


def _ranks_swapped(trace: Trace) -> Trace:
    """The best and the worst recorded candidate of a hypothesis trade ranks."""
    hyp = _ranked(trace)
    best, worst = min(hyp.candidates, key=lambda c: c.rank), max(hyp.candidates, key=lambda c: c.rank)
    ranks = {best.token_id: worst.rank, worst.token_id: best.rank}
    return _with_hyp(trace, hyp.id, candidates=tuple(replace(c, rank=ranks.get(c.token_id, c.rank))
                                                     for c in hyp.candidates))


def _rank_shared(trace: Trace) -> Trace:
    """The second best candidate claims the best one's rank, with a lower score."""
    hyp = _ranked(trace)
    first, second = sorted(hyp.candidates, key=lambda c: c.rank)[:2]
    return _with_candidate(trace, hyp, second, rank=first.rank)


def _rank_negative(trace: Trace) -> Trace:
    hyp = _ranked(trace)
    best = min(hyp.candidates, key=lambda c: c.rank)
    return _with_candidate(trace, hyp, best, rank=-1)


def _result_tokens_differ(trace: Trace) -> Trace:
    best = trace.results[0]
    return _with_result(trace, 0, token_ids=(_other_token(trace, *best.token_ids), *best.token_ids[1:]))


def _result_score_differs(trace: Trace) -> Trace:
    return _with_result(trace, 0, score=trace.results[0].score + 1.0)


def _unsorted_beams(trace: Trace) -> Trace:
    """Swaps the first two beams of one group (with different scores) in one step."""
    for step in trace.steps:
        hyps = list(step.hypotheses)
        for i, a in enumerate(hyps):
            j = next((j for j in range(i + 1, len(hyps)) if hyps[j].group == a.group), None)
            if j is not None and hyps[j].score < a.score:
                hyps[i], hyps[j] = hyps[j], a
                steps = tuple(replace(s, hypotheses=tuple(hyps)) if s is step else s for s in trace.steps)
                return replace(trace, steps=steps)
    raise AssertionError("no step with two beams of different scores in one group")


def _kept_leads_nowhere(trace: Trace) -> Trace:
    hyp, cand = _pruned(trace)
    return _with_candidate(trace, hyp, cand, fate="kept", child=None)


def _finished_without_entry(trace: Trace) -> Trace:
    hyp, cand = _pruned(trace)
    return _with_candidate(trace, hyp, cand, fate="finished", child=None)


def _result_from_nowhere(trace: Trace) -> Trace:
    assert trace.stop_reason not in ("stopped", "interrupted")  # a stopped run's results need no finished entry
    return _with_result(trace, 0, source=MISSING)


def _unsorted_results(trace: Trace) -> Trace:
    results = list(trace.results)
    i = next(i for i in range(len(results) - 1) if results[i].score > results[i + 1].score)
    results[i], results[i + 1] = results[i + 1], results[i]
    return replace(trace, results=tuple(results))


def _claims_eos(trace: Trace) -> Trace:
    best = trace.results[0]
    assert not best.ended_with_eos
    return _with_result(trace, 0, ended_with_eos=True)


def _hides_eos(trace: Trace) -> Trace:
    best = trace.results[0]
    assert best.ended_with_eos
    assert best.token_ids[-1] in trace.eos_token_ids
    return _with_result(trace, 0, ended_with_eos=False)


def _eos_inside(trace: Trace) -> Trace:
    best = trace.results[0]
    return _with_result(_stopped(trace), 0, token_ids=(trace.eos_token_ids[0], *best.token_ids[1:]))


def _too_long(trace: Trace) -> Trace:
    best = trace.results[0]
    assert len(best.token_ids) == trace.params["max_new_tokens"]
    return _with_result(_stopped(trace), 0, token_ids=(_other_token(trace), *best.token_ids))


def _absent(trace: Trace) -> list[int]:
    """Two tokens that the best result does not hold."""
    held = trace.results[0].token_ids
    first = _other_token(trace, *held)
    return [first, _other_token(trace, *held, first)]


def _phrase_missing(trace: Trace) -> Trace:
    assert trace.results[0].constraints_satisfied is True
    phrase, either = trace.constraints
    assert phrase["kind"] == "phrase"
    return replace(trace, constraints=({**phrase, "token_ids": _absent(trace)}, either))


def _no_option_present(trace: Trace) -> Trace:
    assert trace.results[0].constraints_satisfied is True
    phrase, either = trace.constraints
    assert either["kind"] == "any"
    return replace(trace, constraints=(phrase, {**either, "options": [[t] for t in _absent(trace)]}))


def _with_step(trace: Trace, index: int, **changes: Any) -> Trace:
    """``trace`` with step ``index`` changed."""
    return replace(trace, steps=tuple(replace(s, **changes) if s.index == index else s for s in trace.steps))


def _dola_other_layer(trace: Trace) -> Trace:
    d = trace.steps[0].dola
    assert d is not None
    assert d.divergences[0] != d.divergences[1]
    other = next(layer for layer in d.layers if layer != d.chosen_layer)
    return _with_step(trace, 0, dola=replace(d, chosen_layer=other))


def _dola_nothing_plausible(trace: Trace) -> Trace:
    d = trace.steps[0].dola
    assert d is not None
    return _with_step(trace, 0, dola=replace(d, candidates=tuple(replace(c, plausible=False) for c in d.candidates)))


def _dola_better_contrast_elsewhere(trace: Trace) -> Trace:
    d = trace.steps[0].dola
    assert d is not None
    assert not trace.processors
    cut = next(c for c in d.candidates if not c.plausible)
    better = replace(cut, plausible=True, contrast=1e9)
    return _with_step(trace, 0, dola=replace(d, candidates=tuple(better if c is cut else c for c in d.candidates)))


def _contrastive_loser_wins(trace: Trace) -> Trace:
    c = trace.steps[0].contrastive
    assert c is not None
    loser = min(range(len(c.candidates)), key=lambda j: c.candidates[j].score)
    ids = [x.token_id for x in c.candidates]
    ids[loser], ids[c.chosen] = ids[c.chosen], ids[loser]  # the step's token stays the winner's: only the choice is off
    swapped = tuple(replace(x, token_id=t) for x, t in zip(c.candidates, ids, strict=True))
    return _with_step(trace, 0, contrastive=replace(c, candidates=swapped, chosen=loser))


def _contrastive_score_off(trace: Trace) -> Trace:
    c = trace.steps[0].contrastive
    assert c is not None
    last = c.candidates[-1]
    return _with_step(trace, 0, contrastive=replace(c, candidates=(*c.candidates[:-1], replace(last, score=-5.0))))


def _contrastive_winner_not_taken(trace: Trace) -> Trace:
    c = trace.steps[0].contrastive
    assert c is not None
    winner = c.candidates[c.chosen]
    moved = replace(winner, token_id=_other_token(trace, *(x.token_id for x in c.candidates)))
    return _with_step(trace, 0, contrastive=replace(c, candidates=tuple(moved if x is winner else x
                                                                          for x in c.candidates)))


def _with_record(trace: Trace, **changes: Any) -> Trace:
    """A branch with its ``meta["branch"]`` record changed."""
    return replace(trace, meta={**trace.meta, "branch": {**trace.meta["branch"], **changes}})


def _with_forced(trace: Trace, **changes: Any) -> Trace:
    """A branch whose record says the forced token's candidate (and, for ``token_id``, the forced token) differs."""
    path = list(trace.meta["branch"]["path"])
    path[-1] = {**path[-1], **changes}
    return _with_record(trace, path=path, **({"token_id": changes["token_id"]} if "token_id" in changes else {}))


def _renumbered(trace: Trace) -> Trace:
    """A branch whose steps are numbered from one too early."""
    return replace(trace, steps=tuple(replace(s, index=s.index - 1) for s in trace.steps))


def _fixed_score_off(trace: Trace) -> Trace:
    """A branch whose record says its fixed tokens (and the forced candidate) scored more than its paths say."""
    record = trace.meta["branch"]
    return _with_forced(_with_record(trace, score=record["score"] + 1), total=record["path"][-1]["total"] + 1)


@dataclass(frozen=True)
class Break:
    """One way to break a trace, the message ``check_trace`` must give for it, and the runs it applies to."""

    name: str
    edit: Callable[[Trace], Trace]
    message: str
    runs: tuple[str, ...] = TINY


NOT_A_CANDIDATE = r"step \d+: hypothesis \d+ is not a recorded candidate of \d+$"
NO_ENTRY_MATCH = r"step \d+: finished entry \d+ has no matching recorded candidate$"
RANK_ORDER = r"step 0: hypothesis \d+ token \d+ scores above token \d+ \(\S+ > \S+\) but ranks \d+, not before \d+$"
EOS = r"^result 0: eos placement does not match ended_with_eos="
# Every check of explorer/invariants.py, in its order there: each one can be broken through dataclasses.replace
# (none is out of reach). What it deliberately lets pass is not a check: masked (-inf) candidates' sums, the
# score of a -1e9 placeholder beam or finished entry, the links and result sources of a stopped run, the order of
# constrained beams, tied candidates sharing a rank.
BREAKS = [
    # _check_parent
    Break("no-parent-after-step-0", _orphan, r"step \d+: hypothesis \d+ has no parent$"),
    Break("missing-parent", _missing_parent, rf"hypothesis \d+ names a missing parent {MISSING}$"),
    Break("parent-has-no-such-candidate", _unlinked, NOT_A_CANDIDATE),
    Break("last-token-is-not-the-candidate", _wrong_last_token, NOT_A_CANDIDATE),
    Break("tokens-do-not-extend-the-parent", _wrong_prefix, NOT_A_CANDIDATE),
    Break("score-not-parent-plus-token", _score_not_cumulative, r"hypothesis \d+ scores \S+, parent \+ token = \S+$"),
    # _check_candidates
    Break("logprob-does-not-give-score", _logprob_off, r"token \d+: logprob \+ adjustments = \S+, score = \S+$"),
    Break("adjustment-does-not-give-score", _adjustment_off, r"token \d+: logprob \+ adjustments = \S+, score = \S+$",
          ("greedy", "sample")),
    Break("total-not-hypothesis-plus-score", _total_off,
          r"^step 0: hypothesis \d+ token \d+: total = \S+, hypothesis score \+ score = \S+$"),
    # _check_ranks
    Break("ranks-swapped", _ranks_swapped, RANK_ORDER),
    Break("rank-shared-by-different-scores", _rank_shared, RANK_ORDER),
    Break("rank-below-zero", _rank_negative,
          r"^step 0: hypothesis \d+ token \d+ has rank -1 < 0, the number of recorded candidates scoring higher$"),
    # _check_finished
    Break("entry-of-a-missing-hypothesis", _entry_without_source, NO_ENTRY_MATCH),
    Break("entry-token-is-not-the-candidate", _entry_token_differs, NO_ENTRY_MATCH),
    Break("entry-does-not-extend-its-hypothesis", _entry_prefix_differs, NO_ENTRY_MATCH, UNCONSTRAINED),
    Break("entry-length-is-not-its-token-count", _entry_length_off,
          r"^step \d+: finished entry \d+ has length \d+ for \d+ tokens$"),
    Break("entry-score-not-hypothesis-plus-token", _entry_score_off,
          r"^step \d+: finished entry \d+ scores \S+, hypothesis \+ token = \S+$"),
    Break("entry-normalized-score-is-not-its-score", _entry_normalized_off,
          r"^step \d+: finished entry \d+: normalized_score = \S+, score = \S+$", ("greedy", "sample")),
    Break("entry-normalized-score-is-not-length-penalised", _entry_normalized_off,
          r"^step \d+: finished entry \d+: normalized_score = \S+, score / length \*\* length_penalty = \S+$",
          ("beam", "beam-sample", "diverse", "constrained", "toy-beam")),
    # _check_order: beam, beam-sample and diverse only (constrained search sorts by bank, see below)
    Break("beams-not-sorted", _unsorted_beams, r"step \d+: beams of group \d+ are not sorted by score: ",
          ("beam", "beam-sample", "diverse")),
    # _check_links
    Break("kept-candidate-leads-nowhere", _kept_leads_nowhere, r"step 0: kept candidate \d+ of \d+ leads nowhere$"),
    Break("finished-candidate-without-entry", _finished_without_entry,
          r"step 0: finished candidate \d+ of \d+ has no entry$"),
    Break("result-not-from-an-entry", _result_from_nowhere,
          rf"^result 0 comes from {MISSING}, not a recorded finished entry$"),
    # _check_results
    Break("results-not-sorted", _unsorted_results,
          r"^results are not sorted best first \(as their search ranked them\): ",
          ("sample", "beam", "beam-sample", "diverse", "branch")),
    Break("result-tokens-not-its-entry's", _result_tokens_differ,
          r"^result 0: tokens \[.+\] differ from its finished entry \d+'s \[.+\]$", UNCONSTRAINED),
    Break("result-score-not-its-entry's", _result_score_differs,
          r"^result 0 scores \S+, its finished entry \d+ has normalized_score \S+$",
          (*TINY, "toy-beam")),
    Break("claims-eos-it-lacks", _claims_eos, EOS + "True$"),
    Break("hides-its-eos", _hides_eos, EOS + "False$", ("toy-beam",)),
    # not on the constrained run: a token changed in its best result could also unmake a constraint
    Break("eos-inside", _eos_inside, EOS + "False$", UNCONSTRAINED),
    Break("longer-than-max-new-tokens", _too_long, r"^result 0: more tokens than max_new_tokens$"),
    Break("phrase-constraint-missing", _phrase_missing,
          r"^result 0: marked as satisfying its constraints but misses \{'kind': 'phrase'", ("constrained",)),
    Break("any-constraint-missing", _no_option_present,
          r"^result 0: marked as satisfying its constraints but misses \{'kind': 'any'", ("constrained",)),
    # _check_inside
    Break("dola-other-layer", _dola_other_layer, r"^step 0: DoLa contrasted layer \d+, not the most divergent$",
          ("dola",)),
    Break("dola-nothing-plausible", _dola_nothing_plausible,
          r"^step 0: DoLa recorded no plausible token, or one without a contrast score$", ("dola",)),
    Break("dola-better-contrast-elsewhere", _dola_better_contrast_elsewhere,
          r"^step 0: DoLa's best contrast score is not the token it took$", ("dola",)),
    Break("contrastive-loser-wins", _contrastive_loser_wins,
          r"^step 0: contrastive search's winner does not have the highest score$", ("contrastive",)),
    Break("contrastive-score-off", _contrastive_score_off,
          r"^step 0: a contrastive score is not \(1 - alpha\) \* prob - alpha \* penalty$", ("contrastive",)),
    Break("contrastive-winner-not-taken", _contrastive_winner_not_taken,
          r"^step 0: contrastive search's winner is not the token the step took$", ("contrastive",)),
]
BREAKS += [  # a grafted branch (explorer.fork): its numbering and its fixed tokens
    Break("steps-not-numbered-from-the-fork", _renumbered, r"^steps are not numbered from 3 in order: \[2, 3, 4",
          BRANCH),
    Break("paths-without-the-fixed-tokens", lambda t: _with_forced(t, token_id=MISSING),
          r"^branch: \d+ paths do not start with its fixed tokens, e\.g\. hypothesis \d+$", BRANCH),
    Break("first-hypothesis-not-the-fixed-score", _fixed_score_off,
          r"^branch: first hypothesis \d+ scores \S+, its fixed tokens \S+$", BRANCH),
    Break("fixed-score-not-the-forced-total",
          lambda t: _with_forced(t, total=t.meta["branch"]["path"][-1]["total"] + 1),
          r"^branch: fixed tokens score \S+, the forced candidate's total \S+$", BRANCH),
    Break("fixed-logprob-not-the-sum", lambda t: _with_record(t, logprob=t.meta["branch"]["logprob"] + 1),
          r"^branch: fixed tokens' log-prob \S+ is not the sum of their candidates'$", BRANCH),
    Break("record-does-not-match-its-path", lambda t: _with_record(t, token_id=MISSING),
          r"^invalid trace at meta/branch: its path does not match its prefix and forced token$", BRANCH),
]
CASES = [pytest.param(b, run, id=f"{run}-{b.name}") for b in BREAKS for run in b.runs]


@pytest.mark.parametrize("run", [*TINY, "toy-beam", "dola", "contrastive", "branch"])
def test_a_real_trace_is_accepted(traces: dict[str, Trace], run: str) -> None:
    assert check_trace(traces[run]) == []


@pytest.mark.parametrize(("broken", "run"), CASES)
def test_each_broken_invariant_is_refused(traces: dict[str, Trace], broken: Break, run: str) -> None:
    trace = traces[run]
    problems = check_trace(broken.edit(trace))
    assert len(problems) == 1, problems  # broken in exactly one way, reported once
    assert re.search(broken.message, problems[0]), problems[0]
    assert check_trace(trace) == []  # the edit made a new trace


def _problem_templates() -> list[str]:
    """Every problem message of explorer/invariants.py, as a regex (its f-strings, each field matching anything)."""
    tree = ast.parse(Path(invariants.__file__).read_text())
    return ["^" + "".join(re.escape(str(p.value)) if isinstance(p, ast.Constant) else ".+" for p in node.values) + "$"
            for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]


def test_every_problem_check_trace_can_report_is_shown_a_broken_trace(traces: dict[str, Trace]) -> None:
    reported = [p for b in BREAKS for run in b.runs for p in check_trace(b.edit(traces[run]))]
    templates = _problem_templates()
    for template in templates:  # a new check in explorer/invariants.py needs a broken trace above
        assert any(re.match(template, p) for p in reported), f"no broken trace gets {template}"
    assert len(templates) >= 22, templates  # the extraction itself works: the 22 messages of today


def test_constrained_beams_may_come_in_bank_order(traces: dict[str, Trace]) -> None:
    trace = traces["constrained"]
    step = max(trace.steps, key=lambda s: len(s.hypotheses))
    scrambled = tuple(sorted(step.hypotheses, key=lambda h: h.score))  # worst first
    assert [h.score for h in scrambled] != sorted((h.score for h in scrambled), reverse=True)
    steps = tuple(replace(s, hypotheses=scrambled) if s is step else s for s in trace.steps)
    assert check_trace(replace(trace, steps=steps)) == []
    as_beam = check_trace(replace(trace, steps=steps, strategy="beam"))  # the same trace, called beam search
    assert any(p.startswith(f"step {step.index}: beams of group 0 are not sorted by score") for p in as_beam)
    assert all(" are not sorted by score: " in p for p in as_beam)


def test_normalized_scores_follow_the_run_length_penalty(traces: dict[str, Trace]) -> None:
    """Beam-family entries are length-penalised with the run's own ``length_penalty``; greedy's are not at all."""
    beam = traces["beam"]
    assert beam.params["length_penalty"] == 1.0
    entries = [f for s in beam.steps for f in s.finished]
    problems = check_trace(replace(beam, params={**beam.params, "length_penalty": 2.0}))
    assert len(problems) == len(entries) > 0  # every entry has 8 tokens: each is now wrongly penalised
    assert all(re.search(r"normalized_score = \S+, score / length \*\* length_penalty = \S+$", p) for p in problems)
    greedy = traces["greedy"]
    assert check_trace(replace(greedy, params={**greedy.params, "length_penalty": 2.0})) == []


def test_tied_candidates_may_share_a_rank_but_not_pass_a_better_one(traces: dict[str, Trace]) -> None:
    """On the toy tree, "The nice" continues with guy and house alike (0.3 each), recorded as ranks 1 and 2."""
    trace = traces["toy-beam"]
    hyp = next(h for s in trace.steps for h in s.hypotheses if h.token_ids == (10,))
    woman, guy, house = sorted(hyp.candidates, key=lambda c: c.rank)
    assert guy.score == house.score < woman.score
    assert (woman.rank, guy.rank, house.rank) == (0, 1, 2)

    def ranked(*ranks: int) -> list[str]:
        ranked = {c.token_id: r for c, r in zip((woman, guy, house), ranks, strict=True)}
        candidates = tuple(replace(c, rank=ranked.get(c.token_id, c.rank)) for c in hyp.candidates)
        return check_trace(_with_hyp(trace, hyp.id, candidates=candidates))

    assert ranked(0, 2, 1) == []  # the tie broken the other way
    assert ranked(0, 1, 1) == []  # tied places shared, as the engine records a tie outside the top record_top_k
    for shared in [(1, 1, 2), (0, 0, 2)]:  # woman scores higher than guy: they may not share a rank
        [problem] = ranked(*shared)
        assert re.search(rf"token {woman.token_id} scores above token {guy.token_id} .* but ranks \d, not before \d$",
                         problem), problem
    [problem] = ranked(-1, 1, 2)
    assert problem.endswith(f"token {woman.token_id} has rank -1 < 0, the number of recorded candidates scoring higher")


DEGENERATE = {
    # beams of the -1e9 filler rows that finish: their entries score about -1e9 and are not checked as sums
    "placeholder-entries": ("toy:how-to-generate", "diverse", {"num_beams": 4, "num_beam_groups": 2,
                                                                "max_new_tokens": 3}),
    # tied scores on both sides of the record_top_k cut: the engine gives the tied candidates one rank
    "tied-ranks": ("toy:d2l-beam", "diverse", {"max_new_tokens": 4, "record_top_k": 2, "repetition_penalty": 1.96,
                                                "num_beams": 9, "num_beam_groups": 3, "diversity_penalty": 2.23,
                                                "early_stopping": True}),
    # min_new_tokens masks eos, the only continuation: every token is -inf, the masked candidates share a rank (group
    # search goes on with -inf beams, as the reference does; greedy and beam search refuse: tests/test_engine.py)
    "all-masked-diverse": ("toy:how-to-generate", "diverse", {"max_new_tokens": 9, "record_top_k": 10,
                                                              "min_new_tokens": 8, "num_beams": 2,
                                                              "num_beam_groups": 2, "length_penalty": 2.0}),
}


@pytest.mark.parametrize("case", DEGENERATE)
def test_degenerate_real_traces_are_accepted(case: str) -> None:
    name, strategy, params = DEGENERATE[case]
    model = explorer.load_model(name)
    trace = explorer.decode(model, model.prompt, strategy, **params)  # type: ignore[attr-defined]
    if case == "placeholder-entries":
        assert any(f.score <= PLACEHOLDER for s in trace.steps for f in s.finished)
    assert check_trace(trace) == []
