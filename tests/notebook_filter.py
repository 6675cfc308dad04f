"""The notebooks' git filter as ``make install`` sets it up, run as git runs it: for the tests that save notebooks."""

from __future__ import annotations

import functools
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def filter_command(bin_dir: Path = Path(sys.executable).parent) -> str:
    """The clean filter that the Makefile's ``notebook-filter`` recipe configures, with the nbstripout of
    ``bin_dir`` (the recipe run in a scratch repository, so that this repository's config is not touched)."""
    with tempfile.TemporaryDirectory(prefix="notebook-filter-") as tmp:
        subprocess.run(["git", "init", "-q", tmp], check=True)
        subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "-C", tmp, "notebook-filter", f"BIN={bin_dir}"],
                       check=True, capture_output=True, text=True)
        done = subprocess.run(["git", "-C", tmp, "config", "--get", "filter.nbstripout.clean"], check=True,
                              capture_output=True, text=True)
    return done.stdout.strip()


def clean(text: str) -> str:
    """What git stores of a notebook whose file holds ``text``."""
    done = subprocess.run(["sh", "-c", filter_command()], input=text, check=True, capture_output=True, text=True,
                          cwd=ROOT)
    return done.stdout
