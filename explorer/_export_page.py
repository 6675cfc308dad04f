"""The page :func:`explorer.export.export_html` writes: its sections, its style, the script that draws its figures."""

from __future__ import annotations

import base64
import hashlib
import html
import math
import platform
import time
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import plotly
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from explorer import figures
from explorer.export import embed_json, trace_script
from explorer.figures._paths import index, result_path
from explorer.figures._style import CONTROLS, FATE_COLORS, MISSING, clip, esc_name, fmt, panel_color, pct, visible
from explorer.figures._uncertainty import UNCERTAINTY_CSS, uncertainty_html, uncertainty_legend
from explorer.trace import FORMAT_VERSION, Hypothesis, Result, Trace

__all__ = ["page"]

_BOOT = """
document.querySelectorAll("script.explorer-figure").forEach(function (data) {
  var spec = JSON.parse(data.textContent);
  var target = document.getElementById(data.getAttribute("data-target"));
  Plotly.newPlot(target, spec.data, spec.layout, {responsive: true, displaylogo: false});
});
"""

_RULE = {"light": "#E5E5E5", "dark": "#2A2F35"}


def _css(theme: str) -> str:
    """The page's style: the theme's colours, tables, the text toggle, and the uncertainty bins."""
    p = figures.palette(theme)
    return f"""
body {{ background: {p.paper}; color: {p.ink}; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial,
  sans-serif; margin: 0 auto; padding: 16px 24px; max-width: 1800px; }}
h1 {{ font-size: 1.35em; margin: 0 0 4px; }} h2 {{ font-size: 1.15em; margin: 28px 0 6px; }}
h3 {{ font-size: 1em; margin: 14px 0 4px; }}
.muted {{ color: {p.muted}; }} code, .mono {{ font-family: Menlo, Consolas, monospace; }}
.prompt {{ font-family: Menlo, Consolas, monospace; white-space: pre-wrap; overflow-wrap: anywhere;
  border-left: 3px solid {p.muted}; padding: 2px 8px; margin: 6px 0; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th {{ white-space: nowrap; }}
th, td {{ padding: 3px 8px; border-bottom: 1px solid {_RULE[theme]}; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
td.text {{ font-family: Menlo, Consolas, monospace; white-space: pre-wrap; overflow-wrap: anywhere;
  min-width: 20em; }}
.panel {{ border-left: 4px solid var(--panel); padding-left: 12px; margin-top: 20px; }}
.figure {{ width: 100%; min-height: 320px; }}
details {{ margin: 4px 0; }} summary {{ cursor: pointer; }}
.cand {{ display: inline-block; font-family: Menlo, Consolas, monospace; font-size: 12px; margin: 1px 3px 1px 0;
  padding: 0 3px; border-bottom: 3px solid var(--fate); white-space: pre; }}
.cand.masked {{ text-decoration: line-through; }}
.toggle label {{ margin-right: 12px; cursor: pointer; }}
#by-probability:checked ~ .texts .explorer-unc-entropy, #by-entropy:checked ~ .texts .explorer-unc-probability,
#by-probability:checked ~ .legend-entropy, #by-entropy:checked ~ .legend-probability {{ display: none; }}
.texts .result-text {{ margin: 6px 0 10px; }}
footer {{ margin-top: 32px; font-size: 12px; }}
""" + UNCERTAINTY_CSS


