"""Masks on hand-made ramps: min length (prompt counted), suppressed tokens, forced eos, the prefix rule."""

from __future__ import annotations

import math

import pytest
import torch

import explorer
from explorer.models.base import CausalLM
from explorer.processors import Context, ForcedEOS, MinLength, PrefixConstrained, SuppressTokens

INF = math.inf
RAMP = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0, 0.0]])
IDS = torch.tensor([[1, 3, 1], [0, 0, 4]])


def test_min_length_counts_the_prompt() -> None:
    assert MinLength(4, (4,))(IDS, RAMP, Context(prompt_length=2))[:, 4].tolist() == [-INF, -INF]
    assert torch.equal(MinLength(3, (4,))(IDS, RAMP, Context(prompt_length=2)), RAMP)  # 3 tokens: long enough


def test_suppress_tokens_masks_them_in_every_row() -> None:
    out = SuppressTokens((0, 3))(IDS, RAMP, Context(1))
    assert out.tolist() == [[-INF, 1.0, 2.0, -INF, 4.0], [-INF, 3.0, 2.0, -INF, 0.0]]


def test_forced_eos_only_at_the_last_step_of_the_budget() -> None:
    """Three tokens with a prompt of one: the fourth step is the last one when max_new_tokens is 3."""
    assert ForcedEOS(3, (2,))(IDS, RAMP, Context(1)).tolist() == [[-INF, -INF, 0.0, -INF, -INF]] * 2
    assert torch.equal(ForcedEOS(4, (2,))(IDS, RAMP, Context(1)), RAMP)


def test_prefix_rule_sees_each_row_whole_with_the_prompt_s_batch_id() -> None:
    calls: list[tuple[int, list[int]]] = []

    def allowed(batch_id: int, ids: torch.Tensor) -> list[int]:
        calls.append((batch_id, ids.tolist()))
        return [int(ids[0])]

    out = PrefixConstrained(allowed)(IDS, RAMP, Context(1))
    assert calls == [(0, [1, 3, 1]), (0, [0, 0, 4])]  # one prompt: batch 0 for every row, as in transformers 5.x
    assert out.tolist() == [[-INF, 1.0, -INF, -INF, -INF], [4.0, -INF, -INF, -INF, -INF]]


def test_prefix_rule_that_allows_nothing_is_one_clear_error() -> None:
    with pytest.raises(explorer.ExplorerError, match="prefix_allowed_tokens_fn returned no token for row 1 at 2 new"):
        PrefixConstrained(lambda _batch, ids: [] if int(ids[0]) == 0 else [1])(IDS, RAMP, Context(1))


def test_the_prefix_rule_in_a_run_masks_every_other_token(tiny: CausalLM) -> None:
    """An API function of (batch_id, ids so far): the sequence can only count up, whatever the model prefers."""
    trace = explorer.decode(tiny, [5, 6, 7], "beam", num_beams=2, max_new_tokens=4,
                            prefix_allowed_tokens_fn=lambda _batch, ids: [int(ids[-1]) + 1, int(ids[-1]) + 2])
    assert trace.processors == ("prefix_allowed_tokens",)
    assert trace.params["prefix_allowed_tokens_fn"] == "<function test_the_prefix_rule_in_a_run_masks_every_other_" \
                                                      "token.<locals>.<lambda>>"
    for r in trace.results:
        steps = [b - a for a, b in zip((7, *r.token_ids), r.token_ids, strict=False)]
        assert set(steps) <= {1, 2}
