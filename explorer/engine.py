"""The one decoding loop: forward the live rows of every run, let each strategy step, reorder the cache, repeat.

Several runs on one prompt (``run_many``) share one prompt prefill and one batched forward per step: their rows
are laid side by side, and each strategy sees only its own slice of the logits. A strategy whose registry entry
brings its own ``driver`` (several tokens per row per forward, say) runs that instead, on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from explorer.models.base import CausalLM
from explorer.strategies.base import Setup, Strategy
from explorer.strategies.registry import StrategySpec
from explorer.trace import Result, Step

__all__ = ["Run", "run", "run_many"]

Jobs = Mapping[str, tuple[StrategySpec, Setup]]
OnStep = Callable[[str, Step], None]


@dataclass(frozen=True)
class Run:
    """What the loop produced for one run: the steps, the results and why it stopped."""

    steps: tuple[Step, ...]
    results: tuple[Result, ...]
    stop_reason: str
    total_ms: float


def _ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``perf_counter`` reading)."""
    return (time.perf_counter() - start) * 1000.0


@dataclass
class _Job:
    """One run's moving parts inside the loop: its search, its state, and how many cache rows it owns now."""

    strategy: Strategy
    setup: Setup
    state: Any
    rows: int
    steps: list[Step]
    stop: str = "running"
    active: bool = True


def run(
    model: CausalLM,
    spec: StrategySpec,
    setup: Setup,
    on_step: Callable[[Step], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Run:
    """Decode with strategy ``spec`` until it is done, ``max_new_tokens`` is reached, or the caller stops it.

    ``on_step`` sees every step as it is recorded (progress bars); ``should_stop`` is asked between steps, and
    Ctrl-C (``KeyboardInterrupt``) between or during steps also ends the run: either way the partial trace is kept
    and the results are the hypotheses as they stand.
    """
    callback = None if on_step is None else (lambda _name, step: on_step(step))
    return run_many(model, {"run": (spec, setup)}, callback, should_stop)["run"]


def run_many(
    model: CausalLM,
    jobs: Jobs,
    on_step: OnStep | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Run]:
    """Decode several runs of one prompt side by side, in one batched forward per step.

    A single run prefills its prompt as its own batch (so its first step matches the reference bit for bit);
    several runs prefill the prompt once and copy its cache into every row. ``on_step(name, step)`` sees each
    run's steps as they are recorded. Runs whose strategy has a driver run after the shared loop, one by one.
    """
    if len({setup.prompt_ids for _, setup in jobs.values()}) != 1:
        raise ValueError("run_many needs one prompt for every run")
    shared = {name: job for name, job in jobs.items() if job[0].driver is None}
    out = _run_shared(model, shared, on_step, should_stop) if shared else {}
    for name, (spec, setup) in jobs.items():
        if spec.driver is not None and not (should_stop is not None and should_stop()):
            report = None if on_step is None else (lambda step, name=name: on_step(name, step))
            out[name] = spec.driver(model, spec, setup.started(time.perf_counter()), report, should_stop)
    return out


def _run_shared(model: CausalLM, jobs: Jobs, on_step: OnStep | None, should_stop: Callable[[], bool] | None,
                ) -> dict[str, Run]:
    """The runs of the shared loop: set up, loop, then read each run's results (Ctrl-C keeps what was done)."""
    began = time.perf_counter()
    live: dict[str, _Job] = {}
    try:
        with torch.inference_mode():
            for name, (spec, setup) in jobs.items():
                setup = setup.started(began)
                state, rows = spec.steps.initial(setup)
                live[name] = _Job(spec.steps, setup, state, rows, [])
            _loop(model, live, on_step, should_stop)
    except KeyboardInterrupt:
        if not live:
            raise
        for job in live.values():
            job.stop = "interrupted" if job.active else job.stop
    total = _ms(began)
    out = {}
    with torch.inference_mode():
        for name, job in live.items():
            stop = job.stop if job.stop != "running" else job.strategy.stop_reason(job.state)
            out[name] = Run(tuple(job.steps), job.strategy.results(job.state, job.setup), stop, total)
    return out


def _loop(model: CausalLM, jobs: dict[str, _Job], on_step: OnStep | None,
          should_stop: Callable[[], bool] | None) -> None:
    """Forward, step every run on its rows, reorder the cache; until no run feeds a token or the caller stops."""
    clock = time.perf_counter()
    logits, cache = _prefill(model, jobs)  # logits [rows of every run, vocab]
    forward_ms, index = _ms(clock), 0
    while True:
        tokens, parents = _step_all(jobs, logits, index, forward_ms, on_step)  # [rows'] each; parents index rows
        if tokens is None:
            return  # every run is done
        if should_stop is not None and should_stop():
            for job in jobs.values():
                job.stop = "stopped" if job.active else job.stop
            return
        clock = time.perf_counter()
        if len(jobs) > 1 or not torch.equal(parents, torch.arange(len(parents))):
            cache = model.select(cache, parents)  # row i of the new cache continues old row parents[i]
        logits, cache = model.step(tokens, cache)  # one token per row: logits [rows', vocab]
        forward_ms, index = _ms(clock), index + 1


def _prefill(model: CausalLM, jobs: dict[str, _Job]) -> tuple[torch.Tensor, object]:
    """The prompt's logits and cache, one row per row of every run.

    One run prefills its rows as one batch (a row's logits depend on the batch in the last bits, so this keeps
    its first step bit-identical to the reference); several runs prefill once and copy the row.
    """
    prompt = list(next(iter(jobs.values())).setup.prompt_ids)
    total = sum(job.rows for job in jobs.values())
    if len(jobs) == 1:
        return model.start(prompt, total)
    logits, cache = model.start(prompt, 1)  # [1, vocab]
    return logits.expand(total, -1), model.select(cache, torch.zeros(total, dtype=torch.long))


def _step_all(jobs: dict[str, _Job], logits: torch.Tensor, index: int, forward_ms: float, on_step: OnStep | None,
              ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Let every active run step on its slice of ``logits``; the tokens all of them feed next and, for each, the
    row of ``logits`` (so of the cache) it continues. ``None`` tokens: no run feeds anything."""
    tokens, parents, offset = [], [], 0
    for name, job in jobs.items():
        if not job.active:
            continue
        width, clock = job.rows, time.perf_counter()  # the run owns rows offset .. offset + width - 1
        outcome = job.strategy.step(job.state, logits[offset : offset + width], index, job.setup)
        step = replace(outcome.step, forward_ms=forward_ms, search_ms=_ms(clock))
        job.steps.append(step)
        job.state = outcome.state
        if on_step is not None:
            on_step(name, step)
        if outcome.done or outcome.tokens is None:
            job.active, job.rows = False, 0
        else:
            rows = outcome.parents if outcome.parents is not None else torch.arange(width)
            tokens.append(outcome.tokens)
            parents.append(rows + offset)
            job.rows = len(outcome.tokens)
        offset += width
    if not tokens:
        return None, torch.zeros(0, dtype=torch.long)
    return torch.cat(tokens), torch.cat(parents)
