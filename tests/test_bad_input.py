"""Bad input gets one clear line naming the parameter and what is allowed: a ValueError subclass."""

from __future__ import annotations

from typing import Any

import pytest

import explorer
from explorer.models.base import CausalLM

CASES: list[tuple[str, Any, dict[str, Any], str]] = [
    ("beam", [5, 6], {"num_beams": 0}, "num_beams=0 is invalid: expected an integer from 1 to 64"),
    ("diverse", [5, 6], {"num_beams": 4, "num_beam_groups": 3}, "num_beam_groups=3 is invalid"),
    ("beam", [5, 6], {"diversity_penalty": 1.0}, "diversity_penalty=1.0 is invalid"),
    ("sample", [5, 6], {"top_p": 0.0}, "top_p=0.0 is invalid: expected a number in (0, 1]"),
    ("sample", [5, 6], {"top_p": 1.5}, "top_p=1.5 is invalid"),
    ("sample", [5, 6], {"temperature": 0.0}, "temperature=0.0 is invalid: expected a number > 0"),
    ("sample", [5, 6], {"temperature": -1.0}, "temperature=-1.0 is invalid"),
    ("greedy", [5, 6], {"max_new_tokens": -1}, "max_new_tokens=-1 is invalid"),
    ("greedy", [5, 6], {"min_new_tokens": -2}, "min_new_tokens=-2 is invalid"),
    ("greedy", [5, 6], {"max_new_tokens": 0}, "max_new_tokens=0 is invalid"),
    ("beam", [5, 6], {"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences=3 is invalid"),
    ("beam", [5, 6], {"early_stopping": "sometimes"}, "early_stopping='sometimes' is invalid"),
    ("beam", [5, 6], {"repetition_penalty": 0.0}, "repetition_penalty=0.0 is invalid"),
    ("greedy", [5, 6], {"temperature": 0.5}, "temperature=0.5 is invalid: expected unset"),
    ("greedy", [5, 6], {"num_beams": 4}, "num_beams=4 is invalid"),
    ("warp", [5, 6], {}, "strategy='warp' is invalid: expected one of greedy, sample, beam"),
    ("beam", [5, 6], {"num_beam": 4}, "num_beam=4 is invalid: expected no such parameter"),
    ("beam", "", {}, "prompt='' is invalid: expected non-empty text"),
    ("beam", [], {}, "prompt=[] is invalid: expected a non-empty list of token ids"),
    ("beam", [5, 4000], {}, "prompt=4000 is invalid: expected token ids in [0, 1000)"),
    ("constrained", [5, 6], {}, "constraints=[] is invalid: expected at least one constraint"),
    ("constrained", [5, 6], {"constraints": [""]}, "constraint='' is invalid: expected a non-empty phrase"),
    ("constrained", [5, 6], {"constraints": [[]]}, "is invalid"),
    ("constrained", [5, 6], {"constraints": [[5, 2]]}, "tokens without eos"),
    ("beam", [5, 6], {"constraints": [[5]]}, "constraints=[[5]] is invalid: expected none unless"),
    ("greedy", [5] * 2040, {"max_new_tokens": 20}, "max_new_tokens=20 is invalid: expected at most 8"),
    ("greedy", [5] * 2048, {}, "expected fewer than 2048 tokens"),
]


@pytest.mark.parametrize(("strategy", "prompt", "params", "message"), CASES)
def test_bad_input_is_one_clear_line(
    tiny: CausalLM, strategy: str, prompt: Any, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(explorer.ExplorerError) as info:
        explorer.decode(tiny, prompt, strategy, **params)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert isinstance(info.value, ValueError)


def test_constraint_text_that_tokenizes_to_nothing(toy: Any) -> None:
    with pytest.raises(explorer.ParameterError, match="constraint"):
        explorer.decode(toy, "The", "constrained", constraints=["   "], num_beams=2)
