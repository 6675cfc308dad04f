"""Browser fixtures: one Voila server on ``notebooks/app.ipynb`` (tiny-random model) and one headless Chromium.

Every test gets a fresh page (hence a fresh kernel) whose requests to other hosts are blocked and recorded,
and whose page errors, console errors and websocket traffic are watched (see ``browser_harness``). Screenshots
go to ``tests/out/`` (gitignored). ``EXPLORER_APP_NOTEBOOK`` points the fixtures at another notebook and
``EXPLORER_CHROMIUM`` at another Chromium binary.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from browser_harness import LOAD_TIMEOUT, RUN_READY, AppPage, VoilaServer, chromium, new_context, slug, watch


@pytest.fixture(scope="session")
def voila_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoilaServer]:
    """Voila serving the app with ``DECODING_EXPLORER_MODEL=tiny-random``; stopped (with its kernels) at the end."""
    server = VoilaServer(tmp_path_factory.mktemp("voila-state"), model="tiny-random")
    if not server.notebook.is_file():
        pytest.fail(f"the app notebook {server.notebook} does not exist")
    with server.running():
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium (Playwright driving the system's /usr/bin/chromium)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def app_page(request: pytest.FixtureRequest, voila_app: VoilaServer, browser: Any) -> Iterator[AppPage]:
    """A page on the app in a fresh browser context, loaded until the Run button is usable (a new kernel)."""
    context = new_context(browser)
    page = context.new_page()
    seen = watch(page)
    app = AppPage(page, seen, voila_app, slug(request.node.name.removeprefix("test_")))
    start = time.perf_counter()
    try:
        page.goto(voila_app.url, timeout=LOAD_TIMEOUT * 1000, wait_until="domcontentloaded")
        app.wait("the Run button (.explorer-run) to be usable", RUN_READY, LOAD_TIMEOUT)
        app.loaded_in = time.perf_counter() - start
        yield app
    finally:
        context.close()
