"""Runs in the app: panels on one prompt decode side by side (one batched forward per step) with the same tokens
as one after another; Stop keeps every partial trace; a failing panel gets its own error and the rest still run."""

from __future__ import annotations

import pytest

import explorer
from explorer.app import Explorer
from explorer.app._run import Hooks, Job, RunEnd, Runner
from explorer.models.base import CausalLM
from explorer.trace import Trace


def _results(app: Explorer) -> list[list[tuple[tuple[int, ...], float]]]:
    """Every panel's returned sequences and scores."""
    out = []
    for panel in app.state.panels:
        assert panel.trace is not None
        out.append([(r.token_ids, r.score) for r in panel.trace.results])
    return out


def test_side_by_side_gives_the_same_results_as_one_after_another(app: Explorer) -> None:
    for strategy in ("diverse", "sample"):
        app.controls.add.click()
        app.panel(len(app.state.panels) - 1).strategy.value = strategy
    app.panel(3).knobs["seed"].value = "3"
    app.run(wait=True)
    assert app.state.status.startswith("done: 4 panels, 24 steps")
    together = _results(app)
    keys = [p.key for p in app.state.panels]
    for panel in app.state.panels:
        assert panel.trace is not None
        assert panel.trace.meta["batched_with"] == sorted(keys)
    seeds = [p.trace.params["seed"] for p in app.state.panels if p.trace is not None]
    assert "side by side with 3 other panels, stop:" in app.panel(0).results.value

    app.controller.runner.batched = False
    app.run(wait=True)
    apart = _results(app)
    assert all(p.trace is not None and "batched_with" not in p.trace.meta for p in app.state.panels)
    assert "side by side" not in app.panel(0).results.value
    assert [p.trace.params["seed"] for p in app.state.panels if p.trace is not None] == seeds
    for one, other in zip(together, apart, strict=True):
        assert [ids for ids, _ in one] == [ids for ids, _ in other]
        assert [score for _, score in one] == pytest.approx([score for _, score in other], abs=1e-4)


def test_stop_keeps_every_partial_trace(app: Explorer) -> None:
    app.controls.max_new_tokens.value = 200
    app.controls.progress.observe(lambda ch: app.controls.stop.click() if ch["new"] == 3 else None, names="value")
    thread = app.run()
    assert thread is not None
    thread.join()
    assert app.state.status.startswith("stopped: 2 of 2 panels, 4 steps")
    for panel in app.state.panels:
        assert panel.trace is not None
        assert panel.trace.stop_reason == "stopped"
        assert len(panel.trace.steps) == 2


class Recorder:
    """Hooks that remember what the runner reported."""

    def __init__(self) -> None:
        self.started: list[tuple[str, ...]] = []
        self.traces: dict[str, Trace] = {}
        self.errors: dict[str, str] = {}
        self.progress: list[int] = []
        self.end: RunEnd | None = None

    def hooks(self) -> Hooks:
        return Hooks(
            lambda jobs, _number, _total: self.started.append(tuple(j.name for j in jobs)),
            self.progress.append,
            lambda job, trace: self.traces.__setitem__(job.name, trace),
            lambda job, error: self.errors.__setitem__(job.name, str(error)),
            lambda end: setattr(self, "end", end),
        )


def _job(panel_id: int, strategy: str, prompt: str | tuple[int, ...], **params: object) -> Job:
    return Job(panel_id, prompt, strategy, {"max_new_tokens": 5, **params}, label=f"#{panel_id} {strategy}")


def test_a_refused_panel_fails_alone_and_the_others_run_side_by_side(tiny: CausalLM) -> None:
    seen = Recorder()
    jobs = [_job(1, "greedy", "Once upon a time"), _job(2, "beam", "Once upon a time", num_beams=0),
            _job(3, "beam", "Once upon a time", num_beams=3), _job(4, "diverse", "Once upon a time", num_beams=4,
                                                                   num_beam_groups=2, diversity_penalty=1.0)]
    Runner(lambda: tiny, seen.hooks()).start(jobs, wait=True)
    assert list(seen.errors) == ["#2 beam"]
    assert seen.errors["#2 beam"].startswith("num_beams=0 is invalid")
    assert seen.started == [("#1 greedy", "#3 beam", "#4 diverse")]
    assert sorted(seen.traces) == ["#1 greedy", "#3 beam", "#4 diverse"]
    assert seen.end is not None
    assert seen.end.outcome == "error"
    assert seen.end.status == "error: num_beams=0 is invalid: expected an integer from 1 to 64"
    assert seen.progress == list(range(1, 16))


def test_a_run_that_fails_midway_is_rerun_one_by_one_to_name_its_panel() -> None:
    toy = explorer.load_model("toy:how-to-generate")
    prompt = toy.prompt  # type: ignore[attr-defined]
    seen = Recorder()
    jobs = [_job(1, "beam", prompt, num_beams=2), _job(2, "sample", prompt, min_new_tokens=5, seed=0)]
    Runner(lambda: toy, seen.hooks()).start(jobs, wait=True)
    assert seen.errors == {"#2 sample": "nothing to sample at step 2: every token is masked (processors: "
                                        "min_new_tokens)"}
    assert seen.started[-2:] == [("#1 beam",), ("#2 sample",)]
    assert list(seen.traces) == ["#1 beam"]
    assert "batched_with" not in seen.traces["#1 beam"].meta
    assert seen.end is not None
    assert seen.end.status.startswith("error: nothing to sample at step 2")


def test_jobs_on_different_prompts_run_one_after_another(tiny: CausalLM) -> None:
    seen = Recorder()
    Runner(lambda: tiny, seen.hooks()).start([_job(1, "greedy", "Once"), _job(2, "greedy", "Twice")], wait=True)
    assert seen.started == [("#1 greedy",), ("#2 greedy",)]
    assert sorted(seen.traces) == ["#1 greedy", "#2 greedy"]
