"""The course notebooks: committed clean, run top to bottom, and every exercise check can say both yes and no.

Each exercise in a notebook is three cells: a question, an answer cell tagged ``answer`` (``answer = None``), and a
check cell tagged ``check`` (one expression returning a :class:`explorer.teaching.Feedback`). The cells tagged
``exercise-setup`` build the runs the exercises are about, on their own. Here they run in plain Python, and each
check is evaluated with the right answer (known by hand for the toys, computed independently for real models) and
with a wrong one, each in the spellings a student may type (2, 2.0, "2", " 2 "): a check that always says yes, or
always no, or that takes "2" for another answer than 2, fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from notebook_filter import clean

from explorer.teaching import Feedback

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
COURSE = ("01_quickstart", "02_greedy_vs_beam", "03_sampling", "04_diverse_beam_search", "05_constrained_beam_search",
          "06_speculative_decoding", "07_inside_the_model")

Namespace = dict[str, Any]


@dataclass(frozen=True)
class Answers:
    """A right and a wrong answer to one exercise; either may be computed from the exercise set-up's namespace."""

    right: Any
    wrong: Any

    def resolve(self, ns: Namespace) -> tuple[Any, Any]:
        def value(v: Any) -> Any:
            return v(ns) if callable(v) else v

        return value(self.right), value(self.wrong)


def _first_difference(ns: Namespace) -> int:
    """Where greedy and beam search part ways, read off the token ids directly."""
    a, b = ns["greedy_run"].results[0].token_ids, ns["beam_run"].results[0].token_ids
    step = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    assert step is not None, "the exercise needs runs that part ways: change its prompt"
    return step


def _nucleus_size(ns: Namespace) -> int:
    """How many of the 15 most likely first tokens the run's top-p keeps, from the model's own logits."""
    import torch

    model, trace = ns["model"], ns["nucleus"]
    logits, _ = model.start(list(trace.prompt_token_ids))
    probs = torch.softmax(logits[0].double(), dim=-1).sort(descending=True).values
    top_p = trace.params["top_p"]
    needed = int((probs.cumsum(0) < top_p).sum()) + 1  # the smallest top set with mass >= top_p
    return min(needed, len(trace.steps[0].hypotheses[0].candidates))


def _distinct(name: str) -> Callable[[Namespace], int]:
    return lambda ns: len({tuple(r.token_ids) for r in ns[name].results})


def _dola_layer(layers: tuple[int, ...]) -> Callable[[Namespace], int]:
    """The layer a DoLa run given only ``layers`` contrasts with at step 0: a run of its own."""
    import explorer

    def layer(ns: Namespace) -> int:
        run = explorer.decode(ns["model"], ns["mountain"], "dola", dola_layers=layers, repetition_penalty=1.2,
                              max_new_tokens=1)
        return run.steps[0].dola.chosen_layer

    return layer


def _contrast_of_in(ns: Namespace) -> float:
    """The contrast of " in" at step 1 of the notebook's DoLa run, from one forward of the model with its hidden
    states (not from the trace): the final layer's log-probability minus the chosen premature layer's."""
    import torch

    model, run = ns["model"], ns["dola_run"]
    token = model.tokenizer.encode(" in")[0]
    text = [*run.prompt_token_ids, run.results[0].token_ids[0]]
    with torch.inference_mode():
        logits, hidden, _ = model.forward_layers(torch.tensor([text]), None)
        final = torch.log_softmax(logits[0], dim=-1)[token]
        premature = torch.log_softmax(model.head(hidden[run.steps[1].dola.chosen_layer][0, -1]), dim=-1)[token]
    return round(float(final - premature), 3)


def _contrastive_winner(alpha: float) -> Callable[[Namespace], str]:
    """The token a contrastive search run with ``alpha`` takes first: a run of its own."""
    import explorer

    def winner(ns: Namespace) -> str:
        run = explorer.decode(ns["model"], ns["search_run"].prompt_token_ids, "contrastive", penalty_alpha=alpha,
                              top_k=4, max_new_tokens=1)
        return str(run.results[0].text)

    return winner


