"""Schema validation of the largest trace the loader accepts: fastjsonschema (what loads use) against jsonschema.

Usage: ``python benchmarks/bench_validate.py [--beams 64] [--steps 108] [--repeats 3]``

Builds a beam trace on tiny-random whose JSON comes close to ``explorer.trace_io.MAX_TRACE_BYTES`` (64 MiB: 64
beams x 108 steps x 40 recorded candidates is 61.8 MB), parses it once, then times each validator on the same
parsed document, interleaved, best of ``--repeats`` (jsonschema once: it takes minutes). The ratio against
fastjsonschema is what matters; ``explorer/trace_validate.py`` says which checker the loader uses and why.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema
import jsonschema
import torch

import explorer
from explorer.trace_io import MAX_TRACE_BYTES, dump_trace, trace_schema


def best_of(check: Callable[[], Any], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls (a full collection first, none during)."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        check()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Print the seconds per validator and the ratios to fastjsonschema."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beams", type=int, default=64)
    parser.add_argument("--steps", type=int, default=108)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = explorer.load_model("tiny-random")
    trace = explorer.decode(model, [5, 6, 7, 8], "beam", num_beams=args.beams, max_new_tokens=args.steps,
                            min_new_tokens=args.steps, record_top_k=40)
    text = dump_trace(trace)
    print(f"trace: {len(text) / 1e6:.1f} MB of JSON (limit {MAX_TRACE_BYTES / 1e6:.1f} MB), "
          f"{sum(len(s.hypotheses) for s in trace.steps)} hypotheses")
    doc = json.loads(text)
    fast = fastjsonschema.compile(trace_schema())
    slow = jsonschema.Draft7Validator(trace_schema())
    times = {"fastjsonschema": [], "jsonschema": []}
    for _ in range(2):
        times["fastjsonschema"].append(best_of(lambda: fast(doc), args.repeats))
        times["jsonschema"].append(best_of(lambda: slow.is_valid(doc), 1))
    base = min(times["fastjsonschema"])
    for name, seconds in times.items():
        print(f"{name:>15}: {min(seconds):7.2f} s  ({min(seconds) / base:5.1f}x fastjsonschema)")


if __name__ == "__main__":
    main()
