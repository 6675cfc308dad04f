"""The trace: frozen records of plain values for every step, hypothesis and candidate of a decoding run."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMAT_VERSION",
    "PLACEHOLDER",
    "Candidate",
    "ConstraintProgress",
    "ContrastCandidate",
    "Contrastive",
    "DolaCandidate",
    "Drafted",
    "Fate",
    "Finished",
    "Hypothesis",
    "LayerContrast",
    "Result",
    "Speculation",
    "Step",
    "Trace",
    "Verdict",
]

#: Version of the JSON trace format (see ``trace.schema.json``): the minor number grows when fields or values are added
#: (1.1: finished entries that ended on a stop string or the time limit; 1.2: a step's speculation, in assisted
#: decoding; 1.3: a step's layer contrast in DoLa and its candidates' ranking in contrastive search; 1.4: a
#: hypothesis's entropy; 1.5: the model's own top-k recorded beside the processed one, each candidate's ``raw_rank``),
#: the major one on an incompatible change. Readers accept every 1.x document.
FORMAT_VERSION = "1.5"

#: Scores at or below this are the reference's "impossible" placeholders (-1e9 and what is added to it): rows that
#: fill a beam when too few real continuations exist, never a real hypothesis's score.
PLACEHOLDER = -1.0e8

#: An adjustment smaller than this (in log-prob) changed nothing worth naming: float rounding, not a processor's doing.
CHANGED = 1e-6

Fate = Literal["kept", "pruned", "finished", "masked"]
FATES: tuple[Fate, ...] = ("kept", "pruned", "finished", "masked")


@dataclass(frozen=True)
class Candidate:
    """One next-token candidate of a hypothesis at one step.

    ``logprob`` is the model's raw log-probability; ``score`` the per-token score after every processor (what the
    strategy ranks by); ``adjustments`` the change each processor made, in order, so that
    ``logprob + sum(adjustments) == score`` up to float rounding (``-inf`` where a processor masked the token).
    ``total`` is the hypothesis score the candidate would give (``parent score + score``). ``rank`` is its place
    among all tokens of the vocabulary for this hypothesis (0 = best); ``raw_rank`` the same by the raw ``logprob``,
    before any processor (``None`` in traces older than format 1.4). The recorded candidates are the ``record_top_k``
    best by score and, since 1.4, the ``record_top_k`` best by raw log-prob too, so a candidate a processor pushed
    down or masked stays in view. ``child`` is the id of the hypothesis it became (kept) or of the finished entry it
    made (finished).
    """

    token_id: int
    text: str
    logprob: float
    score: float
    total: float
    rank: int
    adjustments: tuple[tuple[str, float], ...]
    fate: Fate
    reason: str
    child: int | None = None
    raw_rank: int | None = None

    @property
    def masked_by(self) -> str | None:
        """The processor that masked the candidate (its adjustment is ``-inf``), ``None`` if none did."""
        return next((name for name, change in self.adjustments if change == -math.inf), None)

    @property
    def pushed_down_by(self) -> tuple[str, ...]:
        """The processors that lowered the candidate's log-prob (a negative adjustment, masking included)."""
        return tuple(name for name, change in self.adjustments if change < -CHANGED)


@dataclass(frozen=True)
class ConstraintProgress:
    """Where one hypothesis stands against its constraints (the reference's tracker, fed prompt and tokens).

    ``status[i]`` is ``"complete"``, ``"in_progress"`` or ``"pending"`` for constraint ``i``; ``matched[i]`` how many
    of its tokens are matched; ``bank`` the reference's bank (complete * longest + progress).
    """

    status: tuple[str, ...]
    matched: tuple[int, ...]
    lengths: tuple[int, ...]
    bank: int
    completed: bool


@dataclass(frozen=True)
class Hypothesis:
    """A live hypothesis at the start of a step: its tokens so far, score, and the candidates it offered.

    ``entropy`` (format 1.4) is the entropy in nats of the distribution its next token is chosen from: the softmax of
    its final scores at this step, after every processor; ``None`` in older traces.
    """

    id: int
    parent: int | None
    slot: int
    group: int
    token_ids: tuple[int, ...]
    score: float
    candidates: tuple[Candidate, ...]
    constraint: ConstraintProgress | None = None
    forced: bool = False
    entropy: float | None = None


