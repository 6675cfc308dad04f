"""Exploring a big search in the app, as a lecturer does after Run: click a node, move the scrubber, change colours.

Usage: ``python benchmarks/bench_explore.py [--beams 16] [--tokens 60] [--repeats 5] [--size 1920x1080]
[--model smollm2-135m] [--json benchmarks/out/bench_explore.json]``

One Voila server as ``make app`` serves it (the default model from the cache in ``$XDG_CACHE_HOME``, by default
``.state/cache``, offline), one headless Chromium page of ``--size``, two panels: beam search and diverse beam search
(4 groups), each with ``--beams`` beams and exactly ``--tokens`` new tokens (``min_new_tokens`` = ``max_new_tokens``),
pruned candidates shown (the default). After one Run, each action ``--repeats`` times, in the browser, from the
user's input to the page showing its result (plotly's ``afterplot`` included):

* **click to details**: a click on a hypothesis of the tree (a different one each time, alternating panels) until
  the selection line names it, the details figure shows its candidates and the tree rings it;
* **scrubber**: typing a step into the scrubber's readout (Enter) until the tree shows only what steps up to it
  decided (the deepest hypothesis drawn is that step's);
* **colouring**: choosing "colour by" (score -> logprob -> group -> score ...) until the tree is drawn in it.

Printed and written to ``--json``: each action's median and worst seconds, the bytes the kernel sent to the page
per action (websocket frames), the points in the tree figure, and the run's own status line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_app import open_page  # noqa: E402
from browser_harness import NODE_POSITION, VoilaServer, chromium  # noqa: E402

PROMPT = "Give me a recipe for bread:"
RUN_TIMEOUT = 900.0
ACTION_TIMEOUT = 60.0

_TREE = """const root = document.querySelector('.explorer-tree');
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));"""

#: JS: count the tree figure's and the details figure's redraws (plotly's ``afterplot``), once per figure element.
COUNT_DRAWS = """() => {
  for (const sel of ['.explorer-tree', '.explorer-details']) {
    const root = document.querySelector(sel);
    const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
    if (gd && !gd.__benchCounted) {
      gd.__benchCounted = true;
      gd.__benchDraws = 0;
      gd.on('plotly_afterplot', () => { gd.__benchDraws += 1; });
    }
  }
}"""

#: JS: the tree's redraw count, its points, the deepest hypothesis drawn, the ring's node, the colour bar's title.
TREE_STATE = f"""() => {{ {_TREE}
  if (!gd || !gd.data) return null;
  let points = 0, deepest = -1;
  for (const t of gd.data) {{
    const xs = t.x || [];
    points += xs.length;
    if (t.name === 'hypothesis') for (const x of xs) if (x !== null && x > deepest) deepest = x;
  }}
  const shape = (gd.layout.shapes || []).find(s => String(s.name || '').startsWith('selected '));
  const ring = shape ? shape.name.slice('selected '.length) : null;
  const groups = gd.data.filter(t => /^group \\d+$/.test(t.name || '') && t.visible !== false).length;
  const bar = [...gd.querySelectorAll('.infolayer .annotation-text')].map(e => e.textContent)
    .find(t => /path score|token log-prob/.test(t)) || null;
  return {{draws: gd.__benchDraws || 0, points, deepest, ring, groups, bar}};
}}"""

#: JS: the details figure's redraw count and title.
DETAILS_STATE = """() => {
  const root = document.querySelector('.explorer-details');
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  if (!gd || !gd.layout) return null;
  return {draws: gd.__benchDraws || 0, title: (gd.layout.title && gd.layout.title.text) || ''};
}"""


def set_up(app: Any, beams: int, tokens: int) -> None:
    """The prompt, two panels (beam search, diverse beam search in 4 groups), ``beams`` beams, ``tokens`` tokens."""
    app.type_prompt(PROMPT)
    app.fill(".explorer-max-new-tokens input", str(tokens), tokens, "max new tokens")
    app.ensure_panels(2)
    for i, strategy in enumerate(("beam", "diverse")):
        app.set_strategy(i, strategy)
        app.set_knob(i, "min-new-tokens", str(tokens))
        app.set_knob(i, "num-beams", str(beams))
    app.set_knob(1, "num-beam-groups", "4")


def timed(app: Any, act: Any, done: str, arg: Any) -> tuple[float, int]:
    """Seconds from ``act()`` until the JS predicate ``done(arg)`` holds, and the websocket bytes received."""
    received = app.seen.ws_bytes_received
    start = time.perf_counter()
    act()
    app.page.wait_for_function(done, arg=arg, timeout=ACTION_TIMEOUT * 1000, polling="raf")
    return time.perf_counter() - start, app.seen.ws_bytes_received - received


#: JS: scroll the tree's scrolling ancestor by ``dy`` pixels (Voila scrolls inside a box, not the page).
SCROLL_BY = """(dy) => {
  let el = document.querySelector('.explorer-tree');
  while (el && !(el.scrollHeight > el.clientHeight + 4 && /auto|scroll/.test(getComputedStyle(el).overflowY))) {
    el = el.parentElement;
  }
  (el || document.scrollingElement).scrollBy(0, dy);
}"""


def node_in_view(app: Any, panel: str, depth: int) -> dict[str, Any]:
    """A hypothesis of ``panel`` at ``depth``, scrolled into the window; its position and node key."""
    app.page.locator(".explorer-tree").scroll_into_view_if_needed()
    target = app.page.evaluate(NODE_POSITION, [".explorer-tree", panel, depth])
    assert target is not None, f"no node of {panel} at depth {depth}"
    height = app.page.viewport_size["height"]
    if not 80 < target["y"] < height - 80:
        app.page.evaluate(SCROLL_BY, target["y"] - height / 2)
        app.page.wait_for_timeout(300)
        target = app.page.evaluate(NODE_POSITION, [".explorer-tree", panel, depth])
    return dict(target)


#: JS: from now on, note when (ms) the tree rings ``node``, the selection line names it, and the details figure shows
#: its candidates (each after one more redraw of its figure than ``tree``/``details`` counted).
WATCH_CLICK = f"""([node, tree, details]) => {{
  const t0 = performance.now();
  window.__benchMarks = {{}};
  const marks = window.__benchMarks;
  const check = () => {{
    const t = ({TREE_STATE})(), d = ({DETAILS_STATE})(), s = document.querySelector('.explorer-selection');
    const now = performance.now() - t0;
    if (marks.ring === undefined && t && t.ring === node && t.draws > tree) marks.ring = now;
    if (marks.selection === undefined && s && s.textContent.includes(node)) marks.selection = now;
    if (marks.details === undefined && d && d.draws > details && d.title.includes('Candidates of ' + node + ' '))
      marks.details = now;
    if (Object.keys(marks).length < 3) requestAnimationFrame(check);
  }};
  requestAnimationFrame(check);
}}"""


def click_nodes(app: Any, panels: list[str], repeats: int) -> list[tuple[float, int]]:
    """Click a hypothesis at a growing depth, alternating panels, until its candidates and ring show."""
    out = []
    for i in range(repeats):
        panel = panels[i % len(panels)]
        target = node_in_view(app, panel, 5 + 9 * i)
        app.page.mouse.move(target["x"], target["y"])
        app.page.wait_for_timeout(300)  # plotly picks the hovered point first
        tree, details = app.page.evaluate(TREE_STATE), app.page.evaluate(DETAILS_STATE)
        app.page.evaluate(WATCH_CLICK, [target["node"], tree["draws"], details["draws"] if details else 0])
        out.append(timed(app, lambda t=target: app.page.mouse.click(t["x"], t["y"]),
                         "() => Object.keys(window.__benchMarks).length === 3", None))
        marks = app.page.evaluate("() => window.__benchMarks")
        print(f"  click {target['node']:>8s} in {panel}: {out[-1][0]:.2f} s, {out[-1][1] / 1e6:.2f} MB (ring "
              f"{marks['ring'] / 1e3:.2f} s, selection line {marks['selection'] / 1e3:.2f} s, details "
              f"{marks['details'] / 1e3:.2f} s)", flush=True)
    return out


def scrub(app: Any, steps: list[int]) -> list[tuple[float, int]]:
    """Type each step into the scrubber's readout until the tree shows what steps up to it decided."""
    out = []
    readout = app.page.locator(".explorer-scrubber .widget-readout")
    for step in steps:
        readout.scroll_into_view_if_needed()
        before = app.page.evaluate(TREE_STATE)

        def act(step: int = step) -> None:
            readout.click()
            app.page.keyboard.press("Control+A")
            app.page.keyboard.type(str(step))
            app.page.keyboard.press("Enter")

        done = f"""([draws, deepest]) => {{ const t = ({TREE_STATE})();
                   return !!t && t.draws > draws && t.deepest !== deepest; }}"""
        try:
            out.append(timed(app, act, done, [before["draws"], before["deepest"]]))
        except Exception as exc:
            shot = app.shot(f"scrub-{step}-failed", window=True)
            print(f"  scrub to {step:3d}: FAILED {str(exc).splitlines()[0]}; readout {readout.inner_text()!r}, "
                  f"tree {app.page.evaluate(TREE_STATE)}, before {before}, page errors {app.seen.page_errors}, "
                  f"console {app.seen.console_errors[-3:]}, screenshot {shot}", flush=True)
            out.append((float("inf"), 0))
            continue
        after = app.page.evaluate(TREE_STATE)
        print(f"  scrub to {step:3d}: {out[-1][0]:.2f} s, {out[-1][1] / 1e6:.2f} MB, {after['points']} points, "
              f"deepest {after['deepest']}", flush=True)
    return out


