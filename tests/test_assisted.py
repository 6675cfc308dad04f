"""Assisted decoding: the record of each round, speculative sampling's law (exact on toy tables, statistical on
tiny-random), and the combinations that cannot run."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

import explorer
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.models.table import TableModel
from explorer.models.tiny import build_model, tiny_tokenizer
from explorer.speculation import DRAFTED_COLUMNS, drafted_frame, speculation_stats
from explorer.strategies._universal import shared_tokens
from explorer.trace import Trace

WORDS = ["a", "b", "c"]
TARGET = {"a": {"a": 0.5, "b": 0.3, "c": 0.2}, "b": {"a": 0.2, "b": 0.2, "c": 0.3, "<eos>": 0.3},
          "c": {"a": 0.1, "b": 0.6, "<eos>": 0.3}}
DRAFT = {"a": {"a": 0.2, "b": 0.5, "c": 0.3}, "b": {"a": 0.5, "b": 0.1, "c": 0.1, "<eos>": 0.3},
         "c": {"a": 0.4, "b": 0.2, "<eos>": 0.4}}


def _table(folder: Path, name: str, table: dict[str, dict[str, float]]) -> str:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"name": name, "tokens": WORDS, "table": table}), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[CausalLM, str]:
    """A toy target and the path of a toy draft with the same words and other probabilities."""
    folder = tmp_path_factory.mktemp("toys")
    target = explorer.load_model(_table(folder, "target", TARGET))
    return target, _table(folder, "draft", DRAFT)


def _law(next_probs: Callable[[tuple[str, ...]], dict[str, float]], length: int) -> dict[tuple[str, ...], float]:
    """The exact probability of every text of at most ``length`` words after "a" (eos included)."""
    law: dict[tuple[str, ...], float] = {}
    frontier = {(): 1.0}
    for _ in range(length):
        grown: dict[tuple[str, ...], float] = {}
        for text, prob in frontier.items():
            for word, p in next_probs(("a", *text)).items():
                if p == 0:
                    continue
                if word == "<eos>":
                    law[(*text, word)] = prob * p
                else:
                    grown[(*text, word)] = prob * p
        frontier = grown
    law.update(frontier)
    return law


def _critical(df: int) -> float:
    """The chi-square value a correct sampler exceeds with probability 1e-4 (Wilson-Hilferty)."""
    z = 3.719
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def _chi2(counts: Counter[object], law: dict[object, float], runs: int) -> float:
    """Pearson's statistic of ``counts`` against ``law`` (outcomes with expected counts below 5 pooled)."""
    stat, pooled_obs, pooled_exp = 0.0, 0, 0.0
    for outcome, p in law.items():
        expected = runs * p
        if expected < 5:
            pooled_obs, pooled_exp = pooled_obs + counts[outcome], pooled_exp + expected
        else:
            stat += (counts[outcome] - expected) ** 2 / expected
    unknown = sum(n for o, n in counts.items() if o not in law)
    pooled_obs += unknown
    if pooled_exp > 0:
        stat += (pooled_obs - pooled_exp) ** 2 / pooled_exp
    elif unknown:
        return math.inf
    return stat


def _words(trace: Trace, model: CausalLM) -> tuple[str, ...]:
    return tuple(model.tokenizer.token_text(t) for t in trace.results[0].token_ids)


def test_toy_rounds_record_the_tables_exactly(tables: tuple[CausalLM, str]) -> None:
    """p and q of every drafted token are the tables' own, and a rejection's residual is max(0, p - q) normalised."""
    target, draft = tables
    assert isinstance(target, TableModel)
    rejections = 0
    for seed in range(40):
        trace = explorer.decode(target, "a", "assisted-sample", assistant_model=draft, seed=seed, max_new_tokens=4,
                                num_assistant_tokens=2, assistant_confidence_threshold=0.0)
        assert check_trace(trace) == []
        words = ["a"]
        for step in trace.steps:
            spec = step.speculation
            assert spec is not None
            context = list(words)
            for d in spec.drafted:
                p, q = TARGET[context[-1]], DRAFT[context[-1]]
                assert d.target_prob == pytest.approx(p.get(d.text, 0.0), abs=1e-6)
                assert d.draft_prob == pytest.approx(q[d.text], abs=1e-6)
                if d.verdict == "rejected":
                    rejections += 1
                    residual = {w: max(0.0, p.get(w, 0.0) - q.get(w, 0.0)) for w in {*p, *q}}
                    total = sum(residual.values())
                    recorded = {target.tokenizer.token_text(t): pr for t, pr in spec.residual}
                    assert recorded == pytest.approx({w: v / total for w, v in residual.items() if v > 0}, abs=1e-6)
                    break
                context.append(d.text)
            words += [target.tokenizer.token_text(t) for t in _step_tokens(step)]
    assert rejections > 5


