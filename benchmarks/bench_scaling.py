"""How the time per step grows with the number of beams and the prompt length, traced against a bare loop.

Usage: ``python benchmarks/bench_scaling.py [--model smollm2-135m] [--tokens 40] [--repeats 3] [--no-figures]
[--json benchmarks/out/scaling.json] [--plot benchmarks/out/scaling.png]``, or ``--from-json FILE`` to redraw
the plot (and reprint the tables) from an earlier run without measuring again.

Two sweeps, every run making exactly ``--tokens`` steps (eos banned with ``min_new_tokens``), then the trace and
figure costs at the largest tree (16 beams x 100 steps):

- beams 1, 2, 4, 8, 16 (1 is greedy) on a 16-token prompt;
- prompt lengths 16, 128, 512 tokens, for greedy and beam 4.

Each point times, interleaved and best of ``--repeats``: the bare KV-cache loop at the same batch size (one
token per row, no search, no recording), the same loop plus the cache gather that any beam search does every
step (the rows reordered by a fixed permutation; not for one row), and ``explorer.decode`` with full recording.
The prefill is reported apart and the time per step is the time after it, divided by the ``--tokens - 1``
single-token steps (the traced run's prefill is its first step's ``forward_ms``). Then one more, untimed traced
run under ``tracemalloc`` gives the memory the trace keeps per step and the peak of Python allocations during
the decode per step (tensors are not Python allocations and are not counted), and ``dump_trace`` gives the
compact JSON size per step.

Traces and figures: a 16-beam x 100-step beam search on ``tiny-random`` (the costs depend on the tree, not on the
model), best of ``--repeats`` interleaved: ``dump_trace`` and ``load_trace`` (parse, schema, rebuild),
``candidates_frame``, ``tree_frames``, ``tree_layout`` (frames included), ``search_tree`` from the trace and from
a precomputed layout, and a step-scrubber redraw (``search_tree(layout, upto_step=50)``).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from floor import bare_loop

import explorer
from explorer.figures import search_tree, tree_layout
from explorer.frames import candidates_frame, tree_frames
from explorer.trace_io import dump_trace, load_trace

ROOT = Path(__file__).resolve().parents[1]
BEAMS = (1, 2, 4, 8, 16)
PROMPT_LENGTHS = (16, 128, 512)
SHORT = 16
LENGTH_BEAMS = (1, 4)  # greedy and beam 4 for the prompt-length sweep
FIGURE_BEAMS, FIGURE_STEPS = 16, 100  # the tree of the traces-and-figures costs
# Repeated and cut to the wanted number of tokens; only the prompt's length matters here.
TEXT = (
    "The secret to a good loaf of bread is patience. Mix flour, water, salt and a little yeast, then let the dough "
    "rest until it has doubled in size. Knead it gently, fold it over itself a few times, and shape it into a "
    "round loaf. Bake it in a very hot oven, with a tray of water underneath for steam, until the crust is deep "
    "brown and the loaf sounds hollow when you tap it. Let it cool before cutting: the crumb keeps setting as "
    "the steam escapes. "
)


def prompt_of(model: Any, length: int) -> list[int]:
    """The first ``length`` token ids of the text repeated as often as needed."""
    text = TEXT
    ids = list(explorer.tokenize_prompt(model, text))
    while len(ids) < length:
        text += TEXT
        ids = list(explorer.tokenize_prompt(model, text))
    return ids[:length]


def decode_kwargs(beams: int, steps: int) -> dict[str, Any]:
    """``explorer.decode`` arguments: greedy for one beam, else beam search; exactly ``steps`` steps."""
    strategy: dict[str, Any] = {"strategy": "greedy"} if beams == 1 else {"strategy": "beam", "num_beams": beams}
    return {**strategy, "max_new_tokens": steps, "min_new_tokens": steps}


def traced(model: Any, prompt: list[int], beams: int, steps: int) -> tuple[float, float]:
    """Seconds of the traced run's prefill and of everything after it (search, recording, results)."""
    start = time.perf_counter()
    trace = explorer.decode(model, prompt, **decode_kwargs(beams, steps))
    total = time.perf_counter() - start
    assert len(trace.steps) == steps, f"{beams} beams stopped after {len(trace.steps)} steps"
    prefill = trace.steps[0].forward_ms / 1000
    return prefill, total - prefill


