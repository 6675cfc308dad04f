"""Errors raised for bad input: one clear line naming the parameter and what is allowed."""

from __future__ import annotations

__all__ = ["ExplorerError", "ModelNotFoundError", "ParameterError", "TraceFormatError"]


class ExplorerError(ValueError):
    """Base class of every error the explorer raises for bad input (a ``ValueError``)."""


class ParameterError(ExplorerError):
    """A decoding parameter is out of range or inconsistent with another one.

    >>> str(ParameterError("num_beams", 0, "an integer >= 1"))
    'num_beams=0 is invalid: expected an integer >= 1'
    """

    def __init__(self, name: str, value: object, allowed: str) -> None:
        self.name = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{name}={value!r} is invalid: expected {allowed}")


class ModelNotFoundError(ExplorerError):
    """A model name resolves to nothing; the message lists what exists."""


class TraceFormatError(ExplorerError):
    """A trace document does not match the schema or its version."""
