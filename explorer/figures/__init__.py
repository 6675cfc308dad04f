"""Plotly figures and HTML snippets of traces: pure functions, trace in, figure out, nothing displayed."""

from __future__ import annotations

from explorer.figures._charts import constraint_progress, score_timelines, step_candidates
from explorer.figures._html import results_table_html, tokens_html
from explorer.figures._layout import TreeLayout, tree_layout
from explorer.figures._style import PALETTE, RESULT_COLORS, clip, visible
from explorer.figures._tree import ColorMode, node_at, search_tree, search_trees

__all__ = [
    "PALETTE",
    "RESULT_COLORS",
    "ColorMode",
    "TreeLayout",
    "clip",
    "constraint_progress",
    "node_at",
    "results_table_html",
    "score_timelines",
    "search_tree",
    "search_trees",
    "step_candidates",
    "tokens_html",
    "tree_layout",
    "visible",
]
