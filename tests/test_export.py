"""The exported page: one self-contained file (nothing fetched), its traces read back exactly, hostile text kept as
text, the uncertainty colouring's bins and colours, and the CLI's ``--html``."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from plotly.offline import get_plotlyjs

import explorer
from explorer.cli import main
from explorer.figures._theme import contrast_ratio
from explorer.figures._uncertainty import _fills, token_uncertainty, uncertainty_html, uncertainty_legend
from explorer.models.base import CausalLM
from explorer.trace import Trace
from explorer.trace_io import trace_from_dict, trace_to_dict

HOSTILE = Path(__file__).parent / "browser" / "data" / "hostile.json"
#: Markup that would run if any of it reached the page as markup.
ATTACKS = ('</script><script>window.__pwned = 1</script>', '<img src=x onerror="window.__pwned = 2">',
           '"><svg onload="window.__pwned = 3">', "</style><marquee>moving</marquee>")


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of every script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(page: str) -> list[tuple[str, dict[str, str | None]]]:
    """The page's start tags."""
    parser = Elements()
    parser.feed(page)
    parser.close()
    return parser.tags


@pytest.fixture(scope="module")
def runs(tiny: CausalLM) -> dict[str, Trace]:
    """Greedy and beam search side by side on tiny-random."""
    return explorer.compare(tiny, [5, 6, 7], {"greedy": {"strategy": "greedy", "max_new_tokens": 6},
                                              "beam 3": {"strategy": "beam", "num_beams": 3, "max_new_tokens": 6,
                                                         "num_return_sequences": 2}})


def hostile_trace(trace: Trace) -> Trace:
    """``trace`` with the attacks in its prompt, every candidate's text, and its results' texts."""
    doc = trace_to_dict(trace)
    doc["prompt"] = ATTACKS[0]
    for step in doc["steps"]:
        for h in step["hypotheses"]:
            for i, c in enumerate(h["candidates"]):
                c["text"] = ATTACKS[i % len(ATTACKS)]
    for r in doc["results"]:
        r["text"] = "".join(ATTACKS)
    return trace_from_dict(doc)


@pytest.fixture(scope="module")
def hostile_page(runs: dict[str, Trace]) -> tuple[dict[str, Trace], str]:
    """A page whose every token, the prompt, the texts and a panel's name are attacks."""
    traces = {ATTACKS[1]: hostile_trace(runs["greedy"]), "beam": hostile_trace(runs["beam 3"])}
    return traces, explorer.export_html(traces, theme="dark")


