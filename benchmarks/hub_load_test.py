"""JupyterHub under a class: N students at once on this machine, each in their own server, in headless Chromium.

Usage: ``python benchmarks/hub_load_test.py [--students 20] [--tokens 30] [--beams 4] [--mem-limit 2G]
[--timeout 1500] [--json benchmarks/out/hub_load_test.json]``

One JupyterHub as ``make hub`` starts it (``tests/browser/hub_harness.py``: docs/deploy/jupyterhub_config.py, its
state in a temporary folder, the proxy from ``make``'s npm install, the default model SmolLM2 from the prepared
cache, every student's server in a memory cgroup of ``--mem-limit``), and ``--students`` students in one Chromium,
a browser context each:

* all log in at once (each login starts that student's server): "spawn" is from the click to JupyterLab's page;
* all open the app (``/user/<name>/voila/render/app.ipynb``) at once: time to interactive is from asking for the
  page to a usable Run button (the page's kernel starts, imports the app and maps the model);
* each types its own prompt, keeps one panel, a ``--beams``-beam beam search of ``--tokens`` new tokens; all click
  Run at (nearly) the same moment: run latency is from a click to the status saying ``done``;
* then each clicks a node of its tree: from the click to the selection line naming it;
* memory, after the runs: for each student, the PSS of their server and kernels (``smaps_rollup``) and what their
  cgroup is charged; the hub's and the proxy's PSS; what the machine has left;
* isolation: each page's best text equals ``explorer.decode`` on its own prompt (computed after the hub stopped).
"""

from __future__ import annotations

import argparse
import json
import statistics
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_memory import rollup  # noqa: E402
from browser_harness import NODE_POSITION, RUN_READY, STATUS_WATCH, AppPage, chromium, new_context, watch  # noqa: E402
from hub_harness import Hub  # noqa: E402
from load_test import PAGE_CONTENT, PROMPTS, RUN_OVER, Session, poll, set_up_beam_panel  # noqa: E402

LOGGED_IN = "(name) => location.pathname.startsWith(`/user/${name}/lab`)"
SELECTED = """([before]) => { const s = document.querySelector('.explorer-selection');
  return !!s && s.textContent.trim() !== '' && s.textContent !== before; }"""


@dataclass
class Student(Session):
    name: str = ""
    spawn_s: float | None = None
    click_s: float | None = None
    memory: dict[str, float] = field(default_factory=dict)


def memory(hub: Hub, students: list[Student]) -> dict[str, Any]:
    """PSS (MB) of each student's processes and their cgroup's charge; the hub's and proxy's PSS; the machine."""
    in_groups: set[int] = set()
    for s in students:
        group = hub.cgroup(s.name)
        if group is None:
            continue
        pids = [pid for pid in group.pids() if Path(f"/proc/{pid}").exists()]
        in_groups.update(pids)
        parts = [rollup(pid) for pid in pids]
        s.memory = {"pss_mb": sum(p.get("Pss", 0.0) for p in parts), "cgroup_mb": group.usage() / 2**20,
                    "anon_mb": sum(p.get("Pss_Anon", 0.0) for p in parts), "processes": len(parts)}  # fmt: skip
    hub_family = [hub.proc.pid, *(p.pid for p in psutil.Process(hub.proc.pid).children(recursive=True))]
    core = sum(rollup(pid).get("Pss", 0.0) for pid in hub_family
               if pid not in in_groups and Path(f"/proc/{pid}").exists())  # fmt: skip
    return {"hub_and_proxy_pss_mb": core, "available_mb": psutil.virtual_memory().available / 2**20,
            "students_pss_mb": sum(s.memory.get("pss_mb", 0.0) for s in students)}  # fmt: skip


def log_everyone_in(hub: Hub, browser: Any, students: list[Student], timeout: float) -> None:
    for s in students:
        page = new_context(browser).new_page()
        s.app = AppPage(page, watch(page), hub, f"hub-load-{s.index}")  # type: ignore[arg-type]
        page.goto(f"{hub.url}/hub/login", wait_until="domcontentloaded")
        page.fill("#username_input", s.name)
        page.fill("#password_input", hub.passwords[s.name])
        s.asked_at = time.perf_counter()
        page.click("#login_submit", no_wait_after=True)
    pending = {s.index for s in students}
    deadline = time.perf_counter() + timeout
    while pending and time.perf_counter() < deadline:
        for s in [students[i] for i in sorted(pending)]:
            assert s.app is not None
            try:
                if s.app.page.evaluate(LOGGED_IN, s.name):
                    s.spawn_s = time.perf_counter() - s.asked_at
                    pending.discard(s.index)
            except Exception:  # the page is navigating
                pass
        students[0].app.page.wait_for_timeout(300)  # type: ignore[union-attr]
    for i in pending:
        students[i].errors.append(f"not logged in after {timeout:.0f} s")


