"""The trees fit the app's box on a laptop (1280x800) and a desktop (1920x1080) with 1, 2, 4 and 8 panels.

One page: Run with one, two, then four panels, then load four saved traces (eight panels); at each count and both
window sizes the test measures the drawn page: every panel inside the box and the window (nothing out of reach), no
two text elements of the figure's SVG overlapping (labels, titles, ticks, legend), the colour bar (the tree
header's, outside the figure) inside the window, its ticks apart and clear of its title, and still in the window and
on top when the page is scrolled to the last row of panels; and the hover label of the right-most node of the last
panel inside the window. Screenshots of the trees go to ``tests/out/`` (and to ``$EXPLORER_LAYOUT_SHOTS`` when set).
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest
from browser_harness import ECHO_TIMEOUT, TREE_FITTED, AppPage, check_clean

import explorer

pytestmark = pytest.mark.browser

SIZES = ((1280, 800), (1920, 1080))


#: JS: what the layout check needs, measured in the page: the box, the window, each panel's plot area, the colour
#: bar, and every pair of text elements of the figure whose boxes overlap.
MEASURE = """() => {
  const root = document.querySelector('.explorer-tree');
  const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
  const r = (b) => ({left: b.left, right: b.right, top: b.top, bottom: b.bottom});
  const fig = gd.getBoundingClientRect();
  const panels = [];
  for (const [name, xa] of Object.entries(gd._fullLayout)) {
    if (!/^xaxis\\d*$/.test(name)) continue;
    const ya = gd._fullLayout[xa.anchor.replace('y', 'yaxis')];
    panels.push({name, left: fig.left + xa._offset, right: fig.left + xa._offset + xa._length,
                 top: fig.top + ya._offset, bottom: fig.top + ya._offset + ya._length});
  }
  const bar = gd.querySelector('.colorbar');
  const fills = bar && bar.querySelector('.cbfills');
  const title = [...gd.querySelectorAll('.annotation-text')].find(e => /score|log-prob/.test(e.textContent));
  const [f, t] = [fills, title].map(e => e && e.getBoundingClientRect());
  const titleOnBar = !t || !!(f && t.bottom > f.top + 1 && t.top < f.bottom - 1
                              && t.right > f.left && t.left < f.right);
  const texts = [...gd.querySelectorAll('svg text')]
    .filter(t => !t.closest('.hoverlayer') && t.textContent.trim() && getComputedStyle(t).display !== 'none')
    .map(t => ({text: t.textContent.trim(), box: r(t.getBoundingClientRect())}))
    .filter(t => t.box.right - t.box.left > 0);
  const overlaps = [];
  for (let i = 0; i < texts.length; i++) {
    for (let j = i + 1; j < texts.length; j++) {
      const a = texts[i].box, b = texts[j].box;
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 1 && h > 1) overlaps.push([texts[i].text, texts[j].text, Math.round(w), Math.round(h)]);
    }
  }
  const ramp = document.querySelector('.explorer-scale .explorer-scale-ramp');
  const named = document.querySelector('.explorer-scale .explorer-scale-title');
  const ticks = [...document.querySelectorAll('.explorer-scale .explorer-scale-tick')]
    .map(e => ({text: e.textContent, box: r(e.getBoundingClientRect())}));
  return {box: r(root.getBoundingClientRect()), scroll: root.scrollWidth - root.clientWidth,
          window: document.documentElement.clientWidth, figure: r(fig), panels,
          plotlyBar: !!bar, titleOnBar, texts: texts.length, overlaps,
          ramp: ramp ? r(ramp.getBoundingClientRect()) : null,
          rampTitle: named ? r(named.getBoundingClientRect()) : null, ticks};
}"""

#: JS: scroll the page's scroller until the bottom of the figure (its last row of panels) is at the window's bottom;
#: then where the colour bar's ramp is, and whether it is what the window shows at its centre (not covered).
BAR_AT_BOTTOM = """() => {
  const tree = document.querySelector('.explorer-tree');
  let scroller = tree.parentElement;
  while (scroller && !(scroller.scrollHeight > scroller.clientHeight + 1
                       && /auto|scroll/.test(getComputedStyle(scroller).overflowY))) scroller = scroller.parentElement;
  const target = scroller || document.scrollingElement;
  const below = tree.getBoundingClientRect().bottom - window.innerHeight;
  target.scrollTop += below;
  const ramp = document.querySelector('.explorer-scale .explorer-scale-ramp').getBoundingClientRect();
  const hit = document.elementFromPoint((ramp.left + ramp.right) / 2, (ramp.top + ramp.bottom) / 2);
  const box = document.querySelector('.explorer-scale').getBoundingClientRect();
  const scrollTop = (scroller || document.documentElement).getBoundingClientRect().top;
  return {top: ramp.top, bottom: ramp.bottom, height: window.innerHeight, scrolled: below,
          treeTop: tree.getBoundingClientRect().top, onTop: !!hit && !!hit.closest('.explorer-scale'),
          gap: tree.getBoundingClientRect().top < box.bottom - 1 ? box.top - Math.max(0, scrollTop) : 0};
}"""

#: JS: the page position of the right-most clickable node of the last panel.
LAST_NODE = """() => {
  const gd = document.querySelector('.explorer-tree.js-plotly-plot, .explorer-tree .js-plotly-plot');
  const box = gd.getBoundingClientRect();
  const axes = Object.keys(gd._fullLayout).filter(k => /^xaxis\\d*$/.test(k));
  const last = 'x' + (axes.length > 1 ? axes.length : '');
  let best = null;
  for (const t of gd.data) {
    if (!t.customdata || (t.xaxis || 'x') !== last || t.hoverinfo === 'skip') continue;
    for (let i = 0; i < t.x.length; i++) {
      if (t.x[i] === null || (best && t.x[i] <= best.x)) continue;
      const xa = gd._fullLayout[last.replace('x', 'xaxis')];
      const ya = gd._fullLayout[(t.yaxis || 'y').replace('y', 'yaxis')];
      best = {x: t.x[i], px: box.left + xa._offset + xa.l2p(t.x[i]), py: box.top + ya._offset + ya.l2p(t.y[i])};
    }
  }
  return best;
}"""

HOVER_BOX = """() => { const h = document.querySelector('.explorer-tree .hoverlayer .hovertext');
                      if (!h) return null; const b = h.getBoundingClientRect();
                      return {left: b.left, right: b.right, top: b.top, bottom: b.bottom,
                              window: document.documentElement.clientWidth}; }"""


def _inside(inner: dict[str, float], outer: dict[str, float], slack: float = 1.0) -> bool:
    return inner["left"] >= outer["left"] - slack and inner["right"] <= outer["right"] + slack


def _shots_dir() -> Path | None:
    return Path(os.environ["EXPLORER_LAYOUT_SHOTS"]) if os.environ.get("EXPLORER_LAYOUT_SHOTS") else None


def _check(app: AppPage, count: int, size: tuple[int, int]) -> None:
    """At window ``size``: the trees redrawn to the box, everything in reach, no text over another, hovers inside."""
    app.page.set_viewport_size({"width": size[0], "height": size[1]})
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()
    app.wait(f"{count} trees drawn to the box's width at {size}", TREE_FITTED, ECHO_TIMEOUT, [count])
    app.page.wait_for_timeout(300)  # plotly's text placement after the redraw
    m = app.page.evaluate(MEASURE)
    where = f"{count} panels at {size[0]}x{size[1]}"
    assert len(m["panels"]) == count, f"{where}: {m['panels']}. {app.explain()}"
    window = {"left": 0.0, "right": float(m["window"])}
    assert m["scroll"] <= 1, f"{where}: the box scrolls sideways by {m['scroll']} px. {app.explain()}"
    for panel in m["panels"]:
        assert _inside(panel, m["box"]), f"{where}: {panel} outside the box {m['box']}"
        assert _inside(panel, window), f"{where}: {panel} outside the window {window}"
    assert not m["plotlyBar"], f"{where}: a second colour bar in the figure. {app.explain()}"
    assert m["ramp"] is not None, f"{where}: no colour bar. {app.explain()}"
    assert m["rampTitle"] is not None, f"{where}: no colour bar title. {app.explain()}"
    assert _inside(m["ramp"], window), f"{where}: colour bar {m['ramp']} outside the window {window}"
    assert m["rampTitle"]["right"] <= m["ramp"]["left"], f"{where}: the colour bar's title over the bar {m}"
    ticks = [t["box"] for t in m["ticks"]]
    assert len(ticks) >= 2, f"{where}: colour bar ticks {m['ticks']}"
    assert all(a["right"] <= b["left"] for a, b in itertools.pairwise(ticks)), \
        f"{where}: colour bar ticks overlap {m['ticks']}"
    assert all(_inside(t, window) and t["left"] >= m["rampTitle"]["right"] for t in ticks), \
        f"{where}: colour bar ticks {m['ticks']} outside the window or over the title"
    assert m["texts"] > 4 * count, f"{where}: only {m['texts']} text elements. {app.explain()}"
    assert not m["overlaps"], f"{where}: overlapping text {m['overlaps'][:8]}. {app.explain()}"
    out = app.shot(f"{count}-panels-{size[0]}x{size[1]}", window=True)  # the window, as a user sees it
    trees = out.with_name(out.stem + "-trees.png")
    tall = int(m["figure"]["bottom"] - m["figure"]["top"]) + 200  # the whole figure in the window (same width)
    app.page.set_viewport_size({"width": size[0], "height": max(size[1], tall)})
    app.page.locator(".explorer-tree").screenshot(path=str(trees))
    app.page.set_viewport_size({"width": size[0], "height": size[1]})
    shots = _shots_dir()
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        for path in (out, trees):
            shutil.copy(path, shots / path.name)
    bar = app.page.evaluate(BAR_AT_BOTTOM)  # the colour bar while the last row of panels is read
    assert bar["top"] >= 0, f"{where}: the colour bar is above the window with the last row in view: {bar}"
    assert bar["bottom"] <= bar["height"], f"{where}: the colour bar is below the window: {bar}"
    assert bar["onTop"], f"{where}: the colour bar is covered with the last row in view: {bar}. {app.explain()}"
    assert abs(bar["gap"]) <= 1, f"{where}: the trees show above the stuck colour bar: {bar}"
    if count >= 4:
        app.shot(f"{count}-panels-{size[0]}x{size[1]}-last-row", window=True)
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()
    node = app.page.evaluate(LAST_NODE)
    assert node is not None, f"{where}: no node in the last panel. {app.explain()}"
    app.page.mouse.move(node["px"], node["py"])
    app.wait(f"a hover label at {where}", f"() => !!({HOVER_BOX})()", ECHO_TIMEOUT)
    hover = app.page.evaluate(HOVER_BOX)
    assert hover["left"] >= 0, f"{where}: hover label {hover} cut on the left"
    assert hover["right"] <= hover["window"], f"{where}: hover label {hover} cut on the right"
    app.page.mouse.move(1, 1)


def _saved_traces(folder: Path) -> list[Path]:
    """Four traces of tiny-random (the app's model here) saved as JSON, to load as panels five to eight."""
    model = explorer.load_model("tiny-random")
    runs = [("greedy", {}), ("beam", {"num_beams": 3}), ("beam", {"num_beams": 6, "early_stopping": "never"}),
            ("diverse", {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0})]
    paths = []
    for i, (strategy, kw) in enumerate(runs):
        trace = explorer.decode(model, [5, 6, 7], strategy, max_new_tokens=8, **kw)
        paths.append(folder / f"saved-{i}-{strategy}.json")
        trace.to_json(paths[-1])
    return paths


def _load(app: AppPage, path: Path, panels: int) -> None:
    """Load a saved trace through the page's upload button; wait for its panel."""
    with app.page.expect_file_chooser() as chooser:
        app.page.locator(".explorer-load").first.click()
    chooser.value.set_files(str(path))
    app.wait(f"{panels} panels", "(n) => document.querySelectorAll('.explorer-panel').length === n", ECHO_TIMEOUT,
             panels)


def test_trees_fit_a_laptop_and_a_desktop_with_one_to_eight_panels(app_page: AppPage, tmp_path: Path) -> None:
    app = app_page
    app.fill(".explorer-max-new-tokens input", "8", 8, "max new tokens")
    for strategies in (("beam",), ("beam", "diverse"), ("greedy", "beam", "diverse", "beam")):
        app.run_panels("The secret of good bread is", strategies)
        for size in SIZES if len(strategies) != 1 else SIZES[:1]:
            _check(app, len(strategies), size)
    for i, path in enumerate(_saved_traces(tmp_path)):
        _load(app, path, 5 + i)
    for size in SIZES:
        _check(app, 8, size)
    check_clean(app)
