"""plotly's widget module served as a file: written once per plotly version, used only where Voila serves it, and
equal byte for byte to the module plotly ships (so the figures are plotly's own)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import plotly.graph_objects as go
import pytest

from explorer.serve import assets

ROOT = Path(__file__).resolve().parents[2]


def test_written_once_byte_for_byte_and_old_versions_removed(tmp_path: Path) -> None:
    stale = tmp_path / "plotly-widget-0000000000000000.js"
    stale.write_text("old plotly")
    mine = tmp_path / "index.html.j2"
    mine.write_text("not ours to remove")
    path = assets.write_asset(tmp_path)
    assert path.name == assets.asset_name()
    assert path.read_bytes() == assets.PLOTLY_BUNDLE.read_bytes()
    assert not stale.exists(), "another plotly's module stays served"
    assert mine.exists()
    mtime = path.stat().st_mtime_ns
    assert assets.write_asset(tmp_path) == path
    assert path.stat().st_mtime_ns == mtime, "an unchanged module was written again"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, mine.name, assets.PRELOAD]), \
        "a partial file stayed"
    stale.write_text("another virtualenv's plotly")
    assert assets.write_asset(tmp_path, prune=False) == path
    assert stale.exists(), "make test-latest's module removed the lock's"


def test_the_templates_preload_imports_this_module_once_per_page(tmp_path: Path) -> None:
    """The page imports the module from its head; the figure widgets' loader takes that import (same key)."""
    assets.write_asset(tmp_path)
    preload = (tmp_path / assets.PRELOAD).read_text()
    name = assets.asset_name()
    assert f'import("./{name}?v=' in preload, "the preload must import the file next to it, versioned"
    assert f'imports["{name}"] ??=' in preload, "a second preload in the page must not import again"
    assert f'__explorerPlotlyWidgets?.["{name}"]' in assets.loader_esm(assets.ROUTE)
    assert "catch(() => import(url))" in assets.loader_esm(assets.ROUTE), "a failed preload must not break figures"
    # make test-latest's plotly (--keep) leaves the lock's preload alone, and writes one where there is none.
    (tmp_path / assets.PRELOAD).write_text("the lock's preload")
    assets.write_asset(tmp_path, prune=False)
    assert (tmp_path / assets.PRELOAD).read_text() == "the lock's preload"
    (tmp_path / assets.PRELOAD).unlink()
    assets.write_asset(tmp_path, prune=False)
    assert (tmp_path / assets.PRELOAD).read_text() == preload


def test_the_template_starts_the_import_in_the_head_without_waiting_for_the_page() -> None:
    """Voila sends the page's body after it ran the app: a module script without ``async`` would wait for it."""
    template = (assets.TEMPLATE_STATIC.parent / "index.html.j2").read_text()
    tag = f"<script type=\"module\" async src=\"{{{{ resources.include_url('static/{assets.PRELOAD}') }}}}\"></script>"
    assert tag in template
    assert template.index(tag) > template.index("{%- block html_head_js -%}")


def test_the_name_follows_plotlys_module() -> None:
    assert assets.asset_name().startswith("plotly-widget-")
    assert assets.asset_name() != "plotly-widget-.js"
    assert len(assets.asset_name().removeprefix("plotly-widget-").removesuffix(".js")) == 16


def test_served_only_in_a_voila_kernel_that_sees_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    static = tmp_path / "voila" / "templates" / "explorer" / "static"
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.delenv("VOILA_SERVER_URL", raising=False)
    monkeypatch.delenv(assets.ROUTE_ENV, raising=False)
    assets.write_asset(static)
    assert assets.served() is None, "JupyterLab without the server extension cannot serve the template's files"
    monkeypatch.setenv("VOILA_SERVER_URL", "/")
    assert assets.served() == assets.ROUTE
    (static / assets.asset_name()).unlink()
    assert assets.served() is None, "a missing file must fall back to plotly's own module"


def test_a_server_running_the_extension_serves_it_to_its_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOILA_SERVER_URL", raising=False)
    monkeypatch.setenv(assets.ROUTE_ENV, assets.SERVER_ROUTE)
    assert assets.served() == assets.SERVER_ROUTE
    monkeypatch.setenv("VOILA_SERVER_URL", "/")
    assert assets.served() == assets.SERVER_ROUTE, "JupyterHub's servers run Voila and the extension: one route"
    monkeypatch.setenv(assets.ROUTE_ENV, "off")
    assert assets.served() is None, "off keeps plotly's own module"


def test_figure_widgets_carry_a_small_loader_under_voila_and_plotlys_module_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    monkeypatch.delenv("VOILA_SERVER_URL", raising=False)
    monkeypatch.delenv(assets.ROUTE_ENV, raising=False)
    plain = assets.figure_widget(fig)
    assert type(plain).__module__.startswith("plotly."), type(plain)
    assert len(plain._esm) > 1_000_000

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("VOILA_SERVER_URL", "/")
    assets.write_asset(tmp_path / "voila" / "templates" / "explorer" / "static")
    served = assets.figure_widget(fig)
    assert isinstance(served, go.FigureWidget)
    assert len(served._esm) < 1_000, "the served figure widget still ships plotly's module in its state"
    assert f"{assets.ROUTE}{assets.asset_name()}" in served._esm
    assert "export default" in served._esm
    assert served.data[0].x == (1, 2), "the figure itself is unchanged"
    state = served.get_state()
    assert len(str(state["_esm"])) < 1_000


def test_make_install_writes_it_where_the_apps_template_is() -> None:
    """``make install`` (hence ``make app``, ``make test``, the hub and the image) writes it; git ignores it."""
    assert (assets.TEMPLATE_STATIC / assets.asset_name()).is_file(), "run make install"
    assert assets.TEMPLATE_STATIC.parent == ROOT / "explorer" / "app" / "jupyter" / "voila" / "templates" / "explorer"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(assets.TEMPLATE_STATIC / assets.asset_name())],
                             cwd=ROOT, check=False)
    assert ignored.returncode == 0, "plotly's module would be committed"


def test_the_command_writes_it_and_a_bad_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "explorer.serve.assets", str(tmp_path / "out")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / assets.asset_name()).is_file()
    assert "RuntimeWarning" not in done.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = subprocess.run([sys.executable, "-m", "explorer.serve.assets", str(blocker / "sub")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1, bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_extension_leaves_torch_and_transformers_out_of_a_server() -> None:
    """Every student's Jupyter server on ``make hub`` loads the extension: it imports neither torch nor
    transformers (they would cost each server about 230 MB), and ``import explorer`` alone imports no strategy,
    while its public names still work on first use."""
    code = ("import sys, explorer.serve.assets, explorer\n"
            "heavy = [m for m in ('torch', 'transformers', 'explorer.api', 'explorer.engine') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert explorer.STRATEGY_NAMES[0] == 'greedy' and callable(explorer.decode)\n"
            "assert explorer.Trace.__name__ == 'Trace' and 'torch' in sys.modules\n"
            "assert {'decode', 'load_model', 'STRATEGY_NAMES'} <= set(dir(explorer))\n"
            "try:\n    explorer.nothing\nexcept AttributeError as e:\n    print(e)\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "module 'explorer' has no attribute 'nothing'"