def run_and_click(students: list[Student], args: argparse.Namespace) -> None:
    """Set up one beam panel each, click Run together, then click a node each."""
    ready = [s for s in students if s.tti_s is not None]
    for s in ready:
        set_up_beam_panel(s, args.tokens, args.beams)
    clicked = [s for s in ready if not s.errors]
    for s in clicked:
        assert s.app is not None
        try:
            s.app.page.evaluate(STATUS_WATCH)
            s.clicked_at = time.perf_counter()
            # No waiting for navigations: with 20 pages busy in one browser, Playwright's wait after a click can
            # outlast its timeout although the click was delivered (the run's end is polled below anyway).
            s.app.page.locator("button.explorer-run, .explorer-run button").first.click(
                no_wait_after=True, timeout=args.timeout * 1000)
        except Exception as exc:
            s.errors.append(f"run click: {str(exc).splitlines()[0]}")
    clicked = [s for s in clicked if not s.errors]
    poll(students, RUN_OVER, {s.index for s in clicked}, "run", args.timeout)  # type: ignore[arg-type]
    for s in [s for s in clicked if s.run_s is not None]:
        assert s.app is not None
        try:
            s.status = s.app.status()
            target = node_on_screen(s.app, args.timeout)
            before = s.app.page.locator(".explorer-selection").inner_text()
            s.app.page.mouse.move(target["x"], target["y"])
            s.app.page.wait_for_timeout(200)
            start = time.perf_counter()
            s.app.page.mouse.click(target["x"], target["y"])
            s.app.page.wait_for_function(SELECTED, arg=[before], timeout=args.timeout * 1000, polling=50)
            s.click_s = time.perf_counter() - start
            content = s.app.page.evaluate(PAGE_CONTENT)
            s.panels, s.rows = list(content["panels"]), list(content["rows"])
        except Exception as exc:
            s.errors.append(f"node click: {str(exc).splitlines()[0]}")


def node_on_screen(app: AppPage, timeout: float) -> dict[str, Any]:
    """Where the first hypothesis node of the first panel's tree is drawn, once it is (the status says ``done``
    a moment before the tree is drawn)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        app.page.locator(".explorer-tree").scroll_into_view_if_needed()
        titles = app.tree_summary()["titles"]
        target = app.page.evaluate(NODE_POSITION, [".explorer-tree", titles[0]]) if titles else None
        if target is not None:
            return dict(target)
        app.page.wait_for_timeout(200)
    raise TimeoutError(f"no tree node drawn after {timeout:.0f} s")


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


def summary(students: list[Student], totals: dict[str, Any], args: argparse.Namespace) -> str:
    def stats(values: list[float | None]) -> str:
        got = [v for v in values if v is not None]
        if not got:
            return "-"
        return f"median {statistics.median(got):.1f} s, worst {max(got):.1f} s ({len(got)}/{len(values)})"

    pss = [s.memory["pss_mb"] for s in students if s.memory]
    lines = [f"{len(students)} students, beam search {args.beams} beams x {args.tokens} tokens, mem_limit "
             f"{args.mem_limit}, {psutil.cpu_count()} CPUs",
             f"log in (server start): {stats([s.spawn_s for s in students])}",
             f"time to interactive:   {stats([s.tti_s for s in students])}",
             f"run latency:           {stats([s.run_s for s in students])}",
             f"node click:            {stats([s.click_s for s in students])}"]
    if pss:
        lines.append(f"memory per student (server + kernels, PSS): median {statistics.median(pss):.0f} MB, "
                     f"max {max(pss):.0f} MB; all students {totals['students_pss_mb']:.0f} MB; hub and proxy "
                     f"{totals['hub_and_proxy_pss_mb']:.0f} MB; machine available {totals['available_mb']:.0f} MB")
        charged = [s.memory["cgroup_mb"] for s in students if s.memory]
        lines.append(f"cgroup charge per student: median {statistics.median(charged):.0f} MB, "
                     f"max {max(charged):.0f} MB")
    lines.append(f"isolated: {sum(bool(s.isolated) for s in students)}/{len(students)}; errors: "
                 f"{sum(len(s.errors) for s in students)}")
    lines += [f"  {s.name}: {e[:160]}" for s in students for e in s.errors[:2]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--mem-limit", default="2G")
    parser.add_argument("--model", default="", help="DECODING_EXPLORER_MODEL for the students ('': SmolLM2)")
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds per phase")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "hub_load_test.json")
    args = parser.parse_args()
    names = [f"student{i:02d}" for i in range(1, args.students + 1)]
    students = [Student(i, PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (#{i})"), name=name)
                for i, name in enumerate(names)]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="hub-load-") as tmp:
        hub = Hub(Path(tmp), names, model=args.model or None, mem_limit=args.mem_limit)
        watchdog = threading.Timer(4 * args.timeout, hub.stop)
        watchdog.daemon = True
        watchdog.start()
        try:
            hub.wait_ready()
            with chromium() as browser:
                log_everyone_in(hub, browser, students, args.timeout)
                for s in students:
                    if s.spawn_s is not None and s.app is not None:
                        s.app.seen.page_errors.clear()  # what JupyterLab's page said as it was left is not counted
                        s.asked_at = time.perf_counter()
                        s.app.page.evaluate("(url) => { window.location.href = url; }",
                                            f"{hub.url}/user/{s.name}/voila/render/app.ipynb")  # fmt: skip
                poll(students, RUN_READY, {s.index for s in students if s.spawn_s is not None}, "tti",  # type: ignore[arg-type]
                     args.timeout)  # fmt: skip
                print(f"log in: {[s.spawn_s for s in students]}\ntime to interactive: {[s.tti_s for s in students]}",
                      flush=True)
                run_and_click(students, args)
                totals = memory(hub, students)
                for s in students:
                    if s.app is not None:
                        s.errors += [f"page: {e}" for e in s.app.seen.page_errors]
                        s.app.page.context.close()
                        s.app = None
        finally:
            hub.stop()
            watchdog.cancel()
    check_isolation(students, args)
    print(summary(students, totals, args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"students": [asdict(s) for s in students], "totals": totals,
                                     "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))  # fmt: skip
    print(f"(JSON in {args.json})")


if __name__ == "__main__":
    main()
