"""Exercise checks for the course notebooks: each computes the right answer from a trace and says whether yours is it.

Every check takes the student's ``answer`` last; ``None`` (the notebooks' placeholder) gives a hint instead of a
verdict, so a notebook runs top to bottom before anyone has answered. An answer counts in any of its natural
spellings: ``2``, ``2.0``, ``"2"`` and ``" 2 "`` are the same count, ``0.36``, ``"0.36"``, ``"36%"`` and ``"9/25"``
the same probability, ``"True"`` and ``"yes"`` the same as ``True``, and texts ignore surrounding and repeated
whitespace; an answer of the wrong kind (``"two"``, ``True`` for a count) is told what kind is expected.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from explorer import _answers
from explorer.models.base import CausalLM
from explorer.strategies import get
from explorer.trace import (
    Candidate,
    ContrastCandidate,
    Contrastive,
    DolaCandidate,
    Hypothesis,
    LayerContrast,
    Result,
    Trace,
)

__all__ = [
    "FEEDBACK_COLORS",
    "Feedback",
    "check_acceptance_probability",
    "check_best_probability",
    "check_completion_step",
    "check_constraints_satisfied",
    "check_contrast_score",
    "check_contrastive_choice",
    "check_distinct_results",
    "check_divergence_step",
    "check_forced_token",
    "check_group_result",
    "check_live_hypotheses",
    "check_penalty",
    "check_premature_layer",
    "check_processed_probability",
    "check_pruned_token",
    "check_reproduces",
    "check_residual_token",
    "check_result_text",
    "check_steps_run",
    "check_surviving_tokens",
    "check_survivor",
    "check_tokens_per_forward",
    "divergence_step",
    "expected_tokens_per_forward",
    "next_probabilities",
    "path_probability",
    "rerun",
    "result_logprob",
]


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer; shows as a green (right), red (wrong) or grey (no answer yet) line."""

    correct: bool
    message: str
    answered: bool = True

    def __str__(self) -> str:
        mark = "✓ " if self.correct else ("✗ " if self.answered else "… ")
        return mark + self.message

    def __bool__(self) -> bool:
        return self.correct

    def _repr_html_(self) -> str:
        """The line in the page's own text colour, on a tint of the verdict's colour with a bar of it at the left:
        readable on a light and on a dark page (the colours hold 3:1 against both, ``FEEDBACK_COLORS``)."""
        r, g, b = (int(FEEDBACK_COLORS[self.verdict][i : i + 2], 16) for i in (1, 3, 5))
        return (f'<div class="explorer-feedback explorer-feedback-{self.verdict}" style="font-weight:600;'
                f"padding:2px 8px;border-left:4px solid {FEEDBACK_COLORS[self.verdict]};"
                f'background:rgba({r},{g},{b},0.14)">{html.escape(str(self))}</div>')

    @property
    def verdict(self) -> str:
        """``"right"``, ``"wrong"`` or ``"pending"`` (no answer yet)."""
        return "right" if self.correct else ("wrong" if self.answered else "pending")


#: The colour of each verdict (a bar and a tint: the text keeps the page's colour).
FEEDBACK_COLORS = {"right": "#1A7F37", "wrong": "#D92D20", "pending": "#8C8C8C"}


def _verdict(correct: bool, right: str, wrong: str) -> Feedback:
    return Feedback(correct, right if correct else wrong)


def _no_answer(hint: str) -> Feedback:
    """What a check says while ``answer`` is still ``None``."""
    return Feedback(False, f"no answer yet. Hint: {hint}", answered=False)


def _not_a(kind: str, answer: object) -> Feedback:
    return Feedback(False, f"expected {kind}, got {answer!r}")


def _judge_count(answer: object, truth: int, right: str, hint: str) -> Feedback:
    """The verdict on a count or a step number, spelt as the student likes (2, 2.0, "2")."""
    value = _answers.count(answer)
    if value is None:
        return _not_a("a whole number", answer)
    return _verdict(value == truth, right, f"not quite (you said {value}): {hint}")


