"""Shared weights: aligned safetensors, mapped copy-on-write, logits equal to aligned copies bit for bit.

The tiny model stands in for SmolLM2's GGUF in the cache tests (as in test_smollm2.py); the last tests use the
real SmolLM2 cache and compare it with a model loaded the old way (an unaligned file whose tensors
``align_weights`` copies), on this machine.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

import explorer
from explorer.models import mapped, tiny
from explorer.models import smollm2 as smol
from explorer.models.base import CausalLM
from explorer.models.hf import HFCausalLM, align_weights, cast_copy


@pytest.fixture
def fake_gguf(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The tiny model stands in for the GGUF read; records when each read started."""
    calls: list[float] = []

    def load(verbose: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        calls.append(time.perf_counter())
        time.sleep(0.3)  # long enough for a rival to try building at the same time
        return tiny.build_model(), tiny.tiny_tokenizer()

    monkeypatch.setattr(smol, "_load_from_gguf", load)
    return calls


def _weights() -> Path:
    return smol.model_cache_dir() / "model.safetensors"


def _in_mapping(tensor: torch.Tensor, mappings: list[dict[str, int | str]]) -> bool:
    return any(int(m["start"]) <= tensor.data_ptr() < int(m["end"]) for m in mappings)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _logits(lm: CausalLM, rows: int = 1, steps: int = 3) -> list[torch.Tensor]:
    """Prefill logits of a chat prompt and of ``steps`` greedy steps after it (``rows`` identical rows)."""
    logits, cache = lm.start(lm.tokenizer.chat("Write a short poem about flour."), rows=rows)
    seen = [logits]
    for _ in range(steps):
        logits, cache = lm.step(logits.argmax(-1), cache)
        seen.append(logits)
    return seen


def test_write_aligned_puts_every_tensor_on_a_64_byte_boundary(tmp_path: Path) -> None:
    tensors = {
        "odd": torch.arange(3, dtype=torch.float32),  # 12 bytes: the next tensor needs a filler entry
        "half": torch.arange(5, dtype=torch.bfloat16),
        "flags": torch.tensor([True, False, True]),
        "matrix": torch.randn(7, 5),
    }
    path = tmp_path / "w.safetensors"
    mapped.write_aligned(tensors, path, {"format": "pt", "note": "kept"})
    assert mapped.misaligned(path) == []
    start, header, metadata = mapped.read_header(path)
    assert start % 64 == 0
    assert metadata == {"format": "pt", "note": "kept"}
    assert [name for name in header if not name.startswith(mapped.PADDING_PREFIX)] == list(tensors)
    with safe_open(str(path), framework="pt") as source:  # type: ignore[no-untyped-call]
        for name, tensor in tensors.items():
            assert torch.equal(source.get_tensor(name), tensor)


def test_write_aligned_refuses_reserved_names_and_unknown_dtypes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        mapped.write_aligned({mapped.PADDING_PREFIX + "0__": torch.zeros(2)}, tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="cannot hold"):
        mapped.write_aligned({"c": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "b.safetensors")


def test_realign_keeps_tensors_and_metadata(tmp_path: Path) -> None:
    model = tiny.build_model()
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    path = tmp_path / "model.safetensors"
    before = {}
    with safe_open(str(path), framework="pt") as source:  # type: ignore[no-untyped-call]
        before = {name: source.get_tensor(name) for name in source.keys()}  # noqa: SIM118
        metadata = source.metadata()
    mapped.realign(path)
    assert mapped.misaligned(path) == []
    with safe_open(str(path), framework="pt") as source:  # type: ignore[no-untyped-call]
        assert source.metadata() == metadata
        assert {name: source.get_tensor(name) for name in source.keys()}.keys() == before.keys()  # noqa: SIM118
        assert all(torch.equal(source.get_tensor(name), tensor) for name, tensor in before.items())


def test_the_cache_is_aligned_read_only_and_mapped_by_every_parameter(tmp_cache: Path, fake_gguf: list[float]) -> None:
    lm = smol.load_smollm2(verbose=False)
    weights = _weights()
    assert mapped.misaligned(weights) == []
    assert not os.access(weights, os.W_OK) or os.geteuid() == 0  # root may write anything; the mode still says no
    assert weights.stat().st_mode & 0o222 == 0
    mappings = mapped.file_mappings(weights)
    assert mappings, "the cache file is not memory-mapped"
    assert all(str(m["perms"]).endswith("p") for m in mappings)  # private: a write can never reach the file
    parameters = list(lm.hf.parameters())
    assert all(_in_mapping(p, mappings) and p.data_ptr() % 64 == 0 for p in parameters)
    assert align_weights(lm.hf) == 0
    assert lm.hf.lm_head.weight.data_ptr() == lm.hf.model.embed_tokens.weight.data_ptr()  # tied, mapped once


def test_inference_never_copies_a_mapped_page_and_a_write_stays_private(
    tmp_cache: Path, fake_gguf: list[float]
) -> None:
    lm = smol.load_smollm2(verbose=False)
    weights = _weights()
    on_disk = _digest(weights)
    explorer.decode(lm, "The quick brown fox", strategy="beam", num_beams=4, max_new_tokens=8)
    explorer.decode(lm, "The quick brown fox", strategy="sample", max_new_tokens=8, seed=1)
    assert mapped.dirty_pages_kb(weights) == 0
    with torch.no_grad():
        lm.hf.model.norm.weight.mul_(2.0)  # what no inference does: write into a mapped weight
    assert mapped.dirty_pages_kb(weights) > 0  # the page was copied for this process alone
    assert _digest(weights) == on_disk
    with safe_open(str(weights), framework="pt") as source:  # type: ignore[no-untyped-call]
        assert torch.equal(source.get_tensor("model.norm.weight") * 2.0, lm.hf.model.norm.weight)


def test_concurrent_prepares_build_once(tmp_cache: Path, fake_gguf: list[float]) -> None:
    folders: list[Path] = []
    threads = [threading.Thread(target=lambda: folders.append(smol.prepare_smollm2(verbose=False))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_gguf) == 1
    assert len(set(folders)) == 1
    assert sorted(p.name for p in folders[0].parent.iterdir()) == ["smollm2-135m"]


def test_an_unaligned_cache_of_the_old_format_is_rebuilt(tmp_cache: Path, fake_gguf: list[float]) -> None:
    folder = smol.prepare_smollm2(verbose=False)
    weights = folder / "model.safetensors"
    weights.unlink()
    tiny.build_model().save_pretrained(str(folder), safe_serialization=True)  # the format-1 writer: unaligned
    assert mapped.misaligned(weights)
    (folder / smol.MARKER).write_text('{"format": 1}')
    smol.prepare_smollm2(verbose=False)
    assert mapped.misaligned(weights) == []
    assert len(fake_gguf) == 2


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_lower_precisions_are_cached_once_mapped_and_equal_an_in_memory_cast(
    tmp_cache: Path, fake_gguf: list[float], dtype: str
) -> None:
    lm = smol.load_smollm2(verbose=False)
    low = lm.cast(dtype)
    assert isinstance(low, HFCausalLM)
    weights = smol.model_cache_dir() / dtype / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert mapped.misaligned(weights) == []
    mappings = mapped.file_mappings(weights)
    assert all(_in_mapping(p, mappings) for p in low.hf.parameters())
    reference = cast_copy(lm.hf, getattr(torch, dtype))
    mine, theirs = low.hf.state_dict(), reference.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(mine[k].dtype == theirs[k].dtype and torch.equal(mine[k], theirs[k]) for k in mine)
    expected = HFCausalLM(reference, lm.tokenizer, "in memory")
    for ours, copied in zip(_logits(low, rows=2), _logits(expected, rows=2), strict=True):
        assert torch.equal(ours, copied)
    assert lm.cast(dtype).hf is not low.hf
    assert weights.stat().st_mtime_ns == written  # mapped again, not written again


def test_an_unwritable_cache_casts_in_memory(
    tmp_cache: Path, fake_gguf: list[float], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lm = smol.load_smollm2(verbose=False)

    def refuse(model: PreTrainedModel, dtype: torch.dtype, target: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(smol, "_build_cast", refuse)
    low = lm.cast("bfloat16")
    assert "casting in memory" in capsys.readouterr().err
    assert low.hf.dtype == torch.bfloat16
    assert not mapped.file_mappings(smol.model_cache_dir() / "bfloat16" / "model.safetensors")


def _old_way(tmp_path: Path, lm: HFCausalLM) -> tuple[HFCausalLM, int]:
    """SmolLM2 as the format-1 cache loaded it: ``save_pretrained``'s unaligned file, mapped, then every misaligned
    tensor copied by ``align_weights``; and how many it copied."""
    lm.hf.save_pretrained(str(tmp_path), safe_serialization=True)
    assert mapped.misaligned(tmp_path / "model.safetensors")
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32, use_safetensors=True)
    copied = align_weights(model)
    return HFCausalLM(model, lm.tokenizer, "old way"), copied


@pytest.mark.slow
def test_smollm2_mapped_logits_equal_aligned_copies_bit_for_bit(smollm2: CausalLM, tmp_path: Path) -> None:
    assert isinstance(smollm2, HFCausalLM)
    weights = smol.model_cache_dir() / "model.safetensors"
    mappings = mapped.file_mappings(weights)
    assert all(_in_mapping(p, mappings) for p in smollm2.hf.parameters())
    old, copied = _old_way(tmp_path, smollm2)
    assert copied > 200  # the old way copied (nearly) every tensor
    for rows in (1, 4):
        for ours, theirs in zip(_logits(smollm2, rows=rows), _logits(old, rows=rows), strict=True):
            assert torch.equal(ours, theirs)
    explorer.decode(smollm2, "The capital of France is", strategy="beam", num_beams=4, max_new_tokens=10)
    assert mapped.dirty_pages_kb(weights) == 0


@pytest.mark.slow
def test_smollm2_mapped_bfloat16_equals_an_in_memory_cast(smollm2: CausalLM) -> None:
    assert isinstance(smollm2, HFCausalLM)
    low = explorer.load_model("smollm2-135m", dtype="bfloat16")
    assert isinstance(low, HFCausalLM)
    mappings = mapped.file_mappings(smol.model_cache_dir() / "bfloat16" / "model.safetensors")
    assert all(_in_mapping(p, mappings) for p in low.hf.parameters())
    copied = HFCausalLM(cast_copy(smollm2.hf, torch.bfloat16), smollm2.tokenizer, "in memory")
    for ours, theirs in zip(_logits(low, rows=4), _logits(copied, rows=4), strict=True):
        assert torch.equal(ours, theirs)
