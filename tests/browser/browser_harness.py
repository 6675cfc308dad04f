"""A Voila server on the explorer notebook and a headless Chromium session that watches it.

Shared by the browser tests (``tests/browser/conftest.py``) and ``benchmarks/bench_app.py``. Nothing here writes
into the home directory: Jupyter, IPython and XDG state go to a per-server folder, Chromium gets a fresh profile
and its own ``HOME``; only the model cache (``$XDG_CACHE_HOME``, by default ``.state/cache``) is shared, so the
default model is not prepared again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import psutil  # a dependency of ipykernel

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "app.ipynb"
OUT = ROOT / "tests" / "out"
CHROMIUM = os.environ.get("EXPLORER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def make_variables(makefile: Path = ROOT / "Makefile") -> dict[str, str]:
    """The Makefile's simple variables (``NAME := value``, ``NAME ?= value``; continued lines joined), each with
    the ``$(NAME)`` references to other variables of the file and to ``CURDIR`` expanded."""
    text = re.sub(r"\\\n\s*", " ", makefile.read_text())
    raw = {m.group(1): m.group(2).strip() for m in re.finditer(r"^([A-Z_]+)\s*[:?]?=[ \t]*(.*)$", text, re.MULTILINE)}
    raw["CURDIR"] = str(ROOT)

    def expand(value: str, depth: int = 0) -> str:
        if depth > 10:
            return value
        return re.sub(r"\$\(([A-Z_]+)\)", lambda m: expand(raw.get(m.group(1), ""), depth + 1), value)

    return {name: expand(value) for name, value in raw.items()}


def make_app_settings(makefile: Path = ROOT / "Makefile") -> tuple[list[str], list[str]]:
    """``(APP_VOILA_ARGS, APP_JUPYTER_PATH entries)`` of ``make app``, read from the Makefile so that the tests
    serve the app exactly as ``make app`` does (its template, theme, pre-heated pool and kernel cap, and where
    Voila finds the template and the kernel spec)."""
    values = make_variables(makefile)
    if not {"APP_VOILA_ARGS", "APP_JUPYTER_PATH"} <= set(values):
        raise RuntimeError(f"{makefile} no longer defines APP_VOILA_ARGS and APP_JUPYTER_PATH for `make app`")
    paths = [p for p in values["APP_JUPYTER_PATH"].split(":") if p]
    return values["APP_VOILA_ARGS"].split(), paths


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a server's log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def with_overrides(args: list[str], overrides: tuple[str, ...]) -> list[str]:
    """``args`` with each ``--name=value`` of ``overrides`` in place of the argument of the same name (traitlets
    refuses an option given twice), the others appended."""
    new = {arg.split("=", 1)[0]: arg for arg in overrides}
    kept = [new.pop(arg.split("=", 1)[0], arg) for arg in args]
    return [*kept, *new.values()]


LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def http_get(url: str, timeout: float = 300.0) -> tuple[int, str]:
    """``(status, body)`` of a GET of ``url``, error statuses included (a 503 is an answer, not an exception)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def state_env(state: Path, model: str | None) -> dict[str, str]:
    """The environment of a Voila subprocess: its Jupyter/IPython/XDG state in ``state``, the model cache shared."""
    env = dict(os.environ)
    cache = env.get("XDG_CACHE_HOME") or str(ROOT / ".state" / "cache")
    env.update(
        {
            "XDG_CACHE_HOME": cache,
            "XDG_CONFIG_HOME": str(state / "config"),
            "XDG_DATA_HOME": str(state / "data"),
            "XDG_RUNTIME_DIR": str(state / "runtime"),
            "IPYTHONDIR": str(state / "ipython"),
            "JUPYTER_CONFIG_DIR": str(state / "jupyter" / "config"),
            "JUPYTER_DATA_DIR": str(state / "jupyter" / "data"),
            "JUPYTER_RUNTIME_DIR": str(state / "jupyter" / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "MPLCONFIGDIR": str(state / "matplotlib"),
            "HF_HOME": env.get("HF_HOME") or str(ROOT / ".state" / "huggingface"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
            # The kernel must be this interpreter (the venv's), whatever is first on PATH.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    (state / "runtime").mkdir(parents=True, exist_ok=True)
    (state / "runtime").chmod(0o700)
    _args, jupyter_path = make_app_settings()
    env["JUPYTER_PATH"] = os.pathsep.join([*jupyter_path, *filter(None, [os.environ.get("JUPYTER_PATH")])])
    if model is None:
        env.pop("DECODING_EXPLORER_MODEL", None)
    else:
        env["DECODING_EXPLORER_MODEL"] = model
    return env


class ServerProcess:
    """A Jupyter server (Voila, JupyterLab) on a free loopback port, in its own process group, its output in
    ``<state>/<name>.log``; ``stop()`` ends it and its kernels."""

    name = "server"

    def __init__(self, state: Path, model: str | None) -> None:
        self.state = state
        self.model = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = state / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.extra_env: dict[str, str] = {}  # over the state environment

    def start(self) -> None:
        raise NotImplementedError

    def _launch(self, cmd: list[str], cwd: Path) -> None:
        """Start ``cmd`` in ``cwd`` with the state environment (``state_env``), logging to ``log_path``."""
        self.state.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd, cwd=cwd, env={**state_env(self.state, self.model), **self.extra_env},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait_listening(self, timeout: float = 60.0) -> float:
        """Seconds from ``start()`` until the port accepts connections (no page is requested: that starts a kernel)."""
        assert self.proc is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return time.perf_counter() - self.started_at
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM to the server (it shuts its kernels down), then SIGKILL to whatever of the process tree is left."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        _gone, alive = psutil.wait_procs([p for p in family if p.pid != proc.pid], timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)

    @contextlib.contextmanager
    def running(self, timeout: float = 120.0) -> Iterator[Self]:
        """The server started and listening; stopped, with its kernels, on leaving (whatever happened)."""
        self.start()
        try:
            self.wait_listening(timeout=timeout)
            yield self
        finally:
            self.stop()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class VoilaServer(ServerProcess):
    """``voila <notebook>`` as ``make app`` serves it (``theme``: another ``--theme`` than the Makefile's)."""

    name = "voila"

    def __init__(self, state: Path, *, model: str | None = "tiny-random", notebook: Path | None = None,
                 theme: str | None = None, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        super().__init__(state, model)
        self.notebook = notebook or Path(os.environ.get("EXPLORER_APP_NOTEBOOK", NOTEBOOK))
        self.theme = theme
        self.extra_args = extra_args  # after make app's own: they override them
        self.extra_env = env or {}

    def start(self) -> None:
        if not self.notebook.is_file():
            raise FileNotFoundError(f"the app notebook {self.notebook} does not exist")
        theme = (f"--theme={self.theme}",) if self.theme is not None else ()
        cmd = [
            sys.executable, "-m", "voila", str(self.notebook),
            f"--port={self.port}", "--no-browser", "--Voila.ip=127.0.0.1",
            *with_overrides(make_app_settings()[0], (*theme, *self.extra_args)),
            f"--Voila.connection_dir_root={self.state / 'connections'}",  # where kernel_processes reads them
        ]  # fmt: skip
        (self.state / "connections").mkdir(parents=True, exist_ok=True)
        self._launch(cmd, self.notebook.parent)

    def kernel_processes(self) -> dict[str, int]:
        """``{kernel id: pid}`` of the server's kernels now, forked from the warm process or not: the process among
        the server's descendants that listens on the shell port of the kernel's connection file."""
        if self.proc is None:
            return {}
        ports: dict[int, str] = {}
        for path in (self.state / "connections").glob("voila_*/kernel-*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                ports[int(json.loads(path.read_text())["shell_port"])] = path.stem.removeprefix("kernel-")
        found: dict[str, int] = {}
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    for connection in process.net_connections(kind="tcp"):
                        if connection.status == psutil.CONN_LISTEN and connection.laddr.port in ports:
                            found[ports[connection.laddr.port]] = process.pid
        return found


@dataclass
class Watch:
    """What a page did: requests to other hosts (blocked), page errors, console errors and warnings (plotly.js warns
    through ``console.trace``), websocket traffic."""

    external: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    ws_bytes_received: int = 0
    ws_bytes_sent: int = 0
    ws_frames_received: int = 0
    echoes: list[dict[str, Any]] = field(default_factory=list)
    widget_models: int = 0
    #: The plotly figure edits the kernel sent, in order (``_py2js_addTraces``, ``_py2js_relayout``, ...)
    plotly_edits: list[str] = field(default_factory=list)
    #: ``(url, status)`` of every request for plotly's widget module as a file (explorer.serve.assets)
    plotly_modules: list[tuple[str, int]] = field(default_factory=list)


def kernel_message(payload: str | bytes) -> tuple[str, dict[str, Any]]:
    """``(msg_type, content)`` of a kernel websocket frame, JSON (legacy) or the binary v1 protocol; ``("", {})``."""
    try:
        if isinstance(payload, str):
            msg = json.loads(payload)
            return str(msg.get("msg_type") or msg.get("header", {}).get("msg_type", "")), msg.get("content", {})
        # v1.kernel.websocket.jupyter.org: n, n offsets (uint64 LE), then channel, header, parent, metadata, content
        count = int.from_bytes(payload[:8], "little")
        offsets = [int.from_bytes(payload[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
        parts = [payload[offsets[i] : offsets[i + 1]] for i in range(min(count - 1, 5))]
        header, content = json.loads(parts[1]), json.loads(parts[4])
        return str(header.get("msg_type", "")), content
    except (ValueError, IndexError, KeyError, AttributeError):
        return "", {}


def is_loopback(url: str) -> bool:
    """Whether a request stays on this machine (``data:``, ``blob:`` and ``about:`` URLs do)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https", "ws", "wss"}:
        return True  # data:, blob:, about:
    return (parts.hostname or "") in LOOPBACK


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium (the system's, driven by Playwright) with its own temporary profile and ``HOME``."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="explorer-chromium-") as tmp, sync_playwright() as pw:
        env = {**os.environ, "HOME": tmp, "XDG_CONFIG_HOME": f"{tmp}/.config", "XDG_CACHE_HOME": f"{tmp}/.cache",
               "XDG_DATA_HOME": f"{tmp}/.local/share"}  # fmt: skip
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, env=env)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Any, *, width: int = 1400, height: int = 1000) -> Any:
    """A fresh browser context: nothing cached, no cookies, no service workers."""
    return browser.new_context(viewport={"width": width, "height": height}, service_workers="block")


def watch(page: Any) -> Watch:
    """Record what ``page`` does; requests to non-loopback hosts are aborted (the app must work offline)."""
    seen = Watch()

    def route(route: Any) -> None:
        url = route.request.url
        if is_loopback(url):
            route.continue_()
        else:
            seen.external.append(url)
            route.abort()

    def on_console(msg: Any) -> None:
        if msg.type in ("error", "warning", "trace"):
            loc = msg.location or {}
            found = seen.console_errors if msg.type == "error" else seen.console_warnings
            found.append(f"{msg.text} [{loc.get('url', '')}:{loc.get('lineNumber', '')}]")

    def on_received(payload: str | bytes) -> None:
        seen.ws_frames_received += 1
        seen.ws_bytes_received += len(payload) if isinstance(payload, bytes) else len(payload.encode())
        msg_type, content = kernel_message(payload)
        data = content.get("data") or {}
        if msg_type == "comm_msg" and data.get("method") == "echo_update":
            seen.echoes.append(data.get("state") or {})
        elif msg_type == "comm_msg" and data.get("method") == "update_states":
            seen.widget_models += len(data.get("states") or {})  # the models that exist when the page connects
        elif msg_type == "comm_open" and content.get("target_name") == "jupyter.widget":
            seen.widget_models += 1  # a model created later
        if msg_type == "comm_msg" and data.get("method") == "update":
            seen.plotly_edits += [k for k, v in (data.get("state") or {}).items() if k.startswith("_py2js_") and v]

    def on_sent(payload: str | bytes) -> None:
        seen.ws_bytes_sent += len(payload) if isinstance(payload, bytes) else len(payload.encode())

    def on_websocket(ws: Any) -> None:
        if not is_loopback(ws.url):
            seen.external.append(ws.url)
        ws.on("framereceived", on_received)
        ws.on("framesent", on_sent)

    page.route("**/*", route)
    page.on("console", on_console)
    page.on("pageerror", lambda err: seen.page_errors.append(f"{err.name}: {err.message}"))
    page.on("websocket", on_websocket)
    page.on("response", lambda r: seen.plotly_modules.append((r.url, r.status)) if "/plotly-widget-" in r.url else None)
    return seen


#: Seconds ``peek`` waits for a page to answer.
PEEK_TIMEOUT_S = 15.0


def peek(page: Any, js: str, arg: Any = None, timeout: float = PEEK_TIMEOUT_S) -> Any:
    """``page.evaluate(js, arg)`` for a JS function ``js``, but one that gives up: Playwright's ``evaluate`` has no
    timeout, so a page that never answers (one of 20 in one browser, loading the app) would block the caller for
    good; here it raises Playwright's ``TimeoutError`` after ``timeout`` seconds instead."""
    handle = page.wait_for_function(f"(arg) => [({js})(arg)]", arg=arg, timeout=timeout * 1000, polling=100)
    try:
        return handle.json_value()[0]
    finally:
        handle.dispose()


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, *, sleep: Callable[[float], None] = time.sleep,
    explain: Callable[[], str] = str,
) -> float:
    """Poll ``check`` until it is true; seconds waited. On timeout, raise with ``explain()`` in the message.

    With a Playwright page, pass ``sleep=lambda s: page.wait_for_timeout(s * 1000)``: Playwright delivers its
    events (websocket frames, console messages) only while one of its calls runs, never during ``time.sleep``."""
    start = time.perf_counter()
    while True:
        if check():
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}. {explain()}")
        sleep(0.1)


def echoed(seen: Watch, value: object, since: int = 0) -> bool:
    """Whether the kernel echoed (since echo number ``since``) a widget state in which some key holds ``value``."""
    return any(value in echo.values() for echo in seen.echoes[since:])


def reset_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


#: Seconds: generous, the suite runs on 2 shared cores in CI. The first page ships plotly's ~5 MB bundle.
LOAD_TIMEOUT = 180.0
RUN_TIMEOUT = 180.0
ECHO_TIMEOUT = 30.0


class AppPage:
    """One loaded explorer page: the Playwright ``page``, what it did (``seen``), and helpers with clear failures."""

    def __init__(self, page: Any, seen: Watch, server: VoilaServer, name: str) -> None:
        self.page = page
        self.seen = seen
        self.server = server
        self.name = name
        self.shots: list[Path] = []
        self.loaded_in = 0.0
        for stale in OUT.glob(f"{name}-*.png"):  # screenshots of an earlier run of this test
            stale.unlink()

    def shot(self, moment: str, *, window: bool = False) -> Path:
        """A full-page screenshot ``tests/out/<test>-<moment>.png`` (``window``: only the window, as it is).

        Voila's lab template scrolls inside a box (``#rendered_cells``), not the page, so a plain full-page
        screenshot would stop at the window: the window is made as tall as that box's content for the shot. That
        relayout ends a hover, so a hover label is shot with ``window=True``."""
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{self.name}-{slug(moment)}.png"
        if window:
            self.page.screenshot(path=str(path))
            self.shots.append(path)
            return path
        size = self.page.viewport_size
        tall = int(self.page.evaluate(CONTENT_HEIGHT))
        if size and tall > size["height"]:
            self.page.set_viewport_size({"width": size["width"], "height": min(tall + 16, 8000)})
            self.page.wait_for_timeout(300)  # a relayout frame
        try:
            self.page.screenshot(path=str(path), full_page=True)
        finally:
            if size and tall > size["height"]:
                self.page.set_viewport_size(size)
        self.shots.append(path)
        return path

    def status(self) -> str:
        try:
            return str(self.page.locator(".explorer-status").first.inner_text(timeout=2000)).strip()
        except Exception as exc:  # the page may be gone or not rendered yet
            return f"(no status: {type(exc).__name__})"

    def explain(self) -> str:
        """What a failure message needs: the status line, a fresh screenshot, errors seen, Voila's log tail."""
        try:
            path = str(self.shot("failure"))
        except Exception as exc:
            path = f"(no screenshot: {exc})"
        return (
            f"Last status: {self.status()!r}. Screenshot: {path}. Page errors: {self.seen.page_errors}. "
            f"Console errors: {self.seen.console_errors}. Console warnings: {self.seen.console_warnings[:10]}. "
            f"Server log tail:\n{self.server.log_tail(15)}"
        )

    def wait(self, what: str, js_predicate: str, timeout: float, arg: Any = None) -> float:
        """Wait until ``js_predicate`` (a JS function of ``arg``) is truthy in the page; seconds waited."""
        start = time.perf_counter()
        try:
            self.page.wait_for_function(js_predicate, arg=arg, timeout=timeout * 1000, polling=100)
        except Exception as exc:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}. {self.explain()}") from exc
        return time.perf_counter() - start

    def wait_echo(self, what: str, value: object, since: int) -> None:
        """Wait until the kernel echoes a widget state holding ``value``: the kernel has it before we click."""
        try:
            wait_until(f"the kernel to echo {what}={value!r}", lambda: echoed(self.seen, value, since), ECHO_TIMEOUT,
                       sleep=lambda s: self.page.wait_for_timeout(s * 1000))  # fmt: skip
        except TimeoutError as exc:
            raise AssertionError(f"{exc} {self.explain()}") from exc

    # --- what a user does, each waiting until the kernel has it ---------------------------------------------------

    def panel(self, index: int) -> Any:
        """The ``index``-th strategy panel (``.explorer-panel``)."""
        return self.page.locator(".explorer-panel").nth(index)

    def type_prompt(self, text: str) -> None:
        """Type the prompt and wait until the kernel has it (its echo of the textarea's value)."""
        self.fill(".explorer-prompt textarea", text, text, "the prompt")

    def fill(self, selector: str, text: str, echo: object, what: str) -> None:
        """Type ``text`` into the input ``selector`` and wait for the kernel to echo ``echo`` (skipped when the
        field already holds ``text``: an unchanged value is not sent, so nothing would be echoed)."""
        field = self.page.locator(selector).first
        if field.input_value() == text:
            return
        since = len(self.seen.echoes)
        field.fill(text)
        field.press("Tab")  # widgets that sync on change (not on every key) sync now
        self.wait_echo(what, echo, since)

    def set_knob(self, index: int, name: str, value: str, *, text: bool = False) -> None:
        """Type into a panel's knob (class ``explorer-param-<name>``); ``text``: a text box (optional knobs)."""
        number = float(value)
        echo: object = value if text else int(number) if number.is_integer() else number
        field = self.panel(index).locator(f".explorer-param-{name} input")
        if field.input_value() == value:
            return
        since = len(self.seen.echoes)
        field.fill(value)
        field.press("Tab")
        self.wait_echo(f"panel {index + 1} {name}", echo, since)

    def ensure_panels(self, count: int) -> None:
        """Add panels with ``+ add panel``, or remove the last ones, until there are ``count``."""
        panels = self.page.locator(".explorer-panel")
        while panels.count() != count:
            before = panels.count()
            if before < count:
                self.page.locator("button.explorer-add-panel, .explorer-add-panel button").first.click()
            else:
                self.panel(before - 1).locator("button.explorer-remove, .explorer-remove button").first.click()
            self.wait(f"{count} panels (now {before})",
                      "(n) => document.querySelectorAll('.explorer-panel').length !== n", ECHO_TIMEOUT, before)

    def set_strategy(self, index: int, strategy: str) -> None:
        """Choose a panel's strategy and wait until the kernel redrew the panel for it (its header names it)."""
        self.panel(index).locator(".explorer-strategy select").select_option(strategy)
        self.wait(
            f"panel {index + 1} to switch to {strategy}",
            """([i, s]) => { const p = document.querySelectorAll('.explorer-panel')[i];
                              const head = p && p.querySelector('b');
                              return !!head && head.textContent.trim().endsWith(' ' + s); }""",
            ECHO_TIMEOUT,
            [index, strategy],
        )

    def click_run(self, timeout: float = RUN_TIMEOUT) -> str:
        """Click Run and wait until the status line changed and says the run is over; the final status.

        A MutationObserver notes any change of the status line from the click on, so that a run quicker than
        the polling, or ending with the same text as the last one, is still seen to start and end."""
        self.page.evaluate(STATUS_WATCH)
        self.page.locator("button.explorer-run, .explorer-run button").first.click()
        self.wait("the run to end (the status line to change and start with 'done', 'stopped' or 'error')",
                  """() => { const s = document.querySelector('.explorer-status');
                             return window.__explorerStatusChanges > 0 && !!s
                               && /^(done|stopped|error)/.test(s.textContent.trim()); }""",
                  timeout)  # fmt: skip
        return self.status()

    def run_panels(self, prompt: str, strategies: tuple[str, ...]) -> str:
        """Type ``prompt``, set one panel per strategy, Run, and wait until every panel's tree and the details
        figure (score timelines) are drawn; the final status, which must say ``done``."""
        self.type_prompt(prompt)
        self.ensure_panels(len(strategies))
        for i, strategy in enumerate(strategies):
            self.set_strategy(i, strategy)
        status = self.click_run()
        assert status.startswith("done"), f"the run did not finish: {status!r}. {self.explain()}"
        self.wait(f"{len(strategies)} panels' trees to be drawn",
                  """([sel, n]) => { const r = document.querySelector(sel);
                                     const plots = r ? [...r.querySelectorAll('.cartesianlayer > .subplot')] : [];
                                     return plots.length >= n
                                       && plots.every(s => s.querySelector('.scatterlayer .trace path.point')); }""",
                  RUN_TIMEOUT, [".explorer-tree", len(strategies)])
        # The details figure (score timelines until a node is clicked) is drawn after the run too.
        self.wait("the details figure to draw after the run",
                  """() => { const r = document.querySelector('.explorer-details');
                             return !!r && !!r.querySelector('.main-svg')
                               && r.querySelectorAll('.scatterlayer .trace').length > 0; }""",
                  RUN_TIMEOUT)
        return status

    def click_node(self, panel_key: str) -> str:
        """Click the first hypothesis node of a panel's tree and wait until the selection line names it; its key."""
        before = self.page.locator(".explorer-selection").inner_text()
        self.page.locator(".explorer-tree").scroll_into_view_if_needed()  # Voila and JupyterLab scroll inside a box
        target = self.page.evaluate(NODE_POSITION, [".explorer-tree", panel_key])
        assert target is not None, f"no clickable hypothesis node of panel {panel_key!r}. {self.explain()}"
        self.page.mouse.move(target["x"], target["y"])
        self.page.wait_for_timeout(200)  # plotly picks the hovered point first
        self.page.mouse.click(target["x"], target["y"])
        self.wait(f"the selection to show node {target['node']}",
                  """([before]) => { const s = document.querySelector('.explorer-selection');
                                     return !!s && s.textContent.trim() !== '' && s.textContent !== before; }""",
                  ECHO_TIMEOUT, [before])
        return str(target["node"])

    def tree_summary(self) -> dict[str, Any]:
        """The tree figure's traces by subplot, subplot titles and drawn markers (see ``TREE_SUMMARY``)."""
        summary = self.page.evaluate(TREE_SUMMARY, ".explorer-tree")
        assert summary is not None, f"no plotly figure in .explorer-tree. {self.explain()}"
        return dict(summary)


#: Console errors that are not ours, each with why it is tolerated. Everything else fails the test.
KNOWN_CONSOLE_NOISE: list[tuple[str, str]] = [
    # Chromium logs every aborted request as a console error; the requests themselves are checked separately
    # (``seen.external``), so the echo in the console is not counted twice.
    (r"^Failed to load resource: net::ERR_FAILED \[https?://(?!127\.0\.0\.1|localhost)", "blocked request"),
]

#: Console warnings that are not ours, each with why it is tolerated.
KNOWN_CONSOLE_WARNINGS: list[tuple[str, str]] = [
    # Webpack's module federation, as the page loads its extensions: the page's JupyterLab packages (Voila 0.5's
    # bundle, or JupyterLab's own) are older than those an extension (the widgets', plotly's) was built against. The
    # extensions load and work all the same (every browser test drives them).
    (r"^Unsatisfied version \S+ from \S+ of shared singleton module @(jupyterlab|lumino)/", "extension build versions"),
    (r"^No satisfying version \(\S+\) of shared module @(jupyterlab|lumino)/\S+ found in shared scope default",
     "extension build versions"),
    # plotly.js throttles hover events: a hover caught over a figure's subplot is handled up to 50 ms later, and when
    # a redraw (a new window width, a new run) removed that subplot in between, plotly warns and drops the hover.
    (r"^WARN: Unrecognized subplot: x\d*y\d*", "a hover over a figure redrawn under the pointer"),
]

#: Page errors that are not ours, each with why it is tolerated.
KNOWN_PAGE_ERRORS: list[tuple[str, str]] = []


def _unexpected(messages: list[str], known: list[tuple[str, str]]) -> list[str]:
    return [m for m in messages if not any(re.search(pattern, m) for pattern, _why in known)]


def check_clean(app: AppPage) -> None:
    """No request left the machine, no page error, no console error or warning of ours (a Plotly warning such as
    ``Invalid color specifier`` included), no traceback text anywhere."""
    seen = app.seen
    assert not seen.external, f"the page asked other hosts (blocked): {seen.external}"
    errors = _unexpected(seen.page_errors, KNOWN_PAGE_ERRORS)
    assert not errors, f"page errors: {errors}. {app.explain()}"
    console = _unexpected(seen.console_errors, KNOWN_CONSOLE_NOISE)
    assert not console, f"console errors: {console}. {app.explain()}"
    warnings = _unexpected(seen.console_warnings, KNOWN_CONSOLE_WARNINGS)
    assert not warnings, f"{len(warnings)} console warnings, e.g. {warnings[:5]}. {app.explain()}"
    text = app.page.locator("body").inner_text()
    assert "Traceback" not in text, f"the page shows a traceback. {app.explain()}"


#: JS: the height of the page's content, including what scrolls inside Voila's boxes.
CONTENT_HEIGHT = """() => {
  let tallest = document.documentElement.scrollHeight;
  for (const el of document.querySelectorAll('#rendered_cells, .jp-LabShell, main, body *')) {
    if (el.scrollHeight > el.clientHeight + 4 && /auto|scroll/.test(getComputedStyle(el).overflowY)) {
      tallest = Math.max(tallest, el.scrollHeight + el.getBoundingClientRect().top);
    }
  }
  return tallest;
}"""

#: JS: count changes of the status line from now on (in ``window.__explorerStatusChanges``).
STATUS_WATCH = """() => {
  if (window.__explorerStatusObserver) window.__explorerStatusObserver.disconnect();
  window.__explorerStatusChanges = 0;
  const status = document.querySelector('.explorer-status');
  window.__explorerStatusObserver = new MutationObserver(() => { window.__explorerStatusChanges += 1; });
  window.__explorerStatusObserver.observe(status, {subtree: true, childList: true, characterData: true});
}"""

#: JS: the Run button exists, is visible and enabled (the page is interactive).
RUN_READY = """() => {
  const b = document.querySelector('button.explorer-run, .explorer-run button');
  return !!b && !b.disabled && b.offsetParent !== null;
}"""

#: JS: the page position of the first clickable node (a hypothesis: customdata [panel key, "h<id>"]) of a panel, or
#: of its first hypothesis after ``depth`` tokens when a third argument is given.
NODE_POSITION = """([sel, panelKey, depth]) => {
  const root = document.querySelector(sel);
  const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
  const box = gd.getBoundingClientRect();
  for (const t of gd.data) {
    if (!t.customdata || !t.x) continue;
    for (let i = 0; i < t.x.length; i++) {
      const cd = t.customdata[i];
      if (!cd || cd[0] !== panelKey || !String(cd[1]).startsWith('h') || t.x[i] === null) continue;
      if (depth !== undefined && t.x[i] !== depth) continue;
      const xa = gd._fullLayout[(t.xaxis || 'x').replace('x', 'xaxis')];
      const ya = gd._fullLayout[(t.yaxis || 'y').replace('y', 'yaxis')];
      const px = xa._offset + xa.l2p(xa.d2l(t.x[i]));
      const py = ya._offset + ya.l2p(ya.d2l(t.y[i]));
      return {x: box.left + px, y: box.top + py, node: String(cd[1])};
    }
  }
  return null;
}"""

#: JS: a summary of the tree figure: its traces by subplot, its subplot titles, and what the SVG drew.
TREE_SUMMARY = """(sel) => {
  const root = document.querySelector(sel);
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  if (!gd || !gd.data) return null;
  const bySubplot = {};
  for (const t of gd.data) {
    const n = (t.x && t.x.length) || 0;
    const key = (t.xaxis || 'x') + (t.yaxis || 'y');
    bySubplot[key] = (bySubplot[key] || 0) + (t.customdata ? n : 0);
  }
  const drawn = {};
  for (const sp of gd.querySelectorAll('.cartesianlayer > .subplot')) {
    const id = [...sp.classList].find(c => c !== 'subplot');
    drawn[id] = sp.querySelectorAll('.scatterlayer .trace path.point, .scatterlayer .trace path.js-line').length;
  }
  const titles = [...gd.querySelectorAll('.infolayer .annotation-text, .infolayer .annotation text')]
    .map(e => e.textContent);
  return {traces: gd.data.length, nodesBySubplot: bySubplot, drawn, titles,
          gl: gd.querySelectorAll('canvas').length, layoutTitle: (gd.layout.title && gd.layout.title.text) || ''};
}"""

#: JS: a fingerprint of the details figure (what it shows changes when a node is selected).
DETAILS_FINGERPRINT = """() => {
  const root = document.querySelector('.explorer-details');
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  if (!gd || !gd.data) return '';
  return JSON.stringify([(gd.layout.title && gd.layout.title.text) || '', gd.data.map(t => [t.type, t.name,
    (t.x || []).length])]);
}"""


#: JS: the trees drawn with ``n`` panels, each with points, at the probe's (the box's) current width.
TREE_FITTED = """([n]) => {
  const root = document.querySelector('.explorer-tree');
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  const probe = document.querySelector('.explorer-width-probe');
  if (!gd || !gd._fullLayout || !probe) return false;
  const plots = [...gd.querySelectorAll('.cartesianlayer > .subplot')];
  const box = probe.getBoundingClientRect().width;
  return plots.length === n && plots.every(s => s.querySelector('.scatterlayer .trace path.point'))
    && gd._fullLayout.width <= box && gd._fullLayout.width >= box - 16;
}"""
