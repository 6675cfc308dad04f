"""The controller without widgets: events in, states out through its ``set_state`` callback."""

from __future__ import annotations

from explorer.app.controller import Controller
from explorer.app.state import AppState
from explorer.models.base import CausalLM


def test_events_become_states_and_a_run_fills_the_panels(tiny: CausalLM) -> None:
    drawn: list[AppState] = []
    controller = Controller(tiny, "float32", drawn.append)
    controller.on_field({"max_new_tokens": 4})
    controller.on_add()
    assert [p.strategy for p in drawn[-1].panels] == ["greedy", "beam", "beam"]
    controller.run(wait=True)
    assert drawn[-1] is controller.state
    assert drawn[-1].status.startswith("done: 3 panels, 12 steps")
    assert all(p.trace is not None and len(p.trace.steps) == 4 for p in drawn[-1].panels)


def test_an_error_while_drawing_goes_to_the_status_line(tiny: CausalLM) -> None:
    def draw(state: AppState) -> None:
        if state.prompt == "boom":
            raise RuntimeError("the view broke")

    controller = Controller(tiny, "float32", draw)
    controller.on_field({"prompt": "boom"})
    assert controller.state.status == "error: the view broke"


def test_events_raised_while_drawing_are_ignored(tiny: CausalLM) -> None:
    controller: Controller

    def draw(state: AppState) -> None:
        controller.on_field({"max_new_tokens": 99})  # what a widget set by the view would echo back

    controller = Controller(tiny, "float32", draw)
    controller.on_field({"max_new_tokens": 5})
    assert controller.state.max_new_tokens == 5
