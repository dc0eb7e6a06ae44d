"""Timers from the store, not all in memory: a window of the nearest ones is held.

The window is shrunk to 3 here, so every path (a window read at start, commits
before and beyond the horizon, the next window read once the first has fired, a
recurring timer whose next tick leaves the window) runs with a handful of timers.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import anyio
import anyio.to_thread
import attrs
import pytest

import actors._timers
from actors import ActorSystem, Entity, applies, query, signal
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore, Store
from persistence.store import TimerRecord

pytestmark = pytest.mark.anyio

MIN = dt.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actors._timers, "WINDOW", 3)


@attrs.frozen
class Rang:
    tag: str


@attrs.define
class Bell(Entity):
    rang: tuple[str, ...] = ()

    @signal
    def set(self, tag: str, minutes: int) -> None:
        self.schedule(Bell.ring, tag, after=dt.timedelta(minutes=minutes), key=tag)

    @signal
    def every(self, tag: str, minutes: int) -> None:
        self.schedule(Bell.ring, tag, every=dt.timedelta(minutes=minutes), key=tag)

    @signal
    def ring(self, tag: str) -> None:
        self.emit(Rang(tag))

    @query
    def get(self) -> tuple[str, ...]:
        return self.rang

    @applies
    def _rang(self, e: Rang) -> None:
        self.rang = (*self.rang, e.tag)


async def _ring_all(store: Store, clock: VirtualClock) -> tuple[str, ...]:
    async with ActorSystem(store, [Bell], clock=clock) as system:
        for i in range(10):
            await system.ref(Bell, "b").ask(Bell.set, f"t{i}", 10 - i)  # t9 first ... t0 last
    async with ActorSystem(store, [Bell], clock=clock) as system:
        assert len(system._kernel.timers) <= 3  # only the window is in memory
        await system.ref(Bell, "b").ask(Bell.set, "late", 30)  # beyond the horizon: store only
        await system.ref(Bell, "b").ask(Bell.set, "soon", 1)  # before it: in memory
        await clock.advance(dt.timedelta(minutes=31))
        return await system.ref(Bell, "b").query(Bell.get)


async def test_every_timer_fires_once_in_due_order_through_several_windows(tmp_path: Path) -> None:
    for store in (MemoryStore(), SqliteStore(tmp_path / "db")):
        clock = VirtualClock()
        rang = await _ring_all(store, clock)
        assert rang == ("t9", "soon", "t8", "t7", "t6", "t5", "t4", "t3", "t2", "t1", "t0", "late")


async def test_a_timer_moved_beyond_the_horizon_fires_once_at_its_new_time() -> None:
    clock = VirtualClock()
    store = MemoryStore()
    async with ActorSystem(store, [Bell], clock=clock) as system:
        for i in range(6):
            await system.ref(Bell, "b").ask(Bell.set, f"t{i}", i + 1)
    async with ActorSystem(store, [Bell], clock=clock) as system:
        bell = system.ref(Bell, "b")
        await bell.ask(Bell.set, "t0", 50)  # t0 was in the window; now far beyond it
        await clock.advance(dt.timedelta(minutes=60))
        assert await bell.query(Bell.get) == ("t1", "t2", "t3", "t4", "t5", "t0")


async def test_a_recurring_timer_keeps_ticking_across_windows() -> None:
    clock = VirtualClock()
    store = MemoryStore()
    async with ActorSystem(store, [Bell], clock=clock) as system:
        bell = system.ref(Bell, "b")
        for i in range(5):
            await bell.ask(Bell.set, f"t{i}", 100 + i)  # fill the store beyond a window
        await bell.ask(Bell.every, "tick", 30)
    async with ActorSystem(store, [Bell], clock=clock) as system:
        bell = system.ref(Bell, "b")
        await clock.advance(dt.timedelta(minutes=200))
        rang = await bell.query(Bell.get)
        assert rang.count("tick") == 6
        assert [t for t in rang if t != "tick"] == ["t0", "t1", "t2", "t3", "t4"]


class _SlowTimerReads(MemoryStore):
    """A store whose timer reads take wall time on a worker thread (a slow disk)."""

    async def read_timers(self, *, limit: int, after_due: float = float("-inf")) -> list[TimerRecord]:
        await anyio.to_thread.run_sync(time.sleep, 0.02)
        return await super().read_timers(limit=limit, after_due=after_due)


async def test_advance_waits_for_a_window_read_in_flight() -> None:
    # regression: the next window's read ran on a thread while the virtual clock saw
    # every task blocked, so advance() returned before the later timers had fired
    clock = VirtualClock()
    rang = await _ring_all(_SlowTimerReads(), clock)
    assert rang == ("t9", "soon", "t8", "t7", "t6", "t5", "t4", "t3", "t2", "t1", "t0", "late")


async def test_a_failed_window_read_is_retried_and_the_timers_still_fire() -> None:
    # regression (cluster fault run, a database restart): a window read that failed
    # ended the timer task, and no timer of that system fired again
    from persistence.faults import FaultyStore

    store = FaultyStore(MemoryStore())
    clock = VirtualClock()
    async with ActorSystem(store, [Bell], clock=clock) as system:
        for i in range(5):
            await system.ref(Bell, "b").ask(Bell.set, f"t{i}", i + 1)
    async with ActorSystem(store, [Bell], clock=clock) as system:
        store.fail("read_timers", times=2)  # the next window's reads fail twice
        await clock.advance(dt.timedelta(minutes=10))

        async def all_rang() -> bool:
            await clock.advance(dt.timedelta(minutes=1))
            return await system.ref(Bell, "b").query(Bell.get) == ("t0", "t1", "t2", "t3", "t4")

        with anyio.fail_after(10):
            while not await all_rang():  # noqa: ASYNC110 - the retry waits real time
                await anyio.sleep(0.05)
        assert store.failures == 2
