"""Errors raised at the storage boundary.

The root of every error the framework raises, :class:`ActorsError`, lives here so
that ``persistence`` depends on nothing in ``actors``; ``actors.errors`` re-exports
these and adds the runtime's own. The whole tree is drawn in ``actors.errors``.
"""

from __future__ import annotations


class ActorsError(Exception):
    """Root of every error raised by the framework."""


class SerializationError(ActorsError, TypeError):
    """A value cannot be encoded to JSON or decoded into its registered type."""


class PayloadTooLarge(ActorsError, ValueError):
    """An encoded payload (arguments, event, result) is over the configured limit."""


class StoreError(ActorsError):
    """The store failed: I/O error, full disk, unusable file; names what failed."""


class StoreLocked(StoreError):
    """Another running system owns the store; ``owner`` says who (pid, host, since)."""

    def __init__(self, message: str, owner: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.owner = owner or {}


class NotOurDatabase(StoreError):
    """The file is not a database, or a database of another schema or newer version."""


class CorruptRecord(StoreError):
    """A stored record cannot be read; the message names entity and sequence."""


class DatabaseNotFound(StoreError, FileNotFoundError):
    """A read-only opening found no database file at the path (nothing was created)."""
