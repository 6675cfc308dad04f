"""The Voila app as a shared classroom server: N students at once on one machine, in headless Chromium.

Usage: ``python benchmarks/load_test.py [--models smollm2-135m,tiny-random] [--sessions 5] [--tokens 30]
[--beams 4] [--session-timeout 600] [--deadline 2400] [--json benchmarks/out/load_test.json]``

For each model, one Voila server as ``make app`` starts it (the harness's ``VoilaServer``: loopback only, its
template and theme, Jupyter state in a temporary folder, the model cache of ``$XDG_CACHE_HOME``, offline), and
from this process ``--sessions`` sessions in one Chromium, one browser context (hence one kernel) each:

* all sessions ask for the page at the same moment; time to interactive is from then to a usable Run button;
* each types its own prompt, keeps one panel, a ``--beams``-beam beam search with ``--tokens`` max new tokens;
* all click Run at (nearly) the same moment; run time is from a session's click to its status saying ``done``;
* isolation: each page shows one panel, and its summary table's best text equals what ``explorer.decode`` gives
  for that session's prompt (computed here after the server has stopped), and differs from the other sessions';
* memory: ``VmRSS`` (and the peak, ``VmHWM``) from ``/proc/<pid>/status`` of the Voila process and of each kernel
  (its children; a kernel is matched to its session through the kernel id in the page's websocket URL), with no
  page open, with every session loaded, and after the runs, plus the highest total seen while the runs went on.

Every wait is bounded (``--session-timeout`` per session and phase) and a watchdog stops the servers and exits
after ``--deadline`` seconds. The table is printed, the JSON written to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from browser_harness import (  # noqa: E402
    RUN_READY,
    STATUS_WATCH,
    AppPage,
    VoilaServer,
    chromium,
    new_context,
    peek,
    watch,
)

PROMPTS = (
    "The secret to a good loaf of bread is",
    "My favourite planet is Mars because",
    "To learn a new language quickly, you should",
    "The best way to fix a flat bicycle tyre is",
    "Once upon a time, a dragon lived in",
    "The stock market fell today after",
    "A healthy breakfast should include",
    "The first rule of programming is",
)

#: JS: the run is over (the status line changed since ``STATUS_WATCH`` and starts with done, stopped or error).
RUN_OVER = """() => { const s = document.querySelector('.explorer-status');
  return window.__explorerStatusChanges > 0 && !!s && /^(done|stopped|error)/.test(s.textContent.trim()); }"""

#: JS: what the page shows: its panels' headers and the summary table's rows (panel name and full text).
PAGE_CONTENT = """() => ({
  panels: [...document.querySelectorAll('.explorer-panel')].map(p => (p.querySelector('b') || {}).textContent || ''),
  rows: [...document.querySelectorAll('table.explorer-summary tbody tr')].map(tr => {
    const td = tr.querySelectorAll('td');
    return {panel: td[0].textContent, rank: td[2].textContent, text: td[td.length - 1].getAttribute('title') || ''};
  }),
})"""

KERNEL_ID = re.compile(r"/api/kernels/([0-9a-f-]{36})/channels")


@dataclass
class Session:
    index: int
    prompt: str
    app: AppPage | None = None
    kernel_id: str = ""
    asked_at: float = 0.0
    tti_s: float | None = None
    clicked_at: float = 0.0
    run_s: float | None = None
    status: str = ""
    decode_s: float | None = None
    panels: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expected: str | None = None
    isolated: bool | None = None


def proc_mem(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of a process in MB (empty when it is gone)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def snapshot(server: VoilaServer, sessions: list[Session]) -> dict[str, Any]:
    """Memory of the Voila process and of each kernel (named by its session when known), and the total, in MB."""
    assert server.proc is not None
    by_kernel = {s.kernel_id: s.index for s in sessions if s.kernel_id}
    kernels: list[dict[str, Any]] = []
    for kid, pid in sorted(server.kernel_processes().items(), key=lambda item: item[1]):
        mem = proc_mem(pid)
        if mem:
            kernels.append({"pid": pid, "kernel_id": kid, "session": by_kernel.get(kid), **mem})
    voila = proc_mem(server.proc.pid)
    total = voila.get("VmRSS", 0.0) + sum(float(k["VmRSS"]) for k in kernels)
    available = psutil.virtual_memory().available / 2**20
    return {"voila": voila, "kernels": kernels, "total_rss_mb": total, "available_mb": available}


def poll(sessions: list[Session], predicate: str, pending: set[int], mark: str, deadline_s: float,
         on_tick: Any = None) -> None:
    """Evaluate ``predicate`` in every pending session's page, round-robin, until all are true or time is up;
    store the seconds from ``asked_at`` (``mark="tti"``) or ``clicked_at`` (``mark="run"``)."""
    start = time.perf_counter()
    while pending:
        for s in [sessions[i] for i in sorted(pending)]:
            assert s.app is not None
            try:
                ready = bool(peek(s.app.page, predicate))
            except Exception:  # the page is navigating (its context was replaced) or did not answer in time
                ready = False
            now = time.perf_counter()
            if ready:
                if mark == "tti":
                    s.tti_s = now - s.asked_at
                else:
                    s.run_s = now - s.clicked_at
                pending.discard(s.index)
        if on_tick is not None:
            on_tick()
        if pending and time.perf_counter() - start > deadline_s:
            for i in pending:
                sessions[i].errors.append(f"timed out after {deadline_s:.0f} s waiting for {mark}")
            return
        if pending:
            sessions[min(pending)].app.page.wait_for_timeout(200)  # type: ignore[union-attr]


def set_up_beam_panel(s: Session, tokens: int, beams: int) -> None:
    """In a session's page: its own prompt, ``tokens`` max new tokens, one panel, beam search with ``beams`` beams
    (a failure is noted among the session's errors)."""
    assert s.app is not None
    try:
        s.app.type_prompt(s.prompt)
        s.app.fill(".explorer-max-new-tokens input", str(tokens), tokens, "max new tokens")
        s.app.ensure_panels(1)
        s.app.set_strategy(0, "beam")
        s.app.set_knob(0, "num-beams", str(beams))
    except Exception as exc:
        s.errors.append(f"set-up: {str(exc).splitlines()[0]}")


def run_model(model: str, args: argparse.Namespace, state: Path) -> dict[str, Any]:
    """One server, ``args.sessions`` concurrent sessions; everything measured, as a dict."""
    env_model = None if model in ("", "default", "smollm2-135m") else model
    server = VoilaServer(state, model=env_model)
    sessions = [Session(i, PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (#{i})"))
                for i in range(args.sessions)]
    out: dict[str, Any] = {"model": model, "sessions_n": args.sessions, "tokens": args.tokens, "beams": args.beams,
                           "cpus": os.cpu_count(), "memory": {}}
    peak = {"total_rss_mb": 0.0}

    def sample() -> None:
        snap = snapshot(server, sessions)
        peak["total_rss_mb"] = max(peak["total_rss_mb"], snap["total_rss_mb"])

    with chromium() as browser:
        server.start()
        try:
            out["listen_s"] = server.wait_listening(timeout=120)
            time.sleep(2)
            out["memory"]["idle"] = snapshot(server, sessions)
            for s in sessions:
                page = new_context(browser).new_page()
                seen = watch(page)

                def on_ws(ws: Any, s: Session = s) -> None:
                    match = KERNEL_ID.search(ws.url)
                    if match:
                        s.kernel_id = match.group(1)

                page.on("websocket", on_ws)
                s.app = AppPage(page, seen, server, f"load-{s.index}")
            # everyone asks for the page at once: navigations started from the page return at once
            for s in sessions:
                assert s.app is not None
                s.asked_at = time.perf_counter()
                s.app.page.evaluate("(url) => { window.location.href = url; }", server.url)
            print(f"  {model}: {args.sessions} sessions loading ...", flush=True)
            poll(sessions, RUN_READY, {s.index for s in sessions}, "tti", args.session_timeout, sample)
            out["peak_while_loading_mb"] = peak["total_rss_mb"]
            ready = [s for s in sessions if s.tti_s is not None]
            for s in ready:  # the same set-up in every session: one 4-beam panel, its own prompt
                set_up_beam_panel(s, args.tokens, args.beams)
            out["memory"]["loaded"] = snapshot(server, sessions)
            peak["total_rss_mb"] = 0.0
            clicked = [s for s in ready if not s.errors]
            print(f"  {model}: {len(clicked)} sessions run ...", flush=True)
            for s in clicked:  # everyone clicks Run (as close together as one driver can)
                assert s.app is not None
                s.app.page.evaluate(STATUS_WATCH)
                s.clicked_at = time.perf_counter()
                s.app.page.locator("button.explorer-run, .explorer-run button").first.click()
            poll(sessions, RUN_OVER, {s.index for s in clicked}, "run", args.session_timeout, sample)
            out["peak_while_running_mb"] = peak["total_rss_mb"]
            out["memory"]["after"] = snapshot(server, sessions)
            for s in sessions:
                if s.app is None:
                    continue
                s.status = s.app.status()
                if s.run_s is not None and not s.status.startswith("done"):
                    s.errors.append(f"status: {s.status}")
                try:
                    content = s.app.page.evaluate(PAGE_CONTENT)
                    s.panels, s.rows = list(content["panels"]), list(content["rows"])
                    caption = s.app.panel(0).locator(".explorer-results caption").first.inner_text(timeout=5000)
                    match = re.search(r"steps in ([\d.]+) s", caption)
                    s.decode_s = float(match.group(1)) if match else None
                except Exception as exc:
                    s.errors.append(f"reading the page: {str(exc).splitlines()[0]}")
                s.errors += [f"page: {e}" for e in s.app.seen.page_errors]
                s.errors += [f"console: {e}" for e in s.app.seen.console_errors]
                s.errors += [f"external request: {u}" for u in s.app.seen.external]
                s.app.page.context.close()
        finally:
            server.stop()
    out["sessions"] = sessions
    return out


def check_isolation(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Each session's page shows one panel, and its best text is its own prompt's beam search result."""
    import html

    import explorer
    from explorer.figures._style import esc  # how the summary table writes a text (newlines as ⏎, ...)

    sessions: list[Session] = result["sessions"]
    model = explorer.load_model(result["model"])
    for s in sessions:
        trace = explorer.decode(model, s.prompt, strategy="beam", num_beams=args.beams, max_new_tokens=args.tokens)
        s.expected = html.unescape(esc(trace.results[0].text, quote=True))  # as the title attribute reads
        names = {row["panel"] for row in s.rows}
        ranked = sorted((int(row["rank"]), row["text"]) for row in s.rows if row["rank"].strip().isdigit())
        best = ranked[0][1] if ranked else None
        s.isolated = len(s.panels) == 1 and len(names) == 1 and best == s.expected
    texts = [s.expected for s in sessions]
    result["expected_texts_distinct"] = len(set(texts)) == len(texts)


def table(result: dict[str, Any]) -> str:
    mem = result["memory"]
    after = {k["session"]: k for k in mem.get("after", {}).get("kernels", [])}
    loaded = {k["session"]: k for k in mem.get("loaded", {}).get("kernels", [])}
    lines = [f"\n{result['model']}: {result['sessions_n']} sessions, beam search {result['beams']} beams, "
             f"{result['tokens']} max new tokens, {result['cpus']} CPUs",
             f"{'#':>2s} {'TTI':>7s} {'run':>7s} {'decode':>7s} {'loaded MB':>9s} {'after MB':>9s} {'peak MB':>8s} "
             f"{'isolated':>8s} {'errors':>6s}  prompt"]
    for s in result["sessions"]:
        k_loaded, k_after = loaded.get(s.index, {}), after.get(s.index, {})

        def num(value: float | None, fmt: str = "6.1f", unit: str = "s") -> str:
            return "   -   " if value is None else f"{value:{fmt}}{unit}"

        lines.append(f"{s.index:2d} {num(s.tti_s)} {num(s.run_s)} {num(s.decode_s)} "
                     f"{k_loaded.get('VmRSS', 0):9.0f} {k_after.get('VmRSS', 0):9.0f} {k_after.get('VmHWM', 0):8.0f} "
                     f"{s.isolated!s:>8s} {len(s.errors):6d}  {s.prompt}")
    for moment in ("idle", "loaded", "after"):
        snap = mem.get(moment)
        if snap:
            lines.append(f"{moment:7s} Voila {snap['voila'].get('VmRSS', 0):6.0f} MB, {len(snap['kernels'])} kernels "
                         f"{sum(k['VmRSS'] for k in snap['kernels']):7.0f} MB, total {snap['total_rss_mb']:7.0f} MB "
                         f"(available on the machine: {snap['available_mb']:.0f} MB)")
    lines.append(f"highest total seen while loading {result.get('peak_while_loading_mb', 0):.0f} MB, "
                 f"while running {result.get('peak_while_running_mb', 0):.0f} MB")
    for s in result["sessions"]:
        for error in s.errors[:3]:
            lines.append(f"  session {s.index}: {error[:200]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m", help="comma-separated; smollm2-135m is the app's default")
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--session-timeout", type=float, default=600.0, help="seconds per session and phase")
    parser.add_argument("--deadline", type=float, default=2400.0, help="seconds before the whole test stops itself")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "load_test.json")
    args = parser.parse_args()
    # the expected texts are decoded here: from the shared model cache, offline, as the server does
    os.environ.setdefault("XDG_CACHE_HOME", str(ROOT / ".state" / "cache"))
    os.environ.setdefault("HF_HOME", str(ROOT / ".state" / "huggingface"))
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")

    servers: list[VoilaServer] = []
    original_start = VoilaServer.start

    def tracked_start(self: VoilaServer) -> None:
        servers.append(self)
        original_start(self)

    VoilaServer.start = tracked_start  # type: ignore[method-assign]

    def give_up() -> None:
        print(f"\nload test: deadline of {args.deadline:.0f} s reached, stopping", file=sys.stderr, flush=True)
        for server in servers:
            server.stop()
        os._exit(3)

    watchdog = threading.Timer(args.deadline, give_up)
    watchdog.daemon = True
    watchdog.start()

    report: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="load-test-") as tmp:
        for i, model in enumerate(m.strip() for m in args.models.split(",") if m.strip()):
            result = run_model(model, args, Path(tmp) / f"voila{i}")
            check_isolation(result, args)
            print(table(result), flush=True)
            print(f"isolated: {all(s.isolated for s in result['sessions'])} (expected texts all differ: "
                  f"{result['expected_texts_distinct']})", flush=True)
            for s in result["sessions"]:
                s.app = None  # the page is closed; asdict would try to copy it
            result["sessions"] = [{k: v for k, v in asdict(s).items() if k != "app"} for s in result["sessions"]]
            report.append(result)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1))
    watchdog.cancel()
    print(f"\n(JSON in {args.json})")


if __name__ == "__main__":
    main()
