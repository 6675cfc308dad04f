"""``load_model`` names: built-ins, local folders (safetensors only), unknown names, and the in-process cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from explorer.errors import ExplorerError, ModelNotFoundError
from explorer.models import available_models, load_model
from explorer.models.base import CausalLM
from explorer.models.hf import HFCausalLM

UNKNOWN = (
    "unknown model {name!r}: expected one of smollm2-135m, tiny-random, toy:constrained, toy:d2l-beam, toy:diverse, "
    "toy:how-to-generate, a toy table (.json/.yaml), a local folder with config.json and *.safetensors, or a Hugging "
    "Face hub id (needs a network)"
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may try the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_available_models_lists_the_built_ins() -> None:
    models = available_models()
    assert list(models) == [
        "smollm2-135m", "tiny-random", "toy:constrained", "toy:d2l-beam", "toy:diverse", "toy:how-to-generate",
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
