"""Shared look of every figure: palettes, token text made visible and safe, number formats, a base layout."""

from __future__ import annotations

import html
import math
import re
from typing import TYPE_CHECKING, Any

from explorer.figures._theme import Theme, template
from explorer.text import CONTROLS, clip, visible

if TYPE_CHECKING:
    from explorer.trace import Candidate

__all__ = [
    "CONTROLS",
    "FATE_COLORS",
    "FONT",
    "MISSING",
    "NODE_SCALE",
    "PALETTE",
    "RESULT_COLORS",
    "adjustment",
    "base_layout",
    "clip",
    "constraint_names",
    "esc",
    "esc_name",
    "fmt",
    "moved",
    "panel_color",
    "pct",
    "pushed_out",
    "result_color",
    "safe",
    "safe_hover",
    "safe_label",
    "visible",
]

#: One colour per panel or group, in order (colour-blind friendly, after Okabe and Ito; their black is a mid grey
#: here, which stands out on a light and on a dark page).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#8C8C8C")
#: Result paths, best first: rank 0 is the strongest colour (each at least 3:1 on a dark page; the brown is lighter
#: than matplotlib's for that).
RESULT_COLORS = ("#D62728", "#FF7F0E", "#9467BD", "#A0675B", "#E377C2", "#17BECF")
#: The fate of a recorded candidate (each at least 3:1 on a dark page; pruned is faint on purpose on a light one).
FATE_COLORS = {"kept": "#2A9D8F", "finished": "#9B59B6", "pruned": "#9AA0A6", "masked": "#E63946",
               "pushed down": "#F4A261"}
#: Continuous colour scale of node scores and log-probs.
NODE_SCALE = "Viridis"
FONT = {"family": "Inter, Segoe UI, Helvetica, Arial, sans-serif", "size": 12}

