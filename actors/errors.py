"""The error hierarchy. Everything the framework raises derives from ActorsError::

ActorsError
├── Rejected                 a handler's business refusal, returned to ask callers
├── UnknownEntity            an entity type the system was not given  (LookupError)
├── UnknownHandler           no @signal/@query of that name           (LookupError)
├── InvalidArguments         wrong, missing or extra arguments; bad ids (TypeError)
├── DefinitionError          an entity class that breaks the rules    (TypeError)
├── SerializationError       a value that cannot be encoded/decoded   (TypeError)
├── PayloadTooLarge          over the configured size limit           (ValueError)
├── IdempotencyConflict      same key, different arguments
├── HandlerFailed            crashed until its retries ran out: dead-lettered
├── DeadlineExceeded         the call's timeout passed               (TimeoutError)
├── NonDeterminismError      a re-run asked for other steps than its journal holds
├── ActivityFailed           an activity failed for good; ``__cause__`` says why
├── CompensationFailed       a saga's compensation failed for good: dead-lettered
├── Cancelled                the invocation was cancelled through its handle
├── Overloaded               an entity's mailbox is full: refused, nothing written
├── SystemClosed             the system is not running (``accepted`` says if the call was)
├── InvalidWrite             a store write built with bad arguments     (ValueError)
└── StoreError               the store failed (I/O, disk full, unusable file)
    ├── StoreLocked          another running system owns the store
    ├── NotOurDatabase       not a database, or another application's
    ├── DatabaseNotFound     a read-only opening found no file        (FileNotFoundError)
    ├── CorruptRecord        a record that cannot be read (names entity and seq)
    ├── StoreTimeout         a statement ran past the store's timeout
    ├── StoreReadOnly        the database refuses writes
    ├── StoreFull            the disk holding the database is full
    ├── ShardLost            this member no longer owns the entity's shard: not written
    ├── SignalTaken          the commit's inbox signal was processed already: not written
    └── StoreUnavailable     the server cannot be reached
        └── CommitUnknown    the connection died during a commit: outcome unknown
"""

from __future__ import annotations

from persistence.errors import (
    ActorsError,
    CommitUnknown,
    CorruptRecord,
    DatabaseNotFound,
    InvalidWrite,
    NotOurDatabase,
    PayloadTooLarge,
    SerializationError,
    ShardLost,
    SignalTaken,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreReadOnly,
    StoreTimeout,
    StoreUnavailable,
)

__all__ = [
    "ActivityFailed",
    "ActorsError",
    "Cancelled",
    "CommitUnknown",
    "CompensationFailed",
    "CorruptRecord",
    "DatabaseNotFound",
    "DeadlineExceeded",
    "DeadlockError",
    "DefinitionError",
    "HandlerFailed",
    "IdempotencyConflict",
    "InvalidArguments",
    "InvalidWrite",
    "NonDeterminismError",
    "NotOurDatabase",
    "Overloaded",
    "PayloadTooLarge",
    "Rejected",
    "SerializationError",
    "ShardLost",
    "SignalTaken",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "StoreReadOnly",
    "StoreTimeout",
    "StoreUnavailable",
    "SystemClosed",
    "UnknownEntity",
    "UnknownHandler",
]


class Rejected(ActorsError):
    """A business refusal raised by a handler ("insufficient funds").

    It is the handler's answer, not a crash: the signal counts as processed, nothing
    it emitted is kept, and ``ask`` callers (also repeats of the same key) get it
    raised. Subclass it for distinct refusals. With ``commit=True`` what the handler
    emitted (and its timers and outbox) is committed all the same, and the caller
    still gets the rejection.
    """

    def __init__(self, message: str = "", *, commit: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.commit = bool(commit)


class UnknownEntity(ActorsError, LookupError):
    """The entity type was not registered with this ActorSystem."""


class UnknownHandler(ActorsError, LookupError):
    """No ``@signal`` or ``@query`` handler of that name on the entity type."""


class InvalidArguments(ActorsError, TypeError):
    """Arguments do not fit the handler (missing, extra, wrong type) or a bad id/option."""


class DefinitionError(ActorsError, TypeError):
    """An entity class breaks the rules (e.g. ``@applies`` without an event annotation)."""


class IdempotencyConflict(ActorsError):
    """An idempotency key was reused with different arguments or another handler.

    ``key`` is the key as its caller gave it.
    """

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class HandlerFailed(ActorsError):
    """The handler crashed on every attempt; the signal was dead-lettered.

    Also raised to ``ask`` callers of an actor stopped by its restart intensity.
    ``handler`` names it (``Entity.handler``, empty if unknown) and ``attempts`` says
    how many runs failed (0 when the actor was stopped before running it).
    """

    def __init__(self, message: str, *, handler: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.handler = handler
        self.attempts = attempts


class DeadlineExceeded(ActorsError, TimeoutError):
    """The deadline set with ``ref.options(timeout=...)`` passed before the answer."""


class NonDeterminismError(ActorsError):
    """A re-run of a handler asked for other steps than its journal recorded."""


class DeadlockError(ActorsError):
    """An ask from a handler would close a cycle of waiting entities.

    ``cycle`` lists the entities as ``(entity_type, entity_id)`` pairs, from the asker
    round to it again.
    """

    def __init__(self, message: str, *, cycle: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.cycle = cycle


class ActivityFailed(ActorsError):
    """An activity failed for good (non-retryable, or out of attempts); see ``__cause__``.

    ``cause_type`` names the last error's class (``module.QualName``) and ``activity``
    the function: both are also set when the failure is replayed from the journal,
    where ``__cause__`` is not available. Branch on ``cause_type``, not on the cause.
    """

    def __init__(self, message: str, *, activity: str = "", cause_type: str = "") -> None:
        super().__init__(message)
        self.activity = activity
        self.cause_type = cause_type


class Overloaded(ActorsError):
    """An entity has too many signals queued (``ActorSystem(max_mailbox=...)``): the call
    was refused and nothing of it was written; send it again later.

    ``entity_type``, ``entity_id``, ``queued`` and ``limit`` say which and how full.
    """

    def __init__(
        self, message: str, *, entity_type: str = "", entity_id: str = "", queued: int = 0, limit: int = 0
    ) -> None:
        super().__init__(message)
        self.entity_type = entity_type
        self.entity_id = entity_id
        self.queued = queued
        self.limit = limit


class CompensationFailed(ActorsError):
    """A saga's compensation failed on every attempt its retry policy allows.

    The invocation cannot be undone by the framework: it is dead-lettered at once
    (not retried) with this error, for a person to look at. ``compensation`` names it.
    """

    def __init__(self, message: str, *, compensation: str = "") -> None:
        super().__init__(message)
        self.compensation = compensation


class Cancelled(ActorsError):
    """The invocation was cancelled through its handle (``await handle.cancel(reason)``).

    Raised inside the handler at its current or next durable await (activity, wait,
    sleep, journaled ask, child result), so ``async with self.saga()`` compensates;
    then raised by ``handle.result()``. ``reason`` is the reason given.
    """

    def __init__(self, message: str = "cancelled", *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class SystemClosed(ActorsError):
    """The ActorSystem is not running (not entered yet, closing, or closed).

    ``accepted`` tells the caller what became of the call: False means nothing of it
    was written (it is safe to send again); True means it is durably accepted and
    runs to its end after the next start (send it again only with the same key).
    """

    def __init__(self, message: str = "the actor system closed", *, accepted: bool = False) -> None:
        super().__init__(message)
        self.accepted = accepted
