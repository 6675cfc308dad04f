"""The precision control: a lower precision is a choice with its measured cost shown, never the default."""

from __future__ import annotations

from widget_text import shown_text, visible_error

import explorer
from explorer.app import Explorer
from explorer.models.base import CausalLM


def test_float32_is_the_default_and_says_it_matches_the_reference(app: Explorer, tiny: CausalLM) -> None:
    assert app.state.dtype == app.controls.precision.value == "float32"
    assert app.model is tiny
    assert "results equal the reference" in shown_text(app.controls.precision_info)


def test_bfloat16_runs_and_every_trace_says_so(app: Explorer, tiny: CausalLM) -> None:
    app.controls.precision.value = "bfloat16"
    assert app.state.dtype == "bfloat16"
    assert app.model is explorer.load_model("tiny-random", dtype="bfloat16")
    assert app.state.status == "model tiny-random (bfloat16) loaded"
    note = shown_text(app.controls.precision_info)
    assert note.startswith("bfloat16: ")
    assert "the speed of float32" in note
    assert "/20 prompts" in note
    app.run(wait=True)
    assert app.state.status.startswith("done: 2 panels")
    for panel in app.state.panels:
        assert panel.trace is not None
        assert panel.trace.model == "tiny-random (bfloat16)"
        assert panel.trace.meta["dtype"] == "bfloat16"
    app.controls.precision.value = "float32"
    assert app.model is tiny
    assert str(next(iter(tiny.hf.parameters())).dtype) == "torch.float32"  # type: ignore[attr-defined]


def test_a_toy_table_keeps_float32_and_the_precision_box_says_why(app: Explorer) -> None:
    app.controls.precision.value = "bfloat16"
    app.controls.model.value = "toy:d2l-beam"
    assert app.model is explorer.load_model("toy:d2l-beam")
    assert app.state.dtype == app.controls.precision.value == "float32"
    assert visible_error(app.controls.errors["precision"]).startswith(
        "dtype='bfloat16' is invalid: expected 'float32' for model 'toy:d2l-beam' (a next-token table has no weights "
        "to cast)")
    assert visible_error(app.controls.errors["model"]) == ""
    app.controls.model.value = "tiny-random"
    assert app.model is explorer.load_model("tiny-random")
    assert visible_error(app.controls.errors["precision"]) == ""


def test_the_precision_cannot_change_during_a_run(app: Explorer) -> None:
    app.controls.max_new_tokens.value = 200
    seen: list[bool] = []

    def on_progress(change: dict[str, object]) -> None:
        if change["new"] == 2:
            seen.append(app.controls.precision.disabled)
            app.controls.stop.click()

    app.controls.progress.observe(on_progress, names="value")
    thread = app.run()
    assert thread is not None
    thread.join()
    assert seen == [True]
    assert not app.controls.precision.disabled


def test_the_app_can_open_in_a_lower_precision(tiny: CausalLM) -> None:
    app = Explorer("tiny-random", dtype="float16")
    assert app.model is explorer.load_model("tiny-random", dtype="float16")
    assert (app.state.model, app.state.dtype, app.controls.precision.value) == ("tiny-random", "float16", "float16")
    app.controls.precision.value = "float32"
    assert app.model is tiny


def test_a_loaded_lower_precision_model_keeps_its_name_and_precision(tiny: CausalLM) -> None:
    app = Explorer(explorer.load_model("tiny-random", dtype="bfloat16"))
    assert (app.state.model, app.state.dtype) == ("tiny-random", "bfloat16")
    app.controls.precision.value = "float32"
    assert app.model is tiny


def test_a_bad_precision_opens_the_app_with_the_message() -> None:
    app = Explorer("tiny-random", dtype="half")
    assert app.model is None
    assert app.state.status == "error: dtype='half' is invalid: expected one of 'float32', 'bfloat16', 'float16'"
