"""plotly's widget module served as a file, so that a page loads it once, from the cache, not with every figure.

plotly's ``FigureWidget`` is an anywidget whose module (plotly.js and its widget code, about 5 MB) travels *inside
the widget's state*: every figure widget sends it over the kernel's websocket and the page evaluates it again from
a new blob. Served by Voila, that costs every page twice:

* Voila's widget manager asks the kernel for every widget's state at once and gives up after 4 s, then falls back
  to a path that can wait forever ("Loading widget..."): with 5 MB in the answer, a busy machine misses the 4 s;
* anywidget gives up on a widget whose module takes more than 2 s to initialise, and then drops every update the
  kernel sends it, for good: the figure keeps what it showed first.

``make install`` writes the module into the app's Voila template (``static/plotly-widget-<hash>.js``, next to
``index.html.j2``: ``python -m explorer.serve.assets``), which Voila serves at ``voila/templates/explorer/static/``;
in JupyterLab (``make lab``, the hub's servers) this module, as a Jupyter server extension, serves the same folder at
``decoding-explorer/static/`` and tells the server's kernels so (``DECODING_EXPLORER_ASSETS``; ``off`` there keeps
plotly's own module). A versioned URL is cached for a year. In a kernel whose page can fetch the file,
``figure_widget`` makes figure widgets whose module is a few lines that import that URL; anywhere else (a plain
``pip install``) they are plotly's own, unchanged.

Served by Voila, the page starts that import itself, as its head is read (``plotly-preload.js``, also written by
``make install``, which the app's template includes): Voila runs the app's notebook before it sends the rest of the
page, and a figure widget's module then takes what the page has already imported. On a busy machine (20 students on
one hub) importing 5 MB of JavaScript when the trees' widget is made took over 2 s: anywidget gave up on it and
every student's trees stayed "press Run" after the runs.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
from jupyter_core.paths import jupyter_path

__all__ = ["PLOTLY_BUNDLE", "PRELOAD", "QUIET_LAYOUT_UPDATES", "TEMPLATE_STATIC", "asset_name", "figure_widget",
           "loader_esm", "preload_js", "served", "write_asset"]

#: plotly's widget module (what ``FigureWidget._esm`` holds).
PLOTLY_BUNDLE = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"
#: The app's Voila template's static folder (on the ``JUPYTER_PATH`` of ``make app``, the hub and the tests).
TEMPLATE_STATIC = Path(__file__).parents[1] / "app" / "jupyter" / "voila" / "templates" / "explorer" / "static"
#: Where Voila serves that folder, relative to the page's base URL.
ROUTE = "voila/templates/explorer/static/"
#: Where the server extension serves it (JupyterLab), and the variable that tells the server's kernels.
SERVER_ROUTE = "decoding-explorer/static/"
ROUTE_ENV = "DECODING_EXPLORER_ASSETS"
_PREFIX = "plotly-widget-"
#: The module the app's template imports as the page's head is read (``preload_js``): a fixed name, so that the
#: template can name it; what it imports carries the version.
PRELOAD = "plotly-preload.js"
#: The page's imports of plotly's widget module, by file name (``preload_js`` starts them, ``loader_esm`` takes them).
_PAGE_IMPORTS = "__explorerPlotlyWidgets"


@functools.cache
def _digest() -> str:
    return hashlib.sha256(PLOTLY_BUNDLE.read_bytes()).hexdigest()[:16]


def asset_name() -> str:
    """The served file's name: it changes with plotly's module, so a cached copy is never stale."""
    return f"{_PREFIX}{_digest()}.js"


def preload_js() -> str:
    """The template's module: start importing plotly's widget module (from the same folder, versioned so that the
    browser caches it) and keep the import where ``loader_esm`` finds it. A failed import is left to the figure
    widgets' own (``loader_esm`` imports again)."""
    name = asset_name()
    return (f"// Written by `python -m explorer.serve.assets` (make install): plotly's widget module, imported as the\n"
            f"// app's page is read, before Voila sends its widgets (explorer/serve/assets.py).\n"
            f"const imports = (globalThis.{_PAGE_IMPORTS} ??= {{}});\n"
            f'imports["{name}"] ??= import("./{name}?v={_digest()}");\n'
            f'imports["{name}"].catch(() => {{}});\n')


def _write(target: Path, data: bytes) -> None:
    """``target`` holds ``data`` (written atomically; nothing if it already does)."""
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return
    partial = target.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(target)


