"""Processors on hand-made logits ("ramps"): exact masks and values, and never an in-place change."""

from __future__ import annotations

import math

import pytest
import torch

from explorer.processors import (
    BadWords,
    Context,
    EpsilonCutoff,
    EtaCutoff,
    ExponentialDecayLength,
    ForcedEOS,
    HammingDiversity,
    InfNanRemove,
    MinLength,
    MinNewTokens,
    MinP,
    NoRepeatNGram,
    PrefixConstrained,
    Renormalize,
    RepetitionPenalty,
    SequenceBias,
    SuppressTokens,
    Temperature,
    TopK,
    TopP,
    TypicalP,
    build_processors,
    run_processors,
)
from explorer.strategies import get, make_params

INF = math.inf
RAMP = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0, 0.0]])
IDS = torch.tensor([[1, 3, 1], [0, 0, 4]])
CTX = Context(prompt_length=1)


def test_repetition_penalty_divides_positive_and_multiplies_negative() -> None:
    scores = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    out = RepetitionPenalty(2.0)(torch.tensor([[0, 1]]), scores, CTX)
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_no_repeat_ngram_bans_the_token_that_would_repeat_a_bigram() -> None:
    out = NoRepeatNGram(2)(torch.tensor([[5, 6, 7, 5]]), torch.zeros(1, 9), CTX)
    assert [i for i, v in enumerate(out[0].tolist()) if v == -INF] == [6]


def test_no_repeat_ngram_of_one_bans_every_seen_token() -> None:
    out = NoRepeatNGram(1)(torch.tensor([[2, 4]]), torch.zeros(1, 5), CTX)
    assert out[0].tolist() == [0.0, 0.0, -INF, 0.0, -INF]


def test_bad_words_single_always_multi_after_prefix_and_eos_exempt() -> None:
    proc = BadWords(((3,), (1, 4), (0,)), eos_token_ids=(0,))
    out = proc(IDS, RAMP, CTX)
    assert out[0].tolist() == [0.0, 1.0, 2.0, -INF, -INF]  # row ends with 1: (1, 4) applies
    assert out[1].tolist() == [4.0, 3.0, 2.0, -INF, 0.0]  # eos (0) cannot be banned


def test_min_new_tokens_masks_eos_until_enough_tokens() -> None:
    early = MinNewTokens(3, (4,))(IDS, RAMP, Context(prompt_length=1))
    assert early[:, 4].tolist() == [-INF, -INF]
    late = MinNewTokens(2, (4,))(IDS, RAMP, Context(prompt_length=1))
    assert torch.equal(late, RAMP)


def test_temperature() -> None:
    assert Temperature(2.0)(IDS, RAMP, CTX)[0].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_top_k_keeps_the_k_best_per_row() -> None:
    out = TopK(2)(IDS, RAMP, CTX)
    assert out.tolist() == [[-INF, -INF, -INF, 3.0, 4.0], [4.0, 3.0, -INF, -INF, -INF]]


def test_top_k_respects_min_tokens_to_keep() -> None:
    out = TopK(1, min_tokens_to_keep=3)(IDS, RAMP, CTX)
    assert (out[0] > -INF).sum().item() == 3


def test_top_p_keeps_the_nucleus() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = TopP(0.8)(IDS, probs.log(), CTX)
    assert [v > -INF for v in out[0].tolist()] == [True, True, False, False]
    out = TopP(0.81)(IDS, probs.log(), CTX)
    assert [v > -INF for v in out[0].tolist()] == [True, True, True, False]


def test_min_p_scales_with_the_best_probability() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = MinP(0.5)(IDS, probs.log(), CTX)
    assert [v > -INF for v in out[0].tolist()] == [True, True, False, False]


def test_typical_p_drops_the_surprising_tail() -> None:
    probs = torch.tensor([[0.4, 0.4, 0.15, 0.05]])
    out = TypicalP(0.8)(IDS, probs.log(), CTX)
    assert out[0, 3].item() == -INF
    assert out[0, 0].item() > -INF


def test_hamming_diversity_counts_earlier_groups_tokens() -> None:
    ctx = Context(0, previous_group_tokens=torch.tensor([2, 2, 4]))
    out = HammingDiversity(0.5)(IDS, RAMP, ctx)
    assert out[0].tolist() == [0.0, 1.0, 1.0, 3.0, 3.5]
    assert torch.equal(HammingDiversity(0.5)(IDS, RAMP, Context(0, torch.tensor([], dtype=torch.long))), RAMP)


