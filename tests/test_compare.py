"""Several strategies side by side in one batched run: the same tokens as separate runs, each trace consistent."""

from __future__ import annotations

from typing import Any

import pytest

import explorer
from explorer.invariants import check_trace
from explorer.models.base import CausalLM

RUNS: dict[str, dict[str, Any]] = {
    "greedy": {"strategy": "greedy"},
    "beam": {"strategy": "beam", "num_beams": 4, "num_return_sequences": 2},
    "diverse": {"strategy": "diverse", "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0},
    "constrained": {"strategy": "constrained", "num_beams": 4, "constraints": [" flour"]},
    "sample": {"strategy": "sample", "seed": 5, "num_return_sequences": 2, "top_k": 20},
    "short": {"strategy": "beam", "num_beams": 2, "max_new_tokens": 3},
}


def check_same_as_separate(model: CausalLM, prompt: Any, runs: dict[str, dict[str, Any]], **kw: Any) -> None:
    together = explorer.compare(model, prompt, runs, **kw)
    assert list(together) == list(runs)
    for name, spec in runs.items():
        alone = explorer.decode(model, prompt, **spec, **kw)
        assert [r.token_ids for r in together[name].results] == [r.token_ids for r in alone.results], name
        assert [r.score for r in together[name].results] == pytest.approx([r.score for r in alone.results],
                                                                          abs=1e-4)
        assert len(together[name].steps) == len(alone.steps)
        assert check_trace(together[name]) == []
        assert together[name].meta["batched_with"] == sorted(runs)


def test_side_by_side_equals_separate_runs_on_tiny(tiny: CausalLM) -> None:
    runs = {name: {"max_new_tokens": 12, **spec} for name, spec in RUNS.items()}
    check_same_as_separate(tiny, "The cake needs", runs)


def test_side_by_side_with_eos_and_early_stopping_on_a_toy() -> None:
    toy = explorer.load_model("toy:how-to-generate")
    runs = {"greedy": {"strategy": "greedy"}, "beam": {"strategy": "beam", "num_beams": 2, "length_penalty": 0.0},
            "diverse": {"strategy": "diverse", "num_beams": 4, "num_beam_groups": 2, "early_stopping": True}}
    check_same_as_separate(toy, "The", {k: {"max_new_tokens": 6, **v} for k, v in runs.items()})


@pytest.mark.slow
def test_side_by_side_equals_separate_runs_on_smollm2(smollm2: CausalLM) -> None:
    runs = {name: {"max_new_tokens": 30, **spec} for name, spec in RUNS.items() if name != "short"}
    check_same_as_separate(smollm2, "Give me a short cake recipe.", runs, chat=True)


def test_stop_ends_every_run_and_keeps_the_partial_traces(tiny: CausalLM) -> None:
    seen: list[tuple[str, int]] = []
    traces = explorer.compare(tiny, [5, 6, 7], {k: {"max_new_tokens": 12, **v} for k, v in RUNS.items()},
                              on_step=lambda name, step: seen.append((name, step.index)),
                              should_stop=lambda: len(seen) >= 3 * len(RUNS))
    assert all(t.stop_reason == "stopped" for name, t in traces.items() if name != "short")
    assert traces["short"].stop_reason == "max_new_tokens"
    assert all(check_trace(t) == [] and t.results for t in traces.values())


def test_bad_input_in_one_run_is_reported_before_anything_runs(tiny: CausalLM) -> None:
    with pytest.raises(explorer.ParameterError, match="num_beam_groups=3"):
        explorer.compare(tiny, [5, 6], {"ok": {"strategy": "greedy"},
                                        "bad": {"strategy": "diverse", "num_beams": 4, "num_beam_groups": 3}})
    with pytest.raises(explorer.ParameterError, match="runs"):
        explorer.compare(tiny, [5, 6], {})