def write_asset(folder: Path = TEMPLATE_STATIC, *, prune: bool = True) -> Path:
    """Write the module into ``folder`` (atomically; nothing if it is there) and the template's ``PRELOAD`` of it,
    and, with ``prune``, remove other versions of it (another virtualenv's plotly, e.g. ``make test-latest``'s,
    keeps its own with ``prune=False`` and leaves the preload to the lock's, unless there is none)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / asset_name()
    if not target.is_file() or target.stat().st_size != PLOTLY_BUNDLE.stat().st_size:
        _write(target, PLOTLY_BUNDLE.read_bytes())
    if prune or not (folder / PRELOAD).is_file():
        _write(folder / PRELOAD, preload_js().encode())
    for old in folder.glob(f"{_PREFIX}*") if prune else ():
        if old != target:
            old.unlink(missing_ok=True)
    return target


def served(env: Mapping[str, str] | None = None) -> str | None:
    """Where this kernel's page can import the module from (relative to the page's base URL), if anywhere: the
    server extension's route when the kernel's server runs it, else Voila's when Voila started the kernel (it sets
    ``VOILA_SERVER_URL``) and the file is in the explorer template's static folder on the Jupyter path."""
    if env is None:
        env = os.environ
    if env.get(ROUTE_ENV) == "off":  # plotly's own module, in the widget state (to compare, or to rule this out)
        return None
    name = asset_name()
    if env.get(ROUTE_ENV) and (TEMPLATE_STATIC / name).is_file():
        return env[ROUTE_ENV]
    if "VOILA_SERVER_URL" in env and any(
        (Path(folder) / name).is_file() for folder in jupyter_path("voila", "templates", "explorer", "static")
    ):
        return ROUTE
    return None


#: JS, run once per page after plotly's module is imported: a layout-only update goes to plotly.js without the flag
#: plotly's widget adds to every update (``_doNotReportToPy``, a key of the trace properties it passes, so that its
#: own event handler does not echo the update back to Python). plotly.js takes that key for a trace property it does
#: not know and recomputes and redraws every trace: a ring moved on a big tree then redrew 79,000 WebGL points
#: (1.2 s without a GPU) where the shapes alone take 0.03 s. Without the flag the update's event is echoed to Python,
#: which finds nothing changed (one small message); updates of traces keep the flag (their echo would carry the data).
QUIET_LAYOUT_UPDATES = """
const plotly = globalThis.Plotly;
if (plotly && !plotly.__explorerLayoutOnly) {
  const update = plotly.update;
  plotly.update = function (gd, data, layout, traces) {
    const keys = data ? Object.keys(data) : [];
    if (keys.length === 1 && keys[0] === "_doNotReportToPy") return update.call(this, gd, {}, layout, traces);
    return update.apply(this, arguments);
  };
  plotly.__explorerLayoutOnly = true;
}
"""


def loader_esm(route: str) -> str:
    """A module that re-exports plotly's: the one the page has imported already (``preload_js``) or is importing,
    else the file served at ``route`` (the page's base URL is in its Jupyter config, in Voila and in JupyterLab),
    layout-only updates made cheap (``QUIET_LAYOUT_UPDATES``)."""
    return f"""
const config = JSON.parse(document.getElementById("jupyter-config-data")?.textContent || "{{}}");
const base = (config.baseUrl || "/").replace(/\\/?$/, "/");
const url = new URL(`${{base}}{route}{asset_name()}?v={_digest()}`, document.baseURI).href;
const imported = globalThis.{_PAGE_IMPORTS}?.["{asset_name()}"];
const plotlyWidget = await (imported ? imported.catch(() => import(url)) : import(url));
{QUIET_LAYOUT_UPDATES}
export default plotlyWidget.default;
"""


@functools.cache
def _served_class(route: str) -> type[go.FigureWidget]:
    return type("FigureWidget", (go.FigureWidget,), {"_esm": loader_esm(route), "__module__": __name__})


def figure_widget(fig: Any) -> go.FigureWidget:
    """A ``FigureWidget`` of ``fig`` whose module comes from the served file when there is one (see above)."""
    route = served()
    return _served_class(route)(fig) if route else go.FigureWidget(fig)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Serve ``TEMPLATE_STATIC`` at ``<base>decoding-explorer/static/`` and tell the server's kernels."""
    from jupyter_server.base.handlers import FileFindHandler
    from jupyter_server.utils import url_path_join

    web_app = server_app.web_app
    route = url_path_join(web_app.settings["base_url"], SERVER_ROUTE, "(.*)")
    web_app.add_handlers(".*$", [(route, FileFindHandler, {"path": [str(TEMPLATE_STATIC)]})])
    os.environ[ROUTE_ENV] = SERVER_ROUTE  # the kernels this server starts inherit its environment
    server_app.log.info("decoding-explorer: plotly's widget module served at %s", route)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explorer.serve.assets", description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=TEMPLATE_STATIC, help="where to write it")
    parser.add_argument("--keep", action="store_true", help="keep other plotly versions' modules there")
    args = parser.parse_args(argv)
    try:
        path = write_asset(args.folder, prune=not args.keep)
    except OSError as err:
        print(f"error: cannot write plotly's widget module into {args.folder}: {err}", file=sys.stderr)
        return 2
    print(f"plotly's widget module: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
