"""Write tests/fixtures/constraint_cases.json from transformers 4.56.2's constraint classes.

Run with the reference venv (it must not import `explorer`):

    /work/refvenv/bin/python tests/reference/make_constraint_cases.py

Each tracking case holds constraints ``c`` (``["p", ids]`` or ``["d", options]``), tokens ``t``,
the reference state after each prefix of ``t`` in ``s`` (index 0 = no token) as
``[completed, bank, advance, [[index, matched], ...complete], in_progress (-1 none), matched, pending]``,
and in ``a``, per prefix, what `step_sentence_constraint` banks for each advance token:
``[token, aliased bank, bank of a fresh state reset on prefix + token]``.
Validation cases ``v`` hold AnyOf option lists and whether the reference rejects them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from transformers.generation.beam_constraints import (
    ConstraintListState,
    DisjunctiveConstraint,
    PhrasalConstraint,
)

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "constraint_cases.json"
SEED = 20250922
N_CASES = 320
N_VALIDATION = 60
ALPHABET = 6  # tokens 0..5: constraints draw from 1..4, so 0 and 5 are mostly noise


def build(spec):
    kind, ids = spec
    if kind == "p":
        return PhrasalConstraint(list(ids))
    return DisjunctiveConstraint([list(option) for option in ids])


def fresh_state(constraints):
    # as `ConstrainedBeamSearchScorer.make_constraint_states`
    return ConstraintListState([c.copy() for c in constraints])


def describe(state, index_of):
    def matched(c):
        if isinstance(c, PhrasalConstraint):
            return list(c.token_ids[: c.fulfilled_idx + 1])
        return list(c.current_seq)

    inprog = state.inprogress_constraint
    return [
        int(state.completed),
        state.get_bank(),
        state.advance() or [],
        [[index_of[id(c.token_ids)], matched(c)] for c in state.complete_constraints],
        -1 if inprog is None else index_of[id(inprog.token_ids)],
        [] if inprog is None else matched(inprog),
        [index_of[id(c.token_ids)] for c in state.pending_constraints],
    ]


def candidates(constraints, prefix):
    # the advance half of `ConstrainedBeamSearchScorer.step_sentence_constraint`, for one beam
    advance_state = fresh_state(constraints)
    advance_state.reset(prefix)
    if advance_state.completed:
        return []
    tokens, states = [], []
    for token in advance_state.advance():
        new_state = advance_state.copy(stateful=True)
        new_state.add(token)
        tokens.append(token)
        states.append(new_state)
    banks = [one.get_bank() for one in states]  # after the loop, as in the reference
    honest = []
    for token in tokens:
        state = fresh_state(constraints)
        state.reset([*prefix, token])
        honest.append(state.get_bank())
    return [list(row) for row in zip(tokens, banks, honest, strict=True)]


def random_phrase(rng):
    return ["p", [rng.randint(1, 4) for _ in range(rng.randint(1, 3))]]


def random_options(rng):
    options = [[rng.randint(1, 4) for _ in range(rng.randint(1, 3))]]
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.75:  # share a prefix with an earlier option
            base = rng.choice(options)
            option = base[: rng.randint(0, len(base))]
        else:
            option = []
        option = option + [rng.randint(1, 4) for _ in range(rng.randint(1, 3))]
        options.append(option)
    return options


def random_constraints(rng, rejected):
    while True:
        specs = [
            random_phrase(rng) if rng.random() < 0.45 else ["d", random_options(rng)]
            for _ in range(rng.choice([1, 1, 2, 2, 3]))
        ]
        try:
            built = [build(spec) for spec in specs]
        except ValueError:
            rejected.extend(spec[1] for spec in specs if spec[0] == "d")
            continue
        return specs, built


def run_case(specs, constraints, tokens):
    index_of = {id(c.token_ids): i for i, c in enumerate(constraints)}
    state = fresh_state(constraints)
    steps = [describe(state, index_of)]
    for k, token in enumerate(tokens):
        state.add(token)
        row = describe(state, index_of)
        check = fresh_state(constraints)  # `reset` agrees with token-by-token `add`
        check.reset(tokens[: k + 1])
        assert describe(check, index_of) == row, (specs, tokens[: k + 1])
        steps.append(row)
    banks = [candidates(constraints, tokens[:k]) for k in range(len(tokens) + 1)]
    return {"c": specs, "t": tokens, "s": steps, "a": banks}


def random_tokens(rng, constraints):
    state = fresh_state(constraints)
    tokens = []
    for _ in range(rng.randint(6, 14)):
        advance = state.advance()
        token = rng.choice(advance) if advance and rng.random() < 0.55 else rng.randrange(ALPHABET)
        tokens.append(token)
        state.add(token)
    return tokens


HAND_PICKED = [
    ([["d", [[5, 6, 7], [5, 7]]]], [5, 6, 7, 1]),  # aliasing: the sibling copy completes [5, 6, 7]
    ([["d", [[5, 6], [5, 7]]]], [5, 7, 2]),  # aliasing: the sibling copy resets
    ([["p", [4, 4, 5]]], [4, 4, 4, 5, 4, 4, 5]),  # the breaking token is not retried
    ([["p", [1, 2]], ["p", [1, 2]]], [1, 3, 1, 2, 1, 2, 9]),  # equal constraints, pending order
    ([["p", [1, 2]], ["d", [[1, 3], [2]]], ["p", [3]]], [1, 4, 1, 3, 3, 2, 1, 2]),
]


def main() -> None:
    rng = random.Random(SEED)
    cases, rejected = [], []
    for specs, tokens in HAND_PICKED:
        cases.append(run_case(specs, [build(s) for s in specs], tokens))
    while len(cases) < N_CASES:
        specs, constraints = random_constraints(rng, rejected)
        cases.append(run_case(specs, constraints, random_tokens(rng, constraints)))
    validation = []
    pool = rejected[:N_VALIDATION] + [random_options(rng) for _ in range(N_VALIDATION)]
    pool += [[[1, 2], [1, 2]], [[1], [1, 2]], [[1, 2], [1]], [[1, 2, 3], [1, 2], [4]], [[3], [4]]]
    for options in pool:
        try:
            DisjunctiveConstraint(options)
            validation.append([options, 0])
        except ValueError:
            validation.append([options, 1])
    lines = [json.dumps(case, separators=(",", ":")) for case in cases]
    lines += [json.dumps({"v": validation}, separators=(",", ":"))]
    OUT.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    aliased = sum(row[1] != row[2] for case in cases for rows in case["a"] for row in rows)
    print(f"wrote {len(cases)} cases, {len(validation)} validation cases, {aliased} aliased banks -> {OUT}")


if __name__ == "__main__":
    main()
