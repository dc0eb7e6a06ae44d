"""Test kit: a virtual clock that makes durable time instant and deterministic.

``VirtualClock`` stands still until a test calls ``await clock.advance(delta)``,
which moves time forward, firing every sleep that falls due in due order and
letting each attached system finish what that wakes (handlers, commits, timers)
before it moves on and before it returns. A 30-day expiry is tested in
milliseconds, and nothing in the test sleeps on the wall clock.

With ``auto_advance=True`` time also skips by itself (as in Temporal's
time-skipping test environment): while a caller outside the system waits on an
``ask`` and everything the system runs waits on the clock, the clock jumps to
the next due time. So ``await ref.ask(...)`` on a handler whose activity backs off
for ten minutes returns at once. Time does not skip while nobody waits on an
ask (a test reads and checks in between, at a fixed time), nor while an async
activity runs (it waits on the outside world, not on the clock).

Whatever the mode, an ``ask`` that gets no answer while the system sits idle
fails after ``stall_timeout`` seconds of wall time with :class:`ClockStalled`,
which says what the system waits for, instead of hanging the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from actors._clock import UTC, SystemClock
from actors._work import Work
from actors.errors import DeadlineExceeded, InvalidArguments

if TYPE_CHECKING:
    from actors._system import ActorSystem

DEFAULT_START = dt.datetime(2026, 1, 1, tzinfo=UTC)

DEFAULT_STALL_TIMEOUT = 10.0
"""Seconds of wall time an ask may wait, with the system idle, before it fails."""

_POLL_MIN = 0.002
_POLL_MAX = 0.05


class ClockStalled(DeadlineExceeded):
    """An ``ask`` under a :class:`VirtualClock` got no answer while nothing could move.

    Raised to the caller of the ask after the clock's ``stall_timeout`` of wall
    time; the message says what the system waits on and what would move it.
    """


class _Sleeper:
    __slots__ = ("event", "gone", "when")

    def __init__(self, when: dt.datetime) -> None:
        self.when = when
        self.event = anyio.Event()
        self.gone = False


async def _all_tasks_blocked(give_up: Callable[[], bool] | None = None) -> bool:
    """Return True once every other task waits on something.

    Like ``anyio.wait_all_tasks_blocked`` (and, like it, it reads asyncio's task
    state), but it also waits for the loop's queue of ready callbacks to drain, and
    it yields with ``sleep(0)`` first and backs off only when work stays runnable,
    instead of sleeping 0.1 s of wall time every time. Returns False as soon as
    ``give_up()`` is true.
    """
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    spins = 0
    while True:
        if give_up is not None and give_up():
            return False
        # a callback already queued (anyio delivers cancellation that way) is pending
        # work that no task shows yet
        runnable = bool(getattr(loop, "_ready", ()))
        for task in () if runnable else asyncio.all_tasks():
            waiter = getattr(task, "_fut_waiter", None)
            if task is not me and (waiter is None or waiter.done()):
                runnable = True
                break
        if not runnable:
            return True
        spins += 1
        await asyncio.sleep(0 if spins < 50 else min(0.0005 * 2 ** (spins - 50), 0.05))


class _WaitingAsk:
    __slots__ = ("future", "what")

    def __init__(self, future: asyncio.Future[Any], what: str) -> None:
        self.future = future
        self.what = what


class VirtualClock:
    """A clock that moves only when told to, or (``auto_advance``) when all waits on it.

    Implements ``actors.Clock``. ``start`` is the initial time (timezone-aware).
    ``auto_advance=True`` skips time while an ask from outside waits and everything
    the attached systems run waits on the clock (see the module docstring).
    ``stall_timeout`` (seconds of wall time, ``None`` for never) bounds how long
    an ask may wait while the system is idle before it fails with
    :class:`ClockStalled`. Both need the clock to be given to an ``ActorSystem``.
    """

    def __init__(
        self,
        start: dt.datetime = DEFAULT_START,
        *,
        auto_advance: bool = False,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
    ) -> None:
        if not isinstance(start, dt.datetime) or start.tzinfo is None:
            raise InvalidArguments(f"start must be a timezone-aware datetime, got {start!r}")
        if not isinstance(auto_advance, bool):
            raise InvalidArguments(f"auto_advance must be a bool, got {auto_advance!r}")
        if stall_timeout is not None and (
            not isinstance(stall_timeout, (int, float))
            or isinstance(stall_timeout, bool)
            or not 0 < stall_timeout < float("inf")
        ):
            raise InvalidArguments(f"stall_timeout must be positive seconds or None, got {stall_timeout!r}")
        self._now = start.astimezone(UTC)
        self.auto_advance = auto_advance
        self.stall_timeout = None if stall_timeout is None else float(stall_timeout)
        self._heap: list[tuple[dt.datetime, int, _Sleeper]] = []
        self._seq = itertools.count()
        self._systems: list[ActorSystem] = []
        self._driver_of: ActorSystem | None = None
        self._wake: anyio.Event | None = None
        self._advancing = 0
        self._first_seen: dict[asyncio.Future[Any], tuple[float, dt.datetime]] = {}
        self.skips = 0
        """How many times time skipped by itself (``auto_advance``)."""

    def __repr__(self) -> str:
        auto = ", auto_advance=True" if self.auto_advance else ""
        return f"VirtualClock({self._now.isoformat()}{auto})"

    def now(self) -> dt.datetime:
        """The virtual time."""
        return self._now

    async def sleep_until(self, when: dt.datetime) -> None:
        """Wait until ``advance`` moves the clock to ``when`` or past it."""
        if when <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        s = _Sleeper(when)
        heapq.heappush(self._heap, (when, next(self._seq), s))
        if self._wake is not None:
            self._wake.set()
        try:
            await s.event.wait()
        finally:
            s.gone = True

    def monotonic(self) -> float:
        """The virtual time in seconds (it never steps back)."""
        return self._now.timestamp()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time."""
        await self.sleep_until(self._now + dt.timedelta(seconds=seconds))

    async def advance(self, delta: dt.timedelta | float) -> None:
        """Move forward by ``delta``, firing due sleeps in order; returns when all settled."""
        if isinstance(delta, (int, float)) and not isinstance(delta, bool):
            delta = dt.timedelta(seconds=delta)
        if not isinstance(delta, dt.timedelta) or delta < dt.timedelta(0):
            raise InvalidArguments(f"advance takes a timedelta >= 0 or seconds, got {delta!r}")
        target = self._now + delta
        self._advancing += 1
        try:
            await self.settle()
            while self._heap and self._heap[0][0] <= target:
                when, _, s = heapq.heappop(self._heap)
                if s.gone:
                    continue
                self._now = max(self._now, when)
                s.event.set()
                await self.settle()
            self._now = max(self._now, target)
            await self.settle()
        finally:
            self._advancing -= 1

    async def settle(self) -> None:
        """Wait until every attached system is idle and all tasks are blocked."""
        while True:
            for w in self._works():
                await w.wait_idle()
            await _all_tasks_blocked()
            if all(w.busy <= 0 for w in self._works()):
                return

    def _works(self) -> list[Work]:
        """The work counters of the attached systems (what "idle" means)."""
        return [s._kernel.work for s in self._systems]

    def _waiting_asks(self) -> list[_WaitingAsk]:
        """Asks from outside the attached systems whose caller waits for the answer now."""
        return [
            _WaitingAsk(f, what)
            for w in self._works()
            for f, what in list(w.outside_asks.items())
            if not f.done()
        ]

    def _activity_running(self) -> bool:
        """Whether an activity attempt is in flight (it waits on the world, not on the clock)."""
        return any(w.running_activities > 0 for w in self._works())

    def attach(self, system: ActorSystem) -> None:
        """Called by a system that uses this clock, so ``advance`` waits for it.

        The first system also runs the clock's driver (time skipping and stall
        detection) in its task group.
        """
        self._systems.append(system)
        system._kernel.work.track_asks = True
        self._start_driver()

    def detach(self, system: ActorSystem) -> None:
        """Called when that system closes (its task group ends the driver it ran)."""
        if system in self._systems:
            self._systems.remove(system)
        if self._driver_of is system:
            self._driver_of = None
            self._start_driver()

    def _start_driver(self) -> None:
        if self._driver_of is not None or (not self.auto_advance and self.stall_timeout is None):
            return
        for system in self._systems:
            if system._kernel.tasks.live:
                self._driver_of = system
                system._kernel.tasks.spawn(self._drive)
                return

    # ------------------------------------------------------------ the driver
    async def _drive(self) -> None:
        """Skip time while an ask waits and all else waits on the clock; fail stalled asks."""
        self._wake = anyio.Event()
        poll = _POLL_MIN
        while True:
            with anyio.move_on_after(poll):
                await self._wake.wait()
            if self._wake.is_set():
                self._wake = anyio.Event()
                poll = _POLL_MIN
            else:
                poll = min(poll * 2, _POLL_MAX)
            if self._advancing or not self._waiting_asks():
                self._first_seen.clear()
                continue
            if not await self._quiet():
                continue
            asks = self._waiting_asks()
            now = time.monotonic()
            seen = {a.future: self._first_seen.get(a.future, (now, self._now)) for a in asks}
            self._first_seen = seen
            if not asks:
                continue
            if self.stall_timeout is not None:
                stalled = [a for a in asks if now - seen[a.future][0] >= self.stall_timeout]
                if stalled:
                    for a in stalled:
                        a.future.set_exception(ClockStalled(self._stall_text(a, seen[a.future][1])))
                        a.future.exception()  # retrieved: the caller may have gone
                    continue
            if self.auto_advance and not self._activity_running() and self._fire_next():
                self.skips += 1
                self._wake.set()  # look again at once

    async def _quiet(self) -> bool:
        """Settle, but give up as soon as an explicit ``advance`` starts.

        Polls ``busy`` rather than calling ``wait_idle``, so it can give up at once.
        """
        while True:
            delay = 0.0002
            while any(w.busy > 0 for w in self._works()):
                if self._advancing:
                    return False
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.005)
            if self._advancing:
                return False
            if not await _all_tasks_blocked(lambda: self._advancing > 0):
                return False
            if all(w.busy <= 0 for w in self._works()):
                return True

    def _fire_next(self) -> bool:
        while self._heap:
            when, _, s = heapq.heappop(self._heap)
            if s.gone:
                continue
            self._now = max(self._now, when)
            s.event.set()
            return True
        return False

    def _next_due(self) -> dt.datetime | None:
        due = [when for when, _, s in self._heap if not s.gone]
        return min(due) if due else None

    def _stall_text(self, ask: _WaitingAsk, since: dt.datetime) -> str:
        assert self.stall_timeout is not None
        head = (
            f"{ask.what} got no answer within {self.stall_timeout:g}s of wall time while the system "
            f"sat idle under {self!r}: "
        )
        nxt = self._next_due()
        if self.auto_advance and self._activity_running():
            why = (
                "an async activity is running and waits on something outside the system (time does "
                "not skip while an activity runs); make the fake it calls return"
            )
        elif self.auto_advance and self._now > since:
            why = (
                f"time skipped from {since.isoformat()} to {self._now.isoformat()} and the handler "
                "still waits (a retry or timer loop that never ends?)"
            )
        elif nxt is not None and not self.auto_advance:
            why = (
                f"it waits on the virtual clock ({self.pending} sleeps pending, the next at "
                f"{nxt.isoformat()}) and nothing advances it: call `await clock.advance(...)` "
                "from the test, or use VirtualClock(auto_advance=True)"
            )
        else:
            why = (
                "nothing is due on the clock: the handler waits on something that never happens "
                "(an ask to an entity that never answers? an activity awaiting forever?)"
            )
        return head + why + "; set VirtualClock(stall_timeout=...) to wait longer"

    @property
    def pending(self) -> int:
        """Sleeps waiting for a future time."""
        return sum(1 for _, _, s in self._heap if not s.gone)


