"""The one decoding loop: forward the live rows of every run, let each strategy step, reorder the cache, repeat.

Several runs on one prompt (``run_many``) share one prompt prefill and one batched forward per step: their rows
are laid side by side, and each strategy sees only its own slice of the logits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from explorer.models.base import CausalLM
from explorer.strategies.base import Setup, Strategy
from explorer.trace import Result, Step

__all__ = ["Run", "run", "run_many"]


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
    """One run's moving parts inside the loop."""

    strategy: Strategy
    setup: Setup
    state: Any
    rows: int
    steps: list[Step]
    stop: str = "running"
    active: bool = True


def run(
    model: CausalLM,
    strategy: Strategy,
    setup: Setup,
    on_step: Callable[[Step], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Run:
    """Decode with ``strategy`` until it is done, ``max_new_tokens`` is reached, or the caller stops it.

    ``on_step`` sees every step as it is recorded (progress bars); ``should_stop`` is asked between steps, and
    Ctrl-C (``KeyboardInterrupt``) between or during steps also ends the run: either way the partial trace is kept
    and the results are the hypotheses as they stand.
    """
    callback = None if on_step is None else (lambda _name, step: on_step(step))
    return run_many(model, {"run": (strategy, setup)}, callback, should_stop)["run"]


def run_many(
    model: CausalLM,
    jobs: Mapping[str, tuple[Strategy, Setup]],
    on_step: Callable[[str, Step], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Run]:
    """Decode several runs of one prompt side by side, in one batched forward per step.

    A single run prefills its prompt as its own batch (so its first step matches the reference bit for bit);
    several runs prefill the prompt once and copy its cache into every row. ``on_step(name, step)`` sees each
    run's steps as they are recorded.
    """
    prompts = {setup.prompt_ids for _, setup in jobs.values()}
    if len(prompts) != 1:
        raise ValueError("run_many needs one prompt for every run")
    began = time.perf_counter()
    live: dict[str, _Job] = {}
    try:
        with torch.inference_mode():
            for name, (strategy, setup) in jobs.items():
                state, rows = strategy.initial(setup)
                live[name] = _Job(strategy, setup, state, rows, [])
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


def _loop(
    model: CausalLM,
    jobs: dict[str, _Job],
    on_step: Callable[[str, Step], None] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Step every active run on its slice of one batched forward until all are done (or stopped)."""
    prompt = list(next(iter(jobs.values())).setup.prompt_ids)
    clock = time.perf_counter()
    if len(jobs) == 1:
        logits, cache = model.start(prompt, next(iter(jobs.values())).rows)
    else:
        total = sum(job.rows for job in jobs.values())
        logits, cache = model.start(prompt, 1)
        cache, logits = model.select(cache, torch.zeros(total, dtype=torch.long)), logits.expand(total, -1)
    forward_ms, index = _ms(clock), 0
    while True:
        tokens, parents, offset = [], [], 0
        for name, job in jobs.items():
            if not job.active:
                continue
            clock = time.perf_counter()
            outcome = job.strategy.step(job.state, logits[offset : offset + job.rows], index, job.setup)
            step = replace(outcome.step, forward_ms=forward_ms, search_ms=_ms(clock))
            job.steps.append(step)
            job.state = outcome.state
            if on_step is not None:
                on_step(name, step)
            if outcome.done or outcome.tokens is None:
                job.active = False
            else:
                rows = outcome.parents if outcome.parents is not None else torch.arange(job.rows)
                tokens.append(outcome.tokens)
                parents.append(rows + offset)
            offset += job.rows
            job.rows = len(outcome.tokens) if outcome.tokens is not None else 0
        if not tokens:
            return
        if should_stop is not None and should_stop():
            for job in jobs.values():
                job.stop = "stopped" if job.active else job.stop
            return
        clock = time.perf_counter()
        order = torch.cat(parents)
        if len(jobs) > 1 or not torch.equal(order, torch.arange(len(order))):
            cache = model.select(cache, order)
        logits, cache = model.step(torch.cat(tokens), cache)
        forward_ms, index = _ms(clock), index + 1