def _judge_probability(answer: object, truth: float, tolerance: float, hint: str) -> Feedback:
    """The verdict on a probability (0.36, "0.36", "36%"), right within ``tolerance``."""
    value = _answers.probability(answer)
    if value is None:
        return _not_a("a probability (a number)", answer)
    if not 0.0 <= value <= 1.0:
        return Feedback(False, f"a probability is between 0 and 1 (you said {value:g}): {hint}")
    return _verdict(abs(value - truth) <= tolerance, f"yes: {truth:.3f}", f"not quite (you said {value:g}): {hint}")


def _same_text(a: str, b: str) -> bool:
    """Texts equal up to surrounding and repeated whitespace."""
    return a.split() == b.split()


# --- values the checks and the notebooks share ------------------------------------------------------------------


def path_probability(model: CausalLM, prompt_ids: Sequence[int], continuation: Sequence[int]) -> float:
    """The model's probability of ``continuation`` after ``prompt_ids`` (product of next-token probabilities).

    >>> import explorer
    >>> toy = explorer.load_model("toy:how-to-generate")
    >>> ids = toy.tokenizer.encode
    >>> round(path_probability(toy, ids("The"), ids("dog has")), 2)
    0.36
    """
    import torch

    logp = 0.0
    with torch.inference_mode():
        logits, cache = model.start(list(prompt_ids))
        for i, token in enumerate(continuation):
            logp += float(torch.log_softmax(logits[0], dim=-1)[token])
            if i + 1 < len(continuation):
                logits, cache = model.step(torch.tensor([token]), cache)
    return math.exp(logp)


def result_logprob(trace: Trace, rank: int = 0) -> float:
    """The summed token scores of a result, before the length penalty divides them (its log-probability when no
    processor changed the scores).

    >>> import explorer
    >>> toy = explorer.load_model("toy:how-to-generate")
    >>> t = explorer.decode(toy, "The", "beam", num_beams=2, max_new_tokens=3, length_penalty=1.0)
    >>> round(math.exp(result_logprob(t)), 2), round(t.results[0].score, 3)
    (0.36, -0.341)
    """
    result = trace.results[rank]
    entries = [f for s in trace.steps for f in s.finished if f.id == result.source]
    if entries:
        return entries[0].score
    if get(trace.strategy).family == "rows":
        return result.score  # rows are never length-penalised
    penalty = float(trace.params.get("length_penalty", 1.0))
    return float(result.score * max(len(result.token_ids), 1) ** penalty)


def divergence_step(first: Trace, second: Trace, rank: int = 0) -> int | None:
    """The first step at which the results of ``rank`` of two runs chose different tokens (``None``: same tokens).

    >>> import explorer
    >>> toy = explorer.load_model("toy:how-to-generate")
    >>> greedy = explorer.decode(toy, "The", "greedy", max_new_tokens=3)
    >>> divergence_step(greedy, explorer.decode(toy, "The", "beam", num_beams=2, max_new_tokens=3))
    0
    """
    a, b = first.results[rank].token_ids, second.results[rank].token_ids
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if a == b else min(len(a), len(b))


def _result(trace: Trace, rank: int) -> Result:
    if not 0 <= rank < len(trace.results):
        raise ValueError(f"rank={rank} is invalid: the run has {len(trace.results)} results")
    return trace.results[rank]


def _step_hypotheses(trace: Trace, step: int) -> tuple[Hypothesis, ...]:
    if not 0 <= step < len(trace.steps):
        raise ValueError(f"step={step} is invalid: expected 0 to {len(trace.steps) - 1}")
    return trace.steps[step].hypotheses


# --- greedy and beam search -------------------------------------------------------------------------------------


