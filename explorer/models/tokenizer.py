"""A transformers fast tokenizer seen through the engine's small ``TokenizerLike`` surface."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

from tokenizers import decoders
from transformers import PreTrainedTokenizerBase

from explorer.errors import ExplorerError

__all__ = ["Tokenizer", "byte_level_alphabet"]


@cache
def byte_level_alphabet() -> dict[str, int]:
    """The GPT-2 byte-level alphabet, read backwards: printable character -> the byte it stands for.

    Bytes that print as themselves (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) keep their code point; the
    other 68 bytes are given the code points 256, 257, ... in byte order.

    >>> byte_level_alphabet()["Ġ"], byte_level_alphabet()["a"]
    (32, 97)
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet = {chr(b): b for b in printable}
    shifted = (b for b in range(256) if b not in alphabet.values())
    for offset, byte in enumerate(shifted):
        alphabet[chr(256 + offset)] = byte
    return alphabet


def _as_id_list(encoded: object) -> list[int]:
    """Plain ``list[int]`` from what ``apply_chat_template(tokenize=True)`` returns in transformers 4 or 5."""
    if isinstance(encoded, Mapping):
        encoded = encoded["input_ids"]
    if hasattr(encoded, "tolist"):
        encoded = encoded.tolist()
    if not isinstance(encoded, Sequence):
        raise ExplorerError(f"chat template gave {type(encoded).__name__}: expected a list of token ids")
    if encoded and isinstance(encoded[0], Sequence):
        encoded = encoded[0]
    return [int(token_id) for token_id in encoded]


class Tokenizer:
    """Wraps a transformers fast tokenizer for the engine.

    >>> tok = Tokenizer(hf_tokenizer)  # doctest: +SKIP
    >>> tok.decode(tok.encode(" flour")), tok.token_text(tok.encode(" flour")[0])  # doctest: +SKIP
    (' flour', ' flour')
    """

    def __init__(self, hf: PreTrainedTokenizerBase) -> None:
        self._hf = hf
        self._texts: dict[int, str] = {}
        self._special: dict[int, str] = {i: str(t.content) for i, t in hf.added_tokens_decoder.items()}
        backend = getattr(hf, "backend_tokenizer", None)
        self._byte_level = backend is not None and isinstance(backend.decoder, decoders.ByteLevel)

    @property
    def hf(self) -> PreTrainedTokenizerBase:
        """The wrapped transformers tokenizer."""
        return self._hf

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included."""
        return len(self._hf)

    @property
    def eos_token_id(self) -> int | None:
        """Id of the end-of-sequence token, if the tokenizer has one."""
        token_id = self._hf.eos_token_id
        return None if token_id is None else int(token_id)

    @property
    def bos_token_id(self) -> int | None:
        """Id of the beginning-of-sequence token, if the tokenizer has one."""
        token_id = self._hf.bos_token_id
        return None if token_id is None else int(token_id)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as written: no special tokens added."""
        return [int(i) for i in self._hf.encode(text, add_special_tokens=False)]

    def chat(self, text: str) -> list[int]:
        """Token ids of ``text`` as one user message in the chat template, with the generation prompt."""
        if not getattr(self._hf, "chat_template", None):
            raise ExplorerError("this tokenizer has no chat template: pass the prompt as plain text instead")
        messages = [{"role": "user", "content": text}]
        encoded = self._hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return _as_id_list(encoded)

    def decode(self, token_ids: list[int]) -> str:
        """Text of a sequence of token ids, special tokens left out, multi-byte characters whole."""
        return str(self._hf.decode(token_ids, skip_special_tokens=True))

    def token_text(self, token_id: int) -> str:
        """Display text of one token on its own; bytes that are not whole UTF-8 shown as ``\\xNN``."""
        text = self._texts.get(token_id)
        if text is None:
            text = self._texts[token_id] = self._compute_token_text(token_id)
        return text

    def _compute_token_text(self, token_id: int) -> str:
        """Uncached ``token_text``: special tokens by content, byte-level pieces through their bytes."""
        special = self._special.get(token_id)
        if special is not None:
            return special
        if self._byte_level:
            piece = self._hf.convert_ids_to_tokens(token_id)
            alphabet = byte_level_alphabet()
            if isinstance(piece, str) and all(ch in alphabet for ch in piece):
                return bytes(alphabet[ch] for ch in piece).decode("utf-8", errors="backslashreplace")
        return str(self._hf.decode([token_id]))
