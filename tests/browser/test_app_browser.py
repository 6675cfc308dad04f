"""The explorer in a real browser: Voila serves ``notebooks/app.ipynb`` (tiny-random), headless Chromium clicks.

What a user does, checked through the DOM only (the app's stable CSS classes): type a prompt, set two panels
(beam and diverse), Run, see both trees and both result tables; click a tree node and see its details; give a
bad parameter and see an inline message, never a traceback. The page must need nothing from other hosts and
raise no errors of its own. Screenshots land in ``tests/out/``.
"""

from __future__ import annotations

import pytest
from browser_harness import ECHO_TIMEOUT, RUN_TIMEOUT, AppPage, check_clean

pytestmark = pytest.mark.browser

PROMPT = "The secret of good bread is"

#: JS: the page position of the first clickable node (a hypothesis: customdata [panel key, "h<id>"]) of a panel.
NODE_POSITION = """([sel, panelKey]) => {
  const root = document.querySelector(sel);
  const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
  const box = gd.getBoundingClientRect();
  for (const t of gd.data) {
    if (!t.customdata || !t.x) continue;
    for (let i = 0; i < t.x.length; i++) {
      const cd = t.customdata[i];
      if (!cd || cd[0] !== panelKey || !String(cd[1]).startsWith('h') || t.x[i] === null) continue;
      const xa = gd._fullLayout[(t.xaxis || 'x').replace('x', 'xaxis')];
      const ya = gd._fullLayout[(t.yaxis || 'y').replace('y', 'yaxis')];
      const px = xa._offset + xa.l2p(xa.d2l(t.x[i]));
      const py = ya._offset + ya.l2p(ya.d2l(t.y[i]));
      return {x: box.left + px, y: box.top + py, node: String(cd[1])};
    }
  }
  return null;
}"""

#: JS: a fingerprint of the details figure (what it shows changes when a node is selected).
DETAILS_FINGERPRINT = """() => {
  const root = document.querySelector('.explorer-details');
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  if (!gd || !gd.data) return '';
  return JSON.stringify([(gd.layout.title && gd.layout.title.text) || '', gd.data.map(t => [t.type, t.name,
    (t.x || []).length])]);
}"""


def test_two_panels_run_and_draw_their_trees(app_page: AppPage) -> None:
    app = app_page
    app.wait("the tree figure to render", "() => !!document.querySelector('.explorer-tree .main-svg')",
             ECHO_TIMEOUT)
    app.shot("loaded")
    app.type_prompt(PROMPT)
    app.ensure_panels(2)
    app.set_strategy(0, "beam")
    app.set_strategy(1, "diverse")

    status = app.click_run()
    assert status.startswith("done"), f"the run did not finish: {status!r}. {app.explain()}"
    app.wait("both panels' trees to be drawn",
             """(sel) => { const r = document.querySelector(sel);
                           return !!r && r.querySelectorAll('.cartesianlayer > .subplot').length >= 2
                             && [...r.querySelectorAll('.cartesianlayer > .subplot')].every(
                                  s => s.querySelector('.scatterlayer .trace path.point')); }""",
             RUN_TIMEOUT, ".explorer-tree")
    # The details figure (score timelines until a node is clicked) is drawn after the run too.
    app.wait("the details figure to draw after the run",
             """() => { const r = document.querySelector('.explorer-details');
                        return !!r && !!r.querySelector('.main-svg')
                          && r.querySelectorAll('.scatterlayer .trace').length > 0; }""",
             RUN_TIMEOUT)
    app.shot("after-run")

    tree = app.tree_summary()
    with_nodes = {k: n for k, n in tree["nodesBySubplot"].items() if n > 0}
    assert len(with_nodes) >= 2, f"expected clickable nodes in two subplots, got {tree}. {app.explain()}"
    drawn = {k: n for k, n in tree["drawn"].items() if n > 0}
    assert len(drawn) >= 2, f"expected two subplots with drawn markers, got {tree}. {app.explain()}"
    titles = " | ".join(tree["titles"])
    assert "beam" in titles, f"subplot titles {tree['titles']!r}. {app.explain()}"
    assert "diverse" in titles, f"subplot titles {tree['titles']!r}. {app.explain()}"

    for i, strategy in enumerate(("beam", "diverse")):
        rows = app.panel(i).locator(".explorer-results tr")
        texts = [t.strip() for t in rows.all_inner_texts()]
        data_rows = [t for t in texts[1:] if t]  # the first row is the header
        assert data_rows, f"panel {i + 1} ({strategy}) shows no result rows: {texts}. {app.explain()}"
    errors = app.page.locator(".explorer-error:visible")
    assert errors.count() == 0, f"inline errors after a good run: {errors.all_inner_texts()}. {app.explain()}"
    check_clean(app)

    # Click a node of the first panel's tree: the selection line and the details figure follow.
    key = tree["titles"][0] if tree["titles"] else ""
    before_details = app.page.evaluate(DETAILS_FINGERPRINT)
    before_selection = app.page.locator(".explorer-selection").inner_text()
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()  # Voila scrolls inside a box, not the page
    target = app.page.evaluate(NODE_POSITION, [".explorer-tree", key])
    assert target is not None, f"no clickable hypothesis node of panel {key!r} in {tree}. {app.explain()}"
    app.page.mouse.move(target["x"], target["y"])
    app.page.wait_for_timeout(200)  # plotly picks the hovered point first
    app.page.mouse.click(target["x"], target["y"])
    app.wait(f"the selection to show node {target['node']}",
             """([before]) => { const s = document.querySelector('.explorer-selection');
                                return !!s && s.textContent.trim() !== '' && s.textContent !== before; }""",
             ECHO_TIMEOUT, [before_selection])
    app.wait("the details figure to change", f"() => ({DETAILS_FINGERPRINT})() !== {before_details!r}",
             ECHO_TIMEOUT)
    app.shot("after-click")
    assert target["node"] in app.page.locator(".explorer-selection").inner_text(), app.explain()
    check_clean(app)


def test_bad_parameter_is_an_inline_message_not_a_traceback(app_page: AppPage) -> None:
    app = app_page
    app.type_prompt(PROMPT)
    app.ensure_panels(2)
    app.set_strategy(1, "diverse")
    app.set_knob(1, "num-beam-groups", "3")  # 4 beams cannot be split into 3 groups
    app.wait("an inline error under the panel's knob",
             "() => [...document.querySelectorAll('.explorer-panel .explorer-error')]"
             ".some(e => e.offsetParent !== null && /num_beam_groups/.test(e.textContent))",
             ECHO_TIMEOUT)
    status = app.click_run()
    app.shot("bad-parameter")
    assert status.startswith("error"), f"a run with a bad parameter should not start: {status!r}. {app.explain()}"
    visible = [t for t in app.page.locator(".explorer-error:visible").all_inner_texts() if t.strip()]
    assert any("num_beam_groups=3 is invalid" in t for t in visible), f"inline errors: {visible}. {app.explain()}"
    assert all("\n" not in t.strip() for t in visible), f"an error message should be one line: {visible}"
    check_clean(app)