def check_best_probability(trace: Trace, answer: float | str | None, tolerance: float = 0.005) -> Feedback:
    """Is ``answer`` the probability of the best result (exp of its summed log-probs, no length penalty)?"""
    hint = "multiply the probabilities of the best result's tokens (eos included)"
    if answer is None:
        return _no_answer(hint)
    return _judge_probability(answer, math.exp(result_logprob(trace)), tolerance, hint)


def check_live_hypotheses(trace: Trace, step: int, answer: int | str | None) -> Feedback:
    """Is ``answer`` the number of live hypotheses at ``step``?"""
    hint = f"count the hypotheses of trace.steps[{step}]"
    if answer is None:
        return _no_answer(hint)
    truth = len(_step_hypotheses(trace, step))
    return _judge_count(answer, truth, f"yes: {truth} hypotheses are live at step {step}", hint)


def check_survivor(model: CausalLM, trace: Trace, step: int, answer: str | None) -> Feedback:
    """Is ``answer`` (text) the generated text of a hypothesis still live at ``step``?

    The first step is 0; the hypotheses of a step are the ones that survived the step before.
    """
    hint = f"the hypotheses of trace.steps[{step}] are the ones that survived step {step - 1}; decode their tokens"
    if answer is None:
        return _no_answer(hint)
    if not isinstance(answer, str):
        return _not_a("text", answer)
    texts = {model.tokenizer.decode(list(h.token_ids)).strip() for h in _step_hypotheses(trace, step)}
    ok = any(_same_text(answer, text) for text in texts)
    return _verdict(ok, f"yes: {answer.strip()!r} is live at step {step}",
                    f"not quite ({answer.strip()!r} is not live at step {step}): {hint}")


def check_divergence_step(first: Trace, second: Trace, answer: int | str | None) -> Feedback:
    """Is ``answer`` the first step (from 0) at which the two runs' best results chose different tokens?"""
    hint = "compare the token ids of the two best results, position by position (position i is chosen at step i)"
    if answer is None:
        return _no_answer(hint)
    truth = divergence_step(first, second)
    if truth is None:
        return _verdict(False, "", "the two best results are identical: they never diverge")
    return _judge_count(answer, truth, f"yes: they part at step {truth}", hint)


def check_result_text(trace: Trace, answer: str | None, rank: int = 0) -> Feedback:
    """Is ``answer`` the text of the result of ``rank`` (0 = the winner)?"""
    hint = f"look at trace.results[{rank}].text"
    if answer is None:
        return _no_answer(hint)
    if not isinstance(answer, str):
        return _not_a("text", answer)
    truth = _result(trace, rank).text
    return _verdict(_same_text(answer, truth), f"yes: result {rank} is {truth.strip()!r}",
                    f"not quite (you said {answer.strip()!r}): {hint}")


def check_pruned_token(trace: Trace, step: int, answer: str | None) -> Feedback:
    """Is ``answer`` the text of a candidate that the search pruned at ``step`` (considered, then dropped)?"""
    hint = f"in trace.to_frame(), look at the rows of step {step} whose fate is 'pruned'"
    if answer is None:
        return _no_answer(hint)
    if not isinstance(answer, str):
        return _not_a("a token's text", answer)
    pruned = {c.text.strip() for h in _step_hypotheses(trace, step) for c in h.candidates if c.fate == "pruned"}
    ok = answer.strip() in pruned
    return _verdict(ok, f"yes: {answer.strip()!r} was pruned at step {step}",
                    f"not quite ({answer.strip()!r} was not pruned at step {step}): {hint}")


def check_steps_run(trace: Trace, answer: int | str | None) -> Feedback:
    """Is ``answer`` the number of steps the search ran before it stopped?"""
    hint = "each step is one forward pass; count trace.steps (the first step is step 0)"
    if answer is None:
        return _no_answer(hint)
    truth = len(trace.steps)
    return _judge_count(answer, truth, f"yes: {truth} steps (stop reason: {trace.stop_reason})", hint)


