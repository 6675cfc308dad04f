"""Contrastive search as a figure: one step's candidates, confidence against degeneration penalty, with the lines of
equal score through them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import plotly.graph_objects as go

from explorer.figures._charts import message_figure
from explorer.figures._inside import ALPHA, CHOSEN_COLOR, MINUS, TIMES
from explorer.figures._style import PALETTE, base_layout, fmt, safe_hover, safe_label
from explorer.figures._theme import Theme, palette, resolve_theme
from explorer.trace import Step

__all__ = ["contrastive_scores"]


def _texts(step: Step) -> dict[int, str]:
    """Token texts the step recorded (its candidates, contrastive search's too)."""
    out = {c.token_id: c.text for h in step.hypotheses for c in h.candidates}
    if step.contrastive is not None:
        out.update({c.token_id: c.text for c in step.contrastive.candidates})
    return out


def _iso_line(score: float, alpha: float, xr: tuple[float, float], yr: tuple[float, float]) -> tuple[list[float],
                                                                                                    list[float]]:
    """Two points of the line ``(1 - alpha) * x - alpha * y = score`` spanning the plot's box."""
    if alpha <= 0.0:
        x = score / (1.0 - alpha)
        return [x, x], [yr[0], yr[1]]
    xs = [xr[0], xr[1]]
    return xs, [((1.0 - alpha) * x - score) / alpha for x in xs]


#: Where a label can go around its point, and where its middle then is (in fractions of the axes' spans).
_OFFSETS = {"top center": (0.0, 0.07), "bottom center": (0.0, -0.07), "middle right": (0.12, 0.0),
            "middle left": (-0.12, 0.0), "top right": (0.1, 0.06), "top left": (-0.1, 0.06)}


def _places(xs: Sequence[float], ys: Sequence[float], xr: tuple[float, float], yr: tuple[float, float]) -> list[str]:
    """Where each point's label goes: of the places around it (none past the plot's left or right edge), the one
    farthest from every point and every label placed before it (above it, when nothing is near)."""
    sx, sy = (xr[1] - xr[0]) or 1.0, (yr[1] - yr[0]) or 1.0
    points = [((x - xr[0]) / sx, (y - yr[0]) / sy) for x, y in zip(xs, ys, strict=True)]
    labels: list[tuple[float, float]] = []
    out: list[str] = []
    for i, (x, y) in enumerate(points):
        best, place = -1.0, "top center"
        for name, (dx, dy) in _OFFSETS.items():
            cx, cy = x + dx, y + dy
            if not 0.06 <= cx <= 0.94:
                continue
            others = [p for j, p in enumerate(points) if j != i] + labels
            room = min((max(abs(cx - ox) / 2.0, abs(cy - oy)) for ox, oy in others), default=1.0)
            if room > best + 1e-9:
                best, place = room, name
        out.append(place)
        labels.append((x + _OFFSETS[place][0], y + _OFFSETS[place][1]))
    return out


def contrastive_scores(step: Step, *, theme: Theme | None = None,
                       token_text: Callable[[int], str] | None = None) -> go.Figure:
    """One step of contrastive search: each of the ``top_k`` candidates at its confidence (the model's probability,
    x) and its degeneration penalty (its largest cosine similarity to the text so far, y); dashed iso-score lines
    ``(1 - alpha) * p - alpha * penalty = score`` through each, the chosen one (the highest score, the lowest line
    to the right) highlighted. The hover names the context token the candidate is most like and its position
    (``token_text`` spells it; else the step's records, else ``#id``).

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6, 7], "contrastive", max_new_tokens=2)
    >>> fig = contrastive_scores(t.steps[0])
    >>> [tr.meta for tr in fig.data].count("iso") == len(t.steps[0].contrastive.candidates)
    True
    """
    look = resolve_theme(theme)
    record = step.contrastive
    if record is None or not record.candidates:
        return message_figure("no candidates to show: this step is not contrastive search's", theme=look)
    ink = palette(look)
    known = _texts(step)

    def spell(token: int) -> str:
        if token_text is not None:
            return token_text(token)
        return known.get(token, f"#{token}")

    alpha, cands = record.alpha, record.candidates
    xr = (0.0, min(1.0, max(c.prob for c in cands) * 1.15 + 0.05))
    yr = (min(0.0, min(c.penalty for c in cands) - 0.05), max(1.0, max(c.penalty for c in cands) + 0.05))
    fig = go.Figure()
    for j, c in enumerate(cands):
        xs, ys = _iso_line(c.score, alpha, xr, yr)
        won = j == record.chosen
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", meta="iso", customdata=[c.score, c.score], showlegend=False,
            name=f"score {fmt(c.score)}", hoverinfo="skip",
            line={"dash": "solid" if won else "dash", "width": 2 if won else 1,
                  "color": CHOSEN_COLOR if won else ink.muted}))
    hover = []
    for j, c in enumerate(cands):
        lines = [f"<b>{safe_hover(c.text)}</b>  id {c.token_id} · the model's #{j + 1} of top_k={len(cands)}",
                 f"confidence p = {fmt(c.prob)}",
                 f"degeneration penalty = {fmt(c.penalty)}: most like position {c.similar_to} "
                 f"<b>{safe_hover(spell(c.similar_token))}</b> (id {c.similar_token})",
                 f"score = (1 {MINUS} {alpha:g}) {TIMES} {fmt(c.prob)} {MINUS} {alpha:g} {TIMES} {fmt(c.penalty)} = "
                 f"<b>{fmt(c.score)}</b>"]
        if j == record.chosen:
            lines.append("<b>chosen</b>: the highest score")
        hover.append("<br>".join(lines))
    order = sorted(range(len(cands)), key=lambda j: j != record.chosen)  # the chosen label first: it stays on top
    placed = dict(zip(order, _places([cands[j].prob for j in order], [cands[j].penalty for j in order], xr, yr),
                      strict=True))
    for won in (False, True):
        picked = [j for j in range(len(cands)) if (j == record.chosen) == won]
        fig.add_trace(go.Scatter(
            x=[cands[j].prob for j in picked], y=[cands[j].penalty for j in picked], mode="markers+text",
            meta="chosen" if won else "candidates", name="chosen (highest score)" if won else "other candidates",
            text=[f"{safe_label(cands[j].text, 12)} {fmt(cands[j].score)}" for j in picked],
            textposition=[placed[j] for j in picked], textfont={"size": 11, "color": ink.label}, customdata=picked,
            hovertext=[hover[j] for j in picked], hoverinfo="text", cliponaxis=False,
            marker={"symbol": "star" if won else "circle", "size": 17 if won else 11,
                    "color": CHOSEN_COLOR if won else PALETTE[0], "line": {"width": 1, "color": ink.outline}}))
    chosen = cands[record.chosen]
    title = (f"Contrastive search at step {step.index}: score = (1 {MINUS} {ALPHA})·p {MINUS} {ALPHA}·penalty, "
             f"{ALPHA} = {alpha:g} → "
             f"<b>{safe_label(chosen.text, 20)}</b><br><span style='font-size:11px'>dashed: points of equal score, "
             "through each candidate; the score grows to the lower right</span>")
    height = 460
    fig.update_layout(**base_layout(look, height=height, title={"text": title, "x": 0.01, "font": {"size": 13}}))
    fig.update_layout(margin={"t": 80, "b": 96},
                      legend={"orientation": "h", "yanchor": "top", "y": -64 / (height - 80 - 96), "xanchor": "left",
                              "x": 0.0})
    fig.update_xaxes(range=list(xr), title="confidence: the model's probability p", zeroline=False)
    fig.update_yaxes(range=list(yr), title="degeneration penalty: max cosine similarity", zeroline=False)
    return fig
