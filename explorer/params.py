"""Decoding parameters, each declared once: its type and range, default, help, label and the strategies using it.

The fields of :class:`DecodeParams` are the table. Each carries a :class:`Param` (in the field's metadata) that
API validation (:func:`explorer.strategies.registry.make_params`), the command line's flags (:mod:`explorer.cli`)
and the app's controls (:mod:`explorer.app._params`) are generated from. A parameter's ``scope`` says which
strategies use it: every strategy (``"all"``), or those whose registry entry lists the scope in ``uses``.
"""

from __future__ import annotations

from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any, Literal

from explorer.param_types import Check, Choice, Float, Int, Optional, TokenSeqs

__all__ = ["LIMITS", "PARAMS", "DecodeParams", "Param", "Scope", "Section", "param"]

#: Caps that keep one run within a laptop's memory and a trace within reason (documented in the README).
LIMITS = {"num_beams": 64, "max_new_tokens": 4096, "record_top_k": 1000, "num_return_sequences": 64}

#: Which strategies use a parameter: all of them, or those whose registry entry ``uses`` the scope.
Scope = Literal["all", "beam", "groups", "returns", "sampling"]
#: Where the app shows a parameter (``length``: the controls above the panels).
Section = Literal["length", "search", "processor", "warper", "stopping", "recording"]


@dataclass(frozen=True)
class Param:
    """One parameter as declared: everything the API, the command line and the app need to know about it.

    ``basic`` parameters show in a panel at once, the others under "more". ``via`` names the parameters that the
    command line and the app reach this one through, when it has no text form of its own (a Python function).
    """

    name: str
    default: Any
    check: Check
    scope: Scope
    help: str
    label: str
    section: Section
    basic: bool = False
    via: tuple[str, ...] = ()


def param(default: Any, check: Check, scope: Scope, help: str, label: str, section: Section, *,
          basic: bool = False, via: tuple[str, ...] = ()) -> Any:
    """A field of :class:`DecodeParams` carrying its declaration (the name comes from the field)."""
    spec = {"default": default, "check": check, "scope": scope, "help": help, "label": label, "section": section,
            "basic": basic, "via": via}
    return field(default=default, metadata={"param": spec})


_BEAMS = LIMITS["num_beams"]


@dataclass(frozen=True)
class DecodeParams:
    """Every knob of a run, under the reference's names. Build it with ``make_params``, which fills the strategy's
    defaults and validates; a field's declaration says what it may hold (:data:`PARAMS`).

    ``top_k=0``, ``top_p=1.0``, ``typical_p=1.0`` and ``min_p=None`` mean "off", as in the reference.
    """

    strategy: str = "greedy"
    max_new_tokens: int = param(20, Int(1, LIMITS["max_new_tokens"]), "all", "new-token budget", "max new tokens",
                                "length")
    num_beams: int = param(1, Int(1, _BEAMS), "beam", "beams (beam strategies)", "beams", "search", basic=True)
    num_beam_groups: int = param(1, Int(1, _BEAMS), "groups", "groups of beams (diverse)", "beam groups", "search",
                                 basic=True)
    diversity_penalty: float = param(0.0, Float(0), "groups", "Hamming penalty between groups (diverse)",
                                     "diversity penalty", "search", basic=True)
    length_penalty: float = param(
        1.0, Float(-5, 5), "beam", "finished score = sum / length ** X (beam strategies; larger magnitudes "
        "overflow)", "length penalty", "search", basic=True)
    early_stopping: bool | str = param(False, Choice((False, True, "never")), "beam",
                                       "when the finished pool ends the search (beam strategies)", "early stopping",
                                       "search", basic=True)
    num_return_sequences: int = param(1, Int(1, LIMITS["num_return_sequences"]), "returns", "results to return",
                                      "sequences returned", "search", basic=True)
    repetition_penalty: float = param(1.0, Float(0, low_open=True), "all",
                                      "penalty on tokens already seen (> 1 discourages)", "repetition penalty",
                                      "processor", basic=True)
    no_repeat_ngram_size: int = param(0, Int(0), "all", "forbid repeating n-grams of this size (0 = off)",
                                      "no-repeat n-gram", "processor", basic=True)
    min_new_tokens: int = param(0, Int(0, LIMITS["max_new_tokens"]), "all", "forbid eos before this many new tokens",
                                "min new tokens", "processor", basic=True)
    bad_words_ids: tuple[tuple[int, ...] | str, ...] = param(
        (), TokenSeqs(), "all", "forbidden token sequences: a phrase or [ids] (repeatable)", "bad words", "processor")
    temperature: float = param(1.0, Float(0, low_open=True), "sampling", "sampling temperature", "temperature",
                               "warper", basic=True)
    top_k: int = param(0, Int(0), "sampling", "keep the k best tokens (0 = off)", "top-k (0 = off)", "warper",
                       basic=True)
    top_p: float = param(1.0, Float(0, 1, low_open=True), "sampling", "nucleus mass (1 = off)", "top-p", "warper",
                         basic=True)
    min_p: float | None = param(None, Optional(Float(0, 1)), "sampling", "min-p filter (off when unset)",
                                "min-p (empty = off)", "warper", basic=True)
    typical_p: float = param(1.0, Float(0, 1, low_open=True), "sampling", "typical-p mass (1 = off)", "typical-p",
                             "warper", basic=True)
    seed: int | None = param(None, Optional(Int(0)), "sampling", "random seed: same seed, same trace (drawn and "
                             "recorded when unset)", "seed (empty = random)", "warper", basic=True)
    record_top_k: int = param(10, Int(0, LIMITS["record_top_k"]), "all",
                              "candidates recorded per hypothesis, besides the selected ones", "recorded candidates",
                              "recording")

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for the trace."""
        out = asdict(self)
        for p in PARAMS:
            value = out[p.name]
            if isinstance(value, tuple):
                out[p.name] = _lists(value)
        return out


def _lists(value: Any) -> Any:
    """Tuples (nested) as lists, for JSON."""
    return [_lists(v) for v in value] if isinstance(value, tuple) else value


def _param(f: Field[Any]) -> Param:
    return Param(f.name, **f.metadata["param"])


#: The table: every parameter in declaration order (which is the order of the app's knobs and the CLI's flags).
PARAMS: tuple[Param, ...] = tuple(_param(f) for f in fields(DecodeParams) if "param" in f.metadata)

_undeclared = [f.name for f in fields(DecodeParams) if f.name != "strategy" and "param" not in f.metadata]
if _undeclared:  # a field added without param() would escape validation, flags and knobs
    raise TypeError(f"DecodeParams fields without a declaration: {_undeclared}")