# Combining marks past the second on one character (the common blocks: diacritics, extended, supplement, for
# symbols, half marks).
_MARKS = re.compile("([\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]{2})"
                    "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
def safe(text: str | None) -> str:
    """Token text made visible, then HTML-escaped, for hover labels and plotly text (which render markup).

    Quotes stay as they are (with ``<`` and ``>`` escaped no tag can open); text for an HTML attribute needs
    ``esc(..., quote=True)``.
    """
    return html.escape(visible(text), quote=False)


#: Characters of token text on one line of a hover label: plotly never wraps one, a long token would be pages wide.
HOVER_WIDTH = 60
#: Characters of token text written beside a tree node (its hover label has all of it).
LABEL_WIDTH = 10


def safe_hover(text: str | None) -> str:
    """``safe(text)`` for a hover label: cut into lines of ``HOVER_WIDTH`` characters (``<br>`` between them).

    >>> safe_hover("<" + "x" * 70)
    '&lt;xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx<br>xxxxxxxxxxx'
    """
    shown = visible(text)
    return "<br>".join(html.escape(shown[i : i + HOVER_WIDTH], quote=False) for i in range(0, len(shown), HOVER_WIDTH))


def safe_label(text: str | None, width: int = LABEL_WIDTH) -> str:
    """``safe(text)`` for a label beside a node or on an axis: at most ``width`` characters (then ``…``) and at most two
    combining marks on a character (a "zalgo" token would pile marks over its neighbours).

    >>> safe_label("<" + "x" * 70), len(safe_label("Z" + "\N{COMBINING ACUTE ACCENT}" * 9))
    ('&lt;xxxxxxxx…', 3)
    """
    shown = _MARKS.sub(r"\1", visible(text))
    return html.escape(clip(shown, width), quote=False)


def esc(text: str, *, quote: bool = False) -> str:
    """Plain text (a reason, a note, a name) HTML-escaped, its line breaks as ``⏎`` (``quote`` for attributes)."""
    return html.escape(text, quote=quote).replace("\n", "⏎")


def esc_name(text: str, limit: int = 40) -> str:
    """A name in a title, legend or table cell (a panel's name may hold a forced token): control, invisible and
    bidi characters visible, cut to ``limit`` characters (then ``…``), HTML-escaped.

    >>> esc_name('#3 beam ↳ step 1 "<' + "x" * 40 + '"')
    '#3 beam ↳ step 1 "&lt;xxxxxxxxxxxxxxxxxxxx…'
    """
    return esc(clip(text.translate(CONTROLS), limit))


MISSING = "\N{EN DASH}"
NEG_INF = "\N{MINUS SIGN}\N{INFINITY}"


def fmt(value: float | None, digits: int = 3) -> str:
    """A score for display: fixed digits, minus infinity for a masked token, a dash when missing."""
    if value is None or math.isnan(value):
        return MISSING
    if math.isinf(value):
        return NEG_INF if value < 0 else "\N{INFINITY}"
    return f"{value:.{digits}f}"


def adjustment(value: float) -> str:
    """A processor's change to a score, signed (minus infinity when it masked the token)."""
    return NEG_INF if value == -math.inf else f"{value:+.3f}"


def pushed_out(c: Candidate, k: int) -> bool:
    """Whether ``c`` is one of the model's ``k`` best (raw log-probs) that the processors pushed out of the ``k``
    best by score without masking it (recorded since trace format 1.5: ``raw_rank``)."""
    return c.raw_rank is not None and c.raw_rank < k <= c.rank and c.score > -math.inf


def moved(c: Candidate) -> str | None:
    """What the processors did to a candidate's place, in words (``None``: nothing, or unknown in an old trace).

    >>> from explorer.trace import Candidate
    >>> moved(Candidate(5, "a", -0.5, -math.inf, -math.inf, 900, (("no_repeat_ngram", -math.inf),), "masked", "",
    ...                 raw_rank=0))
    "masked by no_repeat_ngram (the model's rank 1)"
    """
    if c.raw_rank is None or c.raw_rank == c.rank:
        return None
    places = f"the model's rank {c.raw_rank + 1}"
    if c.masked_by is not None:
        return f"masked by {esc(c.masked_by)} ({places})"
    down = c.pushed_down_by
    if c.rank > c.raw_rank and down:
        return f"pushed down by {esc(', '.join(down))}: {places} → rank {c.rank + 1}"
    return f"{places} → rank {c.rank + 1} after the processors"


def pct(logprob: float | None) -> str:
    """The probability of a log-probability, as a percentage."""
    if logprob is None or math.isnan(logprob):
        return MISSING
    p = math.exp(logprob) * 100
    return f"{p:.3g}%" if p < 0.1 else f"{p:.1f}%"


def panel_color(index: int) -> str:
    """The colour of the ``index``-th panel (strategy) or group."""
    return PALETTE[index % len(PALETTE)]


def result_color(rank: int) -> str:
    """The colour of the result of this rank."""
    return RESULT_COLORS[rank % len(RESULT_COLORS)]


def constraint_names(constraints: tuple[dict[str, Any], ...]) -> list[str]:
    """A short, unescaped name for each constraint of a trace: its text, or its token ids."""
    names = []
    for c in constraints:
        if c.get("kind") == "any":
            texts = [repr(t) for t in c["texts"]] if c.get("texts") else [str(o) for o in c.get("options", [])]
            names.append("any of " + " | ".join(texts))
        else:
            names.append(repr(c["text"]) if c.get("text") else str(c.get("token_ids")))
    return names


def base_layout(theme: Theme = "light", **extra: Any) -> dict[str, Any]:
    """Layout shared by the figures: the theme's template, tight margins, readable fonts, hover labels that wrap."""
    layout: dict[str, Any] = {
        "template": template(theme),
        "font": FONT,
        "margin": {"l": 56, "r": 16, "t": 48, "b": 44},
        "hoverlabel": {"font": {"size": 12, "family": "Menlo, Consolas, monospace"}, "align": "left"},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
    }
    layout.update(extra)
    return layout