# --- sampling ---------------------------------------------------------------------------------------------------


def _candidate(trace: Trace, step: int, token: str, slot: int) -> Candidate:
    """The recorded candidate with this text (surrounding spaces ignored) of the hypothesis in ``slot``."""
    hyps = [h for h in _step_hypotheses(trace, step) if h.slot == slot]
    cands = [c for h in hyps for c in h.candidates if c.text == token]
    cands = cands or [c for h in hyps for c in h.candidates if c.text.strip() == token.strip()]
    if not cands:
        raise ValueError(f"token {token!r} is not recorded at step {step} for slot {slot}")
    return cands[0]


def check_processed_probability(trace: Trace, token: str, answer: float | str | None, step: int = 0, slot: int = 0,
                                tolerance: float = 0.01) -> Feedback:
    """Is ``answer`` the probability that sampling gives ``token`` at ``step`` after every processor?

    That is ``exp(score)`` of its recorded candidate: the processed distribution, renormalised.
    """
    hint = "the 'prob' column is the raw probability; the probability after the processors is exp('score')"
    if answer is None:
        return _no_answer(hint)
    return _judge_probability(answer, math.exp(_candidate(trace, step, token, slot).score), tolerance, hint)


def check_surviving_tokens(trace: Trace, step: int, processor: str, answer: int | str | None) -> Feedback:
    """Is ``answer`` how many of the best hypothesis's recorded candidates ``processor`` left unmasked at ``step``?"""
    hint = f"count the candidates whose adj_{processor} is not -inf"
    if answer is None:
        return _no_answer(hint)
    hyp = _step_hypotheses(trace, step)[0]
    masked = sum(1 for c in hyp.candidates if dict(c.adjustments).get(processor) == -math.inf)
    truth = len(hyp.candidates) - masked
    right = f"yes: {truth} of the {len(hyp.candidates)} recorded candidates survive {processor}"
    return _judge_count(answer, truth, right, hint)


def check_distinct_results(trace: Trace, answer: int | str | None) -> Feedback:
    """Is ``answer`` the number of different texts among the results?"""
    hint = "put the texts of trace.results in a set and count it"
    if answer is None:
        return _no_answer(hint)
    truth = len({r.text for r in trace.results})
    return _judge_count(answer, truth, f"yes: {truth} different texts among {len(trace.results)} results", hint)


# --- diverse and constrained beam search -------------------------------------------------------------------------


def check_penalty(trace: Trace, step: int, group: int, token_id: int, answer: float | str | None) -> Feedback:
    """Is ``answer`` the diversity penalty (the adjustment, <= 0) that ``token_id`` got in ``group`` at ``step``?"""
    hint = ("the adjustment is -diversity_penalty times the number of earlier groups' beams that chose the token "
            "at this step (see the adj_diversity_penalty column)")
    if answer is None:
        return _no_answer(hint)
    value = _answers.number(answer)
    if value is None:
        return _not_a("a number", answer)
    if value > 0:
        return Feedback(False, f"a penalty lowers the score: give it as a number <= 0 (you said {value:g})")
    for hyp in _step_hypotheses(trace, step):
        if hyp.group != group:
            continue
        for c in hyp.candidates:
            if c.token_id == token_id:
                truth = dict(c.adjustments).get("diversity_penalty", 0.0)
                return _verdict(math.isclose(value, truth, abs_tol=1e-6), f"yes: {truth:g}",
                                f"not quite (you said {value:g}): {hint}")
    return Feedback(False, f"token {token_id} is not recorded for group {group} at step {step}")


