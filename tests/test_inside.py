"""DoLa, contrastive search and the logit lens: what each step records is what the method computed (checked against
numbers recomputed here another way), the reference's layer rules, and one-line errors for what cannot run.

Token-for-token agreement with transformers 4.55.4 is tests/test_inside_reference.py.
"""

from __future__ import annotations

import math

import pytest
import torch

import explorer
from explorer.lens import lens_grid, logit_lens
from explorer.models.base import CausalLM
from explorer.strategies.dola import RELATIVE_TOP, candidate_layers

PROMPT = [5, 17, 243, 999, 64]


# --- DoLa ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("layers", "tied", "which", "expected"), [
    (30, True, "high", tuple(range(15, 30, 2))),
    (30, True, "low", tuple(range(2, 15, 2))),
    (30, False, "low", tuple(range(0, 15, 2))),
    (48, True, "low", tuple(range(2, 20, 2))),
    (48, True, "high", tuple(range(28, 48, 2))),
    (2, True, "low", (1,)),
    (2, False, "low", (0,)),
    (4, True, "low", (2,)),
    (1, True, "high", (0,)),
])
def test_candidate_layers_follow_the_reference_rules(layers: int, tied: bool, which: str,
                                                      expected: tuple[int, ...]) -> None:
    assert candidate_layers(which, layers, tied) == expected


def test_dola_records_what_it_decided(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, PROMPT, strategy="dola", dola_layers=(0, 1), max_new_tokens=12, record_top_k=20)
    assert len(trace.steps) == 12
    for step in trace.steps:
        d = step.dola
        assert d is not None
        assert d.layers == (0, 1)
        assert d.final_layer == 2
        assert d.chosen_layer == d.layers[max(range(len(d.layers)), key=lambda i: d.divergences[i])]
        assert all(x >= 0 for x in d.divergences)
        chosen = step.hypotheses[0].candidates
        token = next(c.token_id for c in chosen if c.fate in ("kept", "finished"))
        best = max(d.candidates, key=lambda c: c.contrast)
        assert best.token_id == token  # no processor: the best contrast score is the token
        top_final = max(c.final_logprob for c in d.candidates)
        for c in d.candidates:
            plausible = c.final_logprob >= top_final + math.log(RELATIVE_TOP) - 1e-6
            assert c.plausible == plausible, (step.index, c)
            if c.plausible:
                assert c.contrast == pytest.approx(c.final_logprob - c.premature_logprob, rel=1e-6, abs=1e-5)
            else:
                assert c.contrast == -math.inf
        recorded = sum(c.plausible for c in d.candidates)  # plausible tokens are the final layer's best: recorded
        assert recorded == d.plausible if d.plausible <= 20 else recorded >= 20
        assert len(d.layer_probs) == len(d.layers) + 1
        final_prob, final_rank = d.layer_probs[-1]
        mine = next(c for c in d.candidates if c.token_id == token)
        assert final_prob == pytest.approx(math.exp(mine.final_logprob), rel=1e-5)
        if final_rank < 20:  # every better token is among the 20 recorded by final log-probability
            assert final_rank == sum(1 for c in d.candidates if c.final_logprob > mine.final_logprob)


def test_dola_premature_logits_are_the_head_on_the_unnormed_layer(tiny: CausalLM) -> None:
    """The recorded premature log-probabilities are the LM head on the layer's hidden state as it is (no final
    norm), recomputed here from a full forward of the text without a cache."""
    trace = explorer.decode(tiny, PROMPT, strategy="dola", dola_layers=(1,), max_new_tokens=5, record_top_k=5)
    ids = list(PROMPT)
    for step in trace.steps:
        d = step.dola
        assert d is not None
        with torch.inference_mode():
            out = tiny.hf(input_ids=torch.tensor([ids]), output_hidden_states=True)  # type: ignore[attr-defined]
            head = tiny.hf.get_output_embeddings()  # type: ignore[attr-defined]
            premature = torch.log_softmax(head(out.hidden_states[1][0, -1]), -1)
            final = torch.log_softmax(out.logits[0, -1].float(), -1)
        for c in d.candidates:
            assert c.premature_logprob == pytest.approx(float(premature[c.token_id]), rel=1e-5)
            assert c.final_logprob == pytest.approx(float(final[c.token_id]), rel=1e-5)
        ids.append(next(c.token_id for c in step.hypotheses[0].candidates if c.fate in ("kept", "finished")))


