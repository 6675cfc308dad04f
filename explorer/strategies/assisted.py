"""Assisted decoding: a draft proposes several tokens, the target checks them all in one forward.

``assisted`` verifies greedily (its text is exactly greedy's); ``assisted-sample`` by speculative sampling (its text
is distributed exactly as ``sample``'s). The draft comes from a draft model (``assistant_model``), from the target's
own first layers (``assistant_early_exit``) or from n-gram lookup in the text so far (``prompt_lookup_num_tokens``).
One trace step is one verification forward of the target, the prompt folded into the first, as the reference
(transformers 5.x ``_assisted_decoding``) counts them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, cast

import torch

from explorer.errors import ParameterError
from explorer.models.base import CausalLM, Verifier
from explorer.params import PARAMS, DecodeParams
from explorer.processors.base import Context
from explorer.strategies._drafts import DraftModel, ModelDraft, PromptLookup, Source
from explorer.strategies._speculation import Round, Text, record_round
from explorer.strategies._universal import Reencoded, Translated, hf_tokenizer
from explorer.strategies._verify import verify_greedy, verify_sampling
from explorer.strategies.base import Setup, masked_rows, nothing_to, score_logits
from explorer.strategies.greedy import Greedy
from explorer.strategies.registry import StrategySpec, register
from explorer.trace import Result, Step

if TYPE_CHECKING:
    from explorer.engine import Run

__all__ = ["ASSISTED", "ASSISTED_SAMPLE", "check_models", "drive", "same_vocabulary"]

_STOPS = {"eos": "eos", "max_length": "max_new_tokens", "stop_string": "stop_string", "max_time": "max_time"}


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def drive(model: CausalLM, spec: StrategySpec, setup: Setup, on_step: Callable[[Step], None] | None,
          should_stop: Callable[[], bool] | None) -> Run:
    """Run assisted decoding to the end: draft, verify in one target forward, keep, take back the rest; repeat.

    ``should_stop`` is asked between rounds; Ctrl-C ends the run too; either way the partial trace is kept.
    """
    from explorer.engine import Run

    began = time.perf_counter()
    target = _verifier(model, "the target")
    source = _source(target, setup, spec.sampling)
    text, cache, stop = Text(setup.prompt_ids), None, "running"
    steps: list[Step] = []
    try:
        with torch.inference_mode():
            while text.finished is None:
                if should_stop is not None and should_stop():
                    stop = "stopped"
                    break
                step, text, cache = _round(target, source, setup, text, cache, len(steps), spec.sampling)
                steps.append(step)
                if on_step is not None:
                    on_step(step)
    except KeyboardInterrupt:
        stop = "interrupted"
    if stop == "running" and text.finished is not None:
        stop = _STOPS[text.finished.reason]
    return Run(tuple(steps), (_result(text, setup, len(steps)),), stop, _ms(began))


def _round(target: Verifier, source: Source, setup: Setup, text: Text, cache: object | None, index: int,
           sampling: bool) -> tuple[Step, Text, object]:
    """One round: the draft, the target's forward over it, the verdict, the cache taken back, the record."""
    draft = source.propose(list(text.ids))
    k, clock = len(draft.tokens), time.perf_counter()
    held = 0 if cache is None else target.cache_length(cache)  # the target's cache lacks the text's last token
    logits, cache = target.extend([*text.ids[held:], *draft.tokens], cache, k + 1)  # [k + 1, vocab]
    forward_ms, clock = _ms(clock), time.perf_counter()
    context = Context(setup.prompt_length)
    scored = [score_logits(logits[i : i + 1], torch.tensor([[*text.ids, *draft.tokens[:i]]]), setup, context)
              for i in range(k + 1)]
    processed = torch.cat([final for _, final in scored])  # [k + 1, vocab]: the target's processed scores
    masked = masked_rows(processed).tolist()
    if masked[0]:
        raise nothing_to("sample" if sampling else "choose", index, setup)
    if any(masked):  # nothing may follow some drafted prefix: check only the draft before it
        k = masked.index(True) - 1
        draft = replace(draft, tokens=draft.tokens[:k], scores=None if draft.scores is None else draft.scores[:k])
        scored, processed = scored[: k + 1], processed[: k + 1]
    verdict = (verify_sampling(processed, draft.tokens, draft.scores, setup.generator) if sampling
               else verify_greedy(processed, draft.tokens))
    kept = _cut(verdict.tokens, setup, len(text.ids))
    cache = target.crop(cache, len(text.ids) + len(kept) - 1)  # the accepted drafted tokens stay, the rest go
    source.update(len(kept) - 1, k)
    r = Round(index, draft, tuple(s for s, _ in scored), verdict, kept, source.name, sampling, source.length)
    step, text = record_round(text, r, setup)
    return replace(step, forward_ms=forward_ms, search_ms=_ms(clock)), text, cache


