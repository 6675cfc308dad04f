"""Decoding in a background thread: panels side by side in one batched run (or one after another), progress
from ``on_step``, and a Stop flag."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from explorer.api import Plan, decode, plan, run_plans
from explorer.fork import ForkPoint, graft
from explorer.models.base import CausalLM
from explorer.trace import Trace

__all__ = ["Hooks", "Job", "RunEnd", "Runner", "one_line"]


@dataclass(frozen=True)
class Job:
    """One panel to decode: everything ``explorer.decode`` takes, plus what to add to the trace's ``meta``; a
    branch's ``fork`` is where it leaves its source (its trace is grafted there, :func:`explorer.fork.graft`)."""

    panel_id: int
    prompt: str | tuple[int, ...]
    strategy: str
    params: Mapping[str, Any]
    chat: bool = False
    constraints: Sequence[Any] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    fork: ForkPoint | None = None

    @property
    def name(self) -> str:
        """The job's name in a side-by-side run (and in its traces' ``meta.batched_with``)."""
        return self.label or f"#{self.panel_id}"

    def kwargs(self) -> dict[str, Any]:
        """``decode``'s keyword arguments for this job (``strategy`` included)."""
        return {"strategy": self.strategy, "chat": self.chat, "constraints": self.constraints, **dict(self.params)}

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
        """The status line: ``done: 2 panels, 30 steps, decoding 4.1 s``, ``stopped: ...`` or ``error: <message>``
        (the decoding time is the worker's, from its start to its end; the controller adds the time from Run)."""
        if self.outcome == "error":
            return f"error: {self.message}"
        panels = f"{self.panels} panel{'s' if self.panels != 1 else ''}"
        if self.outcome == "stopped":
            panels = f"{self.panels} of {self.total} panels"
        return f"{self.outcome}: {panels}, {self.steps} steps, decoding {self.seconds:.1f} s"


@dataclass(frozen=True)
class Hooks:
    """What the runner reports, each called from the worker thread. ``on_start(jobs, number, total)``: ``jobs``
    start now (several when they run side by side), the first of them is job ``number`` of ``total``."""

    on_start: Callable[[Sequence[Job], int, int], None]
    on_progress: Callable[[int], None]
    on_trace: Callable[[Job, Trace], None]
    on_error: Callable[[Job, Exception], None]
    on_end: Callable[[RunEnd], None]


class Runner:
    """Runs jobs in a daemon thread; ``stop()`` ends the run after its current step, keeping partial traces.

    Jobs on one prompt run side by side (``batched``, the default): one prefill and one batched forward per step
    for all of them (``explorer.compare``), with the same tokens as separate runs. Otherwise, and for a single
    job, they run one after another, and a stopped job's successors do not start.
    """

    def __init__(self, model: Callable[[], CausalLM], hooks: Hooks, *, batched: bool = True) -> None:
        self._model = model
        self._hooks = hooks
        self.batched = batched
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
        """Decode the jobs (``counts``: steps and finished jobs so far); the first error, if any."""
        if self.batched and len(jobs) > 1 and len({(job.prompt, job.chat) for job in jobs}) == 1:
            return self._run_together(jobs, counts)
        return self._run_in_turn(jobs, counts, 1, len(jobs))

    def _on_step(self, counts: list[int]) -> Callable[..., None]:
        """The ``on_step`` callback: count a step and report the progress."""

        def on_step(*_: object) -> None:
            counts[0] += 1
            self._hooks.on_progress(counts[0])

        return on_step

    def _finished(self, job: Job, trace: Trace, counts: list[int]) -> None:
        """Hand a job's trace over (with the job's ``meta`` added; a branch grafted onto its source)."""
        counts[1] += 1
        if job.meta:
            trace = replace(trace, meta={**trace.meta, **job.meta})
        if job.fork is not None:
            trace = graft(trace, job.fork, self._model().tokenizer.decode)
        self._hooks.on_trace(job, trace)

    def _run_in_turn(self, jobs: tuple[Job, ...], counts: list[int], first: int, total: int) -> str:
        """Decode ``jobs`` one after another (job ``first`` of ``total`` onwards); the first error, if any."""
        failure = ""
        for number, job in enumerate(jobs, start=first):
            if self._stop.is_set():
                break
            self._hooks.on_start((job,), number, total)
            try:
                kwargs = job.kwargs()
                trace = decode(self._model(), job.prompt, kwargs.pop("strategy"), on_step=self._on_step(counts),
                               should_stop=self._stop.is_set, **kwargs)
            except Exception as error:  # reported inline; the run goes on with the next panel
                failure = failure or one_line(error)
                self._hooks.on_error(job, error)
                continue
            self._finished(job, trace, counts)
        return failure

    def _run_together(self, jobs: tuple[Job, ...], counts: list[int]) -> str:
        """Decode ``jobs`` side by side. A job whose arguments are refused is reported alone and the others run;
        when the batched run itself fails, the jobs run again one after another so that the error reaches the
        panel it belongs to."""
        model = self._model()
        failure = ""
        ready: list[tuple[Job, Plan]] = []
        for job in jobs:
            try:
                kwargs = job.kwargs()
                ready.append((job, plan(model, job.prompt, kwargs.pop("strategy"), **kwargs)))
            except Exception as error:  # the panel's own inline error; the others still run
                failure = failure or one_line(error)
                self._hooks.on_error(job, error)
        planned = tuple(job for job, _ in ready)
        if len(planned) < 2:
            return self._run_in_turn(planned, counts, 1, len(planned)) or failure
        self._hooks.on_start(planned, 1, len(planned))
        try:
            traces = run_plans(model, {job.name: p for job, p in ready}, on_step=self._on_step(counts),
                               should_stop=self._stop.is_set)
        except Exception:  # rerun one by one: the error then names its panel
            counts[0] = 0
            self._hooks.on_progress(0)
            return self._run_in_turn(planned, counts, 1, len(planned)) or failure
        for job in planned:
            self._finished(job, traces[job.name], counts)
        return failure


def one_line(error: BaseException) -> str:
    """An exception as one line (its first line, or its type when it has no message).

    >>> one_line(ValueError("first\\nsecond")), one_line(KeyError())
    ('first', 'KeyError')
    """
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