def colour(app: Any, repeats: int) -> list[tuple[float, int]]:
    """Choose the next colouring each time until the tree is drawn in it (its colour bar, or its groups)."""
    out = []
    modes = ["logprob", "group", "score"]
    select = app.page.locator(".explorer-tree-color select")
    for i in range(repeats):
        mode = modes[i % len(modes)]
        select.scroll_into_view_if_needed()
        before = app.page.evaluate(TREE_STATE)
        done = f"""([draws, mode]) => {{ const t = ({TREE_STATE})();
          if (!t || t.draws <= draws) return false;
          return mode === 'group' ? t.groups > 0 && t.bar === null
            : t.bar === (mode === 'score' ? 'path score (summed)' : 'token log-prob'); }}"""
        out.append(timed(app, lambda m=mode: select.select_option(m), done, [before["draws"], mode]))
        print(f"  colour by {mode:8s}: {out[-1][0]:.2f} s, {out[-1][1] / 1e6:.2f} MB", flush=True)
    return out


def stats(rows: list[tuple[float, int]]) -> dict[str, float]:
    seconds = [s for s, _ in rows]
    return {"median_s": statistics.median(seconds), "worst_s": max(seconds), "best_s": min(seconds),
            "median_mb": statistics.median(b for _, b in rows) / 1e6, "n": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", default="1920x1080", help="the window, WIDTHxHEIGHT")
    parser.add_argument("--model", default="smollm2-135m", help="DECODING_EXPLORER_MODEL ('smollm2-135m': default)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "bench_explore.json")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    model = None if args.model in ("", "default", "smollm2-135m") else args.model
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="bench-explore-") as tmp, chromium() as browser:
        server = VoilaServer(Path(tmp), model=model)
        server.start()
        try:
            server.wait_listening(timeout=120)
            app, _ = open_page(browser, server)
            app.page.set_viewport_size({"width": width, "height": height})
            set_up(app, args.beams, args.tokens)
            status = app.click_run(timeout=RUN_TIMEOUT)
            assert status.startswith("done"), status
            app.wait("both trees", f"() => {{ {_TREE} return !!gd && !!gd.data && gd.data.length > 0 && "
                     "gd.querySelectorAll('.cartesianlayer > .subplot').length === 2; }", RUN_TIMEOUT)
            app.page.wait_for_timeout(2000)  # the details figure after the run, the width probe's redraw
            app.page.evaluate(COUNT_DRAWS)
            panels = app.page.evaluate(f"() => {{ {_TREE} return [...new Set(gd.data.filter(t => t.customdata && "
                                       "t.customdata.length).map(t => t.customdata[0][0]))]; }")
            result.update(status=status, panels=panels, points=app.page.evaluate(TREE_STATE)["points"])
            print(f"{status}\n{len(panels)} panels, {result['points']} points in the tree figure", flush=True)
            result["click"] = stats(click_nodes(app, panels, args.repeats))
            result["scrub"] = stats(scrub(app, [args.tokens // 2, args.tokens // 4, 3 * args.tokens // 4,
                                                args.tokens // 3, args.tokens - 5][:args.repeats]))
            result["colour"] = stats(colour(app, args.repeats))
            result["errors"] = app.seen.page_errors + app.seen.console_errors
        finally:
            server.stop()
    for name in ("click", "scrub", "colour"):
        r = result[name]
        print(f"{name:7s} median {r['median_s']:.2f} s, worst {r['worst_s']:.2f} s, {r['median_mb']:.2f} MB sent")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"(JSON in {args.json})")


if __name__ == "__main__":
    main()