def _step_tokens(step: explorer.trace.Step) -> list[int]:
    """The tokens a round added, in order (its chain's kept or finished candidates)."""
    return [c.token_id for h in step.hypotheses for c in h.candidates if c.fate in ("kept", "finished")]


def test_toy_speculative_sampling_has_the_targets_law(tables: tuple[CausalLM, str]) -> None:
    """Thousands of seeded runs: the texts follow the target's exact law (and not the draft's, which the same test
    tells apart: it can fail)."""
    target, draft = tables
    assert isinstance(target, TableModel)
    drafter = explorer.load_model(draft)
    assert isinstance(drafter, TableModel)
    runs = 800
    counts: Counter[object] = Counter()
    for seed in range(runs):
        trace = explorer.decode(target, "a", "assisted-sample", assistant_model=draft, seed=seed, max_new_tokens=3,
                                num_assistant_tokens=2, assistant_confidence_threshold=0.0)
        counts[_words(trace, target)] += 1
    law_of = _law(lambda ctx: target.distribution(target.tokenizer.encode(" ".join(ctx))), 3)
    draft_law = _law(lambda ctx: drafter.distribution(drafter.tokenizer.encode(" ".join(ctx))), 3)
    assert sum(law_of.values()) == pytest.approx(1.0)
    df = sum(runs * p >= 5 for p in law_of.values())
    assert _chi2(counts, dict(law_of), runs) < _critical(df)
    assert _chi2(counts, dict(draft_law), runs) > _critical(df)


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder holding tiny-random's architecture with other weights (seed 1) and the same tokenizer: a draft
    that disagrees with the target often."""
    folder = tmp_path_factory.mktemp("tiny-seed-1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = type(build_model())(build_model().config)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


def test_tiny_random_speculative_sampling_has_the_targets_law(tiny: CausalLM, other_tiny: str) -> None:
    """The first token of assisted-sample (drafted by another model, checked by speculative sampling) follows the
    target's processed distribution, not the draft's."""
    prompt = [5, 6, 7]
    logits, _ = tiny.start(prompt)
    p = torch.softmax(logits[0] / 0.5, dim=-1)
    q_logits, _ = explorer.load_model(other_tiny).start(prompt)
    q = torch.softmax(q_logits[0] / 0.5, dim=-1)
    runs = 600
    counts: Counter[object] = Counter()
    for seed in range(runs):
        trace = explorer.decode(tiny, prompt, "assisted-sample", assistant_model=other_tiny, seed=seed,
                                max_new_tokens=2, temperature=0.5, num_assistant_tokens=1, record_top_k=1)
        counts[trace.results[0].token_ids[0]] += 1
    law = {t: float(v) for t, v in enumerate(p.tolist())}
    df = sum(runs * v >= 5 for v in law.values())
    assert _chi2(counts, law, runs) < _critical(df)
    assert _chi2(counts, {t: float(v) for t, v in enumerate(q.tolist())}, runs) > _critical(df)


def test_rounds_round_trip_through_json(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, [5, 6, 7], "assisted-sample", assistant_model="tiny-random",
                            assistant_dtype="bfloat16", seed=3, max_new_tokens=12, num_assistant_tokens=3)
    assert explorer.Trace.from_json(trace.to_json()) == trace
    assert all(s.speculation is not None for s in trace.steps)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "assistant_model=None is invalid: expected a draft model name, or set prompt_lookup_num_tokens"),
        ({"assistant_model": "tiny-random", "prompt_lookup_num_tokens": 3}, "one candidate source at a time"),
        ({"prompt_lookup_num_tokens": 3, "num_assistant_tokens": 4}, "unset with prompt lookup"),
        ({"assistant_model": "tiny-random", "max_matching_ngram_size": 2}, "unset unless prompt_lookup_num_tokens"),
        ({"assistant_model": "tiny-random", "num_beams": 2},
         "num_beams=2 is invalid: expected unset: it applies only to"),
        ({"assistant_model": "smollm2-135m-nonexistent"}, "unknown model"),
        ({"assistant_model": "toy:how-to-generate"}, "a draft with the target's vocabulary"),
        ({"assistant_early_exit": 2}, "below the target's 2 layers"),
        ({"assistant_early_exit": 1, "assistant_model": "tiny-random"}, "unset while assistant_model is set"),
        ({"assistant_early_exit": 1, "prompt_lookup_num_tokens": 3}, "unset while prompt_lookup_num_tokens is set"),
        ({"assistant_early_exit": 1, "assistant_dtype": "bfloat16"}, "the early exit runs the target's own weights"),
        ({"assistant_early_exit": 0}, "assistant_early_exit=0 is invalid"),
    ],
)
def test_impossible_combinations_are_one_line(tiny: CausalLM, params: dict[str, object], message: str) -> None:
    with pytest.raises(explorer.ExplorerError, match=message) as error:
        explorer.decode(tiny, [5, 6, 7], "assisted", max_new_tokens=5, **params)
    assert "\n" not in str(error.value)


def test_a_toy_table_has_no_layers_to_exit_from(tables: tuple[CausalLM, str]) -> None:
    with pytest.raises(explorer.ParameterError, match="an early exit needs a transformer's layers") as error:
        explorer.decode(tables[0], "a", "assisted", assistant_early_exit=1, max_new_tokens=3)
    assert "\n" not in str(error.value)


def test_early_exit_drafts_from_the_targets_first_layers_and_leaves_the_target_whole(tiny: CausalLM) -> None:
    """The draft's logits are the target's first layer, its norm and head (the layers after it cut off); the
    target's own forwards, during and after the run, still use every layer."""
    hf = tiny.hf  # type: ignore[attr-defined]
    full, _ = tiny.extend([5, 6, 7], None, 1)  # type: ignore[attr-defined]
    trace = explorer.decode(tiny, [5, 6, 7], "assisted", assistant_early_exit=1, max_new_tokens=12,
                            assistant_confidence_threshold=0.0, num_assistant_tokens=3)
    assert {s.speculation.source for s in trace.steps if s.speculation} == {"assistant_early_exit"}
    assert trace.results[0].token_ids == explorer.decode(tiny, [5, 6, 7], "greedy", max_new_tokens=12
                                                         ).results[0].token_ids
    assert hf.config.num_hidden_layers == 2
    after, _ = tiny.extend([5, 6, 7], None, 1)  # type: ignore[attr-defined]
    assert torch.equal(full, after)
    draft, cache = tiny.early_exit(1).extend([5, 6, 7], None, 1)  # type: ignore[attr-defined]
    assert len(cache.layers) == 1, "the draft's cache holds the layers it ran"
    with torch.inference_mode():
        hidden = hf.model(input_ids=torch.tensor([[5, 6, 7]]), output_hidden_states=True).hidden_states[1]
        by_hand = hf.lm_head(hf.model.norm(hidden))[0, -1].float()
    assert torch.allclose(draft[0], by_hand, atol=1e-5)
    assert not torch.allclose(draft[0], full[0], atol=1e-3)
    with pytest.raises(explorer.ExplorerError, match="needs 1 to 1 of"):
        tiny.early_exit(2)  # type: ignore[attr-defined]


