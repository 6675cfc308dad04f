"""bfloat16 and float16 against float32: the speed-up per step, and how far their decoding departs from float32's.

Usage: ``python benchmarks/bench_precision.py [--model smollm2-135m] [--dtypes bfloat16 float16] [--tokens 50]
[--repeats 3] [--json out.json]``

Speed: ``explorer.decode`` with full recording, greedy (1 row) and beam 4 (4 rows), ``--tokens`` steps each (eos
banned so every run makes them all), every precision interleaved, best of ``--repeats``; also the bare model
forward (a KV-cache loop, no search, no recording) at the same batch size, so the model's share is visible.

Disagreement of each lower precision with float32, over 20 prompts (10 plain text, 10 chat messages through the
chat template), ``--new-tokens`` each:

- greedy: prompts whose whole output is identical; the first step where the outputs differ (mean over the
  prompts that differ); the share of all float32 steps decoded identically before the first divergence;
- teacher-forced: float32's greedy continuation is fed to both models one token at a time, and at every step
  the next-token distributions are compared: top-1 agreement, |log-prob difference| of float32's top token
  (mean and max), KL(float32 || lower) and total variation (mean and max);
- beam 4: prompts whose best sequence is identical.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import torch
from floor import bare_loop

import explorer
from explorer.models.hf import HFCausalLM

SPEED_PROMPT = "The secret to a good loaf of bread is"
PLAIN = [
    "The secret to a good loaf of bread is",
    "Once upon a time, in a small village by the sea,",
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "The three primary colors are",
    "In 1969, the first humans to walk on the Moon were",
    "Photosynthesis is the process by which plants",
    "My favourite way to spend a rainy Sunday afternoon is",
    "To install the package, run the following command:",
    "The main difference between a virus and a bacterium is",
]
CHAT = [
    "Give me a simple recipe for pancakes.",
    "What is the boiling point of water at sea level?",
    "Write a haiku about autumn leaves.",
    "Explain what a hash table is in two sentences.",
    "How do I reverse a list in Python?",
    "Suggest three names for a pet turtle.",
    "Why is the sky blue?",
    "Translate 'good morning, how are you?' into French.",
    "What are the health benefits of walking every day?",
    "Summarize the plot of Romeo and Juliet in one paragraph.",
]


def traced(model: HFCausalLM, prompt: list[int], num_beams: int, steps: int) -> float:
    """Seconds for a fully recorded greedy (``num_beams=1``) or beam decode of exactly ``steps`` steps."""
    strategy, params = ("greedy", {}) if num_beams == 1 else ("beam", {"num_beams": num_beams})
    start = time.perf_counter()
    trace = explorer.decode(model, prompt, strategy, max_new_tokens=steps, min_new_tokens=steps, **params)
    seconds = time.perf_counter() - start
    assert len(trace.steps) == steps, f"{strategy} stopped after {len(trace.steps)} steps"
    return seconds


def speed(models: dict[str, HFCausalLM], steps: int, repeats: int) -> list[dict[str, Any]]:
    """ms/step of every model for greedy and beam 4, bare and traced, interleaved, best of ``repeats``."""
    first = next(iter(models.values()))
    prompt = list(explorer.tokenize_prompt(first, SPEED_PROMPT))
    for model in models.values():  # warm-up
        traced(model, prompt, 1, 3)
        traced(model, prompt, 4, 3)
    rows = []
    for name, beams in (("greedy", 1), ("beam 4", 4)):
        bare: dict[str, list[float]] = {d: [] for d in models}
        full: dict[str, list[float]] = {d: [] for d in models}
        for _ in range(repeats):  # interleaved: every precision sees the same machine
            for dtype, model in models.items():
                bare[dtype].append(sum(bare_loop(model, prompt, beams, steps)))
                full[dtype].append(traced(model, prompt, beams, steps))
        for dtype in models:
            rows.append({"case": name, "rows": beams, "dtype": dtype,
                         "bare_ms_per_step": 1000 * min(bare[dtype]) / steps,
                         "traced_ms_per_step": 1000 * min(full[dtype]) / steps})
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and r["dtype"] == "float32")
        row["speedup_traced"] = base["traced_ms_per_step"] / row["traced_ms_per_step"]
        row["speedup_bare"] = base["bare_ms_per_step"] / row["bare_ms_per_step"]
    return rows


def first_divergence(a: tuple[int, ...], b: tuple[int, ...]) -> int | None:
    """Index of the first step where two outputs differ (a length difference counts), ``None`` if identical."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def teacher_forced(
    fp32: HFCausalLM, low: HFCausalLM, prompt: list[int], tokens: tuple[int, ...]
) -> dict[str, list[float]]:
    """Feed ``tokens`` (float32's greedy continuation) to both models; compare their next-token distributions at
    every step: float32's top token, its log-prob in both, KL(float32 || low) and total variation."""
    out: dict[str, list[float]] = {"top1": [], "abs_diff": [], "kl": [], "tv": []}
    a, cache_a = fp32.start(prompt)
    b, cache_b = low.start(prompt)
    for i in range(len(tokens)):
        la, lb = torch.log_softmax(a[0], -1), torch.log_softmax(b[0], -1)
        top = int(a[0].argmax())  # what greedy picks: the first of the largest logits
        assert top == tokens[i], "float32's teacher-forced top token must be its greedy token"
        out["top1"].append(float(int(b[0].argmax()) == top))
        out["abs_diff"].append(abs(float(la[top] - lb[top])))
        pa, pb = la.exp(), lb.exp()
        out["kl"].append(float((pa * (la - lb)).sum()))
        out["tv"].append(0.5 * float((pa - pb).abs().sum()))
        if i + 1 < len(tokens):
            step = torch.tensor([tokens[i]])
            a, cache_a = fp32.step(step, cache_a)
            b, cache_b = low.step(step, cache_b)
    return out


