"""A run as one self-contained HTML page (trees, results, candidates, uncertainty-coloured texts, the traces
themselves), and the traces read back from such a page. No server, no network: plotly.js is inlined."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path

from explorer.errors import ParameterError, TraceFormatError
from explorer.trace import Trace
from explorer.trace_io import _write_atomically, dump_trace, loads_trace
from explorer.trace_validate import short

__all__ = ["MAX_EXPORT_BYTES", "export_html", "read_export"]

#: Largest page :func:`read_export` reads (plotly.js alone is about 4.8 MB; the traces each stay under
#: :data:`explorer.trace_io.MAX_TRACE_BYTES`).
MAX_EXPORT_BYTES = 256 * 1024 * 1024


def export_html(traces: Trace | Mapping[str, Trace], path: str | os.PathLike[str] | None = None, *,
                theme: str = "light", title: str | None = None) -> str:
    """One HTML page of a run or a comparison: a title with the prompt, model and strategies, the results (text,
    log-prob, score, length), the texts coloured by uncertainty, each panel's search tree (interactive Plotly),
    every step's recorded candidates, and the traces as JSON (:func:`read_export` reads them back), with a footer of
    versions. Nothing is fetched: plotly.js is inlined and a Content-Security-Policy forbids the network. All token
    text is escaped. Returns the page; also written atomically to ``path`` when given.

    ``traces`` is one trace or a mapping of panel names to traces (one comparison); ``theme`` is ``"light"`` or
    ``"dark"``.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="greedy", max_new_tokens=3)
    >>> page = export_html(t)
    >>> page.startswith("<!DOCTYPE html>"), read_export(page)["greedy"] == t
    (True, True)
    """
    from explorer._export_page import page

    runs = _named(traces)
    text = page(runs, _theme(theme), title)
    if path is not None:
        target = Path(path)
        if not target.parent.is_dir():
            raise ParameterError("path", str(path), "a file in an existing folder")
        _write_atomically(target, text)
    return text


def _named(traces: Trace | Mapping[str, Trace]) -> dict[str, Trace]:
    """Panel names to traces (a single trace is named by its strategy)."""
    if isinstance(traces, Trace):
        return {traces.strategy: traces}
    runs = dict(traces)
    if not runs:
        raise ParameterError("traces", {}, "at least one trace")
    bad = [name for name, t in runs.items() if not isinstance(t, Trace)]
    if bad:
        raise ParameterError("traces", bad[0], "a mapping of names to Trace values")
    return runs


def _theme(theme: str) -> str:
    """``"light"`` or ``"dark"``, else a one-line error."""
    if theme not in ("light", "dark"):
        raise ParameterError("theme", theme, "'light' or 'dark'")
    return theme


def embed_json(text: str) -> str:
    """JSON text made safe inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` as ``\\u`` escapes,
    which JSON reads back as the same characters, so no token text can close the element.

    >>> embed_json('{"t": "</script><b>"}')
    '{"t": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def trace_script(name: str, trace: Trace) -> str:
    """A trace embedded in the page, named by its panel."""
    return (f'<script type="application/json" class="explorer-trace" data-panel="{html.escape(name, quote=True)}">'
            f"{embed_json(dump_trace(trace))}</script>")


class _Traces(HTMLParser):
    """Collects the text of every ``<script class="explorer-trace">`` with its ``data-panel`` name."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[str]]] = []
        self._open: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and "explorer-trace" in (values.get("class") or "").split():
            self._open = []
            self.found.append((values.get("data-panel") or f"trace {len(self.found) + 1}", self._open))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.append(data)


_PAGE = re.compile(r"^\s*(<!doctype html|<html)", re.IGNORECASE)


def read_export(source: str | bytes | os.PathLike[str], *, name: str | None = None) -> dict[str, Trace]:
    """The traces of a page written by :func:`export_html`, by panel name, each checked as an untrusted trace
    (:func:`explorer.trace_io.loads_trace`). ``source`` is the page's text or bytes, or a path to it.

    Problems raise :class:`~explorer.errors.TraceFormatError` with one line: not a page, no trace in it, a trace
    that does not load (named by its panel); ``name`` names the page in them (e.g. an uploaded file's name).

    >>> read_export("<!DOCTYPE html><p>hello</p>")
    Traceback (most recent call last):
    ...
    explorer.errors.TraceFormatError: the text holds no trace (not a page written by explorer.export_html)
    """
    text, found = _page_text(source)
    name = name or found
    if not _PAGE.match(text):
        raise TraceFormatError(f"{name} is not an HTML page written by explorer.export_html")
    parser = _Traces()
    parser.feed(text)
    parser.close()
    if not parser.found:
        raise TraceFormatError(f"{name} holds no trace (not a page written by explorer.export_html)")
    out: dict[str, Trace] = {}
    for panel, parts in parser.found:
        out[panel] = loads_trace("".join(parts), source=f"{name}, panel {short(panel)}")
    return out


def _page_text(source: str | bytes | os.PathLike[str]) -> tuple[str, str]:
    """The page's text and how to name it in errors."""
    if isinstance(source, bytes):
        if len(source) > MAX_EXPORT_BYTES:
            raise TraceFormatError(f"the page is over the {MAX_EXPORT_BYTES // 2**20} MiB limit")
        try:
            return source.decode("utf-8-sig"), "the page"
        except UnicodeDecodeError as exc:
            raise TraceFormatError(f"the page is not UTF-8 text (byte {exc.start})") from None
    if isinstance(source, str) and source.lstrip()[:1] in ("<", "{"):
        return source, "the text"
    path = Path(source)
    name = f"page {short(str(path))}"
    try:
        if path.stat().st_size > MAX_EXPORT_BYTES:
            raise TraceFormatError(f"{name} is over the {MAX_EXPORT_BYTES // 2**20} MiB limit")
        data = path.read_bytes()
    except FileNotFoundError:
        raise TraceFormatError(f"{name} does not exist") from None
    except OSError as exc:
        raise TraceFormatError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig"), name
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"{name} is not UTF-8 text (byte {exc.start})") from None

