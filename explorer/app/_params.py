"""Which decoding parameters a panel shows for each strategy, their defaults, and inline validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from explorer.errors import ParameterError
from explorer.params import BEAM_FAMILY, SAMPLING, STRATEGY_NAMES, make_params

__all__ = [
    "PARAM_SPECS",
    "ParamSpec",
    "carry_params",
    "check_params",
    "control_for",
    "default_params",
    "parse_text",
    "specs_for",
]

Kind = Literal["int", "float", "choice", "optional_int", "optional_float"]
Group = Literal["search", "processor", "warper"]


@dataclass(frozen=True)
class ParamSpec:
    """One knob of a panel: its ``explorer.decode`` name, label, widget kind, and the strategies it applies to."""

    name: str
    label: str
    kind: Kind
    strategies: tuple[str, ...]
    group: Group


PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("num_beams", "beams", "int", BEAM_FAMILY, "search"),
    ParamSpec("num_beam_groups", "beam groups", "int", ("diverse",), "search"),
    ParamSpec("diversity_penalty", "diversity penalty", "float", ("diverse",), "search"),
    ParamSpec("length_penalty", "length penalty", "float", BEAM_FAMILY, "search"),
    ParamSpec("early_stopping", "early stopping", "choice", BEAM_FAMILY, "search"),
    ParamSpec("num_return_sequences", "sequences returned", "int", (*BEAM_FAMILY, "sample"), "search"),
    ParamSpec("repetition_penalty", "repetition penalty", "float", STRATEGY_NAMES, "processor"),
    ParamSpec("no_repeat_ngram_size", "no-repeat n-gram", "int", STRATEGY_NAMES, "processor"),
    ParamSpec("min_new_tokens", "min new tokens", "int", STRATEGY_NAMES, "processor"),
    ParamSpec("temperature", "temperature", "float", SAMPLING, "warper"),
    ParamSpec("top_k", "top-k (0 = off)", "int", SAMPLING, "warper"),
    ParamSpec("top_p", "top-p", "float", SAMPLING, "warper"),
    ParamSpec("min_p", "min-p (empty = off)", "optional_float", SAMPLING, "warper"),
    ParamSpec("typical_p", "typical-p", "float", SAMPLING, "warper"),
    ParamSpec("seed", "seed (empty = random)", "optional_int", SAMPLING, "warper"),
)
_BY_NAME = {spec.name: spec for spec in PARAM_SPECS}

#: Error names the engine uses for a panel's constraints box.
_CONSTRAINT_NAMES = ("constraints", "constraint", "constraint option")
#: Error names that belong to the controls above the panels.
GLOBAL_CONTROLS = ("prompt", "chat", "max_new_tokens")


def specs_for(strategy: str) -> tuple[ParamSpec, ...]:
    """The knobs a panel shows for ``strategy``, in display order.

    >>> [s.name for s in specs_for("greedy")]
    ['repetition_penalty', 'no_repeat_ngram_size', 'min_new_tokens']
    """
    return tuple(spec for spec in PARAM_SPECS if strategy in spec.strategies)


def default_params(strategy: str) -> dict[str, Any]:
    """The defaults ``explorer.params`` gives ``strategy``, for the knobs a panel shows.

    >>> default_params("diverse")["num_beam_groups"]
    2
    """
    resolved = make_params(strategy)
    return {spec.name: getattr(resolved, spec.name) for spec in specs_for(strategy)}


def carry_params(old_strategy: str, old: Mapping[str, Any], new_strategy: str) -> dict[str, Any]:
    """Defaults of ``new_strategy``, keeping the values the user changed that still apply.

    >>> carry_params("beam", {"num_beams": 6, "length_penalty": 1.0}, "diverse")["num_beams"]
    6
    """
    old_defaults = default_params(old_strategy) if old_strategy in STRATEGY_NAMES else {}
    params = default_params(new_strategy)
    for name, value in old.items():
        if name in params and (name not in old_defaults or value != old_defaults[name]):
            params[name] = value
    return params


def parse_text(name: str, text: str) -> Any:
    """The value of an optional knob typed as text: empty is ``None``; what does not parse stays text (and fails
    validation with the engine's own message).

    >>> parse_text("seed", " 7 "), parse_text("min_p", ""), parse_text("min_p", "x")
    (7, None, 'x')
    """
    spec = _BY_NAME[name]
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return int(stripped) if spec.kind == "optional_int" else float(stripped)
    except ValueError:
        return text


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
    if any(spec.name == error_name for spec in specs_for(strategy)):
        return error_name
    return "panel"


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
