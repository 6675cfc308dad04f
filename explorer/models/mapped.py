"""Weights that every process on a machine shares: safetensors files whose tensors all start on a 64-byte boundary.

transformers maps a safetensors file copy-on-write (``MAP_PRIVATE``) and makes each parameter a view into that
mapping. When a tensor's data starts at an offset that is not a multiple of 64 bytes, the CPU kernels round its
matrix products differently in the last bits, so ``HFCausalLM`` copies it into an aligned fresh tensor
(``align_weights``): correct, but every process then holds its own copy. A file written by ``write_aligned``
puts every tensor on a 64-byte boundary, so nothing is copied: the pages of the file live once in the page
cache and every process that maps it shares them (their PSS counts a share each). Inference never writes into
a weight, so copy-on-write is never triggered (``dirty_pages_kb`` measures it); a process that does edit a
weight in place gets its own copy of the pages it touched, and neither the file nor any other process sees it.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open

__all__ = [
    "ALIGNMENT", "PADDING_PREFIX", "build_lock", "dirty_pages_kb", "file_mappings", "misaligned", "read_header",
    "realign", "write_aligned",
]

ALIGNMENT = 64
#: Names of the filler entries that keep the next tensor aligned when a tensor's size is not a multiple of 64 bytes
#: (safetensors allows no gap between tensors). SmolLM2 and tiny-random need none.
PADDING_PREFIX = "__alignment_padding_"
_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def _entries(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, object], list[tuple[torch.Tensor | int, int]]]:
    """The header's tensor entries and the data to write in order: a tensor, or a count of zero bytes."""
    header: dict[str, object] = {}
    chunks: list[tuple[torch.Tensor | int, int]] = []
    offset = 0
    for name, tensor in tensors.items():
        if name.startswith(PADDING_PREFIX):
            raise ValueError(f"tensor name {name!r} is reserved for alignment padding")
        if tensor.dtype not in _DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot hold")
        gap = -offset % ALIGNMENT
        if gap:  # a filler entry: safetensors wants the tensors to cover the data without holes
            filler = {"dtype": "U8", "shape": [gap], "data_offsets": [offset, offset + gap]}
            header[f"{PADDING_PREFIX}{len(chunks)}__"] = filler
            chunks.append((gap, offset))
            offset += gap
        size = tensor.numel() * tensor.element_size()
        shape = list(tensor.shape)
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": shape, "data_offsets": [offset, offset + size]}
        chunks.append((tensor, offset))
        offset += size
    return header, chunks


def write_aligned(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` as a safetensors file in which every tensor's data starts at a multiple of ``ALIGNMENT``
    bytes from the start of the file (the header is padded with spaces, as the format allows).

    Any safetensors reader loads it. Tensors are written in the order given; the file is written in place (write
    to a temporary name and rename it for atomicity).

    >>> write_aligned({"w": torch.ones(3, 5)}, Path("/tmp/w.safetensors"))  # doctest: +SKIP
    >>> misaligned(Path("/tmp/w.safetensors"))  # doctest: +SKIP
    []
    """
    header, chunks = _entries(tensors)
    if metadata:
        header["__metadata__"] = dict(metadata)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-(8 + len(encoded)) % ALIGNMENT)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for chunk, _offset in chunks:
            if isinstance(chunk, int):
                out.write(b"\0" * chunk)
            else:
                data = chunk.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
                out.write(data.numpy().data)


def read_header(path: Path) -> tuple[int, dict[str, dict[str, object]], dict[str, str]]:
    """``(data start, tensor entries, metadata)`` of a safetensors file, from its header alone."""
    with path.open("rb") as source:
        (length,) = struct.unpack("<Q", source.read(8))
        if length > 100_000_000:
            raise ValueError(f"{path} is not a safetensors file (header of {length} bytes)")
        header = json.loads(source.read(length))
    metadata = header.pop("__metadata__", None) or {}
    return 8 + length, header, metadata


def misaligned(path: Path) -> list[str]:
    """Names of the tensors of a safetensors file whose data does not start on an ``ALIGNMENT``-byte boundary
    (empty: every process that maps the file can share it as it is)."""
    start, header, _ = read_header(path)
    offsets = {name: int(entry["data_offsets"][0]) for name, entry in header.items()}  # type: ignore[index]
    tensors = {name: at for name, at in offsets.items() if not name.startswith(PADDING_PREFIX)}
    return sorted(name for name, at in tensors.items() if (start + at) % ALIGNMENT)


def realign(path: Path) -> None:
    """Rewrite a safetensors file (e.g. one ``save_pretrained`` wrote) with every tensor aligned, keeping its
    tensors, their order and its metadata; atomically (a temporary file beside it, then a rename)."""
    with safe_open(str(path), framework="pt") as source:  # type: ignore[no-untyped-call]
        metadata = source.metadata()
        tensors = {name: source.get_tensor(name) for name in source.keys()}  # noqa: SIM118 (not a dict)
    temporary = path.with_name(f".{path.name}.aligned")
    write_aligned(tensors, temporary, metadata)
    os.replace(temporary, path)


@contextmanager
def build_lock(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (blocking; created if need be): one process builds a cache at a
    time, so twenty kernels that start together on a stale cache rebuild it once instead of twenty times at once."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_mappings(path: Path, pid: int | str = "self") -> list[dict[str, int | str]]:
    """The memory mappings of ``path`` in process ``pid`` (Linux ``/proc/<pid>/smaps``): for each, its address
    range, permissions and the kB counters (``Rss``, ``Pss``, ``Shared_Clean``, ``Private_Dirty``, ``Anonymous``,
    ...). Empty when the file is not mapped, or on a system without ``/proc``."""
    target = str(Path(path).resolve())
    found: list[dict[str, int | str]] = []
    current: dict[str, int | str] | None = None
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            current = None
            if len(fields) >= 6 and " ".join(fields[5:]) == target:
                low, high = (int(x, 16) for x in fields[0].split("-"))
                current = {"start": low, "end": high, "perms": fields[1]}
                found.append(current)
        elif current is not None and len(fields) == 3 and fields[0].endswith(":") and fields[2] == "kB":
            current[fields[0][:-1]] = int(fields[1])
    return found


def dirty_pages_kb(path: Path, pid: int | str = "self") -> int:
    """kB of ``path``'s mappings that process ``pid`` has written to: pages copied on write, which ``smaps`` counts
    as ``Anonymous`` (``Private_Dirty`` would also count file pages that are merely not yet written back). 0 when
    the process only ever read them, which is what every process sharing the weights must show."""
    return sum(int(m.get("Anonymous", 0)) for m in file_mappings(path, pid))
