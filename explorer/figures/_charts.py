"""Charts beside the tree: one hypothesis's candidates, score timelines of the results, constraint progress."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures._paths import Index, index, result_path
from explorer.figures._style import (
    CONTROLS,
    FATE_COLORS,
    adjustment,
    base_layout,
    constraint_names,
    esc,
    esc_name,
    fmt,
    moved,
    panel_color,
    pct,
    pushed_out,
    result_color,
    safe_hover,
    safe_label,
)
from explorer.figures._theme import Theme, palette, resolve_theme
from explorer.scoring import path_scores, score_formula
from explorer.trace import Candidate, Hypothesis, Result, Trace

__all__ = ["constraint_progress", "message_figure", "score_timelines", "step_candidates"]

#: Characters of token text under a candidate's bars.
AXIS_LABEL_WIDTH = 24

DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def message_figure(message: str, *, title: str | None = None, height: int = 240,
                   theme: Theme | None = None) -> go.Figure:
    """A figure with no data and a message in the middle, in the theme's muted colour (``theme`` as in
    :func:`step_candidates`).

    >>> message_figure("press Run", theme="dark").layout.annotations[0].font.color
    '#9E9E9E'
    """
    look = resolve_theme(theme)
    fig = go.Figure(layout=base_layout(look, height=height, title={"text": title, "x": 0.01} if title else None))
    fig.add_annotation(text=esc(message), showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 14, "color": palette(look).muted})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _so_far(idx: Index, hyp: Hypothesis, limit: int = 40) -> str:
    """The end of a hypothesis's text, from the candidates that made it (escaped)."""
    parts: list[str] = []
    node: Hypothesis | None = hyp
    while node is not None and node.parent is not None and len(parts) < limit:
        made = idx.made.get(("h", node.id))
        parts.append(made.text if made is not None else "?")
        node = idx.hyps.get(node.parent)
    text = "".join(reversed(parts))
    if not text:
        return "at the prompt"
    text = text.translate(CONTROLS)  # a bidi override or control character in a token cannot act on the title
    return "“" + esc(("…" + text[-limit:]) if len(text) > limit else text) + "”"


def _candidate_hover(c: Candidate) -> str:
    """Hover text of one candidate bar."""
    lines = [f"<b>{safe_hover(c.text)}</b>  id {c.token_id} · vocab rank {c.rank + 1}",
             f"log-prob {fmt(c.logprob)} · p {pct(c.logprob)}"]
    lines += [f"  {esc(name)} {adjustment(v)}" for name, v in c.adjustments if v != 0.0]
    lines += [f"token score {fmt(c.score)} (after the processors) · p {pct(c.score)}",
              f"path score {fmt(c.total)} (summed token scores)"]
    words = moved(c)
    if words is not None:
        lines.append(words)
    lines.append(f"<b>{c.fate}</b>: {esc(c.reason)}")
    return "<br>".join(lines)


def _look(c: Candidate, k: int) -> tuple[str, str]:
    """A bar's colour key (its fate, or ``pushed down``: one of the model's top-k the processors pushed out) and
    the mark over its processed bar (✕ masked, ↓ pushed down)."""
    if c.fate == "masked":
        return "masked", "✕"
    if c.fate == "pruned" and pushed_out(c, k):
        return "pushed down", "↓"
    return c.fate, ""


def _labels(cands: tuple[Candidate, ...]) -> list[str]:
    """Axis labels: visible token text (a long one cut: its bar's hover has all of it), made unique with the token
    id where two read the same."""
    texts = [safe_label(c.text, AXIS_LABEL_WIDTH) for c in cands]
    return [f"{t} #{c.token_id}" if texts.count(t) > 1 else t for t, c in zip(texts, cands, strict=True)]


