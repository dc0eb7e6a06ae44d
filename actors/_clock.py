"""The clock: a protocol injected into the system, and the real wall clock.

Every wait the runtime does on time (retry backoff, passivation, durable timers)
goes through the system's clock, so a test can swap in
:class:`actors.testing.VirtualClock` and jump forward instantly.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import anyio

UTC = dt.UTC
MAX_DUE = dt.datetime(9999, 1, 1, tzinfo=UTC)
"""The latest due time a timer may have (later ones are refused when scheduled)."""


@runtime_checkable
class Clock(Protocol):
    """What the runtime needs of a clock: the time, and a way to wait for a time."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep_until(self, when: dt.datetime) -> None:
        """Return once ``now() >= when`` (at once if it already is)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps back (for windows and waits, not business time)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the monotonic clock."""
        ...


def wall_clock(clock: Clock) -> Callable[[], float]:
    """A function giving ``clock.now().timestamp()``: ``time.time`` on the real clock."""
    if type(clock) is SystemClock:
        return time.time
    return lambda: clock.now().timestamp()


class SystemClock:
    """The real clock: wall time in UTC; sleeps on the event loop.

    Durations the runtime waits for (backoff, restart windows, activity timeouts) use
    ``monotonic()`` and ``sleep()``, so a wall clock stepping back stalls none of them.
    """

    def now(self) -> dt.datetime:
        """The current wall time (UTC)."""
        return dt.datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (monotonic)."""
        await anyio.sleep(max(seconds, 0))

    async def sleep_until(self, when: dt.datetime) -> None:
        """Sleep until the wall clock reaches ``when``."""
        while True:
            left = (when - self.now()).total_seconds()
            if left <= 0:
                await anyio.lowlevel.checkpoint()
                return
            await anyio.sleep(left)


def to_timestamp(t: dt.datetime) -> float:
    """Unix seconds of an aware datetime."""
    return t.timestamp()


def from_timestamp(ts: float) -> dt.datetime:
    """Aware UTC datetime of Unix seconds."""
    return dt.datetime.fromtimestamp(ts, UTC)
