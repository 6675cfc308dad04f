"""The registry and the parameter table are the one source: the README, docs, CLI and app agree with them, and the
seams for strategies that need more than the shared loop (their own driver, hidden states) work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import explorer
from explorer.app._params import KNOBS
from explorer.app.controls import Controls
from explorer.cli import build_parser, flag
from explorer.engine import Run
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.params import PARAMS, Param
from explorer.strategies import REGISTRY, StrategySpec, get, make_params, names, registry
from explorer.strategies.base import Setup
from explorer.strategies.registry import parameter_table, register, strategy_table
from explorer.trace import Step

ROOT = Path(__file__).resolve().parents[1]


def _trace_options() -> set[str]:
    """Every option string of ``decoding-explorer trace``."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {opt for action in sub.choices["trace"]._actions for opt in action.option_strings}  # type: ignore[attr-defined]


def test_the_readme_strategy_table_is_the_registry() -> None:
    assert strategy_table() in (ROOT / "README.md").read_text()
    assert [line.split("`")[1] for line in strategy_table().splitlines()[2:]] == list(names())


def test_the_parameter_docs_are_the_table() -> None:
    assert parameter_table() in (ROOT / "docs" / "parameters.md").read_text()


def test_the_readme_names_every_parameter_and_no_other() -> None:
    text = (ROOT / "README.md").read_text()
    paragraph = text[text.index("Parameters use the reference's names"):text.index("| strategy | what it does")]
    named = set(re.findall(r"`([a-z_]+)`", paragraph))
    assert named == {p.name for p in PARAMS}


def _reachable_from_cli(p: Param, options: set[str]) -> bool:
    return flag(p.name) in options or (bool(p.via) and all(flag(v) in options for v in p.via))


@pytest.mark.parametrize("p", PARAMS, ids=lambda p: p.name)
def test_every_parameter_is_reachable_from_the_api_the_cli_and_the_app(p: Param) -> None:
    user = next(name for name in names() if get(name).applies(p))
    value = getattr(make_params(user), p.name)
    assert getattr(make_params(user, **{p.name: value}), p.name) == value  # the API takes it by name
    assert _reachable_from_cli(p, _trace_options()), f"{p.name} has no flag"
    knobs = {k.name for k in KNOBS}
    in_app = p.name in knobs or p.name in Controls([]).__dict__ or (p.via and set(p.via) <= knobs)
    assert in_app, f"{p.name} has no control in the app"


@pytest.mark.parametrize("p", [p for p in PARAMS if p.check.widget != "none"], ids=lambda p: p.name)
def test_a_value_typed_as_text_reads_back(p: Param) -> None:
    """What the app shows in a text box (``show``) is what it parses back (``parse``): no knob loses its value."""
    assert p.check.parse(p.check.show(p.default)) == p.default


def test_every_strategy_has_its_defaults_and_rules_in_its_spec() -> None:
    for spec in REGISTRY.values():
        p = make_params(spec.name)
        assert all(getattr(p, k) == v for k, v in spec.defaults.items())
    applies = "it applies only to sample, beam-sample, assisted-sample and contrastive"
    with pytest.raises(explorer.ParameterError, match=applies):
        make_params("beam", top_k=5)


def _own_loop_greedy(model: CausalLM, spec: StrategySpec, setup: Setup, on_step: Any, should_stop: Any) -> Run:
    """A driver: greedy decoding in a loop of its own (as assisted decoding will run), recorded by the shared
    greedy search's steps."""
    search = get("greedy").steps
    state, rows = search.initial(setup)
    logits, cache = model.start(list(setup.prompt_ids), rows)
    steps: list[Step] = []
    for index in range(setup.params.max_new_tokens):
        outcome = search.step(state, logits, index, setup)
        state = outcome.state
        steps.append(outcome.step)
        if on_step is not None:
            on_step(outcome.step)
        if outcome.done or outcome.tokens is None:
            break
        logits, cache = model.step(outcome.tokens, cache)
    return Run(tuple(steps), search.results(state, setup), search.stop_reason(state), 0.0)


def test_a_strategy_with_its_own_driver_runs_beside_the_shared_loop(
    tiny: CausalLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = StrategySpec("own-greedy", "greedy in its own loop", get("greedy").steps, "rows", driver=_own_loop_greedy)
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    seen: list[str] = []
    traces = explorer.compare(tiny, [5, 6, 7], {"shared": {"strategy": "greedy"}, "own": {"strategy": "own-greedy"},
                                                "beam": {"strategy": "beam"}},
                              on_step=lambda name, _step: seen.append(name))
    assert traces["own"].results[0].token_ids == traces["shared"].results[0].token_ids
    assert check_trace(traces["own"]) == []
    assert seen.count("own") == len(traces["own"].steps) == 20


def test_a_strategy_that_needs_hidden_states_is_refused_on_a_table(
    toy: CausalLM, tiny: CausalLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = StrategySpec("layered", "needs layers", get("greedy").steps, "rows", needs=frozenset({"hidden_states"}))
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    with pytest.raises(explorer.ParameterError, match="has no layers"):
        explorer.plan(toy, "The", "layered")
    assert tiny.info.num_layers == 2
    assert explorer.plan(tiny, [5, 6], "layered").strategy == "layered"


def test_a_spec_may_only_default_parameters_it_uses() -> None:
    with pytest.raises(ValueError, match="does not use"):
        register(StrategySpec("x", "x", get("greedy").steps, "rows", defaults={"num_beams": 2}))
    with pytest.raises(ValueError, match="registered twice"):
        register(get("beam"))
