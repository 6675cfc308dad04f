"""What the app draws from its state: HTML snippets of panels and the selection, and figures put into the two
``FigureWidget``s in place."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping

import plotly.graph_objects as go

from explorer.app._figure_update import show_figure
from explorer.app._nodes import NodeInfo
from explorer.app._params import summary_params
from explorer.app.state import Panel
from explorer.app.theme import THEME_CSS
from explorer.figures import Theme, message_figure
from explorer.figures._paths import Index, index, result_path
from explorer.figures._scale import SCALE_CSS
from explorer.scoring import length_penalty, path_scores, score_formula
from explorer.text import visible
from explorer.trace import Result, Trace
from explorer.trace_io import dump_trace

__all__ = [
    "MAX_SAVE_BYTES",
    "STYLE",
    "Same",
    "force_options",
    "keyed_traces",
    "panel_summary_html",
    "placeholder",
    "results_html",
    "save_html",
    "selection_html",
    "show_figure",
]

#: Largest trace offered as a download link from the page (a data URI travels through the websocket).
MAX_SAVE_BYTES = 32 * 1024 * 1024

STYLE = "<style>\n" + THEME_CSS + """
.explorer-app .explorer-error { color: var(--explorer-error); }
.explorer-app .explorer-panel { border: 1px solid var(--explorer-border); border-radius: 6px; }
.explorer-app .explorer-panel-branch { border-color: #E69F00; }
.explorer-app .explorer-panel-loaded { border-color: #56B4E9; }
.explorer-app .explorer-piece { border: 1px solid var(--explorer-piece-border); border-radius: 3px; padding: 0 2px;
  margin-right: 1px; font-family: monospace; background: var(--explorer-piece); }
.explorer-app table.explorer-table { border-collapse: collapse; font-size: 12px; }
.explorer-app table.explorer-table td, .explorer-app table.explorer-table th { padding: 2px 5px;
  border-bottom: 1px solid var(--explorer-rule); text-align: left; vertical-align: top; }
.explorer-app .explorer-muted { color: var(--explorer-muted); font-size: 12px; }
.explorer-app table.explorer-table th { white-space: nowrap; }
/* ipywidgets' upload button counts the files it holds ("load trace (0)"); the app empties it after each load,
   so the count says nothing: the button shows its name alone. */
.explorer-app .explorer-load { font-size: 0 !important; }
.explorer-app .explorer-load::after { content: "load trace"; font-size: var(--jp-widgets-font-size, 13px); }
.explorer-app .explorer-stale { color: var(--explorer-error); font-size: 12px; font-weight: bold; margin: 2px 0; }
/* A branch's name and summary hold its forced token, which can be long and without spaces: wrap it in the panel. */
.explorer-app .explorer-panel .widget-hbox > .widget-html, .explorer-app .explorer-panel-summary,
.explorer-app .explorer-panel-summary > .widget-html-content { min-width: 0; overflow-wrap: anywhere; }
.explorer-app .explorer-panel .explorer-remove { flex-shrink: 0; }
/* The trees are drawn to the box's width (explorer.app._width); a window narrower than one panel scrolls the box. */
.explorer-app .explorer-tree { max-width: 100%; overflow-x: auto; overflow-y: hidden; }
/* The trees' colour bar sticks to the top of the window while the trees scroll under it (panels in rows): the boxes
   between it and the page's scroller must not clip (ipywidgets' boxes do, by default). */
.explorer-app, .explorer-app .explorer-trees, .explorer-app .explorer-tree-section,
.jp-OutputArea:has(.explorer-app), .jp-OutputArea-child:has(.explorer-app),
.jp-OutputArea-output:has(.explorer-app) { overflow: visible; }
.explorer-app .explorer-scale { position: sticky; top: 0; z-index: 5; align-self: flex-end; width: auto;
  height: auto; padding: 0 8px; border-radius: 0 0 4px 4px;
  background: var(--explorer-page, var(--jp-layout-color0)); }
.explorer-app .explorer-scale > .widget-html-content { height: auto; line-height: normal; }
/* Voila's scroller has a padding of 10 px, inside which a sticky box stops: the bar covers it; Voila's page is on
   --jp-layout-color1 (JupyterLab's notebooks on --jp-layout-color0). */
body[data-voila] .explorer-app .explorer-scale { top: -10px; padding-top: 10px; }
body[data-voila] .explorer-app { --explorer-page: var(--jp-layout-color1); }
""" + SCALE_CSS + """</style>"""


def _fmt(value: float | None, digits: int = 3) -> str:
    """A score for the tables (``-inf`` as it is, ``None`` as a dash)."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _result_cells(trace: Trace, idx: Index, r: Result, diverse: bool) -> list[str]:
    """The numbers of one result: rank, log-prob, score, the diversity penalty's part, tokens, constraints met
    (constrained runs only), and where it ended."""
    scores = path_scores(result_path(trace, r, idx).tokens)
    cells = [f"#{r.rank}", _fmt(scores.logprob), _fmt(r.score), *([_fmt(scores.diversity)] if diverse else []),
             str(len(r.token_ids))]
    if trace.constraints:
        cells.append("-" if r.constraints_satisfied is None else ("✓ yes" if r.constraints_satisfied else "✗ no"))
    cells.append(f"step {r.finished_step}, {'eos' if r.ended_with_eos else 'no eos'}")
    return cells


def results_html(trace: Trace | None, tokens_html: Callable[[Trace, int], str], note: str = "",
                 stale: str = "") -> str:
    """A panel's results as a table: per result a row of numbers (rank, log-prob, score, the diversity penalty's
    part in a diverse search, tokens, constraints met in a constrained one, where it ended) and a row with its text
    coloured by probability; the caption has the run's time and end, and what score means for the strategy (the
    length penalty's formula). ``stale`` (when the panel's settings changed since the run) is said above."""
    if trace is None:
        return f'<div class="explorer-muted">{html.escape(note or "no trace yet: press Run")}</div>'
    idx = index(trace)
    diverse = float(trace.params.get("diversity_penalty") or 0.0) != 0.0
    heads = ["rank", "log-prob", "score", *(["diversity"] if diverse else []), "tokens",
             *(["constraints"] if trace.constraints else []), "end"]
    classes = {"log-prob": ' class="explorer-logprob"', "score": ' class="explorer-score"'}
    rows = []
    for r in trace.results:
        cells = "".join(f"<td{classes.get(h, '')}>{c}</td>" for h, c in zip(heads, _result_cells(trace, idx, r,
                                                                                                diverse), strict=True))
        rows.append(f'<tr class="explorer-result-head">{cells}</tr>'
                    f'<tr><td colspan="{len(heads)}">{tokens_html(trace, r.rank)}</td></tr>')
    others = len(trace.meta.get("batched_with") or [1]) - 1
    together = f", side by side with {others} other panel{'s' if others != 1 else ''}" if others > 0 else ""
    caption = (f"{len(trace.steps)} steps in {trace.total_ms / 1000:.2f} s{together}, "
               f"stop: {html.escape(trace.stop_reason)}<br>{html.escape(score_formula(trace))}"
               + (" (diversity: the diversity penalty's part of the sum)" if diverse else ""))
    warning = f'<div class="explorer-stale">{html.escape(stale)}</div>' if stale else ""
    return (f'{warning}<table class="explorer-table"><caption class="explorer-muted">{caption}</caption><tr>'
            + "".join(f"<th>{h}</th>" for h in heads) + "</tr>" + "".join(rows) + "</table>")


def save_html(panel: Panel) -> str:
    """A download link holding the panel's trace as JSON (a data URI: no server needed), or nothing."""
    if panel.trace is None:
        return ""
    text = dump_trace(panel.trace)
    if len(text) > MAX_SAVE_BYTES:
        return ('<span class="explorer-muted">trace too large to download from the page: save it in Python with '
                "trace.to_json(path)</span>")
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    name = f"trace-{panel.id}-{panel.strategy}.json"
    size = f"{len(text) / 1024:.0f} KB"
    return (f'<a class="explorer-save-link" download="{name}" href="data:application/json;base64,{data}">'
            f"save trace ({size})</a>")


def panel_summary_html(panel: Panel, source_label: str | None) -> str:
    """What a read-only panel is: a branch (from where, which token) or a loaded file; and its parameters."""
    trace = panel.trace
    lines = []
    if panel.branch is not None:
        b = panel.branch
        lines.append(f"branch of {html.escape(source_label or f'panel #{b.source} (removed)')} at node {b.node}: "
                     f"forced <code>{html.escape(visible(b.token_text))}</code> [{b.token_id}] after {b.fixed - 1} "
                     "tokens")
    if panel.kind == "loaded" and trace is not None:
        lines.append(f"loaded from {html.escape(panel.name)}: model {html.escape(trace.model)}")
    shown = summary_params(panel.strategy, panel.params)
    lines.append(", ".join(f"{k}={v}" for k, v in shown.items()))
    return "".join(f'<div class="explorer-muted">{line}</div>' for line in lines)


def selection_html(panel: Panel | None, info: NodeInfo | None) -> str:
    """The selected node: its panel, kind, step, path text and scores (or a hint when nothing is selected)."""
    if panel is None or info is None:
        return ('<div class="explorer-muted">click a node of a tree to see its candidates and its path; from a '
                "hypothesis you can force one of its candidates and continue</div>")
    scores = f"log-prob {_fmt(info.logprob)} · score {_fmt(info.score)}"
    if info.normalized_score is not None:
        lp = length_penalty(panel.trace) if panel.trace is not None else None
        scores = f"log-prob {_fmt(info.logprob)} · summed token scores {_fmt(info.score)} · score " + (
            f"{_fmt(info.normalized_score)} = {_fmt(info.score)} / {info.length}^{lp:g}" if lp is not None and
            info.length is not None else f"{_fmt(info.normalized_score)} (no length penalty)")
    note = f" ({html.escape(info.note)})" if info.note else ""
    text = html.escape(visible(info.text)) if info.text else "∅"
    return (f"<div><b>{html.escape(panel.key)}</b> · node {html.escape(info.key)} · {html.escape(info.kind)}{note}"
            f" · step {info.step} · {len(info.token_ids)} tokens · {scores}</div>"
            f'<div style="font-family: monospace; white-space: pre-wrap; overflow-wrap: anywhere">{text}</div>')


def keyed_traces(panels: tuple[Panel, ...]) -> Mapping[str, Trace]:
    """The panels that have a trace, by their figure key."""
    return {p.key: p.trace for p in panels if p.trace is not None}


class Same:
    """A dependency compared by identity (a trace: equal traces from two runs are still two runs)."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.obj is self.obj

    __hash__ = None  # type: ignore[assignment]


def force_options(info: NodeInfo | None) -> tuple[tuple[tuple[str, int], ...], int | None]:
    """The forced-token choices of a selected node (its hypothesis's recorded candidates) and the one to preselect."""
    if info is None or info.hypothesis is None:
        return (), None
    options = tuple(
        (f'"{visible(c.text)}" [{c.token_id}]  logprob {c.logprob:.2f}  {c.fate}', c.token_id)
        for c in info.hypothesis.candidates
    )
    ids = [token for _, token in options]
    chosen = info.preselect if info.preselect in ids else (ids[0] if ids else None)
    return options, chosen


def placeholder(text: str, height: int = 220, theme: Theme = "light") -> go.Figure:
    """An empty figure that says what to do, in the page's theme."""
    fig = message_figure(text, height=height, theme=theme)
    fig.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig
