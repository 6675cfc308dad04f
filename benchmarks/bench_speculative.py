"""Speculative decoding's speed: traced assisted decoding against the reference's assisted ``generate()`` and
against plain traced greedy, as ratios measured in one run.

Usage: ``python benchmarks/bench_speculative.py [--model smollm2-135m] [--tokens 60] [--repeats 1] [--threads 2]
[--workload mixed|copy] [--only "another tokenizer"] [--json out.json]``

Two workloads: ``mixed`` (two plain prompts, two chat; every draft configuration) and ``copy`` (four chat prompts
whose answer repeats the prompt with an edit: a typo fixed, a name changed, a list or a record copied; the
input-grounded tasks prompt lookup is meant for; prompt lookup and the default self-draft). For each prompt it
times plain traced greedy (the baseline), the reference's plain greedy
``generate()``, and for each draft configuration traced ``assisted`` and the reference's ``generate()`` with the same
draft and schedule, all interleaved, best of ``--repeats``. ``min_new_tokens = --tokens`` keeps eos away, so every run
makes exactly ``--tokens`` tokens (the min-new-tokens processor runs in target and draft alike, in both). It prints the
summed time of each, its ratio to plain traced greedy and to the reference, and the target forwards (which must be
the same in traced and reference runs; it says so when they are not).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch

import explorer
from explorer.models.base import CausalLM
from explorer.speculation import speculation_stats

PROMPTS: list[tuple[str, bool]] = [
    ("The secret to a good loaf of bread is", False),
    ("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    ", False),
    ("List the days of the week, one per line.", True),
    ("Summarize: the cat sat on the mat. The cat was happy on the mat because the mat was warm.", True),
]
#: Answers that repeat the prompt with an edit (chat prompts): where prompt lookup finds its drafts.
COPY_PROMPTS: list[tuple[str, bool]] = [
    ("Fix the spelling and write the paragraph out again: The quick brown fox jumpd over the lazy dog that was "
     "sleeping near the river bank on a sunny morning in early spring. The dog did not wake up, and the fox ran on "
     "into the forest, where it met an old owl who asked it where it was going in such a hury.", True),
    ("Copy this Python function, renaming total to result:\n\ndef add_all(values, start=0):\n    total = start\n"
     "    for value in values:\n        if value is None:\n            continue\n        total += value\n"
     "    return total\n\n\ndef mean(values):\n    return add_all(values) / len(values)\n", True),
    ("Repeat this list exactly: apples, bananas, cherries, dates, elderberries, figs, grapes, honeydew, kiwis, "
     "lemons, mangoes, nectarines, oranges, papayas, quinces, raspberries, strawberries, tangerines, watermelons, "
     "apricots, blueberries, cranberries, damsons.", True),
    ('Rewrite this JSON with the name in capitals: {"name": "Ada Lovelace", "born": 1815, "died": 1852, "field": '
     '"mathematics", "country": "England", "known for": "the first published algorithm", "worked with": "Charles '
     'Babbage", "machine": "the Analytical Engine"}', True),
]
#: name -> the draft parameters (explorer's names; the reference takes the same ones).
CONFIGS: dict[str, dict[str, Any]] = {
    "bf16 self-draft, constant 20 (default)": {"assistant_model": "smollm2-135m", "assistant_dtype": "bfloat16"},
    "bf16 self-draft, heuristic from 5": {"assistant_model": "smollm2-135m", "assistant_dtype": "bfloat16",
                                          "num_assistant_tokens": 5, "num_assistant_tokens_schedule": "heuristic"},
    "bf16 self-draft, constant 3": {"assistant_model": "smollm2-135m", "assistant_dtype": "bfloat16",
                                    "num_assistant_tokens": 3},
    "early exit 24 of 30, constant 4": {"assistant_early_exit": 24, "num_assistant_tokens": 4},
    "early exit 15 of 30, constant 4": {"assistant_early_exit": 15, "num_assistant_tokens": 4},
    "prompt lookup 10": {"prompt_lookup_num_tokens": 10},
    "prompt lookup 3": {"prompt_lookup_num_tokens": 3},
    "another tokenizer: tiny-random-bpe, constant 4": {"assistant_model": "tiny-random-bpe", "num_assistant_tokens": 4},
    "another tokenizer: tiny-random, constant 4": {"assistant_model": "tiny-random", "num_assistant_tokens": 4},
}

#: The configurations each workload times.
WORKLOADS: dict[str, tuple[list[tuple[str, bool]], tuple[str, ...]]] = {
    "mixed": (PROMPTS, tuple(CONFIGS)),
    "copy": (COPY_PROMPTS, ("prompt lookup 10", "prompt lookup 3", "bf16 self-draft, constant 20 (default)")),
}


def _chosen(workload: str, only: str) -> tuple[list[tuple[str, bool]], tuple[str, ...]]:
    """The workload's prompts, and its draft configurations whose name contains ``only``."""
    prompts, configs = WORKLOADS[workload]
    return prompts, tuple(name for name in configs if only in name)


def _timed(run: Callable[[], int]) -> tuple[float, int]:
    """Seconds one call takes, and the target forwards it reports."""
    start = time.perf_counter()
    forwards = run()
    return time.perf_counter() - start, forwards


def traced(model: CausalLM, ids: list[int], tokens: int, params: dict[str, Any]) -> Callable[[], int]:
    """A traced run: ``assisted`` with ``params``, or plain greedy when empty."""

    def run() -> int:
        strategy = "assisted" if params else "greedy"
        trace = explorer.decode(model, ids, strategy, max_new_tokens=tokens, min_new_tokens=tokens, **params)
        stats = speculation_stats(trace)
        return stats.forwards if stats else len(trace.steps)

    return run


def reference(model: CausalLM, ids: list[int], tokens: int, params: dict[str, Any]) -> Callable[[], int]:
    """transformers' own ``generate()`` with the same settings (plain greedy when ``params`` is empty)."""
    hf = model.hf  # type: ignore[attr-defined]
    p = dict(params)
    kwargs: dict[str, Any] = {}
    # The draft's schedule lives in its generation config (the target's own for an early exit). The draft model object
    # is shared by every configuration that names it, so the schedule is set at each run, not once.
    schedule = {name: p.pop(name, default) for name, default in (
        ("num_assistant_tokens", 20), ("num_assistant_tokens_schedule", "constant"),
        ("assistant_confidence_threshold", 0.4))}
    config = None
    if "assistant_model" in p:
        draft = explorer.load_model(p.pop("assistant_model"), p.pop("assistant_dtype", "float32"))
        config = draft.hf.generation_config  # type: ignore[attr-defined]
        kwargs["assistant_model"] = draft.hf  # type: ignore[attr-defined]
        if draft.info.vocab_size != model.info.vocab_size:  # universal assisted decoding: both tokenizers
            kwargs["tokenizer"] = model.tokenizer.hf  # type: ignore[attr-defined]
            kwargs["assistant_tokenizer"] = draft.tokenizer.hf  # type: ignore[attr-defined]
    elif "assistant_early_exit" in p:
        config = hf.generation_config
    layers = hf.config.num_hidden_layers  # an early exit's draft forwards run fewer layers: not the target's

    def run() -> int:
        if config is not None:
            for name, value in schedule.items():
                setattr(config, name, value)
        calls = [0]
        hook = hf.register_forward_hook(
            lambda *_: calls.__setitem__(0, calls[0] + (hf.model.config.num_hidden_layers == layers)))
        try:
            tensor = torch.tensor([ids])
            eos = model.info.eos_token_ids[0]
            hf.generate(tensor, attention_mask=torch.ones_like(tensor), do_sample=False, eos_token_id=eos,
                        pad_token_id=eos, max_new_tokens=tokens, min_new_tokens=tokens, **kwargs, **p)
        finally:
            hook.remove()
        return calls[0]

    return run


def measure(model: CausalLM, tokens: int, repeats: int, workload: str = "mixed",
            only: str = "") -> dict[str, dict[str, float]]:
    """Summed best-of-``repeats`` seconds and target forwards of every run kind over the workload's prompts (the
    draft configurations whose name contains ``only``)."""
    prompts, configs = _chosen(workload, only)
    kinds: dict[str, Callable[[list[int]], Callable[[], int]]] = {
        "traced greedy": lambda ids: traced(model, ids, tokens, {}),
        "reference greedy": lambda ids: reference(model, ids, tokens, {}),
    }
    for name in configs:
        params = CONFIGS[name]
        kinds[f"traced: {name}"] = lambda ids, params=params: traced(model, ids, tokens, params)
        kinds[f"reference: {name}"] = lambda ids, params=params: reference(model, ids, tokens, params)
    totals = {kind: {"s": 0.0, "forwards": 0.0} for kind in kinds}
    for number, (prompt, chat) in enumerate(prompts):
        ids = list(explorer.tokenize_prompt(model, prompt, chat=chat))
        runs = {kind: make(ids) for kind, make in kinds.items()}
        if number == 0:
            for run in runs.values():
                run()  # warm up once: loads, the draft model's copy, first-call costs
        best: dict[str, tuple[float, int]] = {}
        for _ in range(repeats):
            for kind, run in runs.items():
                seconds, forwards = _timed(run)
                best[kind] = min(best.get(kind, (seconds, forwards)), (seconds, forwards))
        for kind, (seconds, forwards) in best.items():
            totals[kind]["s"] += seconds
            totals[kind]["forwards"] += forwards
    return totals


def table(totals: dict[str, dict[str, float]], tokens: int, workload: str = "mixed", only: str = "") -> str:
    """The Markdown table of RESULTS.md."""
    prompts, configs = _chosen(workload, only)
    base = totals["traced greedy"]["s"]
    rows = [f"| run ({len(prompts)} {workload} prompts x {tokens} tokens) | time (s) | / traced greedy "
            "| traced / reference | target forwards |", "|---|---|---|---|---|"]
    for kind in ("traced greedy", "reference greedy", *(f"{side}: {name}" for name in configs
                                                       for side in ("traced", "reference"))):
        t = totals[kind]
        versus = ""
        if kind.startswith("traced: "):
            ref = totals["reference: " + kind.removeprefix("traced: ")]
            versus = f"{t['s'] / ref['s']:.2f}" + ("" if ref["forwards"] == t["forwards"] else " (forwards differ!)")
        rows.append(f"| {kind} | {t['s']:.2f} | {t['s'] / base:.2f} | {versus} | {int(t['forwards'])} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="mixed")
    parser.add_argument("--only", default="", help="only the draft configurations whose name contains this")
    parser.add_argument("--json", help="also write the totals as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = explorer.load_model(args.model)
    totals = measure(model, args.tokens, args.repeats, args.workload, args.only)
    print(table(totals, args.tokens, args.workload, args.only))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(totals, out, indent=1)


if __name__ == "__main__":
    main()
