"""Hostile token text in the real app: bidi, emoji, control characters, very long tokens and markup.

The model is the toy table ``tests/browser/data/hostile.json`` (see its description), typed into the model box as
a path. One run of two panels (greedy, and beam search with 4 beams returning 4 sequences) puts a 300-character
token, a right-to-left override, Hebrew and Arabic words, bidi isolates, emoji, NUL/BEL/ESC/tab/CR and
``<img onerror>``/``<a href=javascript:>`` tokens into the results and the summary table, and zalgo, ``<script>``,
``</div>`` and newlines into the trees and their hover labels. Checked through the DOM: nothing from token text runs
or becomes an element, the page does not grow a horizontal scrollbar and nothing sticks out of its box, the long
token wraps inside its panel with its full text in the tooltip and is cut in the summary, each token is its own bidi
isolate (tokens keep their order left to right whatever their direction), control and bidi characters are shown as
symbols (joiners stay: the emoji family stays one sequence), hover labels on the long and the Hebrew token stay
inside the figure. Then a click on the override's node (selection, candidates chart, force choices), and forcing
the long token at the root: a branch panel named after it that still fits, and a candidates chart whose axis labels
do not squeeze it.

Partial UTF-8 cannot be expressed in a toy table (its tokens are strings): the table has ``\\xe2\\x80``, the text
the tokenizer shows for an incomplete byte sequence (``Tokenizer.token_text``, tested in
``tests/models/test_tokenizer.py``), and U+FFFD. Screenshots land in ``tests/out/``; look at them.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from browser_harness import ECHO_TIMEOUT, RUN_TIMEOUT, STATUS_WATCH, AppPage, check_clean

pytestmark = pytest.mark.browser

TABLE = Path(__file__).parent / "data" / "hostile.json"
DOC = json.loads(TABLE.read_text(encoding="utf-8"))
LONG = max((t for d in DOC["table"].values() for t in d), key=len)  # the 300-character token
HEBREW = "\u05e9\u05dc\u05d5\u05dd"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
#: Pixels of slack for sub-pixel rounding.
SLACK = 2
#: JS: the smallest x (tokens generated) of any tree node, by panel key.
FIRST_DEPTHS = """(sel) => {
  const root = document.querySelector(sel);
  const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
  const out = {};
  for (const t of gd.data) {
    if (!t.customdata || !t.x) continue;
    t.x.forEach((x, i) => { const cd = t.customdata[i];
                            if (cd && x !== null) out[cd[0]] = Math.min(out[cd[0]] ?? Infinity, x); });
  }
  return out;
}"""

#: JS: what could have run or been created from token text.
INJECTED = """() => {
  const app = document.querySelector('.explorer-app');
  const bad = [...app.querySelectorAll('img, script, iframe, object, embed, svg [onload], [onerror], [onload]')]
    .concat([...document.querySelectorAll('a')].filter(a => /javascript:/i.test(a.getAttribute('href') || '')
      || /javascript:/i.test(a.getAttribute('xlink:href') || '')))
    // an element whose whole text is what a token wraps in markup: the markup was parsed
    .concat([...app.querySelectorAll('*')].filter(e => e.childElementCount === 0
      && ['bold?', 'link', 'not-bold'].includes(e.textContent)));
  return {pwned: window.__pwned === undefined ? null : String(window.__pwned),
          elements: bad.map(e => e.outerHTML.slice(0, 120))};
}"""

#: JS: horizontal overflow of the page and of every scrolling box, and elements that stick out of the window.
OVERFLOW = """(slack) => {
  const vw = document.documentElement.clientWidth;
  const scrolling = [];
  for (const el of [document.documentElement, document.body, ...document.querySelectorAll('body *')]) {
    if (el.scrollWidth > el.clientWidth + slack && el.clientWidth > 0) {
      const ox = getComputedStyle(el).overflowX;
      if (el === document.documentElement || el === document.body || ox === 'auto' || ox === 'scroll') {
        scrolling.push(`${el.tagName}.${[...el.classList].join('.')}#${el.id}: ${el.scrollWidth} > ${el.clientWidth}`);
      }
    }
  }
  const clipped = (el) => {
    for (let a = el.parentElement; a; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible' && a.getBoundingClientRect().right <= vw + slack) return true;
    }
    return false;
  };
  const sticking = [];
  for (const el of document.querySelectorAll('.explorer-app *')) {
    if (el.closest('svg')) continue;  // plotly draws inside its own clipped <svg>
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + slack && !clipped(el)) {
      sticking.push(`${el.tagName}.${[...el.classList].join('.')}: right ${Math.round(r.right)} > ${vw}`);
    }
  }
  return {vw, scrolling, sticking: sticking.slice(0, 10)};
}"""

#: JS: per panel, its result tokens: text, title, bidi isolation, boxes, and whether each stays in its panel.
TOKENS = """() => [...document.querySelectorAll('.explorer-panel')].map(panel => {
  const box = panel.getBoundingClientRect();
  const tokens = [...panel.querySelectorAll('.explorer-results .explorer-token')].map(s => {
    const rects = [...s.getClientRects()].map(r => ({left: r.left, right: r.right, top: r.top, bottom: r.bottom}));
    return {text: s.textContent, title: s.getAttribute('title') || '', bidi: getComputedStyle(s).unicodeBidi,
            rects, inside: rects.every(r => r.left >= box.left - 2 && r.right <= box.right + 2)};
  });
  return {left: box.left, right: box.right, tokens};
})"""

#: JS: the page position of the first tree point (of any panel) whose hover text contains ``needle``.
POINT_WITH = """([sel, needle]) => {
  const root = document.querySelector(sel);
  const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
  const box = gd.getBoundingClientRect();
  for (const t of gd.data) {
    if (!t.customdata || !t.x || !t.hovertext) continue;
    for (let i = 0; i < t.x.length; i++) {
      const hover = Array.isArray(t.hovertext) ? t.hovertext[i] : t.hovertext;
      if (t.x[i] === null || !String(hover).includes(needle)) continue;
      const xa = gd._fullLayout[(t.xaxis || 'x').replace('x', 'xaxis')];
      const ya = gd._fullLayout[(t.yaxis || 'y').replace('y', 'yaxis')];
      return {x: box.left + xa._offset + xa.l2p(xa.d2l(t.x[i])), y: box.top + ya._offset + ya.l2p(ya.d2l(t.y[i])),
              node: String(t.customdata[i][1])};
    }
  }
  return null;
}"""

#: JS: the hover label now shown on the tree: its text and box, and the figure's box.
HOVER_LABEL = """(sel) => {
  const root = document.querySelector(sel);
  const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
  const label = gd.querySelector('.hoverlayer .hovertext');
  if (!label) return null;
  const r = label.getBoundingClientRect(), g = gd.getBoundingClientRect();
  return {text: label.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width,
          height: r.height, fig: {left: g.left, right: g.right, top: g.top, bottom: g.bottom},
          vw: document.documentElement.clientWidth};
}"""

#: JS: the title of the details figure ('' before it is drawn).
DETAILS_TITLE = """() => {
  const root = document.querySelector('.explorer-details');
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  return (gd && gd.layout && gd.layout.title && gd.layout.title.text) || '';
}"""

#: JS: the details figure's width and its plot area's (long axis labels would squeeze the plot area).
DETAILS_PLOT_AREA = """() => {
  const root = document.querySelector('.explorer-details');
  const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
  return {width: gd._fullLayout.width, w: gd._fullLayout._size.w, l: gd._fullLayout._size.l};
}"""

#: Raw characters that must never reach the page from token text: C0 controls but newline, DEL, bidi controls.
RAW_CONTROLS = {chr(c) for c in range(0x20) if c != 0x0A} | {"\x7f"} | {chr(c) for c in range(0x202A, 0x202F)} | {
    chr(c) for c in range(0x2066, 0x206A)}


def _no_overflow(app: AppPage, moment: str) -> None:
    found = app.page.evaluate(OVERFLOW, SLACK)
    assert not found["scrolling"], f"{moment}: a horizontal scrollbar appeared: {found['scrolling']}. {app.explain()}"
    assert not found["sticking"], f"{moment}: elements stick out of the window: {found['sticking']}. {app.explain()}"


def _no_injection(app: AppPage, moment: str) -> None:
    found = app.page.evaluate(INJECTED)
    assert found["pwned"] is None, f"{moment}: token text ran as script (window.__pwned={found['pwned']})"
    assert not found["elements"], f"{moment}: token text became elements: {found['elements']}. {app.explain()}"


def _in_reading_order(tokens: list[dict[str, Any]]) -> list[str]:
    """Pairs of neighbouring tokens whose boxes are not left to right, line by line (a bidi reordering)."""
    wrong = []
    for a, b in itertools.pairwise(tokens):
        if not a["rects"] or not b["rects"]:
            continue
        last, first = a["rects"][-1], b["rects"][0]
        same_line = abs(first["top"] - last["top"]) < 4
        if same_line and first["left"] < last["right"] - SLACK:
            wrong.append(f"{a['text'][:20]!r} then {b['text'][:20]!r}")
        elif not same_line and first["top"] < last["top"]:
            wrong.append(f"{b['text'][:20]!r} above {a['text'][:20]!r}")
    return wrong


def test_hostile_tokens_keep_the_layout_and_stay_text(app_page: AppPage) -> None:
    app = app_page
    since = len(app.seen.echoes)
    model_box = app.page.locator(".explorer-model input").first
    model_box.fill(str(TABLE))
    model_box.press("Enter")
    app.wait_echo("the model", str(TABLE), since)
    app.wait("the hostile table to load", "() => /model .* loaded/.test(document.querySelector('.explorer-status')"
             ".textContent)", ECHO_TIMEOUT)
    app.type_prompt(DOC["prompt"])
    app.ensure_panels(2)
    app.set_strategy(0, "greedy")
    app.set_strategy(1, "beam")
    app.set_knob(1, "num-beams", "4")
    app.set_knob(1, "num-return-sequences", "4")

    status = app.click_run()
    assert status.startswith("done"), f"the run did not finish: {status!r}. {app.explain()}"
    app.wait("both panels' trees to be drawn",
             """(sel) => { const r = document.querySelector(sel);
                           return !!r && r.querySelectorAll('.cartesianlayer > .subplot').length >= 2; }""",
             RUN_TIMEOUT, ".explorer-tree")
    app.page.wait_for_timeout(300)  # the last relayout
    app.shot("after-run")
    check_clean(app)
    _no_injection(app, "after the run")
    _no_overflow(app, "after the run")

    # The results of both panels: the tokens as text, each its own bidi isolate, in their order, in their panel.
    panels = app.page.evaluate(TOKENS)
    assert len(panels) == 2, f"expected 2 panels: {panels}. {app.explain()}"
    assert all(p["tokens"] for p in panels), f"a panel shows no result tokens: {panels}. {app.explain()}"
    tokens = [t for p in panels for t in p["tokens"]]
    shown = "".join(t["text"] for t in tokens)
    for expected in ('<img/src="x"/onerror="window.__pwned=1">', HEBREW, "\u241b[31mred", "col\u21e5umn", FAMILY,
                     "\u27e8U+202E\u27e9evil-override", "\\xe2\\x80\ufffd"):
        assert expected in shown, f"{expected!r} is not shown as text in the results: {shown[:400]!r}"
    raw = sorted({f"U+{ord(c):04X}" for c in shown if c in RAW_CONTROLS})
    assert not raw, f"control or bidi characters reach the results raw (invisible, or reordering text): {raw}"
    not_isolated = sorted({t["bidi"] for t in tokens} - {"isolate", "isolate-override", "plaintext"})
    assert not not_isolated, f"result tokens are not bidi isolates (unicode-bidi {not_isolated})"
    outside = [t["text"][:30] for t in tokens if not t["inside"]]
    assert not outside, f"tokens stick out of their panel: {outside}. {app.explain()}"
    for panel in panels:
        wrong = _in_reading_order(panel["tokens"])
        assert not wrong, f"tokens out of their left-to-right order (bidi reordering): {wrong}. {app.explain()}"
    longs = [t for t in tokens if LONG in t["title"]]
    assert longs, f"no result token has the long token's full text in its tooltip: {[t['title'] for t in tokens]}"
    assert all(len(t["rects"]) > 1 for t in longs), "the long token should wrap onto several lines in its panel"

    # The summary table: the long text cut with an ellipsis, the whole text in the cell's tooltip.
    cell = app.page.locator(".explorer-summary td[title]").filter(has_text="Pneumono").first
    assert cell.inner_text().rstrip().endswith("\u2026"), f"summary text not cut: {cell.inner_text()!r}"
    assert LONG in (cell.get_attribute("title") or ""), "the summary cell's tooltip lacks the whole text"

    # Hover the tree node of the long token, then of the Hebrew one: a label that names it and stays in the figure.
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()
    for needle, moment in ((LONG[:40], "hover-long"), (HEBREW, "hover-hebrew")):
        target = app.page.evaluate(POINT_WITH, [".explorer-tree", needle])
        assert target is not None, f"no tree node whose hover text has {needle!r}. {app.explain()}"
        app.page.mouse.move(target["x"] + 1, target["y"] + 1)
        app.page.mouse.move(target["x"], target["y"])
        app.wait(f"the hover label of node {target['node']}",
                 "([sel, needle]) => { const l = document.querySelector(sel + ' .hoverlayer .hovertext');"
                 " return !!l && l.textContent.includes(needle); }", ECHO_TIMEOUT, [".explorer-tree", needle[:12]])
        label = app.page.evaluate(HOVER_LABEL, ".explorer-tree")
        app.shot(moment, window=True)
        fig = label["fig"]
        where = f"the hover label ({label['left']:.0f}..{label['right']:.0f}) leaves the figure " \
            f"({fig['left']:.0f}..{fig['right']:.0f})"
        assert label["left"] >= fig["left"] - SLACK, f"{moment}: {where}. {app.explain()}"
        assert label["right"] <= fig["right"] + SLACK, f"{moment}: {where}. {app.explain()}"
        # About 100 characters wide at most (a line of token text, then the node's key), a few lines tall.
        size = f"{label['width']:.0f} x {label['height']:.0f} px"
        assert label["width"] <= 800, f"{moment}: hover label {size}. {app.explain()}"
        assert label["height"] <= 300, f"{moment}: hover label {size}. {app.explain()}"
        assert not RAW_CONTROLS & set(label["text"]), f"{moment}: raw control characters in the hover label"

    # Click the node of the override (after the long token): the selection shows its path wrapped inside the
    # window, the override as a symbol; the candidates' title (the path's end) has no raw control either.
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()
    target = app.page.evaluate(POINT_WITH, [".explorer-tree", "evil-override</b>"])
    assert target is not None, f"no tree node of the override token. {app.explain()}"
    before = app.page.locator(".explorer-selection").inner_text()
    app.page.mouse.click(target["x"], target["y"])
    app.wait(f"the selection to show node {target['node']}",
             "([before]) => { const s = document.querySelector('.explorer-selection');"
             " return !!s && s.textContent.trim() !== '' && s.textContent !== before; }", ECHO_TIMEOUT, [before])
    app.wait("the details figure to show the node's candidates",
             f"() => /^Candidates of/.test(({DETAILS_TITLE})())", ECHO_TIMEOUT)
    app.page.wait_for_timeout(300)
    app.shot("after-click")
    selection = app.page.locator(".explorer-selection").inner_text()
    assert "Pneumono" in selection, f"the selection does not show the path: {selection!r}"
    assert "\u27e8U+202E\u27e9evil-override" in selection, f"the override is not a symbol: {selection!r}"
    assert not RAW_CONTROLS & set(selection), "raw control or bidi characters in the selection"
    title = app.page.evaluate(DETAILS_TITLE)
    assert not RAW_CONTROLS & set(title), f"raw control or bidi characters in the candidates' title: {title!r}"
    options = app.page.locator(".explorer-force-token select option").all_inner_texts()
    assert options, f"no token to force is offered. {app.explain()}"
    assert not RAW_CONTROLS & set("".join(options)), f"raw controls in the force choices: {options!r}"
    _no_injection(app, "after the click")
    _no_overflow(app, "after the click")

    # Force the long token at the root: a branch panel named after it (header, tree title, summary) that still
    # fits the page.
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()  # the full-page shot may have scrolled
    root = app.page.evaluate(POINT_WITH, [".explorer-tree", "\u00b7 root \u00b7"])
    assert root is not None, f"no root node in the tree. {app.explain()}"
    app.page.mouse.click(root["x"], root["y"])
    app.wait("the root's candidates to be offered",
             "() => [...document.querySelectorAll('.explorer-force-token select option')]"
             ".some(o => o.textContent.includes('Pneumono'))", ECHO_TIMEOUT)
    app.wait("the details figure to show the root's candidates",
             f"() => /^Candidates of {root['node']} /.test(({DETAILS_TITLE})())", ECHO_TIMEOUT)
    app.page.wait_for_timeout(300)
    app.shot("root-candidates")
    plot = app.page.evaluate(DETAILS_PLOT_AREA)
    assert plot["w"] >= 0.5 * plot["width"], f"the candidates' labels squeeze their plot: {plot}. {app.explain()}"
    pick = app.page.evaluate("() => [...document.querySelectorAll('.explorer-force-token select option')]"
                             ".findIndex(o => o.textContent.includes('Pneumono'))")
    select = app.page.locator(".explorer-force-token select")
    if select.evaluate("s => s.selectedIndex") != pick:
        since = len(app.seen.echoes)
        select.select_option(index=pick)
        app.wait_echo("the forced token", pick, since)
    app.page.evaluate(STATUS_WATCH)
    app.page.locator("button.explorer-force, .explorer-force button").first.click()
    app.wait("the branch to be decoded", "() => document.querySelectorAll('.explorer-panel').length === 3"
             " && window.__explorerStatusChanges > 0"
             " && /^done/.test(document.querySelector('.explorer-status').textContent.trim())", RUN_TIMEOUT)
    app.wait("the tree to show three panels",
             "(sel) => document.querySelectorAll(sel + ' .cartesianlayer > .subplot').length >= 3", RUN_TIMEOUT,
             ".explorer-tree")
    app.page.wait_for_timeout(300)
    app.shot("after-force")
    branch = app.page.locator(".explorer-panel").filter(has_text="\u21b3").first
    header = branch.locator("b").first.inner_text()
    assert "Pneumono" in header, f"the branch panel is not named after its token: {header!r}. {app.explain()}"
    # The branch is grafted onto its source: its tree starts after the forced token (1 token generated), and its
    # result's text starts with that token.
    depths = app.page.evaluate(FIRST_DEPTHS, ".explorer-tree")
    forked = {k: v for k, v in depths.items() if "\u21b3" in k}
    assert list(forked.values()) == [1], f"the branch's tree does not start at its fork: {depths}. {app.explain()}"
    first = branch.locator(".explorer-unc .explorer-token").first.get_attribute("title") or ""
    assert first.startswith("#0 Pneumono"), f"the branch's text does not start with the forced token: {first!r}"
    _no_injection(app, "after forcing the long token")
    _no_overflow(app, "after forcing the long token")
    check_clean(app)
