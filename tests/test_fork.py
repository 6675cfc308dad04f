"""A forked branch grafted onto its source: it compares with the source in steps, paths, text, log-prob and score.

The strongest check is an identity: forcing the token greedy chose itself gives back greedy's own result, with its
steps numbered as the source's are.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

import explorer
from explorer.errors import TraceFormatError
from explorer.figures._paths import result_path
from explorer.figures._uncertainty import token_uncertainty
from explorer.fork import ForkPoint, decode_branch, graft, prefix_of, ranked_score
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.scoring import path_scores
from explorer.trace import Result, Trace

RECIPE = "Give me a recipe for bread:"
PROMPT = [5, 6, 7, 8, 9]
RUNS: dict[str, dict[str, Any]] = {
    "greedy": {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2},
    "sample": {"seed": 3, "top_k": 40, "num_return_sequences": 3},
    "beam": {"num_beams": 4, "num_return_sequences": 3, "length_penalty": 0.6},
    "beam-sample": {"seed": 11, "num_beams": 4, "num_return_sequences": 2, "top_k": 50},
    "diverse": {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 0.7, "num_return_sequences": 2},
    "constrained": {"num_beams": 4, "constraints": [[400, 401]]},
    "assisted": {"prompt_lookup_num_tokens": 2},
    "dola": {"dola_layers": (0, 1)},
    "contrastive": {"penalty_alpha": 0.6, "top_k": 4},
}


def _own(source: Trace, step: int) -> ForkPoint:
    """The fork at the first hypothesis of ``step`` that forces the token the source took there."""
    hyp = source.steps[step].hypotheses[0]
    kept = next(c for c in hyp.candidates if c.fate in ("kept", "finished"))
    return ForkPoint(source, hyp, kept.token_id, "source", f"h{hyp.id}")


def _logprob(trace: Trace, result: Result) -> float | None:
    """The model's summed log-prob of a result, from the records."""
    return path_scores(result_path(trace, result).tokens).logprob


@pytest.fixture(scope="module")
def greedy(smollm2: CausalLM) -> Trace:
    """Greedy on SmolLM2, 12 tokens."""
    return explorer.decode(smollm2, RECIPE, "greedy", max_new_tokens=12)


def test_forcing_greedys_own_token_gives_back_greedys_result(smollm2: CausalLM, greedy: Trace) -> None:
    branch = decode_branch(smollm2, _own(greedy, 3))
    assert check_trace(branch) == []
    assert branch.prompt_token_ids == greedy.prompt_token_ids
    assert branch.prompt == greedy.prompt
    assert [s.index for s in branch.steps] == [s.index for s in greedy.steps[4:]] == list(range(4, 12))
    ours, theirs = branch.results[0], greedy.results[0]
    assert ours.token_ids == theirs.token_ids
    assert ours.text == theirs.text
    assert ours.finished_step == theirs.finished_step
    assert ours.score == pytest.approx(theirs.score, rel=1e-4)
    logprob, expected = _logprob(branch, ours), _logprob(greedy, theirs)
    assert logprob is not None
    assert expected is not None
    assert logprob == pytest.approx(expected, rel=1e-4)
    for mine, source in zip(branch.steps, greedy.steps[4:], strict=True):  # the same tree, step by step
        assert [h.token_ids for h in mine.hypotheses] == [h.token_ids for h in source.hypotheses]
        assert mine.hypotheses[0].score == pytest.approx(source.hypotheses[0].score, rel=1e-4)
    fin = branch.steps[-1].finished[0]
    assert (fin.length, fin.step) == (12, 11)


def test_a_fork_of_a_fork_at_its_own_tokens_gives_back_the_source(smollm2: CausalLM, greedy: Trace) -> None:
    first = decode_branch(smollm2, _own(greedy, 2))
    second = decode_branch(smollm2, _own(first, 4))  # first.steps[4] is the source's step 7
    assert check_trace(second) == []
    assert [s.index for s in second.steps] == list(range(8, 12))
    prefix = prefix_of(second)
    assert prefix is not None
    assert (prefix.step, prefix.token_ids) == (7, greedy.results[0].token_ids[:8])
    assert second.results[0].token_ids == greedy.results[0].token_ids
    assert second.results[0].text == greedy.results[0].text
    assert _logprob(second, second.results[0]) == pytest.approx(_logprob(greedy, greedy.results[0]), rel=1e-4)
    assert [c is not None for c in prefix.path] == [True] * 8  # the first branch's fixed tokens came along
    assert prefix.entropies[0] == pytest.approx(greedy.steps[0].hypotheses[0].entropy)


