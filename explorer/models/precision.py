"""Weight precision: float32 (the default, the only one that replicates the reference), bfloat16 or float16.

A lower-precision model is a copy of the loaded float32 model with its parameters cast, as transformers'
``from_pretrained(..., dtype=...)`` would load them (buffers such as rotary frequencies stay float32). Its logits
are cast to float32 before anything else sees them, so every recorded number is a float32 computed from
lower-precision logits. Neither is ever the default: their text differs from float32's on a share of prompts.
``MEASURED`` holds what ``benchmarks/bench_precision.py`` measured on SmolLM2 (see docs/precision.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from explorer.errors import ParameterError

__all__ = [
    "DEFAULT_DTYPE", "DTYPES", "MEASURED", "MEASURED_ON", "Measured", "base_name", "check_dtype", "display_name",
    "precision_note", "torch_dtype",
]

DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_DTYPE = "float32"
_TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(dtype: object) -> str:
    """``dtype`` if it is one of ``DTYPES``, else a one-line ``ParameterError`` naming the allowed values.

    >>> check_dtype("bfloat16")
    'bfloat16'
    >>> check_dtype("float64")
    Traceback (most recent call last):
    ...
    explorer.errors.ParameterError: dtype='float64' is invalid: expected one of 'float32', 'bfloat16', 'float16'
    """
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ParameterError("dtype", dtype, "one of " + ", ".join(repr(d) for d in DTYPES))
    return dtype


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a checked dtype name.

    >>> torch_dtype("bfloat16")
    torch.bfloat16
    """
    return _TORCH[check_dtype(dtype)]


def display_name(name: str, dtype: str) -> str:
    """The model name a trace records: ``name`` in float32, ``"name (bfloat16)"`` otherwise.

    >>> display_name("smollm2-135m", "float32"), display_name("smollm2-135m", "bfloat16")
    ('smollm2-135m', 'smollm2-135m (bfloat16)')
    """
    return name if check_dtype(dtype) == DEFAULT_DTYPE else f"{name} ({dtype})"


def base_name(name: str, dtype: str) -> str:
    """The model name ``display_name`` started from.

    >>> base_name("smollm2-135m (bfloat16)", "bfloat16"), base_name("smollm2-135m", "float32")
    ('smollm2-135m', 'smollm2-135m')
    """
    return name if check_dtype(dtype) == DEFAULT_DTYPE else name.removesuffix(f" ({dtype})")


@dataclass(frozen=True)
class Measured:
    """One lower precision against float32 on SmolLM2-135M-Instruct, 2 CPU threads
    (``benchmarks/bench_precision.py``).

    ``speed_*`` are float32 ms/step divided by this precision's ms/step for a fully recorded decode (above 1:
    faster than float32). The greedy and beam comparisons are over ``prompts`` prompts (half plain text, half chat),
    40 new tokens each; the teacher-forced ones feed float32's greedy continuation to both models and compare the
    next-token distributions at every step.
    """

    dtype: str
    speed_greedy: float
    speed_beam4: float
    prompts: int
    greedy_identical: int
    mean_first_divergence: float
    forced_top1_agreement: float
    forced_mean_abs_logprob_diff: float
    forced_max_abs_logprob_diff: float
    forced_mean_kl: float
    forced_mean_total_variation: float
    beam4_identical: int


#: Where and when ``MEASURED`` was measured.
MEASURED_ON = "2026-11-23, 2-core AMD EPYC (AVX-512 with bf16), torch 2.13 CPU build, SmolLM2-135M-Instruct"

#: The last run of ``benchmarks/bench_precision.py`` on the project machine, per lower precision.
MEASURED: dict[str, Measured] = {
    "bfloat16": Measured(
        dtype="bfloat16", speed_greedy=2.01, speed_beam4=2.55, prompts=20, greedy_identical=5,
        mean_first_divergence=14.9, forced_top1_agreement=0.971, forced_mean_abs_logprob_diff=0.0208,
        forced_max_abs_logprob_diff=0.167, forced_mean_kl=0.00102, forced_mean_total_variation=0.0142,
        beam4_identical=11,
    ),
    "float16": Measured(
        dtype="float16", speed_greedy=2.78, speed_beam4=1.65, prompts=20, greedy_identical=18,
        mean_first_divergence=35.5, forced_top1_agreement=0.997, forced_mean_abs_logprob_diff=0.0027,
        forced_max_abs_logprob_diff=0.0277, forced_mean_kl=0.0000176, forced_mean_total_variation=0.0019,
        beam4_identical=18,
    ),
}


def precision_note(dtype: str) -> str:
    """One line for people choosing a precision: what it costs and gains here, as measured on SmolLM2.

    >>> precision_note("float32")
    'float32: the default; results equal the reference (transformers generate()) token for token'
    >>> precision_note("bfloat16").startswith("bfloat16: ")
    True
    """
    if check_dtype(dtype) == DEFAULT_DTYPE:
        return "float32: the default; results equal the reference (transformers generate()) token for token"
    m = MEASURED[dtype]
    return (
        f"{dtype}: {m.speed_greedy:.1f}x the speed of float32 on this CPU (greedy; beam 4: {m.speed_beam4:.1f}x); "
        f"same greedy text as float32 for {m.greedy_identical}/{m.prompts} prompts, same best beam for "
        f"{m.beam4_identical}/{m.prompts} (SmolLM2, benchmarks/bench_precision.py)"
    )
