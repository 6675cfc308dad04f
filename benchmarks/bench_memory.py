"""Memory per student kernel: PSS of 1, 4, 8 and 16 Jupyter kernels that each hold SmolLM2 and ran a beam search.

Usage: ``python benchmarks/bench_memory.py [--counts 1,4,8,16] [--copied-counts 1,4] [--json ...]``

Each kernel is a real IPython kernel (``jupyter_client``, the venv's ``python3`` kernel spec) that runs what a
student's app kernel runs: ``from explorer.app import Explorer; app = Explorer()`` (imports the app, loads the
default model from the cache) and a 4-beam, 30-token beam search on its own prompt. With all ``N`` kernels
alive, each one's ``/proc/<pid>/smaps_rollup`` is read: ``Pss`` (resident memory, pages shared with others
counted as a share), its file part (the mapped weights, the libraries) and its anonymous part (the process's
own), and ``Rss``. "shared" is the cache as it is (the weights mapped, shared through the page cache);
"copied" is the baseline measured in the same run: the same kernels, each copying every weight into its own
memory after loading, which is what the unaligned cache of format 1 made ``align_weights`` do. "forked" is what
``make app`` runs: the kernels are forked from one warm process (``explorer.serve.forking``) that imported the app
and loaded the model once; that process's own PSS is reported beside them (it is memory the class pays once).
The goal of the class issue: 4 kernels at most 450 MB PSS each on average.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ("The secret to a good loaf of bread is", "Once upon a time, a fox", "The best way to learn Python is",
           "In the middle of the ocean there", "My favourite season is autumn because")
STUDENT = """
import torch
if {threads}:
    torch.set_num_threads({threads})
import explorer
from explorer.app import Explorer
app = Explorer()
{copy}
trace = explorer.decode(app.model, {prompt!r}, strategy="beam", num_beams=4, max_new_tokens=30)
print(len(trace.results))
"""
COPY = """
import torch
with torch.no_grad():
    for p in app.model.hf.parameters():
        p.data = p.data.clone()  # what align_weights did to every tensor of the unaligned cache (format 1)
"""
FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Clean", "Private_Dirty")


def rollup(pid: int) -> dict[str, float]:
    """The ``smaps_rollup`` counters of ``pid`` in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = int(value.split()[0]) / 1024
    return out


def run_student(km: KernelManager, index: int, copy: bool, threads: int = 0, timeout: float = 900.0) -> float:
    """Run the student's code in a started kernel; seconds it took. Raises on an error in the kernel."""
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=timeout)
        code = STUDENT.format(copy=COPY if copy else "", prompt=PROMPTS[index % len(PROMPTS)] + f" ({index})",
                              threads=threads)
        began = time.perf_counter()
        reply = client.execute_interactive(code, timeout=timeout, output_hook=lambda _msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"kernel {index}: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
        return time.perf_counter() - began
    finally:
        client.stop_channels()


def kernel_manager(mode: str) -> KernelManager:
    """A kernel manager for ``python3``: the venv's own kernel spec, or ``make app``'s (forked) for "forked"."""
    if mode != "forked":
        return KernelManager(kernel_name="python3")
    specs = KernelSpecManager()
    specs.kernel_dirs = [str(ROOT / "explorer" / "serve" / "jupyter" / "kernels")]
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def measure(count: int, mode: str, threads: int = 0) -> dict[str, Any]:
    """Start ``count`` kernels one after the other, run the student's code in each, then read their memory."""
    kernels: list[KernelManager] = []
    seconds: list[float] = []
    try:
        for index in range(count):
            km = kernel_manager(mode)
            km.start_kernel(cwd=str(ROOT / "notebooks"))
            kernels.append(km)
            seconds.append(run_student(km, index, copy=mode == "copied", threads=threads))
        time.sleep(1.0)
        memory = [rollup(km.provisioner.process.pid) for km in kernels]  # type: ignore[union-attr]
    finally:
        for km in kernels:
            km.shutdown_kernel(now=True)
    mean = {key: statistics.fmean(m[key] for m in memory) for key in FIELDS}
    row = {"kernels": count, "mode": mode, "mean": mean, "each": memory, "seconds": seconds,
           "total_pss_mb": sum(m["Pss"] for m in memory), "zygote": None}
    if mode == "forked":
        from explorer.serve import forking

        zygote = forking._zygote
        if zygote is not None:
            row["zygote"] = rollup(zygote.process.pid)
            row["total_pss_mb"] += row["zygote"]["Pss"]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| kernels | weights | PSS per kernel (MB) | of it file-backed | of it anonymous | RSS per kernel "
             "| warm process PSS | PSS in all | load + beam search (s, median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        m = row["mean"]
        zygote = f"{row['zygote']['Pss']:.0f}" if row["zygote"] else "-"
        lines.append(f"| {row['kernels']} | {row['mode']} | {m['Pss']:.0f} | {m['Pss_File']:.0f} | {m['Pss_Anon']:.0f} "
                     f"| {m['Rss']:.0f} | {zygote} | {row['total_pss_mb']:.0f} | "
                     f"{statistics.median(row['seconds']):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,4,8,16", help="kernels alive at once, forked (as make app runs them)")
    parser.add_argument("--shared-counts", default="1,4", help="the same, each kernel started on its own")
    parser.add_argument("--copied-counts", default="1,4", help="the same, each kernel copying the weights")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per kernel (0: torch's default); on a "
                        "few shared cores, 1 keeps many kernels from spinning against each other")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "memory.json")
    args = parser.parse_args()
    plan = [(int(n), "copied") for n in args.copied_counts.split(",") if n]
    plan += [(int(n), "shared") for n in args.shared_counts.split(",") if n]
    plan += [(int(n), "forked") for n in args.counts.split(",") if n]
    rows = []
    for count, mode in plan:
        print(f"{count} kernels, {mode} ...", file=sys.stderr, flush=True)
        rows.append(measure(count, mode, args.threads))
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
