"""Tree figures that fit their box: the grid of panels for a width, labels that never overlap, whole result paths."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest

import explorer
from explorer.figures import search_tree, search_trees, tree_layout
from explorer.figures._fit import GAP_X, MARGIN, MIN_PANEL, label_box, place_labels, text_width, tree_grid
from explorer.models.base import CausalLM
from explorer.trace import Trace

#: Widths of the app's figure box in a 1280 px and a 1920 px window (Voila's page, less its margins).
LAPTOP, DESKTOP = 1224, 1864


@pytest.mark.parametrize("width", [LAPTOP, DESKTOP, 700, 300])
@pytest.mark.parametrize("count", range(1, 9))
def test_the_grid_fills_the_width_without_overlaps(width: int, count: int) -> None:
    grid = tree_grid([4] * count, width)
    assert len(grid.cells) == count
    assert grid.width == max(width, MIN_PANEL + MARGIN["l"] + MARGIN["r"])  # never wider than the box unless needed
    assert grid.columns * grid.rows >= count > grid.columns * (grid.rows - 1)  # no empty row
    for cell in grid.cells:
        assert 0.0 <= cell.x[0] < cell.x[1] <= 1.0 + 1e-9
        assert 0.0 <= cell.y[0] < cell.y[1] <= 1.0 + 1e-9
        assert cell.width >= MIN_PANEL - 1e-6
    for a, b in itertools.combinations(grid.cells, 2):  # apart, in pixels: a gap between columns and rows
        apart_x = a.x[1] <= b.x[0] or b.x[1] <= a.x[0]
        apart_y = a.y[1] <= b.y[0] or b.y[1] <= a.y[0]
        assert apart_x or apart_y
    used = max(c.x[1] for c in grid.cells) - min(c.x[0] for c in grid.cells)
    assert used == pytest.approx(1.0)  # the panels take the whole width: no half-empty box


@pytest.mark.parametrize(("count", "width", "columns"), [(1, LAPTOP, 1), (2, LAPTOP, 2), (4, LAPTOP, 2), (8, LAPTOP, 3),
                                                          (2, DESKTOP, 2), (4, DESKTOP, 4), (8, DESKTOP, 4)])
def test_columns_for_a_laptop_and_a_desktop(count: int, width: int, columns: int) -> None:
    grid = tree_grid([4] * count, width)
    assert grid.columns == columns
    per_panel = (width - MARGIN["l"] - MARGIN["r"] - GAP_X * (columns - 1)) / columns
    assert grid.cells[0].width == pytest.approx(per_panel)


def test_rows_are_as_tall_as_their_largest_panel() -> None:
    grid = tree_grid([1, 16, 1, 1], 1224)  # two rows of two: 16 slots in the first
    first, second = grid.cells[0], grid.cells[2]
    assert first.height > 2 * second.height
    assert first.height == grid.cells[1].height
    assert grid.height == int(first.height + second.height + 84 + MARGIN["t"] + MARGIN["b"])


def test_labels_are_placed_clear_of_each_other_or_left_out() -> None:
    # Close finished entries: "0.94" and "0.04" side by side once read "0.940.04".
    points = [(100.0, 50.0, 6.5, "0.94"), (100.0, 53.0, 6.5, "0.04"), (100.0, 56.0, 6.5, "0.44")]
    places = place_labels(points, [("middle right", "top right", "bottom right")] * 3, 400, 200)
    assert places == ["middle right", "bottom right", None]  # the second moves down, the third has no room
    apart = [(100.0, 50.0, 6.5, "0.94"), (100.0, 70.0, 6.5, "0.04"), (100.0, 90.0, 6.5, "0.44")]
    assert place_labels(apart, [("middle right", "top right", "bottom right")] * 3, 400, 200) == ["middle right"] * 3
    crowded = place_labels(points * 2, [("middle right",)] * 6, 400, 200)
    assert crowded == ["middle right", None, None, None, None, None]
    assert place_labels([(390.0, 50.0, 6.5, "0.94")], [("middle right",)], 400, 200) == [None]  # would be cut


def test_text_width_is_generous() -> None:
    assert text_width("-0.41") >= 5 * 0.6 * 11
    assert text_width("日") > text_width("a")
    assert text_width("&amp;") == text_width("&")
    box = label_box(100, 50, 30, 6.5, "middle right")
    assert box[0] > 100 + 6.5
    assert box[2] - box[0] >= 30


# --- the figures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tiny: CausalLM) -> dict[str, Trace]:
    """Eight real runs of several strategies, with many finished entries close together (beam 8, never early)."""
    prompt = [5, 6, 7, 8]
    kinds: list[dict[str, Any]] = [
        {"strategy": "greedy", "max_new_tokens": 8},
        {"strategy": "beam", "num_beams": 8, "max_new_tokens": 12, "early_stopping": "never", "length_penalty": 0.0},
        {"strategy": "diverse", "num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 1.0, "max_new_tokens": 8},
        {"strategy": "beam", "num_beams": 4, "max_new_tokens": 6},
    ]
    out = {f"#{i + 1} {kw['strategy']}": explorer.decode(tiny, prompt, **kw) for i, kw in enumerate(kinds)}
    return out | {f"#{i + 5} copy": trace for i, trace in enumerate(list(out.values()))}


def _label_boxes(fig: go.Figure) -> dict[str, list[tuple[float, float, float, float]]]:
    """Every shown label's box in figure pixels (by subplot), worked out from the figure as plotly.js draws it."""
    layout = fig.layout
    width, height = layout.width, layout.height
    plot_w, plot_h = width - layout.margin.l - layout.margin.r, height - layout.margin.t - layout.margin.b
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for t in fig.data:
        if t.text is None or t.mode is None or "text" not in t.mode:
            continue
        xa = layout[t.xaxis.replace("x", "xaxis")]
        ya = layout[t.yaxis.replace("y", "yaxis")]
        left, top = layout.margin.l + xa.domain[0] * plot_w, layout.margin.t + (1 - ya.domain[1]) * plot_h
        sx = (xa.domain[1] - xa.domain[0]) * plot_w / (xa.range[1] - xa.range[0])
        sy = (ya.domain[1] - ya.domain[0]) * plot_h / (ya.range[0] - ya.range[1])
        many = isinstance(t.textposition, tuple | list | np.ndarray)
        places = t.textposition if many else [t.textposition] * len(t.x)
        for x, y, text, place in zip(t.x, t.y, t.text, places, strict=True):
            if text:
                px, py = left + (x - xa.range[0]) * sx, top + (y - ya.range[1]) * sy
                box = label_box(px, py, text_width(text), t.marker.size / 2, place)
                boxes.setdefault(t.xaxis, []).append(box)
                assert box[0] >= left - 0.5  # inside its panel: plotly would cut it at the axis
                assert box[2] <= left + (xa.domain[1] - xa.domain[0]) * plot_w + 0.5
    return boxes