def _csp(scripts: list[str]) -> str:
    """A policy that lets nothing load: the page's own scripts by hash, inline styles, and data images (plotly's
    "download plot" button)."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)
    return f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data: blob:; font-src data:"


def page(runs: dict[str, Trace], theme: str, title: str | None) -> str:
    """The whole page."""
    plotly_js = get_plotlyjs()
    first = next(iter(runs.values()))
    heading = title or f"{_prompt(first)[:80]} · {first.model} · {', '.join(runs)}"
    body = "\n".join([
        _header(runs, title), _results(runs), _texts(runs), _timelines(runs, theme),
        *(_panel(i, name, trace, theme) for i, (name, trace) in enumerate(runs.items())),
        *(trace_script(name, trace) for name, trace in runs.items()),
        _footer(),
    ])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_csp([plotly_js, _BOOT])}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(visible(heading))}</title><style>{_css(theme)}</style>"
            f"<script>{plotly_js}</script></head>\n"
            f'<body class="explorer-export explorer-theme-{theme}">\n{body}\n'
            f"<script>{_BOOT}</script>\n</body></html>\n")


def _prompt(trace: Trace) -> str:
    """The prompt as text (or its token ids)."""
    return trace.prompt if trace.prompt is not None else str(list(trace.prompt_token_ids))


def _header(runs: dict[str, Trace], title: str | None) -> str:
    """Title, prompt, model and strategies."""
    names = ", ".join(f"{esc_name(n)} ({html.escape(t.strategy)})" for n, t in runs.items())
    prompts: dict[tuple[int, ...], list[str]] = {}
    for n, t in runs.items():
        prompts.setdefault(t.prompt_token_ids, []).append(n)
    shown = []
    for ids, panels in prompts.items():
        t = runs[panels[0]]
        whose = f" ({', '.join(esc_name(n) for n in panels)})" if len(prompts) > 1 else ""
        chat = " in the chat template" if t.params.get("chat") else ""
        shown.append(f'<div class="muted">prompt{chat}{whose}, {len(ids)} tokens</div>'
                     f'<div class="prompt">{html.escape(_prompt(t).translate(CONTROLS))}</div>')
    models = ", ".join(dict.fromkeys(html.escape(t.model) for t in runs.values()))
    return (f"<header><h1>{html.escape(visible(title)) if title else 'Decoding explorer: a run'}</h1>"
            f"{''.join(shown)}<div class=\"muted\">model <b>{models}</b> · {len(runs)} "
            f"panel{'s' if len(runs) != 1 else ''}: {names}</div></header>")


def _logprob(trace: Trace, result: Result) -> float | None:
    """The model's log-probability of a result's tokens (the sum of their raw log-probs), from the records."""
    tokens = result_path(trace, result).tokens
    if any(c is None for c in tokens):
        return None
    return math.fsum(c.logprob for c in tokens if c is not None)


def _results(runs: dict[str, Trace]) -> str:
    """Every result of every panel: its numbers and its whole text."""
    rows = []
    for i, (name, trace) in enumerate(runs.items()):
        for r in trace.results:
            met = MISSING if r.constraints_satisfied is None else ("✓" if r.constraints_satisfied else "✗")
            rows.append(
                f'<tr><td style="border-left:4px solid {panel_color(i)}">{esc_name(name)}</td>'
                f"<td>{html.escape(trace.strategy)}</td><td class=num>{r.rank}</td>"
                f"<td class=num>{fmt(_logprob(trace, r))}</td><td class=num>{fmt(r.score)}</td>"
                f"<td class=num>{len(r.token_ids)}{' (eos)' if r.ended_with_eos else ''}</td><td>{met}</td>"
                f'<td class="text">{html.escape(r.text.translate(CONTROLS))}</td></tr>')
    return ('<section><h2>Results</h2><p class="muted">log-prob: the model\'s log-probability of the text (the sum '
            "of its tokens' log-probs, before processors); score: what the strategy ranks by (beam search: the "
            "processed log-probs summed, divided by length<sup>length_penalty</sup>; greedy and sampling: the "
            "processed log-probs summed).</p><table><thead><tr><th>panel</th><th>strategy</th><th>rank</th>"
            "<th>log-prob</th><th>score</th><th>tokens</th><th>constraints</th><th>text</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def _texts(runs: dict[str, Trace]) -> str:
    """The result texts coloured by uncertainty, entropy or probability (a toggle without a script)."""
    blocks = []
    for name, trace in runs.items():
        for r in trace.results:
            both = (uncertainty_html(trace, r.rank, by="entropy", css=False)
                    + uncertainty_html(trace, r.rank, by="probability", css=False))
            blocks.append(f'<div class="result-text"><b>{esc_name(name)}</b>{both}</div>')
    return ('<section><h2>Texts, coloured by uncertainty</h2><div class="toggle">'
            '<input type="radio" name="by" id="by-entropy" checked><label for="by-entropy">entropy</label>'
            '<input type="radio" name="by" id="by-probability"><label for="by-probability">probability</label>'
            f'<div class="legend-entropy">{uncertainty_legend("entropy", css=False)}</div>'
            f'<div class="legend-probability">{uncertainty_legend("probability", css=False)}</div>'
            f'<p class="muted">Hover a token for its probability and entropy.</p>'
            f'<div class="texts">{"".join(blocks)}</div></div></section>')


def _figure(fig: go.Figure, label: str, target: str) -> str:
    """A figure as a ``<div>`` (id ``target``) and its JSON, drawn by the page's script (full width, resizing with
    the window)."""
    fig.update_layout(width=None, autosize=True)
    return (f'<div class="figure" id="{target}" role="img" aria-label="{html.escape(label, quote=True)}"></div>'
            f'<script type="application/json" class="explorer-figure" data-target="{target}">'
            f"{embed_json(pio.to_json(fig, validate=False))}</script>")


def _timelines(runs: dict[str, Trace], theme: str) -> str:
    """Every result's cumulative log-prob step by step, panels overlaid."""
    fig = figures.score_timelines(runs, theme=theme)  # type: ignore[arg-type]
    return f"<section><h2>Scores along each result</h2>{_figure(fig, 'score timelines', 'figure-timelines')}</section>"


