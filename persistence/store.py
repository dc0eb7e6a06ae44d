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

import functools
import hashlib
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self, TypeVar, runtime_checkable

import msgspec

from persistence.errors import InvalidWrite, SignalTaken

# ---------------------------------------------------------------- records


class _Record(msgspec.Struct, frozen=True, gc=False):
    """Base of the store's records: immutable, compared and hashed by value, with
    fields in a fixed order (positional or by keyword), made in C.

    One ask makes three of them (its signal, its event, its commit), so they are
    msgspec structs rather than attrs classes: an attrs frozen class sets each field
    through ``object.__setattr__`` (a commit: about 1 µs), and every instance is
    tracked by the cyclic collector. These hold only strings, numbers and tuples of
    records, so they can never be part of a reference cycle (``gc=False``: the
    collector does not track them). Copy one with a field changed with
    :func:`replace`.
    """


_R = TypeVar("_R", bound=_Record)


def replace(record: _R, **changes: object) -> _R:
    """A copy of ``record`` with the given fields changed (``attrs.evolve`` for these)."""
    return msgspec.structs.replace(record, **changes)


class SignalRecord(_Record, frozen=True):
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


class InboxEntry(_Record, frozen=True):
    """A pending signal in the inbox, with its position (global acceptance order)."""

    position: int
    signal: SignalRecord


class NewEvent(_Record, frozen=True):
    """An event to append: its stable type name, schema version and JSON data."""

    type_name: str
    version: int
    data: str


class StoredEvent(_Record, frozen=True):
    """An event read back from the log."""

    seq: int
    type_name: str
    version: int
    data: str
    recorded_at: float


class SnapshotRecord(_Record, frozen=True):
    """An entity's state after event ``seq``; ``schema`` fingerprints its fields."""

    entity_type: str
    entity_id: str
    seq: int
    schema: str
    state: str
    taken_at: float


class ProcessedMark(_Record, frozen=True):
    """The mark that a signal was applied, with its encoded outcome."""

    signal_id: str
    fingerprint: str
    outcome: str
    processed_at: float


class DeadLetter(_Record, frozen=True):
    """A signal whose handler kept crashing; kept with its error and traceback."""

    id: int
    signal: SignalRecord
    error: str
    traceback: str
    attempts: int
    failed_at: float


class TimerRecord(_Record, frozen=True):
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


class JournalEntry(_Record, frozen=True):
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


class Accept(_Record, frozen=True):
    """Put a signal in the inbox unless its id is already pending or processed."""

    signal: SignalRecord
    check_duplicate: bool = True
    """False for generated ids, which cannot repeat: skips the lookup."""


class Accepted(_Record, frozen=True):
    """Result of :class:`Accept`: the signal is now in the inbox."""


class Duplicate(_Record, frozen=True):
    """Result of :class:`Accept`: the id is known; ``mark`` is set once processed."""

    fingerprint: str
    mark: ProcessedMark | None


class Committed(_Record, frozen=True):
    """Result of :class:`Commit`: ids given to its outbox messages, in order."""

    outbox_ids: tuple[int, ...] = ()


class Commit(_Record, frozen=True):
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
    """The signal is in the inbox: remove it. It must be there: a commit that takes a
    signal no longer in the inbox (processed already) is refused, and its whole batch
    with it (:class:`~persistence.errors.SignalTaken`); for an unkeyed signal, which has
    no processed mark, the inbox row is the proof that it was not applied yet."""

    def mark_row(self) -> tuple[str, str, str, str, str, float]:
        """Its processed mark as stored: entity type and id, signal id, fingerprint,
        outcome, time."""
        s = self.signal
        return (self.entity_type, self.entity_id, s.signal_id, s.fingerprint, self.outcome, self.recorded_at)


class SaveSnapshot(_Record, frozen=True):
    """Store a snapshot and drop all but the newest ``keep`` of that entity."""

    snapshot: SnapshotRecord
    keep: int = 2


class Requeue(_Record, frozen=True):
    """Move dead letter ``dead_letter_id`` back to the inbox, forgetting its failure."""

    dead_letter_id: int


class Journal(_Record, frozen=True):
    """Record one step of a running invocation; ``inbox`` also makes it resumable."""

    entry: JournalEntry
    inbox: SignalRecord | None = None


