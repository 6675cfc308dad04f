"""Decoding parameters, each declared once: its type and range, default, help, label and the strategies using it.

The fields of :class:`DecodeParams` are the table. Each carries a :class:`Param` (in the field's metadata) that
API validation (:func:`explorer.strategies.registry.make_params`), the command line's flags (:mod:`explorer.cli`)
and the app's controls (:mod:`explorer.app._params`) are generated from. A parameter's ``scope`` says which
strategies use it: every strategy (``"all"``), or those whose registry entry lists the scope in ``uses``.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any, Literal

from explorer.param_types import (
    Biases,
    Check,
    Choice,
    DecayPenalty,
    DolaLayers,
    Flag,
    Float,
    Function,
    Int,
    ModelName,
    Optional,
    Pattern,
    PrefixFunction,
    Texts,
    TokenIds,
    TokenSeqs,
    Words,
)

__all__ = ["LIMITS", "PARAMS", "DecodeParams", "Param", "Scope", "Section", "param"]

#: Caps that keep one run within a laptop's memory and a trace within reason (documented in the README).
LIMITS = {"num_beams": 64, "max_new_tokens": 4096, "record_top_k": 1000, "num_return_sequences": 64}

#: Which strategies use a parameter: all of them, or those whose registry entry ``uses`` the scope.
Scope = Literal["all", "assisted", "beam", "contrastive", "dola", "groups", "returns", "sampling"]
#: Where the app shows a parameter (``length``: the controls above the panels).
Section = Literal["length", "search", "draft", "processor", "warper", "stopping", "recording"]


@dataclass(frozen=True)
class Param:
    """One parameter as declared: everything the API, the command line and the app need to know about it.

    ``basic`` parameters show in a panel at once, the others under "more". ``via`` names the parameters that the
    command line and the app reach this one through, when it has no text form of its own (a Python function).
    ``alias`` is a second, shorter command-line flag (``--assistant`` for ``--assistant-model``). ``also`` names
    further scopes that use it (``top_k``: sampling's warper, contrastive search's candidates).
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
    alias: str | None = None
    also: tuple[Scope, ...] = ()

    @property
    def scopes(self) -> tuple[Scope, ...]:
        """Every scope that uses it."""
        return (self.scope, *self.also)


