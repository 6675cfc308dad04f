"""The Python API: ``decode(model, prompt, strategy, **params) -> Trace``."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from explorer.constraints import AnyOf, Constraint, Phrase
from explorer.engine import Run, run, run_many
from explorer.errors import ParameterError
from explorer.models.base import CausalLM
from explorer.params import PARAMS, DecodeParams
from explorer.processors import build_processors
from explorer.processors.allowed import allowed_text
from explorer.stopping import Criteria, StopStrings
from explorer.strategies import REGISTRY, Setup, StrategySpec, get, make_params
from explorer.trace import Step, Trace

__all__ = [
    "ConstraintSpec", "Plan", "compare", "decode", "parse_constraints", "plan", "run_plans", "tokenize_prompt",
]

#: A constraint as the API takes it: a phrase (text or token ids), a list of alternatives, or a built constraint.
ConstraintSpec = str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]] | Constraint


def tokenize_prompt(model: CausalLM, prompt: str | Sequence[int], *, chat: bool = False) -> tuple[int, ...]:
    """Prompt token ids: text as written (no special tokens added), or wrapped in the chat template.

    Token ids are taken as given. An empty prompt, or one that tokenizes to nothing, raises ``ParameterError``.
    """
    if isinstance(prompt, str):
        if not prompt.strip() and not chat:
            raise ParameterError("prompt", prompt, "non-empty text")
        ids = tuple(model.tokenizer.chat(prompt) if chat else model.tokenizer.encode(prompt))
    else:
        ids = tuple(int(t) for t in prompt)
        if not ids:
            raise ParameterError("prompt", list(prompt), "a non-empty list of token ids")
        if chat:
            raise ParameterError("chat", chat, "False when the prompt is given as token ids")
        bad = [t for t in ids if not 0 <= t < model.info.vocab_size]
        if bad:
            raise ParameterError("prompt", bad[0], f"token ids in [0, {model.info.vocab_size})")
    if not ids:
        raise ParameterError("prompt", prompt, "text that tokenizes to at least one token")
    return ids


def _phrase_ids(model: CausalLM, item: str | Sequence[int], name: str) -> tuple[tuple[int, ...], str | None]:
    """Token ids of one phrase given as text (tokenized as written) or ids."""
    if isinstance(item, str):
        if not item:
            raise ParameterError(name, item, "a non-empty phrase")
        ids = tuple(model.tokenizer.encode(item))
        if not ids:
            raise ParameterError(name, item, "a phrase that tokenizes to at least one token")
        return ids, item
    ids = tuple(int(t) for t in item)
    if not ids:
        raise ParameterError(name, list(item), "a non-empty list of token ids")
    bad = [t for t in ids if not 0 <= t < model.info.vocab_size]
    if bad:
        raise ParameterError(name, bad[0], f"token ids in [0, {model.info.vocab_size})")
    return ids, None


def parse_constraints(model: CausalLM, specs: Sequence[ConstraintSpec]) -> tuple[Constraint, ...]:
    """Turn API constraint specs into :class:`Phrase` / :class:`AnyOf` values.

    ``" flour"`` and ``[1234, 56]`` are phrases; ``[" cake", " pie"]`` and ``[[1, 2], [3]]`` are "any of".
    """
    out: list[Constraint] = []
    for spec in specs:
        if isinstance(spec, Phrase | AnyOf):
            out.append(spec)
        elif isinstance(spec, str) or (isinstance(spec, Sequence) and spec and isinstance(spec[0], int)):
            ids, text = _phrase_ids(model, spec, "constraint")  # type: ignore[arg-type]
            out.append(Phrase(ids, text))
        elif isinstance(spec, Sequence) and spec:
            pairs = [_phrase_ids(model, option, "constraint option") for option in spec]  # type: ignore[arg-type]
            texts = tuple(t for _, t in pairs if t is not None)
            out.append(AnyOf(tuple(ids for ids, _ in pairs), texts if len(texts) == len(pairs) else None))
        else:
            raise ParameterError("constraint", spec, "a phrase, token ids, or a non-empty list of alternatives")
    eos = set(model.info.eos_token_ids)
    for c in out:
        if any(t in eos for option in (c.options if isinstance(c, AnyOf) else (c.token_ids,)) for t in option):
            shown = (c.text or list(c.token_ids)) if isinstance(c, Phrase) else [list(o) for o in c.options]
            raise ParameterError("constraint", shown, "tokens without eos (a hypothesis ends at eos)")
    return tuple(out)


def _tokenized(model: CausalLM, p: DecodeParams) -> DecodeParams:
    """``p`` with the phrases of its token-valued parameters tokenized as written, and every token id checked."""
    changes = {}
    for prm in PARAMS:
        value = getattr(p, prm.name)
        resolved = prm.check.resolve(prm.name, value, _tokenizer(model, prm.name))
        if resolved != value:
            changes[prm.name] = resolved
    return replace(p, **changes) if changes else p


def _tokenizer(model: CausalLM, name: str) -> Callable[[str | tuple[int, ...]], tuple[int, ...]]:
    """Checked token ids of a phrase (tokenized as written) or of ids, errors naming parameter ``name``."""

    def tokens(item: str | tuple[int, ...]) -> tuple[int, ...]:
        return _phrase_ids(model, item, name)[0]

    return tokens


@dataclass(frozen=True)
class Plan:
    """One run, validated and ready: its strategy and everything fixed for it."""

    strategy: str
    setup: Setup
    prompt: str | None
    chat: bool

    @property
    def spec(self) -> StrategySpec:
        """The strategy's registry entry."""
        return get(self.strategy)


