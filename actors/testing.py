"""Test kit: a virtual clock that makes durable time instant and deterministic.

``VirtualClock`` stands still until a test calls ``await clock.advance(delta)``,
which moves time forward, firing every sleep that falls due in due order and
letting each attached system finish what that wakes (handlers, commits, timers)
before it moves on and before it returns. A 30-day expiry is tested in
milliseconds, and nothing in the test sleeps on the wall clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
from typing import TYPE_CHECKING

import anyio

from actors.errors import InvalidArguments
from actors.timers import UTC

if TYPE_CHECKING:
    from actors.system import ActorSystem

DEFAULT_START = dt.datetime(2026, 1, 1, tzinfo=UTC)


class _Sleeper:
    __slots__ = ("event", "gone", "when")

    def __init__(self, when: dt.datetime) -> None:
        self.when = when
        self.event = anyio.Event()
        self.gone = False


async def _all_tasks_blocked() -> None:
    """Return once every other task waits on something.

    Like ``anyio.wait_all_tasks_blocked`` (and, like it, it reads asyncio's task
    state), but it also waits for the loop's queue of ready callbacks to drain, and
    it yields with ``sleep(0)`` first and backs off only when work stays runnable,
    instead of sleeping 0.1 s of wall time every time.
    """
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    spins = 0
    while True:
        # a callback already queued (anyio delivers cancellation that way) is pending
        # work that no task shows yet
        runnable = bool(getattr(loop, "_ready", ()))
        for task in () if runnable else asyncio.all_tasks():
            waiter = getattr(task, "_fut_waiter", None)
            if task is not me and (waiter is None or waiter.done()):
                runnable = True
                break
        if not runnable:
            return
        spins += 1
        await asyncio.sleep(0 if spins < 50 else min(0.0005 * 2 ** (spins - 50), 0.05))


class VirtualClock:
    """A clock that moves only when told to. Implements ``actors.Clock``."""

    def __init__(self, start: dt.datetime = DEFAULT_START) -> None:
        if not isinstance(start, dt.datetime) or start.tzinfo is None:
            raise InvalidArguments(f"start must be a timezone-aware datetime, got {start!r}")
        self._now = start.astimezone(UTC)
        self._heap: list[tuple[dt.datetime, int, _Sleeper]] = []
        self._seq = itertools.count()
        self._systems: list[ActorSystem] = []

    def __repr__(self) -> str:
        return f"VirtualClock({self._now.isoformat()})"

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
        await self.settle()
        while self._heap and self._heap[0][0] <= target:
            when, _, s = heapq.heappop(self._heap)
            if s.gone:
                continue
            self._now = max(self._now, when)
            s.event.set()
            await self.settle()
        self._now = target
        await self.settle()

    async def settle(self) -> None:
        """Wait until every attached system is idle and all tasks are blocked."""
        while True:
            for s in self._systems:
                await s.wait_idle()
            await _all_tasks_blocked()
            if all(s.busy <= 0 for s in self._systems):
                return

    def attach(self, system: ActorSystem) -> None:
        """Called by a system that uses this clock, so ``advance`` waits for it."""
        self._systems.append(system)

    def detach(self, system: ActorSystem) -> None:
        """Called when that system closes."""
        if system in self._systems:
            self._systems.remove(system)

    @property
    def pending(self) -> int:
        """Sleeps waiting for a future time."""
        return sum(1 for _, _, s in self._heap if not s.gone)