def _branch_of(tiny: CausalLM, strategy: str, step: int = 2, pick: int = 1) -> tuple[Trace, ForkPoint, Trace]:
    """A run of ``strategy`` on tiny-random, a fork at the best hypothesis of ``step`` forcing its ``pick``-th
    recorded candidate (its only one in DoLa), and the branch."""
    params = dict(RUNS[strategy])
    constraints = params.pop("constraints", ())
    source = explorer.decode(tiny, PROMPT, strategy, max_new_tokens=8, constraints=constraints, **params)
    hyp = source.steps[step].hypotheses[0]
    at = ForkPoint(source, hyp, hyp.candidates[min(pick, len(hyp.candidates) - 1)].token_id)  # DoLa records one
    return source, at, decode_branch(tiny, at)


@pytest.mark.parametrize("strategy", list(RUNS))
def test_every_strategys_branch_keeps_the_invariants(tiny: CausalLM, strategy: str) -> None:
    _, at, branch = _branch_of(tiny, strategy)
    assert check_trace(branch) == []
    assert branch.steps[0].index == 3
    assert branch.params["max_new_tokens"] == 8
    assert all(len(r.token_ids) <= 8 and r.token_ids[:3] == at.fixed_ids for r in branch.results)
    assert json.loads(json.dumps(branch.meta["branch"])) == branch.meta["branch"]  # plain JSON values
    assert explorer.Trace.from_json(branch.to_json()) == branch


def test_a_beam_branch_scores_the_whole_path_with_the_sources_formula(tiny: CausalLM) -> None:
    source, at, branch = _branch_of(tiny, "beam")
    forced = at.candidate
    prefix = prefix_of(branch)
    assert prefix is not None
    assert prefix.score == forced.total == pytest.approx(at.hypothesis.score + forced.score)
    continuation = explorer.decode(tiny, (*PROMPT, *at.fixed_ids), "beam", max_new_tokens=5,
                                   **RUNS["beam"])  # what the branch decoded, before the graft
    lp = source.params["length_penalty"]
    pairs = [(f, g) for s, t in zip(continuation.steps, branch.steps, strict=True)
             for f, g in zip(s.finished, t.finished, strict=True)]
    assert pairs
    for cont, whole in pairs:
        assert whole.length == cont.length + 3
        assert whole.score == pytest.approx(cont.score + prefix.score)
        assert whole.normalized_score == pytest.approx(whole.score / whole.length ** lp)
    assert [r.token_ids[3:] for r in branch.results] == [r.token_ids for r in continuation.results]  # its order
    assert [ranked_score(branch, r) for r in branch.results] == pytest.approx([r.score for r in continuation.results])
    best = branch.results[0]
    summed = next(f.score for s in branch.steps for f in s.finished if f.id == best.source)
    assert best.score == pytest.approx(summed / len(best.token_ids) ** lp)
    assert "ranked the continuation alone" in explorer.scoring.score_formula(branch)


def test_the_invariants_catch_a_broken_graft(tiny: CausalLM) -> None:
    _, _, branch = _branch_of(tiny, "beam")
    renumbered = replace(branch, steps=tuple(replace(s, index=s.index - 3) for s in branch.steps))
    assert any("not numbered from 3" in p for p in check_trace(renumbered))
    record = dict(branch.meta["branch"], score=branch.meta["branch"]["score"] + 1.0)
    assert any("scores" in p for p in check_trace(replace(branch, meta={**branch.meta, "branch": record})))
    first = branch.steps[0]
    cut = replace(first, hypotheses=tuple(replace(h, token_ids=h.token_ids[1:]) for h in first.hypotheses))
    assert any("paths do not start with its fixed tokens" in p
               for p in check_trace(replace(branch, steps=(cut, *branch.steps[1:]))))