@pytest.mark.parametrize("count", [1, 2, 4, 8])
@pytest.mark.parametrize("width", [LAPTOP, DESKTOP])
def test_trees_fit_the_width_with_labels_apart(runs: dict[str, Trace], count: int, width: int) -> None:
    chosen = dict(list(runs.items())[:count])
    fig = search_trees(chosen, width=width)
    assert fig.layout.width == width
    grid = tree_grid([tree_layout(t).slots for t in chosen.values()], width)
    for i, cell in enumerate(grid.cells):
        suffix = "" if i == 0 else str(i + 1)
        assert tuple(fig.layout[f"xaxis{suffix}"].domain) == pytest.approx(cell.x)
        assert tuple(fig.layout[f"yaxis{suffix}"].domain) == pytest.approx(cell.y)
    bar = fig.layout.coloraxis.colorbar
    assert (bar.orientation, bar.yref, bar.yanchor) == ("h", "container", "top")  # above the panels
    assert (1 - bar.y) * fig.layout.height < MARGIN["t"] - 50
    assert (fig.layout.legend.yref, fig.layout.legend.y) == ("container", 0.0)  # below them
    boxes = _label_boxes(fig)
    assert sum(len(b) for b in boxes.values()) >= count  # each panel labels at least its best entry
    for panel in boxes.values():
        for a, b in itertools.combinations(panel, 2):
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_close_finished_entries_are_not_all_labelled(runs: dict[str, Trace]) -> None:
    fig = search_tree(runs["#2 beam"], width=LAPTOP)
    (accepted,) = [t for t in fig.data if t.name == "finished (accepted)" and t.customdata is not None]
    shown = [text for text in accepted.text if text]
    assert 0 < len(shown) < len(accepted.text)  # eight beams end together: some labels had no room
    lay = tree_layout(runs["#2 beam"])
    best = [f"{lay.normalized[r]:.2f}" for r in np.flatnonzero((lay.kind == "finished") & (lay.result_rank == 0))]
    assert any(text.endswith(best[0]) for text in shown)  # the result's own entry is labelled first


@pytest.mark.parametrize("name", ["#1 greedy", "#2 beam", "#3 diverse"])
def test_the_whole_winning_path_is_drawn_over_the_nodes(runs: dict[str, Trace], name: str) -> None:
    fig = search_tree(runs[name])
    names = [t.name for t in fig.data]
    assert names.index("result 0") > names.index("hypothesis")  # over the nodes: a straight run shows too
    (path,) = [t for t in fig.data if t.name == "result 0" and t.mode == "lines"]
    lay = tree_layout(runs[name])
    on_path = int(((lay.result_rank == 0) & (lay.parent >= 0)).sum())
    assert on_path >= lay.depth > 0  # every token of the best result has its edge, greedy's included
    assert int(np.isfinite(np.asarray(path.x, dtype=float)).sum()) == 2 * on_path


def test_panel_titles_fit_their_panel(runs: dict[str, Trace]) -> None:
    long = {f"#{i} beam ↳ step 7 \"{'x' * 60}\"": t for i, t in enumerate(list(runs.values())[:4])}
    fig = search_trees(long, width=LAPTOP)
    panel = tree_grid([4] * 4, LAPTOP).cells[0].width
    assert all(text_width(a.text, 14) <= panel for a in fig.layout.annotations)
