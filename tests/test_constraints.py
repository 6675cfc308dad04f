"""Constraint tracking: replay of transformers 4.56.2 reference cases, plus the documented quirks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from explorer.constraints import (
    AnyOf,
    Constraint,
    ConstraintState,
    Phrase,
    advance_candidates,
    is_satisfied_by,
)
from explorer.errors import ParameterError

FIXTURE = Path(__file__).parent / "fixtures" / "constraint_cases.json"
_ALL = json.loads(FIXTURE.read_text())
CASES: list[dict[str, Any]] = [case for case in _ALL if "c" in case]
VALIDATION: list[list[Any]] = next(case["v"] for case in _ALL if "v" in case)


def build(specs: list[list[Any]]) -> tuple[Constraint, ...]:
    return tuple(Phrase(tuple(ids)) if kind == "p" else AnyOf(tuple(tuple(o) for o in ids)) for kind, ids in specs)


def describe(state: ConstraintState) -> list[Any]:
    """The fixture's row layout (see tests/reference/make_constraint_cases.py)."""
    return [
        int(state.completed),
        state.bank,
        list(state.advance_tokens()),
        [[i, list(m)] for i, m in zip(state.complete, state.complete_tokens, strict=True)],
        -1 if state.in_progress is None else state.in_progress,
        list(state.matched),
        list(state.pending),
    ]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_tracking_matches_reference(case: dict[str, Any]) -> None:
    constraints, tokens = build(case["c"]), case["t"]
    state = ConstraintState.initial(constraints)
    assert describe(state) == case["s"][0]
    for k, token in enumerate(tokens, start=1):
        state = state.add(token)
        assert describe(state) == case["s"][k], f"after {tokens[:k]}"
        assert ConstraintState.from_tokens(constraints, tokens[:k]) == state
        if state.completed:
            assert is_satisfied_by(constraints, tokens[:k])


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_advance_candidates_match_reference(case: dict[str, Any]) -> None:
    constraints, tokens = build(case["c"]), case["t"]
    for k, expected in enumerate(case["a"]):
        prefix = tuple(tokens[:k])
        got = advance_candidates(ConstraintState.from_tokens(constraints, prefix))
        assert [[c.token, c.bank, c.state.bank] for c in got] == expected, f"after {list(prefix)}"
        for c in got:
            assert c.state == ConstraintState.from_tokens(constraints, (*prefix, c.token))


def test_fixture_exercises_the_interesting_paths() -> None:
    rows = [row for case in CASES for row in case["s"]]
    assert sum(row[1] != row[2] for case in CASES for rows in case["a"] for row in rows) >= 20  # aliasing
    assert sum(row[0] for row in rows) >= 100  # completed
    assert any(row[4] >= 0 and case["c"][row[4]][0] == "d" for case in CASES for row in case["s"])
    resets = 0
    for case in CASES:
        for before, after in zip(case["s"], case["s"][1:], strict=False):
            if before[4] >= 0 and after[4] == -1 and len(after[3]) == len(before[3]):
                resets += 1
                assert after[6][-1] == before[4]  # back to the END of the pending list
    assert resets >= 50
    assert sum(rejected for _, rejected in VALIDATION) >= 30
    assert sum(not rejected for _, rejected in VALIDATION) >= 30


@pytest.mark.parametrize(("options", "rejected"), VALIDATION)
def test_any_of_rejects_what_the_reference_rejects(options: list[list[int]], rejected: int) -> None:
    value = tuple(tuple(o) for o in options)
    if rejected:
        with pytest.raises(ParameterError, match="prefix of another"):
            AnyOf(value)
    else:
        assert AnyOf(value).options == value


# --- quirks, by hand ----------------------------------------------------------------------------


def test_aliasing_sibling_resets_and_banks_zero() -> None:
    # After 5, the copy for 6 appends to the shared list (completing [5, 6]); the copy for 7 then
    # sees [5, 6], cannot step, and resets: bank 0 although [5, 7] completes the constraint.
    state = ConstraintState.from_tokens((AnyOf(((5, 6), (5, 7))),), (5,))
    got = [(c.token, c.bank, c.state.bank, c.state.completed) for c in advance_candidates(state)]
    assert got == [(6, 2, 2, True), (7, 0, 2, True)]


def test_aliasing_earlier_copy_banked_on_the_final_shared_list() -> None:
    # Copy 6 holds [5, 6]; copy 7 extends the same list to [5, 6, 7] (a leaf), so copy 6 is banked
    # as if fully matched (3 instead of 2) and copy 7 as complete.
    state = ConstraintState.from_tokens((AnyOf(((5, 6, 7), (5, 7))),), (5,))
    assert [(c.token, c.bank, c.state.bank) for c in advance_candidates(state)] == [(6, 3, 2), (7, 3, 3)]