# ---------------------------------------------------------------- the replay check


@attrs.frozen
class ReplayProblem:
    """One incompatibility between stored history and the code being checked."""

    entity_type: str
    entity_id: str
    invocation: str | None
    """The in-flight invocation's signal id (None for a problem of the event log)."""
    step: str
    """Where: ``event 12``, ``handler``, or the journal step the re-run reached."""
    what: str
    """What differs."""


@attrs.frozen
class ReplayReport:
    """What ``replay`` checked and what it found (``problems`` empty: compatible)."""

    entities: int
    invocations: int
    problems: list[ReplayProblem]


class _ReadOnly:
    """The reads a replay needs, from a store or an inspector; every write is refused."""

    def __init__(self, source: Any, journals: list[Any]) -> None:
        self._source = source
        self._journals = journals

    async def read_events(self, entity_type: str, entity_id: str, *, after: int, limit: int) -> Any:
        return await self._source.read_events(entity_type, entity_id, after=after, limit=limit)

    async def read_snapshots(self, entity_type: str, entity_id: str) -> Any:
        return await self._source.read_snapshots(entity_type, entity_id)

    async def read_journal(self, entity_type: str, entity_id: str, invocation_id: str) -> Any:
        found = [
            j
            for j in self._journals
            if (j.entity_type, j.entity_id, j.invocation_id) == (entity_type, entity_id, invocation_id)
        ]
        return sorted(found, key=lambda j: j.step)

    async def read_mark(self, entity_type: str, entity_id: str, signal_id: str) -> Any:
        return None

    async def write(self, batch: Any) -> Any:
        raise RuntimeError("the replay check writes nothing")