def plan(
    model: CausalLM,
    prompt: str | Sequence[int],
    strategy: str = "beam",
    *,
    chat: bool = False,
    constraints: Sequence[ConstraintSpec] = (),
    bad_words: Sequence[str] = (),
    **params: Any,
) -> Plan:
    """Validate a run's arguments (as :func:`decode` takes them) without decoding anything.

    ``bad_words`` (phrases) is added to ``bad_words_ids``, which takes phrases itself too.
    """
    spec = get(strategy)
    if spec.sampling and params.get("seed") is None:
        params["seed"] = random.SystemRandom().randrange(2**31)
    if bad_words:
        params["bad_words_ids"] = (*tuple(params.get("bad_words_ids") or ()), *bad_words)
    p = _tokenized(model, make_params(strategy, **params))
    prompt_ids = tokenize_prompt(model, prompt, chat=chat)
    _check_context(model, prompt_ids, p)
    parsed = parse_constraints(model, constraints)
    if spec.constraints and not parsed:
        raise ParameterError("constraints", [], f"at least one constraint for strategy {strategy!r}")
    if not spec.constraints and parsed:
        raise ParameterError("constraints", list(constraints), "none unless the strategy takes constraints "
                             f"({', '.join(s.name for s in REGISTRY.values() if s.constraints)})")
    _check_needs(model, spec)
    if spec.check_model is not None:
        spec.check_model(model, p)
    return Plan(strategy, _setup(model, spec, prompt_ids, p, parsed), prompt if isinstance(prompt, str) else None,
                chat)


def _check_needs(model: CausalLM, spec: StrategySpec) -> None:
    """The model provides what the strategy needs besides next-token logits."""
    if "hidden_states" in spec.needs and model.info.num_layers == 0:
        raise ParameterError("strategy", spec.name, f"a strategy that needs no hidden states: {model.info.name} "
                             "has no layers to read (a next-token table)")


def _trace(model: CausalLM, plan: Plan, outcome: Run, meta: dict[str, Any] | None = None) -> Trace:
    """The trace of a finished run (``meta["dtype"]`` names a precision other than float32)."""
    setup = plan.setup
    meta = dict(meta or {})
    if model.info.dtype != "float32":
        meta["dtype"] = model.info.dtype
    return Trace(
        model=model.info.name,
        strategy=plan.strategy,
        prompt=plan.prompt,
        prompt_token_ids=setup.prompt_ids,
        params={**setup.params.to_dict(), "chat": plan.chat},
        constraints=tuple(_constraint_dict(c) for c in setup.constraints),
        processors=tuple(proc.name for proc in setup.processors),
        eos_token_ids=model.info.eos_token_ids,
        steps=outcome.steps,
        results=outcome.results,
        stop_reason=outcome.stop_reason,
        total_ms=outcome.total_ms,
        meta=meta,
    )


