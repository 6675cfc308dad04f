"""A memory limit per student that Linux enforces: one memory cgroup for each student's server and its kernels.

JupyterHub's ``Spawner.mem_limit`` is only a number handed to the server unless the spawner enforces it.
``MemoryCgroup`` does, wherever this process may create memory cgroups (cgroup v1's ``memory`` hierarchy, or
cgroup v2 with the ``memory`` controller delegated): a child cgroup under this process's own, with the limit, that
the student's server joins before it runs (its kernels inherit it). When the processes in it use more than the
limit and the kernel cannot reclaim enough (page cache first), the out-of-memory killer stops the largest one in
that cgroup only: that student's kernel, never another student's. Shared, file-backed pages (the mapped model)
are charged to the cgroup that read them first and can always be reclaimed, so they never push a student over.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemoryCgroup", "cgroup_parent", "safe_name"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_cgroups(text: str | None = None) -> tuple[str | None, str | None]:
    """``(v1 memory path, v2 path)`` of this process, from ``/proc/self/cgroup``."""
    if text is None:
        try:
            text = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None, None
    v1 = v2 = None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            v1 = path
        elif controllers == "":
            v2 = path
    return v1, v2


def cgroup_parent(group: str = "explorer-hub") -> tuple[Path, int] | None:
    """A folder under which memory cgroups can be made here, and the cgroup version (1 or 2); ``None`` when this
    process may not (no cgroup file system, read-only, or the memory controller not delegated)."""
    v1, v2 = _own_cgroups()
    candidates: list[tuple[Path, int]] = []
    if v1 is not None:
        candidates.append((CGROUP_ROOT / "memory" / v1.lstrip("/") / group, 1))
    if v2 is not None:
        for mount in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
            candidates.append((mount / v2.lstrip("/") / group, 2))
    for folder, version in candidates:
        limit_file = "memory.limit_in_bytes" if version == 1 else "memory.max"
        try:
            folder.mkdir(exist_ok=True)
            if version == 2:
                (folder / "cgroup.subtree_control").write_text("+memory")
            if (folder / limit_file).exists() or version == 2:
                return folder, version
        except OSError:
            continue
    return None


def safe_name(name: str) -> str:
    """A cgroup folder name for a user name (anything but letters, digits, ``-`` and ``_`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_"


@dataclass
class MemoryCgroup:
    """One student's memory cgroup: ``create`` it with a limit, ``join`` it from the process to limit (it and its
    children stay in it), read ``usage`` and ``oom_kills``, ``remove`` it (ending what is left in it)."""

    path: Path
    version: int

    @classmethod
    def create(cls, name: str, limit_bytes: int, parent: tuple[Path, int] | None = None) -> MemoryCgroup | None:
        """The cgroup ``<parent>/<name>`` limited to ``limit_bytes``; ``None`` where cgroups cannot be made."""
        parent = parent or cgroup_parent()
        if parent is None:
            return None
        folder, version = parent
        group = cls(folder / safe_name(name), version)
        try:
            group.path.mkdir(exist_ok=True)
            if version == 1:
                (group.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            else:
                (group.path / "memory.max").write_text(str(limit_bytes))
                with contextlib.suppress(OSError):
                    (group.path / "memory.swap.max").write_text("0")
        except OSError:
            return None
        return group

    def join(self, pid: int | None = None) -> None:
        """Move process ``pid`` (this one by default) into the cgroup; its future children are born in it."""
        (self.path / "cgroup.procs").write_text(str(pid or os.getpid()))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def limit(self) -> int:
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        return int((self.path / name).read_text().strip())

    def usage(self) -> int:
        """Bytes charged to the cgroup now (its processes' memory and the page cache they brought in)."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        return int((self.path / name).read_text().strip())

    def oom_kills(self) -> int:
        """How many processes the out-of-memory killer stopped in this cgroup."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        with contextlib.suppress(OSError):
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self, timeout: float = 5.0) -> None:
        """End the processes left in the cgroup (SIGKILL) and remove it."""
        deadline = time.monotonic() + timeout
        while self.path.exists() and time.monotonic() < deadline:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
            except OSError:
                time.sleep(0.1)
