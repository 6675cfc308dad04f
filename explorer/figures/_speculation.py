"""The speculation view: assisted decoding round by round, what was drafted, kept, refused and added."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures._charts import message_figure
from explorer.figures._style import base_layout, fmt, safe_hover, safe_label
from explorer.figures._theme import Theme, palette, resolve_theme
from explorer.speculation import speculation_stats
from explorer.trace import Drafted, Step, Trace

__all__ = ["VERDICT_COLORS", "speculation_rounds"]

#: A drafted token's colour by verdict, and the target's own token (correction or bonus): colour-blind safe.
VERDICT_COLORS = {"accepted": "#009E73", "rejected": "#D55E00", "unchecked": "#9AA0A6", "dropped": "#E69F00",
                  "added": "#0072B2"}
#: Rounds x drafted tokens above which the tokens' text is left to the hover (it would overlap).
TEXT_LIMIT = 240
#: How far below its round's row the target's own token sits (at the position it took).
ADDED_OFFSET = 0.4
#: Pixels per round (a row holds the drafted tokens with their text above, and the target's token below).
ROW_HEIGHT = 46


def _drafted_hover(step: Step, position: int, d: Drafted) -> str:
    q = "none (prompt lookup has no distribution)" if d.draft_prob is None else fmt(d.draft_prob, 4)
    lines = [f"round {step.index} · drafted token {position + 1}: <b>{safe_hover(d.text)}</b> (id {d.token_id})",
             f"draft q = {q} · target p = {fmt(d.target_prob, 4)}"]
    if d.draft_prob:
        lines.append(f"p / q = {fmt(d.target_prob / d.draft_prob, 3)}"
                     + ("" if d.draw is None else f" · draw {fmt(d.draw, 3)}"))
    lines.append(f"<b>{d.verdict}</b>: {safe_hover(d.reason)}")
    return "<br>".join(lines)


def _text(step: Step, token_id: int) -> str:
    """A token's text as the step's recorded candidates spell it (``#id`` when none of them is that token)."""
    for hyp in step.hypotheses:
        for c in hyp.candidates:
            if c.token_id == token_id:
                return c.text
    return f"#{token_id}"


def _round_hover(step: Step) -> str:
    spec = step.speculation
    assert spec is not None
    gained = len(step.hypotheses)
    return "<br>".join([
        f"round {step.index}: {gained} token{'s' if gained != 1 else ''} for one target forward",
        f"drafted {len(spec.drafted)} (asked {spec.draft_length}), accepted {spec.accepted}",
        f"draft {spec.draft_ms:.1f} ms · target forward {step.forward_ms:.1f} ms",
        f"next draft length {spec.next_draft_length}"])


def speculation_rounds(trace: Trace, *, theme: Theme | None = None) -> go.Figure:
    """Assisted decoding round by round: one row per target forward, its drafted tokens in order, coloured by what
    the target made of them (accepted, rejected, unchecked after a rejection, dropped after eos or the budget), the
    target's own token (a correction after a rejection, a bonus after a fully accepted draft) just below the place
    it took; beside it, the tokens each forward gained. The title gives the run's totals: tokens per target forward,
    the acceptance rate, draft against target time. A trace of another strategy gets a one-line message figure.
    ``theme`` as in :func:`step_candidates`.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [1, 2, 1, 2, 1], "assisted",
    ...                     prompt_lookup_num_tokens=3, max_new_tokens=6)
    >>> fig = speculation_rounds(t)
    >>> sum(len(s.speculation.drafted) for s in t.steps) == sum(len(d.x) for d in fig.data if d.meta == "drafted")
    True
    """
    theme = resolve_theme(theme)
    stats = speculation_stats(trace)
    rounds = [s for s in trace.steps if s.speculation is not None]
    if stats is None or not rounds:
        return message_figure("no speculation to show: this run is not assisted decoding", theme=theme)
    ink = palette(theme)
    source = rounds[0].speculation.source if rounds[0].speculation else ""
    title = (f"{source}: {stats.forwards} target forwards for {stats.tokens} tokens "
             f"({stats.tokens_per_forward:.2f} per forward)<br>{stats.accepted} of {stats.drafted} drafted accepted "
             f"({stats.acceptance:.0%}) · draft {stats.draft_ms / 1000:.2f} s, target {stats.target_ms / 1000:.2f} s")
    widest = max(max(len(s.speculation.drafted) for s in rounds if s.speculation), 1)
    show_text = len(rounds) * widest <= TEXT_LIMIT
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.8, 0.2], horizontal_spacing=0.03)
    for verdict in ("accepted", "rejected", "unchecked", "dropped"):
        xs: list[int] = []
        ys: list[int] = []
        texts: list[str] = []
        hovers: list[str] = []
        for step in rounds:
            spec = step.speculation
            assert spec is not None
            for i, d in enumerate(spec.drafted):
                if d.verdict == verdict:
                    xs.append(i)
                    ys.append(step.index)
                    texts.append(safe_label(d.text, 10))
                    hovers.append(_drafted_hover(step, i, d))
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers+text" if show_text else "markers", name=f"drafted, {verdict}", meta="drafted",
            text=texts, textposition="top center", textfont={"size": 10, "color": ink.label},
            marker={"symbol": "square", "size": 13, "color": VERDICT_COLORS[verdict],
                    "line": {"width": 1, "color": ink.outline}},
            hovertext=hovers, hoverinfo="text", cliponaxis=False), row=1, col=1)
    added = [s for s in rounds if s.speculation and s.speculation.added is not None]
    fig.add_trace(go.Scatter(
        x=[s.speculation.accepted for s in added if s.speculation],
        y=[s.index + ADDED_OFFSET for s in added],
        mode="markers+text" if show_text else "markers", name="the target's own token", meta="added",
        text=[safe_label(_text(s, s.speculation.added), 10) for s in added
              if s.speculation and s.speculation.added is not None],
        textposition="middle right", textfont={"size": 10, "color": ink.label},
        marker={"symbol": "diamond", "size": 11, "color": VERDICT_COLORS["added"],
                "line": {"width": 1, "color": ink.outline}},
        hovertext=[_added_hover(s) for s in added], hoverinfo="text", cliponaxis=False), row=1, col=1)
    fig.add_trace(go.Bar(
        x=[len(s.hypotheses) for s in rounds], y=[s.index for s in rounds], orientation="h", meta="gained",
        name="tokens per target forward", marker={"color": VERDICT_COLORS["added"], "opacity": 0.7},
        hovertext=[_round_hover(s) for s in rounds], hoverinfo="text", showlegend=False), row=1, col=2)
    height = min(max(280, 150 + ROW_HEIGHT * len(rounds)), 2400)
    right = max([widest - 1] + [s.speculation.accepted for s in added if s.speculation])
    fig.update_layout(**base_layout(theme, height=height, title={"text": title, "x": 0.01, "font": {"size": 13}}))
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.02 - 60 / height, "x": 0.0,
                              "xanchor": "left"}, margin={"t": 72, "b": 90})
    fig.update_yaxes(range=[rounds[-1].index + 0.8, rounds[0].index - 0.8], title="round (target forward)",
                     tickformat="d", dtick=1 if len(rounds) <= 40 else None, zeroline=False, row=1, col=1)
    fig.update_xaxes(title="position in the draft", tickformat="d", dtick=1 if widest <= 24 else None,
                     range=[-0.6, right + 0.6], zeroline=False, row=1, col=1)
    fig.update_xaxes(title="tokens gained", tickformat="d", dtick=1 if widest <= 12 else None, rangemode="tozero",
                     row=1, col=2)
    return fig


def _added_hover(step: Step) -> str:
    spec = step.speculation
    assert spec is not None
    assert spec.added is not None
    text = _text(step, spec.added)
    why = ("the target's own token where it refused the draft" if spec.added_kind == "correction"
           else "a bonus: every drafted token was accepted, the target's forward gives one more")
    lines = [f"round {step.index}: <b>{safe_hover(text)}</b> (id {spec.added}), {spec.added_kind}", why]
    if spec.residual:
        top = ", ".join(f"{safe_hover(_text(step, t))} {fmt(p, 3)}" for t, p in spec.residual[:5])
        lines.append(f"drawn from the residual max(0, p - q), normalised: {top}")
    return "<br>".join(lines)