# The toy models' tables (explorer/data/toys) make these answers checkable by hand.
EXERCISES: dict[str, list[Answers]] = {
    "01_quickstart": [
        Answers(0.5, 0.05),  # The car -> drives 0.5 (x 1.0 for eos); the prompt's car (0.1) does not count
        Answers(2, 3),  # two beams
        Answers("turns", "is"),  # after The car: drives 0.5 and is 0.3 are kept, turns 0.2 pruned
    ],
    "02_greedy_vs_beam": [
        Answers("C B", "B A"),  # from <s> A: step 1 ranks C B (0.3 x 0.6) and B C (0.4 x 0.4) above B A (0.08)
        Answers("A", "A C B"),  # log 0.1 / 2^0.25 = -1.94 beats log 0.054 / 4^0.25 = -2.06
        Answers(5, 4),  # "never" runs past the full pool at step 3, and stops after step 4
        Answers(_first_difference, lambda ns: _first_difference(ns) + 1),
    ],
    "03_sampling": [
        Answers(0.4**4 / (0.5**4 + 0.4**4 + 0.1**4), 0.381),  # p^(1/T) renormalised, T = 0.25 (0.381: T = 0.5)
        Answers(_nucleus_size, lambda ns: _nucleus_size(ns) + 1),
        Answers(_distinct("hot"), lambda ns: _distinct("hot")(ns) + 1),
    ],
    "04_diverse_beam_search": [
        Answers(-1.4, -0.7),  # groups 0 and 1 both chose nice: 2 x 0.7
        Answers("bad outside", "cold outside"),  # group 2 avoids nice (-1.91) for bad (-1.39), then outside 0.6
        Answers("cold outside", "nice today"),  # nice today pays 0.9 twice: (-1.20 - 1.8) / 3 = -1.00 < -0.94
    ],
    "05_constrained_beam_search": [
        Answers("with", "jam"),  # a phrase is forced one token at a time, from its first
        Answers(1, 0),  # I love cake: cake is the token of step 1
        Answers(True, False),  # four tokens leave room for "like tea with jam"
    ],
    "06_speculative_decoding": [
        Answers(0.6, 0.5),  # after a: min(1, p(b) / q(b)) = 0.3 / 0.5 (0.5 is the draft's own probability)
        Answers("c", "a"),  # after b: max(0, p - q) leaves b 0.1 and c 0.2; a is the draft's favourite
        Answers(2.533, 3),  # (1 - 0.7^4) / (1 - 0.7); 3 would need every drafted token accepted, without the bonus
    ],
    "07_inside_the_model": [
        Answers(_dola_layer((4, 8, 12)), lambda ns: 12 if _dola_layer((4, 8, 12))(ns) != 12 else 8),
        Answers(_contrast_of_in, lambda ns: round(_contrast_of_in(ns) / 1.2, 3)),  # not after the repetition penalty
        Answers(_contrastive_winner(0.8), _contrastive_winner(0.6)),  # alpha 0.6 kept the most probable
    ],
}

def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]


