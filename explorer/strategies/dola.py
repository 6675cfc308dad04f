"""DoLa, decoding by contrasting layers: greedy decoding on the difference between the final layer's log-probabilities
and those of an earlier ("premature") layer, the one whose distribution differs most from the final one.

Each step, as the reference (transformers 4.55.4 ``_dola_decoding``) does: one forward with every layer's hidden
states; the LM head read off each candidate premature layer's last hidden state (no final norm); the candidate whose
distribution has the largest Jensen-Shannon divergence from the final layer's is contrasted; tokens whose final
probability is below a tenth of the best token's are cut (the plausibility filter); the remaining tokens' contrast
scores ``log p_final - log p_premature`` go through the processors (repetition penalty, as the reference's guide
advises, ...), and the best is the token. The step records all of it (:class:`~explorer.trace.LayerContrast`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from explorer.errors import ParameterError
from explorer.models.base import CausalLM, Layered
from explorer.params import DecodeParams
from explorer.strategies.base import Setup
from explorer.strategies.greedy import Greedy, RowsState
from explorer.strategies.registry import StrategySpec, register
from explorer.trace import DolaCandidate, LayerContrast, Step

if TYPE_CHECKING:
    from explorer.engine import Run

__all__ = ["DOLA", "Contrast", "candidate_layers", "contrast", "layered"]

#: The plausibility cut keeps tokens whose final probability is at least this fraction of the best token's.
RELATIVE_TOP = 0.1
#: What a cut token's premature log-probability is set to before the difference (the reference's value).
_BASE_FILTER = -1e-3


def candidate_layers(dola_layers: str | tuple[int, ...], layers: int, tied: bool) -> tuple[int, ...]:
    """The premature layers DoLa chooses from, by the reference's rules: with tied embeddings the lowest layers are
    skipped (their LM head reading is nearly the identity: from layer 2, or 1 in a 2-layer model); ``low`` is every
    second layer of the lower half, ``high`` of the upper half (for models of more than 40 layers the first 20 and
    last 20 layers); a list is taken as given (``check_layers`` has refused indices outside the model).

    >>> candidate_layers("high", 30, True), candidate_layers("low", 30, True)
    ((15, 17, 19, 21, 23, 25, 27, 29), (2, 4, 6, 8, 10, 12, 14))
    >>> candidate_layers("low", 2, True), candidate_layers("high", 2, True), candidate_layers((8, 16), 30, True)
    ((1,), (1,), (8, 16))
    """
    if not isinstance(dola_layers, str):
        return tuple(i for i in dola_layers if i < layers)
    start = 0 if not tied else 2 if layers > 2 else 1 if layers == 2 else 0
    if dola_layers == "low":
        if start == layers // 2:
            return (start,)
        return tuple(range(start, layers // 2, 2) if layers <= 40 else range(start, 20, 2))
    return tuple(range(layers // 2, layers, 2) if layers <= 40 else range(layers - 20, layers, 2))


def layered(model: CausalLM, what: str) -> Layered:
    """``model`` as a :class:`Layered` model, or a one-line error naming ``what`` needed it."""
    if not isinstance(model, Layered) or model.info.num_layers == 0:
        raise ParameterError("strategy", what, f"a model with layers: {model.info.name} has none to read "
                             "(a next-token table)")
    return model


def check_layers(model: CausalLM, p: DecodeParams) -> None:
    """``dola_layers`` fits the model: layer indices below its number of layers (the final layer is what DoLa
    contrasts with), and at least one candidate layer."""
    lm = layered(model, "dola")
    total = lm.info.num_layers
    if not isinstance(p.dola_layers, str):
        outside = [i for i in p.dola_layers if i >= total]
        if outside:
            raise ParameterError("dola_layers", ",".join(map(str, p.dola_layers)),
                                 f"layer indices from 0 to {total - 1} ({lm.info.name} has {total} layers; "
                                 f"{outside[0]} is outside)")


@torch.no_grad()
def contrast(final_logits: torch.Tensor, premature: dict[int, torch.Tensor]) -> Contrast:
    """DoLa's next-token logits for one row (``final_logits``: ``[1, vocab]``; ``premature``: each candidate layer's
    LM-head logits ``[1, vocab]``, in order), exactly as the reference computes them, with what it decided."""
    layers = tuple(premature)
    stacked = torch.stack([premature[i] for i in layers], dim=0)  # [layers, 1, vocab]
    average = 0.5 * (F.softmax(final_logits, dim=-1)[None, :, :] + F.softmax(stacked, dim=-1))
    kl1 = F.kl_div(F.log_softmax(final_logits, dim=-1)[None, :, :], average, reduction="none").mean(-1)
    kl2 = F.kl_div(F.log_softmax(stacked, dim=-1), average, reduction="none").mean(-1)
    divergences = (0.5 * (kl1 + kl2)).mean(-1)  # [layers]; with one layer there is nothing to choose
    chosen = layers[int(divergences.argmax().item())] if len(layers) > 1 else layers[0]
    final, base = _relative_top_filter(final_logits, premature[chosen])
    return Contrast(final - base, final, base, layers, tuple(divergences.tolist()), chosen,
                    int((final > -math.inf).sum()))


def _relative_top_filter(scores: torch.Tensor, baseline: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both rows as log-probabilities, with the tokens below the plausibility threshold cut: ``-inf`` in the final
    row, a small constant in the premature one (the reference's ``_relative_top_filter``, one kept token at least)."""
    final = scores.log_softmax(dim=-1)
    base = baseline.log_softmax(dim=-1)
    best = torch.max(final, dim=-1).values  # the reference sorts the vocabulary for this: its first value, the max
    threshold = torch.min(best, best + math.log(RELATIVE_TOP)).unsqueeze(-1)
    cut = final < threshold
    base[cut] = _BASE_FILTER
    final[cut] = -math.inf
    return final, base


