"""Agreement with the reference: transformers 4.56.2's generate(), replayed from fixtures it produced.

The fixtures are made by ``tests/reference/make_fixtures.py`` in its own virtualenv (``make fixtures``); here the
engine decodes the same prompt ids with the same parameters and must return the same token ids, best first, with
``sequences_scores`` equal within 1e-4 or 1e-5 of their size, whichever is larger.

Why relative: the fixtures were made on one CPU and the suite runs on others. The same float32 weights give logits
that differ in the last bits from one CPU's matrix kernels to another's (measured: 1.2e-6 relative on SmolLM2, between
an AVX-512 machine and an AMX one), and a sequence score sums them over every step, scaled by its length when
``length_penalty`` is negative: -329.0257 against -329.0254 (1.0e-6 relative) for 30 tiny-random tokens. Token ids
must still be identical, and against the installed transformers on the same machine scores agree bit for bit
(tests/test_transformers_live.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import explorer
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.strategies import REGISTRY

FIXTURES = Path(__file__).parent / "reference" / "fixtures"
SCORE_REL = 1e-5  # 10x the largest cross-CPU difference measured (see the module docstring)


def _documents() -> list[dict[str, Any]]:
    """The 4.56.2 fixtures (``inside-*.json``, DoLa and contrastive search from 4.55.4: test_inside_reference.py)."""
    return [json.loads(path.read_text()) for path in sorted(FIXTURES.glob("*.json"))
            if not path.name.startswith("inside-")]


def _cases() -> list[Any]:
    out = []
    for doc in _documents():
        for case in doc["cases"]:
            marks = [pytest.mark.reference]
            if case["model"] != "tiny-random":
                marks.append(pytest.mark.slow)
            out.append(pytest.param(case, id=case["id"], marks=marks))
    return out


def _model(request: pytest.FixtureRequest, name: str) -> CausalLM:
    return request.getfixturevalue({"tiny-random": "tiny", "smollm2-135m": "smollm2"}[name])  # type: ignore[no-any-return]


def _constraints(case: dict[str, Any]) -> list[Any]:
    return [c["token_ids"] if c["kind"] == "phrase" else c["options"] for c in case["constraints"]]


def test_there_are_enough_cases() -> None:
    cases = [c for doc in _documents() for c in doc["cases"]]
    assert len(cases) >= 20
    # every registered strategy that does not draw at random (sampling is checked live: test_transformers_live.py)
    # and runs in the shared loop (assisted decoding, with its own driver, is native only in transformers 5.x and
    # checked live against it: test_assisted_reference.py; DoLa and contrastive search, native only until 4.55.4, are
    # test_inside_reference.py's)
    fixed = {name for name, spec in REGISTRY.items() if not spec.sampling and spec.driver is None}
    assert {c["strategy"] for c in cases} == fixed
    assert {c["model"] for c in cases} == {"tiny-random", "smollm2-135m"}


@pytest.mark.parametrize("case", _cases())
def test_same_tokens_and_scores_as_the_reference(case: dict[str, Any], request: pytest.FixtureRequest) -> None:
    model = _model(request, case["model"])
    if case["prompt"] is not None:
        assert explorer.tokenize_prompt(model, case["prompt"], chat=case["chat"]) == tuple(case["prompt_token_ids"])
    trace = explorer.decode(model, case["prompt_token_ids"], case["strategy"], constraints=_constraints(case),
                            **case["params"])
    expected = case["expected"]
    assert [list(r.token_ids) for r in trace.results] == [e["token_ids"] for e in expected]
    for result, want in zip(trace.results, expected, strict=True):
        if want["score"] is not None:
            assert result.score == pytest.approx(want["score"], rel=SCORE_REL, abs=1e-4)
        if case["strategy"] == "constrained":
            assert result.constraints_satisfied == want["constraints_satisfied"]
    assert check_trace(trace) == []


def test_tiny_random_has_the_reference_weights(tiny: CausalLM) -> None:
    """The seeded tiny model here gives the logits the reference's copy gave (same weights across versions)."""
    probe = next(d for d in _documents() if d["model"] == "tiny-random")["model_fingerprint"]["probe"]
    logits, _ = tiny.start(probe["prompt_token_ids"])
    top = torch.topk(logits[0], 5)
    assert top.indices.tolist() == probe["last_logits_top5_ids"]
    assert top.values.tolist() == pytest.approx(probe["last_logits_top5_values"], abs=1e-5)
    assert logits[0, :8].tolist() == pytest.approx(probe["last_logits_first8"], abs=1e-5)