def check_group_result(trace: Trace, group: int, answer: str | None) -> Feedback:
    """Is ``answer`` the text of the best result that ``group`` returned (diverse search)?"""
    hint = f"look for the first of trace.results whose group is {group}"
    if answer is None:
        return _no_answer(hint)
    if not isinstance(answer, str):
        return _not_a("text", answer)
    mine = [r for r in trace.results if r.group == group]
    if not mine:
        return Feedback(False, f"no result came from group {group}: ask for more (num_return_sequences)")
    truth = mine[0].text
    return _verdict(_same_text(answer, truth), f"yes: group {group} returned {truth.strip()!r}",
                    f"not quite (you said {answer.strip()!r}): {hint}")


def check_completion_step(trace: Trace, answer: int | str | None, rank: int = 0) -> Feedback:
    """Is ``answer`` the step at which the result of ``rank`` first had every constraint complete?

    Steps count from 0; a hypothesis recorded at step t holds the tokens of steps 0 to t - 1.
    """
    hint = ("follow the result's path: the hypotheses at step t hold the tokens chosen at steps 0 to t - 1; "
            "find the first whose constraint progress is completed")
    if answer is None:
        return _no_answer(hint)
    result = _result(trace, rank)
    done = [s.index - 1 for s in trace.steps for h in s.hypotheses if h.constraint is not None
            and h.constraint.completed and result.token_ids[: len(h.token_ids)] == h.token_ids]
    truth = min(done) if done else result.finished_step
    return _judge_count(answer, truth, f"yes: the constraints were complete after step {truth}", hint)


def check_forced_token(trace: Trace, step: int, answer: str | None) -> Feedback:
    """Is ``answer`` the text of a candidate that constrained search forced at ``step``?"""
    hint = f"at step {step}, look for candidates whose reason starts with 'forced'"
    if answer is None:
        return _no_answer(hint)
    if not isinstance(answer, str):
        return _not_a("a token's text", answer)
    forced = {c.text for h in _step_hypotheses(trace, step) for c in h.candidates if c.reason.startswith("forced")}
    if not forced:
        return Feedback(False, f"nothing was forced at step {step}")
    ok = answer in forced or answer.strip() in {t.strip() for t in forced}
    said = answer if answer in forced else answer.strip()
    return _verdict(ok, f"yes: {said!r} was forced at step {step}", f"not quite (you said {said!r}): {hint}")


def check_constraints_satisfied(trace: Trace, answer: bool | str | None, rank: int = 0) -> Feedback:
    """Is ``answer`` (True or False) whether the result of ``rank`` contains every constraint?"""
    hint = f"read trace.results[{rank}].constraints_satisfied, or look for each phrase in its tokens"
    if answer is None:
        return _no_answer(hint)
    value = _answers.truth(answer)
    if value is None:
        return _not_a("True or False", answer)
    truth = bool(_result(trace, rank).constraints_satisfied)
    said = "it does" if truth else "it does not"
    return _verdict(value == truth, f"yes: {said}", f"not quite (you said {value}): {hint}")


# --- grading handed-in traces --------------------------------------------------------------------------------------


def rerun(model: CausalLM, trace: Trace) -> Trace:
    """Decode again with everything ``trace`` recorded: prompt tokens, strategy, parameters (seed included) and
    constraints.

    >>> import explorer
    >>> toy = explorer.load_model("toy:how-to-generate")
    >>> t = explorer.decode(toy, "The", "sample", seed=3, max_new_tokens=3, num_return_sequences=4)
    >>> [r.token_ids for r in rerun(toy, t).results] == [r.token_ids for r in t.results]
    True
    """
    from explorer.api import decode

    params = {k: v for k, v in trace.params.items() if k not in ("strategy", "chat")}
    constraints = [c["token_ids"] if c["kind"] == "phrase" else c["options"] for c in trace.constraints]
    return decode(model, list(trace.prompt_token_ids), trace.strategy, constraints=constraints, **params)


