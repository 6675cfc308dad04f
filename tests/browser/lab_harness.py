"""JupyterLab as ``make lab`` starts it, on a copy of the app notebook in a git repository of its own, and what a user
does in it (open a notebook, run all, switch the theme, save) through its menus.

The copy sits in a fresh repository whose notebook filter is set up by the Makefile's own ``notebook-filter`` recipe,
so that a test can save the notebook and ask git whether anything is left to commit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from browser_harness import NOTEBOOK, ROOT, ServerProcess, make_variables

#: JupyterLab's settings for the tests: no "official Jupyter news?" toast, no update check (the page stays offline).
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                                     "checkForUpdates": False}}


def git(repo: Path, *args: str) -> str:
    """``git <args>`` in ``repo``; its output."""
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout


def notebook_repo(root: Path, notebook: Path = NOTEBOOK) -> Path:
    """A git repository at ``root`` holding ``notebook`` as committed, and the project's ``.gitattributes`` and
    ``.gitignore``, with the notebook filter that ``make install`` sets up (the Makefile's recipe, with this
    interpreter's nbstripout)."""
    root.mkdir(parents=True)
    for name in (".gitattributes", ".gitignore"):
        shutil.copy(ROOT / name, root / name)
    shutil.copy(notebook, root / notebook.name)
    git(root, "init", "-q")
    bin_dir = Path(sys.executable).parent
    subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "-C", str(root), "notebook-filter", f"BIN={bin_dir}"],
                   check=True, capture_output=True, text=True)
    git(root, "add", ".")
    git(root, "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "-m", "notebook")
    return root


class LabServer(ServerProcess):
    """``jupyter lab`` with the arguments of ``make lab`` (loopback, and the token JupyterLab makes itself), on
    ``root`` instead of ``notebooks/``, on a free port, its state (settings, workspaces, runtime) in ``state``."""

    name = "jupyterlab"

    def __init__(self, state: Path, root: Path, *, model: str | None = "tiny-random") -> None:
        super().__init__(state, model)
        self.root = root
        self.token = ""

    def start(self) -> None:
        settings = self.state / "jupyter" / "config" / "lab" / "user-settings"
        for name, values in LAB_SETTINGS.items():
            (settings / name).parent.mkdir(parents=True, exist_ok=True)
            (settings / name).write_text(json.dumps(values))
        cmd = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", "--no-browser", f"--ServerApp.root_dir={self.root}",
               *make_variables()["LAB_EXTENSIONS"].split(), *(["--allow-root"] if os.geteuid() == 0 else [])]
        self._launch(cmd, self.root)

    def read_token(self, timeout: float = 60.0) -> str:
        """The token JupyterLab made (from its runtime file, as ``jupyter server list`` reads it)."""
        runtime = self.state / "jupyter" / "runtime"
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for path in runtime.glob("jpserver-*.json"):
                info = json.loads(path.read_text() or "{}")
                if info.get("port") == self.port:
                    self.token = str(info.get("token", ""))
                    return self.token
            time.sleep(0.1)
        raise TimeoutError(f"no runtime file of JupyterLab in {runtime}:\n{self.log_tail()}")

    def status(self, path: str, token: str | None) -> int:
        """The HTTP status of ``GET path`` with ``token`` (``None``: without one)."""
        request = urllib.request.Request(self.url + path.lstrip("/"))
        if token is not None:
            request.add_header("Authorization", f"token {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


#: JS: JupyterLab's status bar says the notebook's kernel is idle.
KERNEL_IDLE = """() => { const bar = document.querySelector('#jp-main-statusbar');
                        return !!bar && /\\|\\s*Idle/.test(bar.innerText); }"""

#: JS: no document has unsaved changes (JupyterLab marks a tab ``jp-mod-dirty``).
SAVED = "() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')"


def open_notebook(page: Any, lab: LabServer, name: str, timeout: float) -> None:
    """Open ``name`` in JupyterLab (logging in with the token) and wait until its kernel is idle."""
    page.goto(f"{lab.url}lab/tree/{name}?token={lab.token}", wait_until="domcontentloaded", timeout=timeout * 1000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout * 1000)
    page.wait_for_function(KERNEL_IDLE, timeout=timeout * 1000, polling=200)


def scroll_to(page: Any, selector: str) -> None:
    """Scroll JupyterLab's notebook (it scrolls inside its panel) until ``selector`` is at the top."""
    page.evaluate("(sel) => document.querySelector(sel).scrollIntoView({block: 'start'})", selector)
    page.wait_for_timeout(300)  # a frame to draw what scrolled in


def menu(page: Any, top: str, command: str, label: str | None = None, submenu: str | None = None) -> None:
    """Click JupyterLab's menu ``top`` (e.g. ``"Run"``), then the item of ``command`` (its ``data-command``), in
    ``submenu`` if given, and with the text ``label`` where one command has several items (themes)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    if submenu is not None:
        page.locator(".lm-Menu-item", has_text=submenu).first.hover()
    item = page.locator(f'.lm-Menu-item[data-command="{command}"]')
    if label is not None:
        item = item.filter(has_text=label)
    item.first.click()