def test_a_branch_record_that_does_not_add_up_is_refused_on_load(tiny: CausalLM) -> None:
    _, _, branch = _branch_of(tiny, "greedy")
    doc = json.loads(branch.to_json())
    doc["meta"]["branch"]["token_id"] += 1
    with pytest.raises(TraceFormatError, match=r"^invalid trace at meta/branch: its path does not match"):
        explorer.Trace.from_json(json.dumps(doc))
    del doc["meta"]["branch"]["score"]
    with pytest.raises(TraceFormatError, match="meta/branch: 'score' is a dependency of 'path'"):
        explorer.Trace.from_json(json.dumps(doc))


def test_a_branch_saved_before_grafting_still_loads(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, "greedy", max_new_tokens=3)
    old = {"source": "#1 greedy", "node": "h1", "step": 1, "token_id": 7, "token_text": "x", "fixed_tokens": 2}
    loaded = explorer.Trace.from_json(replace(trace, meta={"branch": old}).to_json())
    assert prefix_of(loaded) is None
    assert loaded.meta["branch"] == old


def test_graft_refuses_a_trace_decoded_from_another_prompt(tiny: CausalLM) -> None:
    source = explorer.decode(tiny, PROMPT, "greedy", max_new_tokens=4)
    at = _own(source, 1)
    with pytest.raises(ValueError, match="not decoded from its source's prompt"):
        graft(source, at, tiny.tokenizer.decode)
    with pytest.raises(ValueError, match="not a recorded candidate"):
        decode_branch(tiny, ForkPoint(source, at.hypothesis, 10**6))


def test_a_masked_forced_token_makes_an_impossible_branch(tiny: CausalLM) -> None:
    """Forcing a token a processor masked: the model's log-prob stays finite, the score is -inf, as it is."""
    source = explorer.decode(tiny, PROMPT, "sample", max_new_tokens=5, seed=1, top_k=3, record_top_k=10)
    hyp = source.steps[2].hypotheses[0]
    masked = next(c for c in hyp.candidates if c.fate == "masked")
    branch = decode_branch(tiny, ForkPoint(source, hyp, masked.token_id))
    assert check_trace(branch) == []
    assert branch.results[0].score == -math.inf
    assert math.isfinite(_logprob(branch, branch.results[0]) or math.nan)
    assert explorer.Trace.from_json(branch.to_json()) == branch


def test_a_branch_exports_to_html_and_reads_back(tiny: CausalLM) -> None:
    source, _, branch = _branch_of(tiny, "beam")
    page = explorer.export_html({"source": source, "branch": branch})
    assert explorer.read_export(page) == {"source": source, "branch": branch}
    logprob = _logprob(branch, branch.results[0])
    assert logprob is not None
    assert f"<td class=num>{logprob:.3f}</td><td class=num>{branch.results[0].score:.3f}</td>" in page
    prefix = prefix_of(branch)
    assert prefix is not None
    tokens = token_uncertainty(branch, branch.results[0])
    assert [t.entropy for t in tokens[:3]] == list(prefix.entropies)
    assert None not in [t.entropy for t in tokens]


def test_a_branchs_tree_starts_at_its_forced_token(tiny: CausalLM) -> None:
    """Its root is drawn after the fixed tokens (x = tokens generated, as its source's), named by the forced token,
    with the fixed tokens' log-prob and score; its other nodes' path log-probs include them."""
    _, at, branch = _branch_of(tiny, "beam")
    prefix = prefix_of(branch)
    assert prefix is not None
    assert prefix.logprob is not None
    nodes, _ = branch.tree_frames()
    root = nodes[nodes["node"] == f"h{branch.steps[0].hypotheses[0].id}"].iloc[0]
    assert (root["depth"], root["step"], root["token_id"]) == (3, 3, at.token_id)
    assert root["path_logprob"] == pytest.approx(prefix.logprob)
    assert nodes["depth"].min() == 3
    fig = explorer.figures.search_tree(branch)
    hover = next(t for t in fig.data if t.name == "hypothesis").hovertext[0]
    assert hover.startswith(f"<b>{at.candidate.text.replace(' ', '␣')}</b>  h")
    assert f"path: log-prob {prefix.logprob:.3f} · score {prefix.score:.3f}" in hover
    lay = explorer.figures.tree_layout(branch)
    assert int(lay.decided[list(lay.key).index(root["node"])]) == 2  # replayed, it appears at its fork's step
