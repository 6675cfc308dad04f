"""Inside the model: DoLa's layer contrast as figures (the layer each step chose, one step's contrast, the chosen
token through the layers DoLa reads), and what they share with contrastive search's and the logit lens's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures._charts import message_figure
from explorer.figures._lens import ROW, prob, prob_heatmap, rank_label
from explorer.figures._style import FATE_COLORS, PALETTE, base_layout, fmt, safe_hover, safe_label
from explorer.figures._theme import Theme, palette, resolve_theme
from explorer.trace import DolaCandidate, Step, Trace

__all__ = ["ALPHA", "CHOSEN_COLOR", "MINUS", "TIMES", "chosen_token", "dola_contrast", "dola_layers", "dola_lens",
           "sci"]

#: The chosen token, layer or candidate (the colour of a kept candidate elsewhere).
CHOSEN_COLOR = FATE_COLORS["kept"]
MINUS, TIMES, ALPHA = "\N{MINUS SIGN}", "\N{MULTIPLICATION SIGN}", "\N{GREEK SMALL LETTER ALPHA}"
#: The star on a heatmap cell (white with a black rim: it stands out on either end of the colour scale).
_STAR = {"symbol": "star", "size": 13, "color": "white", "line": {"color": "black", "width": 1.5}}


def sci(value: float) -> str:
    """A small positive number in one fixed form, as the colour bars write it too (``6.12e-4``).

    >>> sci(0.000612), sci(0.0031), sci(0.0)
    ('6.12e-4', '3.10e-3', '0.00e0')
    """
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def chosen_token(step: Step) -> tuple[int, str] | None:
    """The token a step of a one-row strategy (greedy, DoLa, contrastive) took: id and text, from its kept (or
    finished) candidate."""
    for hyp in step.hypotheses:
        for c in hyp.candidates:
            if c.fate in ("kept", "finished"):
                return c.token_id, c.text
    return None


def _column_labels(steps: Sequence[Step]) -> list[str]:
    """Each step's column label: the text of the token it chose."""
    out = []
    for s in steps:
        made = chosen_token(s)
        out.append(safe_label(made[1], 8) if made is not None else f"step {s.index}")
    return out


def _heat_axes(fig: go.Figure, steps: Sequence[Step], **extra: Any) -> None:
    """Step columns along x, labelled with their tokens."""
    fig.update_xaxes(tickvals=[s.index for s in steps], ticktext=_column_labels(steps), showgrid=False,
                     zeroline=False, title="step: the token it chose", **extra)


# --- DoLa ------------------------------------------------------------------------------------------------------------


def _dola_steps(trace: Trace) -> list[Step]:
    return [s for s in trace.steps if s.dola is not None]


