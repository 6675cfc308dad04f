"""What the page's theme looks like from the browser: text contrast as drawn, and the figures' colours.

Colours are read with ``getComputedStyle`` (translucent text composited with its ancestors' opacity, the background
composited from the stack of backgrounds behind the element) and compared with WCAG 2's contrast ratio.
"""

from __future__ import annotations

from typing import Any

from browser_harness import AppPage

from explorer.figures._theme import blend, contrast_ratio, luminance, parse_color

#: Muted helper text of the app: model and precision notes, result captions, token heads (both colourings), the
#: selection hint.
MUTED = ".explorer-app .explorer-muted, .explorer-app .explorer-tokens-head, .explorer-app .explorer-unc-head"

#: JS: shared helpers, the colour of an element's text and the opaque background behind it.
_COLORS = """
const rgba = (css) => { const v = (css.match(/[\\d.]+/g) || []).map(Number);
                        return [v[0] || 0, v[1] || 0, v[2] || 0, v.length > 3 ? v[3] : 1]; };
const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
const css = (c) => `rgba(${c[0].toFixed(1)}, ${c[1].toFixed(1)}, ${c[2].toFixed(1)}, ${c[3].toFixed(3)})`;
function behind(el) {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  return layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1]);
}
function ink(el) {
  const c = rgba(getComputedStyle(el).color);
  for (let e = el; e; e = e.parentElement) c[3] *= Number(getComputedStyle(e).opacity);
  return c;
}
"""

#: JS: every visible element of a selector that holds text: its text, colour and background.
TEXT_COLORS = "(selector) => {" + _COLORS + """
  return [...document.querySelectorAll(selector)]
    .filter(e => e.offsetParent !== null && e.textContent.trim())
    .map(e => ({text: e.textContent.trim().slice(0, 60), color: css(ink(e)), background: css(behind(e))}));
}"""

#: JS: a plotly figure's paper and font colours, and the page's background behind it.
FIGURE_COLORS = "(selector) => {" + _COLORS + """
  const root = document.querySelector(selector);
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  if (!gd || !gd._fullLayout) return null;
  const notes = (gd._fullLayout.annotations || []).map(a => a.font && a.font.color).filter(Boolean);
  return {paper: gd._fullLayout.paper_bgcolor, font: gd._fullLayout.font.color, notes,
          page: css(behind(gd.parentElement))};
}"""


def _dark(color: str) -> bool:
    rgba = parse_color(color)
    assert rgba is not None, color
    return luminance(rgba) < 0.2


def check_theme(app: AppPage, theme: str, figures: tuple[str, ...] = (".explorer-tree", ".explorer-details"),
                ) -> dict[str, float]:
    """The page, the figures and the muted text are all in ``theme``: each figure sits on the page's own background
    (no box of another shade), its text holds 4.5:1 on it, and every muted text on screen holds 4.5:1 on what is
    behind it. Returns the lowest ratio seen of each (for the report)."""
    low: dict[str, float] = {}
    for selector in figures:
        colors: dict[str, Any] | None = app.page.evaluate(FIGURE_COLORS, selector)
        assert colors is not None, f"no plotly figure in {selector}. {app.explain()}"
        paper = blend(colors["paper"], colors["page"])
        assert _dark(colors["page"]) == (theme == "dark"), f"{selector}: the page is not {theme}: {colors}"
        assert contrast_ratio(paper, colors["page"]) < 1.1, f"{selector} draws a box on the page: {colors}"
        for color in (colors["font"], *colors["notes"]):
            ratio = contrast_ratio(color, paper)
            assert ratio >= 4.5, f"{selector}: text {color} on {paper} is {ratio:.2f}:1"
            low[selector] = min(low.get(selector, 21.0), ratio)
    muted = app.page.evaluate(TEXT_COLORS, MUTED)
    assert len(muted) >= 3, f"expected muted helper texts on screen, found {muted}. {app.explain()}"
    for item in muted:
        ratio = contrast_ratio(item["color"], item["background"])
        assert ratio >= 4.5, f"muted text {item['text']!r}: {item['color']} on {item['background']} is {ratio:.2f}:1"
        low["muted"] = min(low.get("muted", 21.0), ratio)
    return low