def trace_sizes(model: Any, prompt: list[int], beams: int, steps: int) -> dict[str, float]:
    """Bytes per step: compact JSON, Python memory the trace keeps, and the Python allocation peak while decoding."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        trace = explorer.decode(model, prompt, **decode_kwargs(beams, steps))
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = dump_trace(trace)
    return {"json_bytes_per_step": len(text.encode()) / steps, "trace_bytes_per_step": (current - base) / steps,
            "peak_bytes_per_step": (peak - base) / steps}


def measure(model: Any, prompt: list[int], beams: int, steps: int, repeats: int, memory: bool) -> dict[str, Any]:
    """One point of a sweep: best of ``repeats`` interleaved runs of each variant."""
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "gather": [], "traced": []}
    for _ in range(repeats):
        runs["bare"].append(bare_loop(model, prompt, beams, steps, gather=False))
        if beams > 1:
            runs["gather"].append(bare_loop(model, prompt, beams, steps, gather=True))
        runs["traced"].append(traced(model, prompt, beams, steps))
    row: dict[str, Any] = {"beams": beams, "strategy": "greedy" if beams == 1 else f"beam {beams}",
                           "prompt_tokens": len(prompt), "steps": steps}
    for name, times in runs.items():
        if times:
            row[f"{name}_prefill_ms"] = 1000 * min(t[0] for t in times)
            row[f"{name}_ms_per_step"] = 1000 * min(t[1] for t in times) / (steps - 1)
        else:
            row[f"{name}_prefill_ms"] = row[f"{name}_ms_per_step"] = None
    row["ratio"] = row["traced_ms_per_step"] / row["bare_ms_per_step"]
    if memory:
        row.update(trace_sizes(model, prompt, beams, steps))
    return row


def figure_costs(repeats: int) -> dict[str, Any]:
    """Milliseconds (best of ``repeats``, interleaved) to save, load, frame and draw a 16-beam x 100-step trace."""
    model = explorer.load_model("tiny-random")
    trace = explorer.decode(model, [5, 6, 7], "beam", num_beams=FIGURE_BEAMS, max_new_tokens=FIGURE_STEPS,
                            length_penalty=0.0, early_stopping="never")
    text = dump_trace(trace)
    layout = tree_layout(trace)
    work: dict[str, Callable[[], object]] = {
        "dump_trace": lambda: dump_trace(trace),
        "load_trace": lambda: load_trace(text),
        "candidates_frame": lambda: candidates_frame(trace),
        "tree_frames": lambda: tree_frames(trace),
        "tree_layout (frames included)": lambda: tree_layout(trace),
        "search_tree from the trace": lambda: search_tree(trace),
        "search_tree from the layout": lambda: search_tree(layout),
        "scrub (layout, upto_step=50)": lambda: search_tree(layout, upto_step=50),
    }
    for run in work.values():  # warm-up: pandas, plotly, the schema
        run()
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(repeats):
        for name, run in work.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {"steps": len(trace.steps), "hypotheses": sum(len(s.hypotheses) for s in trace.steps),
            "candidates": sum(len(h.candidates) for s in trace.steps for h in s.hypotheses),
            "json_bytes": len(text.encode()), "ms": {name: 1000 * min(t) for name, t in times.items()}}


def num(value: float | None, digits: int = 1) -> str:
    """A table cell, '-' when not measured."""
    return "-" if value is None else f"{value:.{digits}f}"


def kib(value: float | None) -> str:
    """Bytes as KiB for a table cell."""
    return "-" if value is None else f"{value / 1024:.1f}"


def tables(report: dict[str, Any]) -> str:
    """The two sweeps as markdown tables."""
    meta = report["meta"]
    lines = [f"model {meta['model']}, {meta['steps']} steps, {meta['threads']} threads, best of {meta['repeats']}; "
             "ms/step after the prefill", "",
             f"### Beams ({meta['short_prompt']}-token prompt)", "",
             "| beams | bare ms/step | bare + gather ms/step | traced ms/step | traced / bare | traced / bare + gather "
             "| JSON KiB/step | trace in memory KiB/step | Python peak KiB/step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in report["beams"]:
        gather = row["gather_ms_per_step"]
        over_gather = None if gather is None else row["traced_ms_per_step"] / gather
        lines.append(f"| {row['beams']} | {num(row['bare_ms_per_step'])} | {num(gather)} "
                     f"| {num(row['traced_ms_per_step'])} | {num(row['ratio'], 3)} | {num(over_gather, 3)} "
                     f"| {kib(row.get('json_bytes_per_step'))} | {kib(row.get('trace_bytes_per_step'))} "
                     f"| {kib(row.get('peak_bytes_per_step'))} |")
    lines += ["", "### Prompt length", "",
              "| strategy | prompt tokens | bare prefill ms | traced prefill ms | bare ms/step | bare + gather ms/step "
              "| traced ms/step | traced / bare |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report["lengths"]:
        lines.append(f"| {row['strategy']} | {row['prompt_tokens']} | {num(row['bare_prefill_ms'], 0)} "
                     f"| {num(row['traced_prefill_ms'], 0)} | {num(row['bare_ms_per_step'])} "
                     f"| {num(row['gather_ms_per_step'])} | {num(row['traced_ms_per_step'])} "
                     f"| {num(row['ratio'], 3)} |")
    figures = report.get("figures")
    if figures:
        lines += ["", f"### Traces and figures (tiny-random, {FIGURE_BEAMS} beams x {figures['steps']} steps: "
                  f"{figures['hypotheses']:,} hypotheses, {figures['candidates']:,} candidates, JSON "
                  f"{figures['json_bytes'] / 1e6:.1f} MB)", "", "| operation | ms |", "|---|---|"]
        lines += [f"| {name} | {num(ms)} |" for name, ms in figures["ms"].items()]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """ms/step against beams and against prompt length, traced and bare, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traced_color, bare_color, gather_color = "#1f5fa8", "#8c8c8c", "#e08a1e"
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110, sharey=True)
    rows = report["beams"]
    beams = [r["beams"] for r in rows]
    left.plot(beams, [r["traced_ms_per_step"] for r in rows], "o-", color=traced_color, label="traced (explorer)")
    gathered = [r for r in rows if r["gather_ms_per_step"] is not None]
    left.plot([r["beams"] for r in gathered], [r["gather_ms_per_step"] for r in gathered], "s--", color=gather_color,
              label="bare + cache gather (beam reorder)")
    left.plot(beams, [r["bare_ms_per_step"] for r in rows], "o-", color=bare_color, label="bare KV-cache loop")
    left.set_xscale("log", base=2)
    left.set_xticks(beams, [str(b) for b in beams])
    left.minorticks_off()
    left.set_xlabel("beams (1 = greedy)")
    left.set_ylabel("ms per step")
    left.set_title(f"Beams, {report['meta']['short_prompt']}-token prompt")
    left.legend(frameon=False, fontsize=8.5, loc="lower right")

    for beam, style in ((1, "-"), (4, "--")):
        rows = [r for r in report["lengths"] if r["beams"] == beam]
        lengths = [r["prompt_tokens"] for r in rows]
        name = "greedy" if beam == 1 else f"beam {beam}"
        right.plot(lengths, [r["traced_ms_per_step"] for r in rows], "o" + style, color=traced_color,
                   label=f"{name}, traced")
        gathered = [r for r in rows if r["gather_ms_per_step"] is not None]
        if gathered:
            right.plot([r["prompt_tokens"] for r in gathered], [r["gather_ms_per_step"] for r in gathered],
                       "s" + style, color=gather_color, label=f"{name}, bare + cache gather")
        right.plot(lengths, [r["bare_ms_per_step"] for r in rows], "o" + style, color=bare_color,
                   label=f"{name}, bare")
    right.set_xscale("log", base=2)
    lengths = sorted({r["prompt_tokens"] for r in report["lengths"]})
    right.set_xticks(lengths, [str(n) for n in lengths])
    right.minorticks_off()
    right.set_xlabel("prompt tokens")
    right.set_title("Prompt length (time after the prefill)")
    values = [r[k] for r in report["beams"] + report["lengths"] for k in ("traced_ms_per_step", "bare_ms_per_step",
                                                                       "gather_ms_per_step") if r[k] is not None]
    right.set_ylim(0, 1.08 * max(values))  # shared with the left plot
    right.legend(frameon=False, fontsize=8.5, loc="lower right")
    right.tick_params(labelleft=True)
    for axis in (left, right):
        axis.grid(True, color="#e6e6e6")
        axis.spines[["top", "right"]].set_visible(False)
    meta = report["meta"]
    fig.suptitle(f"{meta['model']}, {meta['threads']} CPU threads, float32, {meta['steps']} steps, best of "
                 f"{meta['repeats']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both sweeps; the prompt-length sweep reuses the beams sweep's points at the short prompt."""
    torch.set_num_threads(args.threads)
    model = explorer.load_model(args.model)
    short = prompt_of(model, SHORT)
    traced(model, short, 2, 3)  # warm-up
    bare_loop(model, short, 2, 3, gather=True)
    report: dict[str, Any] = {"meta": {"model": args.model, "steps": args.tokens, "threads": args.threads,
                                       "repeats": args.repeats, "short_prompt": SHORT}, "beams": [], "lengths": []}
    for beams in args.beams:
        row = measure(model, short, beams, args.tokens, args.repeats, not args.no_memory)
        report["beams"].append(row)
        print(f"beams {beams:>2}: bare {row['bare_ms_per_step']:.1f}, traced {row['traced_ms_per_step']:.1f} ms/step",
              flush=True)
    for length in args.lengths:
        for beams in LENGTH_BEAMS:
            done = [r for r in report["beams"] if r["beams"] == beams] if length == SHORT else []
            row = done[0] if done else measure(model, prompt_of(model, length), beams, args.tokens, args.repeats,
                                               not args.no_memory)
            report["lengths"].append(row)
            print(f"prompt {length:>3}, beams {beams}: bare {row['bare_ms_per_step']:.1f}, "
                  f"traced {row['traced_ms_per_step']:.1f} ms/step", flush=True)
    if not args.no_figures:
        report["figures"] = figure_costs(args.repeats)
        print("traces and figures: " + ", ".join(f"{k} {v:.0f} ms" for k, v in report["figures"]["ms"].items()),
              flush=True)
    return report


def main() -> None:
    """Measure (or read) the sweeps; print tables, write JSON and the plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beams", type=int, nargs="*", default=list(BEAMS))
    parser.add_argument("--lengths", type=int, nargs="*", default=list(PROMPT_LENGTHS))
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc and JSON-size runs")
    parser.add_argument("--no-figures", action="store_true", help="skip the traces-and-figures costs")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "scaling.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "out" / "scaling.png")
    parser.add_argument("--from-json", type=Path, help="redraw from this file instead of measuring")
    args = parser.parse_args()
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = run(args)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    print()
    print(tables(report))
    try:
        plot(report, args.plot)
    except ImportError:
        print("\nnote: matplotlib is not installed (pip install -e '.[bench]'): no plot")
    else:
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
