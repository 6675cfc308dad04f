"""``tiny-random``: the same weights as transformers 4.56.2 builds, a real-text tokenizer, and no RNG side effects."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest
import torch

from explorer.models.base import CausalLM
from explorer.models.hf import HFCausalLM
from explorer.models.tiny import load_tiny

# Computed in transformers 4.56.2 + torch 2.13.0 from `torch.manual_seed(0); LlamaForCausalLM(LlamaConfig(...))`
# with the config of explorer.models.tiny (the same digest as tests/reference/fixtures/tiny-random.json). The digest
# is exact; the logits agree to 1e-5 (another CPU's float32 kernels round the last bits differently).
REFERENCE_SHA256 = "459938245e67cba805a63014aab35132cbdc366a87d504e7b44bbdcbe3c0415e"
PROBE = [5, 17, 243, 999, 64]
PROBE_FIRST4 = [1.4243438243865967, 3.999143600463867, 0.0, 0.18467235565185547]


def _digest(model: torch.nn.Module) -> str:
    """sha256 over the sorted state dict (tied ``lm_head.weight`` left out), as the reference script computes it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name != "lm_head.weight":
            digest.update(name.encode())
            digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_weights_equal_transformers_4_56_2(tiny: CausalLM) -> None:
    assert isinstance(tiny, HFCausalLM)
    assert _digest(tiny.hf) == REFERENCE_SHA256
    with torch.inference_mode():
        logits = tiny.hf(torch.tensor([PROBE])).logits[0, -1]  # type: ignore[operator]
    assert logits[:4].tolist() == pytest.approx(PROBE_FIRST4, rel=1e-5, abs=1e-6)


def test_eos_row_of_the_tied_embedding_is_zero(tiny: CausalLM) -> None:
    logits, _ = tiny.start(tiny.tokenizer.encode("Hello there"))
    assert logits[0, 2].item() == 0.0  # pad_token_id=2 zeroes embedding row 2, so the eos logit is always 0


def test_loading_keeps_the_callers_rng_and_is_deterministic() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = load_tiny()
    assert torch.equal(torch.rand(3), expected)
    assert _digest(first.hf) == _digest(load_tiny().hf) == REFERENCE_SHA256


def test_tokenizer_uses_ids_below_1000_with_chat_specials(tiny: CausalLM) -> None:
    tok = tiny.tokenizer
    text = "Grüße aus Köln! 🎉 Ça va? 2+2=4"
    ids = tok.encode(text)
    assert max(ids) < 1000
    assert tok.decode(ids) == text
    chat = tok.chat("Hi")
    assert max(chat) < 1000
    assert chat.count(1) == 3
    assert chat.count(2) == 2


def test_packaged_tokenizer_files_are_small() -> None:
    data = resources.files("explorer").joinpath("data")
    spec = json.loads(data.joinpath("tiny-tokenizer.json").read_text(encoding="utf-8"))
    assert sorted(spec["model"]["vocab"].values()) == list(range(1000))
    assert len(data.joinpath("tiny-tokenizer.json").read_bytes()) < 64_000
    config = json.loads(data.joinpath("tiny-tokenizer-config.json").read_text(encoding="utf-8"))
    assert config["eos_token"] == "<|im_end|>"
    assert "<|im_start|>assistant" in config["chat_template"]