def _params(trace: Trace) -> str:
    """The run's settings that matter here: those changed from the strategy's defaults, and the main ones."""
    from explorer.strategies import make_params

    try:
        defaults = make_params(trace.strategy).to_dict()
    except Exception:
        defaults = {}
    main = {"max_new_tokens", "num_beams", "num_beam_groups", "diversity_penalty", "length_penalty", "seed",
            "temperature", "top_k", "top_p"}
    shown = {k: v for k, v in trace.params.items()
             if k not in ("strategy", "chat")
             and (defaults.get(k, object()) != v or (k in main and v not in (None, 1, 0.0)))}
    return ", ".join(f"{k}={html.escape(clip(visible(str(v)), 60))}" for k, v in shown.items())


def _panel(i: int, name: str, trace: Trace, theme: str) -> str:
    """One panel: its settings, its tree and its candidates step by step."""
    tree = figures.search_tree(trace, title=f"{esc_name(name)}: search tree", theme=theme)  # type: ignore[arg-type]
    stats = (f"{len(trace.steps)} steps in {trace.total_ms / 1000:.2f} s · stop: {html.escape(trace.stop_reason)}"
             f"{' · processors: ' + html.escape(', '.join(trace.processors)) if trace.processors else ''}")
    return (f'<section class="panel" style="--panel:{panel_color(i)}"><h2>{esc_name(name)} '
            f'<span class="muted">({html.escape(trace.strategy)})</span></h2>'
            f'<div class="muted">{_params(trace)}</div><div class="muted">{stats}</div>'
            f"{_figure(tree, f'search tree of {name}', f'figure-tree-{i}')}{_candidates(trace)}</section>")


def _candidates(trace: Trace) -> str:
    """Each step's hypotheses with their recorded candidates, one collapsed block per step."""
    idx = index(trace)
    steps = []
    for step in trace.steps:
        rows = "".join(_hyp_row(h, idx.text) for h in step.hypotheses)
        count = sum(len(h.candidates) for h in step.hypotheses)
        hyps = f"{len(step.hypotheses)} hypothes{'i' if len(step.hypotheses) == 1 else 'e'}s"
        steps.append(f"<details><summary>step {step.index} · {hyps} · {count} candidates</summary>"
                     "<table><thead><tr><th>hypothesis</th><th>text so far</th><th>entropy</th>"
                     "<th>candidates: token, probability (the model's)</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table></details>")
    legend = " ".join(f'<span class="cand" style="--fate:{c}">{f}</span>' for f, c in FATE_COLORS.items())
    top_k = trace.params.get("record_top_k", MISSING)
    return (f"<details><summary><b>Candidates at each step</b> ({len(trace.steps)} steps, the best {top_k} of each "
            f"hypothesis recorded)</summary><div class=\"muted\">underlined by fate: {legend}; hover a candidate for "
            f"its log-prob, score, rank and reason</div>{''.join(steps)}</details>")


def _hyp_row(h: Hypothesis, known: dict[int, str]) -> str:
    """One hypothesis and its candidates."""
    text = "".join(known.get(t, f"⟨{t}⟩") for t in h.token_ids[-12:])
    more = "…" if len(h.token_ids) > 12 else ""
    entropy = MISSING if h.entropy is None else f"{h.entropy / math.log(2):.2f} bits"
    cands = "".join(_candidate(c) for c in h.candidates)
    group = f" g{h.group}" if h.group else ""
    return (f"<tr><td class=mono>h{h.id} · slot {h.slot}{group}</td>"
            f"<td class=mono>{more}{html.escape(visible(text))}</td><td class=num>{entropy}</td><td>{cands}</td></tr>")


def _candidate(c: Any) -> str:
    """One recorded candidate as a chip: its token and probability, the rest in its tooltip."""
    tip = (f"{visible(c.text)} (id {c.token_id}) · rank {c.rank}\nlog-prob {fmt(c.logprob)} · score {fmt(c.score)} "
           f"· total {fmt(c.total)}\n{c.fate}: {c.reason}")
    return (f'<span class="cand {c.fate}" style="--fate:{FATE_COLORS.get(c.fate, "#888")}" '
            f'title="{html.escape(tip, quote=True)}">{html.escape(visible(c.text))} {pct(c.logprob)}</span>')


def _versions() -> Iterator[str]:
    """The versions that made the page."""
    import explorer

    yield f"decoding-explorer {explorer.__version__} (trace format {FORMAT_VERSION})"
    for package in ("torch", "transformers"):
        try:
            yield f"{package} {metadata.version(package)}"
        except metadata.PackageNotFoundError:
            continue
    yield f"plotly {plotly.__version__} (plotly.js {get_plotlyjs_version()}, inlined)"
    yield f"Python {platform.python_version()}"


def _footer() -> str:
    """Versions, when, and how to read the traces back."""
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f'<footer class="muted">Made {made} by {" · ".join(html.escape(v) for v in _versions())}. '
            "The page needs no network. Its traces are inside it: <code>explorer.read_export(path)</code> reads "
            "them back, and the app's <i>load trace</i> button takes this file.</footer>")
