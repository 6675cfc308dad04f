"""Decoding in a background thread: panels one after another, progress from ``on_step``, and a Stop flag."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from explorer.api import decode
from explorer.models.base import CausalLM
from explorer.trace import Step, Trace

__all__ = ["Hooks", "Job", "RunEnd", "Runner", "one_line"]


@dataclass(frozen=True)
class Job:
    """One panel to decode: everything ``explorer.decode`` takes, plus what to add to the trace's ``meta``."""

    panel_id: int
    prompt: str | tuple[int, ...]
    strategy: str
    params: Mapping[str, Any]
    chat: bool = False
    constraints: Sequence[Any] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def max_steps(self) -> int:
        """The most steps this job can take (for the progress bar)."""
        return int(self.params.get("max_new_tokens", 1))


@dataclass(frozen=True)
class RunEnd:
    """How a run ended: ``done``, ``stopped`` or ``error`` (with the message), and what it did."""

    outcome: Literal["done", "stopped", "error"]
    panels: int
    total: int
    steps: int
    seconds: float
    message: str = ""

    @property
    def status(self) -> str:
        """The status line: ``done: 2 panels, 30 steps, 4.1 s``, ``stopped: ...`` or ``error: <message>``."""
        if self.outcome == "error":
            return f"error: {self.message}"
        panels = f"{self.panels} panel{'s' if self.panels != 1 else ''}"
        if self.outcome == "stopped":
            panels = f"{self.panels} of {self.total} panels"
        return f"{self.outcome}: {panels}, {self.steps} steps, {self.seconds:.1f} s"


@dataclass(frozen=True)
class Hooks:
    """What the runner reports, each called from the worker thread."""

    on_start: Callable[[Job, int, int], None]
    on_progress: Callable[[int], None]
    on_trace: Callable[[Job, Trace], None]
    on_error: Callable[[Job, Exception], None]
    on_end: Callable[[RunEnd], None]


class Runner:
    """Runs jobs one after another in a daemon thread; ``stop()`` ends the current job after its step.

    A stopped job still reports its partial trace; jobs after it do not start.
    """

    def __init__(self, model: Callable[[], CausalLM], hooks: Hooks) -> None:
        self._model = model
        self._hooks = hooks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether a run is under way."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Ask the run to end after the current step."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether Stop was asked for."""
        return self._stop.is_set()

    def start(self, jobs: Sequence[Job], *, wait: bool = False) -> threading.Thread:
        """Run ``jobs`` in a new thread (and wait for it when ``wait``); the thread is returned."""
        self._stop.clear()
        thread = threading.Thread(target=self._work, args=(tuple(jobs),), name="explorer-run", daemon=True)
        self._thread = thread
        thread.start()
        if wait:
            thread.join()
        return thread

    def _work(self, jobs: tuple[Job, ...]) -> None:
        """The thread's body: every job in turn, then exactly one ``on_end`` whatever happened."""
        began = time.perf_counter()
        counts = [0, 0]  # steps, finished jobs
        failure = ""
        try:
            failure = self._run_jobs(jobs, counts)
        except Exception as error:  # a hook failed: the run ends here, and says why
            failure = one_line(error)
        finally:
            outcome: Literal["done", "stopped", "error"] = (
                "error" if failure else "stopped" if self._stop.is_set() else "done")
            self._hooks.on_end(RunEnd(outcome, counts[1], len(jobs), counts[0], time.perf_counter() - began,
                                      failure))

    def _run_jobs(self, jobs: tuple[Job, ...], counts: list[int]) -> str:
        """Decode the jobs one after another (``counts``: steps and finished jobs so far); the first error, if any."""
        failure = ""

        def on_step(_: Step) -> None:
            counts[0] += 1
            self._hooks.on_progress(counts[0])

        for number, job in enumerate(jobs, start=1):
            if self._stop.is_set():
                break
            self._hooks.on_start(job, number, len(jobs))
            try:
                trace = decode(self._model(), job.prompt, job.strategy, chat=job.chat, constraints=job.constraints,
                               on_step=on_step, should_stop=self._stop.is_set, **dict(job.params))
            except Exception as error:  # reported inline; the run goes on with the next panel
                failure = failure or one_line(error)
                self._hooks.on_error(job, error)
                continue
            counts[1] += 1
            self._hooks.on_trace(job, replace(trace, meta={**trace.meta, **job.meta}) if job.meta else trace)
        return failure


def one_line(error: BaseException) -> str:
    """An exception as one line (its first line, or its type when it has no message).

    >>> one_line(ValueError("first\\nsecond")), one_line(KeyError())
    ('first', 'KeyError')
    """
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
