"""The Voila app as a user meets it: time to interactive, and time from Run to trees drawn, in headless Chromium.

Usage: ``python benchmarks/bench_app.py [--models smollm2-135m,tiny-random] [--run-model smollm2-135m]
[--tokens 30] [--beams 4] [--loads 3] [--json benchmarks/out/bench_app.json]``

For each model (``tiny-random`` through ``DECODING_EXPLORER_MODEL``; the default model from the cache in
``$XDG_CACHE_HOME``, by default ``.state/cache``, offline):

* cold: from starting Voila to the first page with a usable Run button (the page is asked for as soon as the
  port listens; it includes starting a kernel, importing the app and loading the model);
* warm: from asking for the page to a usable Run button on the running server, each load in a fresh browser
  (nothing cached: the page's JavaScript and plotly's bundle travel again), ``--loads`` times;
* cached: the same in one browser with its cache on (a reload, a second visit), after one load that fills it;
* the bytes the page received over the kernel websocket until then, and how many widget models it holds;
* with ``--setups``, the warm time to interactive of the default model served three ways, one after the other:
  "class" as ``make app`` serves it (a pool of pre-heated kernels forked from the warm process, jupyterlab-plotly's
  extension not loaded, plotly's module a cached file: explorer/serve/assets.py), "class, module in state" (the same
  with plotly's module inside each figure widget's state, as before), "class, all extensions" (the same with every
  labextension), "no pool"
  (``--preheat_kernel=False``: each page starts its kernel, forked) and "before" (no pool, ordinary kernels, every
  extension: what ``make app`` did before the class issue); each load waits ``--gap`` seconds after the last (a
  pool refills).

Then, on ``--run-model``, one panel at a time: each strategy with ``--beams`` beams (beam family) and exactly
``--tokens`` new tokens (``min_new_tokens`` = ``max_new_tokens``), ``constrained`` with the phrase " flour",
seeded sampling, ``--repeats`` times (the quickest kept): the time from clicking Run to the status line saying
``done`` and the panel's new tree drawn, the decoding time the app reports, and the websocket bytes the run sent
to the page. Then all four beam-family and greedy strategies at once, as four panels (greedy, beam, diverse,
constrained): the app decodes them side by side in one batched run; the ratio against the sum of the same four
single-panel runs just measured is printed.

First of all, in a fresh Python process: the time to import the explorer and to load the default model from its
cache (the model load the app's kernel pays). Nothing is written outside ``.state`` and temporary folders; the
JSON goes to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from browser_harness import RUN_READY, AppPage, VoilaServer, chromium, new_context, watch  # noqa: E402

PROMPT = "The secret to a good loaf of bread is"
STRATEGIES = ("greedy", "sample", "beam", "beam-sample", "diverse", "constrained")
TOGETHER = ("greedy", "beam", "diverse", "constrained")
BEAMS = ("beam", "beam-sample", "diverse", "constrained")
SEEDED = ("sample", "beam-sample")
LOAD_TIMEOUT = 300.0
RUN_TIMEOUT = 600.0

#: JS: the tree figure's plotly element.
_TREE = """const root = document.querySelector('.explorer-tree');
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));"""

#: JS: mark the traces the tree figure shows now, to tell them from the next run's.
MARK_TREE = f"""() => {{ {_TREE}
  for (const t of (gd && gd.data) || []) t.__benchStale = true;
}}"""

#: JS: whether the tree figure shows new traces, a subplot titled ``key``, and markers drawn.
TREE_DRAWN = f"""(key) => {{ {_TREE}
  if (!gd || !gd.data || !gd.data.length || gd.data.some(t => t.__benchStale)) return false;
  const titles = [...gd.querySelectorAll('.infolayer .annotation-text')].map(e => e.textContent);
  return titles.includes(key) && gd.querySelectorAll('.scatterlayer .trace path.point').length > 0;
}}"""


#: Python: import the explorer, then load the default model from its cache; print both times as JSON.
LOAD_MODEL = """import json, time
began = time.perf_counter()
import explorer
imported = time.perf_counter()
explorer.load_model("smollm2-135m")
print(json.dumps({"import_s": imported - began, "load_s": time.perf_counter() - imported}))"""


def measure_model_load(repeats: int = 3) -> dict[str, float]:
    """Seconds to import ``explorer`` and to load SmolLM2 from the cache in a fresh process (best of ``repeats``)."""
    tries = [json.loads(subprocess.run([sys.executable, "-c", LOAD_MODEL], check=True, capture_output=True,
                                       text=True).stdout.strip().splitlines()[-1]) for _ in range(repeats)]
    return {key: min(t[key] for t in tries) for key in ("import_s", "load_s")}


def open_page(browser: Any, server: VoilaServer, timeout: float = LOAD_TIMEOUT) -> tuple[AppPage, float]:
    """A page on ``server`` in a fresh context, loaded until Run is usable, and the seconds from asking for it."""
    page = new_context(browser).new_page()
    seen = watch(page)
    app = AppPage(page, seen, server, "bench")
    start = time.perf_counter()
    page.goto(server.url, timeout=timeout * 1000, wait_until="domcontentloaded")
    app.wait("the Run button", RUN_READY, timeout)
    return app, time.perf_counter() - start


def measure_loads(model: str | None, loads: int, state: Path) -> dict[str, Any]:
    """Cold and warm time to interactive on a Voila server serving ``model`` (``None``: the app's default)."""
    server = VoilaServer(state, model=model)
    out: dict[str, Any] = {"model": model or "default (smollm2-135m)"}
    with chromium() as browser:
        server.start()
        try:
            out["listen_s"] = server.wait_listening(timeout=120)
            app, _ = open_page(browser, server)
            out["cold_s"] = time.perf_counter() - server.started_at
            out["cold_ws_mb"] = app.seen.ws_bytes_received / 1e6
            out["widgets"] = app.seen.widget_models
            out["status"] = app.status()
            app.page.context.close()
            warm: list[float] = []
            for _ in range(loads):
                app, seconds = open_page(browser, server)
                warm.append(seconds)
                out["warm_ws_mb"] = app.seen.ws_bytes_received / 1e6
                app.page.context.close()
            out["warm_s"] = warm
            out["cached_s"] = cached_loads(browser, server, loads)
        finally:
            server.stop()
    return out


def cached_loads(browser: Any, server: VoilaServer, loads: int, timeout: float = LOAD_TIMEOUT) -> list[float]:
    """Warm loads in one browser whose cache is on, as a student's reload or a second visit meets the page: one
    load fills the cache, then ``loads`` timed ones, each a new tab (with no request routing, which would turn
    Playwright's cache off: this page is not watched)."""
    context = new_context(browser)
    times: list[float] = []
    try:
        for i in range(loads + 1):
            page = context.new_page()
            start = time.perf_counter()
            page.goto(server.url, timeout=timeout * 1000, wait_until="domcontentloaded")
            page.wait_for_function(RUN_READY, timeout=timeout * 1000, polling=100)
            if i:
                times.append(time.perf_counter() - start)
            page.close()
            time.sleep(3)  # the pool refills
    finally:
        context.close()
    return times


ALL_EXTENSIONS = "--VoilaConfiguration.extension_denylist=none"  # every labextension, jupyterlab-plotly's included
SETUPS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "class": ((), {}),
    "class, module in state": ((), {"DECODING_EXPLORER_ASSETS": "off"}),
    "class, all extensions": ((ALL_EXTENSIONS,), {}),
    "no pool": (("--preheat_kernel=False",), {}),
    "before": (("--preheat_kernel=False", ALL_EXTENSIONS), {"EXPLORER_FORK": "0"}),
}