def agreement(fp32: HFCausalLM, low: HFCausalLM, new_tokens: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Greedy, teacher-forced and beam-4 agreement of ``low`` with ``fp32`` over the 20 prompts."""
    per_prompt = []
    forced: dict[str, list[float]] = {"top1": [], "abs_diff": [], "kl": [], "tv": []}
    for chat, texts in ((False, PLAIN), (True, CHAT)):
        for text in texts:
            prompt = list(explorer.tokenize_prompt(fp32, text, chat=chat))
            g32 = explorer.decode(fp32, prompt, "greedy", max_new_tokens=new_tokens).results[0].token_ids
            g16 = explorer.decode(low, prompt, "greedy", max_new_tokens=new_tokens).results[0].token_ids
            b32 = explorer.decode(fp32, prompt, "beam", num_beams=4, max_new_tokens=new_tokens).results[0]
            b16 = explorer.decode(low, prompt, "beam", num_beams=4, max_new_tokens=new_tokens).results[0]
            tf = teacher_forced(fp32, low, prompt, g32)
            for key, values in tf.items():
                forced[key].extend(values)
            per_prompt.append({
                "prompt": text, "chat": chat, "fp32_tokens": len(g32), "greedy_identical": g32 == g16,
                "first_divergence": first_divergence(g32, g16), "beam4_identical": b32.token_ids == b16.token_ids,
                "beam4_score_diff": abs(b32.score - b16.score), "forced_top1": statistics.fmean(tf["top1"]),
                "fp32_text": fp32.tokenizer.decode(list(g32)), "low_text": low.tokenizer.decode(list(g16)),
            })
    n = len(per_prompt)
    diverged = [p["first_divergence"] for p in per_prompt if p["first_divergence"] is not None]
    agreed = sum(p["fp32_tokens"] if p["first_divergence"] is None else p["first_divergence"] for p in per_prompt)
    summary = {
        "prompts": n,
        "new_tokens": new_tokens,
        "greedy_identical": sum(p["greedy_identical"] for p in per_prompt),
        "mean_first_divergence": statistics.fmean(diverged) if diverged else math.nan,
        "steps_agreed_before_divergence": agreed / sum(p["fp32_tokens"] for p in per_prompt),
        "forced_steps": len(forced["top1"]),
        "forced_top1_agreement": statistics.fmean(forced["top1"]),
        "forced_mean_abs_logprob_diff": statistics.fmean(forced["abs_diff"]),
        "forced_max_abs_logprob_diff": max(forced["abs_diff"]),
        "forced_mean_kl": statistics.fmean(forced["kl"]),
        "forced_max_kl": max(forced["kl"]),
        "forced_mean_total_variation": statistics.fmean(forced["tv"]),
        "forced_max_total_variation": max(forced["tv"]),
        "beam4_identical": sum(p["beam4_identical"] for p in per_prompt),
        "beam4_max_score_diff": max(p["beam4_score_diff"] for p in per_prompt),
    }
    return summary, per_prompt


def print_agreement(dtype: str, summary: dict[str, Any], per_prompt: list[dict[str, Any]]) -> None:
    """The per-prompt lines and the summary table of one precision against float32."""
    n = summary["prompts"]
    print(f"\ndisagreement of {dtype} with float32: {n} prompts (10 plain, 10 chat), "
          f"{summary['new_tokens']} new tokens")
    for p in per_prompt:
        where = "same" if p["first_divergence"] is None else f"differs at step {p['first_divergence']}"
        beam = "same" if p["beam4_identical"] else "differs"
        print(f"  {'chat ' if p['chat'] else 'plain'} greedy {where:<20} beam4 {beam:<8} "
              f"forced top-1 {p['forced_top1']:.3f}  {p['prompt'][:50]!r}")
    rows = [
        ("greedy: identical outputs", f"{summary['greedy_identical']}/{n}"),
        ("greedy: mean first-divergence step (prompts that differ)", f"{summary['mean_first_divergence']:.1f}"),
        ("greedy: steps decoded identically before the first divergence",
         f"{summary['steps_agreed_before_divergence']:.3f}"),
        ("teacher-forced: top-1 agreement",
         f"{summary['forced_top1_agreement']:.4f} ({summary['forced_steps']} steps)"),
        ("teacher-forced: |logprob diff| of float32's top token, mean / max",
         f"{summary['forced_mean_abs_logprob_diff']:.4f} / {summary['forced_max_abs_logprob_diff']:.4f}"),
        (f"teacher-forced: KL(float32 || {dtype}), mean / max",
         f"{summary['forced_mean_kl']:.5f} / {summary['forced_max_kl']:.4f}"),
        ("teacher-forced: total variation, mean / max",
         f"{summary['forced_mean_total_variation']:.4f} / {summary['forced_max_total_variation']:.4f}"),
        ("beam 4: identical best sequence", f"{summary['beam4_identical']}/{n}"),
        ("beam 4: largest |score diff| of the best sequences", f"{summary['beam4_max_score_diff']:.4f}"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def main() -> None:
    """Measure, print the tables (and write JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"], choices=["bfloat16", "float16"],
                        help="lower precisions to compare with float32")
    parser.add_argument("--tokens", type=int, default=50, help="steps per speed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=40, help="tokens per prompt for the disagreement")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models: dict[str, HFCausalLM] = {}
    for dtype in ["float32", *args.dtypes]:
        model = explorer.load_model(args.model, dtype=dtype)
        assert isinstance(model, HFCausalLM), "needs a transformers model"
        models[dtype] = model
    fp32 = models["float32"]
    report: dict[str, Any] = {"model": args.model, "threads": args.threads, "torch": torch.__version__,
                              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "agreement": {},
                              "per_prompt": {}}
    print(f"model {args.model}, {args.threads} threads, torch {torch.__version__} ({report['cpu_capability']})")
    if not args.skip_speed:
        rows = speed(models, args.tokens, args.repeats)
        report["speed"] = rows
        print(f"\nspeed: {args.tokens} steps, best of {args.repeats}, interleaved")
        print(f"{'case':<8} {'rows':>4} {'dtype':<9} {'bare ms/step':>12} {'traced ms/step':>15} "
              f"{'speed-up (traced)':>18} {'speed-up (bare)':>16}")
        for r in rows:
            print(f"{r['case']:<8} {r['rows']:>4} {r['dtype']:<9} {r['bare_ms_per_step']:>12.1f} "
                  f"{r['traced_ms_per_step']:>15.1f} {r['speedup_traced']:>17.2f}x {r['speedup_bare']:>15.2f}x")
    if not args.skip_agreement:
        for dtype in args.dtypes:
            summary, per_prompt = agreement(fp32, models[dtype], args.new_tokens)
            report["agreement"][dtype], report["per_prompt"][dtype] = summary, per_prompt
            print_agreement(dtype, summary, per_prompt)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