def dola_layers(trace: Trace, *, theme: Theme | None = None) -> go.Figure:
    """DoLa's choice of layer, step by step: a heatmap of every candidate premature layer's Jensen-Shannon
    divergence from the final layer (rows: layers; columns: steps, labelled with the token each chose), a star on
    the layer each step contrasted with (the most divergent). A trace of another strategy gets a message figure.
    ``theme`` as in :func:`explorer.figures.step_candidates`.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6, 7], "dola", dola_layers=(0, 1),
    ...                     max_new_tokens=4)
    >>> fig = dola_layers(t)
    >>> list(fig.data[1].y) == [s.dola.chosen_layer for s in t.steps]
    True
    """
    look = resolve_theme(theme)
    steps = _dola_steps(trace)
    if not steps:
        return message_figure("no layer contrast to show: this run is not DoLa", theme=look)
    layers = sorted({layer for s in steps if s.dola for layer in s.dola.layers})
    final = steps[0].dola.final_layer if steps[0].dola else 0
    labels = _column_labels(steps)
    z: list[list[float | None]] = []
    hover: list[list[str]] = []
    for layer in layers:
        row_z: list[float | None] = []
        row_h: list[str] = []
        for s, label in zip(steps, labels, strict=True):
            d = s.dola
            assert d is not None
            value = d.divergences[d.layers.index(layer)] if layer in d.layers else None
            row_z.append(value)
            if value is None:
                row_h.append(f"layer {layer} · step {s.index}: not a candidate layer")
                continue
            verdict = ("<b>chosen</b>: the only candidate layer" if len(d.layers) == 1 else
                       "<b>chosen</b>: the most divergent" if layer == d.chosen_layer else
                       f"not chosen (layer {d.chosen_layer} diverges most)")
            row_h.append(f"layer {layer} · step {s.index}: <b>{label}</b><br>JS divergence from the final layer "
                         f"{d.final_layer}: {sci(value)}<br>{verdict}")
        z.append(row_z)
        hover.append(row_h)
    fig = go.Figure(layout=base_layout(
        look, height=max(280, 150 + ROW * len(layers)),
        title={"text": f"DoLa's layer choice: ★ the layer each step contrasted with the final layer {final}<br>"
                       "<span style='font-size:11px'>colour: each candidate layer's Jensen-Shannon divergence from "
                       "the final layer; DoLa takes the most divergent</span>", "x": 0.01, "font": {"size": 13}}))
    fig.add_trace(go.Heatmap(
        x=[s.index for s in steps], y=layers, z=z, hovertext=hover, hoverinfo="text", colorscale="Viridis",
        xgap=1, ygap=1, meta="divergence",
        colorbar={"title": {"text": "JS divergence<br>from the final<br>layer", "side": "top"}, "tickformat": ".2e",
                  "thickness": 14}))
    fig.add_trace(go.Scatter(
        x=[s.index for s in steps], y=[s.dola.chosen_layer for s in steps if s.dola], mode="markers",
        marker=_STAR, name="the layer contrasted (most divergent)", meta="chosen", hoverinfo="skip"))
    _heat_axes(fig, steps)
    fig.update_yaxes(type="category", title="candidate premature layer", showgrid=False)
    fig.update_layout(showlegend=False, margin={"t": 72})
    return fig


def _contrast_labels(cands: Sequence[DolaCandidate], chosen: int | None) -> list[str]:
    """Row labels: visible token text, unique (``#id`` where two read the same), the chosen one bold."""
    texts = [safe_label(c.text, 14) for c in cands]
    labels = [f"{t} #{c.token_id}" if texts.count(t) > 1 else t for t, c in zip(texts, cands, strict=True)]
    return [f"<b>▶ {label}</b>" if c.token_id == chosen else label for label, c in zip(labels, cands, strict=True)]


def _contrast_hover(c: DolaCandidate, chosen_layer: int, final: int, processed: dict[int, float],
                    chosen: int | None) -> str:
    lines = [f"<b>{safe_hover(c.text)}</b>  id {c.token_id}",
             f"log-prob at the final layer {final}: {fmt(c.final_logprob)} (p {prob(math.exp(c.final_logprob))})",
             f"log-prob at layer {chosen_layer}: {fmt(c.premature_logprob)}"]
    if c.plausible:
        lines.append(f"contrast = final {MINUS} layer {chosen_layer} = {fmt(c.contrast)}")
        score = processed.get(c.token_id)
        if score is not None and abs(score - c.contrast) > 1e-6:
            lines.append(f"after the processors (repetition penalty, ...): {fmt(score)}")
    else:
        lines.append(f"<b>cut</b>: final probability below 0.1 {TIMES} the best token's")
    if c.token_id == chosen:
        lines.append("<b>chosen</b>: the best score")
    return "<br>".join(lines)


