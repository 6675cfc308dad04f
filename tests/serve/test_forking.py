"""Kernels forked from the warm process: real ipykernels that share its imports and its model, and behave as usual
(execute, interrupt, restart, shut down); the zygote dies with its server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from explorer.serve import forking

KERNELS = Path(forking.__file__).parent / "jupyter" / "kernels"


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> Iterator[KernelManager]:
    """A started kernel of ``make app``'s kernel spec (tiny-random preloaded); stopped, with the zygote, after."""
    monkeypatch.setenv("DECODING_EXPLORER_MODEL", "tiny-random")
    specs = KernelSpecManager()
    specs.kernel_dirs = [str(KERNELS)]
    km = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
    km.start_kernel()
    try:
        yield km
    finally:
        km.shutdown_kernel(now=True)
        if forking._zygote is not None:
            forking._zygote.stop()
        forking._zygote, forking._zygote_failed = None, False


def _run(km: KernelManager, code: str, timeout: float = 120.0) -> tuple[str, str]:
    """``(status, stdout)`` of running ``code`` in the kernel."""
    client = km.client()
    client.start_channels()
    out: list[str] = []

    def hook(msg: dict[str, object]) -> None:
        content = msg.get("content")
        if msg.get("msg_type") == "stream" and isinstance(content, dict):
            out.append(str(content.get("text", "")))

    try:
        client.wait_for_ready(timeout=timeout)
        reply = client.execute_interactive(code, timeout=timeout, output_hook=hook)
        return str(reply["content"]["status"]), "".join(out)
    finally:
        client.stop_channels()


def test_a_forked_kernel_shares_the_warm_process_and_decodes(forked: KernelManager) -> None:
    zygote = forking._zygote
    assert zygote is not None
    assert isinstance(forked.provisioner.process, forking.ForkedProcess)  # type: ignore[union-attr]
    code = (
        "import os, sys, explorer\nfrom explorer.models import registry\n"
        "print(os.getppid(), ('tiny-random', 'float32') in registry._loaded, 'torch' in sys.modules)\n"
        "t = explorer.decode(explorer.load_model('tiny-random'), 'Hello there', strategy='beam', num_beams=2,"
        " max_new_tokens=4)\nprint(len(t.results))"
    )
    status, out = _run(forked, code)
    assert status == "ok", out
    assert out.split() == [str(zygote.process.pid), "True", "True", "1"]  # preloaded before the fork


def test_interrupt_restart_and_shutdown_work_as_usual(forked: KernelManager) -> None:
    client = forked.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        msg_id = client.execute("import time; time.sleep(60)")
        time.sleep(1.0)
        forked.interrupt_kernel()
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        client.stop_channels()
    first = forked.provisioner.process.pid  # type: ignore[union-attr]
    forked.restart_kernel(now=True)
    second = forked.provisioner.process.pid  # type: ignore[union-attr]
    assert second != first
    assert not forking._alive(first)
    assert _run(forked, "print(6 * 7)") == ("ok", "42\n")
    forked.shutdown_kernel(now=True)
    assert not forking._alive(second)


def test_other_kernel_commands_start_the_ordinary_way(tmp_path: Path) -> None:
    spec = json.loads((KERNELS / "python3" / "kernel.json").read_text())
    spec["argv"] = ["python", "-m", "ipykernel", "-f", "{connection_file}"]  # not the launcher the zygote knows
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager()
    specs.kernel_dirs = [str(tmp_path)]
    km = KernelManager(kernel_name="other", kernel_spec_manager=specs)
    km.start_kernel()
    try:
        assert isinstance(km.provisioner, forking.ForkingProvisioner)
        assert isinstance(km.provisioner.process, subprocess.Popen)
        assert forking._zygote is None
        assert _run(km, "print(6 * 7)") == ("ok", "42\n")
    finally:
        km.shutdown_kernel(now=True)


def test_the_zygote_dies_with_the_server(tmp_path: Path) -> None:
    parent = subprocess.Popen(  # a stand-in server: starts a zygote (tiny-random), prints its pid, then waits
        [sys.executable, "-c", "import sys, time\nfrom explorer.serve import forking\n"
         "z = forking.Zygote('tiny-random')\nassert z.ready(180)\nprint(z.process.pid, flush=True)\ntime.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "DECODING_EXPLORER_MODEL": "tiny-random"},
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        zygote_pid = int(parent.stdout.readline())
        assert forking._alive(zygote_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    deadline = time.monotonic() + 10
    while forking._alive(zygote_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not forking._alive(zygote_pid)
