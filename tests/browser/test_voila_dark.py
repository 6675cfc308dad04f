"""The app served by Voila in its dark theme (``--theme=dark``, JupyterLab's dark CSS): the figures and the helper
text follow the page, and the notebook's "run the cell" line stays out of the web app. Screenshot:
``tests/out/voila-dark-*.png``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_harness import LOAD_TIMEOUT, RUN_READY, AppPage, VoilaServer, check_clean, new_context, watch
from theme_checks import check_theme

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def voila_dark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoilaServer]:
    server = VoilaServer(tmp_path_factory.mktemp("voila-dark-state"), model="tiny-random", theme="dark")
    with server.running():
        yield server


def test_voila_dark_theme(voila_dark: VoilaServer, browser: Any) -> None:
    context = new_context(browser, width=1280, height=800)
    page = context.new_page()
    app = AppPage(page, watch(page), voila_dark, "voila-dark")
    try:
        page.goto(voila_dark.url, timeout=LOAD_TIMEOUT * 1000, wait_until="domcontentloaded")
        app.wait("the Run button (.explorer-run) to be usable", RUN_READY, LOAD_TIMEOUT)
        assert "Run the cell below" not in page.locator("body").inner_text(), "a notebook-only cell in the web app"
        app.run_panels("The secret of good bread is", ("beam", "diverse"))
        app.click_node(app.tree_summary()["titles"][0])
        check_theme(app, "dark")
        app.page.locator(".explorer-tree").scroll_into_view_if_needed()
        app.shot("1280x800", window=True)
        app.shot("page")
        check_clean(app)
    finally:
        context.close()