def param(default: Any, check: Check, scope: Scope, help: str, label: str, section: Section, *,
          basic: bool = False, via: tuple[str, ...] = (), alias: str | None = None, also: tuple[Scope, ...] = ()
          ) -> Any:
    """A field of :class:`DecodeParams` carrying its declaration (the name comes from the field)."""
    spec = {"default": default, "check": check, "scope": scope, "help": help, "label": label, "section": section,
            "basic": basic, "via": via, "alias": alias, "also": also}
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
    assistant_model: str | None = param(
        None, ModelName(), "assisted", "the draft model: any model name load_model takes; with another tokenizer it "
        "drafts through text (universal assisted decoding; one candidate source at a time)", "draft model", "draft",
        basic=True, alias="assistant")
    assistant_dtype: str = param("float32", Choice(("float32", "bfloat16", "float16")), "assisted",
                                 "precision of the draft model (bfloat16 of the target itself: a self-draft)",
                                 "draft precision", "draft", basic=True)
    assistant_early_exit: int | None = param(
        None, Optional(Int(1, 1024)), "assisted", "draft with the target's own first K layers, its final norm and LM "
        "head (self-speculative; shares the target's weights), instead of a draft model", "early exit layers",
        "draft", basic=True)
    prompt_lookup_num_tokens: int | None = param(
        None, Optional(Int(1, 64)), "assisted", "draft this many tokens by n-gram lookup in the prompt and the text so "
        "far, instead of a draft model", "prompt lookup tokens", "draft", basic=True)
    max_matching_ngram_size: int | None = param(
        None, Optional(Int(1, 64)), "assisted", "longest n-gram prompt lookup matches (unset: 2)",
        "lookup n-gram size", "draft")
    num_assistant_tokens: int = param(20, Int(1, 64), "assisted", "tokens the draft model proposes per round (the "
                                      "schedule's start)", "draft tokens", "draft", basic=True)
    num_assistant_tokens_schedule: str = param(
        "constant", Choice(("constant", "heuristic", "heuristic_transient")), "assisted",
        "draft length: constant, or heuristic (+2 after a fully accepted draft, -1 otherwise; every run starts "
        "from num_assistant_tokens)", "draft schedule", "draft", basic=True)
    assistant_confidence_threshold: float = param(
        0.4, Float(0, 1, high_open=True), "assisted", "the draft model stops drafting when its probability of its "
        "token falls below this (0 = off)", "draft confidence", "draft")
    dola_layers: str | tuple[int, ...] = param(
        "high", DolaLayers(), "dola", "premature layers DoLa contrasts the final layer with: high (the upper half), "
        "low (the lower half) or layer indices 8,16,24 (0 = the embeddings)", "DoLa layers", "search", basic=True)
    penalty_alpha: float = param(0.6, Float(0, 1), "contrastive", "contrastive search's weight of the degeneration "
                                 "penalty against the model's confidence", "penalty alpha", "search", basic=True)
    sequence_bias: tuple[tuple[tuple[int, ...] | str, float], ...] = param(
        (), Biases(), "all", "add BIAS to a token sequence's last token when the rest of it precedes: PHRASE = BIAS or "
        "[ids] = BIAS (repeatable)", "sequence bias", "processor")
    repetition_penalty: float = param(1.0, Float(0, low_open=True), "all",
                                      "penalty on tokens already seen (> 1 discourages)", "repetition penalty",
                                      "processor", basic=True)
    no_repeat_ngram_size: int = param(0, Int(0), "all", "forbid repeating n-grams of this size (0 = off)",
                                      "no-repeat n-gram", "processor", basic=True)
    bad_words_ids: tuple[tuple[int, ...] | str, ...] = param(
        (), TokenSeqs(), "all", "forbidden token sequences: a phrase or [ids] (repeatable)", "bad words", "processor")
    min_length: int = param(0, Int(0), "all", "forbid eos while the text, prompt included, is shorter than this many "
                            "tokens", "min length (with prompt)", "processor")
    min_new_tokens: int = param(0, Int(0, LIMITS["max_new_tokens"]), "all", "forbid eos before this many new tokens",
                                "min new tokens", "processor", basic=True)
    allowed_words: tuple[str, ...] = param(
        (), Words(), "all", "the text may only be these words, separated by whitespace (turned into a "
        "prefix_allowed_tokens_fn; docs/parameters.md)", "allowed words", "processor")
    allowed_regex: str | None = param(
        None, Pattern(), "all", "the text must stay the beginning of a full match of this regular expression (turned "
        "into a prefix_allowed_tokens_fn; docs/parameters.md)", "allowed text (regex)", "processor")
    prefix_allowed_tokens_fn: PrefixFunction | None = param(
        None, Function(), "all", "a function (batch_id, ids so far) -> allowed token ids (Python only)",
        "allowed tokens", "processor", via=("allowed_words", "allowed_regex"))
    forced_eos_token_id: tuple[int | str, ...] = param(
        (), TokenIds(), "all", "token forced as the last one the budget allows (usually eos): [id] (repeatable)",
        "forced last token", "processor")
    remove_invalid_values: bool = param(False, Flag(), "all", "replace NaN and infinite scores by finite ones",
                                        "remove invalid values", "processor")
    exponential_decay_length_penalty: tuple[int, float] | None = param(
        None, DecayPenalty(), "all", "after START new tokens, raise eos by |score| * (FACTOR ** n - 1): START, FACTOR",
        "eos decay (start, factor)", "processor")
    suppress_tokens: tuple[int | str, ...] = param(
        (), TokenIds(), "all", "tokens never generated: [ids] or a one-token phrase (repeatable)", "suppressed tokens",
        "processor")
    renormalize_logits: bool = param(False, Flag(), "all", "log-softmax the scores after every processor",
                                     "renormalize", "processor")
    temperature: float = param(1.0, Float(0, low_open=True), "sampling", "sampling temperature", "temperature",
                               "warper", basic=True)
    top_k: int = param(0, Int(0), "sampling", "keep the k best tokens (0 = off; contrastive search: the candidates it "
                       "ranks, at least 2)", "top-k (0 = off)", "warper", basic=True, also=("contrastive",))
    top_p: float = param(1.0, Float(0, 1, low_open=True), "sampling", "nucleus mass (1 = off)", "top-p", "warper",
                         basic=True)
    min_p: float | None = param(None, Optional(Float(0, 1)), "sampling", "min-p filter (off when unset)",
                                "min-p (empty = off)", "warper", basic=True)
    typical_p: float = param(1.0, Float(0, 1, low_open=True), "sampling", "typical-p mass (1 = off)", "typical-p",
                             "warper", basic=True)
    epsilon_cutoff: float = param(0.0, Float(0, 1, high_open=True), "sampling",
                                  "mask tokens less likely than this (0 = off)", "epsilon cutoff", "warper")
    eta_cutoff: float = param(0.0, Float(0, 1, high_open=True), "sampling",
                              "mask tokens below min(eta, sqrt(eta) * exp(-entropy)) (0 = off)", "eta cutoff", "warper")
    seed: int | None = param(None, Optional(Int(0)), "sampling", "random seed: same seed, same trace (drawn and "
                             "recorded when unset)", "seed (empty = random)", "warper", basic=True)
    max_time: float | None = param(None, Optional(Float(0, low_open=True)), "all",
                                   "stop after this many seconds, keeping what was decoded", "max time (s)",
                                   "stopping")
    stop_strings: tuple[str, ...] = param((), Texts(), "all", "stop a sequence when its text ends with one of these "
                                          "(\\n for a newline; repeatable)", "stop strings", "stopping")
    record_top_k: int = param(10, Int(0, LIMITS["record_top_k"]), "all",
                              "candidates recorded per hypothesis: the k best by score and the model's own k best "
                              "(before the processors: what they pushed down shows), besides the selected ones",
                              "recorded candidates",
                              "recording")

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for the trace: tuples as lists, and a Python function by its name (a trace cannot hold it).
        """
        out = {"strategy": self.strategy}
        for p in PARAMS:
            value = getattr(self, p.name)
            if callable(value):
                value = f"<function {getattr(value, '__qualname__', type(value).__name__)}>"
            out[p.name] = _lists(value) if isinstance(value, tuple) else value
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
