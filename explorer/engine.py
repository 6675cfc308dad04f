"""The one decoding loop: forward the live rows of every run, let each strategy step, reorder the cache, repeat.

Several runs on one prompt (``run_many``) share one prompt prefill and one batched forward per step: their rows
are laid side by side, and each strategy sees only its own slice of the logits. A strategy whose registry entry
brings its own ``driver`` (several tokens per row per forward, say) runs that instead, on its own.
"""

from __future__ import annotations

import itertools
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
    """Forward, step every run on its rows, reorder the cache; until no run feeds a token or the caller stops.

    Shapes: R rows (every active run's rows side by side, a run's rows in one block), V the vocabulary.
    """
    clock = time.perf_counter()
    logits, cache = _prefill(model, jobs)  # the prompt in, (R, V) out
    for index in itertools.count():
        forward_ms = _ms(clock)
        stepped = (_step(name, job, logits, rows, index, forward_ms, on_step) for name, job, rows in _blocks(jobs))
        fed = [f for f in stepped if f is not None]  # (tokens, parents) of each run that goes on
        if not fed:
            return  # every run is done
        if should_stop is not None and should_stop():
            for job in jobs.values():
                job.stop = "stopped" if job.active else job.stop
            return
        tokens = torch.cat([t for t, _ in fed])  # (R',) the token each new row feeds
        parents = torch.cat([p for _, p in fed])  # (R',) new row i continues old row parents[i]
        clock = time.perf_counter()
        if not torch.equal(parents, torch.arange(len(logits))):
            cache = model.select(cache, parents)  # rows reordered: beams moved, copied or dropped, runs ended
        logits, cache = model.step(tokens, cache)  # one token per row in, (R', V) out


def _prefill(model: CausalLM, jobs: dict[str, _Job]) -> tuple[torch.Tensor, object]:
    """The prompt's logits and cache, one row per row of every run.

    One run prefills its rows as one batch (a row's logits depend on the batch in the last bits, so this keeps
    its first step bit-identical to the reference); several runs prefill once and copy the row.
    """
    prompt = list(next(iter(jobs.values())).setup.prompt_ids)
    total = sum(job.rows for job in jobs.values())
    if len(jobs) == 1:
        return model.start(prompt, total)
    logits, cache = model.start(prompt, 1)  # (1, V)
    return logits.expand(total, -1), model.select(cache, torch.zeros(total, dtype=torch.long))  # (R, V), R rows


def _blocks(jobs: dict[str, _Job]) -> list[tuple[str, _Job, slice]]:
    """Each active run with its block of rows, in order: a run owns rows ``offset .. offset + job.rows - 1``."""
    out, offset = [], 0
    for name, job in jobs.items():
        if job.active:
            out.append((name, job, slice(offset, offset + job.rows)))
            offset += job.rows
    return out


def _step(name: str, job: _Job, logits: torch.Tensor, rows: slice, index: int, forward_ms: float,
          on_step: OnStep | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One search step of one run on its ``rows`` of ``logits`` (R, V), recorded; the tokens its rows feed next
    and the rows of ``logits`` they continue (R',), or ``None`` when the run is done."""
    clock = time.perf_counter()
    outcome = job.strategy.step(job.state, logits[rows], index, job.setup)  # the run sees (r, V): its rows only
    step = replace(outcome.step, forward_ms=forward_ms, search_ms=_ms(clock))
    job.steps.append(step)
    job.state = outcome.state
    if on_step is not None:
        on_step(name, step)
    if outcome.done or outcome.tokens is None:
        job.active, job.rows = False, 0
        return None
    job.rows = len(outcome.tokens)
    own = outcome.parents if outcome.parents is not None else torch.arange(rows.stop - rows.start)  # (r',)
    return outcome.tokens, own + rows.start
