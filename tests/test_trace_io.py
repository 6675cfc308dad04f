"""Trace JSON: exact round trips for every strategy, the schema, untrusted input, and atomic saving."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import pytest

import explorer
from explorer import trace_codec, trace_io, trace_validate
from explorer.errors import TraceFormatError
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.trace import (
    Candidate,
    ConstraintProgress,
    ContrastCandidate,
    Contrastive,
    DolaCandidate,
    Drafted,
    Finished,
    Hypothesis,
    LayerContrast,
    Result,
    Speculation,
    Step,
    Trace,
)
from explorer.trace_io import dump_trace, load_trace, trace_from_dict, trace_to_dict, validate_document

PROMPT = [5, 6, 7, 8]

#: One run per strategy, plus variants that record -inf (masked candidates) and constraint progress.
RUNS: dict[str, dict[str, Any]] = {
    "greedy": {"strategy": "greedy", "max_new_tokens": 8},
    "sample": {"strategy": "sample", "seed": 3, "top_k": 3, "num_return_sequences": 2, "max_new_tokens": 6},
    "beam": {"strategy": "beam", "num_beams": 4, "max_new_tokens": 10},
    "beam-sample": {"strategy": "beam-sample", "num_beams": 3, "seed": 1, "max_new_tokens": 8},
    "diverse": {"strategy": "diverse", "num_beams": 4, "num_beam_groups": 2, "max_new_tokens": 8},
    "constrained": {"strategy": "constrained", "constraints": [[400, 401]], "max_new_tokens": 8},
    "constrained-any": {"strategy": "constrained", "constraints": [[[500, 501], [9]]], "max_new_tokens": 8},
    "processors": {"strategy": "beam", "max_new_tokens": 6, "min_new_tokens": 3, "no_repeat_ngram_size": 1,
                   "repetition_penalty": 1.3, "record_top_k": 20},
    "dola": {"strategy": "dola", "dola_layers": "low", "repetition_penalty": 1.2, "max_new_tokens": 6},
    "contrastive": {"strategy": "contrastive", "penalty_alpha": 0.6, "top_k": 3, "max_new_tokens": 6},
}


@pytest.fixture(scope="module")
def traces(tiny: CausalLM) -> dict[str, Trace]:
    """Real traces of every run above (the constrained-any one from a text prompt)."""
    out = {name: explorer.decode(tiny, PROMPT, **kw) for name, kw in RUNS.items() if name != "constrained-any"}
    out["constrained-any"] = explorer.decode(tiny, "Hello there", **RUNS["constrained-any"])
    return out


@pytest.fixture
def beam_doc(traces: dict[str, Trace]) -> dict[str, Any]:
    """A fresh, valid document to mutate."""
    return trace_to_dict(traces["beam"])


def _floats(trace: Trace) -> list[float]:
    """Every float of a trace's records, in order."""
    out: list[float] = [trace.total_ms]
    for step in trace.steps:
        out += [step.forward_ms, step.search_ms]
        for hyp in step.hypotheses:
            out.append(hyp.score)
            for c in hyp.candidates:
                out += [c.logprob, c.score, c.total, *(v for _, v in c.adjustments)]
        for fin in step.finished:
            out += [fin.score, fin.normalized_score]
    return out + [r.score for r in trace.results]


def _tiny_trace(**floats: float) -> Trace:
    """A hand-made one-step trace whose candidate carries the given floats."""
    cand = Candidate(7, "x", floats.get("logprob", -1.0), floats.get("score", -1.0), floats.get("total", -1.0), 0,
                     (("p", floats.get("adj", 0.0)),), "kept", "best", 1)
    hyp = Hypothesis(0, None, 0, 0, (), 0.0, (cand,))
    return Trace("m", "greedy", None, (1,), {}, (), ("p",), (2,), (Step(0, (hyp,)),), (), "eos", 1.0)


# --- round trips ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RUNS))
def test_round_trip_every_strategy(traces: dict[str, Trace], name: str, tmp_path: Path) -> None:
    trace = traces[name]
    assert trace_from_dict(trace_to_dict(trace)) == trace
    text = dump_trace(trace)
    assert load_trace(text) == trace
    assert load_trace(dump_trace(trace, indent=2)) == trace
    dump_trace(trace, tmp_path / "t.json")
    assert load_trace(tmp_path / "t.json") == trace
    assert load_trace(str(tmp_path / "t.json")) == trace
    assert Trace.from_json(trace.to_json()) == trace


