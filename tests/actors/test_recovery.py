"""Guarantee 7, recovery: signals accepted but not processed resume when the system starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from actors import ActorSystem, Entity, SupervisorPolicy, SystemClosed, applies, query, signal
from persistence import SqliteStore
from persistence.store import Accept, Accepted, SignalRecord
from tests.actors.support import Outcome, Probe, StoreFactory, event_count, make_counter

pytestmark = pytest.mark.anyio


async def test_pending_tells_are_applied_after_a_restart(store_factory: StoreFactory) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")
        await ref.tell("hold", 1)  # blocks the actor: everything after it stays queued
        for amount in (10, 100, 1000):
            await ref.tell("add", amount)
        await system.ref(counter, "d").tell("add", 5)  # another entity: not blocked
        assert await system.ref(counter, "d").ask("barrier") == 5
        with anyio.fail_after(5):
            await probe.emitted.wait()
        assert await ref.query("get_total") == 0
        assert len(await system.store.read_inbox(after=0, limit=10)) == 4
    probe2 = Probe()
    probe2.gate.set()
    counter2 = make_counter(probe2)
    async with ActorSystem(store_factory(), [counter2]) as system:
        ref = system.ref(counter2, "c")
        assert await ref.ask("barrier") == 1111  # behind the recovered signals
        assert await event_count(system, "Counter", "c") == 4
        assert await system.ref(counter2, "d").query("get_total") == 5
        assert await system.store.read_inbox(after=0, limit=10) == []
    async with ActorSystem(store_factory(), [counter2]) as system:  # and only once
        assert await system.ref(counter2, "c").ask("barrier") == 1111


async def test_queued_asks_fail_with_system_closed_and_are_not_applied(
    store_factory: StoreFactory,
) -> None:
    probe = Probe()
    counter = make_counter(probe)
    held, queued = Outcome(), Outcome()
    async with anyio.create_task_group() as tg, ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")
        tg.start_soon(held.capture, lambda: ref.ask("hold", 1))
        with anyio.fail_after(5):
            await probe.emitted.wait()
        tg.start_soon(queued.capture, lambda: ref.ask("add", 10))
        await anyio.wait_all_tasks_blocked()
    assert isinstance(held.error, SystemClosed)
    assert isinstance(queued.error, SystemClosed)
    probe2 = Probe()
    probe2.gate.set()
    async with ActorSystem(store_factory(), [make_counter(probe2)]) as system:
        assert await system.ref("Counter", "c").ask("barrier") == 0
        assert await event_count(system, "Counter", "c") == 0


async def test_recovery_keeps_acceptance_order_across_entities(store_factory: StoreFactory) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        await system.ref(counter, "a").tell("hold", 1)
        await system.ref(counter, "b").tell("hold", 1)
        for i in range(20):
            await system.ref(counter, "ab"[i % 2]).tell("step", str(i))
    probe2 = Probe()
    probe2.gate.set()
    counter2 = make_counter(probe2)
    async with ActorSystem(store_factory(), [counter2]) as system:
        a, b = system.ref(counter2, "a"), system.ref(counter2, "b")
        await a.ask("barrier")
        await b.ask("barrier")
        assert await a.query("get_order") == tuple(str(i) for i in range(0, 20, 2))
        assert await b.query("get_order") == tuple(str(i) for i in range(1, 20, 2))


async def test_calls_after_close_raise_system_closed(store_factory: StoreFactory) -> None:
    counter = make_counter(Probe())
    system = ActorSystem(store_factory(), [counter])
    with pytest.raises(SystemClosed):
        await system.ref(counter, "c").tell("add", 1)  # not entered yet
    async with system:
        ref = system.ref(counter, "c")
        await ref.ask("add", 1)
    with pytest.raises(SystemClosed):
        await ref.tell("add", 1)
    with pytest.raises(SystemClosed):
        await ref.ask("add", 1)
    with pytest.raises(SystemClosed):
        await ref.query("get_total")
    with pytest.raises(SystemClosed):
        await system.dead_letters()
    with pytest.raises(SystemClosed):
        async with system:
            pass


@attrs.frozen
class _Added:
    n: int


@attrs.define
class _Tally(Entity):
    total: int = 0

    @signal
    def add(self, n: int) -> int:
        self.emit(_Added(n))
        return self.total

    @query
    def get(self) -> int:
        return self.total

    @applies
    def _added(self, e: _Added) -> None:
        self.total += e.n


@attrs.define
class _Forward(Entity):
    """A saga of one journaled ask: runs from the inbox at start-up."""

    sent: int = 0

    @signal
    async def go(self) -> int:
        got = await self.ref(_Tally, "t").ask(_Tally.add, 1)
        self.emit(_Added(1))
        return got

    @applies
    def _added(self, e: _Added) -> None:
        self.sent += e.n


async def test_a_journaled_step_recovered_at_start_up_runs_while_the_system_starts(tmp_path: Path) -> None:
    """A signal left in the inbox runs while the system starts (recovery routes it
    before ``__aenter__`` returns). Its first journaled step (here an ask) raised
    ``SystemClosed`` ("the system is closing") because the system was not yet
    "running", and the supervisor counted a crash and retried it (with
    ``max_attempts=1``: a dead letter); found by the cluster fault run, on members
    restarted after a kill. Only a closing system refuses a step now."""
    db = tmp_path / "r.db"
    async with SqliteStore(db) as store:
        rec = SignalRecord("_Forward", "f", "g:left-behind", "go", "{}", "fp", 0.0)
        assert isinstance((await store.write([Accept(rec)]))[0], Accepted)
    store = SqliteStore(db)
    real_read_timers = store.read_timers

    async def read_timers_later(**kw: Any) -> Any:  # start-up's last read: after the saga ran
        while await store.read_inbox(after=0, limit=1):  # noqa: ASYNC110 - the saga's commit empties it
            await anyio.sleep(0.01)
        return await real_read_timers(**kw)

    store.read_timers = read_timers_later  # type: ignore[method-assign]
    policy = SupervisorPolicy(max_attempts=1)
    async with ActorSystem(store, [_Forward, _Tally], supervision=policy) as system:
        store.read_timers = real_read_timers  # type: ignore[method-assign]
        await system.wait_idle()
        assert system._kernel.retries == 0
        assert await system.store.read_dead_letters(limit=5) == []
        assert await system.ref(_Tally, "t").query(_Tally.get) == 1
