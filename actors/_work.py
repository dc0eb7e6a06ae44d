"""What the runtime is doing now: the one place a virtual clock reads to know whether
the system is idle.

The committer and the actor loop update one :class:`Work` per system: ``busy``
counts runnable units (a running drain, a queued write), and a handler waiting on
the clock is ``parked`` (not busy). ``running_activities`` counts activity
attempts in flight (they wait on the outside world, not on the clock), and
``outside_asks`` holds the answers that callers outside the system wait for (kept
only while a clock asks for them: ``track_asks``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio


class Work:
    """Counters of work in progress, and a wake-up for those waiting until it is none."""

    __slots__ = ("_idle", "busy", "outside_asks", "running_activities", "track_asks")

    def __init__(self) -> None:
        self.busy = 0
        """Units of runnable work in progress."""
        self.running_activities = 0
        """Activity attempts in flight."""
        self.outside_asks: dict[asyncio.Future[Any], str] = {}
        """Answers that callers outside the system wait for -> what they asked (if tracked)."""
        self.track_asks = False
        """Whether ``outside_asks`` is kept (a virtual clock asks for it; it costs a little)."""
        self._idle: anyio.Event | None = None

    def inc(self) -> None:
        """Count one unit of runnable work."""
        self.busy += 1

    def dec(self, n: int = 1) -> None:
        """Uncount ``n`` units of work; wakes every ``wait_idle`` at zero."""
        self.busy -= n
        if self.busy <= 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    @contextlib.asynccontextmanager
    async def parked(self) -> AsyncIterator[None]:
        """Count the current work as waiting on the clock (not busy) inside the block."""
        self.dec()
        try:
            yield
        finally:
            self.inc()

    async def wait_idle(self) -> None:
        """Wait until no unit of work is in progress.

        All waiters share one event, made when the first of them waits and set (and
        dropped) when the count reaches zero, so concurrent waiters all wake.
        """
        while self.busy > 0:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    @contextlib.contextmanager
    def activity(self) -> Iterator[None]:
        """Count an activity attempt as in flight inside the block."""
        self.running_activities += 1
        try:
            yield
        finally:
            self.running_activities -= 1

    @contextlib.contextmanager
    def outside_ask(self, answer: asyncio.Future[Any], what: str) -> Iterator[None]:
        """Record that a caller outside waits on ``answer`` inside the block (if tracked)."""
        if not self.track_asks:
            yield
            return
        self.outside_asks[answer] = what
        try:
            yield
        finally:
            self.outside_asks.pop(answer, None)
