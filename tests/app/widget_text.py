"""What a widget shows as text, for the app tests (imported by them: pytest puts this folder on the path)."""

from __future__ import annotations

import html
import re
from typing import Any


def shown_text(widget: Any) -> str:
    """An HTML widget's value as the reader sees it: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", str(widget.value)))


def visible_error(box: Any) -> str:
    """The text of an inline error box, or "" while it is hidden."""
    return "" if box.layout.display == "none" else shown_text(box)
