"""The app follows the page's theme: the probe's report reaches the root's class and every figure, and the app's own
colours hold their contrast on the pages it is shown on (JupyterLab's notebook, Voila's lab template)."""

from __future__ import annotations

import re

import pytest
import traitlets

from explorer.app import Explorer
from explorer.app.theme import APP_COLORS, THEME_CSS, ThemeProbe
from explorer.app.views import STYLE
from explorer.figures import palette
from explorer.figures._theme import contrast_ratio

#: Where the app sits: a notebook on JupyterLab's --jp-layout-color0, Voila's lab template on --jp-layout-color1.
PAGES = {"light": ("#FFFFFF",), "dark": ("#111111", "#212121")}


def _look(app: Explorer) -> dict[str, object]:
    """What the two figure widgets are drawn in: their template's text colour, and their background."""
    out: dict[str, object] = {}
    for name, fig in (("tree", app.outputs.tree), ("details", app.outputs.details)):
        if fig is not None:
            out[name] = (fig.layout.template.layout.font.color, fig.layout.paper_bgcolor)
    return out


def test_the_app_follows_the_page_theme(app: Explorer) -> None:
    assert app.theme_probe in app.widget.children
    assert app.theme_probe.layout.display == "none"
    assert "explorer-theme-light" in app.widget._dom_classes
    app.run(wait=True)
    app.theme_probe.theme = "dark"  # what the probe does when it reads a dark page
    assert "explorer-theme-dark" in app.widget._dom_classes
    assert "explorer-theme-light" not in app.widget._dom_classes
    transparent = "rgba(0,0,0,0)"
    assert _look(app) == {"tree": (palette("dark").ink, transparent), "details": (palette("dark").ink, transparent)}
    app.select(app.state.panels[1].id, "h0")
    assert app.outputs.details.layout.title.text.startswith("Candidates of h0")
    assert app.outputs.details.layout.template.layout.font.color == palette("dark").ink
    app.theme_probe.theme = "light"
    assert _look(app) == {"tree": (palette("light").ink, transparent), "details": (palette("light").ink, transparent)}
    assert app.widget._dom_classes.count("explorer-theme-light") == 1


def test_the_placeholder_follows_the_theme_before_any_run(app: Explorer) -> None:
    app.theme_probe.theme = "dark"
    (note,) = app.outputs.tree.layout.annotations
    assert note.text == "press Run to see the search trees"
    assert note.font.color == palette("dark").muted


def test_the_probe_knows_two_themes() -> None:
    with pytest.raises(traitlets.TraitError):
        ThemeProbe(theme="sepia")
    assert 'data-jp-theme-light' in ThemeProbe()._esm


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_apps_text_holds_4_5_to_1(theme: str) -> None:
    colors = APP_COLORS[theme]
    for page in PAGES[theme]:
        assert colors.background in PAGES[theme]
        for name in ("muted", "error"):
            assert contrast_ratio(getattr(colors, name), page) >= 4.5, (theme, name, page)


def test_the_style_takes_every_colour_from_the_theme() -> None:
    rules = STYLE.split(THEME_CSS, 1)[1]
    assert not re.search(r"#(?:[0-9a-fA-F]{3}){1,2}\b(?!\w)", rules.replace("#E69F00", "").replace("#56B4E9", "")), (
        "a colour written into the app's CSS: take it from APP_COLORS")
    used = set(re.findall(r"var\((--explorer-[\w-]+)\)", rules))
    for theme, colors in APP_COLORS.items():
        defined = set(re.findall(r"(--explorer-[\w-]+):", colors.variables()))
        assert used <= defined, theme
    assert "body[data-jp-theme-light='false'] .explorer-app" in THEME_CSS
