"""In-memory store: the reference implementation of the Store protocol, for tests.

Nothing survives the process; everything else behaves as the SQLite store does
(same results, same errors), which the contract test suite checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import attrs

from persistence.errors import StoreError
from persistence.store import (
    Accept,
    Accepted,
    Commit,
    Committed,
    DeadLetter,
    Duplicate,
    FireTimer,
    InboxEntry,
    Journal,
    JournalEntry,
    OutboxEntry,
    ProcessedMark,
    Prune,
    Pruned,
    Requeue,
    SaveSnapshot,
    SignalRecord,
    SnapshotRecord,
    StoredEvent,
    TakeOutbox,
    TimerRecord,
    Write,
    WriteResult,
)

Key = tuple[str, str]
SigKey = tuple[str, str, str]


@attrs.define
class _Data:
    events: dict[Key, list[StoredEvent]] = attrs.field(factory=dict)
    snapshots: dict[Key, list[SnapshotRecord]] = attrs.field(factory=dict)
    inbox: dict[int, InboxEntry] = attrs.field(factory=dict)
    inbox_ids: dict[SigKey, int] = attrs.field(factory=dict)
    marks: dict[SigKey, ProcessedMark] = attrs.field(factory=dict)
    dead: dict[int, DeadLetter] = attrs.field(factory=dict)
    timers: dict[tuple[str, str, str], TimerRecord] = attrs.field(factory=dict)
    journal: dict[SigKey, dict[int, JournalEntry]] = attrs.field(factory=dict)
    outbox: dict[int, OutboxEntry] = attrs.field(factory=dict)
    counter: int = 0


def _sig_key(s: SignalRecord) -> SigKey:
    return (s.entity_type, s.entity_id, s.signal_id)


class MemoryStore:
    """A Store kept in process memory; data survives closing and reopening the object.

    Reusing one ``MemoryStore`` across ``ActorSystem`` instances simulates a restart.
    """

    def __init__(self) -> None:
        self._d = _Data()
        self._open = False
        self._undo: list[Callable[[], None]] = []

    async def __aenter__(self) -> Self:
        if self._open:
            raise StoreError("this MemoryStore is already open")
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False

    def _check(self) -> None:
        if not self._open:
            raise StoreError("the store is closed")

    def _next_id(self) -> int:
        self._d.counter += 1
        return self._d.counter

    # ------------------------------------------------------------ writes
    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        """Apply ``batch`` atomically: on any error, every change of the batch is undone."""
        self._check()
        self._undo = []
        counter = self._d.counter
        try:
            return [self._apply(w) for w in batch]
        except BaseException:
            for fn in reversed(self._undo):
                fn()
            self._d.counter = counter
            raise
        finally:
            self._undo = []

    def _set(self, table: dict, key: object, value: object) -> None:  # type: ignore[type-arg]
        had = key in table
        old = table.get(key)
        self._undo.append(lambda: table.__setitem__(key, old) if had else table.pop(key, None))
        table[key] = value

    def _pop(self, table: dict, key: object) -> None:  # type: ignore[type-arg]
        if key in table:
            old = table.pop(key)
            self._undo.append(lambda: table.__setitem__(key, old))

    def _apply(self, w: Write) -> WriteResult:
        if isinstance(w, Accept):
            return self._accept(w.signal, w.check_duplicate)
        if isinstance(w, Commit):
            return self._commit(w)
        if isinstance(w, SaveSnapshot):
            self._save_snapshot(w)
        elif isinstance(w, Requeue):
            self._requeue(w.dead_letter_id)
        elif isinstance(w, Journal):
            e = w.entry
            steps = self._d.journal.setdefault((e.entity_type, e.entity_id, e.invocation_id), {})
            self._set(steps, e.step, e)
            if w.inbox is not None:
                self._accept(w.inbox, True)
        elif isinstance(w, FireTimer):
            return self._fire(w)
        elif isinstance(w, TakeOutbox):
            self._pop(self._d.outbox, w.outbox_id)
            return self._accept(w.accept.signal, w.accept.check_duplicate)
        elif isinstance(w, Prune):
            return self._prune(w)
        else:  # pragma: no cover - the type checker sees every case
            raise TypeError(f"unknown write {w!r}")
        return None

    def _accept(self, s: SignalRecord, check: bool) -> Accepted | Duplicate:
        key = _sig_key(s)
        if check:
            mark = self._d.marks.get(key)
            if mark is not None:
                return Duplicate(mark.fingerprint, mark)
            pos = self._d.inbox_ids.get(key)
            if pos is not None:
                return Duplicate(self._d.inbox[pos].signal.fingerprint, None)
        if key in self._d.inbox_ids:  # unchecked, yet pending: the inbox is unique per id
            raise StoreError(f"signal {s.signal_id} of {s.entity_type}/{s.entity_id} is already in the inbox")
        pos = self._next_id()
        self._set(self._d.inbox, pos, InboxEntry(pos, s))
        self._set(self._d.inbox_ids, key, pos)
        return Accepted()

    def _commit(self, c: Commit) -> Committed:
        key = (c.entity_type, c.entity_id)
        log = self._d.events.get(key, [])
        if c.events and len(log) + 1 != c.first_seq:
            raise StoreError(
                f"sequence conflict on {c.entity_type}/{c.entity_id}: appending at "
                f"{c.first_seq}, log ends at {len(log)} (a second writer?)"
            )
        skey = _sig_key(c.signal)
        if c.mark and skey in self._d.marks:
            raise StoreError(f"signal {c.signal.signal_id} of {key} is already processed")
        if c.has_journal:
            self._pop(self._d.journal, skey)
        if c.events:
            new = log + [
                StoredEvent(c.first_seq + i, e.type_name, e.version, e.data, c.recorded_at)
                for i, e in enumerate(c.events)
            ]
            self._set(self._d.events, key, new)
        if c.mark:
            self._set(
                self._d.marks,
                skey,
                ProcessedMark(c.signal.signal_id, c.signal.fingerprint, c.outcome, c.recorded_at),
            )
        pos = self._d.inbox_ids.get(skey) if c.from_inbox else None
        if pos is not None:
            self._pop(self._d.inbox_ids, skey)
            self._pop(self._d.inbox, pos)
        if c.dead_letter is not None:
            err, tb, attempts = c.dead_letter
            dl_id = self._next_id()
            self._set(self._d.dead, dl_id, DeadLetter(dl_id, c.signal, err, tb, attempts, c.recorded_at))
        for t in c.set_timers:
            self._set(self._d.timers, (t.entity_type, t.entity_id, t.key), t)
        for k in c.cancel_timers:
            self._pop(self._d.timers, (c.entity_type, c.entity_id, k))
        ids = []
        for s in c.outbox:
            oid = self._next_id()
            self._set(self._d.outbox, oid, OutboxEntry(oid, s))
            ids.append(oid)
        return Committed(tuple(ids))

    def _save_snapshot(self, w: SaveSnapshot) -> None:
        s = w.snapshot
        key = (s.entity_type, s.entity_id)
        snaps = [x for x in self._d.snapshots.get(key, []) if x.seq != s.seq] + [s]
        snaps.sort(key=lambda x: x.seq)
        self._set(self._d.snapshots, key, snaps[-max(w.keep, 1) :])

    def _requeue(self, dl_id: int) -> None:
        dl = self._d.dead.get(dl_id)
        if dl is None:
            raise StoreError(f"no dead letter with id {dl_id}")
        self._pop(self._d.dead, dl_id)
        self._pop(self._d.marks, _sig_key(dl.signal))
        self._accept(dl.signal, False)

    def _prune(self, w: Prune) -> Pruned:
        marks = journals = 0
        if w.marks_before is not None:
            marks = self._prune_marks(w.marks_before, w.limit)
            journals = self._prune_journals(w.marks_before, w.limit)
        return Pruned(marks=marks, dead_letters=self._prune_dead(w), journals=journals)

    def _prune_marks(self, cutoff: float, limit: int | None) -> int:
        pending, marks = self._d.inbox_ids, self._d.marks
        old = [k for k, m in marks.items() if m.processed_at < cutoff and k not in pending]
        old = sorted(old, key=lambda k: marks[k].processed_at)[:limit]
        for k in old:
            self._pop(self._d.marks, k)
        return len(old)

    def _prune_journals(self, cutoff: float, limit: int | None) -> int:
        old = [
            (e.recorded_at, k, i)
            for k, steps in self._d.journal.items()
            if k not in self._d.inbox_ids  # a pending one resumes from its journal
            for i, e in steps.items()
            if e.recorded_at < cutoff
        ]
        old = sorted(old)[:limit]
        for _, k, i in old:
            steps = self._d.journal[k]
            if len(steps) == 1:
                self._pop(self._d.journal, k)
            else:
                self._pop(steps, i)
        return len(old)

    def _prune_dead(self, w: Prune) -> int:
        ids = sorted(self._d.dead)
        drop: set[int] = set()
        if w.keep_dead_letters is not None:
            drop.update(ids[: max(len(ids) - w.keep_dead_letters, 0)])
        if w.dead_letters_before is not None:
            drop.update(i for i in ids if self._d.dead[i].failed_at < w.dead_letters_before)
        gone = sorted(drop)[: w.limit]
        for i in gone:
            self._pop(self._d.dead, i)
        return len(gone)

    def _fire(self, w: FireTimer) -> Accepted | Duplicate | None:
        t = w.timer
        tkey = (t.entity_type, t.entity_id, t.key)
        current = self._d.timers.get(tkey)
        if current is None or attrs.evolve(current, trace=t.trace) != t:
            return None  # replaced or cancelled meanwhile (the trace is not its identity)
        result = self._accept(w.signal, True)
        if w.next_due is None:
            self._pop(self._d.timers, tkey)
        else:
            self._set(self._d.timers, tkey, attrs.evolve(t, due_at=w.next_due))
        return result

    # ------------------------------------------------------------ reads
    async def read_snapshots(self, entity_type: str, entity_id: str) -> list[SnapshotRecord]:
        """The entity's snapshots, newest first."""
        self._check()
        return list(reversed(self._d.snapshots.get((entity_type, entity_id), [])))

    async def read_events(
        self, entity_type: str, entity_id: str, *, after: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` events with ``seq > after``, in order."""
        self._check()
        log = self._d.events.get((entity_type, entity_id), [])
        return log[max(after, 0) : max(after, 0) + limit]

    async def last_seq(self, entity_type: str, entity_id: str) -> int:
        """The sequence of the entity's newest event (0 when it has none)."""
        self._check()
        return len(self._d.events.get((entity_type, entity_id), []))

    async def read_mark(self, entity_type: str, entity_id: str, signal_id: str) -> ProcessedMark | None:
        """The processed mark of a signal, if it was processed."""
        self._check()
        return self._d.marks.get((entity_type, entity_id, signal_id))

    async def read_inbox(self, *, after: int, limit: int) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order."""
        self._check()
        return sorted((e for p, e in self._d.inbox.items() if p > after), key=lambda e: e.position)[:limit]

    async def read_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        self._check()
        return [self._d.dead[k] for k in sorted(self._d.dead)][:limit]

    async def read_timers(self, *, limit: int, after_due: float = float("-inf")) -> list[TimerRecord]:
        """Timers in due order."""
        self._check()
        ts = sorted(
            (t for t in self._d.timers.values() if t.due_at > after_due),
            key=lambda t: (t.due_at, t.entity_type, t.entity_id, t.key),
        )
        return ts[:limit]

    async def read_journal(self, entity_type: str, entity_id: str, invocation_id: str) -> list[JournalEntry]:
        """The recorded steps of one invocation, in step order."""
        self._check()
        steps = self._d.journal.get((entity_type, entity_id, invocation_id), {})
        return [steps[k] for k in sorted(steps)]

    async def read_outbox(self, *, after: int, limit: int) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order."""
        self._check()
        return [self._d.outbox[k] for k in sorted(self._d.outbox) if k > after][:limit]