class FireTimer(_Record, frozen=True):
    """Turn a due timer into an inbox signal; reschedule it when ``next_due`` is set.

    Returns the Accept result, or ``None`` when the stored timer is no longer this
    one (replaced or cancelled meanwhile): then nothing happens.
    """

    timer: TimerRecord
    signal: SignalRecord
    next_due: float | None = None


class TakeOutbox(_Record, frozen=True):
    """Outbox message ``outbox_id`` was delivered (accepted by its target): drop it."""

    outbox_id: int
    accept: Accept


_MAX_INT = 2**63 - 1
"""The largest count a store's integer column takes."""


def _check_time(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidWrite(f"Prune {name} must be Unix seconds or None, got {value!r:.80}")
    if not math.isfinite(value):
        raise InvalidWrite(f"Prune {name} must be a finite time, got {value!r}")


def _check_count(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidWrite(f"Prune {name} must be an int or None, got {value!r:.80}")
    least = 1 if name == "limit" else 0
    if not least <= value <= _MAX_INT:
        raise InvalidWrite(f"Prune {name} must be {least}..{_MAX_INT}, got {value}")


class Prune(_Record, frozen=True):
    """Forget what retention allows: old processed marks, dead letters, orphaned journals.

    Applied in the batch's one transaction like any write; ``None`` leaves that kind
    alone, so ``Prune()`` changes nothing. Bad arguments are refused when the record
    is made (:class:`~persistence.errors.InvalidWrite`), never inside a batch.

    A processed mark is the memory of an idempotency key: once it is pruned, a repeat
    of that key is accepted as a new signal. A mark whose signal is still in the inbox
    is always kept.
    """

    marks_before: float | None = None
    """Drop processed marks with ``processed_at`` before this (Unix seconds), and journal
    steps recorded before it whose invocation is no longer in the inbox (orphans)."""
    dead_letters_before: float | None = None
    """Drop dead letters with ``failed_at`` before this (Unix seconds)."""
    keep_dead_letters: int | None = None
    """Keep only the newest this many dead letters (by id, the order they were made)."""
    limit: int | None = None
    """Remove at most this many rows of each kind, oldest first (``None``: all that
    match). A periodic job prunes a large backlog in short transactions this way,
    repeating while a count reaches the limit."""

    def __post_init__(self) -> None:
        _check_time("marks_before", self.marks_before)
        _check_time("dead_letters_before", self.dead_letters_before)
        _check_count("keep_dead_letters", self.keep_dead_letters)
        _check_count("limit", self.limit)


class Pruned(_Record, frozen=True):
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


class OutboxEntry(_Record, frozen=True):
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

    Optional: an int attribute ``write_depth`` (default 1), how many batches the
    runtime's committer may give :meth:`write` before the first returns; a store that
    says 2 (SQLite, single owner) must apply them in the order given. Batches given
    together never depend on each other (an actor's next commit waits for its last).
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

    async def read_inbox(
        self, *, after: int, limit: int, shards: Collection[int] | None = None
    ) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order; with ``shards``,
        only those of entities in these shards (:func:`shard_of`)."""
        ...

    async def read_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        ...

    async def read_timers(
        self, *, limit: int, after_due: float = float("-inf"), shards: Collection[int] | None = None
    ) -> list[TimerRecord]:
        """Timers in due order; with ``shards``, only those of entities in these shards."""
        ...

    async def read_journal(self, entity_type: str, entity_id: str, invocation_id: str) -> list[JournalEntry]:
        """The recorded steps of one invocation, in step order."""
        ...

    async def read_outbox(
        self, *, after: int, limit: int, shards: Collection[int] | None = None
    ) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order; with ``shards``, only
        those whose *sender* (the entity whose commit wrote them) is in these shards."""
        ...


# ---------------------------------------------------------------- several members


class ReadsMarks(Protocol):
    """A store that reads many processed marks in one go (optional; every store of this
    package has it). The runtime gathers the mark reads of one turn of the event loop
    (keyed signals checked for a repeat, asks answered from another member's mark) into
    one call; a store without it is read one mark at a time. A store may also have
    ``read_marks_now(keys)``: the same without waiting (no thread hop, no turn of the
    loop), or None having read nothing; the runtime uses it for a check that finds no
    other to go with (SQLite on its own file, the memory store)."""

    async def read_marks(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], ProcessedMark]:
        """The marks of the processed ones of ``keys`` ((entity_type, entity_id,
        signal_id) each); TypeError for anything else than such tuples of strings."""
        ...


@runtime_checkable
class WritesNow(Protocol):
    """A store that can sometimes apply a batch at once, without waiting (optional).

    ``write_now`` either applies ``batch`` exactly as :meth:`Store.write` would (the
    same transaction, results and errors) without suspending, or returns None having
    done nothing (then the caller uses ``write``). The group committer uses it when a
    commit finds nothing queued, nothing being written and no other actor running: no
    hand-over to its task, no turn of the event loop. The SQLite store writes small
    batches this way when the file is its own and commits do not fsync; the memory
    store always.
    """

    def write_now(self, batch: Sequence[Write]) -> list[WriteResult] | None:
        """Apply ``batch`` now, or return None and change nothing."""
        ...


SHARDS = 256
"""Shards of a new shared database (fixed for the database's life; stored in it)."""

FENCED_WRITES = (Commit, Journal, FireTimer, SaveSnapshot)
"""Writes only the owner of the entity's shard may make (checked by the fence; see
:func:`write_entity`, which also exempts a ``Journal`` entry of kind ``cancel``: a
cancellation request). Accepting a signal (``Accept``, ``TakeOutbox``), ``Requeue``
and ``Prune`` are not fenced: any member or client may put a signal in any inbox."""


def check_mark_keys(keys: object) -> None:
    """Refuse what ``read_marks`` cannot take: TypeError unless ``keys`` is a sequence of
    ``(entity_type, entity_id, signal_id)`` tuples of strings."""
    if (
        isinstance(keys, str | bytes)
        or not isinstance(keys, Sequence)
        or not all(isinstance(k, tuple) and len(k) == 3 and all(isinstance(x, str) for x in k) for k in keys)
    ):
        raise TypeError(
            f"read_marks keys must be (entity_type, entity_id, signal_id) str tuples, got {keys!r:.80}"
        )


@functools.lru_cache(maxsize=1 << 16)
def shard_of(entity_type: str, entity_id: str, shards: int = SHARDS) -> int:
    """The shard of an entity: a stable hash of its type and id, modulo ``shards``.

    The same in every process and version (BLAKE2b of ``type NUL id``, first 8 bytes
    big-endian), so every member, client and store agrees on it. The last 65,536
    answers are remembered (the hot path asks for the same entities again and again).
    """
    h = hashlib.blake2b(f"{entity_type}\0{entity_id}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(h.digest(), "big") % shards


def write_entity(w: Write) -> tuple[str, str] | None:
    """The entity a fenced write changes (``None`` for writes that are not fenced)."""
    if isinstance(w, Commit):
        return (w.entity_type, w.entity_id)
    if isinstance(w, Journal):
        if w.entry.kind == "cancel" and w.inbox is None:
            return None  # a cancellation *request*: any member or client may record it
        return (w.entry.entity_type, w.entry.entity_id)
    if isinstance(w, FireTimer):
        return (w.timer.entity_type, w.timer.entity_id)
    if isinstance(w, SaveSnapshot):
        return (w.snapshot.entity_type, w.snapshot.entity_id)
    return None


def inbox_taken(run: Sequence[Commit]) -> list[tuple[str, str, str]]:
    """The inbox signals a run of commits takes (``from_inbox``), in order, repeats
    included: each must still be in the inbox (else :func:`signal_taken`)."""
    return [(c.entity_type, c.entity_id, c.signal.signal_id) for c in run if c.from_inbox]


def signal_taken(taken: Sequence[tuple[str, str, str]], found: int) -> SignalTaken:
    """The error of a batch whose commits take the inbox signals ``taken`` (in order,
    repeats included) of which only ``found`` were there: named when the batch takes
    one signal (a store that sees only counts cannot tell which otherwise)."""
    if len(taken) == 1:
        t, i, s = taken[0]
        return SignalTaken(
            f"signal {s!r} of {t}/{i} is no longer in the inbox: processed already (an earlier "
            "run whose commit's answer was lost, or another member); nothing was written",
            frozenset(taken),
        )
    return SignalTaken(
        f"{len(taken) - found} of the {len(taken)} inbox signals this batch takes are no longer "
        "in the inbox (processed already); nothing was written"
    )


class MemberRecord(_Record, frozen=True):
    """A row of the membership table: one per process start (ids are never reused)."""

    member_id: str
    name: str
    """A name for people (host and pid by default)."""
    serves: bool
    """False for a client: it owns no shards."""
    status: str
    """``alive``, ``left`` (it left cleanly) or ``dead`` (its lease expired)."""
    ttl: float
    """Its lease: declared dead when no heartbeat came for this many seconds."""
    joined_at: float
    heartbeat_at: float
    """Its last heartbeat, by the database's clock (Unix seconds)."""
    seen_ago: float
    """Seconds since that heartbeat, by the database's clock when read."""


class ShardRecord(_Record, frozen=True):
    """A row of the shard table: who owns the shard, at which epoch (fencing token)."""

    shard: int
    owner: str | None
    """The owning member's id, or None (free)."""
    epoch: int
    """Raised by one on every change of owner (claim and release)."""


@runtime_checkable
class SharedStore(Store, Protocol):
    """A store several systems (members and clients) open at once: membership, shard
    ownership with fencing, and wake-ups. Implemented by ``PostgresStore`` (any
    hosts), ``SqliteStore(path, shared=True)`` (processes of one host) and
    ``MemoryStore`` (systems of one process, for tests).

    Every time (heartbeats, lease expiry) is the database's clock, never a member's.
    Membership writes never wait on a row another transaction holds.
    """

    @property
    def shard_count(self) -> int:
        """The number of shards of this database (fixed when it was created)."""
        ...

    async def join(self, member_id: str, name: str, *, serves: bool, ttl: float) -> None:
        """Add a member, alive, heartbeat now. ``member_id`` must be new (never reused)."""
        ...

    async def heartbeat(self, member_id: str) -> bool:
        """Renew the member's lease; False when it is no longer alive (declared dead or
        left): it then owns nothing and must stop, and may join again under a new id."""
        ...

    async def claim(self, member_id: str, wanted: Collection[int]) -> dict[int, int]:
        """Take the ``wanted`` shards that are free or owned by a member that is not alive.

        First declares dead every alive member whose heartbeat is older than its own
        ``ttl`` (a store may also declare dead at once a member whose session or
        process is provably gone). A shard another transaction holds is skipped, never
        waited for. Each shard taken gets epoch + 1. Returns ``{shard: epoch}`` of the
        shards taken now; nothing if this member is not alive.
        """
        ...

    async def release(self, member_id: str, shards: Mapping[int, int]) -> None:
        """Give up shards this member owns at these epochs (owner none, epoch + 1); a
        shard it no longer owns at that epoch is left alone."""
        ...

    async def leave(self, member_id: str) -> None:
        """The member leaves cleanly: status ``left``, every shard it owns released."""
        ...

    async def members(self) -> list[MemberRecord]:
        """Every member row (alive first, then the most recent), with ``seen_ago``."""
        ...

    async def shard_map(self) -> list[ShardRecord]:
        """Every shard, in order."""
        ...

    @property
    def shared(self) -> bool:
        """Whether several systems may open this store at once (then each is a member or
        a client, and commits are fenced); False for an exclusive store."""
        ...

    @property
    def wakes(self) -> bool:
        """Whether ``subscribe`` is ever called back (False: members must poll)."""
        ...

    def set_fence(self, member_id: str, epochs: Mapping[int, int]) -> None:
        """From now on, a batch with a fenced write (:data:`FENCED_WRITES`) is applied only
        if this member owns every shard its fenced writes touch at exactly these epochs,
        checked inside the batch's transaction (so a member paused past its lease can
        never commit after another took over). Otherwise nothing of the batch is written
        and :class:`~persistence.errors.ShardLost` names the shards, which leave the
        fence. A shard not in ``epochs`` is refused before the database is asked.
        Until ``set_fence`` is called the store does not fence (one owner)."""
        ...

    async def publish(self, topic: str, items: Sequence[str]) -> None:
        """Wake other members (after a commit, never inside one): ``topic`` is
        ``inbox`` (items: shard numbers with new inbox rows), ``outcome`` (items: signal
        ids now processed), ``shards`` (ownership changed) or ``cancel`` (items: ids of
        invocations whose cancellation was recorded). Best effort: a lost wake-up only
        delays, because members also poll."""
        ...

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(topic, item)`` for every item published by any member, this
        one included, from the event loop. After a lost connection to the wake-ups the
        store calls ``callback(topic, "*")`` for each topic (something may be missed:
        poll now). A store that cannot wake (SQLite) never calls it: members poll."""
        ...