def dola_contrast(step: Step, *, theme: Theme | None = None) -> go.Figure:
    """One step of DoLa, per recorded token: its log-probability at the final layer (●) and at the premature layer
    DoLa chose (○), joined by a line whose length is the contrast; beside it the contrast score ``final -
    premature`` as a bar. Tokens the plausibility cut removed are grey and marked ``cut`` (their score is -inf); the
    chosen token is highlighted (▶, green bar). The title names the chosen layer.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6, 7], "dola", max_new_tokens=2)
    >>> fig = dola_contrast(t.steps[0])
    >>> f"layer {t.steps[0].dola.chosen_layer}" in fig.layout.title.text
    True
    """
    look = resolve_theme(theme)
    d = step.dola
    if d is None:
        return message_figure("no layer contrast to show: this step is not DoLa's", theme=look)
    ink = palette(look)
    made = chosen_token(step)
    chosen = made[0] if made is not None else None
    processed = {c.token_id: c.score for h in step.hypotheses for c in h.candidates}
    cands = d.candidates
    rows = list(range(len(cands)))
    labels = _contrast_labels(cands, chosen)
    hover = [_contrast_hover(c, d.chosen_layer, d.final_layer, processed, chosen) for c in cands]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.58, 0.42], horizontal_spacing=0.1,
                        subplot_titles=("log-probability at each layer (number: at the final layer)",
                                        f"contrast: final {MINUS} layer {d.chosen_layer}"))
    xs: list[float | None] = []
    ys: list[float | None] = []
    for i, c in enumerate(cands):
        xs += [c.premature_logprob, c.final_logprob, None]
        ys += [i, i, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": ink.muted, "width": 1.5}, hoverinfo="skip",
                             showlegend=False), row=1, col=1)
    alive = [c.plausible for c in cands]
    for name, key, symbol, color in ((f"layer {d.chosen_layer} (premature)", "premature", "circle-open", PALETTE[1]),
                                     (f"final layer {d.final_layer}", "final", "circle", PALETTE[0])):
        final = key == "final"
        colors = [color if ok else ink.muted for ok in alive]
        fig.add_trace(go.Scatter(
            x=[c.final_logprob if final else c.premature_logprob for c in cands], y=rows,
            mode="markers+text" if final else "markers", name=name, meta=key, hovertext=hover, hoverinfo="text",
            text=[fmt(c.final_logprob, 2) for c in cands] if final else None, textposition="middle right",
            textfont={"size": 11, "color": ink.label}, cliponaxis=False,
            marker={"symbol": symbol, "size": [13 if c.token_id == chosen else 9 for c in cands], "color": colors,
                    "line": {"width": 1, "color": ink.outline} if final else {"width": 2, "color": colors}}),
            row=1, col=1)
    kept = [i for i, c in enumerate(cands) if c.plausible]
    fig.add_trace(go.Bar(
        x=[cands[i].contrast for i in kept], y=kept, orientation="h", meta="contrast", showlegend=False,
        marker={"color": [CHOSEN_COLOR if cands[i].token_id == chosen else PALETTE[0] for i in kept],
                "line": {"width": 0}},
        text=[fmt(cands[i].contrast, 2) for i in kept], textposition="outside", cliponaxis=False,
        textfont={"size": 11, "color": ink.label}, hovertext=[hover[i] for i in kept], hoverinfo="text",
        customdata=[cands[i].token_id for i in kept]), row=1, col=2)
    cut = [i for i, c in enumerate(cands) if not c.plausible]
    fig.add_trace(go.Scatter(
        x=[0.0] * len(cut), y=cut, mode="text", text=["cut"] * len(cut), textposition="middle right",
        textfont={"color": ink.muted, "size": 11}, meta="cut", showlegend=False, hovertext=[hover[i] for i in cut],
        hoverinfo="text", customdata=[cands[i].token_id for i in cut]), row=1, col=2)
    token = safe_label(made[1], 20) if made is not None else "?"
    why = "the only candidate layer" if len(d.layers) == 1 else "the most divergent"
    title = (f"DoLa at step {step.index}: final layer {d.final_layer} contrasted with layer {d.chosen_layer} "
             f"({why}) → <b>{token}</b><br><span style='font-size:11px'>"
             f"{'1 token passes' if d.plausible == 1 else f'{d.plausible} tokens pass'} the plausibility cut "
             f"(p ≥ 0.1 {TIMES} the best); grey: cut</span>")
    height = max(320, 190 + 26 * len(cands))
    fig.update_layout(**base_layout(look, height=height, title={"text": title, "x": 0.01, "font": {"size": 13}}))
    fig.update_layout(margin={"t": 92, "l": 110, "b": 96, "r": 40}, bargap=0.35,
                      legend={"orientation": "h", "yanchor": "top", "y": -64 / (height - 92 - 96), "xanchor": "left",
                              "x": 0.0})
    fig.update_yaxes(tickvals=rows, ticktext=labels, autorange="reversed", showgrid=False, zeroline=False)
    low = min(min(c.premature_logprob for c in cands), min(c.final_logprob for c in cands))
    high = max(max(c.premature_logprob for c in cands), max(c.final_logprob for c in cands))
    span = max(high - low, 1e-6)
    fig.update_xaxes(title="log-probability", zeroline=False, range=[low - 0.04 * span, high + 0.16 * span],
                     row=1, col=1)
    scores = [cands[i].contrast for i in kept] or [0.0]
    reach = max(max(scores), 0.0) - min(min(scores), 0.0) or 1.0
    fig.update_xaxes(title="contrast score", zeroline=True, zerolinecolor=ink.muted, row=1, col=2,
                     range=[min(min(scores), 0.0) - (0.2 * reach if min(scores) < 0 else 0.0),
                            max(max(scores), 0.0) + 0.2 * reach])
    fig.update_annotations(font={"size": 12})
    return fig


