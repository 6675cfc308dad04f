"""The inside-the-model figures carry the trace's numbers: DoLa's chosen layer in every column, its cut and chosen
tokens, contrastive search's iso-score lines through the recorded scores, the logit lens's probabilities and ranks
on one shared colour scale; hostile token text stays text."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np
import pytest

import explorer
from explorer.figures import (
    contrastive_scores,
    dola_contrast,
    dola_layers,
    dola_lens,
    lens_heatmap,
    lens_top,
    palette,
)
from explorer.figures._inside import CHOSEN_COLOR, chosen_token
from explorer.figures._lens import PROB_SCALE, rank_label
from explorer.figures._style import safe_label
from explorer.figures._theme import contrast_ratio
from explorer.lens import LensGrid, lens_grid, logit_lens
from explorer.models.base import CausalLM
from explorer.trace import Trace

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def tiny_dola(tiny: CausalLM) -> Trace:
    """Two candidate layers (0 and 1), so that the choice can move."""
    return explorer.decode(tiny, [5, 6, 7, 8], "dola", dola_layers=(0, 1), repetition_penalty=1.2, max_new_tokens=10)


@pytest.fixture(scope="module")
def tiny_contrastive(tiny: CausalLM) -> Trace:
    return explorer.decode(tiny, [5, 6, 7, 8], "contrastive", penalty_alpha=0.6, top_k=4, max_new_tokens=8)


@pytest.fixture(scope="module")
def smol(smollm2: CausalLM) -> dict[str, object]:
    """DoLa (upper half) and contrastive search on SmolLM2, and the lens along DoLa's text."""
    dola = explorer.decode(smollm2, PROMPT, "dola", dola_layers="high", repetition_penalty=1.2, max_new_tokens=6)
    contrastive = explorer.decode(smollm2, PROMPT, "contrastive", penalty_alpha=0.6, top_k=4, max_new_tokens=6)
    ids = [*dola.prompt_token_ids, *dola.results[0].token_ids]
    grid = lens_grid(smollm2, ids, len(dola.prompt_token_ids))
    return {"dola": dola, "contrastive": contrastive, "grid": grid}


def _trace(data: Any, meta: str) -> Any:
    """The figure's trace whose ``meta`` is ``meta``."""
    return next(t for t in data if t.meta == meta)


# --- DoLa's layer choice ---------------------------------------------------------------------------------------------


def check_dola_layers(trace: Trace) -> None:
    fig = dola_layers(trace)
    heat, star = _trace(fig.data, "divergence"), _trace(fig.data, "chosen")
    steps = [s for s in trace.steps if s.dola is not None]
    assert steps
    assert list(star.x) == [s.index for s in steps]
    assert list(star.y) == [s.dola.chosen_layer for s in steps if s.dola]
    layers = list(heat.y)
    for col, s in enumerate(steps):
        d = s.dola
        assert d is not None
        assert d.chosen_layer in layers
        for layer, divergence in zip(d.layers, d.divergences, strict=True):
            assert heat.z[layers.index(layer)][col] == pytest.approx(divergence)
            hover = heat.hovertext[layers.index(layer)][col]
            assert ("<b>chosen</b>" in hover) == (layer == d.chosen_layer)
        assert d.chosen_layer == d.layers[max(range(len(d.layers)), key=lambda i: d.divergences[i])]
    made = [chosen_token(s) for s in steps]
    assert list(fig.layout.xaxis.ticktext) == [safe_label(m[1], 8) for m in made if m]
    assert "JS divergence" in heat.colorbar.title.text


def test_dola_layers_star_the_chosen_layer_of_every_step(tiny_dola: Trace) -> None:
    check_dola_layers(tiny_dola)
    assert len({s.dola.chosen_layer for s in tiny_dola.steps if s.dola}) >= 1


@pytest.mark.slow
def test_dola_layers_on_smollm2(smol: dict[str, object]) -> None:
    trace = smol["dola"]
    assert isinstance(trace, Trace)
    check_dola_layers(trace)
    fig = dola_layers(trace)
    assert list(_trace(fig.data, "divergence").y) == [15, 17, 19, 21, 23, 25, 27, 29]
    assert "final layer 30" in fig.layout.title.text


