"""Decoding parameters under the reference's names, with defaults per strategy and one-line validation errors."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from explorer.errors import ParameterError

__all__ = ["BEAM_FAMILY", "LIMITS", "STRATEGY_NAMES", "DecodeParams", "make_params"]

STRATEGY_NAMES = ("greedy", "sample", "beam", "beam-sample", "diverse", "constrained")
BEAM_FAMILY = ("beam", "beam-sample", "diverse", "constrained")
SAMPLING = ("sample", "beam-sample")

#: Caps that keep one run within a laptop's memory and a trace within reason (documented in the README).
LIMITS = {"num_beams": 64, "max_new_tokens": 4096, "record_top_k": 1000, "num_return_sequences": 64}


@dataclass(frozen=True)
class DecodeParams:
    """Every knob of a run. Build it with :func:`make_params`, which fills strategy defaults and validates.

    ``top_k=0``, ``top_p=1.0``, ``typical_p=1.0`` and ``min_p=None`` mean "off", as in the reference.
    """

    strategy: str = "greedy"
    max_new_tokens: int = 20
    min_new_tokens: int = 0
    num_beams: int = 1
    num_beam_groups: int = 1
    diversity_penalty: float = 0.0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    bad_words_ids: tuple[tuple[int, ...], ...] = ()
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float | None = None
    typical_p: float = 1.0
    seed: int | None = None
    record_top_k: int = 10

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for the trace."""
        out = asdict(self)
        out["bad_words_ids"] = [list(seq) for seq in self.bad_words_ids]
        return out


_DEFAULTS: dict[str, dict[str, Any]] = {
    "beam": {"num_beams": 4},
    "beam-sample": {"num_beams": 4},
    "diverse": {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0},
    "constrained": {"num_beams": 4},
}


def make_params(strategy: str, **params: Any) -> DecodeParams:
    """Resolve defaults for ``strategy`` and validate; unknown names and bad values raise :class:`ParameterError`.

    >>> make_params("diverse").num_beam_groups
    2
    >>> make_params("beam", num_beams=0)
    Traceback (most recent call last):
    ...
    explorer.errors.ParameterError: num_beams=0 is invalid: expected an integer from 1 to 64
    """
    if strategy not in STRATEGY_NAMES:
        raise ParameterError("strategy", strategy, "one of " + ", ".join(STRATEGY_NAMES))
    known = {f.name for f in fields(DecodeParams)} - {"strategy"}
    for name in params:
        if name not in known:
            raise ParameterError(name, params[name], "no such parameter; known: " + ", ".join(sorted(known)))
    given = {k: v for k, v in params.items() if v is not None or k in ("min_p", "seed")}
    merged = {**_DEFAULTS.get(strategy, {}), **given}
    if "bad_words_ids" in merged:
        merged["bad_words_ids"] = tuple(tuple(seq) for seq in merged["bad_words_ids"])
    if isinstance(merged.get("early_stopping"), str) and merged["early_stopping"] in ("true", "false"):
        merged["early_stopping"] = merged["early_stopping"] == "true"
    result = replace(DecodeParams(strategy=strategy), **merged)
    _validate(result, set(given))
    return result


def _int(name: str, value: object, low: int, high: int | None = None) -> None:
    """Raise unless ``value`` is an int in [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high  # type: ignore[operator]
    if not ok:
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ParameterError(name, value, f"an integer {span}")


def _float(name: str, value: object, allowed: str, test: Any) -> None:
    """Raise unless ``value`` is a finite real number passing ``test``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not test(value):
        raise ParameterError(name, value, allowed)


def _validate(p: DecodeParams, given: set[str]) -> None:
    """Check ranges and cross-parameter rules."""
    _int("max_new_tokens", p.max_new_tokens, 1, LIMITS["max_new_tokens"])
    _int("min_new_tokens", p.min_new_tokens, 0, LIMITS["max_new_tokens"])
    _int("num_beams", p.num_beams, 1, LIMITS["num_beams"])
    _int("num_beam_groups", p.num_beam_groups, 1, LIMITS["num_beams"])
    _int("num_return_sequences", p.num_return_sequences, 1, LIMITS["num_return_sequences"])
    _int("no_repeat_ngram_size", p.no_repeat_ngram_size, 0)
    _int("top_k", p.top_k, 0)
    _int("record_top_k", p.record_top_k, 0, LIMITS["record_top_k"])
    if p.seed is not None:
        _int("seed", p.seed, 0)
    _float("length_penalty", p.length_penalty, "a finite number", lambda _: True)
    _float("repetition_penalty", p.repetition_penalty, "a number > 0", lambda v: v > 0)
    _float("diversity_penalty", p.diversity_penalty, "a number >= 0", lambda v: v >= 0)
    _float("temperature", p.temperature, "a number > 0", lambda v: v > 0)
    _float("top_p", p.top_p, "a number in (0, 1]", lambda v: 0 < v <= 1)
    _float("typical_p", p.typical_p, "a number in (0, 1]", lambda v: 0 < v <= 1)
    if p.min_p is not None:
        _float("min_p", p.min_p, "a number in [0, 1]", lambda v: 0 <= v <= 1)
    if p.early_stopping not in (True, False, "never"):
        raise ParameterError("early_stopping", p.early_stopping, "true, false or 'never'")
    for seq in p.bad_words_ids:
        if not seq or any(not isinstance(t, int) or t < 0 for t in seq):
            raise ParameterError("bad_words_ids", list(seq), "non-empty lists of token ids >= 0")
    _validate_strategy_rules(p, given)


def _validate_strategy_rules(p: DecodeParams, given: set[str]) -> None:
    """Rules that depend on the strategy: which knobs apply, and beam/group arithmetic."""
    s = p.strategy
    if s in ("greedy", "sample") and p.num_beams != 1:
        raise ParameterError("num_beams", p.num_beams, f"1 for {s} (use strategy 'beam' for more beams)")
    if s in ("diverse", "constrained") and p.num_beams < 2:
        raise ParameterError("num_beams", p.num_beams, f"an integer >= 2 for {s}")
    if s == "diverse":
        if p.num_beam_groups < 2 or p.num_beams % p.num_beam_groups:
            raise ParameterError(
                "num_beam_groups", p.num_beam_groups, f"an integer >= 2 that divides num_beams={p.num_beams}"
            )
    elif p.num_beam_groups != 1:
        raise ParameterError("num_beam_groups", p.num_beam_groups, "1 unless strategy is 'diverse'")
    if s != "diverse" and p.diversity_penalty != 0:
        raise ParameterError("diversity_penalty", p.diversity_penalty, "0 unless strategy is 'diverse' (groups)")
    limit = p.num_beams if s in BEAM_FAMILY else (LIMITS["num_return_sequences"] if s == "sample" else 1)
    if p.num_return_sequences > limit:
        raise ParameterError("num_return_sequences", p.num_return_sequences, f"an integer from 1 to {limit}")
    if s not in SAMPLING:
        for name in ("temperature", "top_k", "top_p", "min_p", "typical_p", "seed"):
            if name in given and getattr(p, name) != getattr(DecodeParams(), name):
                raise ParameterError(name, getattr(p, name), "unset: it applies only to sample and beam-sample")
    if s not in BEAM_FAMILY:
        for name in ("length_penalty", "early_stopping"):
            if name in given and getattr(p, name) != getattr(DecodeParams(), name):
                raise ParameterError(name, getattr(p, name), "unset: it applies only to beam strategies")
    if p.min_new_tokens > p.max_new_tokens:
        raise ParameterError("min_new_tokens", p.min_new_tokens, f"at most max_new_tokens={p.max_new_tokens}")