def measure_setups(model: str | None, loads: int, gap: float, state: Path) -> list[dict[str, Any]]:
    """Warm time to interactive of ``model`` under each of ``SETUPS`` (see the module's docstring)."""
    rows = []
    for name, (args, env) in SETUPS.items():
        server = VoilaServer(state / name.replace(" ", "-"), model=model, extra_args=args, env=env)
        with chromium() as browser:
            server.start()
            try:
                server.wait_listening(timeout=120)
                app, _ = open_page(browser, server)  # the first page: everything is warm after it
                app.page.context.close()
                warm, ws_mb = [], 0.0
                for _ in range(loads):
                    time.sleep(gap)
                    app, seconds = open_page(browser, server)
                    warm.append(seconds)
                    ws_mb = app.seen.ws_bytes_received / 1e6
                    app.page.context.close()
            finally:
                server.stop()
        rows.append({"setup": name, "warm_s": warm, "ws_mb": ws_mb})
        print(f"  {name:23s} warm: {', '.join(f'{s:.1f}' for s in warm)} s, websocket {ws_mb:.1f} MB", flush=True)
    return rows


def measure_runs(model: str | None, tokens: int, beams: int, repeats: int, state: Path) -> list[dict[str, Any]]:
    """Click Run for each strategy, one panel at a time, ``repeats`` times: seconds to trees drawn, decode
    seconds, bytes sent, of the quickest repeat (the first run of all also creates the details figure)."""
    server = VoilaServer(state, model=model)
    rows: list[dict[str, Any]] = []
    with chromium() as browser:
        server.start()
        try:
            server.wait_listening(timeout=120)
            app, _ = open_page(browser, server)
            app.type_prompt(PROMPT)
            app.fill(".explorer-max-new-tokens input", str(tokens), tokens, "max new tokens")
            app.ensure_panels(1)
            for strategy in STRATEGIES:
                app.set_strategy(0, strategy)
                app.set_knob(0, "min-new-tokens", str(tokens))
                if strategy in BEAMS:
                    app.set_knob(0, "num-beams", str(beams))
                if strategy in SEEDED:
                    app.set_knob(0, "seed", "0", text=True)
                if strategy == "constrained":
                    app.fill(".explorer-constraints textarea", " flour", " flour", "the constraint")
                key = app.panel(0).locator("b").first.inner_text().strip()
                tries = []
                for _ in range(repeats):
                    app.page.evaluate(MARK_TREE)
                    received = app.seen.ws_bytes_received
                    start = time.perf_counter()
                    status = app.click_run(timeout=RUN_TIMEOUT)
                    done = time.perf_counter() - start
                    app.wait(f"the {strategy} tree", TREE_DRAWN, RUN_TIMEOUT, key)
                    drawn = time.perf_counter() - start
                    caption = app.panel(0).locator(".explorer-results caption").first.inner_text()
                    match = re.search(r"(\d+) steps in ([\d.]+) s", caption)
                    tries.append({
                        "strategy": strategy, "status": status, "steps": int(match.group(1)) if match else None,
                        "decode_s": float(match.group(2)) if match else None, "done_s": done, "drawn_s": drawn,
                        "ws_mb": (app.seen.ws_bytes_received - received) / 1e6,
                        "all_drawn_s": [],
                    })  # fmt: skip
                best = min(tries, key=lambda r: r["drawn_s"])
                best["all_drawn_s"] = [r["drawn_s"] for r in tries]
                rows.append(best)
                drawn, status = best["drawn_s"], best["status"]
                print(f"  {strategy:12s} {drawn:6.2f} s  ({status})", flush=True)
            rows.append(measure_together(app, rows, tokens, beams, repeats))
            rows.append({"errors": app.seen.page_errors + app.seen.console_errors, "external": app.seen.external})
            app.page.context.close()
        finally:
            server.stop()
    return rows


