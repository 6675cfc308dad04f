"""Constraints typed in a panel: one phrase per line, ``a|b|c`` for any-of, and their tokenization preview."""

from __future__ import annotations

import html
from collections.abc import Sequence

from explorer.api import parse_constraints
from explorer.errors import ExplorerError, ParameterError
from explorer.models.base import CausalLM

__all__ = ["constraint_specs", "piece", "preview_html"]

_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥"})


def piece(text: str) -> str:
    """A token's text with its whitespace made visible.

    >>> piece(" flour")
    '␣flour'
    """
    return text.translate(_VISIBLE)


def constraint_specs(text: str) -> list[str | list[str]]:
    """The constraints a box holds, as ``explorer.decode`` takes them: a phrase per line (tokenized as written,
    leading spaces included), ``a|b|c`` for any of several phrases. Blank lines are skipped.

    >>> constraint_specs(" flour\\n sugar| honey\\n")
    [' flour', [' sugar', ' honey']]
    >>> constraint_specs("a||b")
    Traceback (most recent call last):
    ...
    explorer.errors.ParameterError: constraint option='' is invalid: expected a non-empty phrase between the bars
    """
    specs: list[str | list[str]] = []
    for line in text.replace("\r", "").split("\n"):
        if not line.strip():
            continue
        if "|" not in line:
            specs.append(line)
            continue
        options = line.split("|")
        for option in options:
            if not option.strip():
                raise ParameterError("constraint option", option, "a non-empty phrase between the bars")
        specs.append(options)
    return specs


def _pieces_html(model: CausalLM, phrase: str) -> str:
    """``␣fl·our → [832, 461]`` for one phrase."""
    ids = model.tokenizer.encode(phrase)
    pieces = "".join(f'<span class="explorer-piece">{html.escape(piece(model.tokenizer.token_text(i)))}</span>'
                     for i in ids)
    return f"{pieces} → [{', '.join(str(i) for i in ids)}]"


def preview_html(model: CausalLM, text: str) -> tuple[str, str]:
    """The tokenization of every constraint (HTML, one line each) and the error they give (empty when fine).

    >>> import explorer
    >>> html_text, error = preview_html(explorer.load_model("tiny-random"), " flour")
    >>> "[832, 461]" in html_text, error
    (True, '')
    """
    try:
        specs = constraint_specs(text)
    except ExplorerError as error:
        return "", str(error)
    lines = []
    for spec in specs:
        phrases: Sequence[str] = [spec] if isinstance(spec, str) else spec
        lines.append("<div>" + " <b>|</b> ".join(_pieces_html(model, p) for p in phrases) + "</div>")
    try:
        parse_constraints(model, specs)
    except ExplorerError as error:
        return "".join(lines), str(error)
    return "".join(lines), ""
