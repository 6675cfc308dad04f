"""Side by side in one run against four separate runs: greedy + beam 4 + diverse 4x2 + constrained 4, one prompt.

Usage: ``python benchmarks/bench_compare.py [--model smollm2-135m] [--tokens 30] [--repeats 3]``

``explorer.compare`` prefills the prompt once and steps all 13 rows of the four strategies in one batched
forward; the baseline is the sum of four separate traced ``explorer.decode`` runs. Both are timed in the same
process, interleaved, best of ``--repeats``; the script also checks that the results are the same tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

import explorer

PROMPT = "The secret to a good loaf of bread is"


def runs(tokens: int) -> dict[str, dict[str, Any]]:
    """The four strategies; eos is banned so that every run makes exactly ``tokens`` steps."""
    common = {"max_new_tokens": tokens, "min_new_tokens": tokens}
    return {
        "greedy": {"strategy": "greedy", **common},
        "beam": {"strategy": "beam", "num_beams": 4, **common},
        "diverse": {"strategy": "diverse", "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0, **common},
        "constrained": {"strategy": "constrained", "num_beams": 4, "constraints": [" flour"], **common},
    }


def separate(model: Any, prompt: list[int], specs: dict[str, dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """Seconds for the four runs one after another, and their traces."""
    start = time.perf_counter()
    traces = {name: explorer.decode(model, prompt, **spec) for name, spec in specs.items()}
    return time.perf_counter() - start, traces


def together(model: Any, prompt: list[int], specs: dict[str, dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """Seconds for the four runs side by side in one batched run, and their traces."""
    start = time.perf_counter()
    traces = explorer.compare(model, prompt, specs)
    return time.perf_counter() - start, traces


def main() -> None:
    """Print the ratio with its baseline (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = explorer.load_model(args.model)
    prompt = list(explorer.tokenize_prompt(model, PROMPT))
    specs = runs(args.tokens)
    together(model, prompt, runs(2))  # warm-up
    alone_times, joint_times = [], []
    for _ in range(args.repeats):
        seconds, alone = separate(model, prompt, specs)
        alone_times.append(seconds)
        seconds, joint = together(model, prompt, specs)
        joint_times.append(seconds)
    same = all([r.token_ids for r in alone[n].results] == [r.token_ids for r in joint[n].results] for n in specs)
    worst = max(abs(a.score - b.score) for n in specs for a, b in zip(alone[n].results, joint[n].results, strict=True))
    best_alone, best_joint = min(alone_times), min(joint_times)
    report = {"model": args.model, "tokens": args.tokens, "separate_s": best_alone, "side_by_side_s": best_joint,
              "ratio": best_joint / best_alone, "same_tokens": same, "max_score_difference": worst}
    print(f"model {args.model}, prompt {len(prompt)} tokens, {args.tokens} new tokens, {args.threads} threads, "
          f"best of {args.repeats}")
    print(f"four separate traced runs: {best_alone:.2f} s   side by side: {best_joint:.2f} s   "
          f"ratio {report['ratio']:.3f}")
    print(f"same tokens: {same}; largest score difference: {worst:.2e}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
