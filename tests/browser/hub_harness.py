"""JupyterHub as `make hub` starts it (docs/deploy/jupyterhub_config.py), in a temporary state folder on free ports,
with a test service token; and a student's browser session. Shared by tests/browser/test_hub.py and
benchmarks/hub_load_test.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from browser_harness import ROOT, free_port, log_tail, state_env

from explorer.serve.hub import make_users
from explorer.serve.memlimit import MemoryCgroup, cgroup_parent, safe_name

PROXY = ROOT / ".state" / "hub" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
CONFIG = ROOT / "docs" / "deploy" / "jupyterhub_config.py"
#: The test's own config: `make hub`'s, plus a service whose token may manage and reach every student's server.
TEST_CONFIG = """
exec(compile(open({config!r}).read(), {config!r}, "exec"), {{**globals(), "__file__": {config!r}}})
c = get_config()  # noqa: F821
c.JupyterHub.services.append({{"name": "hub-test", "api_token": {token!r}}})
c.JupyterHub.load_roles.append({{"name": "hub-test", "services": ["hub-test"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"]}})
"""


class Hub:
    """``jupyterhub`` on free loopback ports with users ``names`` (their passwords in ``passwords``)."""

    def __init__(self, state: Path, names: list[str], *, model: str | None = "tiny-random", mem_limit: str = "2G"):
        if not PROXY.exists():
            raise FileNotFoundError(f"{PROXY} is missing: `make test` installs it (npm ci from .ci/lock/npm)")
        self.state = state
        self.passwords = make_users(state, names)
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mem_limit = mem_limit
        config = state / "test_config.py"
        config.write_text(TEST_CONFIG.format(config=str(CONFIG), token=self.token))
        env = state_env(state / "jupyter", model)
        env.update(HUB_STATE=str(state), HUB_PORT=str(self.port), HUB_API_PORT=str(free_port()),
                   HUB_PROXY_API_PORT=str(free_port()), HUB_PROXY=str(PROXY), HUB_MEM_LIMIT=mem_limit)  # fmt: skip
        self.log_path = state / "jupyterhub.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyterhub"), "-f", str(config)],
                                         cwd=state, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def wait_ready(self, timeout: float = 120.0) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.api("GET", "/hub/api/")[0] == 200:
                    return time.perf_counter() - start
            time.sleep(0.3)
        raise TimeoutError(f"jupyterhub did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``(status, JSON)`` of a request with the test service's token (hub API or a student's server API)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Authorization": f"token {self.token}"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                return int(response.status), json.loads(raw) if raw.strip() else None
        except urllib.error.HTTPError as error:
            return int(error.code), None

    def cgroup(self, name: str) -> MemoryCgroup | None:
        parent = cgroup_parent()
        if parent is None:
            return None
        group = MemoryCgroup(parent[0] / safe_name(name), parent[1])
        return group if group.path.exists() else None

    def execute(self, user: str, kernel_id: str, code: str, timeout: float = 120.0) -> str:
        """Run ``code`` in a kernel of ``user``'s server over its websocket: the reply's status, or ``"gone"`` when
        the kernel died (or restarted) before replying."""
        url = f"ws://127.0.0.1:{self.port}/user/{user}/api/kernels/{kernel_id}/channels"
        with ThreadPoolExecutor(max_workers=1) as thread:  # its own event loop: Playwright's runs in this thread
            return thread.submit(lambda: asyncio.run(_execute(url, self.token, code, timeout))).result()

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM (the hub stops every student's server), then whatever is left in their cgroups."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for name in self.passwords:
            group = self.cgroup(name)
            if group is not None:
                group.remove()


async def _execute(url: str, token: str, code: str, timeout: float) -> str:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    socket = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "hub-test", "session": session,
              "version": "5.3", "date": ""}  # fmt: skip
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    await socket.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                                           "channel": "shell", "buffers": []}))  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(socket.read_message(), timeout=max(0.1, deadline - time.monotonic()))
            if raw is None:
                return "gone"
            msg = json.loads(raw)
            kind = msg.get("header", {}).get("msg_type")
            if kind == "status" and msg.get("content", {}).get("execution_state") in ("restarting", "dead"):
                return "gone"
            if kind == "execute_reply" and msg.get("parent_header", {}).get("msg_id") == msg_id:
                return str(msg["content"]["status"])
    except TimeoutError:
        return "timeout"
    finally:
        socket.close()
    return "timeout"


def log_in(page: Any, hub: Hub, name: str, timeout: float = 240.0) -> float:
    """Log ``name`` in on ``page`` and wait until their server is up (JupyterLab's URL); seconds it took."""
    start = time.perf_counter()
    page.goto(f"{hub.url}/hub/login", wait_until="domcontentloaded")
    page.fill("#username_input", name)
    page.fill("#password_input", hub.passwords[name])
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{name}/lab**", timeout=timeout * 1000)
    return time.perf_counter() - start