@pytest.mark.slow
def test_dola_tree_candidates_are_the_plausible_tokens(smollm2: CausalLM) -> None:
    """The tree's candidates at a DoLa step are the tokens that passed the plausibility cut (the others have no
    contrast score), best contrast first; the step's record lists the cut ones too."""
    trace = explorer.decode(smollm2, "The capital of France is", strategy="dola", dola_layers="high",
                            max_new_tokens=6, record_top_k=10)
    for step in trace.steps:
        d = step.dola
        assert d is not None
        tree = [c.token_id for c in step.hypotheses[0].candidates]
        plausible = sorted((c for c in d.candidates if c.plausible), key=lambda c: -c.contrast)
        assert tree == [c.token_id for c in plausible][: len(tree)]
        assert len(tree) == min(d.plausible, 10)
        assert any(not c.plausible for c in d.candidates)


def test_dola_layers_outside_the_model_are_one_line(tiny: CausalLM) -> None:
    with pytest.raises(explorer.ParameterError, match=r"from 0 to 1 \(tiny-random has 2 layers; 2 is outside\)"):
        explorer.decode(tiny, PROMPT, strategy="dola", dola_layers=(0, 2))
    with pytest.raises(explorer.ParameterError, match="high, low or layer indices"):
        explorer.decode(tiny, PROMPT, strategy="dola", dola_layers="middle")
    with pytest.raises(explorer.ParameterError, match="high, low or layer indices"):
        explorer.decode(tiny, PROMPT, strategy="dola", dola_layers=())


@pytest.mark.parametrize("strategy", ["dola", "contrastive"])
def test_a_table_model_has_no_layers(toy: CausalLM, strategy: str) -> None:
    with pytest.raises(explorer.ParameterError, match=r"has no layers|has none to read"):
        explorer.decode(toy, "The", strategy=strategy, max_new_tokens=2)


# --- contrastive search ---------------------------------------------------------------------------------------------


def test_contrastive_records_its_ranking(tiny: CausalLM) -> None:
    alpha, k = 0.6, 4
    trace = explorer.decode(tiny, PROMPT, strategy="contrastive", penalty_alpha=alpha, top_k=k, max_new_tokens=10)
    ids = list(PROMPT)
    for step in trace.steps:
        c = step.contrastive
        assert c is not None
        assert c.alpha == alpha
        assert len(c.candidates) == k
        probs = [x.prob for x in c.candidates]
        assert probs == sorted(probs, reverse=True)
        for x in c.candidates:
            assert x.score == pytest.approx((1 - alpha) * x.prob - alpha * x.penalty, abs=1e-6)
            assert -1.0 - 1e-5 <= x.penalty <= 1.0 + 1e-5
            assert 0 <= x.similar_to < len(ids)
            assert ids[x.similar_to] == x.similar_token
        assert c.chosen == max(range(k), key=lambda j: c.candidates[j].score)
        token = c.candidates[c.chosen].token_id
        kept = [x for x in step.hypotheses[0].candidates if x.fate in ("kept", "finished")]
        assert [x.token_id for x in kept] == [token]
        assert kept[0].reason in ("highest contrastive score", "max_new_tokens") or kept[0].fate == "finished"
        ids.append(token)
    assert list(trace.results[0].token_ids) == ids[len(PROMPT):]


def test_contrastive_penalties_match_a_fresh_forward(tiny: CausalLM) -> None:
    """Each candidate's degeneration penalty, recomputed from one forward of the text plus the candidate without a
    cache: the cached, batched candidates give the same similarities."""
    trace = explorer.decode(tiny, PROMPT, strategy="contrastive", penalty_alpha=0.5, top_k=3, max_new_tokens=6)
    ids = list(PROMPT)
    for step in trace.steps:
        c = step.contrastive
        assert c is not None
        for x in c.candidates:
            with torch.inference_mode():
                out = tiny.hf(input_ids=torch.tensor([[*ids, x.token_id]]), output_hidden_states=True)  # type: ignore[attr-defined]
                h = out.hidden_states[-1][0]
                cos = torch.nn.functional.cosine_similarity(h[:-1], h[-1:].expand_as(h[:-1]), dim=-1)
            assert x.penalty == pytest.approx(float(cos.max()), abs=1e-4)
            assert x.similar_to == int(cos.argmax())
        ids.append(c.candidates[c.chosen].token_id)