@dataclass(frozen=True)
class Contrast:
    """One step's contrast: the logits DoLa decides on, both rows it came from (cut), and the choice of layer."""

    logits: torch.Tensor
    final: torch.Tensor
    base: torch.Tensor
    layers: tuple[int, ...]
    divergences: tuple[float, ...]
    chosen: int
    plausible: int


def _record(c: Contrast, final_logits: torch.Tensor, premature: dict[int, torch.Tensor], token: int, total: int,
            setup: Setup) -> LayerContrast:
    """The step's record: the layers and divergences, and the tokens worth seeing (the final layer's best, the best
    contrast scores, the chosen one) with both log-probabilities; the chosen token through every layer read."""
    k = max(setup.params.record_top_k, 1)
    final_lp = torch.log_softmax(final_logits[0], dim=-1)
    premature_lp = torch.log_softmax(premature[c.chosen][0], dim=-1)
    by_final = torch.topk(final_lp, min(k, final_lp.numel())).indices.tolist()
    by_contrast = torch.topk(c.logits[0], min(k, c.plausible)).indices.tolist()
    tokens = list(dict.fromkeys([token, *by_contrast, *by_final]))
    scores = c.logits[0]
    candidates = tuple(
        DolaCandidate(t, setup.token_text(t), float(final_lp[t]), float(premature_lp[t]), float(scores[t]),
                      bool(scores[t] > -math.inf))
        for t in sorted(tokens, key=lambda t: (-float(scores[t]), -float(final_lp[t]))))
    through = [premature[i][0] for i in c.layers] + [final_logits[0]]
    layer_probs = tuple((float(torch.softmax(row, -1)[token]), int((row > row[token]).sum())) for row in through)
    return LayerContrast(c.layers, c.divergences, c.chosen, total, c.plausible, candidates, layer_probs)


def drive(model: CausalLM, spec: StrategySpec, setup: Setup, on_step: Callable[[Step], None] | None,
          should_stop: Callable[[], bool] | None) -> Run:
    """Run DoLa to the end: forward with hidden states, contrast, greedy step on the contrast; repeat.

    ``should_stop`` is asked between steps; Ctrl-C ends the run too; either way the partial trace is kept.
    """
    from explorer.engine import Run

    began = time.perf_counter()
    lm = layered(model, spec.name)
    total = lm.info.num_layers
    layers = candidate_layers(setup.params.dola_layers, total, lm.tied)
    greedy = Greedy()
    state: RowsState = greedy.initial(setup)[0]
    steps: list[Step] = []
    stop = "running"
    try:
        with torch.inference_mode():
            clock = time.perf_counter()
            logits, hidden, cache = lm.forward_layers(torch.tensor([list(setup.prompt_ids)]), None)
            while True:
                premature = {i: lm.head(hidden[i][:, -1, :]) for i in layers}
                forward_ms, clock = (time.perf_counter() - clock) * 1000.0, time.perf_counter()
                c = contrast(logits, premature)
                outcome = greedy.step(state, c.logits, len(steps), setup)
                state = outcome.state
                token = int(state.sequences[0, -1])
                record = _record(c, logits, premature, token, total, setup)
                step = replace(outcome.step, dola=record, forward_ms=forward_ms,
                               search_ms=(time.perf_counter() - clock) * 1000.0)
                steps.append(step)
                if on_step is not None:
                    on_step(step)
                if outcome.done or outcome.tokens is None:
                    break
                if should_stop is not None and should_stop():
                    stop = "stopped"
                    break
                clock = time.perf_counter()
                logits, hidden, cache = lm.forward_layers(outcome.tokens[:, None], cache)
    except KeyboardInterrupt:
        stop = "interrupted"
    if stop == "running":
        stop = greedy.stop_reason(state)
    with torch.inference_mode():
        results = greedy.results(state, setup)
    return Run(tuple(steps), results, stop, (time.perf_counter() - began) * 1000.0)


DOLA = register(StrategySpec(
    "dola", "DoLa: greedy on the final layer's log-probabilities minus those of the most different earlier layer",
    Greedy(), "rows", uses=frozenset({"dola"}), needs=frozenset({"hidden_states"}), driver=drive,
    check_model=check_layers))