def test_early_exit_speculative_sampling_has_the_targets_law(tiny: CausalLM) -> None:
    """The first token of ``assisted-sample`` with an early-exit draft against ``sample``'s exact distribution."""
    logits, _ = tiny.extend([5, 6, 7], None, 1)  # type: ignore[attr-defined]
    probs = torch.softmax(logits[0] / 2.0, dim=-1)
    top = torch.topk(probs, 6).indices.tolist()
    counts = dict.fromkeys(top, 0)
    other = 0
    runs = 600
    for seed in range(runs):
        trace = explorer.decode(tiny, [5, 6, 7], "assisted-sample", assistant_early_exit=1, max_new_tokens=1,
                                temperature=2.0, top_k=0, seed=seed)
        first = trace.results[0].token_ids[0]
        if first in counts:
            counts[first] += 1
        else:
            other += 1
    expected = [float(probs[t]) * runs for t in top] + [(1 - float(probs[top].sum())) * runs]
    observed = [counts[t] for t in top] + [other]
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    assert statistic < 20.5, f"chi-square {statistic:.1f} on 6 degrees of freedom (p < 0.002): {observed} vs {expected}"


def test_a_draft_with_other_words_is_refused(tables: tuple[CausalLM, str], tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"name": "other", "tokens": ["x", "y", "z"], "table": {"x": {"y": 1.0}}}))
    with pytest.raises(explorer.ParameterError, match="a draft with the target's vocabulary, or transformers"):
        explorer.decode(tables[0], "a", "assisted", assistant_model=str(other), max_new_tokens=3)