def test_contrastive_with_alpha_zero_is_greedy(tiny: CausalLM) -> None:
    greedy = explorer.decode(tiny, PROMPT, strategy="greedy", max_new_tokens=15)
    contrastive = explorer.decode(tiny, PROMPT, strategy="contrastive", penalty_alpha=0.0, top_k=3,
                                  max_new_tokens=15)
    assert contrastive.results[0].token_ids == greedy.results[0].token_ids


def test_contrastive_bad_values_are_one_line(tiny: CausalLM) -> None:
    with pytest.raises(explorer.ParameterError, match="an integer >= 2 for contrastive search"):
        explorer.decode(tiny, PROMPT, strategy="contrastive", top_k=1)
    with pytest.raises(explorer.ParameterError, match=r"penalty_alpha=1.5 is invalid: expected a number in \[0, 1\]"):
        explorer.decode(tiny, PROMPT, strategy="contrastive", penalty_alpha=1.5)
    with pytest.raises(explorer.ParameterError, match="at most the vocabulary's 1000 tokens"):
        explorer.decode(tiny, PROMPT, strategy="contrastive", top_k=1001)
    with pytest.raises(explorer.ParameterError, match="applies only to contrastive"):
        explorer.decode(tiny, PROMPT, strategy="beam", penalty_alpha=0.3)


# --- the logit lens -----------------------------------------------------------------------------------------------


def test_the_lens_last_layer_is_the_model(tiny: CausalLM) -> None:
    greedy = explorer.decode(tiny, PROMPT, strategy="greedy", max_new_tokens=3, record_top_k=3)
    token = greedy.results[0].token_ids[0]
    view = logit_lens(tiny, PROMPT, top=3, token=token)
    assert [layer.layer for layer in view.layers] == [0, 1, 2]
    last = view.layers[-1]
    assert last.top[0][0] == token
    assert last.token_rank == 0
    first = greedy.steps[0].hypotheses[0].candidates
    assert [t for t, _, _ in last.top] == [c.token_id for c in first[:3]]
    for (_, _, p), c in zip(last.top, first, strict=False):
        assert p == pytest.approx(math.exp(c.logprob), rel=1e-4)


def test_the_lens_grid_follows_a_run(tiny: CausalLM) -> None:
    greedy = explorer.decode(tiny, PROMPT, strategy="greedy", max_new_tokens=6)
    ids = [*PROMPT, *greedy.results[0].token_ids]
    grid = lens_grid(tiny, ids, len(PROMPT))
    assert grid.probs.shape == (3, 6)
    assert grid.tokens == greedy.results[0].token_ids
    assert (grid.ranks[-1] == 0).all()  # greedy: the last layer's best, every time
    for col in range(6):
        view = logit_lens(tiny, ids[: len(PROMPT) + col], token=ids[len(PROMPT) + col])
        for layer in view.layers:
            assert grid.probs[layer.layer, col] == pytest.approx(layer.token_prob, rel=1e-3, abs=1e-7)
            assert grid.ranks[layer.layer, col] == layer.token_rank


def test_the_lens_needs_layers(toy: CausalLM) -> None:
    with pytest.raises(explorer.ExplorerError, match="has none"):
        logit_lens(toy, [0])


@pytest.mark.slow
def test_smollm2_lens_finds_the_answer_late(smollm2: CausalLM) -> None:
    """On SmolLM2 the lens's early layers do not know the capital; the last one does (rank 0)."""
    ids = smollm2.tokenizer.encode("The capital of France is Paris")
    view = logit_lens(smollm2, ids[:-1], token=ids[-1])
    assert len(view.layers) == 31
    assert view.layers[-1].token_rank == 0
    assert view.layers[5].token_rank is not None
    assert view.layers[5].token_rank > 10