def test_divergences_in_one_format(tiny_dola: Trace) -> None:
    heat = _trace(dola_layers(tiny_dola).data, "divergence")
    hovers = " ".join(h for row in heat.hovertext for h in row)
    shown = re.findall(r"JS divergence from the final layer \d+: (\S+)<br>", hovers)
    assert shown
    assert all(re.fullmatch(r"\d\.\d\de-?\d+", v) for v in shown), shown
    assert heat.colorbar.tickformat == ".2e"  # the bar writes them the same way


# --- one DoLa step -------------------------------------------------------------------------------------------------


def check_dola_contrast(trace: Trace) -> None:
    for step in trace.steps:
        d = step.dola
        assert d is not None
        fig = dola_contrast(step)
        assert f"contrasted with layer {d.chosen_layer}" in fig.layout.title.text
        cands = d.candidates
        cut = _trace(fig.data, "cut")
        bars = _trace(fig.data, "contrast")
        assert list(cut.customdata) == [c.token_id for c in cands if not c.plausible]
        assert set(cut.text) <= {"cut"}
        assert list(bars.customdata) == [c.token_id for c in cands if c.plausible]
        assert list(bars.x) == pytest.approx([c.contrast for c in cands if c.plausible])
        assert sum(c.plausible for c in cands) <= d.plausible
        final, premature = _trace(fig.data, "final"), _trace(fig.data, "premature")
        assert list(final.x) == pytest.approx([c.final_logprob for c in cands])
        assert list(premature.x) == pytest.approx([c.premature_logprob for c in cands])
        grey = palette("light").muted
        assert [col == grey for col in final.marker.color] == [not c.plausible for c in cands]
        made = chosen_token(step)
        assert made is not None
        highlighted = [t for t, col in zip(bars.customdata, bars.marker.color, strict=True) if col == CHOSEN_COLOR]
        assert highlighted == [made[0]]
        assert sum("▶" in label for label in fig.layout.yaxis.ticktext) == 1
        numbers = [*bars.text, *final.text]  # one precision for every number on screen
        assert all(re.fullmatch(r"-?\d+\.\d\d", n) for n in numbers), numbers


def test_dola_contrast_greys_the_cut_and_highlights_the_chosen(tiny_dola: Trace) -> None:
    check_dola_contrast(tiny_dola)


@pytest.mark.slow
def test_dola_contrast_on_smollm2(smol: dict[str, object]) -> None:
    trace = smol["dola"]
    assert isinstance(trace, Trace)
    check_dola_contrast(trace)
    assert any(not c.plausible for s in trace.steps if s.dola for c in s.dola.candidates), "SmolLM2 cuts tokens"


def test_dola_lens_carries_the_recorded_layer_probabilities(tiny_dola: Trace) -> None:
    fig = dola_lens(tiny_dola)
    heat, star = _trace(fig.data, "probability"), _trace(fig.data, "chosen")
    first = tiny_dola.steps[0].dola
    assert first is not None
    assert list(heat.y) == [*map(str, first.layers), f"{first.final_layer} (final)"]
    for col, step in enumerate(tiny_dola.steps):
        d = step.dola
        assert d is not None
        assert [row[col] for row in heat.z] == pytest.approx([p for p, _ in d.layer_probs])
        assert [row[col] for row in heat.text] == [rank_label(r) for _, r in d.layer_probs]
    assert list(star.y) == [str(s.dola.chosen_layer) for s in tiny_dola.steps if s.dola]


# --- contrastive search --------------------------------------------------------------------------------------------


def check_contrastive(trace: Trace, model: CausalLM) -> None:
    for step in trace.steps:
        record = step.contrastive
        assert record is not None
        fig = contrastive_scores(step, token_text=model.tokenizer.token_text)
        lines = [t for t in fig.data if t.meta == "iso"]
        assert sorted(t.customdata[0] for t in lines) == pytest.approx(sorted(c.score for c in record.candidates))
        for line in lines:
            for x, y in zip(line.x, line.y, strict=True):
                assert (1 - record.alpha) * x - record.alpha * y == pytest.approx(line.customdata[0], abs=1e-9)
        chosen = _trace(fig.data, "chosen")
        won = record.candidates[record.chosen]
        assert list(chosen.x) == pytest.approx([won.prob])
        assert list(chosen.y) == pytest.approx([won.penalty])
        assert won.score == max(c.score for c in record.candidates)
        others = _trace(fig.data, "candidates")
        assert sorted([*others.customdata, *chosen.customdata]) == list(range(len(record.candidates)))
        for j, hover in zip([*others.customdata, *chosen.customdata], [*others.hovertext, *chosen.hovertext],
                            strict=True):
            c = record.candidates[j]
            assert f"position {c.similar_to} " in hover
            assert safe_label(model.tokenizer.token_text(c.similar_token), 60) in hover
            assert c.similar_token == [*trace.prompt_token_ids, *step.hypotheses[0].token_ids][c.similar_to]