def dola_lens(trace: Trace, *, theme: Theme | None = None) -> go.Figure:
    """The chosen token through the layers DoLa reads, from the trace's records: for each step (columns) and each
    candidate layer then the final one (rows), the token's probability (colour, the scale of
    :func:`lens_heatmap`) and its rank there (the number: 1 = that layer's top token); a star on the layer
    contrasted. DoLa reads a premature layer with the LM head alone (no final norm, as the reference does).

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6, 7], "dola", max_new_tokens=3)
    >>> fig = dola_lens(t)
    >>> [list(r) for r in fig.data[0].z][-1] == [s.dola.layer_probs[-1][0] for s in t.steps]
    True
    """
    look = resolve_theme(theme)
    steps = _dola_steps(trace)
    if not steps:
        return message_figure("no layer contrast to show: this run is not DoLa", theme=look)
    first = steps[0].dola
    assert first is not None
    rows = [*first.layers, first.final_layer]
    names = [f"{layer}" for layer in first.layers] + [f"{first.final_layer} (final)"]
    labels = _column_labels(steps)
    z: list[list[float | None]] = [[] for _ in rows]
    text: list[list[str]] = [[] for _ in rows]
    hover: list[list[str]] = [[] for _ in rows]
    for s, label in zip(steps, labels, strict=True):
        d = s.dola
        assert d is not None
        read = dict(zip([*d.layers, d.final_layer], d.layer_probs, strict=True))
        for r, layer in enumerate(rows):
            got = read.get(layer)
            z[r].append(got[0] if got else None)
            text[r].append(rank_label(got[1]) if got else "")
            how = "the model's own distribution" if layer == d.final_layer else "LM head on the raw hidden state"
            hover[r].append(f"layer {names[r]} · step {s.index}: <b>{label}</b><br>"
                            + (f"p {prob(got[0])} · rank {got[1] + 1}<br>{how}" if got else "not read")
                            + ("<br><b>the layer contrasted</b>" if layer == d.chosen_layer else ""))
    fig = go.Figure(layout=base_layout(
        look, height=max(300, 160 + ROW * len(rows)),
        title={"text": "The chosen token through the layers DoLa reads · colour: its probability · number: its "
                       "rank (1 = the layer's top token)<br><span style='font-size:11px'>premature layers are read "
                       "with the LM head alone, no final norm (as the reference does) · ★ the layer contrasted"
                       "</span>", "x": 0.01, "font": {"size": 13}}))
    fig.add_trace(prob_heatmap([s.index for s in steps], names, z, text, hover, len(steps), "probability"))
    chosen = [(s.index, names[rows.index(s.dola.chosen_layer)]) for s in steps
              if s.dola and s.dola.chosen_layer in rows]
    fig.add_trace(go.Scatter(x=[c[0] + 0.32 for c in chosen], y=[c[1] for c in chosen], mode="markers",
                             marker={**_STAR, "size": 9}, name="the layer contrasted", meta="chosen",
                             hoverinfo="skip"))
    _heat_axes(fig, steps)
    fig.update_yaxes(type="category", title="layer", showgrid=False)
    fig.update_layout(margin={"t": 80})
    return fig
