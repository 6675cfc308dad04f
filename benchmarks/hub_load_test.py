"""JupyterHub under a class: N students at once on this machine, each in their own server, in headless Chromium.

Usage: ``python benchmarks/hub_load_test.py [--students 20] [--tokens 30] [--beams 4] [--mem-limit 2G]
[--timeout 1500] [--json benchmarks/out/hub_load_test.json]``

One JupyterHub as ``make hub`` starts it (``tests/browser/hub_harness.py``: docs/deploy/jupyterhub_config.py, its
state in a temporary folder, the proxy from ``make``'s npm install, the default model SmolLM2 from the prepared
cache, every student's server in a memory cgroup of ``--mem-limit``), and ``--students`` students in one Chromium,
a browser context each:

* all log in at once, each straight to the app (the login's ``next`` is the hub's spawn page, whose ``next`` is
  ``/user/<name>/voila/render/app.ipynb``): "log in" is from the click to the browser asking for the app's page
  (the student's server started); time to interactive is from asking for the app's page to a usable Run button
  (the page's kernel starts, imports the app and maps the model). Both are read in the page
  (``performance.timeOrigin`` and a 50 ms check of the Run button), not by polling 20 pages from here;
* each types its own prompt, keeps one panel, a ``--beams``-beam beam search of ``--tokens`` new tokens; all click
  Run at (nearly) the same moment: run latency is from the click to the status saying ``done``, read in the page;
* then each clicks a node of its tree: from the click to the selection line naming it;
* memory, after the pages are interactive and after the runs: for each student, the PSS of their server and kernels
  (``smaps_rollup``) and what their cgroup is charged; the hub's and the proxy's PSS; the browser's (the students'
  20 browsers, on this machine only because the test drives them: in a class they are the students' own); what the
  machine has left, sampled every second all along (the lowest is reported);
* a guard: when the machine has less than ``--floor-mb`` available, it kills every student's processes and stops the
  hub, and the report says where that happened (the machine never runs out of memory);
* isolation: each page's best text equals ``explorer.decode`` on its own prompt (computed after the hub stopped).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_memory import rollup  # noqa: E402
from browser_harness import (  # noqa: E402
    NODE_POSITION,
    STATUS_WATCH,
    TREE_SUMMARY,
    AppPage,
    chromium,
    new_context,
    peek,
    watch,
)
from hub_harness import Hub  # noqa: E402
from load_test import PAGE_CONTENT, PROMPTS, RUN_OVER, Session, poll, set_up_beam_panel  # noqa: E402

APP = "/user/{name}/voila/render/app.ipynb"

#: Seconds a student waits for JupyterHub's login page and its form.
LOGIN_TIMEOUT_S = 180.0
#: Seconds on JupyterHub's "server starting" page before the student reloads it.
PENDING_RELOAD_S = 30.0
#: Seconds the app's page may take to become usable before the student reloads it (the slowest usable page of 20
#: in one browser took 205 s; one of them never connected to its kernel).
APP_RELOAD_S = 300.0

#: JS, run in every document a student's browser opens: in the app's page, the moment (ms from asking for the page)
#: its Run button is first usable, the moment of a click on it, and the moment the status first says a run is over.
#: On JupyterHub's "server starting" page, which waits for the server through an event stream that a busy hub may
#: leave unanswered (seen: 3 of 20 students' pages still waiting minutes after their servers had started), the
#: student reloads after ``PENDING_RELOAD_S``, counted in the tab's session storage. The page does it itself: a
#: reload from here came minutes late (one pass over 20 busy pages) and, run inside ``peek``, which waits through
#: navigations, went on reloading every page it led to, the app's too: five Voila kernels filled a student's 2 GB.
#: An app page not usable after ``APP_RELOAD_S`` is reloaded too (counted apart); log in and time to interactive are
#: then counted from the first app page the student asked for.
TIMING = """(() => {
  const reload = (counter) => {
    sessionStorage.setItem(counter, String(Number(sessionStorage.getItem(counter) || 0) + 1));
    location.reload();
  };
  if (location.pathname.startsWith('/hub/spawn-pending/')) {
    setTimeout(() => reload('reloads'), PENDING_RELOAD_MS);
    return;
  }
  const isApp = location.pathname.endsWith('/voila/render/app.ipynb');
  if (isApp && !sessionStorage.getItem('appFirstAt')) {
    sessionStorage.setItem('appFirstAt', String(performance.timeOrigin));
  }
  const stuck = isApp ? setTimeout(() => reload('appReloads'), APP_RELOAD_MS) : undefined;
  const run = () => document.querySelector('button.explorer-run, .explorer-run button');
  const ready = setInterval(() => {
    const b = run();
    if (!b || b.disabled || b.offsetParent === null) return;
    clearInterval(ready);
    clearTimeout(stuck);
    window.__loadReadyAt = performance.now();
    b.addEventListener('click', () => { window.__runClickAt = performance.now(); window.__runOverAt = undefined; },
                       {capture: true});
    const s = document.querySelector('.explorer-status');
    new MutationObserver(() => {
      if (window.__runClickAt !== undefined && window.__runOverAt === undefined
          && /^(done|stopped|error)/.test(s.textContent.trim())) window.__runOverAt = performance.now();
    }).observe(s, {subtree: true, childList: true, characterData: true});
  }, 50);
})();"""

#: Seconds a student waits for their tree's first node to be drawn after the run, before giving up on the click.
NODE_TIMEOUT_S = 60.0


#: JS: where the page is, when its document was asked for (ms since the epoch), and the moments above.
MOMENTS = """() => ({path: location.pathname, origin: performance.timeOrigin, ready: window.__loadReadyAt ?? null,
  click: window.__runClickAt ?? null, over: window.__runOverAt ?? null,
  reloads: Number(sessionStorage.getItem('reloads') || 0),
  appReloads: Number(sessionStorage.getItem('appReloads') || 0),
  first: Number(sessionStorage.getItem('appFirstAt') || performance.timeOrigin)})"""
SELECTED = """([before]) => { const s = document.querySelector('.explorer-selection');
  return !!s && s.textContent.trim() !== '' && s.textContent !== before; }"""


@dataclass
class Student(Session):
    name: str = ""
    spawn_s: float | None = None
    click_s: float | None = None
    memory: dict[str, float] = field(default_factory=dict)
    login_epoch: float = 0.0
    #: Times the student's browser reloaded JupyterHub's "your server is starting" page, which waits for the
    #: server through an event stream that a busy hub may never answer (a student would reload too).
    reloads: int = 0
    #: Times the student reloaded the app's page because it was not usable after ``APP_RELOAD_S``.
    app_reloads: int = 0


class GuardStoppedError(RuntimeError):
    """The memory guard stopped the test."""


class MemoryGuard(threading.Thread):
    """Samples the memory the machine has available every second; below ``floor_mb`` it kills every student's
    processes (their cgroups) and stops the hub, so that the test never makes the machine run out of memory."""

    def __init__(self, hub: Hub, floor_mb: float) -> None:
        super().__init__(daemon=True)
        self.hub, self.floor_mb = hub, floor_mb
        self.samples: list[tuple[float, float]] = []
        self.tripped = ""
        self.phase = "start"
        self.done = threading.Event()
        self.start_at = time.perf_counter()

    def run(self) -> None:
        while not self.done.wait(1.0):
            available = psutil.virtual_memory().available / 2**20
            self.samples.append((round(time.perf_counter() - self.start_at, 1), round(available)))
            if available < self.floor_mb:
                self.tripped = f"stopped during {self.phase}: {available:.0f} MB available (floor {self.floor_mb:.0f})"
                print(self.tripped, flush=True)
                for name in self.hub.passwords:
                    group = self.hub.cgroup(name)
                    for pid in group.pids() if group is not None else []:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                self.hub.stop()
                return

    def check(self) -> None:
        if self.tripped:
            raise GuardStoppedError(self.tripped)

    def lowest(self) -> float:
        return min((a for _, a in self.samples), default=float("nan"))


def browser_pss() -> float:
    """PSS (MB) of the Chromium processes this test drives."""
    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error, OSError):
            if "chrom" in proc.name().lower():
                total += rollup(proc.pid).get("Pss", 0.0)
    return total


def role(pid: int) -> str:
    """"kernel" or "server" (a student's Jupyter server), from the process's command line."""
    with contextlib.suppress(psutil.Error):
        return "kernel" if "ipykernel" in " ".join(psutil.Process(pid).cmdline()) else "server"
    return "gone"


def memory(hub: Hub, students: list[Student]) -> dict[str, Any]:
    """PSS (MB) of each student's processes and their cgroup's charge; the hub's and proxy's PSS; the browser's;
    the machine's available memory."""
    in_groups: set[int] = set()
    for s in students:
        group = hub.cgroup(s.name)
        if group is None:
            continue
        pids = [pid for pid in group.pids() if Path(f"/proc/{pid}").exists()]
        in_groups.update(pids)
        parts = [rollup(pid) for pid in pids]
        s.memory = {"pss_mb": sum(p.get("Pss", 0.0) for p in parts), "cgroup_mb": group.usage() / 2**20,
                    "anon_mb": sum(p.get("Pss_Anon", 0.0) for p in parts), "processes": len(parts),
                    **{f"{role(pid)}_{key}": part.get(key, 0.0) for pid, part in zip(pids, parts, strict=True)
                       for key in ("Pss", "Pss_Anon")}}  # fmt: skip
    hub_family = [hub.proc.pid, *(p.pid for p in psutil.Process(hub.proc.pid).children(recursive=True))]
    core = sum(rollup(pid).get("Pss", 0.0) for pid in hub_family
               if pid not in in_groups and Path(f"/proc/{pid}").exists())  # fmt: skip
    return {"hub_and_proxy_pss_mb": core, "available_mb": psutil.virtual_memory().available / 2**20,
            "students_pss_mb": sum(s.memory.get("pss_mb", 0.0) for s in students), "browser_pss_mb": browser_pss(),
            "per_student_pss_mb": [round(s.memory.get("pss_mb", 0.0)) for s in students]}  # fmt: skip


def log_everyone_in(hub: Hub, browser: Any, students: list[Student], guard: MemoryGuard, timeout: float) -> None:
    """Each student logs in straight to the app; log in and time to interactive are read in each app page."""
    for s in students:
        context = new_context(browser)
        context.add_init_script(TIMING.replace("PENDING_RELOAD_MS", str(int(PENDING_RELOAD_S * 1000)))
                                .replace("APP_RELOAD_MS", str(int(APP_RELOAD_S * 1000))))
        # JupyterHub's login page, asked for while the servers of those before start, took over Playwright's 30 s
        # to be read: a student waits longer than that.
        context.set_default_timeout(LOGIN_TIMEOUT_S * 1000)
        context.set_default_navigation_timeout(LOGIN_TIMEOUT_S * 1000)
        page = context.new_page()
        s.app = AppPage(page, watch(page), hub, f"hub-load-{s.index}")  # type: ignore[arg-type]
        app = APP.format(name=s.name)
        page.goto(f"{hub.url}/hub/login?next=" + quote(f"/hub/spawn/{s.name}?next={quote(app, safe='')}", safe=""),
                  wait_until="domcontentloaded")
        page.fill("#username_input", s.name)
        page.fill("#password_input", hub.passwords[s.name])
        s.login_epoch = time.time()
        page.click("#login_submit", no_wait_after=True)
    pending = {s.index for s in students}
    deadline = time.perf_counter() + timeout
    while pending and time.perf_counter() < deadline:
        guard.check()
        for s in [students[i] for i in sorted(pending)]:
            assert s.app is not None
            try:
                seen = peek(s.app.page, MOMENTS)
            except Exception:  # the page is navigating
                continue
            if seen["path"] == APP.format(name=s.name) and seen["ready"] is not None:
                s.spawn_s = seen["first"] / 1000 - s.login_epoch
                s.tti_s = (seen["origin"] + seen["ready"] - seen["first"]) / 1000
                s.reloads, s.app_reloads = int(seen["reloads"]), int(seen["appReloads"])
                pending.discard(s.index)
        students[0].app.page.wait_for_timeout(300)  # type: ignore[union-attr]
    for i in pending:
        students[i].errors.append(f"no usable Run button after {timeout:.0f} s")


def run_and_click(students: list[Student], guard: MemoryGuard, args: argparse.Namespace) -> None:
    """Set up one beam panel each, click Run together, then click a node each."""
    ready = [s for s in students if s.tti_s is not None]
    for s in ready:
        set_up_beam_panel(s, args.tokens, args.beams)
    clicked = [s for s in ready if not s.errors]
    for s in clicked:
        assert s.app is not None
        try:
            peek(s.app.page, STATUS_WATCH)
            s.clicked_at = time.perf_counter()
            # No waiting for navigations: with 20 pages busy in one browser, Playwright's wait after a click can
            # outlast its timeout although the click was delivered (the run's end is polled below anyway).
            s.app.page.locator("button.explorer-run, .explorer-run button").first.click(
                no_wait_after=True, timeout=args.timeout * 1000)
        except Exception as exc:
            s.errors.append(f"run click: {str(exc).splitlines()[0]}")
    clicked = [s for s in clicked if not s.errors]
    guard.phase = "the runs"
    poll(students, RUN_OVER, {s.index for s in clicked}, "run", args.timeout, on_tick=guard.check)  # type: ignore[arg-type]
    for s in clicked:  # the latency as the page saw it (polling 20 busy pages from here lags by seconds)
        assert s.app is not None
        with contextlib.suppress(Exception):
            seen = peek(s.app.page, MOMENTS)
            if seen["click"] is not None and seen["over"] is not None:
                s.run_s = (seen["over"] - seen["click"]) / 1000
    for s in clicked:
        assert s.app is not None
        s.status = s.app.status()
    guard.phase = "the node clicks"
    for s in [s for s in clicked if s.run_s is not None]:
        guard.check()
        assert s.app is not None
        try:
            s.app.page.bring_to_front()  # as the student's own window is
            target = node_on_screen(s.app, min(args.timeout, NODE_TIMEOUT_S))
            before = s.app.page.locator(".explorer-selection").inner_text()
            s.app.page.mouse.move(target["x"], target["y"])
            s.app.page.wait_for_timeout(200)
            start = time.perf_counter()
            s.app.page.mouse.click(target["x"], target["y"])
            s.app.page.wait_for_function(SELECTED, arg=[before], timeout=args.timeout * 1000, polling=50)
            s.click_s = time.perf_counter() - start
            content = peek(s.app.page, PAGE_CONTENT)
            s.panels, s.rows = list(content["panels"]), list(content["rows"])
        except Exception as exc:
            seen = s.app.seen
            s.errors.append(f"node click: {str(exc).splitlines()[0]} (figure edits received {seen.plotly_edits[-8:]}, "
                            f"console errors {seen.console_errors[-3:]}, page errors {seen.page_errors[-3:]})")
            print(f"{s.name}: {s.errors[-1]}", flush=True)


def node_on_screen(app: AppPage, timeout: float) -> dict[str, Any]:
    """Where the first hypothesis node of the first panel's tree is drawn, once it is (the status says ``done``
    a moment before the tree is drawn)."""
    deadline = time.perf_counter() + timeout
    tree: dict[str, Any] = {}
    while time.perf_counter() < deadline:
        app.page.locator(".explorer-tree").scroll_into_view_if_needed()
        tree = peek(app.page, TREE_SUMMARY, ".explorer-tree") or {}
        titles = tree.get("titles") or []
        target = peek(app.page, NODE_POSITION, [".explorer-tree", titles[0]]) if titles else None
        if target is not None:
            return dict(target)
        app.page.wait_for_timeout(200)
    raise TimeoutError(f"no tree node drawn after {timeout:.0f} s (status {app.status()!r}, the tree figure {tree})")


def check_isolation(students: list[Student], args: argparse.Namespace) -> None:
    import html

    import explorer
    from explorer.figures._style import esc

    model = explorer.load_model(args.model or "smollm2-135m")
    for s in students:
        trace = explorer.decode(model, s.prompt, strategy="beam", num_beams=args.beams, max_new_tokens=args.tokens)
        shown = html.unescape(esc(trace.results[0].text, quote=True))  # as the summary's title attribute reads
        s.expected = "".join(chr(0x2400 + ord(c)) if ord(c) < 32 and c not in "\n\t" else c for c in shown)
        ranked = sorted((int(r["rank"]), r["text"]) for r in s.rows if r["rank"].strip().isdigit())
        s.isolated = len(s.panels) == 1 and bool(ranked) and ranked[0][1] == s.expected


def summary(students: list[Student], totals: dict[str, Any], guard: MemoryGuard, args: argparse.Namespace) -> str:
    def stats(values: list[float | None]) -> str:
        got = [v for v in values if v is not None]
        if not got:
            return "-"
        return f"median {statistics.median(got):.1f} s, worst {max(got):.1f} s ({len(got)}/{len(values)})"

    lines = [f"{len(students)} students, beam search {args.beams} beams x {args.tokens} tokens, mem_limit "
             f"{args.mem_limit}, {psutil.cpu_count()} CPUs",
             f"log in (server start):  {stats([s.spawn_s for s in students])}",
             f"time to interactive:    {stats([s.tti_s for s in students])}",
             f"run latency:            {stats([s.run_s for s in students])}",
             f"node click:             {stats([s.click_s for s in students])}",
             f"'server starting' page reloaded after {PENDING_RELOAD_S:.0f} s: "
             f"{sum(s.reloads for s in students)} times ({sum(s.reloads > 0 for s in students)} students)",
             f"app page not usable after {APP_RELOAD_S:.0f} s, reloaded: "
             f"{sum(s.app_reloads for s in students)} times ({sum(s.app_reloads > 0 for s in students)} students)"]
    for moment, t in totals.items():
        pss = [v for v in t["per_student_pss_mb"] if v]
        if pss:
            lines.append(f"memory {moment}: per student (server + kernel, PSS) median "
                         f"{statistics.median(pss):.0f} MB, max {max(pss):.0f} MB, all {t['students_pss_mb']:.0f} MB; "
                         f"hub and proxy {t['hub_and_proxy_pss_mb']:.0f} MB; browser (the students' pages) "
                         f"{t['browser_pss_mb']:.0f} MB; machine available {t['available_mb']:.0f} MB")
    charged = [s.memory["cgroup_mb"] for s in students if s.memory]
    if charged:
        lines.append(f"cgroup charge per student: median {statistics.median(charged):.0f} MB, "
                     f"max {max(charged):.0f} MB")
    lines.append(f"machine available, lowest (sampled every second): {guard.lowest():.0f} MB")
    if guard.tripped:
        lines.append(f"MEMORY GUARD: {guard.tripped}")
    lines.append(f"isolated: {sum(bool(s.isolated) for s in students)}/{len(students)}; errors: "
                 f"{sum(len(s.errors) for s in students)}")
    lines += [f"  {s.name}: {e[:160]}" for s in students for e in s.errors[:2]]
    return "\n".join(lines)


def dump_stacks(_signum: int, _frame: Any) -> None:
    """On SIGUSR1: where the test is, including inside Playwright's greenlets (py-spy shows only the event loop)."""
    import gc
    import traceback

    import greenlet

    for g in [o for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and o.gr_frame is not None]:
        print("greenlet:\n" + "".join(traceback.format_stack(g.gr_frame)), file=sys.stderr, flush=True)


def main() -> None:
    signal.signal(signal.SIGUSR1, dump_stacks)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--mem-limit", default="2G")
    parser.add_argument("--model", default="", help="DECODING_EXPLORER_MODEL for the students ('': SmolLM2)")
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds per phase")
    parser.add_argument("--floor-mb", type=float, default=1500.0,
                        help="stop everything when the machine has less memory available than this")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "hub_load_test.json")
    args = parser.parse_args()
    names = [f"student{i:02d}" for i in range(1, args.students + 1)]
    students = [Student(i, PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (#{i})"), name=name)
                for i, name in enumerate(names)]  # fmt: skip
    totals: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hub-load-") as tmp:
        hub = Hub(Path(tmp), names, model=args.model or None, mem_limit=args.mem_limit)
        guard = MemoryGuard(hub, args.floor_mb)
        guard.start()
        watchdog = threading.Timer(4 * args.timeout, hub.stop)
        watchdog.daemon = True
        watchdog.start()
        try:
            hub.wait_ready()
            with chromium() as browser:
                try:
                    guard.phase = "the log-ins and page loads"
                    log_everyone_in(hub, browser, students, guard, args.timeout)
                    print(f"log in: {[s.spawn_s for s in students]}\n"
                          f"time to interactive: {[s.tti_s for s in students]}", flush=True)
                    totals["with the pages interactive"] = memory(hub, students)
                    run_and_click(students, guard, args)
                    totals["after the runs"] = memory(hub, students)
                except GuardStoppedError:
                    pass
                for s in students:
                    if s.app is not None:
                        s.errors += [f"page: {e}" for e in s.app.seen.page_errors]
                        s.app.page.context.close()
                        s.app = None
        finally:
            guard.done.set()
            hub.stop()
            watchdog.cancel()
    if not guard.tripped:
        check_isolation(students, args)
    print(summary(students, totals, guard, args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"students": [asdict(s) for s in students], "totals": totals,
                                     "available_mb": guard.samples, "guard": guard.tripped,
                                     "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))  # fmt: skip
    print(f"(JSON in {args.json})")


if __name__ == "__main__":
    main()