class _Stop(BaseException):
    """The re-run reached where its invocation is parked: the check of it is done."""


class _ReplayHost:
    """An actor stand-in for one re-run: no commit, no park, no message sent."""

    def __init__(self, kernel: Any, spec: Any, entity_id: str) -> None:
        self.kernel = kernel
        self.spec = spec
        self.id = entity_id
        self.backup: Any = None
        self.seq = 0

    def before_first_emit(self) -> None:
        pass

    async def state_at(self, seq: int) -> Any:
        from actors import _replay

        return await _replay.load_at(self.kernel, self.spec, self.id, seq)

    async def checkpoint(self, inv: Any, entries: Any) -> None:
        raise _Stop

    async def park(self, inv: Any, predicate: Any, deadline: Any, value: Any, watch: Any) -> Any:
        raise _Stop


async def replay(path_or_store: Any, *, entities: Sequence[type[Any]], limit: float = 30.0) -> ReplayReport:
    """Check stored history against the code of ``entities`` before a deploy.

    Every stored entity of those types has its events replayed through the new
    appliers, and every in-flight invocation that has committed segments (a parked
    workflow) is re-run against its journal on a scratch copy of the entity: no
    activity is called, no message sent, nothing written. ``path_or_store`` is the
    path of a SQLite database (opened read-only) or a store object. Each
    incompatibility is reported with its entity, invocation and step.
    """
    import logging

    from actors import _replay
    from actors._envelope import Envelope
    from actors._invocation import Invocation
    from actors._kernel import Kernel
    from actors._observing import SafeObserver
    from actors._policies import SupervisorPolicy
    from actors._registry import Registry
    from actors.observe import NO_OBSERVER
    from persistence.codec import Codec
    from persistence.inspect import SqliteInspector

    log = logging.getLogger("actors.replay")
    codec = Codec()
    registry = Registry(list(entities), codec, resources={}, max_id_length=10_000)
    problems: list[ReplayProblem] = []
    n_entities = n_invocations = 0
    if isinstance(path_or_store, (str, os.PathLike)):
        source: Any = SqliteInspector(path_or_store)
    else:
        source = path_or_store
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(source)
        if isinstance(source, SqliteInspector):
            journals = await source.read_journals(limit=10_000_000)
            summaries = await source.entities(limit=10_000_000)
            keys = [(e.entity_type, e.entity_id) for e in summaries]
            inbox = await source.read_inbox(after=0, limit=10_000_000)
        else:
            journals = list(_memory_journals(source))
            keys = sorted({(t, i) for (t, i) in _memory_entities(source)})
            inbox = await source.read_inbox(after=0, limit=10_000_000)
        store = _ReadOnly(source, journals)
        kernel = Kernel(
            store,  # type: ignore[arg-type]
            codec,
            SystemClock(),
            registry,
            supervision=SupervisorPolicy(),
            observer=SafeObserver(NO_OBSERVER, log),
            log=log,
            max_batch=1,
        )
        kernel.tasks.state = "running"
        for etype, eid in keys:
            spec = registry.specs.get(etype)
            if spec is None:
                continue
            n_entities += 1
            try:
                await _replay.load(kernel, spec, eid)
            except Exception as e:
                problems.append(ReplayProblem(etype, eid, None, "events", f"{type(e).__name__}: {e}"))
        parked = {(j.entity_type, j.entity_id, j.invocation_id) for j in journals if j.kind == "wait"}
        for entry in inbox:
            s = entry.signal
            if (s.entity_type, s.entity_id, s.signal_id) not in parked:
                continue
            spec = registry.specs.get(s.entity_type)
            if spec is None:
                continue
            n_invocations += 1
            h = spec.signals.get(s.handler)
            if h is None:
                problems.append(
                    ReplayProblem(
                        s.entity_type, s.entity_id, s.signal_id, "handler", f"no handler {s.handler!r}"
                    )
                )
                continue
            host = _ReplayHost(kernel, spec, s.entity_id)
            env = Envelope(h, s, values=None, keyed=True, reply=None, from_inbox=True, recovered=True)
            inv = Invocation(host, env, 2)
            try:
                with anyio.fail_after(limit):
                    entity = await inv.prepare_rerun()
                    if entity is None:
                        continue
                    inv.target = entity
                    object.__setattr__(entity, "_actors_ctx", inv)
                    result = h.call(entity, h.decode(codec, s.args))
                    if h.is_async:
                        await result
                    inv.check_finished()
            except _Stop:
                continue
            except Exception as e:
                where = f"step {inv.journal.step}" if inv._journal is not None else "handler"
                problems.append(
                    ReplayProblem(s.entity_type, s.entity_id, s.signal_id, where, f"{type(e).__name__}: {e}")
                )
    return ReplayReport(n_entities, n_invocations, problems)


def _memory_journals(store: Any) -> Any:
    data = getattr(store, "_d", None)
    if data is None:
        raise InvalidArguments("replay() takes a SQLite path or a MemoryStore")
    for steps in data.journal.values():
        yield from steps.values()


def _memory_entities(store: Any) -> Any:
    data = getattr(store, "_d", None)
    if data is None:
        raise InvalidArguments("replay() takes a SQLite path or a MemoryStore")
    return list(data.events.keys())
