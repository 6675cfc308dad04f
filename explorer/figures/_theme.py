"""Light and dark looks of the figures: a palette and a Plotly template per theme, and WCAG contrast arithmetic."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import plotly.graph_objects as go
import plotly.io as pio

from explorer.errors import ParameterError

__all__ = [
    "DARK",
    "LIGHT",
    "THEMES",
    "Palette",
    "Theme",
    "blend",
    "contrast_ratio",
    "luminance",
    "palette",
    "parse_color",
    "resolve_theme",
    "template",
]

Theme = Literal["light", "dark"]
THEMES: tuple[Theme, ...] = ("light", "dark")
RGBA = tuple[float, float, float, float]


@dataclass(frozen=True)
class Palette:
    """The theme-dependent colours of the figures. Everything else (panel, result and fate colours, the colour
    scale) is one set of mid-tone colours for both themes.

    ``paper`` is the page's own background (JupyterLab's and Voila's ``--jp-layout-color0``), so that a figure
    sits on the page without a box. ``ink`` is text, ``muted`` secondary text (at least 4.5:1 on ``paper``, WCAG AA),
    ``label`` token text beside tree nodes. ``outline`` rims every scored marker, so that a marker whose colour is
    close to the background (Viridis's dark end on dark paper, its yellow end on white) still stands out (at least
    3:1); ``strong_outline`` rims finished entries. ``edge`` and ``faint_edge`` are the RGB of tree edges and of
    edges to pruned leaves (their opacity depends on how crowded a panel is).
    """

    name: Theme
    paper: str
    ink: str
    muted: str
    label: str
    grid: str
    outline: str
    strong_outline: str
    edge: str
    faint_edge: str
    plotly_base: str


LIGHT = Palette(name="light", paper="#FFFFFF", ink="#2A3F5F", muted="#666666", label="#444444", grid="#EBF0F8",
                outline="rgba(0,0,0,0.45)", strong_outline="#333333", edge="90,95,100", faint_edge="150,155,160",
                plotly_base="plotly_white")
DARK = Palette(name="dark", paper="#111111", ink="#F2F5FA", muted="#9E9E9E", label="#BDBDBD", grid="#283442",
               outline="rgba(255,255,255,0.5)", strong_outline="#DDDDDD", edge="170,175,180",
               faint_edge="120,125,130", plotly_base="plotly_dark")
_PALETTES = {"light": LIGHT, "dark": DARK}


def palette(theme: str | None = None) -> Palette:
    """The palette of ``theme`` (``None``: the theme of Plotly's default template, see :func:`resolve_theme`).

    >>> palette("dark").paper
    '#111111'
    """
    return _PALETTES[resolve_theme(theme)]


def resolve_theme(theme: str | None = None) -> Theme:
    """``"light"`` or ``"dark"``; ``None`` follows Plotly's default template (``plotly.io.templates.default``),
    dark when its background is dark, so that ``pio.templates.default = "plotly_dark"`` darkens our figures too.

    >>> resolve_theme("dark"), resolve_theme(None) in THEMES
    ('dark', True)
    """
    if theme is None:
        default = pio.templates.default
        base = pio.templates[default] if isinstance(default, str) else default
        paper = base.layout.paper_bgcolor if base is not None and base.layout is not None else None
        rgba = parse_color(paper) if isinstance(paper, str) else None
        return "dark" if rgba is not None and luminance(rgba) < 0.2 else "light"
    if theme not in THEMES:
        raise ParameterError("theme", theme, "'light' or 'dark'")
    return theme


@functools.cache
def template(theme: Theme) -> go.layout.Template:
    """The Plotly template of a theme: Plotly's white or dark template, on the page's background, with our colours.

    Also registered as ``plotly.io.templates["explorer_light"]`` and ``["explorer_dark"]``.

    >>> template("dark").layout.paper_bgcolor
    '#111111'
    """
    p = _PALETTES[theme]
    axis = {"gridcolor": p.grid, "linecolor": p.grid, "zerolinecolor": p.grid, "tickcolor": p.muted,
            "title": {"font": {"color": p.ink}}}
    made = go.layout.Template(pio.templates[p.plotly_base])
    made.layout.update(
        paper_bgcolor=p.paper, plot_bgcolor=p.paper, font={"color": p.ink},
        xaxis=axis, yaxis=axis, legend={"bgcolor": "rgba(0,0,0,0)", "font": {"color": p.ink}},
        modebar={"bgcolor": "rgba(0,0,0,0)", "color": p.muted, "activecolor": p.ink},
        coloraxis={"colorbar": {"outlinecolor": p.outline, "outlinewidth": 1, "tickcolor": p.muted}},
    )
    return made


for _theme in THEMES:
    pio.templates[f"explorer_{_theme}"] = template(_theme)

# --- WCAG 2 contrast ------------------------------------------------------------------------------------------------

_HEX = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})")
_FUNC = re.compile(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)")
_NAMED = {"white": (255.0, 255.0, 255.0, 1.0), "black": (0.0, 0.0, 0.0, 1.0), "transparent": (0.0, 0.0, 0.0, 0.0)}


def parse_color(color: str) -> RGBA | None:
    """``(r, g, b, alpha)`` (0-255, alpha 0-1) of a hex, ``rgb()``, ``rgba()`` or basic named CSS colour, else
    ``None``.

    >>> parse_color("#0072B2"), parse_color("rgba(0,0,0,0.45)"), parse_color("var(--x)")
    ((0.0, 114.0, 178.0, 1.0), (0.0, 0.0, 0.0, 0.45), None)
    """
    text = color.strip().lower()
    if text in _NAMED:
        return _NAMED[text]
    if match := _HEX.fullmatch(text):
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        values = [int(digits[i : i + 2], 16) for i in range(0, len(digits), 2)]
        alpha = values[3] / 255 if len(values) == 4 else 1.0
        return float(values[0]), float(values[1]), float(values[2]), alpha
    if match := _FUNC.fullmatch(text):
        r, g, b, a = match.groups()
        return float(r), float(g), float(b), float(a) if a is not None else 1.0
    return None


def _over(color: RGBA, background: RGBA) -> RGBA:
    """``color`` composited over an opaque ``background``."""
    a = color[3]
    return (color[0] * a + background[0] * (1 - a), color[1] * a + background[1] * (1 - a),
            color[2] * a + background[2] * (1 - a), 1.0)


def blend(color: str, background: str) -> str:
    """``color`` composited over the opaque ``background``, as ``rgb()`` (what the page shows of a translucent colour).

    >>> blend("rgba(0,0,0,0.5)", "#FFFFFF")
    'rgb(127.5,127.5,127.5)'
    """
    top, under = parse_color(color), parse_color(background)
    if top is None or under is None:
        raise ValueError(f"not a colour: {color!r} or {background!r}")
    r, g, b, _ = _over(top, under)
    return f"rgb({r:g},{g:g},{b:g})"


def luminance(color: RGBA | str) -> float:
    """WCAG 2 relative luminance of an opaque colour (0 black, 1 white).

    >>> round(luminance("#767676"), 3)
    0.181
    """
    rgba = parse_color(color) if isinstance(color, str) else color
    if rgba is None:
        raise ValueError(f"not a colour: {color!r}")

    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(rgba[0]) + 0.7152 * channel(rgba[1]) + 0.0722 * channel(rgba[2])


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio (1 to 21) of ``foreground`` (composited first if translucent) on an opaque
    ``background``. Text needs 4.5 (AA), graphical objects 3.

    >>> round(contrast_ratio("#666666", "#FFFFFF"), 2), round(contrast_ratio("rgba(255,255,255,0.5)", "#111111"), 2)
    (5.74, 5.33)
    """
    fg, bg = parse_color(foreground), parse_color(background)
    if fg is None or bg is None:
        raise ValueError(f"not a colour: {foreground!r} or {background!r}")
    high, low = sorted((luminance(_over(fg, bg)), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)
