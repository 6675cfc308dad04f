"""JupyterHub for a class on one machine (``make hub``): students with their own passwords, a server each in its own
folder with the course notebooks (the Voila app and JupyterLab), a memory limit that Linux enforces, idle culling.

``configure(c, ...)`` is what ``docs/deploy/jupyterhub_config.py`` calls. Every student's server is a separate
process started by ``ClassSpawner`` (JupyterHub's ``SimpleLocalProcessSpawner``: the processes all run as the
hub's own system user, so this is for a class that is not hostile; docs/deploy.md says what to use otherwise), in
its own memory cgroup (``explorer.serve.memlimit``) and working folder. All of them read the one prepared model
cache, so their kernels share the weights (``explorer.models.mapped``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import secrets
import shutil
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar

from jupyterhub.auth import Authenticator
from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import Unicode

from explorer.serve.memlimit import MemoryCgroup

__all__ = [
    "ClassAuthenticator", "ClassSpawner", "check_password", "choose_port", "configure", "hash_password", "make_users",
    "port_range",
]  # fmt: skip

_ITERATIONS = 200_000


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>`` of ``password`` (what the users file stores).

    >>> check_password("flour", hash_password("flour")), check_password("bread", hash_password("flour"))
    (True, False)
    """
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _ITERATIONS)
    return f"pbkdf2_sha256${_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a ``hash_password`` string (in constant time)."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return scheme == "pbkdf2_sha256" and hmac.compare_digest(got, expected)


def make_users(folder: Path, names: list[str]) -> dict[str, str]:
    """Give each of ``names`` a random password: ``users.json`` (name -> hash, what the hub reads) and
    ``passwords.txt`` (name and password, for the lecturer to hand out; readable by its owner only). Users already
    in ``users.json`` keep theirs (and are not listed again). Returns the new ``{name: password}``."""
    folder.mkdir(parents=True, exist_ok=True)
    users_file = folder / "users.json"
    users: dict[str, str] = json.loads(users_file.read_text()) if users_file.is_file() else {}
    new = {name: secrets.token_urlsafe(9) for name in names if name not in users}
    users.update({name: hash_password(password) for name, password in new.items()})
    users_file.write_text(json.dumps(users, indent=1) + "\n")
    passwords = folder / "passwords.txt"
    with passwords.open("a") as out:
        out.writelines(f"{name}\t{password}\n" for name, password in new.items())
    passwords.chmod(0o600)
    return new


class ClassAuthenticator(Authenticator):  # type: ignore[misc]
    """Log in with a name and password from ``users_file`` (``make_users``); nobody else is allowed."""

    users_file = Unicode(config=True, help="JSON file: user name -> hash_password(password)")

    def _users(self) -> dict[str, str]:
        try:
            users = json.loads(Path(self.users_file).read_text())
        except (OSError, ValueError):
            self.log.error("cannot read the users file %r", self.users_file)
            return {}
        return users if isinstance(users, dict) else {}

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        name, password = data.get("username", ""), data.get("password", "")
        stored = self._users().get(name)
        return name if stored is not None and check_password(password, stored) else None

    def check_allowed(self, username: str, authentication: Any = None) -> bool:
        return username in self._users()