def check_reproduces(model: CausalLM, trace: Trace, tolerance: float = 1e-4) -> Feedback:
    """Does ``model``, decoding again with the trace's recorded settings, give the trace's results (the same
    token ids, scores within ``tolerance``)? A handed-in trace that passes was made by this model and these
    settings, not edited."""
    if trace.model != model.info.name:
        return Feedback(False, f"the trace was made with {trace.model!r}, not {model.info.name!r}")
    again = rerun(model, trace).results
    same = len(again) == len(trace.results) and all(
        a.token_ids == b.token_ids and abs(a.score - b.score) <= tolerance * max(1.0, abs(b.score))
        for a, b in zip(again, trace.results, strict=True))
    return _verdict(same, f"yes: decoding again gives the same {len(again)} result(s)",
                    "no: decoding again with the recorded settings gives different results")


# --- speculative decoding (notebook 06) -----------------------------------------------------------------------------


def next_probabilities(model: CausalLM, context: Sequence[int]) -> dict[str, float]:
    """The model's next-token distribution after ``context`` (token ids), by token text, largest first; tokens of
    probability 0 left out.

    >>> toy = explorer.load_model("toy:how-to-generate")  # doctest: +SKIP
    >>> next_probabilities(toy, toy.tokenizer.encode("The"))  # doctest: +SKIP
    {'nice': 0.5, 'dog': 0.4, 'car': 0.1}
    """
    import torch

    logits, _ = model.start(list(context))
    probs = torch.softmax(logits[0].double(), dim=-1)
    order = torch.argsort(probs, descending=True).tolist()
    return {model.tokenizer.token_text(t): float(probs[t]) for t in order if float(probs[t]) > 0.0}


def _pair(target: CausalLM, draft: CausalLM, context: str) -> tuple[dict[str, float], dict[str, float]]:
    ids = target.tokenizer.encode(context)
    return next_probabilities(target, ids), next_probabilities(draft, ids)


def check_acceptance_probability(target: CausalLM, draft: CausalLM, context: str, token: str,
                                 answer: float | str | None, tolerance: float = 0.005) -> Feedback:
    """Is ``answer`` the probability that speculative sampling keeps ``token``, drafted after ``context``?

    That is ``min(1, p / q)``: ``p`` the target's probability of the token there, ``q`` the draft's.
    """
    hint = f"compare the target's and the draft's probability of {token!r} after {context!r}: min(1, p / q)"
    if answer is None:
        return _no_answer(hint)
    p, q = (probs.get(token, 0.0) for probs in _pair(target, draft, context))
    return _judge_probability(answer, min(1.0, p / q) if q > 0 else 1.0, tolerance, hint)


def check_residual_token(target: CausalLM, draft: CausalLM, context: str, answer: str | None) -> Feedback:
    """Is ``answer`` the most likely token of the residual ``max(0, p - q)`` (renormalised) after ``context``: what
    speculative sampling most likely writes when it rejects the draft's token there?"""
    hint = "subtract the draft's probabilities from the target's, token by token, and keep what stays above 0"
    if answer is None:
        return _no_answer(hint)
    if not isinstance(answer, str):
        return _not_a("a token's text", answer)
    p, q = _pair(target, draft, context)
    residual = {t: max(0.0, p.get(t, 0.0) - q.get(t, 0.0)) for t in set(p) | set(q)}
    total = sum(residual.values())
    best = max(residual, key=lambda t: residual[t])
    return _verdict(answer.strip() == best.strip(),
                    f"yes: {best!r} ({residual[best] / total:.2f} of the residual)",
                    f"not quite ({answer.strip()!r} has {residual.get(answer.strip(), 0.0) / total:.2f} of the "
                    f"residual): {hint}")


def expected_tokens_per_forward(acceptance: float, draft_length: int) -> float:
    """Tokens one target forward gives on average when each drafted token is accepted with probability
    ``acceptance`` independently and ``draft_length`` are drafted: ``(1 - a ** (g + 1)) / (1 - a)``
    (``g + 1`` when every token is accepted).

    >>> round(expected_tokens_per_forward(0.7, 3), 4), expected_tokens_per_forward(1.0, 3)
    (2.533, 4.0)
    """
    if acceptance >= 1.0:
        return float(draft_length + 1)
    return (1.0 - acceptance ** (draft_length + 1)) / (1.0 - acceptance)


