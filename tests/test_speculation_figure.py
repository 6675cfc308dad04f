"""The speculation view: every drafted token once, in its round and place, coloured by its verdict; the target's
own token where it went; the run's totals in the title; hostile token text stays text."""

from __future__ import annotations

import dataclasses

import pytest

import explorer
from explorer.figures import VERDICT_COLORS, palette, speculation_rounds
from explorer.models.base import CausalLM
from explorer.speculation import speculation_stats
from explorer.trace import Trace


@pytest.fixture(scope="module")
def sampled(tiny: CausalLM) -> Trace:
    return explorer.decode(tiny, [5, 6, 7, 8, 9], "assisted-sample", assistant_early_exit=1, max_new_tokens=24,
                           num_assistant_tokens=5, assistant_confidence_threshold=0.0, seed=3)


@pytest.fixture(scope="module")
def lookup(tiny: CausalLM) -> Trace:
    return explorer.decode(tiny, [1, 2, 3, 1, 2, 3, 1, 2], "assisted", prompt_lookup_num_tokens=4, max_new_tokens=12)


@pytest.mark.parametrize("which", ["sampled", "lookup"])
def test_every_drafted_token_once_in_its_round_and_place(which: str, request: pytest.FixtureRequest) -> None:
    trace: Trace = request.getfixturevalue(which)
    fig = speculation_rounds(trace)
    drawn = {(round(x), round(y), t.name.removeprefix("drafted, "))
             for t in fig.data if t.meta == "drafted" for x, y in zip(t.x, t.y, strict=True)}
    expected = {(i, s.index, d.verdict) for s in trace.steps if s.speculation
                for i, d in enumerate(s.speculation.drafted)}
    assert drawn == expected
    assert sum(len(t.x) for t in fig.data if t.meta == "drafted") == len(expected)
    for t in fig.data:
        if t.meta == "drafted":
            assert t.marker.color == VERDICT_COLORS[t.name.removeprefix("drafted, ")]


def test_the_targets_own_token_sits_where_it_went(sampled: Trace) -> None:
    fig = speculation_rounds(sampled)
    added = next(t for t in fig.data if t.meta == "added")
    rounds = [s for s in sampled.steps if s.speculation and s.speculation.added is not None]
    assert [round(y) for y in added.y] == [s.index for s in rounds]  # just below its round's row
    assert list(added.x) == [s.speculation.accepted for s in rounds if s.speculation]
    gained = next(t for t in fig.data if t.meta == "gained")
    assert list(gained.x) == [len(s.hypotheses) for s in sampled.steps]
    assert sum(gained.x) == len(sampled.results[0].token_ids)
    assert any("correction" in h for h in added.hovertext)
    assert any("residual" in h for h in added.hovertext), "a rejection in sampling shows the residual it drew from"


def test_the_title_gives_the_runs_totals(sampled: Trace, lookup: Trace) -> None:
    for trace in (sampled, lookup):
        stats = speculation_stats(trace)
        assert stats is not None
        title = speculation_rounds(trace).layout.title.text
        assert f"{stats.forwards} target forwards for {stats.tokens} tokens" in title
        assert f"{stats.tokens_per_forward:.2f} per forward" in title
        assert f"{stats.accepted} of {stats.drafted} drafted accepted" in title
    assert "prompt lookup has no distribution" in " ".join(
        h for t in speculation_rounds(lookup).data if t.meta == "drafted" for h in t.hovertext)


def test_another_strategy_gets_a_message(tiny: CausalLM) -> None:
    fig = speculation_rounds(explorer.decode(tiny, [1, 2], "greedy", max_new_tokens=3))
    assert "not assisted decoding" in fig.layout.annotations[0].text


def test_both_themes(sampled: Trace) -> None:
    for theme in ("light", "dark"):
        fig = speculation_rounds(sampled, theme=theme)
        assert fig.layout.template.layout.paper_bgcolor == palette(theme).paper
        labels = {t.textfont.color for t in fig.data if t.meta in ("drafted", "added")}
        assert labels == {palette(theme).label}


def test_hostile_token_text_stays_text(sampled: Trace) -> None:
    step = next(s for s in sampled.steps if s.speculation and s.speculation.drafted)
    spec = step.speculation
    assert spec is not None
    evil = dataclasses.replace(spec.drafted[0], text="<img src=x onerror=alert(1)>\u202e")
    hostile = dataclasses.replace(sampled, steps=tuple(
        dataclasses.replace(s, speculation=dataclasses.replace(spec, drafted=(evil, *spec.drafted[1:])))
        if s.index == step.index else s for s in sampled.steps))
    fig = speculation_rounds(hostile)
    everything = " ".join(str(v) for t in fig.data for v in [*(t.text or ()), *(t.hovertext or ())])
    assert "<img" not in everything
    assert "\u202e" not in everything