def _ephemeral_ports() -> range:
    """The ports Linux hands out to sockets bound to port 0 (every kernel's five, every outgoing connection)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def port_range(text: str) -> range:
    """``"20000-29999"`` as a range of ports; a clear error for anything else."""
    low, sep, high = text.partition("-")
    if not (sep and low.strip().isdigit() and high.strip().isdigit() and 1024 <= int(low) <= int(high) <= 65535):
        raise ValueError(f"a range of ports is low-high, from 1024 to 65535 (e.g. 20000-29999), not {text!r}")
    return range(int(low), int(high) + 1)


def choose_port(ip: str, ports: range, taken: set[int]) -> int:
    """A port of ``ports`` for a student's server: not in ``taken`` (the ports of the servers this hub started and
    has not stopped, some of which may not listen yet), free now, and, where ``ports`` allows, outside Linux's
    ephemeral range, so that no kernel's socket is given it between now and the server's start.

    JupyterHub's own choice (bind to port 0, close, hand the number over) gave two of 20 students who logged in at
    once the same port: the second student's server could not start, and the hub sent that student to the first
    one's server (a 404)."""
    ephemeral = _ephemeral_ports()
    outside = [p for p in ports if p not in ephemeral]
    inside = [p for p in ports if p in ephemeral]
    for port in random.sample(outside, len(outside)) + random.sample(inside, len(inside)):
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((ip, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port for a student's server in {ports.start}-{ports.stop - 1}")


class ClassSpawner(SimpleLocalProcessSpawner):  # type: ignore[misc]
    """A student's server: its own process, working folder (``home_dir_template``, the course notebooks copied in
    on first start and never overwritten), memory cgroup (``mem_limit``, enforced where cgroups can be made) and a
    port no other student's server has (``port_range``, ``choose_port``)."""

    course_dir = Unicode(config=True, help="Folder whose notebooks every student gets a copy of")
    port_range = Unicode("20000-29999", config=True, help="Ports for the students' servers (when Spawner.port is 0)")
    _ports: ClassVar[set[int]] = set()  # ports of the servers started and not yet stopped, in this hub
    port: int  # Spawner.port, a traitlet: 0 until start() chooses one

    def _copy_course(self) -> None:
        home = Path(self.home_dir)
        home.mkdir(parents=True, exist_ok=True)
        for notebook in sorted(Path(self.course_dir).glob("*.ipynb")):
            if not (home / notebook.name).exists():
                shutil.copy2(notebook, home / notebook.name)

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env = super().user_env(env)
        home = Path(self.home_dir)
        for name, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                          ("IPYTHONDIR", ".ipython"), ("JUPYTER_CONFIG_DIR", ".jupyter"),
                          ("JUPYTER_DATA_DIR", ".local/share/jupyter"), ("JUPYTER_RUNTIME_DIR", ".local/runtime"),
                          ("MPLCONFIGDIR", ".config/matplotlib"), ("XDG_CACHE_HOME", ".cache")):  # fmt: skip
            env[name] = str(home / sub)
        return env

    async def start(self) -> Any:
        self._copy_course()
        self._cgroup = MemoryCgroup.create(self.user.name, int(self.mem_limit)) if self.mem_limit else None
        if self.mem_limit and self._cgroup is None:
            self.log.warning("mem_limit of %s is not enforced: no memory cgroup can be made here", self.user.name)
        self._chosen_port: int | None = None
        if self.port == 0:  # else the port was configured: keep it
            chosen = choose_port(self.ip or "127.0.0.1", port_range(self.port_range), self._ports)
            self._ports.add(chosen)
            self._chosen_port = chosen
            self.port = chosen
        try:
            return await super().start()
        except BaseException:
            self._release_port()
            raise

    def _release_port(self) -> None:
        chosen = getattr(self, "_chosen_port", None)
        if chosen is not None:
            self._ports.discard(chosen)
            self.port = 0  # the next start chooses again
            self._chosen_port = None

    def make_preexec_fn(self, name: str) -> Any:
        parent = super().make_preexec_fn(name)
        group = getattr(self, "_cgroup", None)

        def preexec() -> None:
            parent()
            if group is not None:
                group.join()  # before exec: the server and every kernel it starts are in the student's cgroup

        return preexec

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        self._release_port()
        group = getattr(self, "_cgroup", None)
        if group is not None:
            group.remove()  # whatever the server left (a kernel orphaned by an out-of-memory kill)
            self._cgroup = None


def configure(c: Any, *, root: Path, state: Path, venv: Path) -> None:
    """Fill a JupyterHub config ``c`` for ``make hub`` (the environment variables ``HUB_*`` override defaults)."""
    env = os.environ
    state.mkdir(parents=True, exist_ok=True)
    c.JupyterHub.ip = env.get("HUB_IP", "127.0.0.1")
    c.JupyterHub.port = int(env.get("HUB_PORT", "8000"))
    c.JupyterHub.hub_port = int(env.get("HUB_API_PORT", "8081"))
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env.get('HUB_PROXY_API_PORT', '8001')}"
    proxy = state / "node" / "node_modules" / ".bin" / "configurable-http-proxy"  # make hub: npm ci
    c.ConfigurableHTTPProxy.command = [env.get("HUB_PROXY", str(proxy))]
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.authenticator_class = ClassAuthenticator
    c.ClassAuthenticator.users_file = env.get("HUB_USERS_FILE", str(state / "users.json"))
    c.JupyterHub.spawner_class = ClassSpawner
    c.ClassSpawner.home_dir_template = str(state / "users" / "{username}")
    c.ClassSpawner.course_dir = str(root / "notebooks")
    c.Spawner.cmd = [str(venv / "bin" / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.mem_limit = env.get("HUB_MEM_LIMIT", "2G")
    c.ClassSpawner.port_range = env.get("HUB_SERVER_PORTS", "20000-29999")
    port_range(c.ClassSpawner.port_range)  # a wrong HUB_SERVER_PORTS stops the hub at its start, not a student's spawn
    c.Spawner.start_timeout = 180
    c.Spawner.http_timeout = 180
    cache = Path(env.get("XDG_CACHE_HOME", root / ".state" / "cache")) / "decoding-explorer"
    c.Spawner.environment = {
        "DECODING_EXPLORER_CACHE": str(cache),  # the one prepared cache: every student's kernels share its weights
        "JUPYTER_PATH": str(root / "explorer" / "app" / "jupyter"),  # the app's Voila template
        # the app as Voila, nothing from a CDN (no MathJax: the app has no maths), idle kernels culled after 10 min
        "JUPYTER_CONFIG_PATH": str(Path(__file__).parent / "singleuser"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        # one thread per kernel: on one machine a class shares few cores, and a second thread each only adds contention
        "OMP_NUM_THREADS": env.get("HUB_THREADS", "1"),
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        **({"DECODING_EXPLORER_MODEL": env["DECODING_EXPLORER_MODEL"]} if env.get("DECODING_EXPLORER_MODEL") else {}),
    }  # fmt: skip
    c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []  # the servers run as the hub's user: root here
    idle = env.get("HUB_IDLE_TIMEOUT", "3600")  # a server nobody used for an hour is stopped
    c.JupyterHub.services = [{
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={idle}", "--cull-every=60"],
    }]  # fmt: skip
    c.JupyterHub.load_roles = [{
        "name": "idle-culler", "services": ["idle-culler"],
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    }]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """``python -m explorer.serve.hub STATE COUNT``: make sure students ``student01`` .. ``studentNN`` exist in
    ``STATE/users.json``; print where the new ones' passwords are."""
    args = sys.argv[1:] if argv is None else argv
    state, count = Path(args[0]), int(args[1])
    new = make_users(state, [f"student{i:02d}" for i in range(1, count + 1)])
    if new:
        print(f"{len(new)} new students; their passwords: {state / 'passwords.txt'}")


if __name__ == "__main__":
    main()