def step_candidates(trace: Trace, hyp_id: int, *, theme: Theme | None = None) -> go.Figure:
    """The recorded candidates of one hypothesis: raw probability (hatched) beside the processed one (solid).

    Bars are coloured by fate (kept, finished, pruned, masked; ``pushed down``: one of the model's own top
    ``record_top_k`` that the processors pushed out of the top by score), a masked bar marked ✕ and a pushed-down
    one ↓ (its processed bar is low or empty); the hover has the log-prob, what the processors did, every processor's
    adjustment, the cumulative score and the reason. Tokens on the axis show their whitespace (``␣``, ``⏎``).
    ``theme``: ``"light"``, ``"dark"`` or ``None`` (Plotly's default template's, see
    :func:`explorer.figures.resolve_theme`).

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="beam", num_beams=2, max_new_tokens=2)
    >>> fig = step_candidates(t, 0)
    >>> [tr.name for tr in fig.data][:2], len(fig.data[0].x) == len(t.hypothesis(0).candidates)
    (['raw probability', 'processed probability'], True)
    """
    look = resolve_theme(theme)
    idx = index(trace)
    if hyp_id not in idx.hyps:
        raise KeyError(hyp_id)
    hyp = idx.hyps[hyp_id]
    title = (f"Candidates of h{hyp.id} · step {idx.step_of[hyp.id]} · slot {hyp.slot}"
             f"{f' · group {hyp.group}' if trace.params.get('num_beam_groups', 1) not in (None, 1) else ''}"
             f" · {_so_far(idx, hyp)}")
    cands = hyp.candidates
    if not cands:
        return message_figure("No candidates were recorded for this hypothesis (record_top_k=0).", title=title,
                              theme=look)
    labels, hover = _labels(cands), [_candidate_hover(c) for c in cands]
    k = int(trace.params.get("record_top_k", 10) or 0)
    looks = [_look(c, k) for c in cands]
    colors = [FATE_COLORS.get(key, "#999") for key, _ in looks]
    raw = np.exp([c.logprob for c in cands])
    done = np.exp([c.score for c in cands])
    # The title has the top line to itself and the legend the line under it: a long "so far" text in the title
    # must not run under the legend.
    fig = go.Figure(layout=base_layout(
        look, height=380, barmode="group", bargap=0.25, bargroupgap=0.05,
        title={"text": title, "x": 0.01, "xanchor": "left", "yref": "container", "y": 0.98, "yanchor": "top"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0.0}))
    common = {"x": labels, "hovertext": hover, "hoverinfo": "text", "customdata": [c.token_id for c in cands]}
    # Hatching in each bar's own colour ("replace"): the templates' "overlay" default would make plotly.js take the
    # contrast of the whole colour array for the hatching, log "Invalid color specifier: Array(n)" and hatch in black.
    fig.add_trace(go.Bar(y=raw, name="raw probability", **common,
                         marker={"color": colors, "opacity": 0.9, "line": {"width": 1, "color": colors},
                                 "pattern": {"shape": "/", "solidity": 0.45, "fillmode": "replace"}}))
    fig.add_trace(go.Bar(y=done, name="processed probability", **common, marker={"color": colors},
                         text=[mark for _, mark in looks], textposition="outside", cliponaxis=False,
                         textfont={"color": colors, "size": 13}))
    for fate in dict.fromkeys(key for key, _ in looks):  # legend entries for the fates present
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=fate, legendgroup="fates",
                                 marker={"symbol": "square", "size": 12, "color": FATE_COLORS.get(fate, "#999")}))
    fig.update_xaxes(title=None, type="category", tickangle=-40 if len(cands) > 12 else 0)
    fig.update_yaxes(title="probability", rangemode="tozero", tickformat=".0%")
    fig.update_layout(margin={"t": 96})
    return fig


def _timeline(trace: Trace, result: Result, idx: Index) -> tuple[list[float], list[float], list[str]]:
    """Depth, path log-prob and hover of each point of one result's path; the last hover gives the result's
    score. A token whose candidate was not recorded ends the line (its log-prob is unknown)."""
    path = result_path(trace, result, idx)
    xs, ys, hover = [0.0], [0.0], ["prompt · log-prob 0"]
    total = 0.0
    for depth, cand in enumerate(path.tokens, start=1):
        if cand is None:
            break
        total += cand.logprob
        xs.append(float(depth))
        ys.append(total)
        hover.append(f"{safe_hover(cand.text)} · token log-prob {fmt(cand.logprob)} · path log-prob {fmt(total)}")
    scores = path_scores(path.tokens)
    end = f"<br><b>score {fmt(result.score)}</b> ({esc(score_formula(trace))})"
    if scores.diversity is not None:
        end += f"<br>of which diversity penalty {fmt(scores.diversity)}"
    if scores.logprob is None:
        end += "<br>(a token's probability was not recorded: the line stops before it)"
    hover[-1] += end
    return xs, ys, hover


