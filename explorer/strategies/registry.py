"""The strategy registry: one :class:`StrategySpec` per strategy, and everything that derives from it.

A strategy module builds its spec and calls :func:`register`; ``explorer.strategies`` imports every strategy
module, so the registry is complete once the package is imported. From the specs come parameter validation
(:func:`make_params`), the processors a run gets, the command line's ``--strategy`` choices, the app's knobs and
panels, the invariants a trace is checked against, and the README's strategy table (:func:`strategy_table`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from explorer.errors import ParameterError
from explorer.params import PARAMS, DecodeParams, Param, Scope

if TYPE_CHECKING:
    from explorer.engine import Run
    from explorer.models.base import CausalLM
    from explorer.strategies.base import Setup, Strategy
    from explorer.trace import Step

__all__ = [
    "REGISTRY",
    "Driver",
    "Family",
    "ModelCheck",
    "Need",
    "StrategySpec",
    "beam_rules",
    "get",
    "make_params",
    "names",
    "parameter_table",
    "params_of",
    "register",
    "strategy_table",
]

#: ``rows``: independent rows ranked by their plain summed score (greedy, sample); ``beam``: a finished pool ranked by
#: length-penalised scores (the processors see log-probabilities, as in the reference's beam methods).
Family = Literal["rows", "beam"]
#: What a strategy may need from the model besides next-token logits: ``hidden_states``, every layer's hidden states
#: (DoLa, contrastive search). Checked against the model when a run is planned.
Need = Literal["hidden_states"]
#: A strategy that runs its own loop instead of the shared one (e.g. assisted decoding: several tokens per row per
#: forward, the cache cropped after a rejection): ``driver(model, spec, setup, on_step, should_stop) -> Run``.
Driver = Callable[["CausalLM", "StrategySpec", "Setup", "Callable[[Step], None] | None",
                   "Callable[[], bool] | None"], "Run"]
#: A check of the model (and any model the parameters name, e.g. a draft model) when a run is planned: raises
#: ``ParameterError`` (one line) for a combination that cannot run.
ModelCheck = Callable[["CausalLM", DecodeParams], None]


def _no_rules(p: DecodeParams) -> None:
    """A strategy without rules of its own."""


@dataclass(frozen=True)
class StrategySpec:
    """Everything the rest of the explorer knows about one strategy.

    ``steps`` is the search itself (initial state, one step, results, stop reason; see
    :class:`~explorer.strategies.base.Strategy`). ``uses`` names the parameter scopes it takes besides the
    parameters every strategy takes; ``defaults`` overrides parameter defaults; ``rules`` checks what ranges alone
    cannot (raising ``ParameterError``). ``constraints``: it takes phrasal and disjunctive constraints (at least
    one). ``sorted_beams``: its beams come sorted by score within a group (an invariant of its traces).
    ``driver`` runs the search instead of the shared loop (``steps`` is then what one step reduces to);
    ``check_model`` checks the model and the parameters together when a run is planned.
    """

    name: str
    summary: str
    steps: Strategy
    family: Family
    uses: frozenset[Scope] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    rules: Callable[[DecodeParams], None] = _no_rules
    constraints: bool = False
    sorted_beams: bool = False
    needs: frozenset[Need] = frozenset()
    driver: Driver | None = None
    check_model: ModelCheck | None = None

    @property
    def sampling(self) -> bool:
        """Whether it draws at random (and so takes the sampling warpers and a seed)."""
        return "sampling" in self.uses

    def applies(self, p: Param) -> bool:
        """Whether parameter ``p`` is one this strategy uses."""
        return p.scope == "all" or any(scope in self.uses for scope in p.scopes)


_REGISTRY: dict[str, StrategySpec] = {}
#: Every registered strategy by name, in registration order (read-only).
REGISTRY: Mapping[str, StrategySpec] = MappingProxyType(_REGISTRY)


def register(spec: StrategySpec) -> StrategySpec:
    """Add a strategy; its name must be new and its defaults real parameters of scopes it uses."""
    if spec.name in _REGISTRY:
        raise ValueError(f"strategy {spec.name!r} is registered twice")
    by_name = {p.name: p for p in PARAMS}
    for name in spec.defaults:
        if name not in by_name or not spec.applies(by_name[name]):
            raise ValueError(f"strategy {spec.name!r}: default for {name!r}, a parameter it does not use")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> tuple[str, ...]:
    """Registered strategy names, in registration order.

    >>> names()[:3]
    ('greedy', 'sample', 'beam')
    """
    return tuple(_REGISTRY)


def get(name: str) -> StrategySpec:
    """The spec of strategy ``name``; an unknown name raises ``ParameterError`` listing the known ones."""
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ParameterError("strategy", name, "one of " + ", ".join(_REGISTRY))
    return spec


def params_of(name: str) -> tuple[Param, ...]:
    """The parameters strategy ``name`` uses, in table order.

    >>> [p.name for p in params_of("diverse") if p.section == "search"]
    ['num_beams', 'num_beam_groups', 'diversity_penalty', 'length_penalty', 'early_stopping', 'num_return_sequences']
    """
    spec = get(name)
    return tuple(p for p in PARAMS if spec.applies(p))


def _users(scopes: tuple[Scope, ...]) -> str:
    """The strategies that use one of ``scopes``, in words: ``sample and beam-sample``."""
    users = [s.name for s in _REGISTRY.values() if any(scope in s.uses for scope in scopes)]
    return users[0] if len(users) == 1 else ", ".join(users[:-1]) + " and " + users[-1]


def make_params(strategy: str, **params: Any) -> DecodeParams:
    """Resolve defaults for ``strategy`` and validate; unknown names and bad values raise :class:`ParameterError`.

    ``None`` stands for "unset" (the default), except for parameters whose default is ``None`` itself.

    >>> make_params("diverse").num_beam_groups
    2
    >>> make_params("beam", num_beams=0)
    Traceback (most recent call last):
    ...
    explorer.errors.ParameterError: num_beams=0 is invalid: expected an integer from 1 to 64
    """
    spec = get(strategy)
    table = {p.name: p for p in PARAMS}
    for name in params:
        if name not in table:
            raise ParameterError(name, params[name], "no such parameter; known: " + ", ".join(sorted(table)))
    given = {k: table[k].check.normalize(v) for k, v in params.items() if v is not None or table[k].default is None}
    result = replace(DecodeParams(strategy=strategy), **{**spec.defaults, **given})
    for p in PARAMS:
        p.check.check(p.name, getattr(result, p.name))
    for name in given:
        p = table[name]
        if not spec.applies(p) and getattr(result, name) != p.default:
            raise ParameterError(name, getattr(result, name), f"unset: it applies only to {_users(p.scopes)}")
    _common_rules(result)
    spec.rules(result)
    return result


def _common_rules(p: DecodeParams) -> None:
    """Rules between parameters that hold for every strategy."""
    if p.min_new_tokens > p.max_new_tokens:
        raise ParameterError("min_new_tokens", p.min_new_tokens, f"at most max_new_tokens={p.max_new_tokens}")
    rules = [name for name in ("prefix_allowed_tokens_fn", "allowed_words", "allowed_regex") if getattr(p, name)]
    if len(rules) > 1:
        raise ParameterError(rules[1], getattr(p, rules[1]), f"unset while {rules[0]} is set (one rule at a time)")
    if p.exponential_decay_length_penalty is not None:
        start, factor = p.exponential_decay_length_penalty
        steps = p.max_new_tokens - start  # the most tokens past start_index: factor ** steps must stay finite
        if steps > 0 and steps * math.log(factor) > _LOG_LARGEST:
            raise ParameterError("exponential_decay_length_penalty", p.exponential_decay_length_penalty,
                                 f"a decay factor of at most {math.exp(_LOG_LARGEST / steps):.4g} for {steps} tokens "
                                 f"past start_index (factor ** {steps} must stay below 1e30)")


#: The largest eos boost factor ``decay_factor ** n`` allowed (float32 scores overflow near 3.4e38).
_LOG_LARGEST = math.log(1e30)


def beam_rules(p: DecodeParams) -> None:
    """The beam family: at most ``num_beams`` results."""
    if p.num_return_sequences > p.num_beams:
        raise ParameterError("num_return_sequences", p.num_return_sequences, f"an integer from 1 to {p.num_beams}")


def strategy_table() -> str:
    """The README's strategy table (Markdown), one row per registered strategy: name, summary, defaults.

    >>> strategy_table().splitlines()[0]
    '| strategy | what it does | defaults |'
    """
    rows = ["| strategy | what it does | defaults |", "|---|---|---|"]
    for spec in _REGISTRY.values():
        shown = [f"`{k}={v!r}`" for k, v in spec.defaults.items()]
        if spec.sampling:
            shown.append("seed drawn and recorded if not given")
        rows.append(f"| `{spec.name}` | {spec.summary} | {', '.join(shown)} |".replace(" |  |", " | |"))
    return "\n".join(rows)


def _users_of(p: Param) -> str:
    """Which strategies use parameter ``p``, for the parameter table."""
    return "all" if p.scope == "all" else ", ".join(s.name for s in _REGISTRY.values() if s.applies(p))


def parameter_table() -> str:
    """``docs/parameters.md``'s table (Markdown): every parameter with its default, what it allows, the strategies
    that use it, its command-line flag and what it does.

    >>> parameter_table().splitlines()[2].split(" | ")[0]
    '| `max_new_tokens`'
    """
    rows = ["| parameter | default | allowed | used by | flag | what it does |", "|---|---|---|---|---|---|"]
    for p in PARAMS:
        flag = "--" + p.name.replace("_", "-") if p.check.widget != "none" else "via " + ", ".join(
            "--" + v.replace("_", "-") for v in p.via)
        rows.append(f"| `{p.name}` | `{p.default!r}` | {p.check.allowed} | {_users_of(p)} | `{flag}` | {p.help} |")
    return "\n".join(rows)
