"""A result's text coloured by uncertainty: each token by the entropy of the distribution it was chosen from, or by
its probability, in fixed bins of a colour-blind-safe scale (Inferno), with a legend; light and dark themes."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Literal

from plotly.colors import sample_colorscale

from explorer.figures._html import MUTED, _token_body
from explorer.figures._paths import index, result_path
from explorer.figures._style import MISSING, fmt, pct, visible
from explorer.figures._theme import Theme, contrast_ratio
from explorer.trace import Candidate, Hypothesis, Result, Trace

__all__ = ["UNCERTAINTY_CSS", "TokenUncertainty", "Uncertainty", "token_uncertainty", "uncertainty_css",
           "uncertainty_html", "uncertainty_legend"]

Uncertainty = Literal["entropy", "probability"]

#: Bin edges, from certain to uncertain: entropy in bits (a bin holds values from its lower edge), and the model's
#: probability of the token (a bin holds values below its upper edge). Fixed, so that colours compare across panels.
_EDGES: dict[Uncertainty, tuple[float, ...]] = {"entropy": (0.5, 1, 2, 3.5, 5, 7),
                                                "probability": (0.9, 0.7, 0.5, 0.3, 0.1, 0.03)}
_LABELS: dict[Uncertainty, tuple[str, ...]] = {
    "entropy": ("< 0.5", "0.5-1", "1-2", "2-3.5", "3.5-5", "5-7", "≥ 7 bits"),
    "probability": ("≥ 90%", "70-90%", "50-70%", "30-50%", "10-30%", "3-10%", "< 3%"),
}
_ABOUT: dict[Uncertainty, str] = {
    "entropy": "entropy of the distribution each token was chosen from (after processors)",
    "probability": "the model's probability of each token (before processors)",
}
# Where on Inferno each bin sits past the first (which keeps the page's own background): from the page's end of the
# scale towards the other, so that the more uncertain a token, the more it stands out, in either theme.
_STOPS: dict[Theme, tuple[float, ...]] = {"light": (0.96, 0.86, 0.72, 0.56, 0.40, 0.22),
                                          "dark": (0.22, 0.36, 0.50, 0.64, 0.80, 0.96)}


def _ink(fill: str) -> str:
    """Black or white, whichever reads better on ``fill``."""
    return max(("#000000", "#FFFFFF"), key=lambda ink: contrast_ratio(ink, fill))


def _fills(theme: Theme) -> tuple[tuple[str, str], ...]:
    """``(background, text)`` of bins 1 and up in ``theme``."""
    return tuple((fill, _ink(fill)) for fill in sample_colorscale("Inferno", list(_STOPS[theme])))


def uncertainty_css(dark: str = "body[data-jp-theme-light='false'], .explorer-theme-dark") -> str:
    """The bins' colours as CSS: the light theme's by default, the dark one's under any of the ``dark`` selectors.

    >>> ".explorer-u6" in uncertainty_css()
    True
    """
    def rules(theme: Theme, scopes: list[str]) -> str:
        out = []
        for i, (fill, ink) in enumerate(_fills(theme), start=1):
            selector = ", ".join(f"{scope}.explorer-unc .explorer-u{i}".strip() for scope in scopes)
            out.append(f"{selector} {{ background: {fill}; color: {ink}; }}")
        return "\n".join(out)

    dark_scopes = [f"{s.strip()} " for s in dark.split(",") if s.strip()]
    base = (".explorer-unc .explorer-token { border-radius: 3px; margin-right: 1px; padding: 0 1px; "
            "unicode-bidi: isolate; }\n.explorer-unc .explorer-unrecorded { outline: 1px dashed currentColor; }\n"
            ".explorer-unc .explorer-swatch { display: inline-block; min-width: 3.2em; text-align: center; "
            "margin-right: 2px; padding: 0 3px; border-radius: 3px; }\n"
            ".explorer-unc .explorer-u0.explorer-swatch { outline: 1px solid " + MUTED + "; }\n")
    return base + rules("light", [""]) + "\n" + rules("dark", dark_scopes) + "\n"


#: :func:`uncertainty_css` for JupyterLab, Voila and the app (their dark theme markers).
UNCERTAINTY_CSS = uncertainty_css()


@dataclass(frozen=True)
class TokenUncertainty:
    """One generated token: its text and id, the entropy in nats of the distribution it was chosen from, and its
    probability (the model's, before processors); ``None`` where the trace does not record it."""

    text: str
    token_id: int
    entropy: float | None
    prob: float | None


def token_uncertainty(trace: Trace, result: Result) -> tuple[TokenUncertainty, ...]:
    """Each token of ``result`` with the entropy it was chosen from and its probability, from the trace's records.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=3)
    >>> [u.entropy is not None for u in token_uncertainty(t, t.results[0])]
    [True, True, True]
    """
    idx = index(trace)
    path = result_path(trace, result, idx)
    chooser: dict[int, Hypothesis] = {len(h.token_ids): h for h in path.hyps}
    fixed = idx.prefix.entropies if idx.prefix is not None else ()  # a branch's fixed tokens: the source's records
    out = []
    for i, (token_id, cand) in enumerate(zip(result.token_ids, path.tokens, strict=True)):
        hyp = chooser.get(i)
        entropy = fixed[i] if i < len(fixed) else \
            hyp.entropy if hyp is not None and hyp.token_ids == result.token_ids[:i] else None
        out.append(TokenUncertainty(_text(cand, token_id, idx.text), token_id, entropy,
                                    math.exp(cand.logprob) if cand is not None else None))
    return tuple(out)


def _text(cand: Candidate | None, token_id: int, known: dict[int, str]) -> str:
    """A token's text: its candidate's, another record's, or its id."""
    return cand.text if cand is not None else known.get(token_id, f"⟨{token_id}⟩")


def _bin(token: TokenUncertainty, by: Uncertainty) -> int | None:
    """The token's bin (0: most certain), ``None`` when the trace lacks the number."""
    if by == "entropy":
        if token.entropy is None:
            return None
        bits = token.entropy / math.log(2)
        return sum(bits >= edge for edge in _EDGES[by])
    if token.prob is None:
        return None
    return sum(token.prob < edge for edge in _EDGES[by])


def _tip(i: int, token: TokenUncertainty) -> str:
    """A token's tooltip: its place, text and id, probability and entropy."""
    if token.entropy is None:
        entropy = f"entropy {MISSING} (not recorded)"
    else:
        bits = token.entropy / math.log(2)
        entropy = f"entropy {fmt(bits, 2)} bits (as uncertain as {math.exp(token.entropy):.1f} equally likely tokens)"
    prob = MISSING if token.prob is None else pct(math.log(token.prob)) if token.prob > 0 else "0%"
    text = f"#{i} {visible(token.text)} (id {token.token_id})\np {prob} · {entropy}"
    return html.escape(text, quote=True).replace("\n", "&#10;")


def uncertainty_html(trace: Trace, rank: int = 0, *, by: Uncertainty = "entropy", css: bool = True) -> str:
    """A result's tokens as ``<span>``s coloured by uncertainty: ``by="entropy"`` (of the distribution each token
    was chosen from, after processors, in bits) or ``"probability"`` (the model's, before processors).

    The bins are fixed (see :func:`uncertainty_legend`), so colours compare across panels and runs; a token whose
    number the trace lacks (an older trace, an unrecorded candidate) has a dashed outline. Each span's tooltip has
    both numbers. All text is escaped. ``css`` adds the bins' ``<style>`` (leave it out where the page has it).

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=3)
    >>> snippet = uncertainty_html(t, css=False)
    >>> snippet.startswith('<div class="explorer-unc'), snippet.count('class="explorer-token ')
    (True, 3)
    """
    result = next((r for r in trace.results if r.rank == rank), None)
    if result is None:
        raise IndexError(f"the run has no result of rank {rank} (it has {len(trace.results)})")
    tokens = token_uncertainty(trace, result)
    spans = []
    for i, token in enumerate(tokens):
        b = _bin(token, by)
        kind = "explorer-unrecorded" if b is None else f"explorer-u{b}"
        spans.append(f'<span class="explorer-token {kind}" title="{_tip(i, token)}">{_token_body(token.text)}</span>')
    head = (f'<div class="explorer-unc-head" style="font-size:0.85em;color:{MUTED};margin-bottom:2px">'
            f"result {result.rank} · {len(tokens)} tokens · {_mean(tokens, by)}</div>")
    style = f"<style>{UNCERTAINTY_CSS}</style>" if css else ""
    return (f'<div class="explorer-unc explorer-unc-{by}" style="font-family:Menlo,Consolas,monospace;'
            f'line-height:1.8">{style}{head}<div style="white-space:pre-wrap;word-break:break-word">'
            f'{"".join(spans)}</div></div>')


def _mean(tokens: tuple[TokenUncertainty, ...], by: Uncertainty) -> str:
    """The mean entropy (bits) or mean probability along the text, over the tokens that have it."""
    if by == "entropy":
        values = [t.entropy / math.log(2) for t in tokens if t.entropy is not None]
        return f"mean entropy {fmt(sum(values) / len(values), 2)} bits" if values else "entropy not recorded"
    probs = [t.prob for t in tokens if t.prob is not None]
    return f"mean probability {sum(probs) / len(probs):.0%}" if probs else "probability not recorded"


def uncertainty_legend(by: Uncertainty = "entropy", *, css: bool = True) -> str:
    """The bins of :func:`uncertainty_html` as a row of swatches, with what the colour means.

    >>> uncertainty_legend("probability", css=False).count('class="explorer-swatch')
    8
    """
    swatches = "".join(f'<span class="explorer-swatch explorer-u{i}">{html.escape(label)}</span>'
                       for i, label in enumerate(_LABELS[by]))
    missing = '<span class="explorer-swatch explorer-unrecorded">not recorded</span>'
    style = f"<style>{UNCERTAINTY_CSS}</style>" if css else ""
    return (f'<div class="explorer-unc explorer-unc-legend" style="font-size:0.85em">{style}'
            f'<span style="color:{MUTED}">colour: {_ABOUT[by]} </span>{swatches}{missing}</div>')
