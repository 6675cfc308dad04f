"""A transformers causal LM behind the engine's ``CausalLM`` protocol: prompt, one token per row, row gathering."""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.utils import logging as hf_logging

from explorer.errors import ExplorerError
from explorer.models.base import ModelInfo
from explorer.models.tokenizer import Tokenizer

__all__ = [
    "CastSource", "EarlyExit", "HFCausalLM", "Layers", "align_weights", "cache_keyword", "cast_copy", "device_copy",
    "model_info", "quiet_progress_bars", "quiet_warnings",
]

_Layer = TypeVar("_Layer")
#: Where ``HFCausalLM.cast`` gets a lower-precision copy of the weights (e.g. a mapped cache); else ``cast_copy``.
CastSource = Callable[[torch.dtype], PreTrainedModel]
#: Every layer's hidden states from one forward: the embeddings, then each layer's output (the last one normed).
Layers = tuple[torch.Tensor, ...]


def _as_ids(value: object) -> tuple[int, ...]:
    """Token ids from a config field that may be ``None``, an int or a list."""
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(int(v) for v in value)
    return ()


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide transformers' tqdm bars for the duration (restored afterwards)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """Show only transformers' errors for the duration (its verbosity restored afterwards)."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword ``model.forward`` takes its KV cache by, read from its signature: ``"cache"`` (transformers
    5.24 and later, where ``past_key_values`` is deprecated) or ``"past_key_values"`` (earlier releases).

    The forward's output carries the cache under the same name. Decided from the signature, not from a version
    string, so a model class that moves later (or earlier) than the rest of transformers is still called right.

    >>> cache_keyword(load_model("tiny-random").hf)  # doctest: +SKIP
    'cache'
    """
    parameters = inspect.signature(type(model).forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise ExplorerError(f"{type(model).__name__}.forward takes no KV cache (neither cache= nor past_key_values=)")


def model_info(name: str, model: PreTrainedModel, tokenizer: Tokenizer) -> ModelInfo:
    """The facts a trace records about ``model``: eos from the generation config, else the config, else the tokenizer.

    ``pad_token_id`` is the generation config's pad, else the first eos id (as ``generate()`` does).
    """
    config = model.config.get_text_config(decoder=True)
    generation = getattr(model, "generation_config", None)
    eos = _as_ids(getattr(generation, "eos_token_id", None)) or _as_ids(getattr(config, "eos_token_id", None))
    if not eos and tokenizer.eos_token_id is not None:
        eos = (tokenizer.eos_token_id,)
    pads = _as_ids(getattr(generation, "pad_token_id", None)) or _as_ids(getattr(config, "pad_token_id", None))
    pad = pads[0] if pads else (eos[0] if eos else 0)
    return ModelInfo(
        name=name,
        vocab_size=int(config.vocab_size),
        eos_token_ids=eos,
        pad_token_id=pad,
        max_context=int(getattr(config, "max_position_embeddings", 0) or 0),
        dtype=str(model.dtype).removeprefix("torch."),
        num_layers=int(getattr(config, "num_hidden_layers", 0) or 0),
    )


def align_weights(model: torch.nn.Module, alignment: int = 64) -> int:
    """Copy every parameter and buffer whose memory is not ``alignment``-byte aligned into a fresh (aligned)
    tensor, in place; return how many were copied.

    Weights memory-mapped from safetensors start wherever the file puts them, and CPU matrix-vector kernels
    round differently on unaligned rows: the same weights gave last-bit different logits loaded from the
    cache than loaded from the GGUF. Aligned copies make logits independent of how the weights were loaded.
    Tied weights stay tied (a shared parameter is copied once). Weights mapped from a file whose tensors are
    aligned (``explorer.models.mapped.write_aligned``, the SmolLM2 cache) are left where they are, shared.
    """
    copied = 0
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.numel() and tensor.data_ptr() % alignment:
                tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
                copied += 1
    return copied


def _float32_pattern(model: PreTrainedModel, dtype: torch.dtype) -> re.Pattern[str] | None:
    """The parameter names ``from_pretrained(..., dtype=dtype)`` keeps in float32, as transformers 5 decides:
    the class's ``_keep_in_fp32_modules`` for float16, ``_keep_in_fp32_modules_strict`` for float16 and
    bfloat16, each a glob searched anywhere in the name. ``None`` when nothing is kept."""
    globs: set[str] = set()
    if dtype == torch.float16:
        globs.update(getattr(model, "_keep_in_fp32_modules", None) or ())
    if dtype in (torch.float16, torch.bfloat16):
        globs.update(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    return re.compile("|".join(glob.replace("*", ".*") for glob in sorted(globs))) if globs else None


def cast_copy(model: PreTrainedModel, dtype: torch.dtype) -> PreTrainedModel:
    """A deep copy of ``model`` whose floating-point parameters are cast to ``dtype``; ``model`` is untouched.

    Only parameters are cast, as ``from_pretrained(..., dtype=dtype)`` loads them: buffers (rotary frequencies)
    stay as they are, and so do the modules the model class keeps in float32. Tied parameters stay tied. The
    float32 parameters are never copied, so the copy costs only its own weights' memory.
    """
    keep = _float32_pattern(model, dtype)
    memo: dict[int, object] = {}
    with torch.no_grad():
        for name, parameter in model.named_parameters():  # tied parameters are listed once
            if parameter.is_floating_point() and not (keep is not None and keep.search(name)):
                cast = parameter.detach().to(dtype=dtype, memory_format=torch.contiguous_format, copy=True)
                memo[id(parameter)] = torch.nn.Parameter(cast, requires_grad=parameter.requires_grad)
    copied = copy.deepcopy(model, memo)
    copied.config.dtype = dtype
    return copied


def device_copy(model: PreTrainedModel, device: torch.device) -> PreTrainedModel:
    """A deep copy of ``model`` with every parameter and buffer on ``device``; ``model`` is untouched (its weights
    may be mapped from a shared file, and they stay there). Tied parameters stay tied."""
    memo: dict[int, object] = {}
    with torch.no_grad():
        for parameter in model.parameters():  # tied parameters are listed once
            moved = parameter.detach().to(device=device, copy=True)
            memo[id(parameter)] = torch.nn.Parameter(moved, requires_grad=parameter.requires_grad)
        for buffer in model.buffers():
            memo[id(buffer)] = buffer.to(device=device, copy=True)
    return copy.deepcopy(model, memo)


def _gather_layer(layer: _Layer, rows: torch.Tensor) -> _Layer:
    """A copy of one cache layer holding only ``rows``, gathered by the layer's own ``reorder_cache`` (what
    ``generate()`` uses for beams: ``index_select``, so new tensors). The copy gets its own lists and dicts, so
    layers that reorder a list of states item by item cannot write into the original.
    """
    picked = copy.copy(layer)
    for key, value in vars(layer).items():
        if isinstance(value, list | dict):
            setattr(picked, key, copy.copy(value))
    picked.reorder_cache(rows)  # type: ignore[attr-defined]
    return picked


class HFCausalLM:
    """A transformers causal LM seen one token at a time, with a ``DynamicCache`` as the opaque cache.

    The forward calls match what transformers ``generate()`` passes (it drops an all-ones attention mask;
    positions follow the cache length; ``logits_to_keep=1``), and weights are re-aligned on load (see
    ``align_weights``), so logits equal ``generate()``'s bit for bit, in transformers 5.x and 4.56.2 alike.
    On CPU a row's logits also depend, in the last bits, on the batch size and (with several threads) on the
    row's place in the batch: run the same rows in the same order as ``generate()`` to agree exactly.

    >>> lm = load_model("tiny-random")  # doctest: +SKIP
    >>> logits, cache = lm.start([1, 2, 3])  # doctest: +SKIP
    >>> logits, cache = lm.step(logits.argmax(-1), cache)  # doctest: +SKIP
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: Tokenizer, name: str, *, cast_source: CastSource | None = None
    ) -> None:
        align_weights(model)
        self._cast_source = cast_source
        torch.nn.Module.eval(model)
        self.hf = model
        self.tokenizer = tokenizer
        self.info = model_info(name, model, tokenizer)
        self._cache_config = model.config.get_text_config(decoder=True)
        self._cache_keyword = cache_keyword(model)
        self._device = model.device

    def __repr__(self) -> str:
        return f"HFCausalLM({self.info.name!r}, vocab_size={self.info.vocab_size}, dtype={self.info.dtype!r})"

    def early_exit(self, layers: int) -> EarlyExit:
        """This model cut after its first ``layers`` layers, its final norm and LM head applied there: a draft that
        shares this model's weights (``assistant_early_exit``)."""
        return EarlyExit(self, layers)

    def cast(self, dtype: str) -> HFCausalLM:
        """A new model whose weights are a ``dtype`` copy of this one's (``"bfloat16"`` or ``"float16"``), named
        ``"<name> (<dtype>)"``; this model and its weights are untouched, the tokenizer is shared.

        Its logits are still returned as float32 (``start``/``step``), so everything downstream stays float32.
        The weights come from the model's ``cast_source`` when it has one (SmolLM2: a mapped cache, shared between
        processes), else from ``cast_copy``; both give the same weights bit for bit.
        """
        from explorer.models.precision import display_name, torch_dtype

        target = torch_dtype(dtype)
        weights = self._cast_source(target) if self._cast_source is not None else cast_copy(self.hf, target)
        return HFCausalLM(weights, self.tokenizer, display_name(self.info.name, dtype))

    def to_device(self, device: str | torch.device) -> HFCausalLM:
        """A new model whose weights are a copy of this one's on ``device`` (``"cuda"``, ``"cuda:1"``, ...), same name
        and tokenizer; this model is untouched. The KV cache lives on that device; logits come back as float32 on the
        CPU (``start``/``step``), so everything downstream is as on a CPU. Results equal the CPU's token for token
        in general, not bit for bit (other kernels round differently).
        """
        return HFCausalLM(device_copy(self.hf, torch.device(device)), self.tokenizer, self.info.name)

    @property
    def device(self) -> torch.device:
        """Where the weights and the KV cache are."""
        return torch.device(self._device)

    def start(self, prompt_ids: list[int], rows: int = 1) -> tuple[torch.Tensor, object]:
        """Run the prompt; return float32 logits ``[rows, vocab]`` for the next token and the cache (``rows`` rows).

        ``rows > 1`` runs the prompt as ``rows`` identical rows in one batch, as ``generate()`` does for beam
        search. A row's logits depend (in the last bits) on the batch size, so this is what makes the first
        beam step bit-identical to ``generate()``; expanding a 1-row cache with ``select`` differs by ~1e-5.
        """
        self._check_prompt(prompt_ids)
        if rows < 1:
            raise ExplorerError(f"rows={rows!r} is invalid: expected an integer >= 1")
        input_ids = torch.tensor([prompt_ids] * rows, dtype=torch.long, device=self._device)
        cache = DynamicCache(config=self._cache_config)
        return self._forward(input_ids, cache)

    def step(self, tokens: torch.Tensor, cache: object) -> tuple[torch.Tensor, object]:
        """Feed one token per row (``tokens``: ``[rows]`` int64); return logits ``[rows, vocab]`` and the cache.

        The cache is extended in place and returned.
        """
        past = self._check_cache(cache)
        rows = tokens.reshape(-1, 1).to(device=self._device, dtype=torch.long)
        held = _cache_rows(past)
        if held is not None and rows.shape[0] != held:
            raise ExplorerError(f"step got {rows.shape[0]} tokens for a cache of {held} rows")
        return self._forward(rows, past)

    def _forward(self, input_ids: torch.Tensor, cache: DynamicCache) -> tuple[torch.Tensor, object]:
        """One forward over ``input_ids`` ``[rows, length]`` extending ``cache``: the last position's logits and the
        cache, passed by the keyword the installed transformers takes (``cache_keyword``)."""
        with torch.inference_mode():
            out = self.hf(input_ids=input_ids, use_cache=True, logits_to_keep=1, **{self._cache_keyword: cache})
        return self._last_logits(out.logits), out[self._cache_keyword]

    def forward_layers(self, tokens: torch.Tensor, cache: object | None) -> tuple[torch.Tensor, Layers, object]:
        """Feed ``tokens`` (``[rows, length]`` int64) to ``cache`` (``None``: a fresh one for a prompt) with every
        layer's hidden states: float32 logits ``[rows, vocab]`` of the last position, the hidden states, and the
        cache (extended in place).

        The hidden states are ``num_layers + 1`` tensors ``[rows, length, hidden]``, transformers' convention: the
        embeddings, each layer's output, and for the last layer its output after the final norm (what the LM head
        reads). DoLa reads a layer's by ``head``, the logit lens by ``lens``; contrastive search compares the last.
        Only the strategies that need them ask: other runs never pay for them.

        >>> lm = load_model("tiny-random")  # doctest: +SKIP
        >>> logits, hidden, cache = lm.forward_layers(torch.tensor([[5, 6, 7]]), None)  # doctest: +SKIP
        >>> len(hidden), hidden[0].shape  # doctest: +SKIP
        (3, torch.Size([1, 3, 64]))
        """
        if cache is None:
            self._check_prompt(tokens[0].tolist())
            past = DynamicCache(config=self._cache_config)
        else:
            past = self._check_cache(cache)
        input_ids = tokens.to(device=self._device, dtype=torch.long)
        with torch.inference_mode():
            out = self.hf(input_ids=input_ids, use_cache=True, logits_to_keep=1, output_hidden_states=True,
                          **{self._cache_keyword: past})
        return self._last_logits(out.logits), tuple(out.hidden_states), out[self._cache_keyword]

    @property
    def tied(self) -> bool:
        """Whether the LM head shares the embeddings' weights (DoLa then skips the lowest layers)."""
        config = self.hf.config.get_text_config(decoder=True)
        return bool(getattr(config, "tie_word_embeddings", getattr(self.hf.config, "tie_word_embeddings", True)))

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head applied to hidden states ``[..., hidden]`` as they are (no final norm): float32 logits on the
        CPU. What DoLa does with a premature layer, as the reference does."""
        with torch.inference_mode():
            logits = self.hf.get_output_embeddings()(hidden)  # type: ignore[no-untyped-call]
        return self._float_logits(logits)

    def lens(self, hidden: torch.Tensor) -> torch.Tensor:
        """The logit lens: the final norm, then the LM head, applied to hidden states ``[..., hidden]`` of any layer
        (float32 logits on the CPU). For the last layer's (already normed) use ``head``."""
        base = getattr(self.hf, self.hf.base_model_prefix, self.hf)
        norm = getattr(base, "norm", None) or getattr(base, "final_layernorm", None) or getattr(base, "ln_f", None)
        if norm is None:
            raise ExplorerError(f"{self.info.name} has no final norm the logit lens knows "
                                "(norm, final_layernorm, ln_f)")
        with torch.inference_mode():
            logits = self.hf.get_output_embeddings()(norm(hidden))  # type: ignore[no-untyped-call]
        return self._float_logits(logits)

    def extend(self, tokens: list[int], cache: object | None, keep: int) -> tuple[torch.Tensor, object]:
        """Feed ``tokens`` to a one-row ``cache`` (``None``: a fresh one, the prompt's prefill) in one forward;
        return float32 logits ``[keep, vocab]`` of the last ``keep`` positions and the cache (extended in place).

        What assisted decoding needs: the target checks several drafted tokens in one forward, as the reference
        does (``logits_to_keep`` = drafted tokens + 1), and ``crop`` drops the rejected ones afterwards.

        >>> lm = load_model("tiny-random")  # doctest: +SKIP
        >>> logits, cache = lm.extend([5, 6, 7], None, 2)  # doctest: +SKIP
        >>> logits.shape[0], lm.cache_length(cache)  # doctest: +SKIP
        (2, 3)
        """
        if cache is None:
            self._check_prompt(tokens)
            past = DynamicCache(config=self._cache_config)
        else:
            past = self._check_cache(cache)
        if not 1 <= keep <= len(tokens):
            raise ExplorerError(f"keep={keep} is invalid: expected 1 to {len(tokens)} (the tokens fed)")
        input_ids = torch.tensor([tokens], dtype=torch.long, device=self._device)
        with torch.inference_mode():
            out = self.hf(input_ids=input_ids, use_cache=True, logits_to_keep=keep, **{self._cache_keyword: past})
        logits = out.logits[0, -keep:, :]
        return self._float_logits(logits), out[self._cache_keyword]

    def crop(self, cache: object, length: int) -> object:
        """Keep the first ``length`` positions of ``cache`` (in place; returned): the drafted tokens the target
        rejected leave the cache."""
        past = self._check_cache(cache)
        remove = int(past.get_seq_length()) - length
        if remove < 0:
            raise ExplorerError(f"cannot crop a cache of {past.get_seq_length()} positions to {length}")
        if remove:  # a negative count removes that many in transformers 4.x and 5.x alike (5.x refuses positives)
            with torch.inference_mode():
                past.crop(-remove)
        return past

    def cache_length(self, cache: object) -> int:
        """Number of positions ``cache`` holds."""
        return int(self._check_cache(cache).get_seq_length())

    def select(self, cache: object, rows: torch.Tensor) -> object:
        """Gather cache rows by index (``rows``: ``[new_rows]`` int64) into a new cache; ``cache`` is untouched."""
        past = self._check_cache(cache)
        index = rows.reshape(-1).to(device=self._device, dtype=torch.long)
        with torch.inference_mode():
            picked = copy.copy(past)
            picked.layers = [_gather_layer(layer, index) for layer in past.layers]
        return picked

    def _last_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Float32 logits of the last position, on the CPU: a fresh copy the caller owns (an ordinary tensor when the
        caller is not in inference mode, so it may be edited in place).

        Lower-precision logits are cast first, as ``generate()`` does, and checked: float16 can overflow to
        inf/nan, which would silently break every score downstream.
        """
        return self._float_logits(logits[:, -1, :])

    def _float_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` as a fresh float32 tensor on the CPU, checked for overflow when computed in lower precision."""
        last = logits.to(device="cpu", dtype=torch.float32, copy=True)
        if logits.dtype != torch.float32 and not bool(torch.isfinite(last).all()):
            raise ExplorerError(
                f"{self.info.dtype} logits of {self.info.name!r} overflowed to inf/nan: use dtype='float32'"
            )
        return last

    def _check_prompt(self, prompt_ids: list[int]) -> None:
        """Refuse an empty prompt, ids outside the vocabulary, or a prompt longer than the context."""
        if len(prompt_ids) == 0:
            raise ExplorerError("prompt_ids is empty: expected at least one token id")
        low, high = min(prompt_ids), max(prompt_ids)
        if low < 0 or high >= self.info.vocab_size:
            bad = low if low < 0 else high
            raise ExplorerError(f"prompt token id {bad} is invalid: expected 0 <= id < {self.info.vocab_size}")
        if self.info.max_context and len(prompt_ids) > self.info.max_context:
            raise ExplorerError(f"prompt has {len(prompt_ids)} tokens: the model takes at most {self.info.max_context}")

    @staticmethod
    def _check_cache(cache: object) -> DynamicCache:
        """The cache as a ``DynamicCache``, or a clear error for anything else."""
        if not isinstance(cache, DynamicCache):
            raise ExplorerError(f"cache is a {type(cache).__name__}: expected the cache returned by start/step/select")
        return cache


