"""Teaching toy models: next-token probabilities written by hand as a table (context -> {token: probability}).

A table is a JSON or YAML document::

    {"name": "how-to-generate", "title": "...", "description": "...", "prompt": "The", "eos": "<eos>",
     "table": {"The": {"nice": 0.5, "dog": 0.4, "car": 0.1}, "The nice": {...}, "": {"<eos>": 1.0}}}

Tokens are words. The next-token distribution after a sequence is the entry of its longest suffix listed in the
table (``""`` is the fallback for everything else). Loading checks that every distribution sums to 1, that every
token is known (when a ``tokens`` list is given), and that from every reachable context the sequence can end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from explorer.errors import ExplorerError
from explorer.models.base import ModelInfo

__all__ = ["HOW_TO_GENERATE", "TOY_PREFIX", "TableModel", "TableTokenizer", "builtin_toys", "load_table"]

EOS = "<eos>"
TOY_PREFIX = "toy:"
TOLERANCE = 1e-6
MAX_TABLE_BYTES = 1 << 20

#: The tree of "How to generate text" (Hugging Face blog): greedy takes "The nice woman" (0.5 x 0.4 = 0.20)
#: and misses "The dog has" (0.4 x 0.9 = 0.36), which beam search with two beams finds.
HOW_TO_GENERATE: dict[str, dict[str, float]] = {
    "The": {"nice": 0.5, "dog": 0.4, "car": 0.1},
    "The nice": {"woman": 0.4, "house": 0.3, "guy": 0.3},
    "The dog": {"has": 0.9, "runs": 0.05, "and": 0.05},
    "The car": {"is": 0.3, "drives": 0.5, "turns": 0.2},
    "": {EOS: 1.0},
}


class TableError(ExplorerError):
    """A toy table is malformed (one line saying where)."""


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


def _check_distribution(context: str, probs: object, known: set[str] | None) -> dict[str, float]:
    """One row of the table: a mapping of known tokens to probabilities that sum to 1."""
    where = f"after {context!r}" if context else "in the fallback entry ''"
    if not isinstance(probs, Mapping) or not probs:
        raise TableError(f"the entry {where} must map tokens to probabilities")
    out: dict[str, float] = {}
    for token, p in probs.items():
        if not isinstance(token, str) or not token or " " in token:
            raise TableError(f"token {token!r} {where} must be one word")
        if known is not None and token not in known:
            raise TableError(f"unknown token {token!r} {where}: not in the table's tokens")
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise TableError(f"probability of {token!r} {where} must be a number in [0, 1], got {p!r}")
        out[token] = float(p)
    total = sum(out.values())
    if abs(total - 1) > TOLERANCE:
        raise TableError(f"probabilities {where} sum to {total:.6g}, expected 1 (within {TOLERANCE:g})")
    return out


class TableModel:
    """A causal LM read from a table; a context not in the table backs off to its longest listed suffix.

    >>> model = TableModel("toy", HOW_TO_GENERATE)
    >>> logits, cache = model.start(model.tokenizer.encode("The"))
    >>> round(math.exp(logits[0, model.tokenizer.ids["dog"]].item()), 2)
    0.4
    """

    def __init__(self, name: str, table: Mapping[str, Mapping[str, float]], *, tokens: Sequence[str] | None = None,
                 description: str = "", prompt: str = "", title: str = "") -> None:
        if not isinstance(table, Mapping) or not table:
            raise TableError(f"toy model {name!r}: 'table' must be a non-empty mapping of context -> distribution")
        known = set(tokens) | {EOS} if tokens is not None else None
        checked = {str(ctx): _check_distribution(str(ctx), probs, known) for ctx, probs in table.items()}
        words = {w for ctx in checked for w in ctx.split()} | {w for d in checked.values() for w in d}
        if known is not None and not words <= known:
            raise TableError(f"unknown token {sorted(words - known)[0]!r} in a context: not in the table's tokens")
        self.tokenizer = TableTokenizer([EOS, *sorted((known or words) - {EOS})])
        self.table = {tuple(self.tokenizer.encode(ctx)): probs for ctx, probs in checked.items()}
        self.description = description
        self.prompt = prompt
        self.title = title or name
        self.info = ModelInfo(name, len(self.tokenizer.vocab), (0,), 0, 1024)
        _check_termination(self)

    def distribution(self, tokens: Sequence[int]) -> dict[str, float]:
        """Next-token probabilities after ``tokens`` (longest listed suffix; eos if nothing matches)."""
        for cut in range(len(tokens) + 1):
            probs = self.table.get(tuple(tokens[cut:]))
            if probs is not None:
                return probs
        return {EOS: 1.0}

    def _logits(self, tokens: tuple[int, ...]) -> torch.Tensor:
        """Log-probabilities of the next token after ``tokens`` (-inf for tokens not listed)."""
        row = torch.full((self.info.vocab_size,), -math.inf)
        for word, prob in self.distribution(tokens).items():
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

    def extend(self, tokens: list[int], cache: object | None, keep: int) -> tuple[torch.Tensor, object]:
        """Append ``tokens`` to a one-row cache (``None``: none yet); logits ``[keep, vocab]`` after each of the
        last ``keep`` prefixes (see :meth:`explorer.models.hf.HFCausalLM.extend`)."""
        held = () if cache is None else _one_row(cache)
        row = (*held, *(int(t) for t in tokens))
        if not 1 <= keep <= len(tokens):
            raise ExplorerError(f"keep={keep} is invalid: expected 1 to {len(tokens)} (the tokens fed)")
        logits = torch.stack([self._logits(row[:end]) for end in range(len(row) - keep + 1, len(row) + 1)])
        return logits, _Rows((row,))

    def crop(self, cache: object, length: int) -> object:
        """The first ``length`` tokens of a one-row cache."""
        return _Rows((_one_row(cache)[:length],))

    def cache_length(self, cache: object) -> int:
        """Number of tokens a one-row cache holds."""
        return len(_one_row(cache))

    def select(self, cache: object, rows: torch.Tensor) -> object:
        """Rows by index."""
        assert isinstance(cache, _Rows)
        return _Rows(tuple(cache.rows[i] for i in rows.tolist()))


def _one_row(cache: object) -> tuple[int, ...]:
    """The tokens of a one-row toy cache."""
    if not isinstance(cache, _Rows) or len(cache.rows) != 1:
        raise ExplorerError("expected the one-row cache that extend returned")
    return cache.rows[0]


def _check_termination(model: TableModel) -> None:
    """Every context reachable from the table's own contexts must be able to reach eos (no endless cycles).

    States are the table's contexts; emitting a token moves to the longest listed suffix of context + token.
    """
    eos = model.tokenizer.ids[EOS]
    states = list(model.table)
    edges: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
    ending: set[tuple[int, ...]] = set()
    for state in states:
        edges[state] = set()
        for word, prob in model.table[state].items():
            token = model.tokenizer.ids[word]
            if prob <= 0:
                continue
            if token == eos:
                ending.add(state)
                continue
            nxt = (*state, token)
            target = next((nxt[cut:] for cut in range(len(nxt) + 1) if nxt[cut:] in model.table), None)
            if target is None:
                ending.add(state)  # falls off the table: the model ends with eos there
            else:
                edges[state].add(target)
    can_end = set(ending)
    changed = True
    while changed:
        changed = False
        for state in states:
            if state not in can_end and edges[state] & can_end:
                can_end.add(state)
                changed = True
    stuck = [s for s in states if s not in can_end]
    if stuck:
        context = model.tokenizer.decode(list(stuck[0])) or "''"
        raise TableError(f"toy model {model.info.name!r}: from {context!r} the sequence can never end "
                         "(a cycle without eos)")


def _from_document(doc: object, default_name: str) -> TableModel:
    """A table model from a parsed JSON/YAML document."""
    if not isinstance(doc, Mapping) or "table" not in doc:
        raise TableError(f"toy model {default_name!r}: expected a mapping with a 'table' entry")
    eos = doc.get("eos", EOS)
    if eos != EOS:
        raise TableError(f"toy model {default_name!r}: 'eos' must be {EOS!r}")
    tokens = doc.get("tokens")
    if tokens is not None and (not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens)):
        raise TableError(f"toy model {default_name!r}: 'tokens' must be a list of words")
    return TableModel(str(doc.get("name", default_name)), doc["table"], tokens=tokens,
                      description=str(doc.get("description", "")), prompt=str(doc.get("prompt", "")),
                      title=str(doc.get("title", "")))


def load_table(path: str | Path) -> TableModel:
    """A toy model from a ``.json`` or ``.yaml`` file (validated; at most 1 MiB)."""
    file = Path(path)
    if file.stat().st_size > MAX_TABLE_BYTES:
        raise TableError(f"toy table {str(file)!r} is larger than {MAX_TABLE_BYTES} bytes")
    text = file.read_text(encoding="utf-8")
    try:
        doc = _parse(text, yaml_format=file.suffix in (".yaml", ".yml"))
    except Exception as error:  # json.JSONDecodeError or yaml.YAMLError: either way, one line
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TableError(f"toy table {str(file)!r} is not valid: {first}") from None
    return _from_document(doc, file.stem)


def _parse(text: str, *, yaml_format: bool) -> Any:
    """Parse JSON, or YAML with the safe loader (no object construction)."""
    if yaml_format:
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def builtin_toys() -> dict[str, TableModel]:
    """The teaching tables shipped with the package, by name (``toy:<name>`` in ``load_model``)."""
    folder = resources.files("explorer") / "data" / "toys"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            doc = json.loads(entry.read_text(encoding="utf-8"))
            doc["name"] = TOY_PREFIX + doc.get("name", entry.name[:-5])
            model = _from_document(doc, doc["name"])
            out[model.info.name] = model
    return out
