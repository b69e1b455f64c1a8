"""Errors of our own: each says what was expected, what was found, and what to do.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; no traceback.
"""

from __future__ import annotations


class MrlCompressError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1


class InvalidInput(MrlCompressError):
    """Vectors, options or files that cannot be used as given (wrong dims, NaN, zero rows...)."""

    exit_code = 2


class ArtifactError(MrlCompressError):
    """A compressor artifact that is missing, of another format version, or tampered with."""

    exit_code = 3


class MissingDependency(MrlCompressError):
    """An optional dependency is not installed; the message names the extra to install."""

    exit_code = 4


class StoreError(MrlCompressError):
    """A vector store refused, is unreachable, or lacks what was asked for."""

    exit_code = 5


class NotFound(StoreError):
    """A collection, vector name or alias that does not exist."""


class Conflict(StoreError):
    """A name that is already taken with a different meaning (another size, another kind)."""


class VerificationFailed(MrlCompressError):
    """A migration finished but its verification found differences."""

    exit_code = 6


def require(module: str, extra: str) -> None:
    """Raise :class:`MissingDependency` naming ``extra`` when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependency(
            f"this needs the Python package '{module}', which is not installed: "
            f"pip install 'mrl-compress[{extra}]'"
        )
