"""A click on a tree selects what is under the cursor: plotly.js picks the point, in a real browser (no server).

With pruned candidates shown (the default), every hypothesis has leaves fanned out beside it; plotly.js favours
small markers when it picks the point under the cursor, so a click on a hypothesis used to select a leaf. The
figure is a static page here (plotly.js from the Python package, inline): cheap, and the pick is plotly's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.io as pio
import pytest
from browser_harness import new_context

import explorer
from explorer.figures import search_trees

pytestmark = pytest.mark.browser

#: JS: the page position of every hypothesis and finished marker (customdata [panel, "h<id>" / "f<id>"]).
POSITIONS = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  const box = gd.getBoundingClientRect();
  const out = {};
  for (const t of gd._fullData) {  // decoded arrays (gd.data may hold numpy's base64 form)
    if (!t.customdata || !t.x) continue;
    for (let i = 0; i < t.x.length; i++) {
      const cd = t.customdata[i];
      if (!/^[hf]/.test(String(cd[1]))) continue;
      const xa = gd._fullLayout[(t.xaxis || 'x').replace('x', 'xaxis')];
      const ya = gd._fullLayout[(t.yaxis || 'y').replace('y', 'yaxis')];
      out[cd[0] + ' ' + cd[1]] = [box.left + xa._offset + xa.l2p(xa.d2l(t.x[i])),
                                  box.top + ya._offset + ya.l2p(ya.d2l(t.y[i]))];
    }
  }
  window.__picked = [];
  gd.on('plotly_click', (ev) => { window.__picked.push(ev.points.map(p => p.customdata.join(' '))); });
  return out;
}"""


def _picks(browser: Any, tmp_path: Path, fig: Any, width: int, height: int,
           offsets: tuple[float, ...]) -> tuple[int, list[str]]:
    """Click hypothesis and finished nodes (every third one) at each offset, in px right of the centre, in the
    session's browser (a second Playwright cannot start beside it); the wrong picks."""
    fig.update_layout(width=width - 40, height=height - 40)
    page_file = tmp_path / f"tree-{width}.html"
    # Clicks 120 ms apart would be double clicks (plotly.js: 300 ms), which reset the axes: make them single.
    pio.write_html(fig, page_file, include_plotlyjs=True, full_html=True, config={"doubleClickDelay": 40})
    wrong, clicks = [], 0
    context = new_context(browser, width=width, height=height)
    try:
        page = context.new_page()
        page.goto(page_file.as_uri())
        page.wait_for_selector(".js-plotly-plot .main-svg")
        positions = list(page.evaluate(POSITIONS).items())[::3]
        for offset in offsets:
            for key, (x, y) in positions:
                page.mouse.move(x + offset, y)
                page.wait_for_timeout(120)  # plotly.js picks the hovered point first (its hover is throttled)
                page.mouse.click(x + offset, y)
                picked = page.evaluate("() => window.__picked.pop() || []")
                clicks += 1
                if picked != [key]:
                    wrong.append(f"{key} +{offset} px -> {picked}")
    finally:
        context.close()
    return clicks, wrong


def test_a_click_on_a_hypothesis_selects_it_not_a_leaf_beside_it(browser: Any, tmp_path: Path) -> None:
    """Twelve beams on a laptop screen: each hypothesis's slot is a few pixels high, its leaves a pixel or two from
    its centre (before the click targets, 82 of these 100 clicks picked a leaf)."""
    width, height = 1280, 800
    model = explorer.load_model("tiny-random")
    runs = {name: explorer.decode(model, [5, 6, 7], strategy=name, max_new_tokens=6, num_beams=12,
                                  **({"num_beam_groups": 3} if name == "diverse" else {}))
            for name in ("beam", "diverse")}
    fig = search_trees(runs, show_pruned=True)
    clicks, wrong = _picks(browser, tmp_path, fig, width, height // 2, (0.0, 2.0))  # on the centre, and beside it
    assert clicks > 40
    assert not wrong, f"{len(wrong)} of {clicks} clicks on a node picked another: {wrong[:8]}"
