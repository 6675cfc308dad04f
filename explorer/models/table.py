"""Teaching toy models: next-token probabilities written by hand as a table (context -> {token: probability})."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from explorer.errors import ExplorerError
from explorer.models.base import ModelInfo

__all__ = ["HOW_TO_GENERATE", "TableModel", "TableTokenizer"]

EOS = "<eos>"

#: The tree of "How to generate text" (Hugging Face blog): greedy takes "The nice woman" (0.5 x 0.4 = 0.20)
#: and misses "The dog has" (0.4 x 0.9 = 0.36), which beam search with two beams finds.
HOW_TO_GENERATE: dict[str, dict[str, float]] = {
    "The": {"nice": 0.5, "dog": 0.4, "car": 0.1},
    "The nice": {"woman": 0.4, "house": 0.3, "guy": 0.3},
    "The dog": {"has": 0.9, "runs": 0.05, "and": 0.05},
    "The car": {"is": 0.3, "drives": 0.5, "turns": 0.2},
    "": {EOS: 1.0},
}


class TableTokenizer:
    """Words are tokens: text is split on spaces; every word must be in the table's vocabulary."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.vocab = tuple(vocab)
        self.ids = {tok: i for i, tok in enumerate(self.vocab)}

    def encode(self, text: str) -> list[int]:
        """Ids of the space-separated words of ``text``."""
        unknown = [w for w in text.split() if w not in self.ids]
        if unknown:
            raise ExplorerError(f"unknown token {unknown[0]!r}: this toy model knows {', '.join(self.vocab)}")
        return [self.ids[w] for w in text.split()]

    def chat(self, text: str) -> list[int]:
        """Toy models have no chat template."""
        raise ExplorerError("this toy model has no chat template: leave chat off")

    def decode(self, token_ids: list[int]) -> str:
        """Words joined by spaces, eos left out."""
        return " ".join(self.vocab[t] for t in token_ids if self.vocab[t] != EOS)

    def token_text(self, token_id: int) -> str:
        """The word itself."""
        return self.vocab[token_id]


@dataclass(frozen=True)
class _Rows:
    """The toy model's "cache": the tokens of every row."""

    rows: tuple[tuple[int, ...], ...]


class TableModel:
    """A causal LM read from a table; a context not in the table backs off to its longest listed suffix.

    >>> model = TableModel("toy", HOW_TO_GENERATE)
    >>> logits, cache = model.start(model.tokenizer.encode("The"))
    >>> round(math.exp(logits[0, model.tokenizer.ids["dog"]].item()), 2)
    0.4
    """

    def __init__(self, name: str, table: Mapping[str, Mapping[str, float]]) -> None:
        words = {w for ctx in table for w in ctx.split()} | {w for d in table.values() for w in d}
        vocab = [EOS, *sorted(words - {EOS})]
        self.tokenizer = TableTokenizer(vocab)
        self.table = {tuple(self.tokenizer.encode(ctx)): dict(probs) for ctx, probs in table.items()}
        self.info = ModelInfo(name, len(vocab), (0,), 0, 1024)

    def _logits(self, tokens: tuple[int, ...]) -> torch.Tensor:
        """Log-probabilities of the next token after ``tokens`` (-inf for tokens not listed)."""
        for cut in range(len(tokens) + 1):
            probs = self.table.get(tokens[cut:])
            if probs is not None:
                break
        else:
            probs = {EOS: 1.0}
        row = torch.full((self.info.vocab_size,), -math.inf)
        for word, prob in probs.items():
            row[self.tokenizer.ids[word]] = math.log(prob) if prob > 0 else -math.inf
        return row

    def start(self, prompt_ids: list[int], rows: int = 1) -> tuple[torch.Tensor, object]:
        """Logits after the prompt, and a cache of ``rows`` copies of it."""
        copies = (tuple(prompt_ids),) * rows
        return torch.stack([self._logits(r) for r in copies]), _Rows(copies)

    def step(self, tokens: torch.Tensor, cache: object) -> tuple[torch.Tensor, object]:
        """Append one token per row; logits for every row."""
        assert isinstance(cache, _Rows)
        rows = tuple((*r, int(t)) for r, t in zip(cache.rows, tokens.tolist(), strict=True))
        return torch.stack([self._logits(r) for r in rows]), _Rows(rows)

    def select(self, cache: object, rows: torch.Tensor) -> object:
        """Rows by index."""
        assert isinstance(cache, _Rows)
        return _Rows(tuple(cache.rows[i] for i in rows.tolist()))