@pytest.mark.parametrize("name", list(RUNS))
def test_floats_are_bit_exact(traces: dict[str, Trace], name: str) -> None:
    before, after = _floats(traces[name]), _floats(load_trace(dump_trace(traces[name])))
    assert [x.hex() for x in before] == [x.hex() for x in after]


def test_document_is_strict_json(traces: dict[str, Trace]) -> None:
    text = dump_trace(traces["sample"])
    assert "Infinity" not in text
    assert "NaN" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard constant {name}"))


def test_minus_inf_survives(traces: dict[str, Trace]) -> None:
    trace = traces["sample"]
    masked = [c for s in trace.steps for h in s.hypotheses for c in h.candidates if c.fate == "masked"]
    assert masked, "top_k=3 should mask recorded candidates"
    assert '"-inf"' in dump_trace(trace)
    back = [c for s in load_trace(dump_trace(trace)).steps for h in s.hypotheses for c in h.candidates
            if c.fate == "masked"]
    assert back == masked
    assert all(c.score == -math.inf and dict(c.adjustments)["top_k"] == -math.inf for c in back)


def test_special_floats_round_trip() -> None:
    trace = _tiny_trace(logprob=5e-324, score=0.1 + 0.2, total=-0.0, adj=math.inf)
    back = load_trace(dump_trace(trace))
    assert back == trace
    cand = back.steps[0].hypotheses[0].candidates[0]
    assert math.copysign(1.0, cand.total) == -1.0
    assert cand.logprob == 5e-324
    assert cand.adjustments[0][1] == math.inf


def test_nan_is_still_encoded() -> None:
    trace = _tiny_trace(score=math.nan)
    text = dump_trace(trace)
    assert '"score":"nan"' in text
    assert math.isnan(load_trace(text).steps[0].hypotheses[0].candidates[0].score)


def test_document_shape(traces: dict[str, Trace]) -> None:
    doc = trace_to_dict(traces["constrained"])
    cand = doc["steps"][0]["hypotheses"][0]["candidates"][0]
    assert isinstance(cand["adjustments"], list)
    assert doc["steps"][0]["hypotheses"][0]["constraint"]["status"] == ["pending"]
    assert doc["version"] == explorer.trace.FORMAT_VERSION == "1.5"
    assert "speculation" not in doc["steps"][0]  # only assisted decoding writes it (format 1.1 readers read the rest)
    assert next(iter(doc)) == "version"
    proc = trace_to_dict(traces["processors"])["steps"][1]["hypotheses"][0]["candidates"][0]["adjustments"]
    assert [name for name, _ in proc] == list(traces["processors"].processors)


def test_tuples_in_free_form_fields_become_lists() -> None:
    trace = dataclasses.replace(_tiny_trace(), meta={"pair": (1, 2)})
    assert trace_to_dict(trace)["meta"] == {"pair": [1, 2]}
    assert load_trace(dump_trace(trace)).meta == {"pair": [1, 2]}


# --- the schema -----------------------------------------------------------------------------------------------

RECORDS = {"candidate": Candidate, "constraint_progress": ConstraintProgress, "hypothesis": Hypothesis,
           "finished": Finished, "step": Step, "result": Result, "speculation": Speculation, "drafted": Drafted,
           "dola": LayerContrast, "dola_candidate": DolaCandidate, "contrastive": Contrastive,
           "contrast_candidate": ContrastCandidate}
#: Fields a document may leave out (added in a later minor version, written only where they apply).
OPTIONAL = {"step": {"speculation", "dola", "contrastive"}, "hypothesis": {"entropy"}, "candidate": {"raw_rank"}}


def test_schema_is_valid_draft_07() -> None:
    """Draft-07, the newest draft fastjsonschema compiles (explorer/trace_validate.py says why it checks)."""
    schema = trace_io.trace_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize("name", list(RECORDS))
def test_schema_records_match_the_dataclasses(name: str) -> None:
    record = trace_io.trace_schema()["definitions"][name]
    fields = [f.name for f in dataclasses.fields(RECORDS[name])]
    assert list(record["properties"]) == fields
    assert sorted(record["required"]) == sorted(set(fields) - OPTIONAL.get(name, set()))
    assert record["additionalProperties"] is False
    assert record["title"]
    assert record["description"]


