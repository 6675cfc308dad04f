"""The explorer in JupyterLab itself, started as ``make lab`` starts it (tiny-random model).

What a user does: open ``app.ipynb`` (it says to run the cell), Run All, run two panels side by side, click a node,
switch to JupyterLab's dark theme. The figures follow the theme, muted text keeps 4.5:1 in both themes, the page
logs no error and no warning of ours, and saving the notebook leaves nothing to commit (the notebook filter).
Screenshots land in ``tests/out/lab-*.png``: light and dark, at 1280x800 and 1920x1080.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from browser_harness import LOAD_TIMEOUT, RUN_READY, AppPage, check_clean, new_context, watch
from lab_harness import SAVED, LabServer, git, menu, notebook_repo, open_notebook, scroll_to
from theme_checks import check_theme

from explorer.figures import palette

pytestmark = pytest.mark.browser

SIZES = ((1280, 800), (1920, 1080))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab on a git repository holding the committed app notebook, with the notebook filter set up."""
    root = notebook_repo(tmp_path_factory.mktemp("lab") / "notebooks")
    with LabServer(tmp_path_factory.mktemp("lab-state"), root).running() as server:
        server.read_token()
        yield server


def test_jupyterlab_listens_on_loopback_and_asks_for_its_token(lab: LabServer) -> None:
    assert lab.url.startswith("http://127.0.0.1:")
    assert len(lab.token) >= 32, "make lab serves with the token JupyterLab makes"
    assert lab.status("api/status", None) == 403
    assert lab.status("api/status", lab.token) == 200


def _shots(app: AppPage, theme: str) -> None:
    """The trees and the details in view, at each size."""
    for width, height in SIZES:
        app.page.set_viewport_size({"width": width, "height": height})
        app.page.wait_for_timeout(500)  # JupyterLab lays itself out again
        scroll_to(app.page, ".explorer-tree")
        app.shot(f"{theme}-{width}x{height}", window=True)


def _saved_leaves_nothing_to_commit(app: AppPage, lab: LabServer) -> None:
    """Save the notebook: it holds the app's output on disk, and git has nothing to commit."""
    menu(app.page, "File", "docmanager:save")
    app.wait("the notebook to be saved", SAVED, 30)
    saved = json.loads((lab.root / "app.ipynb").read_text())
    outputs = [o for cell in saved["cells"] for o in cell.get("outputs", [])]
    assert outputs, "the saved notebook should hold the app's output (else this test proves nothing)"
    assert git(lab.root, "diff", "--stat") == "", "the filter should strip what running added"
    # `git status` may still list the file (git compares sizes before running a filter) until `git add`, which
    # finds nothing new: nothing is staged and the tree is clean.
    git(lab.root, "add", "--all")
    assert git(lab.root, "status", "--porcelain") == ""
    assert git(lab.root, "diff", "--cached", "--stat") == ""


def test_the_app_in_jupyterlab_light_then_dark(lab: LabServer, browser: Any) -> None:
    context = new_context(browser, width=SIZES[0][0], height=SIZES[0][1])
    page = context.new_page()
    seen = watch(page)
    app = AppPage(page, seen, lab, "lab")
    try:
        open_notebook(page, lab, "app.ipynb", LOAD_TIMEOUT)
        hint = page.locator(".jp-MarkdownOutput", has_text="Run the cell below")
        assert hint.count() == 1, f"app.ipynb should say to run its cell. {app.explain()}"
        assert hint.first.is_visible(), app.explain()
        app.shot("opened", window=True)
        menu(page, "Run", "runmenu:run-all")
        app.wait("the app to start (its Run button)", RUN_READY, LOAD_TIMEOUT)
        app.run_panels("The secret of good bread is", ("beam", "diverse"))
        node = app.click_node(app.tree_summary()["titles"][0])
        assert node in page.locator(".explorer-selection").inner_text(), app.explain()
        light = check_theme(app, "light")
        _shots(app, "light")

        menu(page, "Settings", "apputils:change-theme", "JupyterLab Dark", submenu="Theme")
        app.wait("JupyterLab's dark theme, and both figures drawn again in it",
                 """(ink) => document.body.dataset.jpThemeLight === 'false'
                             && ['.explorer-tree', '.explorer-details'].every(sel => {
                                  const gd = document.querySelector(sel + ' .js-plotly-plot')
                                             || document.querySelector(sel + '.js-plotly-plot');
                                  return gd && gd._fullLayout && gd._fullLayout.font.color === ink; })""",
                 30, palette("dark").ink)
        dark = check_theme(app, "dark")
        _shots(app, "dark")
        check_clean(app)
        # The tree and details figures imported plotly's module once, from the server extension's file.
        modules = app.seen.plotly_modules
        assert [status for _url, status in modules] == [200], f"plotly's module requests: {modules}. {app.explain()}"
        assert "/decoding-explorer/static/" in modules[0][0], modules
        print(f"lowest contrast ratios: light {light}, dark {dark}")
        _saved_leaves_nothing_to_commit(app, lab)
    finally:
        context.close()
