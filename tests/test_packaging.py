"""The project installs what it needs: environment.yml matches pyproject.toml, and CI runs make test."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("app", "dev"):
        reqs += project["optional-dependencies"][extra]
    return {_name(r): r for r in reqs}


def _environment_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]
    return {_name(r): r for r in reqs if not r.startswith("-e")}


def test_environment_yml_lists_the_same_packages_as_pyproject() -> None:
    ours, conda = _pyproject_requirements(), _environment_requirements()
    assert set(ours) == set(conda)
    for name, requirement in ours.items():
        if name != "torch":
            assert conda[name] == requirement, name


def test_torch_is_pinned_to_the_same_cpu_build_everywhere() -> None:
    makefile = (ROOT / "Makefile").read_text()
    pin = re.search(r"^TORCH := (torch==\S+)$", makefile, re.M)
    assert pin is not None
    assert _environment_requirements()["torch"] == pin.group(1)


def test_ci_runs_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "make test" in script
    assert "set -euo pipefail" in script


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "make app" in head
    assert "make test" in head
