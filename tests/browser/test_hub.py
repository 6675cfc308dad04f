"""JupyterHub as `make hub` starts it: two students log in, each gets their own server (a process, a folder, a memory
cgroup) and runs the app in it, isolated from the other; a student over the memory limit is stopped, the other is
not. tiny-random stands in for SmolLM2 (the model does not matter here; the 20-student load test uses SmolLM2)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from browser_harness import LOAD_TIMEOUT, RUN_READY, AppPage, check_clean, new_context, watch
from hub_harness import Hub, log_in

import explorer
from explorer.figures._style import esc
from explorer.serve.assets import asset_name

pytestmark = pytest.mark.browser

STUDENTS = {"alice": "The secret to a good loaf of bread is", "bob": "Once upon a time, a fox"}
TOKENS = 6
MEM_LIMIT = "1536M"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = Hub(tmp_path_factory.mktemp("hub"), list(STUDENTS), mem_limit=MEM_LIMIT)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def pages(hub: Hub, browser: Any) -> Iterator[dict[str, AppPage]]:
    """Each student logged in (their server started) and on the app, in their own browser context."""
    opened: dict[str, AppPage] = {}
    contexts = []
    try:
        for name in STUDENTS:
            context = new_context(browser)
            contexts.append(context)
            page = context.new_page()
            opened[name] = AppPage(page, watch(page), hub, f"hub-{name}")  # type: ignore[arg-type]
            log_in(page, hub, name)
        for name, app in opened.items():
            app.page.goto(f"{hub.url}/user/{name}/voila/render/app.ipynb", timeout=LOAD_TIMEOUT * 1000,
                          wait_until="domcontentloaded")  # fmt: skip
            app.wait("the app's Run button", RUN_READY, LOAD_TIMEOUT)
        yield opened
    finally:
        for context in contexts:
            context.close()


def _best_text(app: AppPage) -> str:
    cells = app.page.locator("table.explorer-summary tbody tr td:last-child")
    return str(cells.first.get_attribute("title") or "")


def _expected(prompt: str) -> str:
    trace = explorer.decode(explorer.load_model("tiny-random"), prompt, strategy="greedy", max_new_tokens=TOKENS)
    return html.unescape(esc(trace.results[0].text, quote=True))  # as the summary's title attribute reads


def _run(app: AppPage, prompt: str) -> str:
    app.type_prompt(prompt)
    app.fill(".explorer-max-new-tokens input", str(TOKENS), TOKENS, "max new tokens")
    app.ensure_panels(1)
    app.set_strategy(0, "greedy")
    status = app.click_run()
    assert status.startswith("done"), app.explain()
    return _best_text(app)


def test_two_students_each_run_the_app_in_their_own_server(hub: Hub, pages: dict[str, AppPage]) -> None:
    for name, prompt in STUDENTS.items():
        assert _run(pages[name], prompt) == _expected(prompt)
        check_clean(pages[name])
        # The trees are drawn: their widget took plotly's module, which the page's head had imported (once).
        assert pages[name].tree_summary()["traces"] > 0, pages[name].explain()
        modules = pages[name].seen.plotly_modules
        assert [status for _url, status in modules] == [200], modules
        assert f"/user/{name}/voila/templates/explorer/static/{asset_name()}?v=" in modules[0][0], modules
    assert _expected(STUDENTS["alice"]) != _expected(STUDENTS["bob"])
    servers = {}
    for name in STUDENTS:
        status, model = hub.api("GET", f"/hub/api/users/{name}")
        assert status == 200
        assert model["servers"][""]["ready"]
        home = hub.state / "users" / name
        assert sorted(p.name for p in home.glob("*.ipynb"))[:2] == ["01_quickstart.ipynb", "02_greedy_vs_beam.ipynb"]
        group = hub.cgroup(name)
        if group is not None:  # where cgroups can be made: the server and its kernels are in the student's own
            assert group.limit() == 1536 * 2**20
            members = [psutil.Process(pid) for pid in group.pids()]
            assert any("jupyterhub-singleuser" in " ".join(p.cmdline()) for p in members)
            assert any("ipykernel" in " ".join(p.cmdline()) for p in members)  # the app's kernel
            assert {p.cwd() for p in members} == {str(home)}
            servers[name] = members
    if servers:
        assert not {p.pid for p in servers["alice"]} & {p.pid for p in servers["bob"]}
    ports = {name: _server_ports(hub.state / "users" / name) for name in STUDENTS}
    assert all(len(found) == 1 and found <= set(range(20000, 30000)) for found in ports.values()), ports
    assert ports["alice"] != ports["bob"]  # each its own (ClassSpawner.port_range), not JupyterHub's random_port


def _server_ports(home: Path) -> set[int]:
    """The ports the student's Jupyter server (the one process started in their folder) listens on."""
    servers = [p for p in psutil.process_iter(["cmdline", "cwd"]) if p.info["cwd"] == str(home)
               and "jupyterhub-singleuser" in " ".join(p.info["cmdline"] or [])]  # fmt: skip
    return {c.laddr.port for p in servers for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def test_a_student_cannot_reach_another_students_server(hub: Hub, pages: dict[str, AppPage]) -> None:
    bob = pages["bob"].page
    response = bob.request.get(f"{hub.url}/user/alice/api/contents", max_redirects=20)
    assert response.status == 403 or not response.url.startswith(f"{hub.url}/user/alice/")
    page = bob.context.new_page()
    page.goto(f"{hub.url}/user/alice/lab", wait_until="domcontentloaded")
    assert not re.search(r"/user/alice/lab", page.url) or "403" in page.content()
    page.close()


def test_a_student_over_the_memory_limit_is_stopped_and_the_other_is_not(hub: Hub, pages: dict[str, AppPage]) -> None:
    group = hub.cgroup("alice")
    if group is None:
        pytest.skip("this machine does not let the hub make memory cgroups: mem_limit is not enforced here")
    status, kernel = hub.api("POST", "/user/alice/api/kernels", {"name": "python3"})
    assert status == 201
    before = group.oom_kills()
    outcome = hub.execute("alice", kernel["id"], "hog = bytearray(3 * 2**30)")  # twice her limit, touched
    assert outcome in ("gone", "error")
    assert group.oom_kills() > before
    assert hub.api("GET", "/hub/api/users/alice")[1]["servers"][""]["ready"]  # her server itself survived
    bob_group = hub.cgroup("bob")
    assert bob_group is None or bob_group.oom_kills() == 0
    assert _run(pages["bob"], STUDENTS["alice"]) == _expected(STUDENTS["alice"])  # bob's app still works