def decode(
    model: CausalLM,
    prompt: str | Sequence[int],
    strategy: str = "beam",
    *,
    chat: bool = False,
    constraints: Sequence[ConstraintSpec] = (),
    bad_words: Sequence[str] = (),
    on_step: Callable[[Step], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **params: Any,
) -> Trace:
    """Decode ``prompt`` with ``strategy`` and record every step.

    ``params`` use the reference's names (``num_beams``, ``num_beam_groups``, ``diversity_penalty``,
    ``length_penalty``, ``early_stopping``, ``num_return_sequences``, ``max_new_tokens``, ``min_new_tokens``,
    ``no_repeat_ngram_size``, ``repetition_penalty``, ``bad_words_ids``, ``temperature``, ``top_k``, ``top_p``,
    ``min_p``, ``typical_p``, ``seed``) plus ``record_top_k`` (candidates recorded per hypothesis, default 10).

    >>> import explorer
    >>> model = explorer.load_model("tiny-random")
    >>> trace = explorer.decode(model, [5, 6, 7], strategy="beam", num_beams=2, max_new_tokens=4)
    >>> len(trace.results[0].token_ids) <= 4
    True
    """
    p = plan(model, prompt, strategy, chat=chat, constraints=constraints, bad_words=bad_words, **params)
    return _trace(model, p, run(model, p.spec, p.setup, on_step=on_step, should_stop=should_stop))


def compare(
    model: CausalLM,
    prompt: str | Sequence[int],
    runs: Mapping[str, Mapping[str, Any]],
    *,
    chat: bool = False,
    on_step: Callable[[str, Step], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Trace]:
    """Several strategies on one prompt in one run: one prefill, one batched forward per step.

    ``runs`` maps a name to :func:`decode`'s keyword arguments (``strategy`` included). The results equal
    separate runs' token for token (scores to float rounding: a row's logits depend slightly on its batch).

    >>> import explorer
    >>> model = explorer.load_model("tiny-random")
    >>> traces = explorer.compare(model, [5, 6, 7], {"greedy": {"strategy": "greedy"},
    ...                                              "beam": {"strategy": "beam", "num_beams": 3}})
    >>> sorted(traces)
    ['beam', 'greedy']
    """
    if not runs:
        raise ParameterError("runs", {}, "at least one named run")
    plans = {name: plan(model, prompt, chat=chat, **dict(spec)) for name, spec in runs.items()}
    return run_plans(model, plans, on_step=on_step, should_stop=should_stop)


def run_plans(
    model: CausalLM,
    plans: Mapping[str, Plan],
    *,
    on_step: Callable[[str, Step], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Trace]:
    """Decode runs already checked by :func:`plan` (all on one prompt) side by side, as :func:`compare` does:
    for callers that plan each run themselves, e.g. to report a refused run on its own and go on with the rest."""
    jobs = {name: (p.spec, p.setup) for name, p in plans.items()}
    outcomes = run_many(model, jobs, on_step, should_stop)
    meta = {"batched_with": sorted(plans)} if len(plans) > 1 else {}
    return {name: _trace(model, p, outcomes[name], meta) for name, p in plans.items()}


def _check_context(model: CausalLM, prompt_ids: tuple[int, ...], p: DecodeParams) -> None:
    """The prompt plus the new tokens must fit the model's context."""
    limit = model.info.max_context
    if len(prompt_ids) >= limit:
        raise ParameterError("prompt", f"<{len(prompt_ids)} tokens>", f"fewer than {limit} tokens (model context)")
    if len(prompt_ids) + p.max_new_tokens > limit:
        room = limit - len(prompt_ids)
        raise ParameterError("max_new_tokens", p.max_new_tokens,
                             f"at most {room} (prompt of {len(prompt_ids)} tokens, context of {limit})")


def _setup(model: CausalLM, spec: StrategySpec, prompt_ids: tuple[int, ...], p: DecodeParams,
           parsed: tuple[Constraint, ...]) -> Setup:
    """Fix everything a strategy needs for this run."""
    info = model.info
    generator = torch.Generator().manual_seed(p.seed) if p.seed is not None else None
    prefix = p.prefix_allowed_tokens_fn
    if p.allowed_words or p.allowed_regex:
        prefix = allowed_text(model.tokenizer, info.vocab_size, info.eos_token_ids, len(prompt_ids),
                              words=p.allowed_words, pattern=p.allowed_regex)
    stop_strings = StopStrings(p.stop_strings, model.tokenizer.token_text) if p.stop_strings else None
    return Setup(
        prompt_ids=prompt_ids,
        params=p,
        processors=build_processors(p, spec, info.eos_token_ids, prefix),
        constraints=parsed,
        eos_token_ids=info.eos_token_ids,
        pad_token_id=info.pad_token_id,
        vocab_size=info.vocab_size,
        token_text=model.tokenizer.token_text,
        decode=model.tokenizer.decode,
        generator=generator,
        criteria=Criteria(stop_strings),
    )


def _constraint_dict(c: Constraint) -> dict[str, Any]:
    """A constraint as plain values for the trace."""
    if isinstance(c, Phrase):
        return {"kind": "phrase", "token_ids": list(c.token_ids), "text": c.text}
    return {"kind": "any", "options": [list(o) for o in c.options], "texts": list(c.texts) if c.texts else None}
