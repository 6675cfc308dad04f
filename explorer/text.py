"""Token text for people: whitespace and invisible characters made visible, and text cut with an ellipsis.

No plotting here: the app's state and the figures both use these.
"""

from __future__ import annotations

import re

__all__ = ["CONTROLS", "clip", "visible"]

# Whitespace and control characters shown as visible symbols (token text is untrusted and often invisible).
_VISIBLE = {ord(" "): "␣", ord("\n"): "⏎", ord("\t"): "⇥", ord("\r"): "␍", 0x7F: "␡", 0xA0: "⍽"}
_VISIBLE.update({c: chr(0x2400 + c) for c in range(0x20) if c not in _VISIBLE})
# Spaces, joiners, direction marks, bidi embeddings/overrides/isolates and the BOM: shown by code point, so a
# token cannot hide itself or flip the direction of the text around it.
_INVISIBLE = (*range(0x2000, 0x2010), *range(0x2028, 0x2030), 0x205F, 0x2060, *range(0x2066, 0x206A), 0x3000,
              0xFEFF)
_VISIBLE.update({c: f"⟨U+{c:04X}⟩" for c in _INVISIBLE})
_RUN = re.compile(r"([␣⇥⏎])\1{3,}")
#: ``visible``'s symbols for text that keeps its spaces and line breaks: control, invisible and bidi characters only.
#: The zero-width joiner and non-joiner stay too: emoji sequences and Persian or Indic text need them.
CONTROLS = {c: symbol for c, symbol in _VISIBLE.items() if c not in (ord(" "), ord("\n"), 0xA0, 0x200C, 0x200D)}


def visible(text: str | None) -> str:
    r"""Token text with whitespace and control characters as symbols (``␣`` space, ``⏎`` newline, ``⇥`` tab).

    Runs of four or more of one whitespace symbol are counted: eight spaces read as ``␣`` times 8.

    >>> visible(" a\tb\n"), visible("        x") == "\N{OPEN BOX}\N{MULTIPLICATION SIGN}8x"
    ('␣a⇥b⏎', True)
    """
    if text is None:
        return "?"
    if not text:
        return "∅"
    return _RUN.sub(lambda m: f"{m.group(1)}\N{MULTIPLICATION SIGN}{len(m.group(0))}", text.translate(_VISIBLE))


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with an ellipsis.

    >>> clip("Pneumonoultramicroscopic", 10), clip("bread", 10)
    ('Pneumonou…', 'bread')
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"