def _cache_rows(cache: DynamicCache) -> int | None:
    """Number of rows (batch size) held by a filled cache; ``None`` if no layer holds attention keys."""
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if isinstance(keys, torch.Tensor) and keys.dim() > 0:
            return int(keys.shape[0])
    return None


class EarlyExit:
    """A model's first ``layers`` decoder layers, then its final norm and LM head: the self-speculative draft of
    ``assistant_early_exit``. It shares the model's weights and keeps its own cache (of ``layers`` layers), as the
    reference's ``EarlyExitCandidateGenerator`` does: the reference sets the base model's ``num_hidden_layers`` for
    the draft's forwards, and so does this, for each of its forwards only (the model's own calls are untouched).

    >>> draft = load_model("tiny-random").early_exit(1)  # doctest: +SKIP
    >>> logits, cache = draft.extend([1, 2, 3], None, 1)  # doctest: +SKIP
    """

    def __init__(self, model: HFCausalLM, layers: int) -> None:
        total = model.info.num_layers
        if not 0 < layers < total:
            raise ExplorerError(f"an early exit needs 1 to {total - 1} of {model.info.name}'s {total} layers, "
                                f"not {layers}")
        self.model, self.layers = model, layers
        self.info = model.info
        self.tokenizer = model.tokenizer
        base = getattr(model.hf, model.hf.base_model_prefix, model.hf)
        configs = {id(c): c for c in (base.config, model.hf.config, model._cache_config)}
        self._configs = list(configs.values())

    def __repr__(self) -> str:
        return f"EarlyExit({self.model.info.name!r}, layers={self.layers})"

    @contextmanager
    def _shallow(self) -> Iterator[None]:
        """The model runs (and makes caches for) its first ``layers`` layers only, until the block ends."""
        full = [c.num_hidden_layers for c in self._configs]
        for config in self._configs:
            config.num_hidden_layers = self.layers
        try:
            yield
        finally:
            for config, layers in zip(self._configs, full, strict=True):
                config.num_hidden_layers = layers

    def extend(self, tokens: list[int], cache: object | None, keep: int) -> tuple[torch.Tensor, object]:
        """As ``HFCausalLM.extend``, through the first ``layers`` layers."""
        with self._shallow():
            return self.model.extend(tokens, cache, keep)

    def crop(self, cache: object, length: int) -> object:
        """As ``HFCausalLM.crop``."""
        with self._shallow():
            return self.model.crop(cache, length)

    def cache_length(self, cache: object) -> int:
        """Number of positions ``cache`` holds."""
        return self.model.cache_length(cache)
