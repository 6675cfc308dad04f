"""The path to Kubernetes, checked as far as this machine allows (no Docker, no cluster here): the z2jh config.yaml
uses only keys the chart's values schema has, with values of the types it takes; the Dockerfile's steps are `make`
targets that install from the lock, and its run-time environment is the one `make hub` gives a student's server."""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "docs" / "deploy"
SCHEMA = yaml.safe_load((ROOT / "tests" / "fixtures" / "z2jh-values-schema.yaml").read_text())
#: KubeSpawner traits that a profile may override (kubespawner_override), among those config.yaml uses.
KUBESPAWNER_TRAITS = {"image", "extra_resource_limits", "mem_guarantee", "mem_limit", "cpu_guarantee", "cpu_limit",
                      "environment", "node_selector", "tolerations"}  # fmt: skip


def _config() -> dict[str, Any]:
    config = yaml.safe_load((DEPLOY / "config.yaml").read_text())
    assert isinstance(config, dict)
    return config


def _bytes(size: str | float) -> float:
    """A Kubernetes / JupyterHub byte size (``768M``, ``1.5G``) in bytes."""
    match = re.fullmatch(r"([\d.]+)\s*([KMGT]?)i?", str(size))
    assert match, size
    return float(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " ")


def _dockerfile() -> list[tuple[str, str]]:
    """``(instruction, arguments)`` of the Dockerfile, continued lines joined, comments left out."""
    text = re.sub(r"\s*\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in _dockerfile():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def _make_targets() -> set[str]:
    """The Makefile's rule names (``a b: prerequisites`` gives ``a`` and ``b``)."""
    rules = re.finditer(r"^([a-z][\w -]*):(?!=)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    return {name for rule in rules for name in rule.group(1).split()}


def test_the_config_uses_only_keys_of_the_charts_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(_config(), SCHEMA)


@pytest.mark.parametrize(("path", "value"), [
    (("singleuser", "memory", "guarnatee"), "1G"),  # a misspelt key
    (("cull", "timeout"), "an hour"),  # a value of the wrong type
    (("singleuser", "storage", "type"), "nfs"),  # a value the chart does not know
    (("prePuller", "hooks"), {"enabled": True}),
])  # fmt: skip
def test_the_schema_check_catches_what_helm_would_refuse(path: tuple[str, ...], value: object) -> None:
    config = copy.deepcopy(_config())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, SCHEMA)


def test_the_configs_numbers_hold_together() -> None:
    config = _config()
    single = config["singleuser"]
    assert _bytes(single["memory"]["guarantee"]) <= _bytes(single["memory"]["limit"])
    assert single["cpu"]["guarantee"] <= single["cpu"]["limit"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert single["image"]["tag"] == version
    assert [p.get("default") for p in single["profileList"]].count(True) == 1
    for profile in single["profileList"]:
        assert set(profile.get("kubespawner_override", {})) <= KUBESPAWNER_TRAITS
    gpu = next(p for p in single["profileList"] if "GPU" in p["display_name"])
    assert gpu["kubespawner_override"]["environment"]["DECODING_EXPLORER_DEVICE"] == "cuda"
    assert gpu["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert config["cull"]["enabled"]
    assert config["prePuller"]["hook"]["enabled"]
    assert config["prePuller"]["continuous"]["enabled"]
    assert "$COURSE_DIR" in " ".join(single["lifecycleHooks"]["postStart"]["exec"]["command"])
    assert _env()["COURSE_DIR"].endswith("/notebooks")


def test_the_dockerfile_builds_with_make_from_the_lock() -> None:
    steps = _dockerfile()
    runs = [arguments for instruction, arguments in steps if instruction == "RUN"]
    assert not any(re.search(r"\bpip\b", run) for run in runs), "installs go through make (the lock), not pip"
    make = [run for run in runs if run.startswith("make ")]
    assert make == ["make install prepare && chmod -R a+rX /opt/decoding-explorer"]
    targets = _make_targets()
    assert {"install", "prepare"} <= targets
    makefile = (ROOT / "Makefile").read_text()
    assert "PIP_LOCKED := pip install -q --require-hashes --no-deps" in makefile
    for instruction, arguments in steps:
        if instruction == "COPY":
            for source in shlex.split(arguments)[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the project"
    assert any(instruction == "USER" and arguments != "root" for instruction, arguments in steps)
    assert steps[-1] == ("CMD", '["jupyterhub-singleuser"]')


def test_the_images_run_time_is_offline_and_as_make_hub_sets_it(tmp_path: Path) -> None:
    from explorer.serve.hub import configure

    env = _env()
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    workdir = next(a for i, a in _dockerfile() if i == "WORKDIR")
    # the cache `make prepare` fills in the image: Makefile's STATE/cache, read through DECODING_EXPLORER_CACHE
    assert env["DECODING_EXPLORER_CACHE"] == f"{workdir}/.state/cache/decoding-explorer"

    class Config(dict[str, Any]):
        def __getattr__(self, name: str) -> Any:
            return self.setdefault(name, Config())

        def __setattr__(self, name: str, value: Any) -> None:
            self[name] = value

    c = Config()
    configure(c, root=ROOT, state=tmp_path, venv=ROOT / ".venv")
    hub_env = c.Spawner.environment
    for name in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH"):
        assert env[name].removeprefix(f"{workdir}/") == str(Path(hub_env[name]).relative_to(ROOT))
        assert (ROOT / env[name].removeprefix(f"{workdir}/")).is_dir()
