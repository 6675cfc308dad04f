"""Assisted decoding against the installed transformers 5.x: the same text, the same drafts round by round, and the
same number of target forwards, for a draft model (a bfloat16 self-draft), a draft with another tokenizer (universal
assisted decoding), an early exit and prompt lookup, greedy.

The reference's candidate generators are instrumented here (what each round drafted), and a forward hook on the
target counts its forwards.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers.generation import candidate_generator as cg

import explorer
from explorer.invariants import check_trace
from explorer.models.base import CausalLM
from explorer.models.tiny import build_model, tiny_tokenizer


def reference(target: CausalLM, prompt: list[int], params: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
              ) -> tuple[list[int], list[tuple[int, ...]], int]:
    """transformers' ``generate`` with the same settings: generated ids, each round's draft, target forwards."""
    p = dict(params)
    drafts: list[tuple[int, ...]] = []
    for cls in (cg.AssistedCandidateGenerator, cg.AssistedCandidateGeneratorDifferentTokenizers,
                cg.PromptLookupCandidateGenerator):
        original = cls.get_candidates

        def recorded(self: Any, input_ids: torch.Tensor, _original: Any = original, **kwargs: Any) -> Any:
            candidates, logits = _original(self, input_ids, **kwargs)
            drafts.append(tuple(candidates[0, input_ids.shape[1] :].tolist()))
            return candidates, logits

        monkeypatch.setattr(cls, "get_candidates", recorded)
    kwargs: dict[str, Any] = {}
    if "assistant_model" in p:
        draft = explorer.load_model(p.pop("assistant_model"), p.pop("assistant_dtype", "float32"))
        config = draft.hf.generation_config  # type: ignore[attr-defined]
        for name, default in (("num_assistant_tokens", 20), ("num_assistant_tokens_schedule", "constant"),
                              ("assistant_confidence_threshold", 0.4)):
            monkeypatch.setattr(config, name, p.pop(name, default))
        kwargs["assistant_model"] = draft.hf  # type: ignore[attr-defined]
        if draft.info.vocab_size != target.info.vocab_size:  # universal assisted decoding: both tokenizers
            kwargs["tokenizer"] = target.tokenizer.hf  # type: ignore[attr-defined]
            kwargs["assistant_tokenizer"] = draft.tokenizer.hf  # type: ignore[attr-defined]
    hf = target.hf  # type: ignore[attr-defined]
    if "assistant_early_exit" in p:  # the draft is the target itself: its schedule is in the target's config
        for name, default in (("num_assistant_tokens", 20), ("num_assistant_tokens_schedule", "constant"),
                              ("assistant_confidence_threshold", 0.4)):
            monkeypatch.setattr(hf.generation_config, name, p.pop(name, default))
    forwards = [0]
    layers = hf.config.num_hidden_layers  # an early exit's draft forwards run fewer: they are not the target's
    hook = hf.register_forward_hook(
        lambda *_: forwards.__setitem__(0, forwards[0] + (hf.model.config.num_hidden_layers == layers)))
    try:
        ids = torch.tensor([prompt])
        eos = target.info.eos_token_ids[0]
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, eos_token_id=eos,
                          pad_token_id=eos, **kwargs, **p)
    finally:
        hook.remove()
    row = out[0, len(prompt) :].tolist()
    return (row[: row.index(eos) + 1] if eos in row else row), drafts, forwards[0]


def check(target: CausalLM, prompt: list[int], params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    trace = explorer.decode(target, prompt, "assisted", **params)
    tokens, drafts, forwards = reference(target, prompt, params, monkeypatch)
    assert list(trace.results[0].token_ids) == tokens
    greedy = explorer.decode(target, prompt, "greedy", max_new_tokens=params["max_new_tokens"],
                             **{k: v for k, v in params.items() if k in ("repetition_penalty", "no_repeat_ngram_size",
                                                                         "min_new_tokens")})
    assert trace.results[0].token_ids == greedy.results[0].token_ids
    assert [tuple(d.token_id for d in s.speculation.drafted) for s in trace.steps if s.speculation] == drafts
    assert len(trace.steps) == forwards
    assert check_trace(trace) == []


SELF_DRAFT = {"assistant_model": "tiny-random", "assistant_dtype": "bfloat16"}
TINY_CASES: list[tuple[list[int], dict[str, Any]]] = [
    ([5, 6, 7, 8, 9], {**SELF_DRAFT, "max_new_tokens": 30}),
    ([100, 200, 300], {**SELF_DRAFT, "max_new_tokens": 25, "num_assistant_tokens": 3,
                       "num_assistant_tokens_schedule": "heuristic"}),
    ([11, 12, 13], {**SELF_DRAFT, "max_new_tokens": 25, "num_assistant_tokens": 4,
                    "num_assistant_tokens_schedule": "heuristic_transient", "assistant_confidence_threshold": 0.0,
                    "repetition_penalty": 1.3}),
    ([7, 8], {**SELF_DRAFT, "max_new_tokens": 20, "num_assistant_tokens": 6, "assistant_confidence_threshold": 0.2,
              "no_repeat_ngram_size": 2, "min_new_tokens": 8}),
    ([5, 6, 7, 5, 6, 7, 5, 6], {"prompt_lookup_num_tokens": 4, "max_new_tokens": 25}),
    ([1, 2, 3, 4, 1, 2, 3, 4, 1, 2], {"prompt_lookup_num_tokens": 10, "max_matching_ngram_size": 3,
                                      "max_new_tokens": 20}),
    ([9, 8, 9, 8, 9, 8], {"prompt_lookup_num_tokens": 3, "max_matching_ngram_size": 1, "max_new_tokens": 15,
                          "no_repeat_ngram_size": 3}),
    ([5, 6, 7, 8, 9], {"assistant_early_exit": 1, "max_new_tokens": 20, "num_assistant_tokens": 4}),
    ([3, 1, 4, 1, 5], {"assistant_early_exit": 1, "max_new_tokens": 25, "num_assistant_tokens": 3,
                       "num_assistant_tokens_schedule": "heuristic", "assistant_confidence_threshold": 0.0,
                       "repetition_penalty": 1.2}),
]


@pytest.mark.reference
@pytest.mark.parametrize(("prompt", "params"), TINY_CASES)
def test_tiny_random_matches_transformers(tiny: CausalLM, prompt: list[int], params: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    check(tiny, prompt, params, monkeypatch)


OTHER_TOKENIZER = {"assistant_model": "tiny-random-bpe"}


@pytest.mark.reference
@pytest.mark.parametrize(
    ("prompt", "params"),
    [
        ("The best way to bake bread is", {**OTHER_TOKENIZER, "max_new_tokens": 30}),
        ("Once upon a time there was a little girl who", {
            **OTHER_TOKENIZER, "max_new_tokens": 25, "num_assistant_tokens": 3,
            "num_assistant_tokens_schedule": "heuristic", "assistant_confidence_threshold": 0.0}),
    ],
)
def test_another_tokenizer_matches_transformers(tiny: CausalLM, prompt: str, params: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Universal assisted decoding: a draft with its own byte-level BPE, re-encoded through text both ways."""
    check(tiny, list(explorer.tokenize_prompt(tiny, prompt)), params, monkeypatch)