def test_a_stopped_run_keeps_its_rounds(tiny: CausalLM) -> None:
    seen: list[object] = []
    trace = explorer.decode(tiny, [5, 6, 7], "assisted", assistant_model="tiny-random", assistant_dtype="bfloat16",
                            max_new_tokens=30, num_assistant_tokens=2, on_step=seen.append,
                            should_stop=lambda: len(seen) >= 2)
    assert trace.stop_reason == "stopped"
    assert len(trace.steps) == 2
    assert check_trace(trace) == []


def _chain(trace: Trace) -> Sequence[int]:
    return [t for s in trace.steps for t in _step_tokens(s)]


def test_the_chain_of_hypotheses_spells_the_result(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, [1, 2, 3, 1, 2, 3, 1, 2], "assisted", prompt_lookup_num_tokens=4,
                            max_new_tokens=20)
    assert list(_chain(trace)) == list(trace.results[0].token_ids)
    greedy = explorer.decode(tiny, [1, 2, 3, 1, 2, 3, 1, 2], "greedy", max_new_tokens=20)
    assert trace.results[0].score == pytest.approx(greedy.results[0].score, rel=1e-5)


def test_the_drafted_frame_has_a_row_per_drafted_token(tiny: CausalLM) -> None:
    trace = explorer.decode(tiny, [5, 6, 7], "assisted-sample", assistant_model="tiny-random",
                            assistant_dtype="bfloat16", seed=5, max_new_tokens=10, num_assistant_tokens=2)
    frame = drafted_frame(trace)
    assert list(frame.columns) == [name for name, _ in DRAFTED_COLUMNS]
    assert len(frame) == sum(len(s.speculation.drafted) for s in trace.steps if s.speculation)
    accepted = frame[frame["verdict"] == "accepted"]
    assert (accepted["draw"] <= accepted["ratio"]).all()
    rejected = frame[frame["verdict"] == "rejected"]
    assert (rejected["draw"] > rejected["ratio"]).all()
    stats = speculation_stats(trace)
    assert stats is not None
    assert stats.accepted == len(accepted)
    assert stats.tokens == len(trace.results[0].token_ids) == 10
    assert speculation_stats(explorer.decode(tiny, [5, 6, 7], "greedy", max_new_tokens=3)) is None


def test_a_draft_with_another_tokenizer_samples_the_targets_law(tiny: CausalLM) -> None:
    """assisted-sample with a draft of another tokenizer (the reference's universal speculative decoding): it drafts
    only tokens both vocabularies share, its recorded q is its own distribution moved onto the target's vocabulary,
    and the first token follows the target's processed distribution, not the draft's."""
    prompt = list(explorer.tokenize_prompt(tiny, "The best way to bake bread is"))
    draft = explorer.load_model("tiny-random-bpe")
    shared = shared_tokens(tiny.tokenizer.hf, draft.tokenizer.hf)  # type: ignore[attr-defined]
    logits, _ = tiny.start(prompt)
    p = torch.softmax(logits[0] / 0.5, dim=-1)
    q_logits, _ = draft.start(draft.tokenizer.encode(tiny.tokenizer.decode(prompt)))
    allowed = torch.zeros_like(q_logits[0], dtype=torch.bool)
    allowed[list(shared)] = True
    q_draft = torch.softmax(q_logits[0].masked_fill(~allowed, -math.inf) / 0.5, dim=-1)
    q = torch.zeros_like(p)
    q[list(shared.values())] = q_draft[list(shared)]
    runs = 400
    counts: Counter[object] = Counter()
    for seed in range(runs):
        trace = explorer.decode(tiny, prompt, "assisted-sample", assistant_model="tiny-random-bpe", seed=seed,
                                max_new_tokens=2, temperature=0.5, num_assistant_tokens=1, record_top_k=1)
        counts[trace.results[0].token_ids[0]] += 1
        first = trace.steps[0].speculation.drafted[0]  # type: ignore[union-attr]
        assert first.token_id in shared.values()
        assert first.draft_prob == pytest.approx(float(q[first.token_id]), rel=1e-5)
    law = {t: float(v) for t, v in enumerate(p.tolist())}
    df = sum(runs * v >= 5 for v in law.values())
    assert _chi2(counts, law, runs) < _critical(df)
    assert _chi2(counts, {t: float(v) for t, v in enumerate(q.tolist())}, runs) > _critical(df)
