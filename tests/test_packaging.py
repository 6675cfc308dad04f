"""The project installs what it needs: environment.yml matches pyproject.toml and the lock, and CI runs make test."""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / ".ci" / "lock" / "main.txt"
# environment.yml lists the direct dependencies and these extras of pyproject.toml (all of them, as the lock does).
EXTRAS = ("app", "dev", "lab", "bench", "hub")
# conda-forge names that are not the PyPI name.
CONDA_TO_PYPI = {
    "pytorch": "torch", "pytorch-cpu": "torch", "playwright-python": "playwright", "matplotlib-base": "matplotlib",
}
NOT_DEPENDENCIES = {"python", "pip"}  # in environment.yml's conda section, but not the project's dependencies


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    return _normalize(re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0])


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _direct_dependencies() -> list[str]:
    project = _pyproject()
    reqs = list(project["dependencies"])
    for extra in EXTRAS:
        reqs += project["optional-dependencies"][extra]
    return [_name(r) for r in reqs]


def _locked_versions() -> dict[str, str]:
    """`name==version \\` lines of the pip-compile lock, e.g. {"torch": "2.13.0+cpu"}."""
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\$", LOCK.read_text(), re.M)
    return {_normalize(name): version for name, version in pins}


def _environment() -> tuple[list[str], list[str]]:
    """environment.yml's conda specs (`name=version[=build]`) and pip lines, comments stripped."""
    conda: list[str] = []
    pip: list[str] = []
    section = None
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line == "dependencies:":
            section = conda
        elif line == "  - pip:":
            section = pip
        elif not line.startswith(" "):
            section = None
        elif section is not None and line.lstrip().startswith("- "):
            section.append(line.lstrip()[2:].strip())
    return conda, pip


def _conda_pins() -> list[tuple[str, str]]:
    """(PyPI name, version) of each conda spec; `pytorch=2.13.0=cpu_*` gives ("torch", "2.13.0")."""
    pins = []
    for spec in _environment()[0]:
        name, _, rest = spec.partition("=")
        name = CONDA_TO_PYPI.get(_normalize(name), _normalize(name))
        if name not in NOT_DEPENDENCIES:
            pins.append((name, rest.split("=")[0]))
    return pins


def _pip_pins() -> list[tuple[str, str]]:
    """(name, version) of each `name==version` line; options (--extra-index-url, -e .) are not packages."""
    pins = []
    for line in _environment()[1]:
        if line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not pinned with ==: {line!r}"
        pins.append((_normalize(name), version))
    return pins


def test_the_parsers_find_the_packages() -> None:
    conda, pip = _environment()
    assert {"python=3.11", "pip", "-e ."} <= set(conda) | set(pip)
    assert len(_conda_pins()) + len(_pip_pins()) > 10
    assert len(_conda_pins()) > 10  # conda-forge first: PyPI only for what it lacks
    assert len(_pip_pins()) > 5
    assert len(_direct_dependencies()) > 10
    assert len(_locked_versions()) > 100
    assert _locked_versions()["numpy"].count(".") == 2


def test_every_extra_is_a_decision() -> None:
    """A new extra in pyproject.toml must be added to EXTRAS (and environment.yml) or left out on purpose here."""
    assert set(_pyproject()["optional-dependencies"]) == set(EXTRAS)


def test_environment_lists_each_direct_dependency_exactly_once() -> None:
    listed = Counter(name for name, _ in _conda_pins() + _pip_pins())
    assert [name for name, n in listed.items() if n > 1] == []
    assert sorted(listed) == sorted(_direct_dependencies())


def test_environment_pins_the_locked_versions() -> None:
    locked = _locked_versions()
    for name, version in _pip_pins():
        assert version == locked[name], name
    for name, version in _conda_pins():  # conda versions have no local part: torch 2.13.0+cpu is pytorch 2.13.0
        assert version == locked[name].split("+")[0], name


def test_torch_is_the_locked_cpu_build() -> None:
    locked = _locked_versions()["torch"]
    assert locked.endswith("+cpu")
    pip = dict(_pip_pins())
    if "torch" in pip:  # PyPI's torch is a CUDA build: the +cpu wheel needs PyTorch's CPU index
        assert pip["torch"] == locked
        assert "--extra-index-url https://download.pytorch.org/whl/cpu" in _environment()[1]
    else:
        assert any(spec.startswith(f"pytorch={locked.split('+')[0]}=cpu") for spec in _environment()[0])


def test_python_is_the_oldest_supported_and_the_locks() -> None:
    oldest = re.fullmatch(r">=(\d+\.\d+)", _pyproject()["requires-python"])
    assert oldest is not None
    assert f"python={oldest.group(1)}" in _environment()[0]
    assert f"pip-compile with Python {oldest.group(1)}\n" in LOCK.read_text()


def test_ci_runs_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "make test" in script
    assert "set -euo pipefail" in script


def test_readme_starts_with_the_three_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    block = head.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.splitlines()] == ["make app", "make test", "make lab"]


def _dry_run(target: str) -> str:
    """The commands ``make <target>`` would run here (``make -n``)."""
    done = subprocess.run(["make", "-n", "-C", str(ROOT), target], check=True, capture_output=True, text=True)
    return done.stdout


def test_make_lab_opens_the_notebooks_on_loopback_with_the_state_of_make_app() -> None:
    """JupyterLab on notebooks/, on 127.0.0.1, with its own token (nothing turns it off), after SmolLM2 is prepared,
    with the Makefile's exported state folders (the same as make app's: .state/, nothing in $HOME)."""
    commands = _dry_run("lab")
    lab = next(line for line in commands.splitlines() if "jupyter lab" in line)
    assert lab.startswith(".venv/bin/jupyter lab ")
    assert "--ServerApp.ip=127.0.0.1" in lab
    assert "--ServerApp.root_dir=notebooks" in lab
    assert "token" not in lab.lower()
    assert "password" not in lab.lower()
    assert "python -m explorer.models.smollm2" in commands  # make prepare first
    assert "JUPYTER_" not in lab  # no state of its own: the Makefile's exports
    assert "XDG_" not in lab
    printed = subprocess.run(["make", "-s", "-C", str(ROOT), "print-env"], check=True, capture_output=True,
                             text=True).stdout
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "XDG_CACHE_HOME"):
        assert f"export {name}={ROOT}/.state/" in printed, name


def test_make_install_sets_up_the_notebook_filter() -> None:
    assert "git config filter.nbstripout.clean" in _dry_run("install")
    attributes = (ROOT / ".gitattributes").read_text()
    assert "*.ipynb filter=nbstripout" in attributes.splitlines()
    teaching = (ROOT / "docs" / "teaching.md").read_text()
    assert "make lab" in teaching
    assert "pip install jupyterlab" not in teaching