def _cut(tokens: tuple[int, ...], setup: Setup, length: int) -> tuple[int, ...]:
    """The verified tokens within the budget and through the first eos (the reference cuts both)."""
    tokens = tokens[: setup.max_length - length]
    ends = [i for i, t in enumerate(tokens) if t in setup.eos_token_ids]
    return tokens[: ends[0] + 1] if ends else tokens


def _result(text: Text, setup: Setup, steps: int) -> Result:
    """The one returned sequence (as it stands when the run was stopped early)."""
    tokens = text.ids[setup.prompt_length :]
    fin = text.finished
    return Result(0, tokens, setup.decode(list(tokens)), text.score, fin.step if fin else max(steps - 1, 0),
                  bool(tokens) and tokens[-1] in setup.eos_token_ids, source=fin.id if fin else text.hyp_id)


def _verifier(model: object, role: str) -> Verifier:
    """``model`` as a :class:`Verifier`, or a one-line error."""
    if not isinstance(model, Verifier):
        raise ParameterError("strategy", "assisted", f"{role} to feed several tokens per forward and crop its cache "
                             f"({type(model).__name__} cannot)")
    return model


def _source(target: Verifier, setup: Setup, sampling: bool) -> Source:
    """The run's candidate source: its draft model (loaded once per process), the target's first layers, or prompt
    lookup."""
    p = setup.params
    if p.prompt_lookup_num_tokens is not None:
        return PromptLookup(setup)
    if p.assistant_early_exit is not None:
        return ModelDraft(_early_exit(target, p.assistant_early_exit), setup, sampling, "assistant_early_exit")
    from explorer.models.registry import load_model

    draft = _verifier(load_model(str(p.assistant_model), p.assistant_dtype), "a draft model")
    if same_vocabulary(target, draft):
        return ModelDraft(draft, setup, sampling)
    target_tokenizer, draft_tokenizer = hf_tokenizer(target), hf_tokenizer(draft)
    if target_tokenizer is None or draft_tokenizer is None:
        raise _untranslatable(target, draft, str(p.assistant_model))
    if sampling:  # the reference's universal speculative decoding: drafts of shared tokens, q on the target's
        return Translated(draft, target_tokenizer, draft_tokenizer, setup)
    return Reencoded(draft, target_tokenizer, draft_tokenizer, setup)


