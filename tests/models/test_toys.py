"""Teaching toy models: the built-in tables reproduce their textbook numbers, and malformed tables are refused."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import explorer
from explorer.invariants import check_trace
from explorer.models.table import TableError, builtin_toys, load_table


def texts(trace: explorer.Trace) -> list[tuple[str, float]]:
    return [(r.text, round(math.exp(r.score), 4)) for r in trace.results]


def toy(name: str) -> Any:
    return explorer.load_model(f"toy:{name}")


def test_how_to_generate_greedy_misses_what_beam_search_finds() -> None:
    m = toy("how-to-generate")
    assert texts(explorer.decode(m, m.prompt, "greedy")) == [("nice woman", 0.2)]
    beam = explorer.decode(m, m.prompt, "beam", num_beams=2, length_penalty=0.0, max_new_tokens=5)
    assert texts(beam) == [("dog has", 0.36)]


def test_d2l_greedy_scores_0048_and_beam_search_finds_0054() -> None:
    m = toy("d2l-beam")
    greedy = explorer.decode(m, m.prompt, "greedy", max_new_tokens=6)
    assert [m.tokenizer.token_text(t) for t in greedy.results[0].token_ids] == ["A", "B", "C", "<eos>"]
    assert texts(greedy) == [("A B C", 0.048)]
    beam = explorer.decode(m, m.prompt, "beam", num_beams=2, length_penalty=0.0, max_new_tokens=6,
                           num_return_sequences=2)
    assert texts(beam) == [("A C B", 0.054), ("A B C", 0.048)]


def test_a_constraint_forces_a_less_likely_path() -> None:
    m = toy("constrained")
    assert texts(explorer.decode(m, m.prompt, "greedy")) == [("like tea", 0.385)]
    two = explorer.decode(m, m.prompt, "constrained", constraints=["cake"], num_beams=2, length_penalty=0.0,
                          max_new_tokens=5)
    assert texts(two) == [("like cake", 0.099)]
    three = explorer.decode(m, m.prompt, "constrained", constraints=["cake"], num_beams=3, length_penalty=0.0,
                            max_new_tokens=5)
    assert texts(three) == [("love cake", 0.144)]
    assert three.results[0].constraints_satisfied
    banks = {h.constraint.bank for s in three.steps for h in s.hypotheses if h.constraint}
    assert banks == {0, 1}
    assert any(h.forced for s in three.steps for h in s.hypotheses)
    assert check_trace(three) == []


def test_diverse_groups_split_into_distinct_continuations() -> None:
    m = toy("diverse")
    beam = explorer.decode(m, m.prompt, "beam", num_beams=4, length_penalty=0.0, max_new_tokens=4,
                           num_return_sequences=4)
    assert [t for t, _ in texts(beam)] == ["nice today", "nice again", "bad outside", "bad today"]
    diverse = explorer.decode(m, m.prompt, "diverse", num_beams=4, num_beam_groups=2, diversity_penalty=2.0,
                              length_penalty=0.0, max_new_tokens=4, num_return_sequences=4)
    firsts = {r.group: r.text.split()[0] for r in diverse.results}
    assert firsts == {0: "nice", 1: "cold"}
    assert check_trace(diverse) == []


@pytest.mark.parametrize("name", sorted(builtin_toys()))
@pytest.mark.parametrize("strategy", ["greedy", "beam", "diverse", "sample"])
def test_every_toy_keeps_the_invariants(name: str, strategy: str) -> None:
    m = explorer.load_model(name)
    params: dict[str, Any] = {"max_new_tokens": 6}
    if strategy == "diverse":
        params |= {"num_beams": 4, "num_beam_groups": 2}
    if strategy == "sample":
        params |= {"seed": 3, "num_return_sequences": 4}
    trace = explorer.decode(m, m.prompt, strategy, **params)
    assert check_trace(trace) == []


def write(tmp_path: Path, doc: object, suffix: str = ".json") -> Path:
    path = tmp_path / f"table{suffix}"
    path.write_text(json.dumps(doc) if suffix == ".json" else str(doc))
    return path


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"A": {"B": 0.5, "C": 0.4}, "": {"<eos>": 1.0}}, "probabilities after 'A' sum to 0.9"),
        ({"A": {"B": 1.2}, "": {"<eos>": 1.0}}, "must be a number in [0, 1]"),
        ({"A": {"B": 1.0}, "B": {"A": 1.0}}, "can never end"),
        ({"A": {"A": 1.0}, "": {"<eos>": 1.0}}, "from 'A' the sequence can never end"),
        ({"A": {}}, "must map tokens to probabilities"),
        ({}, "'table' must be a non-empty mapping"),
    ],
)
def test_malformed_tables_are_refused(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    with pytest.raises(TableError) as info:
        load_table(write(tmp_path, {"name": "bad", "table": table}))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_tokens_are_refused_when_tokens_are_listed(tmp_path: Path) -> None:
    doc = {"name": "t", "tokens": ["A", "B"], "table": {"A": {"B": 0.5, "Z": 0.5}, "": {"<eos>": 1.0}}}
    with pytest.raises(TableError, match="unknown token 'Z' after 'A'"):
        load_table(write(tmp_path, doc))


def test_broken_json_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"table": ')
    with pytest.raises(TableError, match="is not valid"):
        load_table(path)


def test_yaml_tables_load_by_path_anywhere_a_model_name_goes(tmp_path: Path) -> None:
    path = tmp_path / "coin.yaml"
    path.write_text("name: coin\nprompt: flip\ntable:\n  flip: {heads: 0.5, tails: 0.5}\n  '': {<eos>: 1.0}\n")
    model = explorer.load_model(str(path))
    trace = explorer.decode(model, "flip", "beam", num_beams=2, max_new_tokens=3, length_penalty=0.0,
                            num_return_sequences=2)
    assert sorted(r.text for r in trace.results) == ["heads", "tails"]


def test_unknown_toy_lists_what_exists() -> None:
    with pytest.raises(explorer.ModelNotFoundError, match="toy:how-to-generate"):
        explorer.load_model("toy:nope")
