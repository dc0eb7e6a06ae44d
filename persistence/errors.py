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


class InvalidWrite(ActorsError, ValueError):
    """A write record was made with a bad argument (the message names it); nothing was written."""


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
    """A stored record cannot be read; the message names entity and sequence.

    ``entity_type``, ``entity_id`` and ``seq`` name the record as data when known
    (``None`` otherwise; ``seq`` is an event's sequence number).
    """

    def __init__(
        self,
        message: str,
        *,
        entity_type: str | None = None,
        entity_id: str | None = None,
        seq: int | None = None,
    ) -> None:
        super().__init__(message)
        self.entity_type = entity_type
        self.entity_id = entity_id
        self.seq = seq


class StoreUnavailable(StoreError):
    """The database server cannot be reached or the connection to it was lost."""


class CommitUnknown(StoreUnavailable):
    """The connection died while a commit was in flight and its outcome is unknown.

    Nothing of that batch was acknowledged; it may or may not be in the database.
    """


class StoreTimeout(StoreError):
    """A statement ran past the store's statement timeout, or waited too long for a lock."""


class StoreReadOnly(StoreError):
    """The database refuses writes (read-only file, or a read-only server or transaction)."""


class StoreFull(StoreError):
    """The disk (or another resource) holding the database is full."""


class DatabaseNotFound(StoreError, FileNotFoundError):
    """A read-only opening found no database file at the path (nothing was created)."""


class ShardLost(StoreError):
    """A fenced write was refused: this member no longer owns the entity's shard at the
    epoch it holds (another member took it over, or it was handed off).

    Nothing of the batch was written. ``shards`` names the lost shards; the store has
    dropped them from its fence, so every later fenced write to them fails the same
    way until they are claimed again.
    """

    def __init__(self, message: str, shards: frozenset[int] = frozenset()) -> None:
        super().__init__(message)
        self.shards = shards


class SignalTaken(StoreError):
    """A commit that takes its signal from the inbox found it gone: an earlier run of
    the same signal (one whose commit landed though its answer was lost) or another
    member processed it already. Nothing of the batch was written.

    The inbox row is an unkeyed signal's proof that it was not applied yet, as the
    processed mark is a keyed one's: a commit removes it in the transaction that
    appends the signal's events, and a second run of the signal is refused here
    instead of applying it twice. ``signals`` names the (entity type, entity id,
    signal id) found gone, when the store can tell which.
    """

    def __init__(self, message: str, signals: frozenset[tuple[str, str, str]] = frozenset()) -> None:
        super().__init__(message)
        self.signals = signals


SEQUENCE_CONFLICT_CAUSES = (
    "(a second writer, or the retry of a commit that landed though its answer was lost?)"
)
"""What a sequence conflict on an event append may mean, for the stores' messages."""
