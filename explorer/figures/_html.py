"""HTML snippets for ipywidgets.HTML: a result's tokens shaded by probability, and a summary table of the results."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping

from explorer.figures._paths import index, result_path
from explorer.figures._style import CONTROLS, MISSING, clip, esc, esc_name, fmt, panel_color, pct, visible
from explorer.scoring import LOGPROB_MEANS, path_scores, score_formula, score_means
from explorer.trace import Result, Trace

__all__ = ["results_table_html", "tokens_html"]

_SHADE = "213, 94, 0"  # the colour of an unlikely token; a likely one is nearly clear (text keeps the page's colour)
# The snippets follow the page's theme through CSS variables: the app's own (explorer/app/theme.py), else
# JupyterLab's and Voila's, else a light default. Each holds 4.5:1 for text on its theme's background.
MUTED = "var(--explorer-muted, var(--jp-content-font-color2, #666))"
RULE = "var(--explorer-rule, var(--jp-border-color1, #ccc))"


def _token_body(text: str) -> str:
    """A token's text for a span: escaped, control, invisible and bidi characters visible, a newline as ``⏎`` and
    a line break. Joiners stay (emoji sequences need them), unless the token is nothing else."""
    if not text.strip("\u200c\u200d"):
        return html.escape(visible(text))
    return html.escape(text.translate(CONTROLS)).replace("\n", "⏎<br>")


def _result(trace: Trace, rank: int) -> Result:
    """The result of this rank."""
    for result in trace.results:
        if result.rank == rank:
            return result
    raise IndexError(f"the run has no result of rank {rank} (it has {len(trace.results)})")


def tokens_html(trace: Trace, rank: int = 0) -> str:
    """A result's tokens as ``<span>``s shaded by probability (darker: less likely), each with a tooltip.

    The probability is the model's raw one for that token, from its recorded candidate; a token whose candidate was
    not recorded has a dashed outline. All text is escaped. The spans sit in ``<div class="explorer-tokens">``.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=3)
    >>> snippet = tokens_html(t)
    >>> snippet.startswith('<div class="explorer-tokens"'), snippet.count('class="explorer-token"')
    (True, 3)
    """
    result = _result(trace, rank)
    idx = index(trace)
    path = result_path(trace, result, idx)
    spans = []
    for i, (token_id, cand) in enumerate(zip(result.token_ids, path.tokens, strict=True)):
        text = cand.text if cand is not None else idx.text.get(token_id, f"⟨{token_id}⟩")
        if cand is None:
            style, about = "outline:1px dashed currentColor;", "probability not recorded"
        else:
            alpha = 0.06 + 0.64 * (1.0 - math.exp(cand.logprob))
            style = f"background:rgba({_SHADE},{alpha:.2f});"
            about = f"p {pct(cand.logprob)} · log-prob {fmt(cand.logprob)}"
        tip = html.escape(f"#{i} {visible(text)} (id {token_id})\n{about}", quote=True).replace("\n", "&#10;")
        # Each token is its own bidi isolate: a right-to-left token cannot reorder its neighbours.
        spans.append(f'<span class="explorer-token" style="{style}border-radius:3px;margin-right:1px;'
                     f'unicode-bidi:isolate" title="{tip}">{_token_body(text)}</span>')
    logprob = path_scores(path.tokens).logprob
    head = (f'<div class="explorer-tokens-head" style="font-size:0.85em;color:{MUTED};margin-bottom:4px">'
            f"result {result.rank} · log-prob {fmt(logprob)} · score {fmt(result.score)} · "
            f"{len(result.token_ids)} tokens"
            f"{' · ended with eos' if result.ended_with_eos else ''} · darker = less likely</div>")
    body = "".join(spans)
    return (f'<div class="explorer-tokens" style="font-family:Menlo,Consolas,monospace;line-height:1.8">{head}'
            f'<div style="white-space:pre-wrap;word-break:break-word">{body}</div></div>')


def _cell(text: str, title: str | None = None, style: str = "", cls: str = "") -> str:
    """A table cell of already escaped text."""
    tip = f' title="{title}"' if title else ""
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} style="padding:2px 8px;white-space:nowrap;{style}"{tip}>{text}</td>'


def _row(panel: str, color: str, trace: Trace, result: Result, diverse: bool) -> str:
    """One result as a table row."""
    satisfied = {True: "✓", False: "✗", None: MISSING}[result.constraints_satisfied]
    text = result.text.translate(CONTROLS)  # no bidi override or control character acts on the cell
    short = esc(clip(text, 58))
    scores = path_scores(result_path(trace, result).tokens)
    cells = [
        _cell(esc_name(panel), title=esc(panel.translate(CONTROLS), quote=True),
              style=f"border-left:4px solid {color}"),
        _cell(esc(trace.strategy)),
        _cell(str(result.rank), style="text-align:right"),
        _cell(fmt(scores.logprob), style="text-align:right", cls="explorer-logprob"),
        _cell(fmt(result.score), title=esc(score_formula(trace), quote=True), style="text-align:right",
              cls="explorer-score"),
        *([_cell(fmt(scores.diversity), style="text-align:right")] if diverse else []),
        _cell(f"{len(result.token_ids)}{' (eos)' if result.ended_with_eos else ''}", style="text-align:right"),
        _cell(satisfied, style="text-align:center"),
        _cell(str(result.finished_step), style="text-align:right"),
        _cell(f"{trace.total_ms:.0f} ms", style="text-align:right"),
        _cell(short, title=esc(text, quote=True), style="white-space:pre;font-family:Menlo,Consolas,monospace"),
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def results_table_html(traces: Mapping[str, Trace]) -> str:
    """A compact table of every result of every panel: panel, strategy, rank, log-prob (the model's, comparable
    across panels), score (what the strategy ranks by), the diversity penalty's part when a diverse search ran,
    length, constraints satisfied, finished step, the run's time, and the text (all escaped), in
    ``<table class="explorer-summary">``; its caption says what log-prob and score are.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=2)
    >>> table = results_table_html({"greedy": t})
    >>> table.startswith('<table class="explorer-summary"'), table.count("<tr>")
    (True, 2)
    """
    diverse = any(float(t.params.get("diversity_penalty") or 0.0) != 0.0 for t in traces.values())
    heads = ("panel", "strategy", "rank", "log-prob", "score", *(("diversity",) if diverse else ()), "length",
             "constraints", "finished step", "time", "text")
    style = f"padding:2px 8px;text-align:left;white-space:nowrap;border-bottom:1px solid {RULE}"
    head = "".join(f'<th style="{style}">{h}</th>' for h in heads)
    rows = [_row(name, panel_color(i), trace, result, diverse)
            for i, (name, trace) in enumerate(traces.items()) for result in trace.results]
    caption = (f'<caption style="caption-side:bottom;text-align:left;color:{MUTED};font-size:0.9em;'
               f'padding-top:4px">{esc(LOGPROB_MEANS)}.<br>{esc(score_means(traces.values()))}.</caption>')
    return (f'<table class="explorer-summary" style="border-collapse:collapse;font-size:0.9em">{caption}'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
