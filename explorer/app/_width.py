"""The width of the app's figure box, read in the browser, so that the trees are drawn to fit it."""

from __future__ import annotations

import anywidget
import traitlets

__all__ = ["WidthProbe", "figure_width"]

# The probe is a line of no height across the box it sits in: it reports that box's width (whole pixels) when it is
# first drawn and whenever it changes by 4 px or more (a resized window, a sidebar), a quarter second after the
# last change, so that dragging a window's edge redraws the trees once.
_ESM = """
export default {
  render({ model, el }) {
    el.style.height = "0px";
    el.style.width = "100%";
    el.style.overflow = "hidden";
    let timer = null;
    const report = () => {
      const width = Math.floor(el.getBoundingClientRect().width);
      if (width > 0 && Math.abs(width - model.get("width")) >= 4) {
        model.set("width", width);
        model.save_changes();
      }
    };
    const watch = new ResizeObserver(() => { clearTimeout(timer); timer = setTimeout(report, 250); });
    watch.observe(el);
    report();
    return () => { watch.disconnect(); clearTimeout(timer); };
  },
};
"""


class WidthProbe(anywidget.AnyWidget):  # type: ignore[misc]
    """A widget of no height whose ``width`` trait (px; 0 until drawn) follows the width of the box it is in.

    >>> probe = WidthProbe()  # doctest: +SKIP
    >>> probe.observe(lambda change: print(change["new"]), names="width")  # doctest: +SKIP
    """

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    width = traitlets.Int(0).tag(sync=True)


#: The width the trees are drawn for before the page reports its box (a laptop's, less the page's margins).
DEFAULT_WIDTH = 1200
#: Pixels left free at the box's right edge: a figure exactly as wide as its box can still make it scroll.
SLACK = 8


def figure_width(box: int) -> int:
    """The width to draw a figure at in a box ``box`` px wide (0: not measured yet).

    >>> figure_width(0), figure_width(1232)
    (1200, 1224)
    """
    return box - SLACK if box > 0 else DEFAULT_WIDTH
