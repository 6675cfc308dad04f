"""The one decoding loop: forward the live rows, let the strategy step, reorder the cache, repeat."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from explorer.models.base import CausalLM
from explorer.strategies.base import Setup, Strategy
from explorer.trace import Result, Step

__all__ = ["Run", "run"]


@dataclass(frozen=True)
class Run:
    """What the loop produced: the steps, the results and why it stopped."""

    steps: tuple[Step, ...]
    results: tuple[Result, ...]
    stop_reason: str
    total_ms: float


def _ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``perf_counter`` reading)."""
    return (time.perf_counter() - start) * 1000.0


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
    began = time.perf_counter()
    steps: list[Step] = []
    state: Any = None
    stop = "running"
    try:
        with torch.inference_mode():
            clock = time.perf_counter()
            state, rows = strategy.initial(setup)
            logits, cache = model.start(list(setup.prompt_ids), rows)
            forward_ms = _ms(clock)
            for index in range(setup.params.max_new_tokens):
                clock = time.perf_counter()
                outcome = strategy.step(state, logits, index, setup)
                step = replace(outcome.step, forward_ms=forward_ms, search_ms=_ms(clock))
                steps.append(step)
                state = outcome.state
                if on_step is not None:
                    on_step(step)
                if outcome.done or outcome.tokens is None:
                    break
                if should_stop is not None and should_stop():
                    stop = "stopped"
                    break
                clock = time.perf_counter()
                if outcome.parents is not None:
                    cache = model.select(cache, outcome.parents)
                logits, cache = model.step(outcome.tokens, cache)
                forward_ms = _ms(clock)
    except KeyboardInterrupt:
        stop = "interrupted"
        if state is None:
            raise
    with torch.inference_mode():
        results = strategy.results(state, setup)
    if stop == "running":
        stop = strategy.stop_reason(state)
    return Run(tuple(steps), results, stop, _ms(began))