def _params(names: tuple[str, ...], slow: set[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in names]


def _uses_smollm2(name: str, tag: str | None = None) -> bool:
    cells = _tagged(_read(name), tag) if tag else [c for c in _read(name).cells if c.cell_type == "code"]
    return any("smollm2" in c.source for c in cells)


def test_the_course_is_every_numbered_notebook() -> None:
    assert tuple(sorted(p.stem for p in NOTEBOOKS.glob("0*.ipynb"))) == COURSE
    assert set(EXERCISES) == set(COURSE)


@pytest.mark.parametrize("name", COURSE)
def test_committed_without_outputs(name: str) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a cell has outputs"
            assert cell.execution_count is None, f"{name}: a cell has an execution count"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_committed_as_the_notebook_filter_makes_them(path: Path) -> None:
    """Git's filter (``make install``) would not change a committed notebook: committing one never churns it."""
    text = path.read_text(encoding="utf-8")
    assert clean(text) == text


def test_the_filter_strips_what_jupyterlab_saves() -> None:
    """What JupyterLab writes after a run (outputs, counts, timings, widget state, the kernel's language details)
    is stripped: git has nothing to commit."""
    committed = (NOTEBOOKS / "app.ipynb").read_text(encoding="utf-8")
    nb = nbformat.reads(committed, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.execution_count = 1
    code.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "0f" * 16, "version_major": 2, "version_minor": 0},
        "text/plain": ["VBox(children=(...))"]})]
    code.metadata["execution"] = {"iopub.status.busy": "2026-11-30T12:00:00.000Z"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    nb.metadata["language_info"] = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                                    "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                                    "pygments_lexer": "ipython3", "version": "3.11.7"}
    saved = nbformat.writes(nb)
    assert saved != committed
    assert clean(saved) == committed


@pytest.mark.parametrize("name", COURSE)
def test_every_exercise_is_a_question_an_answer_and_a_check(name: str) -> None:
    nb = _read(name)
    cells = nb.cells
    checks = [i for i, c in enumerate(cells) if "check" in c.metadata.get("tags", [])]
    assert len(checks) == len(EXERCISES[name]), f"{name}: update EXERCISES when exercises change"
    assert 2 <= len(checks) <= 4
    for i in checks:
        question, answer, check = cells[i - 2], cells[i - 1], cells[i]
        assert question.cell_type == "markdown"
        assert question.source.startswith("**Exercise")
        assert "answer" in answer.metadata.get("tags", [])
        assert answer.source.startswith("answer = None")
        assert check.source.startswith("teaching.check_")
        assert "\n" not in check.source.strip()
    assert _tagged(nb, "exercise-setup"), f"{name}: no cell tagged exercise-setup"
    assert max(i for i, c in enumerate(cells) if "exercise-setup" in c.metadata.get("tags", [])) < checks[0]


def _exercise_params() -> list[Any]:
    return _params(COURSE, {n for n in COURSE if _uses_smollm2(n, "exercise-setup")})


def _spellings(value: Any) -> list[Any]:
    """One answer as a student may type it: 2 as 2.0, "2" and " 2 "; 0.36 as "0.36"; True as "True"; text padded."""
    if isinstance(value, bool):
        return [value, str(value), str(value).lower()]
    if isinstance(value, int):
        return [value, float(value), str(value), f" {value} "]
    if isinstance(value, float):
        return [value, repr(value), f" {value!r} "]
    return [value, f" {value} "]


def _verdict(cell: nbformat.NotebookNode, ns: Namespace, answer: Any, where: str) -> Feedback:
    """The notebook's own check cell, evaluated with ``answer``."""
    ns["answer"] = answer
    feedback = eval(compile(cell.source, where, "eval"), ns)
    assert isinstance(feedback, Feedback), where
    return feedback


@pytest.mark.parametrize("name", _exercise_params())
def test_each_check_accepts_the_right_answer_and_rejects_a_wrong_one(name: str) -> None:
    nb = _read(name)
    ns: Namespace = {}
    for cell in _tagged(nb, "exercise-setup"):
        exec(compile(cell.source, f"{name}:exercise-setup", "exec"), ns)  # the notebook's own set-up
    for number, (cell, answers) in enumerate(zip(_tagged(nb, "check"), EXERCISES[name], strict=True), start=1):
        right, wrong = answers.resolve(ns)
        where = f"{name}, exercise {number}"
        pending = _verdict(cell, ns, None, where)
        assert not pending, where
        assert not pending.answered, where
        assert "Hint" in pending.message, where
        for spelling in _spellings(right):
            feedback = _verdict(cell, ns, spelling, where)
            assert feedback, f"{where}: the right answer {spelling!r} was rejected: {feedback}"
        for spelling in _spellings(wrong):
            feedback = _verdict(cell, ns, spelling, where)
            assert not feedback, f"{where}: the wrong answer {spelling!r} was accepted"
            assert feedback.answered, where


def _execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel from notebooks/, with Jupyter's runtime files kept in ``tmp_path``."""
    for var in ("JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    nb = _read(name)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


@pytest.mark.parametrize("name", _params(COURSE, {n for n in COURSE if _uses_smollm2(n)}))
def test_the_notebook_runs_top_to_bottom(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute(name, tmp_path, monkeypatch)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    stderr = [o.text for c in code for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"{name} wrote to stderr: {stderr[0][:500]}"
    for cell in _tagged(nb, "check"):  # with the placeholder answers, every check gives its hint
        shown = "".join(o.data.get("text/html", "") for o in cell.outputs if "data" in o)
        assert "no answer yet" in shown, f"{name}: {cell.source}"
    # Run and saved, the notebook leaves git nothing to commit: the filter takes it back to what is committed.
    assert clean(nbformat.writes(nb)) == (NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8")