def test_no_aliasing_from_pending_or_phrases() -> None:
    constraints = (Phrase((1, 2)), AnyOf(((1, 3), (4,))))
    fresh = ConstraintState.initial(constraints)
    assert [(c.token, c.bank) for c in advance_candidates(fresh)] == [(1, 1), (1, 1), (4, 2)]
    mid = fresh.add(1)
    assert [(c.token, c.bank) for c in advance_candidates(mid)] == [(2, 2)]
    assert advance_candidates(ConstraintState.from_tokens(constraints, (1, 2, 4))) == ()


def test_breaking_token_is_not_retried() -> None:
    constraints = (Phrase((4, 4, 5)),)
    state = ConstraintState.from_tokens(constraints, (4, 4, 4, 5))
    assert (state.completed, state.in_progress, state.pending) == (False, None, (0,))
    assert is_satisfied_by(constraints, (4, 4, 4, 5))  # the truth differs from the tracker


def test_reset_constraint_goes_to_the_end_of_pending() -> None:
    state = ConstraintState.initial((Phrase((1, 2)), Phrase((1, 3)))).add(1)
    assert (state.in_progress, state.pending) == (0, (1,))
    state = state.add(9)
    assert (state.in_progress, state.pending) == (None, (1, 0))
    assert state.advance_tokens() == (1, 1)
    assert state.add(1).in_progress == 1  # the reordered list decides who advances


def test_completed_state_ignores_tokens_and_from_tokens_stops() -> None:
    constraints = (Phrase((1,)), AnyOf(((2, 3), (4,))))
    state = ConstraintState.from_tokens(constraints, (2, 1, 4, 1, 2, 7))  # 1 breaks [2, 3], not retried
    assert state.completed
    assert state.add(2) is state
    assert state.advance_tokens() == ()
    assert state == ConstraintState.from_tokens(constraints, (2, 1, 4, 1))
    assert state.complete == (1, 0)
    assert state.complete_tokens == ((4,), (1,))


def test_bank_counts_longest_option() -> None:
    constraints = (AnyOf(((1,), (2, 3, 4))), Phrase((5, 6)))
    state = ConstraintState.from_tokens(constraints, (2,))
    assert state.max_seqlen == 3
    assert state.bank == 3 - (3 - 1)
    state = state.add(9).add(5)  # AnyOf reset; phrase in progress: 3 - (2 - 1)
    assert (state.bank, state.pending) == (2, (0,))
    assert state.add(6).add(1).bank == 6


def test_states_are_immutable_values() -> None:
    start = ConstraintState.initial((Phrase([4, 5]),))  # type: ignore[arg-type]
    after = start.add(4)
    assert start.pending == (0,)
    assert after.matched == (4,)
    assert start.constraints[0].options == ((4, 5),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.matched = ()  # type: ignore[misc]
    assert hash(after) == hash(ConstraintState.from_tokens(start.constraints, (4,)))


def test_progress_is_plain_values() -> None:
    constraints = (Phrase((1, 2), text="a b"), AnyOf(((3,), (4, 5, 6))), Phrase((7,)))
    progress = ConstraintState.from_tokens(constraints, (7, 4, 5)).progress()
    assert progress == {
        "constraints": [
            {"status": "pending", "matched": 0, "matched_tokens": [], "length": 2},
            {"status": "in_progress", "matched": 2, "matched_tokens": [4, 5], "length": 3},
            {"status": "complete", "matched": 1, "matched_tokens": [7], "length": 1},
        ],
        "pending_order": [0],
        "bank": 3 + 3 - 1,
        "completed": False,
    }
    assert json.loads(json.dumps(progress)) == progress


def test_is_satisfied_by() -> None:
    constraints = (Phrase((1, 2)), AnyOf(((3, 4), (5,))))
    assert is_satisfied_by(constraints, (0, 5, 1, 2))
    assert not is_satisfied_by(constraints, (1, 3, 2, 4))
    assert not is_satisfied_by(constraints, (1, 2, 3))


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: Phrase(()), "token_ids"),
        (lambda: Phrase((1, -2)), "token_ids"),
        (lambda: Phrase((1, True)), "token_ids"),
        (lambda: Phrase(3), "token_ids"),  # type: ignore[arg-type]
        (lambda: AnyOf(()), "options"),
        (lambda: AnyOf(((1,), ())), "options"),
        (lambda: AnyOf(((1,), (-1, 2))), "options"),
        (lambda: AnyOf(((1, 2), (1, 2))), "options"),
        (lambda: AnyOf(((1,), (1, 2))), "options"),
        (lambda: AnyOf((1, 2)), "options"),  # type: ignore[arg-type]
        (lambda: AnyOf(((1,), (2,)), texts=("a",)), "texts"),
        (lambda: ConstraintState.initial(()), "constraints"),
        (lambda: ConstraintState.initial(((1, 2),)), "constraints"),  # type: ignore[arg-type]
    ],
)
def test_validation_errors(make: Any, name: str) -> None:
    with pytest.raises(ParameterError) as info:
        make()
    assert info.value.name == name