def test_contrastive_iso_lines_hold_the_recorded_scores(tiny_contrastive: Trace, tiny: CausalLM) -> None:
    check_contrastive(tiny_contrastive, tiny)


@pytest.mark.slow
def test_contrastive_scores_on_smollm2(smol: dict[str, object], smollm2: CausalLM) -> None:
    trace = smol["contrastive"]
    assert isinstance(trace, Trace)
    check_contrastive(trace, smollm2)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_contrastive_edges_of_alpha(tiny: CausalLM, alpha: float) -> None:
    trace = explorer.decode(tiny, [5, 6, 7], "contrastive", penalty_alpha=alpha, top_k=3, max_new_tokens=2)
    check_contrastive(trace, tiny)


# --- the logit lens ------------------------------------------------------------------------------------------------


def check_grid(grid: LensGrid) -> None:
    fig = lens_heatmap(grid)
    heat = _trace(fig.data, "lens")
    assert np.allclose(np.asarray(heat.z, dtype=float), grid.probs)
    assert [list(r) for r in heat.text] == [[safe_label(t, 6) for t in row] for row in grid.top_texts]
    for layer in range(grid.probs.shape[0]):
        for j in range(grid.probs.shape[1]):
            assert f"rank {int(grid.ranks[layer, j]) + 1}<br>" in heat.hovertext[layer][j]
    assert list(fig.layout.xaxis.ticktext) == [safe_label(t, 8) for t in grid.texts]
    assert (heat.zmin, heat.zmax, heat.colorbar.title.text) == (0.0, 1.0, "probability")


def test_lens_heatmap_carries_the_grid(tiny: CausalLM) -> None:
    grid = lens_grid(tiny, [5, 6, 7, 8, 9, 10], prompt_length=3)
    check_grid(grid)


@pytest.mark.slow
def test_lens_heatmap_on_smollm2(smol: dict[str, object]) -> None:
    grid = smol["grid"]
    assert isinstance(grid, LensGrid)
    check_grid(grid)
    assert grid.probs.shape[0] == 31
    dola = smol["dola"]
    assert isinstance(dola, Trace)
    # The lens's last row is the model's own distribution: DoLa recorded the same for the token it chose.
    recorded = [s.dola.layer_probs[-1] for s in dola.steps if s.dola]
    assert grid.probs[-1].tolist() == pytest.approx([p for p, _ in recorded], abs=1e-4)
    assert grid.ranks[-1].tolist() == [r for _, r in recorded]


def test_every_lens_heatmap_shares_one_colour_scale(tiny_dola: Trace, tiny: CausalLM) -> None:
    heats = [_trace(dola_lens(tiny_dola).data, "probability"),
             _trace(lens_heatmap(lens_grid(tiny, [5, 6, 7, 8], 2)).data, "lens"),
             _trace(lens_top(logit_lens(tiny, [5, 6, 7], top=4, token=9)).data, "top")]
    looks = {(h.zmin, h.zmax, h.colorbar.title.text, h.colorscale) for h in heats}
    assert len(looks) == 1
    assert heats[0].colorscale == _trace(lens_heatmap(lens_grid(tiny, [5, 6, 7, 8], 2)).data, "lens").colorscale
    assert PROB_SCALE == "Viridis"


