"""Voila's kernels for a class: at most ``max_kernels`` at once, and a kernel whose page has gone is shut down.

``ClassKernelManager`` is the ``VoilaConfiguration.multi_kernel_manager_class`` of ``make app``. Every request for
the page takes a kernel (a pre-heated one from Voila's pool, else a new one), and nothing else limits them: a
readiness check that asked for ``/`` once a second started 27 kernels of 0.9 GB each. Here:

* a request beyond ``max_kernels`` (pooled, starting and running kernels all count) gets the "class is full" page
  (HTTP 503, template ``503.html``, which retries by itself after a minute) and starts nothing;
* a kernel that has had no page connected for ``page_gone_timeout`` seconds (a closed tab, a sleeping laptop, a
  request that never opened the page) and is not busy is shut down at the next cull, every ``cull_interval``
  seconds: within ``page_gone_timeout + cull_interval`` (40 s by default) of the page going. Pooled kernels wait
  for a page and are never culled (Voila skips them);
* whenever a kernel ends, the pool is filled again (up to its size, within the cap).

Open pages keep their kernels (the usual ``cull_idle_timeout`` applies to them only with ``cull_connected``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado.web import HTTPError
from traitlets import Float, Int, default

__all__ = ["ClassFullError", "ClassKernelManager", "default_max_kernels"]

#: Memory a student's kernel is given when the cap is derived from the machine's memory (MB): a kernel forked from
#: the warm process measured 311 MB PSS after a 4-beam search (benchmarks/RESULTS.md); this leaves room for
#: bigger searches (16 beams x 60 tokens grow a kernel by about 150 MB while they run).
KERNEL_BUDGET_MB = 500
#: Memory kept free for the server, the warm process and the page cache holding the shared weights (MB).
RESERVE_MB = 2048


def default_max_kernels(available_mb: float | None = None) -> int:
    """The cap when none is configured: what the machine's available memory holds at ``KERNEL_BUDGET_MB`` a kernel
    after ``RESERVE_MB``, at least 1.

    >>> default_max_kernels(available_mb=20_000)
    35
    >>> default_max_kernels(available_mb=1_000)
    1
    """
    if available_mb is None:
        available_mb = _available_mb()
    return max(1, int((available_mb - RESERVE_MB) // KERNEL_BUDGET_MB))


def _available_mb() -> float:
    """``MemAvailable`` from ``/proc/meminfo`` in MB (the whole memory where that file is missing)."""
    try:
        lines = Path("/proc/meminfo").read_text(encoding="ascii").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


class ClassFullError(HTTPError):
    """The page's answer when every seat is taken: HTTP 503, rendered with the template's ``503.html``."""

    def __init__(self, cap: int) -> None:
        super().__init__(503, "the class is full: all %d seats are taken", cap, reason="The class is full")


class ClassKernelManager(AsyncMappingKernelManager):  # type: ignore[misc]
    """Voila's kernel manager with a cap and page-gone culling (see the module's docstring)."""

    max_kernels = Int(0, config=True, help="Kernels alive at once, pooled ones included; 0: from the machine's memory")
    page_gone_timeout = Float(30.0, config=True, help="Seconds without a connected page before a kernel is culled")

    @default("cull_interval")
    def _cull_interval_default(self) -> int:
        return 10

    @default("cull_idle_timeout")
    def _cull_idle_timeout_default(self) -> int:
        return 3600  # > 0 starts the periodic culler; open pages are kept unless cull_connected is set

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._starting = 0
        self._closing = False
        self._first_seen: dict[str, float] = {}
        self._last_connected: dict[str, float] = {}
        self.cap = self.max_kernels if self.max_kernels > 0 else default_max_kernels()
        self.log.info("The class has %d seats (kernels at once, pooled ones included)", self.cap)

    def seats_taken(self) -> int:
        """Kernels running or starting now."""
        return len(self._kernels) + self._starting

    async def start_kernel(self, **kwargs: Any) -> str:  # type: ignore[override]  # jupyter_server's is async
        """Start a kernel, unless the class is full (``ClassFullError``: the page says so; nothing is started)."""
        if self.seats_taken() >= self.cap:
            raise ClassFullError(self.cap)
        self._starting += 1  # counted before the first await: concurrent requests cannot both take the last seat
        try:
            return str(await super().start_kernel(**kwargs))
        finally:
            self._starting -= 1

    async def cull_kernel_if_idle(self, kernel_id: str) -> None:
        """Shut the kernel down if its page has been gone for ``page_gone_timeout`` seconds and it is not busy; an
        open page's kernel goes by the usual idle rule. (Voila never calls this for a pooled kernel.)"""
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            return
        now = time.monotonic()
        first_seen = self._first_seen.setdefault(kernel_id, now)  # out of the pool: handed to a page just now
        if self._kernel_connections.get(kernel_id, 0):
            self._last_connected[kernel_id] = now
            await super().cull_kernel_if_idle(kernel_id)  # type: ignore[no-untyped-call]
            return
        gone_for = now - max(first_seen, self._last_connected.get(kernel_id, first_seen))
        if gone_for > self.page_gone_timeout and getattr(kernel, "execution_state", "") != "busy":
            self.log.warning("Culling kernel %s: no page connected for %.0f s", kernel_id, gone_for)
            await self.shutdown_kernel(kernel_id)

    async def shutdown_kernel(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Shut a kernel down, then fill Voila's pool again (it holds failed refills while the class was full)."""
        await super().shutdown_kernel(kernel_id, *args, **kwargs)  # type: ignore[no-untyped-call]
        self._first_seen.pop(kernel_id, None)
        self._last_connected.pop(kernel_id, None)
        if not self._closing:
            self._refill()

    async def shutdown_all(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Shut every kernel down (the server stops): nothing is refilled any more."""
        self._closing = True
        await super().shutdown_all(*args, **kwargs)

    def _refill(self) -> None:
        """Drop the pool's refills that failed (the class was full) and start new ones (within the cap)."""
        pools: dict[str, list[Any]] = getattr(self, "_pools", {})
        fill = getattr(self, "fill_if_needed", None)  # Voila's pre-heated kernel manager, built on this class
        if fill is None:
            return
        for name, pool in pools.items():
            for task in [t for t in pool if t.done() and (t.cancelled() or t.exception() is not None)]:
                pool.remove(task)
            if self.seats_taken() < self.cap:
                fill(delay=0, notebook_name=name)
