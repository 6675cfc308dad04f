"""Small helpers shared by the compute layer's modules."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects, then restore it as it was.

    A full collection triggered midway through a big trace costs more than the build itself (0.6 s against
    0.03 s for a 16-beam, 100-step trace); records are acyclic, so nothing is left for the collector.

    >>> import gc
    >>> with gc_paused():
    ...     gc.isenabled()
    False
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