def test_lens_top_shows_each_layers_best_and_the_asked_token(tiny: CausalLM) -> None:
    lens = logit_lens(tiny, [5, 6, 7], top=4, token=9)
    fig = lens_top(lens, token_text=tiny.tokenizer.token_text(9))
    top, asked = _trace(fig.data, "top"), _trace(fig.data, "asked")
    assert np.allclose(np.asarray(top.z, dtype=float), [[p for _, _, p in layer.top] for layer in lens.layers])
    assert [r[0] for r in asked.z] == pytest.approx([layer.token_prob for layer in lens.layers])
    assert [r[0] for r in asked.text] == [rank_label(layer.token_rank or 0) for layer in lens.layers]
    assert sum(bool(t.showscale) or t.showscale is None for t in fig.data) == 1  # one colour bar


# --- every figure ---------------------------------------------------------------------------------------------------


def test_another_strategy_gets_a_message(tiny: CausalLM) -> None:
    greedy = explorer.decode(tiny, [1, 2], "greedy", max_new_tokens=2)
    for fig in (dola_layers(greedy), dola_contrast(greedy.steps[0]), dola_lens(greedy),
                contrastive_scores(greedy.steps[0])):
        assert "no " in fig.layout.annotations[0].text


def test_both_themes(tiny_dola: Trace, tiny_contrastive: Trace) -> None:
    for theme in ("light", "dark"):
        for fig in (dola_layers(tiny_dola, theme=theme), dola_contrast(tiny_dola.steps[0], theme=theme),
                    dola_lens(tiny_dola, theme=theme), contrastive_scores(tiny_contrastive.steps[0], theme=theme)):
            assert fig.layout.template.layout.paper_bgcolor == palette(theme).paper


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_text_and_rims_hold_the_themes_contrast(tiny_dola: Trace, tiny_contrastive: Trace, tiny: CausalLM,
                                                theme: str) -> None:
    """As every chart (tests/test_theme.py): text 4.5:1 on the page, marker rims 3:1; the star that marks the
    chosen layer sits on heatmap cells, not on the page: white with a black rim, it holds on either end of the
    colour scale."""
    look = palette(theme)
    figs = [dola_layers(tiny_dola, theme=theme), dola_contrast(tiny_dola.steps[0], theme=theme),
            dola_lens(tiny_dola, theme=theme), contrastive_scores(tiny_contrastive.steps[0], theme=theme),
            lens_heatmap(lens_grid(tiny, [5, 6, 7, 8], 2), theme=theme),
            lens_top(logit_lens(tiny, [5, 6, 7], top=3, token=9), theme=theme)]
    for fig in figs:
        assert fig.layout.template.layout.paper_bgcolor == look.paper
        for t in fig.data:
            color = getattr(getattr(t, "textfont", None), "color", None)
            if isinstance(color, str):
                assert contrast_ratio(color, look.paper) >= 4.5, (t.meta, color)
            marker = getattr(t, "marker", None)
            if marker is None:
                continue
            assert marker.coloraxis is None
            if t.meta == "chosen" and marker.color == "white":  # the star on the cells
                assert (marker.symbol, marker.line.color) == ("star", "black")
            elif isinstance(marker.line.color, str):
                assert contrast_ratio(marker.line.color, look.paper) >= 3.0, (t.meta, marker.line.color)


def test_hostile_token_text_stays_text(tiny_dola: Trace, tiny_contrastive: Trace) -> None:
    evil = "<img src=x onerror=alert(1)>\u202e"
    step = tiny_dola.steps[0]
    assert step.dola is not None
    dola_step = dataclasses.replace(step, dola=dataclasses.replace(step.dola, candidates=tuple(
        dataclasses.replace(c, text=evil) for c in step.dola.candidates)))
    cstep = tiny_contrastive.steps[0]
    assert cstep.contrastive is not None
    c_step = dataclasses.replace(cstep, contrastive=dataclasses.replace(cstep.contrastive, candidates=tuple(
        dataclasses.replace(c, text=evil) for c in cstep.contrastive.candidates)))
    for fig in (dola_contrast(dola_step), contrastive_scores(c_step, token_text=lambda _: evil)):
        shown = " ".join(str(v) for t in fig.data for v in [*(t.text or ()), *(t.hovertext or ())])
        shown += fig.layout.title.text + " ".join(fig.layout.yaxis.ticktext or ())
        assert "<img" not in shown
        assert "\u202e" not in shown
    assert not math.isnan(step.dola.divergences[0])
