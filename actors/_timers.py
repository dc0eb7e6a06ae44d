"""Durable timers: one service per system fires them on the system's clock."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable, Iterable

import anyio

from actors._clock import MAX_DUE, Clock, from_timestamp
from actors._commit import After, GroupCommitter
from actors._ids import derived_id, generated_id
from actors._observing import SafeObserver
from actors._shards import Ownership
from actors._work import Work
from actors.errors import CorruptRecord, StoreError
from persistence.codec import fingerprint
from persistence.store import FireTimer, SignalRecord, Store, TimerRecord, WriteResult, replace


def _valid_due(due: object) -> bool:
    if not isinstance(due, (int, float)) or isinstance(due, bool) or not math.isfinite(due):
        return False
    try:
        return from_timestamp(due) <= MAX_DUE
    except (OverflowError, ValueError, OSError):
        return False


WINDOW = 10_000
"""Timers held in memory at most at load: the nearest ones; the rest wait in the store."""


class TimerService:
    """Fires durable timers when due: one task per system, on the system's clock.

    Only a window of the nearest timers is in memory: at start the first ``window``
    in due order (those that fell due while the system was down fire at once, in due
    order), and every timer a commit sets before the window's *horizon* (the due time
    of the last one loaded; infinite when everything fit). Timers due later stay in
    the store only; when every timer before the horizon has fired and committed, the
    next window is read. So a million stored timers cost one window of memory and one
    indexed read at start. Firing turns a timer into an inbox signal in one
    transaction (``FireTimer``), so a timer fires once even across a crash. A
    recurring timer's missed ticks are coalesced: it fires once for all of them and
    is rescheduled to its next tick after now.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        committer: GroupCommitter,
        *,
        runs_type: Callable[[str], bool],
        route: Callable[[SignalRecord], After],
        log: logging.Logger,
        observer: SafeObserver,
        work: Work,
        shards: Ownership | None = None,
        window: int | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._committer = committer
        self._runs_type = runs_type
        self._route = route
        self._log = log
        self._observer = observer
        self._work = work
        self._shards = shards if shards is not None else Ownership()
        self._reload = False
        self._current: dict[tuple[str, str, str], TimerRecord] = {}
        self._heap: list[tuple[float, int, TimerRecord]] = []
        self._seq = itertools.count()
        self._scope: anyio.CancelScope | None = None
        self._waiting_until: float | None = None
        self._window = window if window is not None else WINDOW
        self._horizon = math.inf
        """Every timer due before this is in memory (or in flight); later ones may be in the store only."""
        self._in_flight = 0
        self._loaded = False
        self._changes: list[tuple[str, str, tuple[TimerRecord, ...], tuple[str, ...]]] | None = None
        """Commits' timer changes seen while a window is being read (re-applied after it)."""
        self.fired = 0

    def __len__(self) -> int:
        return len(self._current)

    async def load(self) -> None:
        """Read the window of the nearest stored timers of the entity types this system runs.

        A damaged row (a due time that is no number) is logged as a CorruptRecord
        naming its entity and skipped: it stops no one else.
        """
        self._loaded = True
        self._changes = []
        self._work.inc()  # a read in flight is work: a virtual clock must not skip past it
        try:
            owned = self._shards.owned()
            if owned is None:
                rows = await self._store.read_timers(limit=self._window)
            else:
                rows = await self._store.read_timers(limit=self._window, shards=owned)
        finally:
            self._work.dec()
            changes, self._changes = self._changes, None
        self._current.clear()
        self._heap.clear()
        self._horizon = rows[-1].due_at if len(rows) >= self._window else math.inf
        runs = self._runs_type
        for t in rows:
            if not runs(t.entity_type):
                continue
            due = t.due_at
            if not _valid_due(due) or (
                t.every is not None and not (isinstance(t.every, (int, float)) and 0 < t.every < 1e12)
            ):
                err = CorruptRecord(
                    f"timer {t.key!r} of {t.entity_type}/{t.entity_id} is damaged "
                    f"(due {due!r:.40}, every {t.every!r:.40}): skipped"
                )
                self._log.error("%s", err)
                continue
            if t.due_at < self._horizon:  # at the horizon itself, ties may be left in the store
                self._put(t)
        for change in changes:
            self.on_commit(*change)

    def _put(self, t: TimerRecord) -> None:
        self._current[(t.entity_type, t.entity_id, t.key)] = t
        heapq.heappush(self._heap, (t.due_at, next(self._seq), t))
        if self._scope is not None and (self._waiting_until is None or t.due_at < self._waiting_until):
            self._scope.cancel()

    def on_commit(
        self, entity_type: str, entity_id: str, set_timers: Iterable[TimerRecord], cancels: Iterable[str]
    ) -> None:
        """Take the timer changes of a committed invocation."""
        if self._changes is not None:
            set_timers, cancels = tuple(set_timers), tuple(cancels)
            self._changes.append((entity_type, entity_id, set_timers, cancels))
        for k in cancels:
            self._current.pop((entity_type, entity_id, k), None)
        for t in set_timers:
            if t.due_at < self._horizon:
                self._put(t)
            else:  # beyond the window: the store has it; the window reaches it later
                self._current.pop((t.entity_type, t.entity_id, t.key), None)

    def reload(self) -> None:
        """Read the window again (the owned shards changed)."""
        self._reload = True
        if self._scope is not None:
            self._scope.cancel()

    def forget(self, shards: frozenset[int]) -> None:
        """Drop from memory the timers of shards this member gave up (their owner fires them)."""
        shard = self._shards.shard
        for k in [k for k in self._current if shard(k[0], k[1]) in shards]:
            del self._current[k]

    def pending(self, entity_type: str, entity_id: str) -> list[TimerRecord]:
        """The entity's scheduled timers held in memory (the window), in due order."""
        ts = [t for (et, ei, _k), t in self._current.items() if (et, ei) == (entity_type, entity_id)]
        return sorted(ts, key=lambda t: t.due_at)

    async def run(self) -> None:
        """Fire timers as they fall due, until cancelled."""
        clock = self._clock
        failures = 0
        while True:
            if self._reload or (self._loaded and self._window_done(self._peek())):
                # a new set of shards, or the next window: everything before the horizon fired
                self._reload = False
                try:
                    await self.load()
                    failures = 0
                except StoreError as e:  # the store is down: keep what is in memory, read again
                    failures += 1
                    self._reload = True
                    delay = min(0.05 * 2**failures, 5.0)
                    self._log.warning("reading timers failed (%s); again in %.2fs", e, delay)
                    await anyio.sleep(delay)  # real time: the store's trouble is not the clock's
                continue
            self._fire_due()
            nxt = self._peek()
            if self._window_done(nxt):
                continue
            with anyio.CancelScope() as scope:
                self._scope = scope
                self._waiting_until = nxt.due_at if nxt is not None else None
                if nxt is None:
                    await anyio.sleep_forever()
                else:
                    await clock.sleep_until(from_timestamp(nxt.due_at))
            self._scope = None

    def _window_done(self, nxt: TimerRecord | None) -> bool:
        """Whether every timer before the horizon fired and committed (read the next window)."""
        if not self._loaded or self._horizon == math.inf or self._in_flight:
            return False
        return nxt is None or nxt.due_at >= self._horizon

    def _peek(self) -> TimerRecord | None:
        while self._heap:
            t = self._heap[0][2]
            if self._current.get((t.entity_type, t.entity_id, t.key)) is t:
                return t
            heapq.heappop(self._heap)
        return None

    def _fire_due(self) -> None:
        # compare as the sleep did (datetimes, microseconds): a float due time can round
        # below itself, and a timer whose sleep returned must count as due
        now_dt = self._clock.now()
        now = now_dt.timestamp()
        while (t := self._peek()) is not None and from_timestamp(t.due_at) <= now_dt:
            heapq.heappop(self._heap)  # in flight: out of the heap, still current, until it commits
            next_due = None
            if t.every:
                missed = max(math.floor((now - t.due_at) / t.every) + 1, 1)  # now may round below
                next_due = t.due_at + missed * t.every
                try:
                    if from_timestamp(next_due) > MAX_DUE:
                        next_due = None  # the series ran past the end of time: this is its last tick
                except (OverflowError, ValueError, OSError):
                    next_due = None
            self.fired += 1
            # each firing gets an id of its own: a timer re-armed with the same key and due
            # time is a new firing, not a repeat (FireTimer makes each firing happen once)
            signal = SignalRecord(
                t.entity_type,
                t.entity_id,
                derived_id("t", t.key, repr(t.due_at), generated_id()),
                t.handler,
                t.args,
                fingerprint(t.handler, t.args),
                t.due_at,
                t.trace,  # the context of the invocation that set the timer
            )
            self._observer.timer_fired(t.entity_type, t.entity_id, t.key, max(now - t.due_at, 0.0))
            # a failed write is retried by the committer until it commits; only then does the
            # timer move on in memory, so memory and store never disagree about its due time
            self._in_flight += 1
            self._committer.submit_nowait(FireTimer(t, signal, next_due), self._on_fired(t, signal, next_due))

    def _on_fired(
        self, t: TimerRecord, signal: SignalRecord, next_due: float | None
    ) -> Callable[[WriteResult], None]:
        route = self._route(signal)

        def fired(result: WriteResult) -> None:
            route(result)
            self._fired(t, next_due)

        return fired

    def _fired(self, t: TimerRecord, next_due: float | None) -> None:
        """A firing committed: the timer moves to its next tick, or is gone."""
        self._in_flight -= 1
        k = (t.entity_type, t.entity_id, t.key)
        if self._current.get(k) is t:  # else replaced or cancelled by a commit meanwhile: that one stands
            if next_due is None:
                del self._current[k]
            elif next_due < self._horizon:
                self._put(replace(t, due_at=next_due))
            else:
                del self._current[k]  # its next tick is beyond the window: the store has it
        if not self._in_flight and self._scope is not None and self._horizon != math.inf:
            self._scope.cancel()  # the run loop may now read the next window