def test_schema_top_level_matches_trace() -> None:
    schema = trace_io.trace_schema()
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(Trace)}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("name", list(RUNS))
def test_schema_accepts_real_traces(traces: dict[str, Trace], name: str) -> None:
    doc = json.loads(dump_trace(traces[name]))
    jsonschema.Draft7Validator(trace_io.trace_schema()).validate(doc)
    validate_document(doc)


def _problem(doc: Any) -> str:
    """The one-line message load_trace gives for a document."""
    with pytest.raises(TraceFormatError) as info:
        load_trace(json.dumps(doc))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_wrong_fate(beam_doc: dict[str, Any]) -> None:
    beam_doc["steps"][3]["hypotheses"][0]["candidates"][2]["fate"] = "kep"
    assert _problem(beam_doc) == ("invalid trace at steps/3/hypotheses/0/candidates/2/fate: "
                                  "'kep' is not one of ['kept', 'pruned', 'finished', 'masked']")


def test_missing_field(beam_doc: dict[str, Any]) -> None:
    del beam_doc["steps"][1]["hypotheses"][2]["score"]
    assert _problem(beam_doc) == "invalid trace at steps/1/hypotheses/2: 'score' is a required property"


def test_extra_field(beam_doc: dict[str, Any]) -> None:
    beam_doc["results"][0]["bonus"] = 1
    assert _problem(beam_doc).startswith("invalid trace at results/0: Additional properties are not allowed "
                                         "('bonus' was unexpected)")


def test_string_where_a_number_is_expected(beam_doc: dict[str, Any]) -> None:
    beam_doc["steps"][2]["hypotheses"][1]["candidates"][0]["logprob"] = "abc"
    assert _problem(beam_doc) == ("invalid trace at steps/2/hypotheses/1/candidates/0/logprob: "
                                  "'abc' is not a number or one of '-inf', 'inf', 'nan'")
    beam_doc["steps"][2]["hypotheses"][1]["candidates"][0]["logprob"] = -1.0
    beam_doc["steps"][0]["hypotheses"][0]["candidates"][0]["token_id"] = "7"
    assert _problem(beam_doc) == ("invalid trace at steps/0/hypotheses/0/candidates/0/token_id: "
                                  "'7' is not of type 'integer'")


def test_wrong_status_and_reason(traces: dict[str, Trace], beam_doc: dict[str, Any]) -> None:
    doc = trace_to_dict(traces["constrained"])
    doc["steps"][1]["hypotheses"][0]["constraint"]["status"][0] = "done"
    assert _problem(doc).startswith("invalid trace at steps/1/hypotheses/0/constraint/status/0: 'done' is not one")
    fin_step = next(i for i, s in enumerate(beam_doc["steps"]) if s["finished"])
    beam_doc["steps"][fin_step]["finished"][0]["reason"] = "tired"
    assert f"steps/{fin_step}/finished/0/reason: 'tired' is not one of" in _problem(beam_doc)


def test_bad_constraint(traces: dict[str, Trace]) -> None:
    doc = trace_to_dict(traces["constrained"])
    doc["constraints"][0]["options"] = [[1]]
    assert _problem(doc) == ("invalid trace at constraints/0: Additional properties are not allowed "
                             "('options' was unexpected)")


@pytest.mark.parametrize(("version", "message"), [
    ("2.0", "trace format version 2.0 is not supported: expected 1.x"),
    ("0.9", "trace format version 0.9 is not supported: expected 1.x"),
    ("abc", "trace format version abc is not supported: expected 1.x"),
    (1.0, "trace format version 1.0 is not supported: expected 1.x"),
])
def test_wrong_version(beam_doc: dict[str, Any], version: object, message: str) -> None:
    beam_doc["version"] = version
    beam_doc["steps"] = "checked after the version"
    assert _problem(beam_doc) == message


def test_newer_minor_version_is_read(beam_doc: dict[str, Any]) -> None:
    beam_doc["version"] = "1.7"
    assert load_trace(json.dumps(beam_doc)).version == "1.7"


def test_missing_version_and_not_an_object(beam_doc: dict[str, Any]) -> None:
    del beam_doc["version"]
    assert _problem(beam_doc) == "trace has no format version: expected 1.x"
    with pytest.raises(TraceFormatError, match="must be a JSON object, not an array"):
        trace_from_dict([])  # type: ignore[arg-type]


def test_invalid_json() -> None:
    with pytest.raises(TraceFormatError) as info:
        load_trace('{"version": "1.0",\n  "model": }')
    assert str(info.value) == "trace is not valid JSON: Expecting value at line 2, column 12"