def check_tokens_per_forward(acceptance: float, draft_length: int, answer: float | str | None,
                             tolerance: float = 0.01) -> Feedback:
    """Is ``answer`` the expected number of tokens per target forward (``expected_tokens_per_forward``)?"""
    hint = ("the forward always gives one token of its own; the i-th drafted token counts only if it and every one "
            "before it were accepted: 1 + a + a^2 + ... + a^g")
    if answer is None:
        return _no_answer(hint)
    value = _answers.number(answer)
    if value is None:
        return _not_a("a number", answer)
    truth = expected_tokens_per_forward(acceptance, draft_length)
    return _verdict(abs(value - truth) <= tolerance, f"yes: {truth:.3f}", f"not quite (you said {value:g}): {hint}")


# --- inside the model: DoLa and contrastive search (notebook 07) ----------------------------------------------------


def _dola(trace: Trace, step: int) -> LayerContrast:
    """The layer contrast DoLa recorded at ``step``."""
    _step_hypotheses(trace, step)  # a step of the run
    record = trace.steps[step].dola
    if record is None:
        raise ValueError(f"step {step} records no layer contrast: the run is {trace.strategy!r}, not 'dola'")
    return record


def _ranking(trace: Trace, step: int) -> Contrastive:
    """The candidates' ranking contrastive search recorded at ``step``."""
    _step_hypotheses(trace, step)  # a step of the run
    record = trace.steps[step].contrastive
    if record is None:
        raise ValueError(f"step {step} records no ranking: the run is {trace.strategy!r}, not 'contrastive'")
    return record


_Named = TypeVar("_Named", DolaCandidate, ContrastCandidate)


def _named(candidates: Sequence[_Named], text: str) -> _Named | None:
    """The candidate whose text is ``text``, or else the one it is up to surrounding spaces (``"Paris"`` for
    ``" Paris"``); ``None`` if none is."""
    exact = [c for c in candidates if c.text == text]
    loose = [c for c in candidates if c.text.strip() == text.strip()]
    found = exact or loose
    return found[0] if found else None


def check_premature_layer(trace: Trace, step: int, answer: int | str | None,
                          layers: Sequence[int] | None = None) -> Feedback:
    """Is ``answer`` the premature layer DoLa contrasts with at ``step``: of the candidate ``layers`` (by default the
    run's own), the one whose next-token distribution diverges most from the final layer's (Jensen-Shannon)?

    ``layers`` are some of the run's candidate layers, whose divergences the step recorded: at step 0 (the text so
    far is the prompt whatever the layers) the answer is the layer a run with ``dola_layers=layers`` picks.
    """
    hint = (f"trace.steps[{step}].dola.divergences holds one divergence per layer of trace.steps[{step}].dola.layers: "
            "DoLa contrasts with the layer of the largest")
    if answer is None:
        return _no_answer(hint)
    record = _dola(trace, step)
    among = record.layers if layers is None else tuple(int(i) for i in layers)
    unknown = [i for i in among if i not in record.layers]
    if unknown or not among:
        raise ValueError(f"layers={layers!r} is invalid: expected some of the run's candidate layers {record.layers}")
    value = _answers.count(answer)
    if value is None:
        return _not_a("a layer number (a whole number)", answer)
    if value not in among:
        return Feedback(False, f"layer {value} is not a candidate: DoLa picks one of the layers {among}")
    divergence = dict(zip(record.layers, record.divergences, strict=True))
    truth = record.chosen_layer if layers is None else max(among, key=divergence.__getitem__)
    return _verdict(value == truth, f"yes: layer {truth}, the most divergent ({divergence[truth]:.3g})",
                    f"not quite (layer {value}'s divergence is {divergence[value]:.3g}): {hint}")


