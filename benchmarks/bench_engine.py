"""Traced decoding against the floor: a bare KV-cache forward loop at the same batch size, measured side by side.

Usage: ``python benchmarks/bench_engine.py [--model smollm2-135m] [--tokens 50] [--repeats 3]
[--reference-python .venv-ref/bin/python]``

For each strategy the script times (a) a bare loop that only feeds one token per row through the model with a
KV cache, at the strategy's batch size, (b) ``explorer.decode`` with full recording, (c) the reference's
``generate()`` with ``output_scores``: transformers 4.56.2 for greedy and the beam strategies, 4.55.4 for DoLa and
contrastive search (run by ``benchmarks/ref_worker.py`` in each reference virtualenv, which loads the model once
and answers timing requests over a pipe) and (d) the installed
transformers 5.x ``generate()`` (greedy and beam: 5.x has no native group or constrained beam search). Runs are
interleaved and the best of ``--repeats`` is kept for each, so all see the same machine. It prints ms/step, the
ratios traced / bare and traced / reference, and whether the reference produced the same tokens as the traced run
(a check that the comparison is like with like). Without a reference python (default ``.venv-ref/bin/python`` and
``.venv-ref-4.55.4/bin/python``, built by ``make fixtures``) its columns are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import torch
from floor import bare_loop

import explorer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
DEFAULT_REFERENCE_4554 = ROOT / ".venv-ref-4.55.4" / "bin" / "python"
WORKER = ROOT / "benchmarks" / "ref_worker.py"
PROMPT = "The secret to a good loaf of bread is"
CASES: dict[str, dict[str, Any]] = {
    "greedy": {},
    "beam": {"num_beams": 4},
    "diverse": {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0},
    "constrained": {"num_beams": 4, "constraints": [" flour"]},
    "dola": {"dola_layers": "high", "repetition_penalty": 1.2},
    "contrastive": {"penalty_alpha": 0.6, "top_k": 4},
}
LABELS = {"greedy": "greedy", "beam": "beam 4", "diverse": "diverse 4x2", "constrained": "constrained 4",
          "dola": "dola high", "contrastive": "contrastive 0.6/4"}
#: The strategies transformers 4.56.2 no longer runs natively, timed against 4.55.4 instead (its own virtualenv).
ON_4554 = ("dola", "contrastive")


def traced(model: Any, prompt: list[int], strategy: str, steps: int) -> tuple[float, explorer.Trace]:
    """Seconds for a fully recorded decode that runs exactly ``steps`` steps (eos is banned by min_new_tokens)."""
    params = dict(CASES[strategy])
    start = time.perf_counter()
    trace = explorer.decode(model, prompt, strategy, max_new_tokens=steps, min_new_tokens=steps, **params)
    return time.perf_counter() - start, trace


def hf_generate(model: Any, prompt: list[int], strategy: str, steps: int) -> float:
    """Seconds for the installed transformers' generate() with output_scores, same settings."""
    ids = torch.tensor([prompt])
    eos = model.info.eos_token_ids[0]
    start = time.perf_counter()
    model.hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=CASES[strategy].get(
        "num_beams", 1), max_new_tokens=steps, min_new_tokens=steps, eos_token_id=eos, pad_token_id=eos,
        return_dict_in_generate=True, output_scores=True)
    return time.perf_counter() - start


class ReferenceWorker:
    """``benchmarks/ref_worker.py`` running under the reference python: one JSON line per request and reply."""

    def __init__(self, python: Path, model: str, threads: int) -> None:
        self.process = subprocess.Popen(
            [str(python), str(WORKER), "--model", model, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info: dict[str, Any] = {}

    def _read(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the reference worker exited (status {self.process.wait()})")
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            raise RuntimeError(f"reference worker: {message['error']}")
        return message

    def ready(self) -> dict[str, Any]:
        """Wait until the worker has loaded its model; its versions and load time."""
        if not self.info:
            self.info = self._read()
        return self.info

    def generate(self, prompt: list[int], steps: int, params: dict[str, Any],
                 constraints: list[list[int]]) -> dict[str, Any]:
        """Seconds (measured in the worker, around generate() alone), generated ids and score of the best row."""
        self.ready()
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"cmd": "generate", "prompt": prompt, "steps": steps, "params": params,
                                "constraints": constraints}) + "\n")
        stdin.flush()
        return self._read()

    def close(self) -> None:
        """Ask the worker to quit, and make sure it did."""
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def reference_request(strategy: str, trace: explorer.Trace) -> tuple[dict[str, Any], list[list[int]]]:
    """The reference's parameters and constraint ids for ``strategy``, the ids taken from the traced run."""
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in CASES[strategy].items() if k != "constraints"}
    constraints = [list(c["token_ids"]) for c in trace.constraints]
    return params, constraints


def reference_python(option: str | None, default: Path, release: str) -> Path | None:
    """The reference interpreter to use, or None (with a printed note) when there is none."""
    if option == "none":
        return None
    path = Path(option) if option else default
    if not path.exists():
        print(f"note: no reference python at {path} (build it with `make {default.parents[1].name}/.installed`, "
              f"or pass its option): the transformers {release} columns are skipped")
        return None
    return path


