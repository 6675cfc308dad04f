"""The explorer in a real browser: Voila serves ``notebooks/app.ipynb`` (tiny-random), headless Chromium clicks.

What a user does, checked through the DOM only (the app's stable CSS classes): type a prompt, set two panels
(beam and diverse), Run, see both trees and both result tables; click a tree node and see its details; give a
bad parameter and see an inline message, never a traceback. The page must need nothing from other hosts and
raise no errors of its own. Screenshots land in ``tests/out/``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_harness import (
    DETAILS_FINGERPRINT,
    ECHO_TIMEOUT,
    LOAD_TIMEOUT,
    NODE_POSITION,
    RUN_READY,
    RUN_TIMEOUT,
    TREE_FITTED,
    AppPage,
    VoilaServer,
    check_clean,
    new_context,
    slug,
    watch,
)
from theme_checks import check_theme

from explorer.serve.assets import asset_name

pytestmark = pytest.mark.browser

PROMPT = "The secret of good bread is"


def test_two_panels_run_and_draw_their_trees(app_page: AppPage) -> None:
    app = app_page
    # Loading the page brought every widget's state over the websocket, but not plotly's 5 MB module: that is a
    # file (explorer.serve.assets). Measured: 2.1 MB, against 7.2 MB with the module in the figure widget's state.
    loaded = app.seen.ws_bytes_received
    assert loaded < 4_000_000, f"{loaded / 1e6:.1f} MB over the websocket to load the page: plotly's module in it?"
    app.wait("the tree figure to render", "() => !!document.querySelector('.explorer-tree .main-svg')",
             ECHO_TIMEOUT)
    app.shot("loaded")
    assert "Run the cell below" not in app.page.locator("body").inner_text(), "a notebook-only cell in the web app"
    app.run_panels(PROMPT, ("beam", "diverse"))
    app.shot("after-run")
    check_theme(app, "light")

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
    node = app.click_node(key)
    app.wait("the details figure to change", f"() => ({DETAILS_FINGERPRINT})() !== {before_details!r}",
             ECHO_TIMEOUT)
    app.shot("after-click")
    assert node in app.page.locator(".explorer-selection").inner_text(), app.explain()
    check_clean(app)

    # Two plotly widgets (trees, details) on the page: plotly's module came once, as a file, imported by the page's
    # head (the template's preload) before Voila sent the widgets, which took that import (explorer.serve.assets).
    modules = app.seen.plotly_modules
    assert [status for _url, status in modules] == [200], f"plotly's module requests: {modules}. {app.explain()}"
    assert f"/voila/templates/explorer/static/{asset_name()}?v=" in modules[0][0], modules
    assert app.page.evaluate("(name) => name in (globalThis.__explorerPlotlyWidgets || {})", asset_name())


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


def test_assisted_decoding_beside_greedy_shows_its_rounds(app_page: AppPage) -> None:
    """An early-exit draft beside plain greedy: the same text, and the details show the speculation view."""
    app = app_page
    app.type_prompt(PROMPT)
    app.ensure_panels(2)
    app.set_strategy(0, "greedy")
    app.set_strategy(1, "assisted")
    app.set_knob(1, "assistant-early-exit", "1", text=True)
    app.set_knob(1, "num-assistant-tokens", "4")
    status = app.click_run()
    assert status.startswith("done"), f"the run did not finish: {status!r}. {app.explain()}"
    app.wait("the speculation view in the details",
             """() => { const r = document.querySelector('.explorer-details');
                        const t = r && r.querySelector('.gtitle');
                        return !!t && /assistant_early_exit: \\d+ target forwards for \\d+ tokens/.test(t.textContent)
                          && r.querySelectorAll('.scatterlayer .trace path.point').length > 0; }""",
             ECHO_TIMEOUT)
    texts = [app.panel(i).locator(".explorer-results tr").all_inner_texts()[1:] for i in range(2)]
    assert texts[0], f"no result rows. {app.explain()}"
    assert texts[0] == texts[1], f"assisted decoding's text is greedy's: {texts}. {app.explain()}"
    for width, height in ((1280, 800), (1920, 1080)):
        app.page.set_viewport_size({"width": width, "height": height})
        app.page.locator(".explorer-details").scroll_into_view_if_needed()
        app.shot(f"speculation-{width}x{height}")
    check_clean(app)


@pytest.fixture(scope="module")
def voila_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoilaServer]:
    """Voila serving the app on its default model (SmolLM2: ``DECODING_EXPLORER_MODEL`` unset)."""
    server = VoilaServer(tmp_path_factory.mktemp("voila-default"), model=None)
    with server.running():
        yield server


@pytest.fixture
def default_page(request: pytest.FixtureRequest, voila_default: VoilaServer, browser: Any) -> Iterator[AppPage]:
    """A page on the app on the default model, loaded until Run is usable."""
    context = new_context(browser)
    page = context.new_page()
    app = AppPage(page, watch(page), voila_default, slug(request.node.name.removeprefix("test_")))
    start = time.perf_counter()
    try:
        page.goto(voila_default.url, timeout=LOAD_TIMEOUT * 1000, wait_until="domcontentloaded")
        app.wait("the Run button (.explorer-run) to be usable", RUN_READY, LOAD_TIMEOUT)
        app.loaded_in = time.perf_counter() - start
        yield app
    finally:
        context.close()


#: JS: what a shown figure of the inside views draws: its title, trace types and metas, and its size (null: none).
INSIDE_FIGURE = """(cls) => {
  const root = document.querySelector('.' + cls);
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  if (!gd || !gd.data || !root.querySelector('.main-svg')) return null;
  const box = root.getBoundingClientRect();
  if (!box.width || !(gd.layout.title && gd.layout.title.text)) return null;  // hidden, or its placeholder
  return {title: (gd.layout.title && gd.layout.title.text) || '', metas: gd.data.map(t => t.meta || t.type),
          width: box.width, height: box.height,
          star: (gd.data.find(t => t.meta === 'chosen') || {}).y || null,
          columns: ((gd.data.find(t => t.type === 'heatmap') || {}).x || []).length};
}"""


@pytest.mark.slow
def test_dola_and_contrastive_beside_greedy_show_their_figures(default_page: AppPage) -> None:
    """Greedy, DoLa and contrastive search on SmolLM2: DoLa's layer choice and its contrast at a step, contrastive
    search's candidates, drawn in the details; a click on a node adds its logit lens. Screenshots at 1280x800 and
    1920x1080 (``$EXPLORER_INSIDE_SHOTS``: copied there too)."""
    app = default_page
    app.type_prompt("The capital of France is")
    app.fill(".explorer-max-new-tokens input", "8", 8, "max new tokens")
    app.ensure_panels(3)
    for i, strategy in enumerate(("greedy", "dola", "contrastive")):
        app.set_strategy(i, strategy)
    status = app.click_run(RUN_TIMEOUT)
    assert status.startswith("done: 3 panels"), f"the run did not finish: {status!r}. {app.explain()}"
    app.wait("three panels' trees to be drawn",
             """() => { const r = document.querySelector('.explorer-tree');
                        const plots = r ? [...r.querySelectorAll('.cartesianlayer > .subplot')] : [];
                        return plots.length >= 3
                          && plots.every(s => s.querySelector('.scatterlayer .trace path.point')); }""",
             RUN_TIMEOUT)
    for cls in ("explorer-dola-layers", "explorer-dola-contrast", "explorer-contrastive"):
        app.wait(f"the {cls} figure to be drawn", f"() => !!({INSIDE_FIGURE})({cls!r})", ECHO_TIMEOUT)
    app.page.locator(".explorer-dola-layers").scroll_into_view_if_needed()
    layers = app.page.evaluate(INSIDE_FIGURE, "explorer-dola-layers")
    assert "DoLa's layer choice" in layers["title"], layers
    assert layers["metas"] == ["divergence", "chosen"], layers
    assert 1 <= layers["columns"] <= 8, f"one column per step: {layers}"
    assert layers["star"] is not None, layers
    assert len(layers["star"]) == layers["columns"], f"a star in every column: {layers}"
    assert all(15 <= int(y) <= 29 for y in layers["star"]), f"the upper half of 30 layers ('high'): {layers}"
    assert layers["width"] > 500, layers
    assert layers["height"] > 250, layers
    assert app.page.locator(".explorer-dola-layers .heatmaplayer image, .explorer-dola-layers .hm").count() > 0
    contrast = app.page.evaluate(INSIDE_FIGURE, "explorer-dola-contrast")
    assert "DoLa at step 0: final layer 30 contrasted with layer" in contrast["title"], contrast
    assert "Contrastive search at step 0" in app.page.evaluate(INSIDE_FIGURE, "explorer-contrastive")["title"]
    check_clean(app)

    # A click on the DoLa panel's node after three tokens selects step 3: its contrast, and the node's logit lens.
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()
    target = app.page.evaluate(NODE_POSITION, [".explorer-tree", "#2 dola", 3])
    assert target is not None, f"no node of #2 dola after 3 tokens. {app.explain()}"
    app.page.mouse.move(target["x"], target["y"])
    app.page.wait_for_timeout(200)  # plotly picks the hovered point first
    app.page.mouse.click(target["x"], target["y"])
    app.wait("step 3's contrast", """() => { const r = document.querySelector('.explorer-dola-contrast .gtitle');
                                            return !!r && r.textContent.includes('DoLa at step 3:'); }""",
             RUN_TIMEOUT)
    app.wait("the clicked node's logit lens", f"() => !!({INSIDE_FIGURE})('explorer-lens')", RUN_TIMEOUT)
    lens = app.page.evaluate(INSIDE_FIGURE, "explorer-lens")
    assert f"node {target['node']}" in lens["title"], lens
    assert "one forward" in app.page.locator(".explorer-lens-note").inner_text()
    assert "Contrastive search at step 3" in app.page.evaluate(INSIDE_FIGURE, "explorer-contrastive")["title"]
    errors = [t for t in app.page.locator(".explorer-error:visible").all_inner_texts() if t.strip()]
    assert not errors, f"inline errors after a good run: {errors}. {app.explain()}"
    shots = Path(os.environ["EXPLORER_INSIDE_SHOTS"]) if os.environ.get("EXPLORER_INSIDE_SHOTS") else None
    for width, height in ((1280, 800), (1920, 1080)):
        app.page.set_viewport_size({"width": width, "height": height})
        for cls, name in ((".explorer-panel", "panels"), (".explorer-dola-layers", "dola"),
                          (".explorer-contrastive", "contrastive"), (".explorer-lens", "lens")):
            app.page.locator(cls).first.scroll_into_view_if_needed()
            app.page.wait_for_timeout(300)
            path = app.shot(f"{name}-{width}x{height}", window=True)
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, shots / path.name)
    check_clean(app)


#: JS: the constraint view's banks table (its step and rows) and its progress figure (title, vertical lines).
CONSTRAINT_VIEW = """() => {
  const banks = document.querySelector('.explorer-banks');
  const root = document.querySelector('.explorer-constraint-progress');
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  if (!banks || !gd || !gd.layout || !gd.layout.title || !root.querySelector('.main-svg')) return null;
  const step = (banks.textContent.match(/Banks at step (\\d+)/) || [])[1];
  return {step: step === undefined ? null : Number(step), rows: banks.querySelectorAll('tr').length - 1,
          selected: banks.querySelectorAll('tr.explorer-bank-selected').length, title: gd.layout.title.text,
          lines: (gd.layout.shapes || []).map(s => s.x0), width: root.getBoundingClientRect().width};
}"""


@pytest.mark.slow
def test_constrained_panel_shows_its_banks_and_processors_their_pushed_down_favourites(
        default_page: AppPage) -> None:
    """Greedy with a repetition penalty and no repeated bigrams beside constrained beam search (" flour") on
    SmolLM2: the constraint view follows a clicked node's step; the candidates chart of a greedy node shows what the
    processors pushed down or masked. Screenshots at 1280x800 and 1920x1080."""
    app = default_page
    app.type_prompt("Give me a recipe for bread:")
    app.fill(".explorer-max-new-tokens input", "12", 12, "max new tokens")
    app.ensure_panels(2)
    app.set_strategy(0, "greedy")
    app.set_knob(0, "repetition-penalty", "1.3")
    app.set_knob(0, "no-repeat-ngram-size", "2")
    app.set_strategy(1, "constrained")
    box = app.panel(1).locator(".explorer-constraints textarea")
    since = len(app.seen.echoes)
    box.fill(" flour")
    box.press("Tab")
    app.wait_echo("the constraints", " flour", since)
    status = app.click_run(RUN_TIMEOUT)
    assert status.startswith("done: 2 panels"), f"the run did not finish: {status!r}. {app.explain()}"
    app.wait("the constraint view", f"() => {{ const v = ({CONSTRAINT_VIEW})(); return !!v && v.step > 3; }}",
             RUN_TIMEOUT)
    view = app.page.evaluate(CONSTRAINT_VIEW)
    assert "#2 constrained · Constraint progress" in view["title"], view
    assert set(view["lines"]) == {view["step"]}, f"the last step marked until a node is selected: {view}"
    assert view["rows"] == 4, f"one row per beam: {view}"
    check_clean(app)
    # A click on a node of the constrained panel after three tokens: that step's banks, the node's row marked.
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()
    target = app.page.evaluate(NODE_POSITION, [".explorer-tree", "#2 constrained", 3])
    assert target is not None, f"no node of #2 constrained after 3 tokens. {app.explain()}"
    app.page.mouse.move(target["x"], target["y"])
    app.page.wait_for_timeout(200)
    app.page.mouse.click(target["x"], target["y"])
    # The banks of the selected node's step (a hypothesis, or the leaf next to it the click may pick).
    app.wait("the selected node's banks",
             f"""() => {{ const v = ({CONSTRAINT_VIEW})();
                         const s = document.querySelector('.explorer-selection');
                         const m = s && s.textContent.match(/ · step (\\d+) · /);
                         return !!v && !!m && v.step === Number(m[1]) && v.selected === 1; }}""",
             RUN_TIMEOUT)
    view = app.page.evaluate(CONSTRAINT_VIEW)
    assert view["step"] in (2, 3), view
    assert set(view["lines"]) == {view["step"]}, view
    shots = {}
    for width, height in ((1280, 800), (1920, 1080)):
        app.page.set_viewport_size({"width": width, "height": height})
        app.page.locator(".explorer-constraints-box").scroll_into_view_if_needed()
        app.page.wait_for_timeout(300)
        shots[width] = app.shot(f"constraints-{width}x{height}", window=True)
    # A greedy node: the processors pushed the model's favourites down; the chart marks them.
    app.page.set_viewport_size({"width": 1280, "height": 800})
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()
    app.wait("the trees redrawn to the window's width", TREE_FITTED, ECHO_TIMEOUT, [2])  # else the nodes move
    marked = None
    for depth in range(1, 12):
        target = app.page.evaluate(NODE_POSITION, [".explorer-tree", "#1 greedy", depth])
        assert target is not None, f"no node of #1 greedy after {depth} tokens. {app.explain()}"
        app.page.locator(".explorer-tree").scroll_into_view_if_needed()
        app.page.mouse.move(target["x"], target["y"])
        app.page.wait_for_timeout(200)
        app.page.mouse.click(target["x"], target["y"])
        app.wait(f"the candidates of {target['node']}",
                 f"""() => {{ const t = document.querySelector('.explorer-details .gtitle');
                             return !!t && t.textContent.includes('Candidates of {target['node']} '); }}""",
                 RUN_TIMEOUT)
        marks = app.page.evaluate("""() => { const root = document.querySelector('.explorer-details');
                                            const r = root.classList.contains('js-plotly-plot') ? root
                                              : root.querySelector('.js-plotly-plot');
                                            return (r.data[1].text || []).filter(t => t); }""")
        if marks:
            marked = marks
            break
    assert marked, f"no greedy step shows a favourite the processors pushed down or masked. {app.explain()}"
    assert set(marked) <= {"✕", "↓"}, marked
    for width, height in ((1280, 800), (1920, 1080)):
        app.page.set_viewport_size({"width": width, "height": height})
        app.page.locator(".explorer-details").scroll_into_view_if_needed()
        app.page.wait_for_timeout(300)
        app.shot(f"pushed-down-{width}x{height}", window=True)
        app.page.locator(".explorer-tree").scroll_into_view_if_needed()
        app.page.wait_for_timeout(300)
        app.shot(f"tree-{width}x{height}", window=True)
    check_clean(app)