@dataclass(frozen=True)
class Finished:
    """A hypothesis that ended (eos, the length limit, a stop string, the time limit, or the end of the search) and
    asked to join the pool.

    ``score`` is the sum of its tokens' scores. ``normalized_score`` is the value the pool is ranked by: in the beam
    family ``score / length ** length_penalty``; in greedy and sample, which never length-penalise, the plain
    ``score``. ``accepted`` says whether it entered the pool of best finished hypotheses.
    """

    id: int
    hypothesis: int
    step: int
    group: int
    token_ids: tuple[int, ...]
    score: float
    normalized_score: float
    length: int
    reason: Literal["eos", "max_length", "end_of_search", "stop_string", "max_time"]
    accepted: bool
    note: str = ""


Verdict = Literal["accepted", "rejected", "unchecked", "dropped"]
VERDICTS: tuple[Verdict, ...] = ("accepted", "rejected", "unchecked", "dropped")


@dataclass(frozen=True)
class Drafted:
    """One token the draft proposed in a round of assisted decoding, and what the target made of it.

    ``draft_prob`` is the draft's probability of it (its processed distribution ``q``; ``None`` for prompt lookup,
    which has none); ``target_prob`` the target's (``p``, processed, at the same position). ``verdict``:
    ``accepted`` (it is in the text), ``rejected`` (the first one the target refused), ``unchecked`` (after a
    rejection), ``dropped`` (accepted, but after eos or past the token budget). ``draw`` is the uniform number
    speculative sampling compared with ``p / q`` (accepted when ``draw <= p / q``).
    """

    token_id: int
    text: str
    draft_prob: float | None
    target_prob: float
    verdict: Verdict
    reason: str
    draw: float | None = None


@dataclass(frozen=True)
class Speculation:
    """One round of assisted decoding: what was drafted, what the target kept, and what it added itself.

    ``source`` is the candidate source (``assistant_model``, ``assistant_early_exit``, ``prompt_lookup``; a draft
    with another tokenizer: ``assistant_model (re-encoded)`` with greedy verification, its drafted target tokens
    without ``draft_prob``, and ``assistant_model (shared tokens)`` with speculative sampling). ``added`` is the
    target's own token after the accepted ones (``added_kind``: ``correction`` after a rejection, ``bonus`` after a
    fully accepted draft; ``None`` when eos or the budget ended the text first); after a rejection in speculative
    sampling ``residual`` lists the most likely tokens of the normalised residual ``max(0, p - q)`` it was drawn from.
    ``draft_length`` is the number of tokens the schedule asked for this round, ``next_draft_length`` the next
    round's; ``draft_ms`` the draft's time (the target's forward is the step's ``forward_ms``).
    """

    source: str
    drafted: tuple[Drafted, ...]
    added: int | None
    added_kind: Literal["bonus", "correction"] | None
    residual: tuple[tuple[int, float], ...]
    draft_length: int
    next_draft_length: int
    draft_ms: float

    @property
    def accepted(self) -> int:
        """How many drafted tokens went into the text."""
        return sum(d.verdict == "accepted" for d in self.drafted)


@dataclass(frozen=True)
class DolaCandidate:
    """One token as DoLa saw it at a step: its log-probability at the final layer and at the chosen premature layer
    (the LM head applied to that layer's hidden state, as the reference does), and its contrast score, the
    difference of the two; ``plausible`` is False when the plausibility cut removed it (its final probability below
    a tenth of the best token's), its contrast score then being ``-inf``."""

    token_id: int
    text: str
    final_logprob: float
    premature_logprob: float
    contrast: float
    plausible: bool


@dataclass(frozen=True)
class LayerContrast:
    """One step of DoLa: every candidate premature layer's Jensen-Shannon divergence from the final layer (the
    reference's value: the mean over the vocabulary of the two Kullback-Leibler terms, halved), the layer chosen
    (the most divergent), how many tokens passed the plausibility cut, and the recorded tokens: the final layer's
    best, the best contrast scores and the chosen token.

    ``layer_probs`` follows the chosen token through the layers DoLa reads (each candidate layer, then the final
    one, in ``layers`` order plus the final layer last): its probability and its rank (0 = the layer's top token)
    in that layer's distribution.
    """

    layers: tuple[int, ...]
    divergences: tuple[float, ...]
    chosen_layer: int
    final_layer: int
    plausible: int
    candidates: tuple[DolaCandidate, ...]
    layer_probs: tuple[tuple[float, int], ...]


