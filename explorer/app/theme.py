"""The page's theme in the app: a hidden widget that reads it in the browser, and the app's colours for both themes."""

from __future__ import annotations

from dataclasses import dataclass

import anywidget
import plotly.graph_objects as go
import traitlets

from explorer.figures import THEMES, Theme, palette

__all__ = ["APP_COLORS", "THEME_CSS", "AppColors", "ThemeProbe", "on_page", "theme_class"]

# How the page says it is dark: JupyterLab sets ``data-jp-theme-light`` on <body> for every theme, and Voila does
# for ``--theme=light`` and ``--theme=dark`` (which loads JupyterLab's dark theme). A page without it (a custom
# Voila theme) is dark when its background, JupyterLab's ``--jp-layout-color0`` (else the body's), is dark.
# The probe reports on its first render and again whenever <body>'s theme attributes change (switching themes in
# JupyterLab), and draws nothing.
_ESM = """
function luminance(css) {
  const probe = document.createElement("span");
  probe.style.color = css;
  document.body.appendChild(probe);
  const rgb = getComputedStyle(probe).color.match(/[\\d.]+/g) || [];
  probe.remove();
  if (rgb.length < 3 || (rgb.length > 3 && Number(rgb[3]) === 0)) return null;
  const [r, g, b] = rgb.slice(0, 3).map((v) => {
    const c = Number(v) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function pageTheme() {
  const flag = document.body.dataset.jpThemeLight;
  if (flag === "true" || flag === "false") return flag === "true" ? "light" : "dark";
  const style = getComputedStyle(document.body);
  const background = style.getPropertyValue("--jp-layout-color0").trim() || style.backgroundColor;
  const lum = background ? luminance(background) : null;
  return lum !== null && lum < 0.2 ? "dark" : "light";
}

export default {
  render({ model, el }) {
    el.style.display = "none";
    const report = () => {
      const theme = pageTheme();
      if (model.get("theme") !== theme) {
        model.set("theme", theme);
        model.save_changes();
      }
    };
    report();
    const watch = new MutationObserver(report);
    watch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
    return () => watch.disconnect();
  },
};
"""


class ThemeProbe(anywidget.AnyWidget):  # type: ignore[misc]
    """A hidden widget whose ``theme`` trait (``"light"`` or ``"dark"``) follows the page it is shown in.

    >>> probe = ThemeProbe()  # doctest: +SKIP
    >>> probe.observe(lambda change: print(change["new"]), names="theme")  # doctest: +SKIP
    """

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    theme = traitlets.Enum(THEMES, default_value="light").tag(sync=True)


@dataclass(frozen=True)
class AppColors:
    """The app's own colours in one theme (text colours hold 4.5:1 on ``background``, WCAG AA).

    ``background`` is the page's (JupyterLab's and Voila's ``--jp-layout-color0``), ``muted`` helper text (the
    figures' muted grey), ``error`` inline errors, ``border`` panel frames, ``rule`` table rules, ``piece`` and
    ``piece_border`` the boxes around a constraint's tokens.
    """

    background: str
    muted: str
    error: str
    border: str
    rule: str
    piece: str
    piece_border: str

    def variables(self) -> str:
        """The colours as CSS custom properties (``--explorer-muted: ...;``)."""
        return " ".join(f"--explorer-{name.replace('_', '-')}: {value};" for name, value in vars(self).items()
                        if name != "background")


APP_COLORS = {
    theme: AppColors(background=palette(theme).paper, muted=palette(theme).muted, **colors)
    for theme, colors in (
        ("light", {"error": "#B00020", "border": "#D0D7DE", "rule": "#EEEEEE", "piece": "#F6F8FA",
                   "piece_border": "#C8C8C8"}),
        ("dark", {"error": "#FF8A80", "border": "#3D444D", "rule": "#2A2F35", "piece": "#1F2328",
                  "piece_border": "#4A4F55"}),
    )
}

#: The app's colour variables: light, and dark on a page that says it is dark (see ``_ESM``) or when the probe found
#: it dark (the root's ``explorer-theme-dark`` class, for pages that do not say).
THEME_CSS = (f".explorer-app {{ {APP_COLORS['light'].variables()} }}\n"
             f"body[data-jp-theme-light='false'] .explorer-app, .explorer-app.explorer-theme-dark "
             f"{{ {APP_COLORS['dark'].variables()} }}\n")


def theme_class(theme: Theme) -> str:
    """The CSS class the app's root gets in ``theme``."""
    return f"explorer-theme-{theme}"


def on_page(fig: go.Figure) -> go.Figure:
    """``fig`` with a transparent background, so that it sits on the page whatever its shade: JupyterLab puts the app
    on ``--jp-layout-color0`` (#111 in its dark theme), Voila on ``--jp-layout-color1`` (#212121). The theme's text
    colours hold 4.5:1 on both (``tests/test_theme.py``)."""
    return fig.update_layout(paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
