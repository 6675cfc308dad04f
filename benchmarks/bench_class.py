"""`make app`'s seats: the kernel cap under 30 quick requests and the culling of kernels whose page has gone.

Usage: ``python benchmarks/bench_class.py [--cap 6] [--requests 30] [--model ''] [--json ...]``

One Voila server exactly as ``make app`` starts it (the Makefile's options: its pool of pre-heated kernels forked
from the warm process, ``ClassKernelManager`` with its own culling times, 30 s without a page, checked every 10 s),
serving SmolLM2 (``--model`` for another), with ``--ClassKernelManager.max_kernels=--cap``:

* ``--requests`` requests for the page at once (as a readiness check or a class pressing reload): how many got the
  app and how many "the class is full" (HTTP 503), the most kernels alive at any moment (sampled every 0.2 s), the
  memory of the server with all its kernels then (PSS, ``smaps_rollup``), and the seconds until the kernels of the
  pages that were never opened are shut down (the pool filled again);
* a browser tab opens the app, then is closed without a goodbye (as a sleeping laptop): seconds until its kernel
  is shut down; a second tab, left open, keeps its kernel past the culling time.

Nothing is timed in the test suite (``tests/browser/test_class.py`` proves the same with short times); this reports
``make app``'s real ones. The table is printed, the JSON written to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_memory import rollup  # noqa: E402
from browser_harness import (  # noqa: E402
    LOAD_TIMEOUT,
    RUN_READY,
    VoilaServer,
    chromium,
    http_get,
    make_variables,
    new_context,
    wait_until,
)

KERNEL_ID = r"/api/kernels/([0-9a-f-]{36})/channels"


def server_pss_mb(server: VoilaServer) -> float:
    """PSS of the Voila server, its warm process and every kernel (MB)."""
    import psutil

    assert server.proc is not None
    family = [server.proc.pid, *(p.pid for p in psutil.Process(server.proc.pid).children(recursive=True))]
    return sum(rollup(pid).get("Pss", 0.0) for pid in family if Path(f"/proc/{pid}").exists())


def quick_requests(server: VoilaServer, count: int, pool: int, timeout: float) -> dict[str, Any]:
    """``count`` page requests at once; answers, the most kernels at once, and how long their kernels stayed."""
    most, peak_pss, done = 0, 0.0, threading.Event()

    def sample() -> None:
        nonlocal most, peak_pss
        while not done.is_set():
            alive = len(server.kernel_processes())
            if alive > most:
                most, peak_pss = alive, server_pss_mb(server)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as workers:
        codes = [code for code, _ in workers.map(lambda _: http_get(server.url, timeout), range(count))]
    answered = time.perf_counter() - began
    culled = wait_until("the kernels of pages never opened to go", lambda: len(server.kernel_processes()) <= pool,
                        timeout, explain=server.log_tail)  # fmt: skip
    done.set()
    sampler.join()
    return {"requests": count, "app": codes.count(200), "full": codes.count(503),
            "other": len(codes) - codes.count(200) - codes.count(503), "most_kernels": most,
            "pss_at_most_mb": peak_pss, "answered_s": answered, "culled_after_s": answered + culled}  # fmt: skip


def closed_tab(server: VoilaServer, timeout: float) -> dict[str, Any]:
    """Open two tabs on the app, close one: seconds until its kernel goes; whether the open one keeps its own."""
    with chromium() as browser:
        tabs = []
        for _ in range(2):
            page = new_context(browser).new_page()
            ids: list[str] = []
            page.on("websocket", lambda ws, ids=ids: ids.extend(re.findall(KERNEL_ID, ws.url)))
            page.goto(server.url, timeout=LOAD_TIMEOUT * 1000, wait_until="domcontentloaded")
            page.wait_for_function(RUN_READY, timeout=LOAD_TIMEOUT * 1000, polling=100)
            wait_until("the page's kernel websocket", lambda ids=ids: bool(ids), 30,
                       sleep=lambda s, page=page: page.wait_for_timeout(s * 1000))  # fmt: skip
            tabs.append((page, ids[0]))
        (closed, closed_id), (kept, kept_id) = tabs
        closed.close(run_before_unload=False)
        closed.context.close()
        gone = wait_until("the closed tab's kernel to go", lambda: closed_id not in server.kernel_processes(),
                          timeout, explain=server.log_tail)  # fmt: skip
        kept.wait_for_timeout(15_000)  # the culling time has passed twice over for the open tab since it opened
        kept_alive = kept_id in server.kernel_processes() and bool(kept.evaluate(RUN_READY))
        kept.context.close()
    return {"closed_tab_kernel_gone_s": gone, "open_tab_kept": kept_alive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cap", type=int, default=6, help="APP_MAX_KERNELS")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--model", default="", help="DECODING_EXPLORER_MODEL ('': the default, SmolLM2)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for each wait")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "bench_class.json")
    args = parser.parse_args()
    pool = int(make_variables()["APP_POOL_SIZE"])
    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp:
        server = VoilaServer(Path(tmp), model=args.model or None,
                             extra_args=(f"--ClassKernelManager.max_kernels={args.cap}",))  # fmt: skip
        with server.running():
            wait_until("the pool to fill", lambda: len(server.kernel_processes()) >= pool, args.timeout,
                       explain=server.log_tail)  # fmt: skip
            time.sleep(5.0)  # the pool's kernels have run the app
            report = {"cap": args.cap, "pool": pool, "pss_pool_mb": server_pss_mb(server),
                      **quick_requests(server, args.requests, pool, args.timeout), **closed_tab(server, args.timeout)}
    print(f"cap {args.cap}, pool {pool}: {args.requests} requests at once -> {report['app']} pages, "
          f"{report['full']} 'class is full', {report['other']} other; at most {report['most_kernels']} kernels "
          f"(server and kernels {report['pss_at_most_mb']:.0f} MB PSS then; {report['pss_pool_mb']:.0f} MB with "
          f"the pool alone); all answered in {report['answered_s']:.1f} s; the never-opened pages' kernels gone "
          f"{report['culled_after_s']:.0f} s after the requests")
    print(f"a closed tab's kernel gone after {report['closed_tab_kernel_gone_s']:.0f} s; the open tab kept its "
          f"kernel: {report['open_tab_kept']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