def score_timelines(traces: Mapping[str, Trace], *, theme: Theme | None = None) -> go.Figure:
    """Log-prob of each result along its path, token by token, strategies overlaid: the model's summed
    log-probability, the same quantity for every strategy (higher: more likely).

    One colour per panel (strategy), one dash per result rank; the last point (a diamond) is where the result
    ended, and its hover and the legend also give the result's score (what its strategy ranked it by, with the
    length penalty's formula in the beam family). ``theme`` as in :func:`step_candidates`.

    >>> import explorer
    >>> m = explorer.load_model("tiny-random")
    >>> t = explorer.decode(m, [5, 6], strategy="beam", max_new_tokens=3, length_penalty=0.0)
    >>> fig = score_timelines({"beam": t})
    >>> fig.data[0].name.startswith("beam · result 0 (log-prob "), abs(fig.data[0].y[-1] - t.results[0].score) < 1e-5
    (True, True)
    """
    fig = go.Figure(layout=base_layout(resolve_theme(theme), height=380,
                                       title={"text": "Log-prob along each result's path (the model's, summed)",
                                              "x": 0.01}))
    for i, (name, trace) in enumerate(traces.items()):
        idx = index(trace)
        for result in trace.results:
            xs, ys, hover = _timeline(trace, result, idx)
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers", legendgroup=name,
                name=f"{esc_name(name)} · result {result.rank} (log-prob {fmt(ys[-1])}, score {fmt(result.score)})",
                line={"color": panel_color(i), "dash": DASHES[result.rank % len(DASHES)], "width": 2.5},
                marker={"size": [5] * (len(xs) - 1) + [11], "symbol": ["circle"] * (len(xs) - 1) + ["diamond"]},
                hovertext=[f"{esc_name(name)} · result {result.rank}<br>{h}" for h in hover], hoverinfo="text"))
    longest = max((len(r.token_ids) for t in traces.values() for r in t.results), default=0)
    fig.update_xaxes(title="tokens generated", zeroline=False, dtick=1 if longest <= 16 else None, tickformat="d")
    fig.update_yaxes(title="log-prob (summed)")
    fig.update_layout(legend={"orientation": "v", "x": 1.01, "xanchor": "left", "y": 1.0, "yanchor": "top"})
    return fig


def _matched(hyp: Hypothesis, row: int, n: int) -> float | None:
    """A hypothesis's value in one row: tokens matched of constraint ``row``, or the bank (row ``n``)."""
    progress = hyp.constraint
    if progress is None:
        return None
    if row == n:
        return float(progress.bank)
    return float(progress.matched[row]) if row < len(progress.matched) else None


def _status(hyp: Hypothesis, row: int) -> str | None:
    """A hypothesis's status for constraint ``row``."""
    status = hyp.constraint.status if hyp.constraint is not None else ()
    return status[row] if row < len(status) else None


def _progress_row(trace: Trace, idx: Index, row: int, n: int, slots: int, edge: str) -> list[Any]:
    """Traces of one row: the lattice (edges and hypotheses), completions, resets, and the results' paths."""
    jitter = {h.id: (h.slot - (slots - 1) / 2) * 0.5 / max(slots, 1) for h in idx.hyps.values()}
    xs: list[float | None] = []
    ys: list[float | None] = []
    points: dict[str, list[Any]] = {"hypothesis": [], "forced": [], "completed": [], "reset": []}
    for hyp in idx.hyps.values():
        y = _matched(hyp, row, n)
        if y is None:
            continue
        point = (float(len(hyp.token_ids)), y + jitter[hyp.id], hyp)
        points["forced" if hyp.forced else "hypothesis"].append(point)
        parent = idx.hyps.get(hyp.parent) if hyp.parent is not None else None
        before = _matched(parent, row, n) if parent is not None else None
        if parent is None or before is None:
            continue
        xs += [float(len(parent.token_ids)), point[0], None]
        ys += [before + jitter[parent.id], point[1], None]
        if row < n and _status(hyp, row) == "complete" and _status(parent, row) != "complete":
            points["completed"].append(point)
        if y < before:
            points["reset"].append(point)
    out: list[Any] = [go.Scatter(x=xs, y=ys, mode="lines", line={"color": f"rgba({edge},0.5)", "width": 1},
                                 hoverinfo="skip", showlegend=False)]
    styles = {"hypothesis": ("circle", 6, "#7f8c8d"), "forced": ("triangle-up", 8, "#0072B2"),
              "completed": ("star", 14, "#009E73"), "reset": ("x", 11, "#D55E00")}
    for kind, found in points.items():
        symbol, size, color = styles[kind]
        out.append(go.Scatter(
            x=[p[0] for p in found], y=[p[1] for p in found], mode="markers", name=kind, legendgroup=kind,
            showlegend=row == 0, marker={"symbol": symbol, "size": size, "color": color},
            customdata=[[None, f"h{p[2].id}"] for p in found], hoverinfo="text",
            hovertext=[_progress_hover(p[2], idx, kind, constraint_names(trace.constraints)) for p in found]))
    for result in trace.results:
        path = [h for h in result_path(trace, result, idx).hyps if _matched(h, row, n) is not None]
        out.append(go.Scatter(
            x=[float(len(h.token_ids)) for h in path], y=[(_matched(h, row, n) or 0.0) + jitter[h.id] for h in path],
            mode="lines", name=f"result {result.rank}", legendgroup=f"result {result.rank}", showlegend=row == 0,
            line={"color": result_color(result.rank), "width": 3.5 if result.rank == 0 else 2.2}, hoverinfo="skip"))
    return out


