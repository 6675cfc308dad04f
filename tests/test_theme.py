"""Light and dark figures: every chart takes a theme; its text holds 4.5:1 and its marks 3:1 on the page (WCAG AA);
the colour scale stays legible on both; and nothing in a figure makes plotly.js warn.

The pages are JupyterLab's own: its theme CSS (installed with JupyterLab) says what background the app sits on
(``--jp-layout-color0`` in a notebook, ``--jp-layout-color1`` in Voila's lab template) and what its secondary text
colour is, which our HTML snippets fall back to outside the app.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import pytest
from plotly.colors import sample_colorscale

import explorer
from explorer import figures
from explorer.errors import ParameterError
from explorer.figures import THEMES, palette, template
from explorer.figures._charts import message_figure
from explorer.figures._html import MUTED
from explorer.figures._style import FATE_COLORS, NODE_SCALE, PALETTE, RESULT_COLORS
from explorer.figures._theme import blend, contrast_ratio
from explorer.figures._tree import LEGEND_GREY
from explorer.models.base import CausalLM

LAB_THEMES = Path(sys.prefix) / "share" / "jupyter" / "lab" / "themes" / "@jupyterlab"


def _lab_variables(theme: str) -> dict[str, str]:
    """The CSS variables of JupyterLab's light or dark theme, ``var(--md-...)`` references resolved to their
    fallback colour."""
    css = (LAB_THEMES / f"theme-{theme}-extension" / "index.css").read_text()
    found = dict(re.findall(r"(--jp-[\w-]+):\s*([^;]+);", css))
    return {k: re.sub(r"var\(--md-[\w-]+,\s*([^)]+)\)", r"\1", v).strip() for k, v in found.items()}


def _pages(theme: str) -> list[str]:
    """The backgrounds the app sits on in ``theme``: a notebook's and Voila's."""
    lab = _lab_variables(theme)
    return [lab["--jp-layout-color0"], lab["--jp-layout-color1"]]


def test_contrast_ratio_is_wcag_2s() -> None:
    assert contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast_ratio("#FFFFFF", "#FFFFFF") == pytest.approx(1.0)
    assert contrast_ratio("#767676", "white") == pytest.approx(4.54, abs=0.01)  # the classic 4.5:1 grey
    assert contrast_ratio("rgba(0,0,0,0.54)", "#FFFFFF") == pytest.approx(contrast_ratio("#757575", "#FFFFFF"),
                                                                          abs=0.02)
    with pytest.raises(ValueError, match="not a colour"):
        contrast_ratio("var(--x)", "#FFFFFF")


@pytest.mark.parametrize("theme", THEMES)
def test_the_palette_is_on_jupyterlabs_own_background(theme: str) -> None:
    assert contrast_ratio(palette(theme).paper, _pages(theme)[0]) == pytest.approx(1.0)
    assert template(theme).layout.paper_bgcolor == palette(theme).paper
    assert pio.templates[f"explorer_{theme}"].layout.font.color == palette(theme).ink


@pytest.mark.parametrize("theme", THEMES)
def test_text_holds_4_5_and_marks_3_to_1_on_the_page(theme: str) -> None:
    look = palette(theme)
    for page in _pages(theme):
        for name in ("ink", "muted", "label"):
            assert contrast_ratio(getattr(look, name), page) >= 4.5, (theme, name, page)
        for name in ("outline", "strong_outline"):
            assert contrast_ratio(getattr(look, name), page) >= 3.0, (theme, name, page)
        assert contrast_ratio(f"rgba({look.edge},0.7)", page) >= 3.0, (theme, "edge", page)
        assert contrast_ratio(LEGEND_GREY, page) >= 3.0, (theme, "legend symbols", page)


def test_every_mark_colour_holds_3_to_1_on_the_dark_page() -> None:
    """On the light page the colours are the familiar ones (Okabe and Ito's among them); on the dark one, each panel,
    result and fate colour still stands out (Okabe and Ito's black became a mid grey; the finished violet and the
    fourth result's brown are lighter than they were)."""
    for page in _pages("dark"):
        for color in (*PALETTE, *RESULT_COLORS, *FATE_COLORS.values()):
            assert contrast_ratio(color, page) >= 3.0, (color, page)
    assert contrast_ratio(PALETTE[-1], "#FFFFFF") >= 3.0


@pytest.mark.parametrize("theme", THEMES)
def test_the_colour_scale_stays_legible(theme: str, tiny: CausalLM) -> None:
    """Viridis runs from near black to near white, so one of its ends always melts into the page: every scored
    marker, and the colour bar, is rimmed with the theme's outline (3:1 on the page), and the scale's ends are apart."""
    look = palette(theme)
    low, high = sample_colorscale(NODE_SCALE, [0.0, 1.0])
    assert contrast_ratio(low, high) >= 7.0
    assert template(theme).layout.coloraxis.colorbar.outlinecolor == look.outline
    fig = figures.search_tree(explorer.decode(tiny, [5, 6], "beam", num_beams=2, max_new_tokens=3), theme=theme)
    scored = [t for t in fig.data if t.customdata is not None and t.marker.coloraxis == "coloraxis"]
    assert scored
    assert all(t.marker.line.color in (look.outline, look.strong_outline) and t.marker.line.width >= 0.5
               for t in scored)


@pytest.fixture(scope="module")
def runs(tiny: CausalLM) -> dict[str, Any]:
    prompt = [5, 6, 7]
    return {
        "beam": explorer.decode(tiny, prompt, "beam", num_beams=3, max_new_tokens=5),
        "diverse": explorer.decode(tiny, prompt, "diverse", num_beams=4, num_beam_groups=2, diversity_penalty=1.0,
                                   max_new_tokens=5),
        "constrained": explorer.decode(tiny, prompt, "constrained", num_beams=3, constraints=[[400, 401]],
                                       max_new_tokens=6),
    }


def _figures(runs: dict[str, Any], theme: str) -> dict[str, go.Figure]:
    """One of each chart, in ``theme``."""
    beam = runs["beam"]
    return {
        "tree": figures.search_tree(beam, theme=theme, selected="h0"),
        "trees by group": figures.search_trees({"beam": beam, "diverse": runs["diverse"]}, color="group", theme=theme),
        "candidates": figures.step_candidates(beam, beam.steps[1].hypotheses[0].id, theme=theme),
        "timelines": figures.score_timelines({"beam": beam, "diverse": runs["diverse"]}, theme=theme),
        "constraints": figures.constraint_progress(runs["constrained"], theme=theme),
        "message": message_figure("press Run", theme=theme),
    }


def _text_colours(fig: go.Figure) -> list[str]:
    """Every colour a figure gives text explicitly (the rest is the template's ink)."""
    layout = fig.layout
    colours = [a.font.color for a in layout.annotations or () if a.font and a.font.color]
    colours += [t.textfont.color for t in fig.data if getattr(t, "textfont", None) and t.textfont.color]
    return [c for c in colours if isinstance(c, str)]


@pytest.mark.parametrize("theme", THEMES)
def test_every_chart_is_drawn_in_the_theme(runs: dict[str, Any], theme: str) -> None:
    look = palette(theme)
    for name, fig in _figures(runs, theme).items():
        assert fig.layout.template.layout.paper_bgcolor == look.paper, name
        assert fig.layout.template.layout.font.color == look.ink, name
        for colour in _text_colours(fig):
            assert contrast_ratio(colour, look.paper) >= 4.5, (name, colour)
        lines = [t.marker.line.color for t in fig.data if getattr(t, "marker", None) and t.marker.line
                 and isinstance(t.marker.line.color, str)]
        for colour in lines:
            assert contrast_ratio(colour, look.paper) >= 3.0, (name, colour)


def test_every_figure_function_takes_a_theme() -> None:
    """Every chart, this one's and later ones, can be drawn light or dark."""
    makers = [name for name in figures.__all__ if inspect.isfunction(getattr(figures, name))
              and "Figure" in str(inspect.signature(getattr(figures, name)).return_annotation)]
    assert {"search_tree", "search_trees", "step_candidates", "score_timelines", "constraint_progress"} <= set(makers)
    for name in makers:
        assert "theme" in inspect.signature(getattr(figures, name)).parameters, name


def test_no_trace_makes_plotly_js_warn(runs: dict[str, Any]) -> None:
    """The two causes of ``Invalid color specifier`` warnings (and black symbols): a legend entry drawn from a trace
    whose colours come from a colour axis (plotly.js takes its first number for a colour), and bars with one colour
    each hatched in the templates' "overlay" mode (plotly.js takes the whole colour array for the hatching)."""
    for theme in THEMES:
        for name, fig in _figures(runs, theme).items():
            for trace in fig.data:
                marker = getattr(trace, "marker", None)
                if marker is not None and marker.coloraxis is not None:
                    assert trace.showlegend is False, (name, trace.name)
                if trace.type == "bar" and marker.pattern.shape and not isinstance(marker.color, str):
                    assert marker.pattern.fillmode == "replace", (name, trace.name)


def test_no_theme_follows_plotlys_default_template(runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for default, theme in (("plotly_dark", "dark"), ("plotly_white", "light"), ("plotly", "light"),
                           ("explorer_dark", "dark")):
        monkeypatch.setattr(pio.templates, "default", default)
        assert figures.resolve_theme(None) == theme
        assert figures.search_tree(runs["beam"]).layout.template.layout.paper_bgcolor == palette(theme).paper
    with pytest.raises(ParameterError, match="theme='blue' is invalid"):
        figures.search_tree(runs["beam"], theme="blue")  # type: ignore[arg-type]


@pytest.mark.parametrize("theme", THEMES)
def test_html_snippets_fall_back_to_jupyterlabs_secondary_text(theme: str, runs: dict[str, Any]) -> None:
    """Outside the app (a course notebook), the tokens' caption takes JupyterLab's secondary text colour, which holds
    4.5:1 on JupyterLab's background in both themes; a grey of our own would not."""
    assert f"color:{MUTED}" in figures.tokens_html(runs["beam"])
    assert "var(--jp-content-font-color2" in MUTED
    lab = _lab_variables(theme)
    assert contrast_ratio(blend(lab["--jp-content-font-color2"], lab["--jp-layout-color0"]),
                          lab["--jp-layout-color0"]) >= 4.5
