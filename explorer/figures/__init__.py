"""Plotly figures and HTML snippets of traces: pure functions, trace in, figure out, nothing displayed."""

from __future__ import annotations

from explorer.figures._charts import constraint_progress, message_figure, score_timelines, step_candidates
from explorer.figures._contrastive import contrastive_scores
from explorer.figures._html import results_table_html, tokens_html
from explorer.figures._inside import dola_contrast, dola_layers, dola_lens
from explorer.figures._layout import TreeLayout, tree_layout
from explorer.figures._lens import lens_heatmap, lens_top
from explorer.figures._scale import SCALE_CSS, color_scale_html
from explorer.figures._speculation import VERDICT_COLORS, speculation_rounds
from explorer.figures._style import PALETTE, RESULT_COLORS, clip, visible
from explorer.figures._theme import THEMES, Palette, Theme, palette, resolve_theme, template
from explorer.figures._tree import COLOR_TITLES, ColorMode, node_at, search_tree, search_trees
from explorer.figures._uncertainty import (
    UNCERTAINTY_CSS,
    Uncertainty,
    token_uncertainty,
    uncertainty_css,
    uncertainty_html,
    uncertainty_legend,
)

__all__ = [
    "COLOR_TITLES",
    "PALETTE",
    "RESULT_COLORS",
    "SCALE_CSS",
    "THEMES",
    "UNCERTAINTY_CSS",
    "VERDICT_COLORS",
    "ColorMode",
    "Palette",
    "Theme",
    "TreeLayout",
    "Uncertainty",
    "clip",
    "color_scale_html",
    "constraint_progress",
    "contrastive_scores",
    "dola_contrast",
    "dola_layers",
    "dola_lens",
    "lens_heatmap",
    "lens_top",
    "message_figure",
    "node_at",
    "palette",
    "resolve_theme",
    "results_table_html",
    "score_timelines",
    "search_tree",
    "search_trees",
    "speculation_rounds",
    "step_candidates",
    "template",
    "token_uncertainty",
    "tokens_html",
    "tree_layout",
    "uncertainty_css",
    "uncertainty_html",
    "uncertainty_legend",
    "visible",
]
