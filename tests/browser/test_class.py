"""A page request cannot exhaust the machine: `make app`'s kernel cap and its culling of kernels whose page has gone.

One Voila server as `make app` starts it (pre-heated pool, kernels forked from the warm process, the cap), on
tiny-random, with a cap of 3 kernels, a pool of 1 and short culling times (5 s without a page, checked every
second) so that the test takes a minute; `make app`'s own times (30 s, every 10 s) are checked apart.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from browser_harness import (
    LOAD_TIMEOUT,
    RUN_READY,
    AppPage,
    VoilaServer,
    http_get,
    make_app_settings,
    new_context,
    wait_until,
    watch,
)

from explorer.serve.voila import ClassKernelManager

pytestmark = pytest.mark.browser

CAP, POOL, GONE, INTERVAL = 3, 1, 5.0, 1
KERNEL_ID = r"/api/kernels/([0-9a-f-]{36})/channels"


@pytest.fixture(scope="module")
def class_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoilaServer]:
    server = VoilaServer(tmp_path_factory.mktemp("voila-class"), model="tiny-random", extra_args=(
        f"--pool_size={POOL}", f"--ClassKernelManager.max_kernels={CAP}",
        f"--ClassKernelManager.page_gone_timeout={GONE}", f"--ClassKernelManager.cull_interval={INTERVAL}",
    ))  # fmt: skip
    with server.running():
        yield server


def kernels(server: VoilaServer) -> set[str]:
    """Ids of the kernels alive now."""
    return set(server.kernel_processes())


def wait_for(what: str, check: Any, timeout: float, server: VoilaServer) -> float:
    return wait_until(what, check, timeout, explain=lambda: f"log:\n{server.log_tail(30)}")


def get(url: str) -> tuple[int, str]:
    return http_get(url, LOAD_TIMEOUT)


def test_make_app_culls_a_gone_page_within_a_minute_and_caps_kernels() -> None:
    args, paths = make_app_settings()
    assert "--VoilaConfiguration.multi_kernel_manager_class=explorer.serve.voila.ClassKernelManager" in args
    assert "--preheat_kernel=True" in args
    assert any(p.endswith("explorer/serve/jupyter") for p in paths)  # the forking kernel spec
    manager = ClassKernelManager()
    assert manager.page_gone_timeout + manager.cull_interval <= 60
    assert manager.cap >= 1


def test_thirty_quick_requests_leave_at_most_the_cap(class_app: VoilaServer) -> None:
    wait_for("the pool to fill", lambda: len(kernels(class_app)) == POOL, 180, class_app)
    most = 0

    def sample() -> None:
        nonlocal most
        most = max(most, len(kernels(class_app)))

    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = pool.map(get, [class_app.url] * 30)
        deadline = time.perf_counter() + 200
        results: list[tuple[int, str]] = []
        iterator = iter(answers)
        while len(results) < 30 and time.perf_counter() < deadline:
            sample()
            results.append(next(iterator))
    sample()
    codes = [code for code, _ in results]
    assert most <= CAP, f"{most} kernels at once with a cap of {CAP}"
    assert codes.count(200) <= CAP
    assert codes.count(200) >= 1
    assert set(codes) <= {200, 503}
    full = [body for code, body in results if code == 503]
    assert len(full) >= 30 - CAP
    assert all("The class is full" in body and 'http-equiv="refresh" content="60"' in body for body in full)
    # none of those requests opened its page: their kernels are culled, and the pool fills again
    waited = wait_for("the kernels of pages that never opened to go", lambda: len(kernels(class_app)) <= POOL,
                      GONE + 4 * INTERVAL + 60, class_app)  # fmt: skip
    assert waited < GONE + 60


def test_closing_a_tab_frees_its_kernel_and_an_open_tab_keeps_it(class_app: VoilaServer, browser: Any) -> None:
    import re

    wait_for("the pool to fill", lambda: len(kernels(class_app)) == POOL and len(kernels(class_app)) <= CAP,
             180, class_app)  # fmt: skip
    pages: list[tuple[Any, Any, str]] = []
    contexts: list[Any] = []
    try:  # whatever happens, the pages close: a page left open would hold a seat for the tests after this one
        for name in ("closed", "kept"):
            context = new_context(browser)
            contexts.append(context)
            page = context.new_page()
            seen = watch(page)
            ids: list[str] = []
            page.on("websocket", lambda ws, ids=ids: ids.extend(re.findall(KERNEL_ID, ws.url)))
            app = AppPage(page, seen, class_app, f"class-{name}")
            page.goto(class_app.url, timeout=LOAD_TIMEOUT * 1000, wait_until="domcontentloaded")
            app.wait("the Run button", RUN_READY, LOAD_TIMEOUT)
            wait_for("the page's kernel websocket", lambda ids=ids: bool(ids), 30, class_app)
            pages.append((context, page, ids[0]))
        (closed_context, closed_page, closed_id), (_kept_context, kept_page, kept_id) = pages
        assert {closed_id, kept_id} <= kernels(class_app)
        closed_page.close(run_before_unload=False)  # as a sleeping laptop or a lost network: no goodbye
        closed_context.close()
        took = wait_for("the closed tab's kernel to go", lambda: closed_id not in kernels(class_app),
                        GONE + 4 * INTERVAL + 30, class_app)  # fmt: skip
        assert took <= GONE + 4 * INTERVAL + 30
        kept_page.wait_for_timeout((GONE + 3 * INTERVAL) * 1000)  # well past the timeout: the open tab keeps it
        assert kept_id in kernels(class_app)
        assert kept_page.evaluate(RUN_READY)
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):
                context.close()


def test_the_full_page_reads_well(class_app: VoilaServer, browser: Any, tmp_path: Path) -> None:
    from browser_harness import OUT

    code, body = 0, ""
    wait_for("the pool to fill", lambda: len(kernels(class_app)) == POOL, 180, class_app)
    taken = [get(class_app.url) for _ in range(CAP)]  # the pool's kernel, then new ones, until the class is full
    assert [c for c, _ in taken].count(200) == CAP
    code, body = get(class_app.url)
    assert code == 503
    context = new_context(browser, width=1280, height=800)
    try:
        page = context.new_page()
        page.set_content(body)
        OUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUT / "class-full.png"))
        assert page.locator("h1").inner_text() == "The class is full"
    finally:
        context.close()