def same_vocabulary(target: CausalLM, draft: CausalLM) -> bool:
    """Whether ``draft`` has the target's vocabulary: the same size and the same token texts (sampled: every
    ``size // 2000``-th id)."""
    size = target.info.vocab_size
    if draft.info.vocab_size != size:
        return False
    step = max(1, size // 2000)
    return all(draft.tokenizer.token_text(t) == target.tokenizer.token_text(t) for t in range(0, size, step))


def _untranslatable(target: CausalLM, draft: CausalLM, name: str) -> ParameterError:
    """The one-line error for a draft with another vocabulary that cannot be re-encoded through text."""
    which = target.info.name if hf_tokenizer(target) is None else draft.info.name
    return ParameterError("assistant_model", name, "a draft with the target's vocabulary, or transformers tokenizers "
                          f"on both sides to re-encode through text ({which} has none: a toy table's words)")


def _early_exit(target: CausalLM, layers: int) -> DraftModel:
    """The target's first ``layers`` layers as a draft, or a one-line error (a model without layers, or too few)."""
    total = target.info.num_layers
    early_exit = getattr(target, "early_exit", None)
    if early_exit is None or total == 0:
        raise ParameterError("assistant_early_exit", layers, f"unset for {target.info.name}: an early exit needs a "
                             "transformer's layers (a toy table has none)")
    if layers >= total:
        raise ParameterError("assistant_early_exit", layers, f"below the target's {total} layers (1 to {total - 1}: "
                             "the draft exits before the last layer)")
    return cast(DraftModel, early_exit(layers))


def check_models(model: CausalLM, p: DecodeParams) -> None:
    """A candidate source is set, the target can verify, and a draft model loads and shares its vocabulary (same
    size, same tokens) or can be re-encoded through text (universal assisted decoding: transformers tokenizers on
    both sides), or the early exit is within the target's layers. (Checked when a run is planned:
    parameters alone may still lack a source.)"""
    _verifier(model, "the target")
    if p.assistant_model is None and p.prompt_lookup_num_tokens is None and p.assistant_early_exit is None:
        raise ParameterError("assistant_model", None, "a draft model name, or set prompt_lookup_num_tokens or "
                             "assistant_early_exit instead (assisted decoding needs a candidate source)")
    if p.assistant_early_exit is not None:
        _early_exit(model, p.assistant_early_exit)
        return
    if p.assistant_model is None:
        return
    from explorer.models.registry import load_model

    draft = _verifier(load_model(p.assistant_model, p.assistant_dtype), "a draft model")
    if not same_vocabulary(model, draft) and (hf_tokenizer(model) is None or hf_tokenizer(draft) is None):
        raise _untranslatable(model, draft, p.assistant_model)


_DEFAULTS = {prm.name: prm.default for prm in PARAMS}
_MODEL_ONLY = ("assistant_dtype", "num_assistant_tokens", "num_assistant_tokens_schedule",
               "assistant_confidence_threshold")


def _rules(p: DecodeParams) -> None:
    """At most one candidate source, and no knob of another one."""
    if p.assistant_model is not None and p.prompt_lookup_num_tokens is not None:
        raise ParameterError("prompt_lookup_num_tokens", p.prompt_lookup_num_tokens,
                             "unset while assistant_model is set (one candidate source at a time)")
    if p.assistant_early_exit is not None and (p.assistant_model is not None or p.prompt_lookup_num_tokens is not None):
        other = "assistant_model" if p.assistant_model is not None else "prompt_lookup_num_tokens"
        raise ParameterError("assistant_early_exit", p.assistant_early_exit,
                             f"unset while {other} is set (one candidate source at a time)")
    if p.assistant_early_exit is not None and p.assistant_dtype != _DEFAULTS["assistant_dtype"]:
        raise ParameterError("assistant_dtype", p.assistant_dtype,
                             "unset with assistant_early_exit (the early exit runs the target's own weights)")
    if p.prompt_lookup_num_tokens is None and p.max_matching_ngram_size is not None:
        raise ParameterError("max_matching_ngram_size", p.max_matching_ngram_size,
                             "unset unless prompt_lookup_num_tokens is set")
    if p.prompt_lookup_num_tokens is not None:
        for name in _MODEL_ONLY:
            if getattr(p, name) != _DEFAULTS[name]:
                raise ParameterError(name, getattr(p, name), "unset with prompt lookup (it applies to a draft model)")


# ``steps``: with an empty draft a round is exactly one step of greedy (or sample); the driver runs the search.
ASSISTED = register(StrategySpec(
    "assisted", "a draft proposes tokens, the target keeps those that are its own best: greedy's text in fewer "
    "target forwards", Greedy(), "rows", uses=frozenset({"assisted"}), rules=_rules, driver=drive,
    check_model=check_models))
ASSISTED_SAMPLE = register(StrategySpec(
    "assisted-sample", "speculative sampling: keep a drafted token with probability min(1, p/q), else draw from "
    "max(0, p - q): distributed exactly as sample", Greedy(sampling=True), "rows",
    uses=frozenset({"assisted", "sampling"}), rules=_rules, driver=drive, check_model=check_models))
