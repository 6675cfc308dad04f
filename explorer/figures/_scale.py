"""A tree figure's colour bar as HTML, for a page that keeps it in view while the figure scrolls (the app pins it to
the top of the window): its title, the colour ramp, and round tick values placed on it."""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from explorer.figures._tree import _BAR_LENGTH

__all__ = ["SCALE_CSS", "color_scale_html", "nice_ticks"]

MINUS = "\N{MINUS SIGN}"
#: The ramp's width in pixels (as long as the figure's own bar).
RAMP_PX = _BAR_LENGTH

#: The bar's look: the title left of a ramp with ticks under it; colours from the page's theme variables.
SCALE_CSS = f"""
.explorer-scale-bar {{ display: flex; align-items: flex-start; gap: 10px; font-size: 12px; padding: 4px 0 2px; }}
.explorer-scale-title {{ line-height: 12px; white-space: nowrap; }}
.explorer-scale-ramp {{ position: relative; width: {RAMP_PX}px; height: 10px; flex: none;
  margin: 1px 12px 16px; outline: 1px solid var(--explorer-border); }}
.explorer-scale-tick {{ position: absolute; top: 10px; transform: translateX(-50%); font-size: 11px;
  white-space: nowrap; padding-top: 2px; }}
.explorer-scale-tick::before {{ content: ""; position: absolute; left: 50%; top: 0; height: 3px;
  border-left: 1px solid currentColor; }}
"""


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values from ``low`` to ``high``, a step of 1, 2, 2.5 or 5 times a power of ten, the one that cuts the
    range into the number of parts nearest ``count`` (the rounder step on a tie).

    >>> nice_ticks(-14.08, -0.21)
    [-12.5, -10.0, -7.5, -5.0, -2.5]
    >>> nice_ticks(0.0, 1.0), nice_ticks(3.0, 3.0)
    ([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], [3.0])
    """
    if not (math.isfinite(low) and math.isfinite(high)) or high - low <= 1e-12 * max(1.0, abs(low)):
        return [low]
    power = math.floor(math.log10((high - low) / count))
    steps = [(m * 10.0**p, m == 2.5) for p in (power - 1, power, power + 1) for m in (1.0, 2.0, 2.5, 5.0)]
    step, _ = min(steps, key=lambda s: (abs((high - low) / s[0] - count), s[1]))
    first = math.ceil(low / step - 1e-9)
    values = [(first + i) * step for i in range(math.floor(high / step + 1e-9) - first + 1)]
    return [round(v, 12) + 0.0 for v in values]


def _label(value: float, step: float) -> str:
    """A tick's text with as many decimals as the step needs, minus as plotly writes it.

    >>> [_label(v, s).replace(MINUS, "-") for v, s in ((-2.0, 2.0), (0.25, 0.25), (-7.5, 2.5), (50.0, 25.0))]
    ['-2', '0.25', '-7.5', '50']
    """
    if step > 0:
        power = math.floor(math.log10(step) + 1e-9)
        half = abs(step / 10.0**power - 2.5) < 1e-6 and power <= 0  # 2.5, 0.25: one decimal more
        decimals = max(0, -power) + (1 if half else 0)
    else:
        decimals = 3
    text = f"{value:.{decimals}f}"
    return text.replace("-", MINUS) if text.startswith("-") else text


def color_scale_html(fig: go.Figure, title: str) -> str:
    """The continuous colour scale of ``fig`` (its ``layout.coloraxis``) as an HTML bar titled ``title``; empty
    when the figure has none (colours by group).

    >>> from explorer.figures import search_trees
    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="beam", num_beams=2, max_new_tokens=3)
    >>> bar = color_scale_html(search_trees({"beam": t}, color_bar=False), "path score (summed)")
    >>> "linear-gradient(to right, #440154 0.0%" in bar, bar.count('class="explorer-scale-tick"') >= 2
    (True, True)
    >>> color_scale_html(search_trees({"beam": t}, color="group", color_bar=False), "group")
    ''
    """
    axis = fig.layout.coloraxis
    if axis.cmin is None or axis.cmax is None or not axis.colorscale:
        return ""
    low, high = float(axis.cmin), float(axis.cmax)
    ramp = ", ".join(f"{color} {100 * float(at):.1f}%" for at, color in axis.colorscale)
    ticks = nice_ticks(low, high)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 0.0
    span = high - low if high > low else 1.0
    marks = "".join(f'<span class="explorer-scale-tick" style="left: {100 * (t - low) / span:.2f}%">'
                    f"{_label(t, step)}</span>" for t in ticks if low - 1e-9 <= t <= high + 1e-9)
    exact = f"from {low:.3f} (darkest) to {high:.3f} (brightest)"
    return (f'<div class="explorer-scale-bar"><span class="explorer-scale-title">{html.escape(title)}</span>'
            f'<span class="explorer-scale-ramp" title="{exact}" '
            f'style="background: linear-gradient(to right, {ramp})">{marks}</span></div>')