def fmt(value: float, digits: int = 1) -> str:
    """A number for the table, '-' when not measured."""
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def main() -> None:
    """Run every case and print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--strategies", nargs="*", default=list(CASES))
    parser.add_argument("--reference-python", help="python of a virtualenv with transformers 4.56.2 "
                        f"(default {DEFAULT_REFERENCE_PYTHON.relative_to(ROOT)} if it exists; 'none' skips it)")
    parser.add_argument("--reference-4554", help="python of a virtualenv with transformers 4.55.4, for DoLa and "
                        f"contrastive search (default {DEFAULT_REFERENCE_4554.relative_to(ROOT)} if it exists)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workers: dict[str, ReferenceWorker] = {}
    pythons = {"4.56.2": reference_python(args.reference_python, DEFAULT_REFERENCE_PYTHON, "4.56.2"),
               "4.55.4": reference_python(args.reference_4554, DEFAULT_REFERENCE_4554, "4.55.4")
               if set(args.strategies) & set(ON_4554) else None}
    for release, python in pythons.items():
        if python is not None and (release == "4.55.4" or set(args.strategies) - set(ON_4554)):
            workers[release] = ReferenceWorker(python, args.model, args.threads)  # loads meanwhile
    try:
        run(args, workers)
    finally:
        for worker in workers.values():
            worker.close()


def run(args: argparse.Namespace, workers: dict[str, ReferenceWorker]) -> None:
    """The measurements: every strategy, interleaved, best of ``args.repeats``."""
    model = explorer.load_model(args.model)
    prompt = list(explorer.tokenize_prompt(model, PROMPT))
    rows_of = {"greedy": 1, "beam": 4, "diverse": 4, "constrained": 4, "dola": 1, "contrastive": 1}
    traced(model, prompt, "greedy", 3)  # warm-up
    hf_generate(model, prompt, "greedy", 3)
    for worker in workers.values():
        info = worker.ready()
        print(f"reference: transformers {info['transformers']}, torch {info['torch']}, {info['threads']} threads "
              f"(loaded in {info['load_seconds']:.1f} s)")
        worker.generate(prompt, 3, {}, [])  # warm-up
    report = []
    print(f"model {args.model}, prompt {len(prompt)} tokens, {args.tokens} steps, {args.threads} threads, "
          f"best of {args.repeats}, ms/step")
    header = (f"{'strategy':<14} {'rows':>4} {'bare':>6} {'traced':>7} {'tr/bare':>7} {'gen 5.x':>8} "
              f"{'ref':>6} {'gen ref':>8} {'tr/ref':>7} {'same tokens':>11} {'score diff':>10}")
    print(header)
    for strategy in args.strategies:
        rows = rows_of[strategy]
        release = "4.55.4" if strategy in ON_4554 else "4.56.2"
        worker = workers.get(release)
        times: dict[str, list[float]] = {"bare": [], "traced": [], "gen5": [], "gen4": []}
        same: list[bool] = []
        score_diff = 0.0
        for _ in range(args.repeats):  # interleaved: every variant sees the same machine load
            times["bare"].append(sum(bare_loop(model, prompt, rows, args.tokens)))
            seconds, trace = traced(model, prompt, strategy, args.tokens)
            assert len(trace.steps) == args.tokens, f"{strategy} stopped after {len(trace.steps)} steps"
            times["traced"].append(seconds)
            if worker is not None:
                params, constraints = reference_request(strategy, trace)
                ref = worker.generate(prompt, args.tokens, params, constraints)
                assert ref["steps"] == args.tokens, f"reference {strategy} stopped after {ref['steps']} steps"
                times["gen4"].append(ref["seconds"])
                best_result = trace.results[0]
                same.append(list(best_result.token_ids) == ref["token_ids"])
                if ref["score"] is not None:
                    score_diff = max(score_diff, abs(best_result.score - ref["score"]))
            if strategy in ("greedy", "beam"):
                times["gen5"].append(hf_generate(model, prompt, strategy, args.tokens))
        ms = {k: 1000 * min(v) / args.tokens if v else float("nan") for k, v in times.items()}
        same_tokens = ("yes" if all(same) else "no") if same else "-"
        row = {"strategy": strategy, "label": LABELS[strategy], "rows": rows, "bare_ms_per_step": ms["bare"],
               "traced_ms_per_step": ms["traced"], "ratio": ms["traced"] / ms["bare"],
               "generate_ms_per_step": ms["gen5"], "reference": release, "reference_ms_per_step": ms["gen4"],
               "traced_over_reference": ms["traced"] / ms["gen4"], "same_tokens_as_reference": same_tokens,
               "score_diff_reference": score_diff if same else float("nan")}
        report.append(row)
        print(f"{LABELS[strategy]:<14} {rows:>4} {fmt(ms['bare']):>6} {fmt(ms['traced']):>7} "
              f"{fmt(row['ratio'], 3):>7} {fmt(ms['gen5']):>8} {release:>6} {fmt(ms['gen4']):>8} "
              f"{fmt(row['traced_over_reference'], 3):>7} {same_tokens:>11} "
              f"{'-' if not same else f'{score_diff:.1e}':>10}")
    print("\n| strategy | rows | bare ms/step | traced ms/step | traced / bare | generate 5.x ms/step "
          "| reference | generate ms/step there | traced / reference | same tokens as the reference |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in report:
        print(f"| {row['label']} | {row['rows']} | {fmt(row['bare_ms_per_step'])} | {fmt(row['traced_ms_per_step'])} "
              f"| {fmt(row['ratio'], 3)} | {fmt(row['generate_ms_per_step'])} "
              f"| {row['reference']} | {fmt(row['reference_ms_per_step'])} | {fmt(row['traced_over_reference'], 3)} "
              f"| {row['same_tokens_as_reference']} |")
    if args.json:
        meta = {"model": args.model, "prompt_tokens": len(prompt), "steps": args.tokens, "threads": args.threads,
                "repeats": args.repeats, "references": {k: w.info for k, w in workers.items()}}
        clean = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in report]
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "rows": clean}, handle, indent=1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