@dataclass(frozen=True)
class ContrastCandidate:
    """One of contrastive search's ``top_k`` candidates at a step: the model's confidence (its processed
    probability), its degeneration penalty (the largest cosine similarity between its hidden state and a context
    position's), which position of the text that was (``similar_to``: an index into prompt + generated tokens, and
    the token there), and its score ``(1 - alpha) * prob - alpha * penalty``."""

    token_id: int
    text: str
    prob: float
    penalty: float
    similar_to: int
    similar_token: int
    score: float


@dataclass(frozen=True)
class Contrastive:
    """One step of contrastive search: the ``top_k`` candidates in the model's order (most probable first) and
    which one won (``chosen``: an index into ``candidates``, the highest score)."""

    alpha: float
    candidates: tuple[ContrastCandidate, ...]
    chosen: int


@dataclass(frozen=True)
class Step:
    """One decoding step: the live hypotheses, new finished entries, and the pool after the step.

    In assisted decoding a step is one verification forward of the target: its hypotheses form a chain (one per
    token the step added, each the parent of the next) and ``speculation`` records the round. In DoLa ``dola`` records
    the layer contrast the step's token came from; in contrastive search ``contrastive`` the candidates' ranking.
    """

    index: int
    hypotheses: tuple[Hypothesis, ...]
    finished: tuple[Finished, ...] = ()
    pool: tuple[int, ...] = ()
    done_groups: tuple[int, ...] = ()
    forward_ms: float = 0.0
    search_ms: float = 0.0
    speculation: Speculation | None = None
    dola: LayerContrast | None = None
    contrastive: Contrastive | None = None


@dataclass(frozen=True)
class Result:
    """A returned sequence, best first: generated ids only (through eos if produced) and its score."""

    rank: int
    token_ids: tuple[int, ...]
    text: str
    score: float
    finished_step: int
    ended_with_eos: bool
    group: int = 0
    source: int | None = None
    constraints_satisfied: bool | None = None


@dataclass(frozen=True)
class Trace:
    """Everything one decoding run did, as plain values. Build it with :func:`explorer.decode`.

    >>> import explorer
    >>> trace = explorer.decode(explorer.load_model("tiny-random"), [5, 6, 7], strategy="greedy", max_new_tokens=3)
    >>> len(trace.steps), trace.results[0].rank
    (3, 0)
    """

    model: str
    strategy: str
    prompt: str | None
    prompt_token_ids: tuple[int, ...]
    params: dict[str, Any]
    constraints: tuple[dict[str, Any], ...]
    processors: tuple[str, ...]
    eos_token_ids: tuple[int, ...]
    steps: tuple[Step, ...]
    results: tuple[Result, ...]
    stop_reason: str
    total_ms: float
    version: str = FORMAT_VERSION
    meta: dict[str, Any] = field(default_factory=dict)

    # --- conversions (implemented in their own modules, re-exported here for discoverability) ---
    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int | None = None) -> str:
        """The trace as a JSON document (written to ``path`` too when given)."""
        from explorer.trace_io import dump_trace

        return dump_trace(self, path, indent=indent)

    @staticmethod
    def from_json(source: str | os.PathLike[str]) -> Trace:
        """Read a trace from a JSON string or a file path, validating it against the schema."""
        from explorer.trace_io import load_trace

        return load_trace(source)

    def to_frame(self) -> pd.DataFrame:
        """A tidy DataFrame: one row per (step, hypothesis, recorded candidate)."""
        from explorer.frames import candidates_frame

        return candidates_frame(self)

    def tree_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Tree nodes (one per hypothesis per step, plus finished leaves) and their edges."""
        from explorer.frames import tree_frames

        return tree_frames(self)

    def hypothesis(self, hyp_id: int) -> Hypothesis:
        """The hypothesis with this id."""
        for step in self.steps:
            for hyp in step.hypotheses:
                if hyp.id == hyp_id:
                    return hyp
        raise KeyError(hyp_id)
