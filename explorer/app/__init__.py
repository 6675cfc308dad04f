"""The Jupyter / Voila app: ``Explorer()`` shows a prompt, strategy panels side by side, and linked views.

Widgets live only here; the compute layer (``explorer.*``) never imports ipywidgets.
"""

from __future__ import annotations

from explorer.app.explorer import Explorer

__all__ = ["Explorer"]
