"""The model protocol: next-token logits for a batch of hypotheses, with a KV cache that can be reordered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

__all__ = ["CausalLM", "Layered", "ModelInfo", "TokenizerLike", "Verifier"]


@dataclass(frozen=True)
class ModelInfo:
    """Plain facts about a model that a trace records.

    ``eos_token_ids`` end a hypothesis; ``pad_token_id`` fills finished rows (the reference uses eos).
    ``num_layers`` counts the transformer layers (0 for a next-token table, which has none): strategies that
    need hidden states (``StrategySpec.needs``) are refused on a model without layers.
    """

    name: str
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    max_context: int
    dtype: str = "float32"
    num_layers: int = 0


@runtime_checkable
class TokenizerLike(Protocol):
    """What the engine needs from a tokenizer."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as written: no special tokens added."""
        ...

    def chat(self, text: str) -> list[int]:
        """Token ids of ``text`` as one user message in the chat template, with the generation prompt."""
        ...

    def decode(self, token_ids: list[int]) -> str:
        """Text of a sequence of token ids, special tokens left out, multi-byte characters whole."""
        ...

    def token_text(self, token_id: int) -> str:
        """Display text of one token on its own; bytes that are not whole UTF-8 shown as ``\\xNN``."""
        ...


@runtime_checkable
class CausalLM(Protocol):
    """A causal language model seen one token at a time.

    The cache is opaque to callers: ``start`` makes one for a single row, ``step`` extends it by one token per
    row, and ``select`` gathers rows (reorder after a beam step, copy for a fork, shrink when rows finish).
    ``select`` returns a new cache and leaves its argument usable.
    """

    @property
    def info(self) -> ModelInfo:
        """Plain facts about the model."""
        ...

    @property
    def tokenizer(self) -> TokenizerLike:
        """The model's tokenizer."""
        ...

    def start(self, prompt_ids: list[int], rows: int = 1) -> tuple[torch.Tensor, object]:
        """Run the prompt as ``rows`` identical rows; return float32 logits ``[rows, vocab]`` and the cache.

        Beam search starts from ``num_beams`` copies of the prompt, as the reference does: on CPU a row's logits
        can depend on the batch size in the last bits, so running the copies in one batch keeps the first step
        identical to the reference.
        """
        ...

    def step(self, tokens: torch.Tensor, cache: object) -> tuple[torch.Tensor, object]:
        """Feed one token per row (``tokens``: ``[rows]`` int64); return logits ``[rows, vocab]`` and the cache."""
        ...

    def select(self, cache: object, rows: torch.Tensor) -> object:
        """Gather cache rows by index (``rows``: ``[new_rows]`` int64)."""
        ...


@runtime_checkable
class Verifier(CausalLM, Protocol):
    """A causal LM that also feeds several tokens of one row in one forward and takes tokens back out of its
    cache: what speculative decoding needs, from the target (check a draft) and from a draft model."""

    def extend(self, tokens: list[int], cache: object | None, keep: int) -> tuple[torch.Tensor, object]:
        """Feed ``tokens`` to a one-row ``cache`` (``None``: a fresh one); float32 logits ``[keep, vocab]`` of the
        last ``keep`` positions, and the cache."""
        ...

    def crop(self, cache: object, length: int) -> object:
        """The cache holding only its first ``length`` positions."""
        ...

    def cache_length(self, cache: object) -> int:
        """Number of positions ``cache`` holds."""
        ...


@runtime_checkable
class Layered(CausalLM, Protocol):
    """A causal LM that shows its layers: every layer's hidden states from a forward, and its LM head (with or
    without the final norm) to read them with. What DoLa, contrastive search and the logit lens need."""

    @property
    def tied(self) -> bool:
        """Whether the LM head shares the embeddings' weights."""
        ...

    def forward_layers(self, tokens: torch.Tensor, cache: object | None
                       ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], object]:
        """Feed ``tokens`` ``[rows, length]``: float32 last-position logits ``[rows, vocab]``, ``num_layers + 1``
        hidden states ``[rows, length, hidden]`` (the embeddings, each layer's output, the last one normed), cache."""
        ...

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head on hidden states as they are: float32 logits."""
        ...

    def lens(self, hidden: torch.Tensor) -> torch.Tensor:
        """The final norm, then the LM head: float32 logits (the logit lens)."""
        ...
