"""``load_model`` names: built-ins, local folders (safetensors only), unknown names, and the in-process cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from explorer.errors import ExplorerError, ModelNotFoundError
from explorer.models import available_models, load_model, registry
from explorer.models.base import CausalLM
from explorer.models.hf import HFCausalLM

UNKNOWN = (
    "unknown model {name!r}: expected one of smollm2-135m, tiny-random, tiny-random-bpe, toy:constrained, "
    "toy:d2l-beam, toy:diverse, toy:how-to-generate, a toy table (.json/.yaml), a local folder with config.json and "
    "*.safetensors, or a Hugging Face hub id (needs a network)"
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may try the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_available_models_lists_the_built_ins() -> None:
    models = available_models()
    assert list(models) == [
        "smollm2-135m", "tiny-random", "tiny-random-bpe", "toy:constrained", "toy:d2l-beam", "toy:diverse",
        "toy:how-to-generate",
    ]
    assert all(description and "\n" not in description for description in models.values())


def test_a_second_load_returns_the_same_object(tiny: CausalLM) -> None:
    assert load_model("tiny-random") is tiny


@pytest.mark.parametrize("name", ["", "   ", "no-such-model", "nobody/no-such-model", "./missing/folder", "a b"])
def test_unknown_names_raise_one_clear_line(name: str) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        load_model(name)
    assert str(caught.value) == UNKNOWN.format(name=name)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_a_folder_with_only_pickle_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ExplorerError, match=r"only pickle weights \(pytorch_model.bin\)"):
        load_model(str(tmp_path))


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ExplorerError, match=r"has no config\.json"):
        load_model(str(tmp_path))


def test_a_local_safetensors_folder_loads(tiny: CausalLM, tmp_path: Path) -> None:
    assert isinstance(tiny, HFCausalLM)
    tiny.hf.save_pretrained(str(tmp_path))  # type: ignore[operator]
    tiny.tokenizer.hf.save_pretrained(str(tmp_path))  # type: ignore[attr-defined]
    local = load_model(str(tmp_path))
    assert local is not tiny
    assert load_model(str(tmp_path)) is local
    assert local.info.vocab_size == 1000
    assert local.info.eos_token_ids == (2,)
    assert local.info.pad_token_id == 2
    prompt = tiny.tokenizer.chat("Hi")
    assert local.tokenizer.chat("Hi") == prompt
    expected, _ = tiny.start(prompt)
    got, _ = local.start(prompt)
    assert torch.equal(got, expected)


def test_a_folder_without_a_tokenizer_is_refused(tiny: CausalLM, tmp_path: Path) -> None:
    assert isinstance(tiny, HFCausalLM)
    tiny.hf.save_pretrained(str(tmp_path))  # type: ignore[operator]
    with pytest.raises(ExplorerError, match="has no tokenizer"):
        load_model(str(tmp_path))


def test_a_folder_that_fails_to_load_is_one_clear_line(tiny: CausalLM, tmp_path: Path) -> None:
    assert isinstance(tiny, HFCausalLM)
    tiny.hf.save_pretrained(str(tmp_path))  # type: ignore[operator]
    tiny.tokenizer.hf.save_pretrained(str(tmp_path))  # type: ignore[attr-defined]
    (tmp_path / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ExplorerError, match="could not be loaded") as caught:
        load_model(str(tmp_path))
    assert "\n" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_device_is_checked_and_the_cpu_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer.errors import ParameterError
    from explorer.models.registry import DEVICE_ENV, check_device

    assert load_model("tiny-random", device="cpu") is load_model("tiny-random")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert load_model("tiny-random", device=None) is load_model("tiny-random")
    with pytest.raises(ParameterError, match=r"device='gpu' is invalid"):
        load_model("tiny-random", device="gpu")
    with pytest.raises(ParameterError, match="runs on the CPU"):
        registry._to_device(load_model("toy:how-to-generate"), "toy:how-to-generate", "cuda")
    if not torch.cuda.is_available():  # this machine: a clear refusal instead of a CUDA stack trace
        with pytest.raises(ParameterError, match=r"device='cuda' is invalid: expected 'cpu' \(PyTorch sees no CUDA"):
            load_model("tiny-random", device="cuda")
        monkeypatch.setenv(DEVICE_ENV, "cuda")
        with pytest.raises(ParameterError, match="no CUDA device"):
            check_device()


def test_a_device_copy_leaves_the_model_alone_and_gives_the_same_logits() -> None:
    lm = load_model("tiny-random")
    assert isinstance(lm, HFCausalLM)
    moved = lm.to_device("cpu")  # the copy a GPU gets, made here on the CPU
    assert moved is not lm
    assert moved.device == torch.device("cpu")
    assert moved.info == lm.info
    ours = dict(moved.hf.named_parameters())
    theirs = dict(lm.hf.named_parameters())
    assert all(ours[k].data_ptr() != theirs[k].data_ptr() and torch.equal(ours[k], theirs[k]) for k in ours)
    assert moved.hf.lm_head.weight is moved.hf.model.embed_tokens.weight  # still tied
    prompt = lm.tokenizer.encode("The quick brown fox")
    first, cache = lm.start(prompt, rows=2)
    again, moved_cache = moved.start(prompt, rows=2)
    assert torch.equal(first, again)
    assert again.device == torch.device("cpu")
    assert torch.equal(lm.step(first.argmax(-1), cache)[0], moved.step(again.argmax(-1), moved_cache)[0])
