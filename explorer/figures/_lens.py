"""The logit lens as figures: along a generated text (each layer's probability of each next token) and at the end of
a text (each layer's best tokens); the probability heatmap every lens figure shares (one scale, 0 to 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures._style import NODE_SCALE, base_layout, safe_hover, safe_label
from explorer.figures._theme import Theme, resolve_theme
from explorer.lens import Lens, LensGrid

__all__ = ["PROB_SCALE", "ROW", "TEXT_COLUMNS", "lens_heatmap", "lens_top", "prob", "prob_heatmap", "rank_label"]

#: The one colour scale of probabilities, 0 to 1, in every lens heatmap (so that two of them compare).
PROB_SCALE = NODE_SCALE
#: Columns of a heatmap above which the cells are too narrow for their text (the hover still has it).
TEXT_COLUMNS = 24
#: Pixels per heatmap row.
ROW = 22


def prob(p: float) -> str:
    """A probability in a hover: three decimals, or two significant digits below 0.0005 (a lens reads many tiny
    ones).

    >>> prob(0.7726), prob(7.4e-44), prob(0.0)
    ('0.773', '7.4e-44', '0')
    """
    if p == 0.0:
        return "0"
    return f"{p:.3f}" if p >= 0.0005 else f"{p:.1e}"


def rank_label(rank: int) -> str:
    """A 0-based rank as a cell shows it, 1-based and short (``1``, ``260``, ``39k``).

    >>> rank_label(0), rank_label(259), rank_label(39284)
    ('1', '260', '39k')
    """
    shown = rank + 1
    return f"{shown // 1000}k" if shown >= 10_000 else str(shown)


def prob_heatmap(x: Sequence[Any], y: Sequence[Any], z: Any, text: Any, hover: Any, columns: int,
                  meta: str) -> go.Heatmap:
    """A heatmap of probabilities on the one shared scale (0 to 1, its bar labelled), cell text where it fits."""
    fits = columns <= TEXT_COLUMNS
    return go.Heatmap(
        x=list(x), y=list(y), z=z, zmin=0.0, zmax=1.0, colorscale=PROB_SCALE, xgap=1, ygap=1, meta=meta,
        text=text, texttemplate="%{text}" if fits else None, textfont={"size": 10}, hovertext=hover,
        hoverinfo="text", colorbar={"title": {"text": "probability", "side": "top"}, "tickformat": ".1f",
                                    "thickness": 14, "len": 0.9})


def lens_heatmap(grid: LensGrid, *, theme: Theme | None = None) -> go.Figure:
    """The logit lens along a generated text: for each layer (rows, 0 = the embeddings, up to the last) and each
    generated token (columns), that token's probability in the layer's reading just before it (colour, 0 to 1),
    each cell's text the layer's own best token there (where the cells are wide enough); the hover adds the rank.

    >>> import explorer
    >>> from explorer.lens import lens_grid
    >>> grid = lens_grid(explorer.load_model("tiny-random"), [5, 6, 7, 8, 9], prompt_length=3)
    >>> fig = lens_heatmap(grid)
    >>> fig.data[0].z.shape == grid.probs.shape
    True
    """
    look = resolve_theme(theme)
    layers, columns = grid.probs.shape
    tokens = [safe_label(t, 8) for t in grid.texts]
    text = [[safe_label(t, 6) for t in row] for row in grid.top_texts]
    hover = [[f"layer {layer} · token {j}: <b>{tokens[j]}</b><br>p {prob(float(grid.probs[layer, j]))} · rank "
              f"{int(grid.ranks[layer, j]) + 1}<br>the layer's best: <b>{safe_hover(grid.top_texts[layer][j])}</b>"
              for j in range(columns)] for layer in range(layers)]
    fig = go.Figure(layout=base_layout(
        look, height=max(320, 150 + ROW * layers),
        title={"text": "Logit lens along the text: how sure each layer is of the token that came next<br>"
                       "<span style='font-size:11px'>colour: that token's probability at the layer; text: the layer's "
                       "own best token; hover: the token's rank</span>", "x": 0.01, "font": {"size": 13}}))
    fig.update_layout(margin={"t": 72})
    fig.add_trace(prob_heatmap(range(columns), range(layers), np.asarray(grid.probs), text, hover, columns,
                                "lens"))
    fig.update_xaxes(tickvals=list(range(columns)), ticktext=tokens, showgrid=False, zeroline=False,
                     title="generated token")
    fig.update_yaxes(title="layer (0 = embeddings)", showgrid=False, zeroline=False,
                     dtick=1 if layers <= 16 else 2)
    return fig


def lens_top(lens: Lens, *, theme: Theme | None = None, token_text: str | None = None,
             text: str | None = None) -> go.Figure:
    """The logit lens at the end of a text: each layer's top tokens (rows: layers 0 to the last; text: the token,
    colour: its probability on the shared scale), and, when the lens was asked about a token (the one the run took
    next, spelled ``token_text``), a column of that token's probability and rank (1 = the layer's top). ``text``
    (the generated text the lens reads after) is quoted in the title, its end.

    >>> import explorer
    >>> from explorer.lens import logit_lens
    >>> fig = lens_top(logit_lens(explorer.load_model("tiny-random"), [5, 6, 7], top=3))
    >>> [len(row) for row in fig.data[-1].z]
    [3, 3, 3]
    """
    look = resolve_theme(theme)
    layers = [layer.layer for layer in lens.layers]
    k = max((len(layer.top) for layer in lens.layers), default=0)
    asked = lens.token is not None
    fig = make_subplots(rows=1, cols=2 if asked else 1, shared_yaxes=True, horizontal_spacing=0.02,
                        column_widths=[0.16, 0.84] if asked else None)
    if asked:
        name = safe_label(token_text if token_text is not None else f"#{lens.token}", 10)
        fig.add_trace(prob_heatmap(
            [f"next: {name}"], layers, [[layer.token_prob] for layer in lens.layers],
            [[rank_label(layer.token_rank or 0)] for layer in lens.layers],
            [[f"layer {layer.layer}: <b>{name}</b> (the run's next token)<br>p {prob(layer.token_prob or 0.0)} · "
              f"rank {(layer.token_rank or 0) + 1}"] for layer in lens.layers], 1, "asked"), row=1, col=1)
    z = [[p for _, _, p in layer.top] + [None] * (k - len(layer.top)) for layer in lens.layers]
    cells = [[safe_label(t, 8) for _, t, _ in layer.top] + [""] * (k - len(layer.top)) for layer in lens.layers]
    hover = [[f"layer {layer.layer} · its #{i + 1}: <b>{safe_hover(t)}</b> (id {tid})<br>p {prob(p)}"
              for i, (tid, t, p) in enumerate(layer.top)] for layer in lens.layers]
    fig.add_trace(prob_heatmap([f"top {i + 1}" for i in range(k)], layers, z, cells, hover, k, "top"),
                  row=1, col=2 if asked else 1)
    for trace in fig.data[:-1]:
        trace.showscale = False
    cut = "…" if text is not None and len(text) > 24 else ""
    after = "" if text is None else f" after “{cut}{safe_label(text[-24:], 24)}”" if text else " after the prompt"
    title = (f"Logit lens{after}: what each layer would say next<br><span style='font-size:11px'>each layer's "
             "hidden state through the final norm and the LM head")
    title += "; first column: the token the run took next, its rank</span>" if asked else "</span>"
    fig.update_layout(**base_layout(look, height=max(320, 150 + ROW * len(layers)),
                                    title={"text": title, "x": 0.01, "font": {"size": 13}}))
    fig.update_layout(margin={"t": 80})
    fig.update_yaxes(title="layer (0 = embeddings)", showgrid=False, zeroline=False,
                     dtick=1 if len(layers) <= 16 else 2, row=1, col=1)
    fig.update_xaxes(side="top", showgrid=False)
    return fig