def _contrast_number(answer: object) -> float | None:
    """A contrast score as the student spells it: a number, or minus infinity (``"-inf"``, ``-math.inf``)."""
    value = _answers.number(answer)
    if value is None and isinstance(answer, str):
        spelt = answer.strip().replace("\N{MINUS SIGN}", "-").lower()
        value = -math.inf if spelt in ("-inf", "-infinity", "-math.inf", "-∞") else None
    return value


def check_contrast_score(trace: Trace, step: int, token: str, answer: float | str | None,
                         tolerance: float = 0.01) -> Feedback:
    """Is ``answer`` the contrast score DoLa gave ``token`` (its text) at ``step``: ``log p_final - log p_premature``,
    its log-probabilities at the final layer and at the premature layer chosen there (before the processors, such as
    the repetition penalty, adjust it)? A token the plausibility cut removed scores ``-inf``."""
    hint = "subtract the token's premature_logprob from its final_logprob (both natural logarithms)"
    if answer is None:
        return _no_answer(hint)
    record = _dola(trace, step)
    candidate = _named(record.candidates, token)
    if candidate is None:
        raise ValueError(f"token {token!r} is not recorded at step {step}: the recorded tokens are "
                         f"{[c.text for c in record.candidates]}")
    value = _contrast_number(answer)
    if value is None:
        return _not_a("a number", answer)
    if not candidate.plausible:
        return _verdict(value == -math.inf, "yes: -inf, the plausibility cut removed it",
                        f"not quite: {candidate.text!r} did not pass the plausibility cut (its final probability is "
                        "below a tenth of the best token's), so its contrast score is -inf")
    truth = candidate.contrast
    right = f"yes: {truth:.3f} = {candidate.final_logprob:.3f} - ({candidate.premature_logprob:.3f})"
    if abs(value - truth) <= tolerance:
        return Feedback(True, right)
    if abs(value - math.exp(truth)) <= tolerance * max(1.0, math.exp(truth)):
        return Feedback(False, f"not quite (you said {value:g}): that is the ratio p_final / p_premature; the "
                        "contrast score is its logarithm")
    return Feedback(False, f"not quite (you said {value:g}): {hint}")


def check_contrastive_choice(trace: Trace, step: int, answer: str | None, alpha: float | None = None) -> Feedback:
    """Is ``answer`` (a token's text) the candidate contrastive search picks at ``step``: the highest
    ``(1 - alpha) * prob - alpha * penalty``, with the run's ``penalty_alpha`` or another ``alpha``?

    With another ``alpha`` the recorded candidates are scored again: at step 0 (the text so far is the prompt, the
    candidates the same) the answer is what a run with ``penalty_alpha=alpha`` picks.
    """
    record = _ranking(trace, step)
    a = record.alpha if alpha is None else float(alpha)
    hint = (f"score each candidate of trace.steps[{step}].contrastive: (1 - {a:g}) * prob - {a:g} * penalty; "
            "the highest wins")
    if answer is None:
        return _no_answer(hint)
    if not isinstance(answer, str):
        return _not_a("a token's text", answer)
    scores = {c.token_id: (1.0 - a) * c.prob - a * c.penalty for c in record.candidates}
    best = max(record.candidates, key=lambda c: scores[c.token_id])
    said = _named(record.candidates, answer)
    if said is None:
        return Feedback(False, f"{answer.strip()!r} is not a candidate at step {step}: contrastive search picks one "
                        f"of {[c.text for c in record.candidates]}")
    return _verdict(said.token_id == best.token_id,
                    f"yes: {best.text!r} scores {scores[best.token_id]:.3f}, the highest",
                    f"not quite ({said.text!r} scores {scores[said.token_id]:.3f}): {hint}")
