"""The Store protocol: the one seam between the runtime and where data is kept.

A store keeps, per entity (``entity_type``, ``entity_id``): an append-only event log
unique on sequence, snapshots, an inbox of accepted signals, marks of processed
signals with their outcome, dead letters, durable timers, an outbox and the
journal of running invocations. All writes go through :meth:`Store.write`, which
applies a whole batch in one transaction (group commit) and returns one result per
item. Reads see committed data only.

Payloads (``args``, ``data``, ``state``, ``outcome``) are JSON text; times are Unix
seconds (float).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import attrs

from persistence.errors import InvalidWrite

# ---------------------------------------------------------------- records


@attrs.frozen
class SignalRecord:
    """An accepted signal: as kept in the inbox, the outbox, a timer or a dead letter."""

    entity_type: str
    """Stable name of the target entity type."""
    entity_id: str
    """Id of the target entity."""
    signal_id: str
    """Idempotency key (caller's or generated); unique per entity."""
    handler: str
    """Name of the ``@signal`` handler."""
    args: str
    """JSON object of the bound arguments."""
    fingerprint: str
    """Digest of handler and arguments, to detect a key reused with other arguments."""
    accepted_at: float
    """When the signal was accepted (Unix seconds); the invocation's ``now()``."""
    trace: str | None = None
    """The sender's trace context (W3C ``traceparent``), carried to the invocation's
    spans; not part of the fingerprint. Stores keep it with the signal."""


@attrs.frozen
class InboxEntry:
    """A pending signal in the inbox, with its position (global acceptance order)."""

    position: int
    signal: SignalRecord


@attrs.frozen
class NewEvent:
    """An event to append: its stable type name, schema version and JSON data."""

    type_name: str
    version: int
    data: str


@attrs.frozen
class StoredEvent:
    """An event read back from the log."""

    seq: int
    type_name: str
    version: int
    data: str
    recorded_at: float


@attrs.frozen
class SnapshotRecord:
    """An entity's state after event ``seq``; ``schema`` fingerprints its fields."""

    entity_type: str
    entity_id: str
    seq: int
    schema: str
    state: str
    taken_at: float


@attrs.frozen
class ProcessedMark:
    """The mark that a signal was applied, with its encoded outcome."""

    signal_id: str
    fingerprint: str
    outcome: str
    processed_at: float


@attrs.frozen
class DeadLetter:
    """A signal whose handler kept crashing; kept with its error and traceback."""

    id: int
    signal: SignalRecord
    error: str
    traceback: str
    attempts: int
    failed_at: float


@attrs.frozen
class TimerRecord:
    """A durable timer: delivers ``signal`` when ``due_at`` comes; ``every`` repeats."""

    entity_type: str
    entity_id: str
    key: str
    handler: str
    args: str
    due_at: float
    every: float | None = None
    trace: str | None = None
    """The trace context of the invocation that set the timer, for the signal it
    delivers; not part of the timer's identity (a fire matches without it)."""


@attrs.frozen
class JournalEntry:
    """One recorded step of a running invocation (activity result, ask answer...)."""

    entity_type: str
    entity_id: str
    invocation_id: str
    step: int
    kind: str
    name: str
    result: str
    recorded_at: float


# ---------------------------------------------------------------- writes


@attrs.frozen
class Accept:
    """Put a signal in the inbox unless its id is already pending or processed."""

    signal: SignalRecord
    check_duplicate: bool = True
    """False for generated ids, which cannot repeat: skips the lookup."""


@attrs.frozen
class Accepted:
    """Result of :class:`Accept`: the signal is now in the inbox."""


@attrs.frozen
class Duplicate:
    """Result of :class:`Accept`: the id is known; ``mark`` is set once processed."""

    fingerprint: str
    mark: ProcessedMark | None


@attrs.frozen
class Committed:
    """Result of :class:`Commit`: ids given to its outbox messages, in order."""

    outbox_ids: tuple[int, ...] = ()


@attrs.frozen
class Commit:
    """The outcome of one invocation, applied atomically.

    Appends ``events`` at ``first_seq``, ``first_seq + 1``..., records the processed
    mark, removes the signal from the inbox, applies timer and outbox changes,
    records a dead letter if given and drops the invocation's journal.
    """

    entity_type: str
    entity_id: str
    signal: SignalRecord
    outcome: str
    first_seq: int
    events: tuple[NewEvent, ...] = ()
    recorded_at: float = 0.0
    dead_letter: tuple[str, str, int] | None = None
    """(error, traceback, attempts) when the signal is dead-lettered."""
    set_timers: tuple[TimerRecord, ...] = ()
    cancel_timers: tuple[str, ...] = ()
    outbox: tuple[SignalRecord, ...] = ()
    has_journal: bool = False
    """The invocation journaled steps: drop them."""
    mark: bool = True
    """Record the processed mark (needed for keyed signals: repeats find it)."""
    from_inbox: bool = True
    """The signal is in the inbox: remove it."""


@attrs.frozen
class SaveSnapshot:
    """Store a snapshot and drop all but the newest ``keep`` of that entity."""

    snapshot: SnapshotRecord
    keep: int = 2


@attrs.frozen
class Requeue:
    """Move dead letter ``dead_letter_id`` back to the inbox, forgetting its failure."""

    dead_letter_id: int


@attrs.frozen
class Journal:
    """Record one step of a running invocation; ``inbox`` also makes it resumable."""

    entry: JournalEntry
    inbox: SignalRecord | None = None


@attrs.frozen
class FireTimer:
    """Turn a due timer into an inbox signal; reschedule it when ``next_due`` is set.

    Returns the Accept result, or ``None`` when the stored timer is no longer this
    one (replaced or cancelled meanwhile): then nothing happens.
    """

    timer: TimerRecord
    signal: SignalRecord
    next_due: float | None = None


@attrs.frozen
class TakeOutbox:
    """Outbox message ``outbox_id`` was delivered (accepted by its target): drop it."""

    outbox_id: int
    accept: Accept


_MAX_INT = 2**63 - 1
"""The largest count a store's integer column takes."""


def _a_time(instance: object, attribute: attrs.Attribute[float | None], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidWrite(f"Prune {attribute.name} must be Unix seconds or None, got {value!r:.80}")
    if not math.isfinite(value):
        raise InvalidWrite(f"Prune {attribute.name} must be a finite time, got {value!r}")


def _a_count(instance: object, attribute: attrs.Attribute[int | None], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidWrite(f"Prune {attribute.name} must be an int or None, got {value!r:.80}")
    least = 1 if attribute.name == "limit" else 0
    if not least <= value <= _MAX_INT:
        raise InvalidWrite(f"Prune {attribute.name} must be {least}..{_MAX_INT}, got {value}")


@attrs.frozen
class Prune:
    """Forget what retention allows: old processed marks, dead letters, orphaned journals.

    Applied in the batch's one transaction like any write; ``None`` leaves that kind
    alone, so ``Prune()`` changes nothing. Bad arguments are refused when the record
    is made (:class:`~persistence.errors.InvalidWrite`), never inside a batch.

    A processed mark is the memory of an idempotency key: once it is pruned, a repeat
    of that key is accepted as a new signal. A mark whose signal is still in the inbox
    is always kept.
    """

    marks_before: float | None = attrs.field(default=None, validator=_a_time)
    """Drop processed marks with ``processed_at`` before this (Unix seconds), and journal
    steps recorded before it whose invocation is no longer in the inbox (orphans)."""
    dead_letters_before: float | None = attrs.field(default=None, validator=_a_time)
    """Drop dead letters with ``failed_at`` before this (Unix seconds)."""
    keep_dead_letters: int | None = attrs.field(default=None, validator=_a_count)
    """Keep only the newest this many dead letters (by id, the order they were made)."""
    limit: int | None = attrs.field(default=None, validator=_a_count)
    """Remove at most this many rows of each kind, oldest first (``None``: all that
    match). A periodic job prunes a large backlog in short transactions this way,
    repeating while a count reaches the limit."""


@attrs.frozen
class Pruned:
    """Result of :class:`Prune`: how many rows of each kind were removed."""

    marks: int = 0
    """Processed marks removed."""
    dead_letters: int = 0
    """Dead letters removed."""
    journals: int = 0
    """Journal steps removed (of invocations no longer pending)."""


Write = Accept | Commit | SaveSnapshot | Requeue | Journal | FireTimer | TakeOutbox | Prune
"""Anything :meth:`Store.write` takes."""

WriteResult = Accepted | Duplicate | Committed | Pruned | None
"""What :meth:`Store.write` returns per item (``None``: done)."""


@attrs.frozen
class OutboxEntry:
    """A message waiting in the outbox for delivery to its target entity."""

    id: int
    signal: SignalRecord


# ---------------------------------------------------------------- protocol


@runtime_checkable
class Store(Protocol):
    """Where an entity's lifetime is kept. Implemented by MemoryStore and SqliteStore.

    A store is an async context manager; it is opened by the ``ActorSystem`` that
    uses it. Every write method applies its batch in one transaction: all of it or
    none (then it raises :class:`~persistence.errors.StoreError`).
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        """Apply ``batch`` in one transaction; one result per item, in order."""
        ...

    async def read_snapshots(self, entity_type: str, entity_id: str) -> list[SnapshotRecord]:
        """The entity's snapshots, newest first."""
        ...

    async def read_events(
        self, entity_type: str, entity_id: str, *, after: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` events with ``seq > after``, in order."""
        ...

    async def last_seq(self, entity_type: str, entity_id: str) -> int:
        """The sequence of the entity's newest event (0 when it has none)."""
        ...

    async def read_mark(self, entity_type: str, entity_id: str, signal_id: str) -> ProcessedMark | None:
        """The processed mark of a signal, if it was processed."""
        ...

    async def read_inbox(self, *, after: int, limit: int) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order."""
        ...

    async def read_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        ...

    async def read_timers(self, *, limit: int, after_due: float = float("-inf")) -> list[TimerRecord]:
        """Timers in due order."""
        ...

    async def read_journal(self, entity_type: str, entity_id: str, invocation_id: str) -> list[JournalEntry]:
        """The recorded steps of one invocation, in step order."""
        ...

    async def read_outbox(self, *, after: int, limit: int) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order."""
        ...
