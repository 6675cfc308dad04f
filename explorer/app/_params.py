"""A panel's knobs, from the parameter table and the registry: which ones a strategy shows, defaults, validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from explorer.errors import ParameterError
from explorer.models.base import CausalLM
from explorer.params import PARAMS, Param, Section
from explorer.strategies import get, make_params, names, params_of

__all__ = [
    "GLOBAL_CONTROLS",
    "KNOBS",
    "carry_params",
    "check_params",
    "control_for",
    "default_params",
    "knob_label",
    "knob_section",
    "knobs_for",
    "model_errors",
    "parse_text",
    "summary_params",
    "takes_constraints",
]

#: Every parameter a panel can show: the table but the controls above the panels (``max_new_tokens``) and what has no
#: text form (a Python function, reached through its ``via`` parameters).
KNOBS: tuple[Param, ...] = tuple(p for p in PARAMS if p.section != "length" and p.check.widget != "none")
_BY_NAME = {p.name: p for p in KNOBS}

#: Error names the engine uses for a panel's constraints box.
_CONSTRAINT_NAMES = ("constraints", "constraint", "constraint option")
#: Error names that belong to the controls above the panels.
GLOBAL_CONTROLS = ("prompt", "chat", "max_new_tokens")


def knobs_for(strategy: str) -> tuple[Param, ...]:
    """The knobs a panel shows for ``strategy``, in table order (``basic`` ones at once, the others under "more").

    >>> [p.name for p in knobs_for("greedy") if p.basic]
    ['repetition_penalty', 'no_repeat_ngram_size', 'min_new_tokens']
    """
    return tuple(p for p in params_of(strategy) if p.name in _BY_NAME)


def knob_section(p: Param, strategy: str) -> Section:
    """Where a panel of ``strategy`` shows knob ``p``: its own section, unless the strategy uses it in another role
    than the section's (``top_k`` is a sampling warper, but the candidates contrastive search ranks: a search knob).

    >>> knob_section(_BY_NAME["top_k"], "sample"), knob_section(_BY_NAME["top_k"], "contrastive")
    ('warper', 'search')
    """
    spec = get(strategy) if strategy in names() else None
    if spec is not None and p.scope != "all" and p.scope not in spec.uses and any(s in spec.uses for s in p.also):
        return "search"
    return p.section


#: Labels of knobs that mean something else for some strategies.
_LABELS = {("top_k", "contrastive"): "top-k candidates"}


def knob_label(p: Param, strategy: str) -> str:
    """A knob's label in a panel of ``strategy``.

    >>> knob_label(_BY_NAME["top_k"], "sample"), knob_label(_BY_NAME["top_k"], "contrastive")
    ('top-k (0 = off)', 'top-k candidates')
    """
    return _LABELS.get((p.name, strategy), p.label)


def takes_constraints(strategy: str) -> bool:
    """Whether a panel of ``strategy`` shows a constraints box (a loaded trace's unknown strategy does not).

    >>> takes_constraints("constrained"), takes_constraints("beam"), takes_constraints("from-the-future")
    (True, False, False)
    """
    return strategy in names() and get(strategy).constraints


def summary_params(strategy: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a read-only panel lists: the new-token budget, the basic knobs, and the others that differ
    from their default (lists as tuples; nothing for a strategy this version does not know).

    >>> summary_params("greedy", {"max_new_tokens": 5, "min_new_tokens": 0, "bad_words_ids": [[7]], "seed": None})
    {'max_new_tokens': 5, 'bad_words_ids': [[7]], 'min_new_tokens': 0}
    """
    if strategy not in names():
        return {k: v for k, v in params.items() if k == "max_new_tokens"}
    out = {k: params[k] for k in ("max_new_tokens",) if k in params}
    for p in knobs_for(strategy):
        if p.name in params and (p.basic or p.check.normalize(params[p.name]) != p.default):
            out[p.name] = params[p.name]
    return out


def default_params(strategy: str) -> dict[str, Any]:
    """The defaults the registry gives ``strategy``, for the knobs a panel shows.

    >>> default_params("diverse")["num_beam_groups"]
    2
    """
    resolved = make_params(strategy)
    return {p.name: getattr(resolved, p.name) for p in knobs_for(strategy)}


def carry_params(old_strategy: str, old: Mapping[str, Any], new_strategy: str) -> dict[str, Any]:
    """Defaults of ``new_strategy``, keeping the values the user changed that still apply.

    >>> carry_params("beam", {"num_beams": 6, "length_penalty": 1.0}, "diverse")["num_beams"]
    6
    """
    old_defaults = default_params(old_strategy) if old_strategy in names() else {}
    params = default_params(new_strategy)
    for name, value in old.items():
        if name in params and (name not in old_defaults or value != old_defaults[name]):
            params[name] = value
    return params


def parse_text(name: str, text: str) -> Any:
    """The value of a knob typed as text (optional numbers, pairs, lines): what does not parse stays text and fails
    validation with the engine's own message.

    >>> parse_text("seed", " 7 "), parse_text("min_p", ""), parse_text("min_p", "x")
    (7, None, 'x')
    """
    return _BY_NAME[name].check.parse(text)


def control_for(error_name: str, strategy: str) -> str:
    """The control an engine error names: a knob of the panel, its constraints or strategy, a control above the
    panels (``prompt``, ``chat``, ``max_new_tokens``), or ``panel`` for the rest.

    >>> control_for("num_beam_groups", "diverse"), control_for("constraint option", "constrained")
    ('num_beam_groups', 'constraints')
    """
    if error_name in _CONSTRAINT_NAMES:
        return "constraints"
    if error_name == "strategy" or error_name in GLOBAL_CONTROLS:
        return error_name
    shown = {p.name for p in knobs_for(strategy)}
    if error_name in shown:
        return error_name
    reached = next((p.via for p in PARAMS if p.name == error_name), ())  # a function, set through a knob
    return next((name for name in reached if name in shown), "panel")


def check_params(strategy: str, params: Mapping[str, Any], max_new_tokens: int) -> dict[str, str]:
    """Validate a panel's knobs as ``explorer.decode`` will: ``{control: one-line message}``, empty when fine.

    >>> check_params("diverse", {"num_beams": 4, "num_beam_groups": 3}, 20)
    {'num_beam_groups': 'num_beam_groups=3 is invalid: expected an integer >= 2 that divides num_beams=4'}
    """
    try:
        make_params(strategy, max_new_tokens=max_new_tokens, **params)
    except ParameterError as error:
        return {control_for(error.name, strategy): str(error)}
    return {}


def model_errors(strategy: str, params: Mapping[str, Any], max_new_tokens: int,
                 model: CausalLM | None) -> dict[str, str]:
    """What ``model`` refuses of a panel whose knobs are otherwise valid (``{control: one-line message}``): a
    strategy that reads layers on a model without any (a next-token table), DoLa layers past the model's last.

    >>> import explorer
    >>> model_errors("dola", {"dola_layers": (1, 9)}, 5, explorer.load_model("tiny-random"))["dola_layers"]
    "dola_layers='1,9' is invalid: expected layer indices from 0 to 1 (tiny-random has 2 layers; 9 is outside)"
    """
    if model is None or strategy not in names() or check_params(strategy, params, max_new_tokens):
        return {}
    spec = get(strategy)
    try:
        if "hidden_states" in spec.needs and model.info.num_layers == 0:
            raise ParameterError("strategy", strategy, f"a model with layers: {model.info.name} has none to read "
                                 "(a next-token table)")
        if spec.check_model is not None:
            spec.check_model(model, make_params(strategy, max_new_tokens=max_new_tokens, **params))
    except ParameterError as error:
        return {control_for(error.name, strategy): str(error)}
    return {}
