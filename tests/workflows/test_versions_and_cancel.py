"""Workflows, continued: ``patched`` under code changed beneath in-flight work, a sync
activity cancelled through its heartbeat, and a cancel request that outlives a restart."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import ClassVar

import anyio
import attrs
import pytest

import actors
from actors import ActivityContext, ActorSystem, Entity, signal
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore

pytestmark = [pytest.mark.anyio]

HOUR = dt.timedelta(hours=1)
TAKEN: list[str] = []


async def _new_fee(what: str) -> str:
    TAKEN.append(f"fee {what}")
    return "fee"


@attrs.define
class PayOld(Entity):
    """The code an invocation was journaled under: waits, then pays."""

    entity_name = "Pay"
    branches: ClassVar[list[str]] = []

    @signal
    async def go(self, what: str) -> str:
        PayOld.branches.append(f"old {what}")
        await self.sleep(HOUR)
        return f"paid {what}"


@attrs.define
class PayNew(Entity):
    """The deployed change: a new activity before the wait, behind ``patched``."""

    entity_name = "Pay"
    branches: ClassVar[list[str]] = []

    @signal
    async def go(self, what: str) -> str:
        if self.patched("fee-first"):
            PayNew.branches.append(f"new {what}")
            await self.run(_new_fee, what)
            await self.sleep(HOUR)
            return f"paid {what} with fee"
        PayNew.branches.append(f"old {what}")
        await self.sleep(HOUR)
        return f"paid {what}"


async def test_patched_is_false_for_an_invocation_journaled_before_the_change(tmp_path: Path) -> None:
    TAKEN.clear()
    PayOld.branches.clear()
    PayNew.branches.clear()
    db = tmp_path / "db"
    clock = VirtualClock()
    async with ActorSystem(SqliteStore(db), [PayOld], clock=clock) as system:
        old = await system.ref(PayOld, "p1").start(PayOld.go, "rent")
        await clock.advance(dt.timedelta(minutes=1))
        await system.wait_idle()
    assert PayOld.branches == ["old rent"]
    async with ActorSystem(SqliteStore(db), [PayNew], clock=clock) as system:
        await system.wait_idle()  # the old invocation re-ran and parked again
        new = await system.ref(PayNew, "p2").start(PayNew.go, "food")
        await clock.advance(dt.timedelta(hours=2))
        assert await system.handle(old.id).result(timeout=10) == "paid rent"
        assert await new.result(timeout=10) == "paid food with fee"
    assert PayNew.branches == ["old rent", "new food"]
    assert TAKEN == ["fee food"]  # the old invocation never ran the new step


async def test_without_patched_the_changed_step_is_nondeterminism_not_a_rerun(tmp_path: Path) -> None:
    # the same change without the patched() guard: the old invocation must not call
    # the new activity with a fresh key; it is dead-lettered instead
    @attrs.define
    class PayUnguarded(Entity):
        entity_name = "Pay"

        @signal
        async def go(self, what: str) -> str:
            await self.run(_new_fee, what)
            await self.sleep(HOUR)
            return f"paid {what} with fee"

    TAKEN.clear()
    db = tmp_path / "db"
    clock = VirtualClock()
    async with ActorSystem(SqliteStore(db), [PayOld], clock=clock) as system:
        old = await system.ref(PayOld, "p1").start(PayOld.go, "rent")
        await clock.advance(dt.timedelta(minutes=1))
        await system.wait_idle()
    async with ActorSystem(SqliteStore(db), [PayUnguarded], clock=clock) as system:
        await clock.advance(dt.timedelta(hours=2))
        with pytest.raises(actors.HandlerFailed) as info:
            await system.handle(old.id).result(timeout=10)
        assert "dead-lettered: NonDeterminismError" in str(info.value)
        assert "journal holds wait 'sleep' but this run asks for activity '_new_fee'" in str(info.value)
    assert TAKEN == []


SYNC_STARTED = threading.Event()
SEEN: list[str] = []
UNDONE: list[str] = []


def _long_sync(ctx: ActivityContext, what: str) -> str:
    """A sync activity that works until cancelled (bounded by a deadline of its own)."""
    SEEN.append(f"start {what}")
    SYNC_STARTED.set()
    deadline = time.monotonic() + 30
    while not ctx.cancelled:
        if time.monotonic() > deadline:
            SEEN.append("never cancelled")
            return "finished"
        time.sleep(0.002)
    SEEN.append("cancelled seen")
    ctx.heartbeat()  # raises Cancelled
    SEEN.append("heartbeat went on")
    return "went on"


def _undo(what: str) -> None:
    UNDONE.append(what)


@attrs.define
class Job(Entity):
    @signal
    async def work(self) -> str:
        async with self.saga() as saga:
            saga.compensate(_undo, "reserve")
            await self.run(_undo, "nothing yet")  # a first step that completes
            saga.compensate(_undo, "crunch")
            return await self.run(_long_sync, "crunch")


async def test_a_sync_activity_sees_the_cancel_and_its_heartbeat_raises() -> None:
    SYNC_STARTED.clear()
    SEEN.clear()
    UNDONE.clear()
    async with ActorSystem(MemoryStore(), [Job]) as system:
        handle = await system.ref(Job, "j").start(Job.work)
        assert await anyio.to_thread.run_sync(SYNC_STARTED.wait, 20)
        await handle.cancel("stop crunching")
        with pytest.raises(actors.Cancelled) as info:
            await handle.result(timeout=20)
        assert info.value.reason == "stop crunching"
    assert SEEN == ["start crunch", "cancelled seen"]  # one attempt; heartbeat raised
    assert UNDONE == ["nothing yet", "crunch", "reserve"]  # compensations in reverse


RELEASED: list[str] = []


async def _hold(item: str) -> None:
    pass


async def _release(item: str) -> None:
    RELEASED.append(item)


@attrs.define
class Booking(Entity):
    @signal
    async def book(self) -> str:
        async with self.saga() as saga:
            saga.compensate(_release, "seat")
            await self.run(_hold, "seat")
            saga.compensate(_release, "hotel")
            await self.run(_hold, "hotel")
            await self.wait_until(lambda: False, timeout=dt.timedelta(days=7))
        return "booked"


async def test_a_cancel_made_while_no_process_runs_it_reaches_it_after_a_restart(tmp_path: Path) -> None:
    RELEASED.clear()
    db = tmp_path / "db"
    clock = VirtualClock()
    async with ActorSystem(SqliteStore(db), [Booking], clock=clock) as system:
        handle = await system.ref(Booking, "b").start(Booking.book)
        await clock.advance(HOUR)
        await system.wait_idle()
        hid = handle.id
    # another system on the store, which does not run the entity: it records the request
    async with ActorSystem(SqliteStore(db), [Booking], clock=clock, recover=False) as system:
        await system.handle(hid).cancel("plans changed")
    assert RELEASED == []  # nobody ran the invocation meanwhile
    async with ActorSystem(SqliteStore(db), [Booking], clock=clock) as system:
        with pytest.raises(actors.Cancelled) as info:
            await system.handle(hid).result(timeout=10)
        assert info.value.reason == "plans changed"
    assert RELEASED == ["hotel", "seat"]
    async with ActorSystem(SqliteStore(db), [Booking], clock=clock) as system:
        with pytest.raises(actors.Cancelled):  # the outcome is kept; nothing runs again
            await system.handle(hid).result(timeout=10)
        await clock.advance(dt.timedelta(days=8))
        await system.wait_idle()
    assert RELEASED == ["hotel", "seat"]
