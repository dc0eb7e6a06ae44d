"""In-memory store: the reference implementation of the Store protocol, for tests.

Nothing survives the process; everything else behaves as the SQLite store does
(same results, same errors), which the contract test suite checks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Self

import attrs

from persistence.errors import ShardLost, StoreError
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
    MemberRecord,
    OutboxEntry,
    ProcessedMark,
    Prune,
    Pruned,
    Requeue,
    SaveSnapshot,
    ShardRecord,
    SignalRecord,
    SnapshotRecord,
    StoredEvent,
    TakeOutbox,
    TimerRecord,
    Write,
    WriteResult,
    check_mark_keys,
    replace,
    shard_of,
    signal_taken,
    write_entity,
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
    outbox_from: dict[int, Key] = attrs.field(factory=dict)
    """The sender of each outbox message (whose shard delivers it)."""
    counter: int = 0


@attrs.define
class _Cluster:
    """Membership, shard ownership and wake-ups, shared by every connection of a store."""

    shard_count: int
    clock: Callable[[], float]
    members: dict[str, MemberRecord] = attrs.field(factory=dict)
    holders: dict[str, object] = attrs.field(factory=dict)
    """member id -> the connection that joined it (gone when it closes: the member is dead)."""
    owners: list[str | None] = attrs.field(factory=list)
    epochs: list[int] = attrs.field(factory=list)
    listeners: list[Callable[[str, str], None]] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        self.owners = [None] * self.shard_count
        self.epochs = [0] * self.shard_count


def _sig_key(s: SignalRecord) -> SigKey:
    return (s.entity_type, s.entity_id, s.signal_id)


class MemoryStore:
    """A Store kept in process memory; data survives closing and reopening the object.

    Reusing one ``MemoryStore`` across ``ActorSystem`` instances simulates a restart.
    With ``shared=True`` (or a connection from :meth:`connect`) several systems of one
    process share it as members (a ``SharedStore``; for tests): its database
    clock is ``clock`` (default ``time.time``), and a member whose connection is
    closed without leaving counts as gone (like a server session that ended).
    """

    wakes = True
    """``subscribe`` is called back (systems of one process)."""

    def __init__(
        self, *, shared: bool = False, shards: int = 256, clock: Callable[[], float] = time.time
    ) -> None:
        if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= 65536:
            raise StoreError(f"shards must be an int in 1..65536, got {shards!r:.40}")
        self.shared = shared
        """Whether systems on it run as members (``connect()`` gives more connections)."""
        self._d = _Data()
        self._c = _Cluster(shards, clock)
        self._open = False
        self._undo: list[Callable[[], None]] = []
        self._fence: dict[int, int] | None = None
        self._fence_member = ""
        self._mine: list[Callable[[str, str], None]] = []

    def connect(self) -> MemoryStore:
        """Another connection to this store's data and membership (not yet open)."""
        other = MemoryStore.__new__(MemoryStore)
        other._d, other._c, other.shared = self._d, self._c, True
        other._open, other._undo, other._fence, other._fence_member = False, [], None, ""
        other._mine = []
        return other

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
        self._fence, self._fence_member = None, ""
        for cb in self._mine:
            self._c.listeners.remove(cb)
        self._mine = []
        for mid, holder in list(self._c.holders.items()):
            if holder is self:  # its session ended: the member is gone
                del self._c.holders[mid]

    def _check(self) -> None:
        if not self._open:
            raise StoreError("the store is closed")

    def _next_id(self) -> int:
        self._d.counter += 1
        return self._d.counter

    # ------------------------------------------------------------ writes
    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        """Apply ``batch`` atomically: on any error, every change of the batch is undone."""
        return self._write(batch)

    def write_now(self, batch: Sequence[Write]) -> list[WriteResult] | None:
        """:meth:`write`, which never waits here (:class:`~persistence.store.WritesNow`);
        None when ``write`` is a subclass's or was set on the instance (a wrapper must
        see every write)."""
        if getattr(self.write, "__func__", None) is not MemoryStore.write:
            return None
        return self._write(batch)

    def _write(self, batch: Sequence[Write]) -> list[WriteResult]:
        self._check()
        if self._fence is not None:
            self._check_fence(batch)
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
            self._pop(self._d.outbox_from, w.outbox_id)
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
        if c.from_inbox and skey not in self._d.inbox_ids:
            raise signal_taken([skey], 0)
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
        if c.from_inbox:
            self._pop(self._d.inbox, self._d.inbox_ids[skey])
            self._pop(self._d.inbox_ids, skey)
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
            self._set(self._d.outbox_from, oid, (c.entity_type, c.entity_id))
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
        if current is None or replace(current, trace=t.trace) != t:
            return None  # replaced or cancelled meanwhile (the trace is not its identity)
        result = self._accept(w.signal, True)
        if w.next_due is None:
            self._pop(self._d.timers, tkey)
        else:
            self._set(self._d.timers, tkey, replace(t, due_at=w.next_due))
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

    async def read_marks(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], ProcessedMark]:
        """The processed marks of several signals, ``(entity_type, entity_id, signal_id)``
        each: those processed (a signal not processed has no entry)."""
        check_mark_keys(keys)
        self._check()
        marks = self._d.marks
        return {k: m for k in keys if (m := marks.get(k)) is not None}

    def read_marks_now(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], ProcessedMark] | None:
        """:meth:`read_marks`, which never waits here (None: a ``read_marks`` set on the
        instance, which must see every read)."""
        if getattr(self.read_marks, "__func__", None) is not MemoryStore.read_marks:
            return None
        check_mark_keys(keys)
        self._check()
        marks = self._d.marks
        return {k: m for k in keys if (m := marks.get(k)) is not None}

    def _in(self, shards: Collection[int] | None, entity_type: str, entity_id: str) -> bool:
        return shards is None or shard_of(entity_type, entity_id, self._c.shard_count) in shards

    async def read_inbox(
        self, *, after: int, limit: int, shards: Collection[int] | None = None
    ) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order (of ``shards``)."""
        self._check()
        return sorted(
            (
                e
                for p, e in self._d.inbox.items()
                if p > after and self._in(shards, e.signal.entity_type, e.signal.entity_id)
            ),
            key=lambda e: e.position,
        )[:limit]

    async def read_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        self._check()
        return [self._d.dead[k] for k in sorted(self._d.dead)][:limit]

    async def read_timers(
        self, *, limit: int, after_due: float = float("-inf"), shards: Collection[int] | None = None
    ) -> list[TimerRecord]:
        """Timers in due order (of ``shards``)."""
        self._check()
        ts = sorted(
            (
                t
                for t in self._d.timers.values()
                if t.due_at > after_due and self._in(shards, t.entity_type, t.entity_id)
            ),
            key=lambda t: (t.due_at, t.entity_type, t.entity_id, t.key),
        )
        return ts[:limit]

    async def read_journal(self, entity_type: str, entity_id: str, invocation_id: str) -> list[JournalEntry]:
        """The recorded steps of one invocation, in step order."""
        self._check()
        steps = self._d.journal.get((entity_type, entity_id, invocation_id), {})
        return [steps[k] for k in sorted(steps)]

    async def read_outbox(
        self, *, after: int, limit: int, shards: Collection[int] | None = None
    ) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order (of senders in ``shards``)."""
        self._check()
        frm = self._d.outbox_from
        return [
            self._d.outbox[k]
            for k in sorted(self._d.outbox)
            if k > after and (shards is None or self._in(shards, *frm[k]))
        ][:limit]

    # ------------------------------------------------------------ several members
    @property
    def shard_count(self) -> int:
        """The number of shards (fixed when the store was made)."""
        return self._c.shard_count

    def _now(self) -> float:
        return float(self._c.clock())

    async def join(self, member_id: str, name: str, *, serves: bool, ttl: float) -> None:
        """Add a member, alive, heartbeat now (see ``SharedStore.join``)."""
        self._check()
        c = self._c
        if member_id in c.members:
            raise StoreError(f"member id {member_id!r} was used before")
        now = self._now()
        c.members[member_id] = MemberRecord(member_id, name, serves, "alive", float(ttl), now, now, 0.0)
        c.holders[member_id] = self

    async def heartbeat(self, member_id: str) -> bool:
        """Renew the member's lease; False when it is no longer alive."""
        self._check()
        c = self._c
        m = c.members.get(member_id)
        if m is None or m.status != "alive":
            return False
        c.members[member_id] = replace(m, heartbeat_at=self._now())
        return True

    def _expire(self) -> None:
        c = self._c
        now = self._now()
        for mid, m in list(c.members.items()):
            if m.status == "alive" and (now - m.heartbeat_at > m.ttl or mid not in c.holders):
                c.members[mid] = replace(m, status="dead")

    async def claim(self, member_id: str, wanted: Collection[int]) -> dict[int, int]:
        """Take the wanted shards that are free or owned by a member not alive."""
        self._check()
        c = self._c
        self._expire()
        me = c.members.get(member_id)
        if me is None or me.status != "alive":
            return {}
        taken: dict[int, int] = {}
        for shard in sorted(set(wanted)):
            if not 0 <= shard < c.shard_count:
                continue
            owner = c.owners[shard]
            if owner is None or (owner != member_id and c.members[owner].status != "alive"):
                c.owners[shard] = member_id
                c.epochs[shard] += 1
                taken[shard] = c.epochs[shard]
        return taken

    async def release(self, member_id: str, shards: Mapping[int, int]) -> None:
        """Give up shards owned at these epochs (owner none, epoch + 1)."""
        self._check()
        c = self._c
        for shard, epoch in shards.items():
            if 0 <= shard < c.shard_count and c.owners[shard] == member_id and c.epochs[shard] == epoch:
                c.owners[shard] = None
                c.epochs[shard] += 1

    async def leave(self, member_id: str) -> None:
        """Leave cleanly: status ``left``, every shard released."""
        self._check()
        c = self._c
        m = c.members.get(member_id)
        if m is not None and m.status == "alive":
            c.members[member_id] = replace(m, status="left")
        for shard, owner in enumerate(c.owners):
            if owner == member_id:
                c.owners[shard] = None
                c.epochs[shard] += 1
        c.holders.pop(member_id, None)

    async def members(self) -> list[MemberRecord]:
        """Every member, alive first, then the most recent."""
        self._check()
        self._expire()
        now = self._now()
        ms = [replace(m, seen_ago=max(now - m.heartbeat_at, 0.0)) for m in self._c.members.values()]
        return sorted(ms, key=lambda m: (m.status != "alive", -m.joined_at))

    async def shard_map(self) -> list[ShardRecord]:
        """Every shard, in order."""
        self._check()
        c = self._c
        return [ShardRecord(i, c.owners[i], c.epochs[i]) for i in range(c.shard_count)]

    def set_fence(self, member_id: str, epochs: Mapping[int, int]) -> None:
        """Fence every later batch's fenced writes (see ``SharedStore.set_fence``)."""
        self._fence_member = member_id
        self._fence = dict(epochs)

    def _check_fence(self, batch: Sequence[Write]) -> None:
        fence = self._fence
        assert fence is not None
        c = self._c
        lost: set[int] = set()
        for w in batch:
            ent = write_entity(w)
            if ent is None:
                continue
            shard = shard_of(ent[0], ent[1], c.shard_count)
            epoch = fence.get(shard)
            if epoch is None or c.owners[shard] != self._fence_member or c.epochs[shard] != epoch:
                lost.add(shard)
        if lost:
            for shard in lost:
                fence.pop(shard, None)
            raise ShardLost(
                f"this member no longer owns shard(s) {sorted(lost)[:10]} at the epoch it holds: "
                "nothing of the batch was written",
                frozenset(lost),
            )

    async def publish(self, topic: str, items: Sequence[str]) -> None:
        """Wake every subscriber of every connection (soon, on the event loop)."""
        self._check()
        loop = asyncio.get_running_loop()
        for cb in list(self._c.listeners):
            for item in items:
                loop.call_soon(cb, topic, item)

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(topic, item)`` for every published item."""
        self._c.listeners.append(callback)
        self._mine.append(callback)
