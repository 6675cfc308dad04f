"""Traced decoding against the floor: a bare KV-cache forward loop at the same batch size, measured side by side.

Usage: ``python benchmarks/bench_engine.py [--model smollm2-135m] [--tokens 50] [--repeats 3]``

For each strategy the script times (a) a bare loop that only feeds one token per row through the model with a
KV cache, at the strategy's batch size, and (b) ``explorer.decode`` with full recording; runs are interleaved
and the best of ``--repeats`` is kept for each, so both see the same machine. It prints ms/step and the ratio
traced / bare, and transformers' own ``generate()`` for greedy and beam as a second baseline.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import DynamicCache

import explorer

PROMPT = "The secret to a good loaf of bread is"
CASES: dict[str, dict[str, Any]] = {
    "greedy": {},
    "beam": {"num_beams": 4},
    "diverse": {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0},
    "constrained": {"num_beams": 4, "constraints": [" flour"]},
}


def bare_loop(model: Any, prompt: list[int], rows: int, steps: int) -> float:
    """Seconds for a prefill plus ``steps - 1`` single-token forwards with a KV cache, no search, no recording."""
    hf = model.hf
    ids = torch.tensor([prompt] * rows)
    start = time.perf_counter()
    with torch.inference_mode():
        cache = DynamicCache(config=hf.config)
        out = hf(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        for _ in range(steps - 1):
            token = out.logits[:, -1, :].argmax(-1, keepdim=True)
            out = hf(input_ids=token, past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)
    return time.perf_counter() - start


def traced(model: Any, prompt: list[int], strategy: str, steps: int) -> tuple[float, int]:
    """Seconds for a fully recorded decode that runs exactly ``steps`` steps (eos is banned by min_new_tokens)."""
    params = dict(CASES[strategy])
    start = time.perf_counter()
    trace = explorer.decode(model, prompt, strategy, max_new_tokens=steps, min_new_tokens=steps, **params)
    return time.perf_counter() - start, len(trace.steps)


def hf_generate(model: Any, prompt: list[int], strategy: str, steps: int) -> float:
    """Seconds for transformers' generate() with output_scores, same settings."""
    ids = torch.tensor([prompt])
    eos = model.info.eos_token_ids[0]
    start = time.perf_counter()
    model.hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=CASES[strategy].get(
        "num_beams", 1), max_new_tokens=steps, min_new_tokens=steps, eos_token_id=eos, pad_token_id=eos,
        return_dict_in_generate=True, output_scores=True)
    return time.perf_counter() - start


def best(fn: Callable[[], float], repeats: int) -> float:
    """Best of ``repeats`` timings."""
    return min(fn() for _ in range(repeats))


def main() -> None:
    """Run every case and print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--strategies", nargs="*", default=list(CASES))
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = explorer.load_model(args.model)
    prompt = list(explorer.tokenize_prompt(model, PROMPT))
    rows_of = {"greedy": 1, "beam": 4, "diverse": 4, "constrained": 4}
    traced(model, prompt, "greedy", 3)  # warm-up
    report = []
    print(f"model {args.model}, prompt {len(prompt)} tokens, {args.tokens} steps, {args.threads} threads, "
          f"best of {args.repeats}")
    print(f"{'strategy':<12} {'rows':>4} {'bare ms/step':>13} {'traced ms/step':>15} {'ratio':>6} {'generate':>9}")
    for strategy in args.strategies:
        rows = rows_of[strategy]
        bare_times, traced_times = [], []
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            bare_times.append(bare_loop(model, prompt, rows, args.tokens))
            seconds, steps = traced(model, prompt, strategy, args.tokens)
            assert steps == args.tokens, f"{strategy} stopped after {steps} steps"
            traced_times.append(seconds)
        bare, trace_s = min(bare_times), min(traced_times)
        gen = best(lambda s=strategy: hf_generate(model, prompt, s, args.tokens), args.repeats) \
            if strategy in ("greedy", "beam") else float("nan")
        row = {"strategy": strategy, "rows": rows, "bare_ms_per_step": 1000 * bare / args.tokens,
               "traced_ms_per_step": 1000 * trace_s / args.tokens, "ratio": trace_s / bare,
               "generate_ms_per_step": 1000 * gen / args.tokens}
        report.append(row)
        print(f"{strategy:<12} {rows:>4} {row['bare_ms_per_step']:>13.1f} {row['traced_ms_per_step']:>15.1f} "
              f"{row['ratio']:>6.3f} {row['generate_ms_per_step']:>9.1f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
