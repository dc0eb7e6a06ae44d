"""Guarantee 7, recovery: signals accepted but not processed resume when the system starts."""

from __future__ import annotations

import anyio
import pytest

from actors import ActorSystem, SystemClosed
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
