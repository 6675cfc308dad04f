"""The exported page in Chromium, offline: it draws its trees and figures with the inlined plotly.js, fetches
nothing, breaks no policy, runs none of the hostile token text (``tests/browser/data/hostile.json``), fits the window
at 1280x800 and 1920x1080, and its text colouring toggles between entropy and probability without a script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from browser_harness import OUT, new_context, watch

import explorer

pytestmark = pytest.mark.browser

TABLE = Path(__file__).parent / "data" / "hostile.json"
#: A panel name that would run if it became markup.
NAME = '<img src=x onerror="window.__pwned = 9">'


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The hostile toy table's run (greedy; beam search with 4 beams returning 4) exported light and dark."""
    model = explorer.load_model(str(TABLE))
    prompt = json.loads(TABLE.read_text(encoding="utf-8"))["prompt"]
    runs = explorer.compare(model, prompt, {NAME: {"strategy": "greedy"},
                                            "beam": {"strategy": "beam", "num_beams": 4, "num_return_sequences": 4}})
    folder = tmp_path_factory.mktemp("export")
    paths = {theme: folder / f"{theme}.html" for theme in ("light", "dark")}
    for theme, path in paths.items():
        explorer.export_html(runs, path, theme=theme)
    return paths


@pytest.mark.parametrize(("theme", "width", "height"), [("light", 1280, 800), ("dark", 1920, 1080)])
def test_the_page_draws_offline_and_runs_nothing(browser: Any, exported: dict[str, Path], theme: str, width: int,
                                                 height: int) -> None:
    """Three figures drawn (score timelines and two trees, with their markers), no request, no error, no dialog, no
    horizontal scrollbar, nothing from token text run; the probability toggle swaps the coloured texts."""
    context = new_context(browser, width=width, height=height)
    page = context.new_page()
    seen = watch(page)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(exported[theme].as_uri(), wait_until="load")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 3", timeout=60_000)
        markers = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(
            (el) => el.querySelectorAll('.scatterlayer .point').length)""")
        assert all(count > 0 for count in markers), markers
        assert page.evaluate("() => window.__pwned") is None
        assert not dialogs
        assert not seen.external
        assert not seen.page_errors
        assert not seen.console_errors  # a Content-Security-Policy refusal would be one
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        assert page.locator("img, svg image, marquee").count() == 0
        page.screenshot(path=str(OUT / f"export-{theme}-{width}x{height}-top.png"))
        entropy = page.locator(".texts .explorer-unc-entropy").first
        probability = page.locator(".texts .explorer-unc-probability").first
        assert entropy.is_visible()
        assert not probability.is_visible()
        page.locator("label[for=by-probability]").click()
        assert probability.is_visible()
        assert not entropy.is_visible()
        page.locator("#figure-tree-1").scroll_into_view_if_needed()
        page.screenshot(path=str(OUT / f"export-{theme}-{width}x{height}-tree.png"))
    finally:
        context.close()
