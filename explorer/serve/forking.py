"""Kernels forked from one warm process: Python, PyTorch, the app and the model are loaded once, shared by all.

A kernel started the usual way imports PyTorch, transformers, pandas, plotly and the app on its own: about 380 MB
of its own memory before it has done anything, which no other process can share. ``ForkingProvisioner`` (a
jupyter_client kernel provisioner, named ``explorer-forking-provisioner`` in a kernel spec) asks a *zygote* (one
process per server that has imported all of that and loaded the default model, then waits) to ``fork()`` each new
kernel: the child shares every page its parent had, copy-on-write, and starts in a fraction of a second. The
zygote runs no computation before it forks (no thread pool exists in it yet), starts with the first kernel, and
dies with the server. Any kernel command it does not know (not ``-m ipykernel_launcher``), a zygote that
failed, or ``EXPLORER_FORK=0`` in the server's environment falls back to the ordinary launch.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

__all__ = ["ForkedProcess", "ForkingProvisioner", "Zygote", "zygote_main"]

PRELOAD = ("explorer.app", "ipykernel.kernelapp", "plotly.graph_objects", "pandas")
_LAUNCHER = ("-m", "ipykernel_launcher")


class ForkedProcess:
    """What jupyter_client needs of a ``Popen`` for a kernel that is the zygote's child, not ours: its pid, poll,
    wait, signals. The zygote reaps it, so its exit code is not known here (reported as 0)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not _alive(self.pid):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has exited and waits for its parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Zygote:
    """The warm process and the socket it listens on; ``fork(argv, env, cwd)`` returns a new kernel's pid."""

    def __init__(self, preload_model: str | None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="explorer-zygote-"))
        self.socket = self.folder / "socket"
        command = [sys.executable, "-m", "explorer.serve.forking", str(self.socket)]
        if preload_model:
            command.append(preload_model)
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)

    def ready(self, timeout: float) -> bool:
        """Wait until the zygote listens (it loads the app and the model first); ``False`` if it died or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.socket.exists():
                return True
            time.sleep(0.05)
        return False

    def fork(self, argv: list[str], env: dict[str, str], cwd: str) -> int:
        """Ask for one kernel; its pid. Raises ``OSError`` when the zygote does not answer with one."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(30)
            client.connect(str(self.socket))
            client.sendall(json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode() + b"\n")
            answer = json.loads(client.makefile("rb").readline() or b"{}")
        if "pid" not in answer:
            raise OSError(f"the zygote did not fork a kernel: {answer.get('error', 'no answer')}")
        return int(answer["pid"])

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        with contextlib.suppress(OSError):
            self.socket.unlink()
            self.folder.rmdir()


_zygote: Zygote | None = None
_zygote_failed = False
_zygote_lock = threading.Lock()


def _the_zygote(timeout: float = 180.0) -> Zygote | None:
    """This server's zygote, started on first use; ``None`` (and ordinary launches from then on) if it fails.
    Kernels that start together (Voila fills its pool at once) wait for the same one."""
    with _zygote_lock:
        return _start_zygote(timeout)


def _start_zygote(timeout: float) -> Zygote | None:
    global _zygote, _zygote_failed
    if _zygote is None and not _zygote_failed:
        # the model Explorer() opens (explorer.app.explorer.DEFAULT_MODEL_ENV; not imported: the server stays light)
        candidate = Zygote(os.environ.get("DECODING_EXPLORER_MODEL", "").strip() or "smollm2-135m")
        if candidate.ready(timeout):
            _zygote = candidate
            import atexit

            atexit.register(candidate.stop)
        else:
            candidate.stop()
            _zygote_failed = True
    return _zygote


class ForkingProvisioner(LocalProvisioner):  # type: ignore[misc]
    """A ``LocalProvisioner`` whose ipykernel kernels are forked from the zygote (see the module's docstring)."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        if tuple(cmd[1:3]) != _LAUNCHER or os.environ.get("EXPLORER_FORK", "1") == "0":
            return await super().launch_kernel(cmd, **kwargs)
        zygote = await asyncio.get_running_loop().run_in_executor(None, _the_zygote)
        if zygote is None:
            return await super().launch_kernel(cmd, **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or Path.cwd())
        try:
            pid = await asyncio.get_running_loop().run_in_executor(None, zygote.fork, cmd[3:], env, cwd)
        except OSError as error:
            self.log.warning("explorer zygote: %s; starting the kernel the ordinary way", error)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedProcess(pid)  # type: ignore[assignment]  # Popen-like: what LocalProvisioner uses
        self.pid = self.pgid = pid  # the child starts its own session: its process group is its pid
        self.cwd = cwd
        return self.connection_info


def _reap(_signum: int, _frame: object) -> None:
    """Collect every exited child (the kernels), so none lingers as a zombie."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the server that started the zygote dies (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _child(request: dict[str, Any], listener: socket.socket, connection: socket.socket) -> None:
    """In the forked child: become the kernel the request asked for, then exit."""
    listener.close()
    connection.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setsid()
    env = {str(k): str(v) for k, v in request["env"].items()}
    env["JPY_PARENT_PID"] = str(os.getppid())
    os.environ.clear()
    os.environ.update(env)
    os.chdir(request["cwd"])
    from ipykernel.kernelapp import IPKernelApp

    code = 0
    # the kernel exits when the zygote (hence the server) goes; read from the environment at import, so given here
    argv = [*request["argv"], f"--IPKernelApp.parent_handle={os.getppid()}"]
    try:
        IPKernelApp.launch_instance(argv=argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0
    finally:
        os._exit(code)


def _serve(listener: socket.socket) -> None:
    """Fork a kernel for each request, answer with its pid; forever (until SIGTERM)."""
    while True:
        try:
            connection, _ = listener.accept()
        except InterruptedError:
            continue
        with connection:
            try:
                request = json.loads(connection.makefile("rb").readline())
                pid = os.fork()
            except (OSError, ValueError) as error:
                with contextlib.suppress(OSError):
                    connection.sendall(json.dumps({"error": str(error)}).encode() + b"\n")
                continue
            if pid == 0:
                _child(request, listener, connection)
            connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def zygote_main(socket_path: str, model: str | None = None) -> None:
    """The zygote: preload, freeze what is loaded (the garbage collector then leaves those pages alone), listen.

    The socket appears only when everything is loaded: it is the signal that the zygote is ready.
    """
    _die_with_parent()
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    if model:
        import explorer

        explorer.load_model(model)
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = f"{socket_path}.partial"
    listener.bind(partial)
    listener.listen(64)
    os.replace(partial, socket_path)
    _serve(listener)


if __name__ == "__main__":
    zygote_main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
