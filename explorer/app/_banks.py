"""The details' constraint view of a constrained-beam panel: every hypothesis's progress and bank, step by step
(``figures.constraint_progress`` with the selected step marked), and the banks of the beams at that step.

The panel shown is the selected node's when it recorded constraint progress, else the first panel that did; the
step is the selected node's, whichever panel it is in (the last step when nothing is selected).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go

from explorer import figures
from explorer.app._constraints import piece
from explorer.app._nodes import NodeInfo, step_at
from explorer.app.controls import html_widget, sync
from explorer.app.state import AppState, Panel, panel_by_id
from explorer.app.theme import on_page
from explorer.app.views import Same, placeholder, show_figure
from explorer.figures import Theme
from explorer.figures._style import constraint_names, esc_name
from explorer.serve.assets import figure_widget
from explorer.trace import Hypothesis, Step, Trace

__all__ = ["ConstraintViews", "banks_html", "constraint_panel"]

#: Width (px) of the progress figure.
WIDTH = 760
#: How a constraint's cell and the selected beam's row stand out (the page's table style does the rest).
_STATUS_STYLE = {"complete": "color: #009E73; font-weight: bold", "in_progress": "color: #0072B2"}
_SELECTED_STYLE = "background: rgba(230, 159, 0, 0.22)"
#: Tokens of a beam's text shown in the banks table (its end: where the constraints are being matched).
TAIL = 8


def _records(trace: Trace | None) -> bool:
    """Whether ``trace`` recorded constraint progress."""
    return trace is not None and bool(trace.constraints) and any(
        h.constraint is not None for s in trace.steps for h in s.hypotheses)


def constraint_panel(state: AppState) -> Panel | None:
    """The panel whose constraints the details show: the selected node's when it has constraint progress, else the
    first panel that has."""
    selected = panel_by_id(state, state.selection.panel) if state.selection is not None else None
    if selected is not None and _records(selected.trace):
        return selected
    return next((p for p in state.panels if _records(p.trace)), None)


def _tail(hyp: Hypothesis, texts: dict[int, str]) -> str:
    """The end of a beam's text, whitespace visible."""
    tokens = hyp.token_ids[-TAIL:]
    text = "".join(piece(texts.get(t, f"⟨{t}⟩")) for t in tokens)
    return ("…" if len(hyp.token_ids) > TAIL else "") + text if tokens else "(prompt)"


def banks_html(trace: Trace, step: Step, selected: int | None = None) -> str:
    """The beams of ``step`` as an HTML table: slot, the end of its text, each constraint's matched/length (✓ when
    complete), its bank, and whether all are met; the ``selected`` hypothesis's row marked.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], "constrained", num_beams=2,
    ...                     constraints=[[9]], max_new_tokens=3)
    >>> "bank" in banks_html(t, t.steps[1])
    True
    """
    names = constraint_names(trace.constraints)
    texts = {c.token_id: c.text for s in trace.steps for h in s.hypotheses for c in h.candidates}
    head = "".join(f"<th>{html.escape(piece(n))}</th>" for n in names)
    rows = []
    for hyp in step.hypotheses:
        p = hyp.constraint
        if p is None:
            continue
        cells = "".join(
            f"<td class='explorer-bank-{status}' style='{_STATUS_STYLE.get(status, '')}'>"
            f"{'✓ ' if status == 'complete' else ''}{got}/{length}</td>"
            for status, got, length in zip(p.status, p.matched, p.lengths, strict=False))
        mark = f" class='explorer-bank-selected' style='{_SELECTED_STYLE}'" if hyp.id == selected else ""
        forced = " ⇡" if hyp.forced else ""
        rows.append(f"<tr{mark}><td>{hyp.slot}</td><td>h{hyp.id}{forced}</td>"
                    f"<td class='explorer-bank-text'>{html.escape(_tail(hyp, texts))}</td>{cells}"
                    f"<td><b>{p.bank}</b></td><td>{'all met' if p.completed else ''}</td></tr>")
    return (f"<div class='explorer-banks'><div><b>Banks at step {step.index}</b> · bank = complete constraints times "
            f"the longest constraint's length + tokens matched of the one under way; the search keeps beams bank by "
            f"bank, so progress is not lost to a likelier beam · ⇡ forced by a constraint</div>"
            f"<table class='explorer-table'><tr><th>slot</th><th>node</th><th>text</th>{head}<th>bank</th><th></th>"
            f"</tr>{''.join(rows)}</table></div>")


def _marked(fig: go.Figure, step: int, key: str) -> go.Figure:
    """The progress figure with the panel's name in its title and a line at ``step``; its markers' ``customdata``
    name the panel, as the trees' do, so that a click selects the node there too."""
    fig.add_vline(x=step, line={"color": "#E69F00", "width": 2, "dash": "dot"})
    for trace in fig.data:
        if trace.customdata is not None:
            trace.customdata = [[key, node] for _, node in trace.customdata]
    return fig.update_layout(title_text=f"{esc_name(key)} · {fig.layout.title.text} · step {step} marked",
                             width=WIDTH)


class ConstraintViews:
    """The constraint progress of a constrained panel and the banks at the selected step."""

    def __init__(self, on_click: Callable[[Any, Any, Any], None] | None = None) -> None:
        self._on_click = on_click
        self.header = html_widget("<h3 style='margin: 8px 0 2px'>Constraints</h3>")
        self.banks = html_widget()
        self.banks.add_class("explorer-banks-box")
        self.figure: Any = None
        self.holder = widgets.Box()
        self.box = widgets.VBox([self.header, self.banks, self.holder])
        self.box.add_class("explorer-constraints-box")
        self.box.layout.display = "none"  # until a constrained run
        self._deps: object = None

    def render(self, state: AppState, info: NodeInfo | None, theme: Theme) -> None:
        """Show the chosen panel's progress and banks at the selected step; hidden when no panel has constraints."""
        if state.running:
            return
        panel = constraint_panel(state)
        if panel is None or panel.trace is None:
            sync(self.box.layout, "none", "display")
            return
        trace = panel.trace
        index = step_at(trace, info.step if info is not None else trace.steps[-1].index).index
        mine = state.selection is not None and state.selection.panel == panel.id
        selected = info.hypothesis.id if mine and info is not None and info.hypothesis is not None else None
        deps = (panel.key, Same(trace), index, selected, theme)
        if deps != self._deps:
            self._deps = deps
            sync(self.banks, banks_html(trace, step_at(trace, index), selected))
            fig = _marked(figures.constraint_progress(trace, theme=theme), index, panel.key)
            if self.figure is None:
                self.figure = figure_widget(on_page(placeholder("", theme=theme)))
                self.figure.add_class("explorer-constraint-progress")
                self.holder.children = (self.figure,)
            show_figure(self.figure, fig, self._on_click)
        sync(self.box.layout, "", "display")