@pytest.fixture(scope="module")
def padded_tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tiny-random's own weights under its tokenizer with 8 tokens added (vocabulary 1008): another tokenizer for the
    reference, but a draft that agrees with the target, so that re-encoded drafts are accepted too."""
    folder = tmp_path_factory.mktemp("tiny-padded")
    tokenizer = tiny_tokenizer()
    tokenizer.add_tokens([f"<extra_{i}>" for i in range(8)])
    model = build_model()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.reference
def test_an_agreeing_draft_with_another_tokenizer_matches_transformers(tiny: CausalLM, padded_tiny: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = list(explorer.tokenize_prompt(tiny, "Once upon a time there was a little girl who"))
    params = {"assistant_model": padded_tiny, "max_new_tokens": 25, "num_assistant_tokens": 3,
              "num_assistant_tokens_schedule": "heuristic", "assistant_confidence_threshold": 0.0}
    check(tiny, prompt, params, monkeypatch)
    trace = explorer.decode(tiny, prompt, "assisted", **params)
    assert sum(s.speculation.accepted for s in trace.steps if s.speculation) > 0


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.parametrize(
    ("prompt", "chat", "params"),
    [
        ("The best way to bake bread is", False, {"assistant_model": "smollm2-135m", "assistant_dtype": "bfloat16",
                                                  "max_new_tokens": 30}),
        ("List the days of the week.", True, {"assistant_model": "smollm2-135m", "assistant_dtype": "bfloat16",
                                              "max_new_tokens": 30, "num_assistant_tokens": 5,
                                              "num_assistant_tokens_schedule": "heuristic"}),
        ("Repeat after me: one two three four, one two three four, one two", False,
         {"prompt_lookup_num_tokens": 5, "max_new_tokens": 30}),
        ("The best way to bake bread is", False, {"assistant_early_exit": 20, "max_new_tokens": 30,
                                                  "num_assistant_tokens": 4}),
        ("List the days of the week.", True, {**OTHER_TOKENIZER, "max_new_tokens": 20, "num_assistant_tokens": 4,
                                              "num_assistant_tokens_schedule": "heuristic_transient"}),
    ],
)
def test_smollm2_matches_transformers(smollm2: CausalLM, prompt: str, chat: bool, params: dict[str, Any],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    check(smollm2, list(explorer.tokenize_prompt(smollm2, prompt, chat=chat)), params, monkeypatch)