def measure_together(app: AppPage, rows: list[dict[str, Any]], tokens: int, beams: int,
                     repeats: int) -> dict[str, Any]:
    """Greedy, beam, diverse and constrained as four panels in one Run (decoded side by side), the quickest of
    ``repeats``, against the sum of their single-panel times in ``rows``."""
    app.ensure_panels(len(TOGETHER))
    for index, strategy in enumerate(TOGETHER):
        app.set_strategy(index, strategy)
        app.set_knob(index, "min-new-tokens", str(tokens))
        if strategy in BEAMS:
            app.set_knob(index, "num-beams", str(beams))
    app.fill(".explorer-constraints textarea", " flour", " flour", "the constraint")
    key = app.panel(len(TOGETHER) - 1).locator("b").first.inner_text().strip()
    tries = []
    for _ in range(repeats):
        app.page.evaluate(MARK_TREE)
        start = time.perf_counter()
        status = app.click_run(timeout=RUN_TIMEOUT)
        app.wait("the four trees", TREE_DRAWN, RUN_TIMEOUT, key)
        tries.append((time.perf_counter() - start, status))
    drawn, status = min(tries)
    alone = sum(r["drawn_s"] for r in rows if r.get("strategy") in TOGETHER)
    print(f"  together     {drawn:6.2f} s  ({status})", flush=True)
    return {"together": list(TOGETHER), "drawn_s": drawn, "status": status, "separate_drawn_s": alone,
            "ratio": drawn / alone}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m,tiny-random",
                        help="models to time the page load with (smollm2-135m: the app's default)")
    parser.add_argument("--run-model", default="smollm2-135m", help="model for the Run timings ('' to skip)")
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--loads", type=int, default=3, help="warm page loads per model")
    parser.add_argument("--repeats", type=int, default=2, help="runs per strategy (the quickest is kept)")
    parser.add_argument("--setups", type=int, default=5, help="warm loads per setup (SETUPS); 0: none")
    parser.add_argument("--gap", type=float, default=8.0, help="seconds between two warm loads of a setup")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "bench_app.json")
    args = parser.parse_args()

    def env_model(name: str) -> str | None:
        return None if name in ("", "default", "smollm2-135m") else name

    report: dict[str, Any] = {"loads": [], "runs": [], "setups": []}
    print("model load from the cache (fresh process) ...", flush=True)
    report["model_load"] = measure_model_load()
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        for i, name in enumerate(m.strip() for m in args.models.split(",") if m.strip()):
            print(f"page loads, {name} ...", flush=True)
            report["loads"].append(measure_loads(env_model(name), args.loads, Path(tmp) / f"load{i}"))
        if args.setups:
            print(f"warm page loads of {args.models.split(',')[0]} by setup ...", flush=True)
            report["setups"] = measure_setups(env_model(args.models.split(",")[0].strip()), args.setups, args.gap,
                                              Path(tmp) / "setups")
        if args.run_model:
            print(f"runs on {args.run_model}, {args.beams} beams, {args.tokens} tokens ...", flush=True)
            report["runs"] = measure_runs(env_model(args.run_model), args.tokens, args.beams, args.repeats,
                                          Path(tmp) / "runs")

    load = report["model_load"]
    print(f"\nfresh process: import explorer {load['import_s']:.1f} s, load smollm2-135m from the cache "
          f"{load['load_s']:.1f} s")
    print("\nVoila time to interactive (Run button usable)")
    print(f"{'model':24s} {'listen':>7s} {'cold':>7s} {'warm med':>9s} {'warm min':>9s} {'cached med':>11s} "
          f"{'cached min':>11s} {'ws MB':>6s} {'widgets':>8s}")
    for row in report["loads"]:
        warm = row["warm_s"] or [float("nan")]
        cached = row["cached_s"] or [float("nan")]
        print(f"{row['model']:24s} {row['listen_s']:6.1f}s {row['cold_s']:6.1f}s {statistics.median(warm):8.1f}s "
              f"{min(warm):8.1f}s {statistics.median(cached):10.1f}s {min(cached):10.1f}s {row['cold_ws_mb']:6.1f} "
              f"{row['widgets']:8d}")
    if report["setups"]:
        print(f"\nwarm time to interactive by setup ({args.setups} loads, {args.gap:.0f} s apart)")
        print(f"{'setup':23s} {'median':>7s} {'best':>6s} {'worst':>6s} {'websocket':>9s}")
        for row in report["setups"]:
            warm = row["warm_s"]
            print(f"{row['setup']:23s} {statistics.median(warm):6.1f}s {min(warm):5.1f}s {max(warm):5.1f}s "
                  f"{row['ws_mb']:7.1f} MB")
    runs = [r for r in report["runs"] if "strategy" in r]
    together = next((r for r in report["runs"] if "together" in r), None)
    if runs:
        print(f"\nRun -> trees drawn, {args.run_model}, one panel, {args.beams} beams, {args.tokens} tokens")
        print(f"{'strategy':12s} {'steps':>5s} {'decode':>7s} {'done':>7s} {'drawn':>7s} {'overhead':>8s} "
              f"{'ws MB':>6s}")
        for r in runs:
            decode = r["decode_s"] if r["decode_s"] is not None else float("nan")
            print(f"{r['strategy']:12s} {r['steps'] or 0:5d} {decode:6.2f}s {r['done_s']:6.2f}s {r['drawn_s']:6.2f}s "
                  f"{r['drawn_s'] - decode:7.2f}s {r['ws_mb']:6.2f}")
        if together:
            print(f"\n{', '.join(together['together'])} as four panels in one Run: {together['drawn_s']:.2f} s "
                  f"against {together['separate_drawn_s']:.2f} s for the four single-panel runs above "
                  f"(ratio {together['ratio']:.2f})")
        extra = report["runs"][-1]
        if extra.get("errors") or extra.get("external"):
            print(f"page errors: {extra['errors']}; requests to other hosts: {extra['external']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\n(JSON in {args.json})")


if __name__ == "__main__":
    main()
