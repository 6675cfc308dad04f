"""bfloat16 and float16: a cast copy of the float32 model that decodes every strategy, records float32 numbers,
names its precision, leaves the float32 model alone, equals transformers' own loading in that dtype, and refuses
bad dtypes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

import explorer
from explorer.cli import main
from explorer.invariants import check_trace
from explorer.models import tiny as tiny_module
from explorer.models.base import CausalLM
from explorer.models.hf import HFCausalLM, cast_copy, quiet_progress_bars
from explorer.models.precision import DTYPES, MEASURED, check_dtype, precision_note, torch_dtype

PROMPT = [5, 6, 7, 8, 9]
LOW = ["bfloat16", "float16"]
RUNS: list[tuple[str, dict[str, Any]]] = [
    ("greedy", {}),
    ("greedy", {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "min_new_tokens": 4}),
    ("sample", {"seed": 3, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "num_return_sequences": 3}),
    ("beam", {"num_beams": 4, "num_return_sequences": 3}),
    ("beam-sample", {"num_beams": 3, "seed": 5, "temperature": 1.2}),
    ("diverse", {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 0.7, "num_return_sequences": 4}),
    ("constrained", {"num_beams": 4, "constraints": [[400, 401], [[500, 501], [77]]]}),
]


@pytest.fixture(scope="module")
def bf16() -> CausalLM:
    """tiny-random in bfloat16, through the registry."""
    return explorer.load_model("tiny-random", dtype="bfloat16")


@pytest.fixture(scope="module", params=LOW)
def low(request: pytest.FixtureRequest) -> CausalLM:
    """tiny-random in each lower precision, through the registry."""
    return explorer.load_model("tiny-random", dtype=request.param)


def _weights(model: CausalLM) -> torch.nn.Module:
    assert isinstance(model, HFCausalLM)
    return model.hf


@pytest.mark.parametrize(("strategy", "params"), RUNS)
def test_every_strategy_decodes_in_lower_precision(low: CausalLM, strategy: str, params: dict[str, Any]) -> None:
    dtype = low.info.dtype
    trace = explorer.decode(low, PROMPT, strategy, max_new_tokens=12, **params)
    assert check_trace(trace) == []
    assert trace.results
    assert trace.model == f"tiny-random ({dtype})"
    assert trace.meta["dtype"] == dtype
    numbers = [c.logprob for s in trace.steps for h in s.hypotheses for c in h.candidates]
    assert numbers
    assert all(type(x) is float for x in numbers)
    again = explorer.Trace.from_json(trace.to_json())
    assert again.meta["dtype"] == dtype
    assert again.model == trace.model


def test_compare_in_bfloat16_keeps_the_dtype(bf16: CausalLM) -> None:
    traces = explorer.compare(bf16, PROMPT, {"greedy": {"strategy": "greedy", "max_new_tokens": 5},
                                             "beam": {"strategy": "beam", "num_beams": 3, "max_new_tokens": 5}})
    for trace in traces.values():
        assert check_trace(trace) == []
        assert trace.meta["dtype"] == "bfloat16"
        assert trace.meta["batched_with"] == ["beam", "greedy"]


def test_the_bfloat16_model_is_a_cached_separate_object(tiny: CausalLM, bf16: CausalLM) -> None:
    assert explorer.load_model("tiny-random", dtype="bfloat16") is bf16
    assert explorer.load_model("tiny-random", "float32") is tiny
    assert bf16 is not tiny
    assert bf16.info.dtype == "bfloat16"
    assert bf16.info.name == "tiny-random (bfloat16)"
    assert bf16.info.vocab_size == tiny.info.vocab_size
    assert bf16.info.eos_token_ids == tiny.info.eos_token_ids
    assert bf16.tokenizer is tiny.tokenizer
    assert {p.dtype for p in _weights(bf16).parameters()} == {torch.bfloat16}
    assert {b.dtype for b in _weights(bf16).buffers()} == {torch.float32}  # rotary frequencies, as transformers
    hf = _weights(bf16)
    assert hf.lm_head.weight is hf.model.embed_tokens.weight  # type: ignore[union-attr]  # still tied


def test_logits_reach_the_engine_as_float32(low: CausalLM) -> None:
    narrow = torch_dtype(low.info.dtype)
    logits, cache = low.start(PROMPT, rows=2)
    assert logits.dtype == torch.float32
    assert torch.equal(logits, logits.to(narrow).float())  # lower-precision values, widened without change
    logits, _ = low.step(logits.argmax(-1), cache)
    assert logits.dtype == torch.float32


def test_float16_overflow_is_one_clear_line() -> None:
    model = tiny_module.load_tiny().cast("float16")
    with torch.no_grad():
        model.hf.lm_head.weight.mul_(1e4)  # logits beyond float16's 65504
    with pytest.raises(explorer.ExplorerError) as info:
        explorer.decode(model, PROMPT, "greedy", max_new_tokens=2)
    assert str(info.value) == "float16 logits of 'tiny-random (float16)' overflowed to inf/nan: use dtype='float32'"


def test_float32_is_the_default_and_unchanged(tiny: CausalLM, bf16: CausalLM) -> None:
    assert explorer.load_model("tiny-random") is tiny
    assert tiny.info.dtype == "float32"
    assert tiny.info.name == "tiny-random"
    assert {p.dtype for p in _weights(tiny).parameters()} == {torch.float32}
    trace = explorer.decode(tiny, PROMPT, "beam", num_beams=3, max_new_tokens=5)
    assert trace.model == "tiny-random"
    assert "dtype" not in trace.meta
    fresh = tiny_module.load_tiny()  # the same seeded weights, never cast
    assert explorer.decode(fresh, PROMPT, "beam", num_beams=3, max_new_tokens=5).results == trace.results


def test_casting_leaves_the_float32_model_untouched() -> None:
    model = tiny_module.load_tiny()
    before = {name: (t.data_ptr(), t.dtype, t.clone()) for name, t in model.hf.state_dict().items()}
    logits_before, _ = model.start(PROMPT, rows=3)
    config_dtype = model.hf.config.dtype
    cast = model.cast("bfloat16")
    after = model.hf.state_dict()
    assert after.keys() == before.keys()
    for name, (pointer, dtype, values) in before.items():
        assert after[name].data_ptr() == pointer, name
        assert after[name].dtype == dtype, name
        assert torch.equal(after[name], values), name
    assert model.hf.config.dtype == config_dtype
    assert model.info.dtype == "float32"
    logits_after, _ = model.start(PROMPT, rows=3)
    assert torch.equal(logits_before, logits_after)
    assert cast.info.dtype == "bfloat16"
    shared = {t.data_ptr() for t in cast.hf.parameters()} & {t.data_ptr() for t in model.hf.parameters()}
    assert not shared


def test_the_cast_equals_transformers_loading_in_that_dtype(tiny: CausalLM, low: CausalLM, tmp_path: Path) -> None:
    """The same logits, bit for bit, as ``from_pretrained(dtype=...)``; greedy and beam search equal
    ``generate()`` on that model."""
    with quiet_progress_bars():
        _weights(tiny).save_pretrained(str(tmp_path))  # type: ignore[operator]
        reference = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch_dtype(low.info.dtype))
    wrapped = HFCausalLM(reference, low.tokenizer, "reference")  # aligned weights, as ours
    for rows in (1, 4):
        assert torch.equal(low.start(PROMPT, rows)[0], wrapped.start(PROMPT, rows)[0])
    ids = torch.tensor([PROMPT])
    eos = tiny.info.eos_token_ids[0]
    common = {"attention_mask": torch.ones_like(ids), "do_sample": False, "max_new_tokens": 12,
              "eos_token_id": eos, "pad_token_id": eos}
    greedy = explorer.decode(low, PROMPT, "greedy", max_new_tokens=12).results[0]
    out = reference.generate(ids, **common)
    assert tuple(out[0, len(PROMPT):].tolist())[: len(greedy.token_ids)] == greedy.token_ids
    beam = explorer.decode(low, PROMPT, "beam", num_beams=4, max_new_tokens=12).results[0]
    out = reference.generate(ids, num_beams=4, return_dict_in_generate=True, output_scores=True, **common)
    assert tuple(out.sequences[0, len(PROMPT):].tolist())[: len(beam.token_ids)] == beam.token_ids
    assert abs(float(out.sequences_scores[0]) - beam.score) < 1e-5


@pytest.mark.parametrize("dtype", ["float64", "half", "fp32", "bf16", "", "Float32", None, 32, torch.bfloat16])
def test_a_bad_dtype_is_one_clear_line(dtype: Any) -> None:
    with pytest.raises(explorer.ParameterError) as info:
        explorer.load_model("tiny-random", dtype=dtype)
    text = str(info.value)
    assert text == f"dtype={dtype!r} is invalid: expected one of 'float32', 'bfloat16', 'float16'"
    assert "\n" not in text
    with pytest.raises(explorer.ParameterError, match="dtype="):
        check_dtype(dtype)


@pytest.mark.parametrize("name", ["toy:how-to-generate", "toy:d2l-beam"])
@pytest.mark.parametrize("dtype", LOW)
def test_toy_tables_refuse_lower_precision(name: str, dtype: str) -> None:
    with pytest.raises(explorer.ExplorerError) as info:
        explorer.load_model(name, dtype=dtype)
    text = str(info.value)
    assert text.startswith(f"dtype={dtype!r} is invalid: expected 'float32' for model {name!r}")
    assert "no weights" in text
    assert "\n" not in text
    assert explorer.load_model(name, dtype="float32") is explorer.load_model(name)


def test_cli_decodes_in_bfloat16(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trace.json"
    code = main(["trace", "--model", "tiny-random", "--dtype", "bfloat16", "--prompt", "Once upon a time",
                 "--strategy", "beam", "--num-beams", "3", "--max-new-tokens", "5", "--json", str(out)])
    assert code == 0
    assert "model tiny-random (bfloat16) | strategy beam" in capsys.readouterr().out
    trace = explorer.Trace.from_json(out)
    assert trace.meta["dtype"] == "bfloat16"


def test_cli_refuses_a_bad_dtype_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["trace", "--model", "tiny-random", "--dtype", "half", "--prompt", "Hello"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err == "decoding-explorer: error: dtype='half' is invalid: expected one of 'float32', " \
        "'bfloat16', 'float16'\n"
    assert captured.out == ""
    assert main(["trace", "--model", "toy:how-to-generate", "--dtype", "bfloat16", "--prompt", "The"]) == 2
    assert "no weights to cast" in capsys.readouterr().err


def test_the_precision_note_is_one_line_per_dtype() -> None:
    for dtype in DTYPES:
        note = precision_note(dtype)
        assert note.startswith(f"{dtype}: ")
        assert "\n" not in note
    assert sorted(MEASURED) == sorted(LOW)
    for dtype, m in MEASURED.items():
        assert m.dtype == dtype
        assert f"/{m.prompts} prompts" in precision_note(dtype)
        assert 0 <= m.greedy_identical <= m.prompts
        assert 0 <= m.beam4_identical <= m.prompts
        assert m.speed_greedy > 0
        assert m.speed_beam4 > 0
        assert 0 <= m.forced_top1_agreement <= 1


def test_the_cast_keeps_what_transformers_keeps_in_float32() -> None:
    """``_keep_in_fp32_modules`` stay float32 in float16 only, ``_keep_in_fp32_modules_strict`` in both."""
    hf = tiny_module.build_model()
    hf._keep_in_fp32_modules = {"o_proj"}
    hf._keep_in_fp32_modules_strict = {"mlp.down_*"}
    for dtype, float32_kept in (("bfloat16", {"down_proj"}), ("float16", {"down_proj", "o_proj"})):
        cast = cast_copy(hf, torch_dtype(dtype))
        kept = {name.split(".")[-2] for name, p in cast.named_parameters() if p.dtype == torch.float32}
        assert kept == float32_kept, dtype
        assert {p.dtype for p in hf.parameters()} == {torch.float32}