def _progress_hover(hyp: Hypothesis, idx: Index, kind: str, names: list[str]) -> str:
    """Hover text of a hypothesis in the progress chart."""
    made = idx.made.get(("h", hyp.id))
    lines = [f"<b>{safe_hover(made.text) if made else 'prompt'}</b>  h{hyp.id} · slot {hyp.slot} · {kind}"]
    if hyp.constraint is not None:
        for i, (status, got, length) in enumerate(zip(hyp.constraint.status, hyp.constraint.matched,
                                                      hyp.constraint.lengths, strict=False)):
            lines.append(f"{esc(names[i]) if i < len(names) else i}: {status.replace('_', ' ')} {got}/{length}")
        lines.append(f"bank {hyp.constraint.bank}")
    return "<br>".join(lines)


def constraint_progress(trace: Trace, *, theme: Theme | None = None) -> go.Figure:
    """How far each hypothesis got with each constraint, step by step: one row per constraint, and the bank.

    Dots are hypotheses (jittered by slot; triangles were forced), lines link parent to child, the results' paths
    are bold; stars mark a completed constraint, crosses a reset (progress lost). A run without constraints gives
    an empty figure that says so. Markers carry ``customdata`` ``[None, "h<id>"]`` like :func:`search_tree`.
    ``theme`` as in :func:`step_candidates`.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=2)
    >>> constraint_progress(t).layout.annotations[0].text
    'This run (greedy) has no constraints.'
    """
    look = resolve_theme(theme)
    idx = index(trace)
    if not trace.constraints or not any(h.constraint is not None for h in idx.hyps.values()):
        return message_figure(f"This run ({trace.strategy}) has no constraints.", theme=look)
    names = constraint_names(trace.constraints)
    n = len(names)
    lengths = [max((h.constraint.lengths[i] for h in idx.hyps.values() if h.constraint
                    and i < len(h.constraint.lengths)), default=1) for i in range(n)]
    titles = [f"{esc(name)} · tokens matched" for name in names] + ["bank"]
    fig = make_subplots(rows=n + 1, cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.08)
    slots = max((h.slot for h in idx.hyps.values()), default=0) + 1
    for row in range(n + 1):
        fig.add_traces(_progress_row(trace, idx, row, n, slots, palette(look).edge), rows=row + 1, cols=1)
        top = lengths[row] if row < n else max((h.constraint.bank for h in idx.hyps.values() if h.constraint),
                                               default=1)
        fig.update_yaxes(range=[-0.6, top + 0.6], dtick=1 if top <= 12 else None, row=row + 1, col=1)
    fig.update_xaxes(title="tokens generated", row=n + 1, col=1)
    fig.update_layout(**base_layout(look, height=170 * (n + 1) + 90,
                                    title={"text": f"Constraint progress · {trace.strategy}", "x": 0.01},
                                    legend={"orientation": "v", "x": 1.01, "xanchor": "left", "y": 1.0}))
    return fig
