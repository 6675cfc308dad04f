"""The logit lens: what each layer of a model "would say" next, read by applying the final norm and the LM head to
that layer's hidden state. Computed on demand for any text (a node of any run), never stored in a trace.

>>> import explorer
>>> lm = explorer.load_model("tiny-random")
>>> view = logit_lens(lm, [5, 6, 7], top=3)
>>> [layer.layer for layer in view.layers], len(view.layers[0].top)
([0, 1, 2], 3)
>>> grid = lens_grid(lm, [5, 6, 7, 8, 9], prompt_length=3)
>>> grid.probs.shape, grid.ranks.shape
((3, 2), (3, 2))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from explorer.errors import ExplorerError
from explorer.models.base import CausalLM, Layered

__all__ = ["Lens", "LensGrid", "LensLayer", "lens_grid", "logit_lens"]


@dataclass(frozen=True)
class LensLayer:
    """One layer's reading: its ``top`` tokens as ``(token_id, text, probability)``, best first, and, when a token
    was asked about, that token's probability and rank there (0 = the layer's best)."""

    layer: int
    top: tuple[tuple[int, str, float], ...]
    token_prob: float | None
    token_rank: int | None


@dataclass(frozen=True)
class Lens:
    """The logit lens at the end of a text: one reading per layer, 0 (the embeddings) to the last (the model's own
    next-token distribution). ``token`` is the token asked about (the one a run chose next), if any."""

    token_ids: tuple[int, ...]
    token: int | None
    layers: tuple[LensLayer, ...]


@dataclass(frozen=True)
class LensGrid:
    """The logit lens along a generated text: for each layer (rows, 0 to the last) and each generated token
    (columns), that token's probability and rank (0 = the layer's best) in the layer's reading just before it, and
    each layer's best token there (``top_ids``)."""

    tokens: tuple[int, ...]
    texts: tuple[str, ...]
    probs: np.ndarray
    ranks: np.ndarray
    top_ids: np.ndarray
    top_texts: tuple[tuple[str, ...], ...]


def _layered(model: CausalLM) -> Layered:
    if not isinstance(model, Layered) or model.info.num_layers == 0:
        raise ExplorerError(f"the logit lens reads a model's layers: {model.info.name} has none (a next-token table)")
    return model


def _readings(lm: Layered, hidden: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Each layer's logits: the final norm and the LM head on layers 0 to N-1; the last one is normed already."""
    last = len(hidden) - 1
    return [lm.head(h) if i == last else lm.lens(h) for i, h in enumerate(hidden)]


def logit_lens(model: CausalLM, token_ids: Sequence[int], *, top: int = 5, token: int | None = None) -> Lens:
    """What every layer predicts after ``token_ids`` (prompt and generated tokens): its ``top`` tokens and, if
    ``token`` is given, that token's probability and rank. One forward of the text with hidden states.
    """
    lm = _layered(model)
    ids = [int(t) for t in token_ids]
    if token is not None and not 0 <= token < lm.info.vocab_size:
        raise ExplorerError(f"token {token} is invalid: expected 0 <= id < {lm.info.vocab_size}")
    with torch.inference_mode():
        _, hidden, _ = lm.forward_layers(torch.tensor([ids]), None)
        readings = _readings(lm, tuple(h[:, -1, :] for h in hidden))
        out = []
        for layer, logits in enumerate(readings):
            probs = torch.softmax(logits[0], dim=-1)
            values, best = torch.topk(probs, min(top, probs.numel()))
            shown = tuple((int(t), lm.tokenizer.token_text(int(t)), float(v))
                          for t, v in zip(best.tolist(), values.tolist(), strict=True))
            asked = (float(probs[token]), int((probs > probs[token]).sum())) if token is not None else (None, None)
            out.append(LensLayer(layer, shown, *asked))
    return Lens(tuple(ids), token, tuple(out))


def lens_grid(model: CausalLM, token_ids: Sequence[int], prompt_length: int) -> LensGrid:
    """The logit lens for every generated token of ``token_ids`` (prompt first, ``prompt_length`` tokens): one
    forward of the whole text, then each layer read at every position that predicted a generated token."""
    lm = _layered(model)
    ids = [int(t) for t in token_ids]
    if not 1 <= prompt_length < len(ids):
        raise ExplorerError(f"prompt_length={prompt_length} is invalid: expected 1 to {len(ids) - 1} "
                            "(at least one generated token)")
    generated = ids[prompt_length:]
    target = torch.tensor(generated)
    with torch.inference_mode():
        _, hidden, _ = lm.forward_layers(torch.tensor([ids]), None)
        positions = slice(prompt_length - 1, len(ids) - 1)
        probs, ranks, tops = [], [], []
        for logits in _readings(lm, tuple(h[0, positions, :] for h in hidden)):  # [generated, vocab] each
            p = torch.softmax(logits, dim=-1)
            chosen = p.gather(1, target[:, None])  # [generated, 1]
            probs.append(chosen[:, 0].numpy())
            ranks.append((p > chosen).sum(dim=1).numpy())
            tops.append(p.argmax(dim=1).numpy())
    top_ids = np.stack(tops)
    text = lm.tokenizer.token_text
    return LensGrid(tuple(generated), tuple(text(t) for t in generated), np.stack(probs), np.stack(ranks), top_ids,
                    tuple(tuple(text(int(t)) for t in row) for row in top_ids))