def test_non_standard_constants_are_refused(beam_doc: dict[str, Any]) -> None:
    text = dump_trace(load_trace(json.dumps(beam_doc))).replace('"total_ms":', '"total_ms":NaN,"x":', 1)
    with pytest.raises(TraceFormatError, match="NaN is not a JSON value"):
        load_trace(text)


def test_deep_nesting_is_one_error() -> None:
    with pytest.raises(TraceFormatError, match="nested too deeply"):
        load_trace('{"a":' + "[" * 100_000)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError) as info:
        load_trace(tmp_path / "nope.json")
    assert str(info.value) == f"trace file {tmp_path / 'nope.json'} does not exist"


def test_directory_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="cannot read trace file"):
        load_trace(tmp_path)
    (tmp_path / "bin.json").write_bytes(b'{"version": "1.0", "model": "\xff"}')
    with pytest.raises(TraceFormatError, match="is not UTF-8 text"):
        load_trace(tmp_path / "bin.json")


def test_size_cap(traces: dict[str, Trace], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.json"
    text = dump_trace(traces["greedy"], path)
    monkeypatch.setattr(trace_io, "MAX_TRACE_BYTES", 1000)
    size = path.stat().st_size
    with pytest.raises(TraceFormatError) as info:
        load_trace(path)
    assert str(info.value) == (f"trace file {path} is {size} bytes, over the 1000 bytes limit "
                               "(explorer.trace_io.MAX_TRACE_BYTES)")
    with pytest.raises(TraceFormatError, match=r"^trace text is \d+ bytes, over the 1000 bytes limit"):
        load_trace(text)


def test_size_message_in_mib() -> None:
    with pytest.raises(TraceFormatError, match=r"is 70\.0 MiB \(73400320 bytes\), over the 64\.0 MiB"):
        trace_io._check_size(70 * 1024 * 1024, "trace file x")


def test_text_versus_path(traces: dict[str, Trace], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = dump_trace(traces["greedy"])
    assert load_trace("  \n" + text) == traces["greedy"]
    monkeypatch.chdir(tmp_path)
    Path("relative.json").write_text(text)
    assert load_trace("relative.json") == traces["greedy"]


# --- fastjsonschema agrees with jsonschema ----------------------------------------------------------------------

_WRONG: list[Any] = [None, "x", "inf", -1, 1.5, 2.0, True, [], {}, [1, "a"], "kept", "eos"]


def _mutate(doc: Any, rng: random.Random) -> None:
    """Replace, delete or add one value at a random place of the document."""
    node: Any = doc
    parent: Any = None
    key: Any = None
    while isinstance(node, dict | list) and node and rng.random() < 0.85:
        parent, key = node, rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
        node = node[key]
    target = parent if parent is not None and rng.random() < 0.9 else doc
    action = rng.random()
    if isinstance(target, dict) and action < 0.15:
        target.pop(key if target is parent else rng.choice(list(target)), None)
    elif isinstance(target, dict) and action < 0.25:
        target["extra"] = 1
    elif target is parent:
        parent[key] = copy.deepcopy(rng.choice(_WRONG))


def test_fast_check_agrees_with_jsonschema(traces: dict[str, Trace]) -> None:
    """fastjsonschema says yes or no for every document; jsonschema, which explains a no, must say the same."""
    reference = jsonschema.Draft7Validator(trace_io.trace_schema())
    compiled = trace_validate._fast_check()

    def fast(doc: Any) -> bool:
        try:
            compiled(doc)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    rng = random.Random(1234)
    small = {name: trace_to_dict(traces[name]) for name in ("greedy", "constrained", "constrained-any", "sample")}
    rejected = 0
    for i in range(600):
        doc = copy.deepcopy(small[list(small)[i % len(small)]])
        for _ in range(rng.choice((1, 1, 2))):
            _mutate(doc, rng)
        expected = reference.is_valid(doc)
        assert fast(doc) == expected, f"mutation {i} disagrees"
        rejected += not expected
    assert rejected > 400


# --- atomic saving --------------------------------------------------------------------------------------------


def test_save_writes_the_returned_text(traces: dict[str, Trace], tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    text = traces["beam"].to_json(str(path), indent=1)
    assert path.read_text() == text + "\n"
    assert os.listdir(tmp_path) == ["t.json"]


def test_failed_write_keeps_the_old_file(traces: dict[str, Trace], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.json"
    path.write_text("old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        dump_trace(traces["beam"], path)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["t.json"]


def test_failed_serialization_keeps_the_old_file(traces: dict[str, Trace], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.json"
    path.write_text("old")
    real = trace_codec._step_out
    calls = []

    def failing_step(step: Step) -> dict[str, Any]:
        calls.append(step.index)
        if len(calls) > 2:
            raise RuntimeError("boom midway")
        return real(step)

    monkeypatch.setattr(trace_codec, "_step_out", failing_step)
    with pytest.raises(RuntimeError, match="boom midway"):
        dump_trace(traces["beam"], path)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["t.json"]


def test_interrupted_write_keeps_the_old_file(traces: dict[str, Trace], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.json"
    path.write_text("old")

    def interrupted_replace(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        dump_trace(traces["beam"], path)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["t.json"]


def test_saved_file_follows_the_umask(traces: dict[str, Trace], tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        dump_trace(traces["greedy"], tmp_path / "t.json")
    finally:
        os.umask(mask)
    assert (tmp_path / "t.json").stat().st_mode & 0o777 == 0o644


# --- older versions -------------------------------------------------------------------------------------------


def test_a_committed_version_1_0_trace_still_loads(tiny: CausalLM) -> None:
    """tests/data/trace-v1.0.json was written by the explorer of format 1.0 (constrained search on tiny-random): 1.1
    only added finished reasons, so it loads, keeps its version, checks out and re-decodes to the same result; 1.4
    added each hypothesis's entropy, which the old file lacks (``None``) and the new run records; 1.5 records the
    model's own top-k too, and each candidate's raw rank: the old candidates are among the new ones, in the same
    order, and the others are of the model's top-k. Scores are compared to within float32 rounding: another CPU
    sums tiny-random's matrix products in another order (an AVX-512 machine's differ by up to 1e-5)."""
    old = load_trace(Path(__file__).parent / "data" / "trace-v1.0.json")
    assert old.version == "1.0"
    assert check_trace(old) == []
    assert all(h.entropy is None for s in old.steps for h in s.hypotheses)
    again = explorer.decode(tiny, "The cake needs", "constrained", constraints=[" flour"], num_beams=2,
                            max_new_tokens=3, repetition_penalty=1.3, record_top_k=3)
    assert [r.token_ids for r in again.results] == [r.token_ids for r in old.results]
    assert all(h.entropy is not None and h.entropy >= 0 for s in again.steps for h in s.hypotheses)
    for new_step, old_step in zip(again.steps, old.steps, strict=True):
        for new, was in zip(new_step.hypotheses, old_step.hypotheses, strict=True):
            plain = [dataclasses.replace(c, raw_rank=None) for c in new.candidates]
            known = [any(_close(p, w) for w in was.candidates) for p in plain]
            olds = [p for p, k in zip(plain, known, strict=True) if k]
            assert len(olds) == len(was.candidates), (olds, was.candidates)
            assert all(_close(a, b) for a, b in zip(olds, was.candidates, strict=True))
            assert all(c.raw_rank is not None and c.raw_rank < 3 for c, k in zip(new.candidates, known, strict=True)
                       if not k)
            rest = dataclasses.replace(new, candidates=(), entropy=None)
            assert _close(rest, dataclasses.replace(was, candidates=()))


def _close(a: Any, b: Any) -> bool:
    """Equal, floats to within float32 rounding (dataclasses field by field, sequences item by item)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5)
    if dataclasses.is_dataclass(a) and not isinstance(a, type) and type(a) is type(b):
        return all(_close(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_close_tells_float32_rounding_from_a_change() -> None:
    assert _close((1.0, "a", [2.0]), (1.0 + 1e-6, "a", [2.0 - 1e-6]))
    assert not _close((1.0, "a"), (1.001, "a"))
    assert not _close((1.0, "a"), (1.0, "b"))
    assert not _close([1.0], [1.0, 2.0])


def test_new_finished_reasons_need_format_1_1(beam_doc: dict[str, Any]) -> None:
    """A stop string or the time limit may end an entry from 1.1 on; the schema accepts them in any 1.x document
    (a 1.0 reader, whose enum lacks them, says what it does not know)."""
    entry = next(f for s in beam_doc["steps"] for f in s["finished"])
    entry["reason"] = "stop_string"
    validate_document(beam_doc)
    entry["reason"] = "max_time"
    validate_document(beam_doc)
