"""The ``Tokenizer`` wrapper: round trips, chat prompts and per-token display text on the tiny (real-text) tokenizer."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from explorer.errors import ExplorerError
from explorer.models.base import TokenizerLike
from explorer.models.tiny import tiny_tokenizer
from explorer.models.tokenizer import Tokenizer, byte_level_alphabet

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Crème brûlée, naïve façade, São Paulo, Ærøskøbing",
    "Emoji: 🎉👍🏽 and a family 👨‍👩‍👧 — done",
    "  two spaces,\ttab\nnew line, digits 2024 and 3.14",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer(tiny_tokenizer())


def test_byte_level_alphabet_is_a_bijection_onto_bytes() -> None:
    alphabet = byte_level_alphabet()
    assert len(alphabet) == 256
    assert sorted(alphabet.values()) == list(range(256))
    assert alphabet["Ġ"] == ord(" ")
    assert alphabet["Ċ"] == ord("\n")
    assert alphabet["!"] == ord("!")


def test_implements_the_protocol(tok: Tokenizer) -> None:
    assert isinstance(tok, TokenizerLike)
    assert (tok.vocab_size, tok.bos_token_id, tok.eos_token_id) == (1000, 1, 2)
    assert isinstance(tok.hf, PreTrainedTokenizerFast)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert ids
    assert all(isinstance(i, int) and 0 <= i < 1000 for i in ids)
    assert tok.decode(ids) == text


def test_encode_adds_no_special_tokens(tok: Tokenizer) -> None:
    assert tok.encode("Hello") == [56, 478, 95]
    assert tok.hf("Hello")["input_ids"] == [56, 478, 95]  # the wrapped tokenizer adds no BOS either


def test_chat_wraps_one_user_message_with_the_generation_prompt(tok: Tokenizer) -> None:
    ids = tok.chat("Hi there")
    assert isinstance(ids, list)
    assert all(type(i) is int for i in ids)
    text = tok.hf.decode(ids)
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    assert ids[-5:] == [1, *tok.encode("assistant\n")]


def test_chat_without_a_template_is_a_clear_error() -> None:
    hf = tiny_tokenizer()
    hf.chat_template = None
    with pytest.raises(ExplorerError, match="no chat template"):
        Tokenizer(hf).chat("Hi")


def test_decode_skips_special_tokens(tok: Tokenizer) -> None:
    assert tok.decode([1, *tok.encode("Hi"), 2, 0]) == "Hi"


def test_token_text_of_whole_and_partial_pieces(tok: Tokenizer) -> None:
    assert [tok.token_text(i) for i in tok.encode("Hello world")] == ["H", "ell", "o", " world"]
    assert [tok.token_text(i) for i in (0, 1, 2)] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    pieces = [tok.token_text(i) for i in tok.encode("é🎉")]  # not in the 1000 ids: one token per byte
    assert pieces == ["\\xc3", "\\xa9", "\\xf0", "\\x9f", "\\x8e", "\\x89"]
    assert "\ufffd" not in "".join(tok.token_text(i) for i in range(1000))


def test_token_text_is_cached(tok: Tokenizer) -> None:
    first = tok.token_text(500)
    assert tok.token_text(500) is first


def test_token_text_of_a_non_byte_level_tokenizer_uses_decode() -> None:
    vocab = {"[UNK]": 0, "hello": 1, "wörld": 2}
    backend = BackendTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = Tokenizer(PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]"))
    assert tok.encode("hello wörld") == [1, 2]
    assert tok.token_text(2) == "wörld"