def test_sequence_bias_adds_up_and_waits_for_the_prefix() -> None:
    proc = SequenceBias((((4,), -1.0), ((1, 2), 0.5), ((3, 1, 2), 0.25), ((9, 9, 9, 9), 5.0)))
    out = proc(IDS, RAMP, CTX)
    assert out[0].tolist() == [0.0, 1.0, 2.75, 3.0, 3.0]  # row ends with 3, 1: both sequences ending in 2 apply
    assert out[1].tolist() == [4.0, 3.0, 2.0, 1.0, -1.0]  # a sequence longer than the row is left out


def test_exponential_decay_raises_eos_after_the_start() -> None:
    scores = torch.tensor([[-2.0, -1.0, -8.0]])
    proc = ExponentialDecayLength(1, 2.0, (2,))
    assert proc(torch.tensor([[0, 1]]), scores, Context(1)).tolist() == scores.tolist()  # at the start: nothing
    assert proc(torch.tensor([[0, 1, 1, 1]]), scores, Context(1))[0, 2].item() == -8.0 + 8.0 * (2.0**2 - 1)


def test_epsilon_and_eta_cut_the_unlikely_tail_but_keep_the_best() -> None:
    probs = torch.tensor([[0.7, 0.25, 0.04, 0.01]])
    assert [v > -INF for v in EpsilonCutoff(0.05)(IDS, probs.log(), CTX)[0].tolist()] == [True, True, False, False]
    assert [v > -INF for v in EpsilonCutoff(0.9)(IDS, probs.log(), CTX)[0].tolist()] == [True, False, False, False]
    assert EtaCutoff(0.2)(IDS, probs.log(), CTX)[0, 3].item() == -INF


@pytest.mark.parametrize(
    "proc",
    [
        RepetitionPenalty(1.5),
        NoRepeatNGram(2),
        BadWords(((1,), (3, 2))),
        MinNewTokens(5, (0,)),
        Temperature(0.7),
        TopK(2),
        TopP(0.5),
        MinP(0.2),
        TypicalP(0.5),
        HammingDiversity(1.0),
        SequenceBias((((1,), 1.0), ((1, 3), -2.0))),
        ExponentialDecayLength(0, 1.5, (4,)),
        EpsilonCutoff(0.1),
        EtaCutoff(0.1),
        MinLength(9, (4,)),
        SuppressTokens((2,)),
        ForcedEOS(3, (4,)),
        PrefixConstrained(lambda _batch, _ids: [1, 2]),
        InfNanRemove(),
        Renormalize(),
    ],
)
def test_processors_never_change_their_input(proc: object) -> None:
    scores = RAMP.clone()
    ids = IDS.clone()
    ctx = Context(1, previous_group_tokens=torch.tensor([1, 2]))
    out = proc(ids, scores, ctx)  # type: ignore[operator]
    assert torch.equal(scores, RAMP)
    assert torch.equal(ids, IDS)
    assert out.shape == RAMP.shape


def test_build_processors_follows_the_reference_order() -> None:
    p = make_params(
        "beam-sample", repetition_penalty=1.2, no_repeat_ngram_size=3, bad_words_ids=[[7]], min_new_tokens=2,
        temperature=0.8, top_k=20, top_p=0.9, min_p=0.05, typical_p=0.95, seed=1,
    )
    names = [proc.name for proc in build_processors(p, get("beam-sample"), (2,))]
    assert names == [
        "repetition_penalty", "no_repeat_ngram", "bad_words", "min_new_tokens",
        "temperature", "top_k", "top_p", "min_p", "typical_p",
    ]
    # beam-sample keeps at least eos + 1 tokens, as the reference does
    assert build_processors(p, get("beam-sample"), (2,))[5].min_tokens_to_keep == 2  # type: ignore[attr-defined]


def test_warpers_do_not_apply_without_sampling() -> None:
    assert build_processors(make_params("beam"), get("beam"), (2,)) == ()
    assert [p.name for p in build_processors(make_params("diverse"), get("diverse"), (2,))] == ["diversity_penalty"]


def test_run_processors_keeps_every_stage() -> None:
    stages = run_processors((Temperature(2.0), TopK(1)), IDS, RAMP, CTX)
    assert len(stages) == 3
    assert stages[0] is RAMP
    assert stages[2][0].tolist() == [-INF, -INF, -INF, -INF, 2.0]
