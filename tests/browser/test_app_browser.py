"""The explorer in a real browser: Voila serves ``notebooks/app.ipynb`` (tiny-random), headless Chromium clicks.

What a user does, checked through the DOM only (the app's stable CSS classes): type a prompt, set two panels
(beam and diverse), Run, see both trees and both result tables; click a tree node and see its details; give a
bad parameter and see an inline message, never a traceback. The page must need nothing from other hosts and
raise no errors of its own. Screenshots land in ``tests/out/``.
"""

from __future__ import annotations

import pytest
from browser_harness import DETAILS_FINGERPRINT, ECHO_TIMEOUT, AppPage, check_clean
from theme_checks import check_theme

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

    # Two plotly widgets (trees, details) on the page: plotly's module came once, as a file.
    modules = app.seen.plotly_modules
    assert [status for _url, status in modules] == [200], f"plotly's module requests: {modules}. {app.explain()}"


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