def test_the_page_is_one_file_that_fetches_nothing(runs: dict[str, Trace]) -> None:
    """No element loads anything (no src, no stylesheet link, no http(s) address in an href), the CSS imports
    nothing, and the page's policy forbids every fetch; plotly.js is inside, with the traces and two figures each."""
    page = explorer.export_html(runs)
    tags = elements(page)
    for tag, attrs in tags:
        assert "src" not in attrs, tag
        assert not re.match(r"\s*(https?:)?//", attrs.get("href") or ""), (tag, attrs)
    assert not [t for t, _ in tags if t in ("link", "iframe", "object", "embed", "img", "base")]
    styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    assert styles
    assert not any(re.search(r"@import|url\(", s) for s in styles)
    policy = next(a["content"] for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert policy is not None
    assert policy.startswith("default-src 'none'; script-src 'sha256-")
    assert "unsafe-eval" not in policy
    scripts = [a for t, a in tags if t == "script"]
    assert [a.get("class") for a in scripts].count("explorer-trace") == 2
    assert [a.get("class") for a in scripts].count("explorer-figure") == 3  # the score timelines and two trees
    assert "Plotly.newPlot" in page
    assert get_plotlyjs() in page  # the whole of plotly.js, inlined


def test_the_traces_come_back_exactly(runs: dict[str, Trace], tmp_path: Path) -> None:
    """From the text, the bytes and the file written to ``path``: every panel's trace, equal to the one exported."""
    path = tmp_path / "run.html"
    page = explorer.export_html(runs, path)
    assert path.read_text(encoding="utf-8") == page
    for source in (page, page.encode("utf-8"), path, str(path)):
        assert explorer.read_export(source) == runs
    single = explorer.read_export(explorer.export_html(runs["greedy"]))
    assert single == {"greedy": runs["greedy"]}


def test_hostile_text_stays_text(hostile_page: tuple[dict[str, Trace], str]) -> None:
    """Token text, the prompt, the result texts and a panel's name full of markup make no element and no handler,
    and come back from the page unchanged."""
    traces, page = hostile_page
    tags = elements(page)
    assert not [t for t, _ in tags if t in ("img", "svg", "marquee", "iframe")]
    assert not [(t, a) for t, a in tags for name in a if name.startswith("on")]
    assert page.count("</script>") == len([t for t, _ in tags if t == "script"])
    assert page.count("</style>") == len([t for t, _ in tags if t == "style"])
    assert "__pwned" in page  # the attacks are there, as text
    assert explorer.read_export(page) == traces


def test_read_export_refuses_with_one_line(runs: dict[str, Trace], tmp_path: Path) -> None:
    """Not a page, a page without a trace, a broken trace (named by its panel), a missing file."""
    cases: list[tuple[Any, str]] = [
        ('{"version": "1.4"}', "is not an HTML page"),
        ("<!DOCTYPE html><p>hello", "holds no trace"),
        (tmp_path / "missing.html", "does not exist"),
        (b"<!DOCTYPE html>\xff\xfe", "not UTF-8"),
    ]
    page = explorer.export_html(runs)
    cases.append((page.replace(f'"version":"{explorer.trace.FORMAT_VERSION}"', '"version":"7.0"', 1), "panel greedy"))
    for source, message in cases:
        with pytest.raises(explorer.TraceFormatError, match=message) as caught:
            explorer.read_export(source)
        assert "\n" not in str(caught.value)


def test_export_refuses_bad_input(runs: dict[str, Trace], tmp_path: Path) -> None:
    """A folder that does not exist, no trace, an unknown theme: one-line errors."""
    bad: list[tuple[dict[str, Any], str]] = [
        ({"traces": runs, "path": tmp_path / "no" / "run.html"}, "existing folder"),
        ({"traces": {}}, "at least one trace"),
        ({"traces": runs, "theme": "blue"}, "'light' or 'dark'"),
    ]
    for kwargs, message in bad:
        with pytest.raises(explorer.ParameterError, match=message):
            explorer.export_html(**kwargs)


# --- the uncertainty colouring ----------------------------------------------------------------------------------


def test_token_uncertainty_reads_the_chooser_s_entropy(runs: dict[str, Trace]) -> None:
    """Token ``i`` of a result gets the entropy of the hypothesis of ``i`` tokens on its path, and its candidate's
    probability."""
    trace = runs["beam 3"]
    for result in trace.results:
        tokens = token_uncertainty(trace, result)
        assert [t.token_id for t in tokens] == list(result.token_ids)
        for i, t in enumerate(tokens):
            choosers = [h for s in trace.steps for h in s.hypotheses if h.token_ids == result.token_ids[:i]]
            assert t.entropy in {h.entropy for h in choosers}
            assert t.prob is not None
            assert 0 < t.prob <= 1


def test_bins_are_fixed_and_legible(runs: dict[str, Trace]) -> None:
    """Every token sits in the bin its number says; text on every bin's colour reads at 4.5:1 in both themes."""
    for theme in ("light", "dark"):
        for fill, ink in _fills(theme):  # type: ignore[arg-type]
            assert contrast_ratio(ink, fill) >= 4.5
    trace = runs["greedy"]
    html_text = uncertainty_html(trace, by="entropy", css=False)
    tokens = token_uncertainty(trace, trace.results[0])
    edges = (0.5, 1, 2, 3.5, 5, 7)
    expected = [sum(t.entropy / math.log(2) >= e for e in edges) for t in tokens if t.entropy is not None]
    assert [int(b) for b in re.findall(r'class="explorer-token explorer-u(\d)"', html_text)] == expected
    assert uncertainty_legend("entropy", css=False).count("explorer-swatch") == 8


def test_an_older_trace_shows_what_it_lacks(runs: dict[str, Trace]) -> None:
    """A trace without entropies (format 1.3 and before) still colours by probability; by entropy each token is
    outlined as not recorded."""
    doc = trace_to_dict(runs["greedy"])
    doc["version"] = "1.3"
    for step in doc["steps"]:
        for h in step["hypotheses"]:
            h.pop("entropy")
    old = explorer.trace_io.loads_trace(json.dumps(doc))
    by_entropy = uncertainty_html(old, by="entropy", css=False)
    assert by_entropy.count("explorer-unrecorded") == len(old.results[0].token_ids)
    assert "entropy not recorded" in by_entropy
    assert "explorer-unrecorded" not in uncertainty_html(old, by="probability", css=False)


# --- the command line -------------------------------------------------------------------------------------------


def test_cli_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--html`` writes the page, which holds the run's trace."""
    path = tmp_path / "run.html"
    assert main(["trace", "--model", "tiny-random", "--prompt", "hello world", "--strategy", "beam",
                 "--max-new-tokens", "3", "--html", str(path), "--theme", "dark"]) == 0
    assert f"page written to {path}" in capsys.readouterr().out
    (trace,) = explorer.read_export(path).values()
    assert trace.strategy == "beam"


@pytest.mark.parametrize("where", ["missing-folder", "folder"])
def test_cli_refuses_a_bad_path_before_decoding(where: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A page that cannot be written: exit 2, one line on stderr, nothing decoded (no summary printed)."""
    path = tmp_path / "no" / "run.html" if where == "missing-folder" else tmp_path
    assert main(["trace", "--model", "tiny-random", "--prompt", "hello", "--html", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("decoding-explorer: error: --html=")


def test_runs_of_several_prompts_show_each(runs: dict[str, Trace], tiny: CausalLM) -> None:
    """Loaded traces of other prompts share a page: each prompt is shown with its panels, each trace comes back."""
    other = explorer.decode(tiny, "another prompt", "greedy", max_new_tokens=2)
    traces = {**runs, "other": other}
    page = explorer.export_html(traces)
    assert "another prompt" in page
    assert page.count('class="prompt"') == 2
    assert explorer.read_export(page) == traces


def test_the_trace_loader_points_at_read_export(runs: dict[str, Trace]) -> None:
    """A page given to the JSON loader says how to read it."""
    with pytest.raises(explorer.TraceFormatError, match=r"explorer\.read_export reads its traces"):
        explorer.trace_io.loads_trace(explorer.export_html(runs).encode("utf-8"), source="run.html")
