"""The per-student memory limit is enforced by Linux: a process over its cgroup's limit is stopped, its neighbour
in another student's cgroup is not. Skipped only where this machine may not make memory cgroups."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from explorer.serve.memlimit import MemoryCgroup, _own_cgroups, cgroup_parent, safe_name

MB = 2**20
GROW = "import sys, time\nblocks = []\nfor _ in range(int(sys.argv[1])):\n    blocks.append(bytearray(32 * 2**20))\n" \
       "print('survived', flush=True)\ntime.sleep(0.5)\n"  # fmt: skip


@pytest.fixture
def groups() -> Iterator[list[MemoryCgroup]]:
    made: list[MemoryCgroup] = []
    yield made
    for group in made:
        group.remove()
    parent = cgroup_parent("explorer-test")
    if parent is not None:
        with contextlib.suppress(OSError):
            parent[0].rmdir()


def _grow_in(group: MemoryCgroup, blocks: int) -> subprocess.CompletedProcess[str]:
    """A Python process that joins ``group`` before it runs, then allocates ``blocks`` x 32 MB and touches them."""
    return subprocess.run([sys.executable, "-c", GROW, str(blocks)], preexec_fn=group.join, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_own_cgroups_are_read_from_proc() -> None:
    text = "12:memory:/jobs/a\n3:cpu,cpuacct:/jobs/a\n0::/user.slice/b\n"
    assert _own_cgroups(text) == ("/jobs/a", "/user.slice/b")
    assert _own_cgroups("0::/\n") == (None, "/")
    assert safe_name("ann.o'brien") == "ann_o_brien"


def test_a_student_over_the_limit_is_stopped_and_the_other_is_not(groups: list[MemoryCgroup]) -> None:
    parent = cgroup_parent("explorer-test")
    if parent is None:
        pytest.skip("this machine does not let this process make memory cgroups")
    small = MemoryCgroup.create("small", 200 * MB, parent)
    large = MemoryCgroup.create("large", 600 * MB, parent)
    assert small is not None
    assert large is not None
    groups.extend([small, large])
    assert small.limit() == 200 * MB
    over = _grow_in(small, 12)  # 384 MB in a 200 MB cgroup
    within = _grow_in(large, 12)  # the same in a 600 MB one
    assert over.returncode == -9, over.stdout + over.stderr  # SIGKILL from the out-of-memory killer
    assert "survived" not in over.stdout
    assert small.oom_kills() >= 1
    assert within.returncode == 0, within.stderr
    assert "survived" in within.stdout
    assert large.oom_kills() == 0


def test_remove_ends_what_is_left(groups: list[MemoryCgroup]) -> None:
    parent = cgroup_parent("explorer-test")
    if parent is None:
        pytest.skip("this machine does not let this process make memory cgroups")
    group = MemoryCgroup.create("leftover", 300 * MB, parent)
    assert group is not None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=group.join)
    assert group.pids() == [sleeper.pid]
    group.remove()
    assert sleeper.wait(timeout=10) == -9
    assert not Path(group.path).exists()
