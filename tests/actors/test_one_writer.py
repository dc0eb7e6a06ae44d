"""Guarantee 1: one writer per entity, and signals handled in acceptance order."""

from __future__ import annotations

import anyio
import pytest

from actors import ActorSystem
from tests.actors.support import Probe, StoreFactory, event_count, make_counter

pytestmark = pytest.mark.anyio


async def test_concurrent_asks_and_tells_never_overlap(store_factory: StoreFactory) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")

        async def caller(n: int) -> None:
            for i in range(5):
                if i % 2:
                    await ref.ask("step", f"{n}-{i}")
                else:
                    await ref.tell("step", f"{n}-{i}")

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(caller, n)
        await ref.ask("barrier")  # behind every accepted tell

        assert probe.most_running == 1
        assert await ref.query("get_overlaps") == 0
        order = await ref.query("get_order")
        assert sorted(order) == sorted(f"{n}-{i}" for n in range(20) for i in range(5))
        assert await event_count(system, "Counter", "c") == 200


async def test_many_handlers_of_different_entities_do_run_concurrently(
    store_factory: StoreFactory,
) -> None:
    """The probe can see overlap: one writer is per entity, not per system."""
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(system.ref(counter, f"c{n}").ask, "step", "x")
        assert probe.most_running > 1


async def test_tells_from_one_caller_are_handled_in_order(store_factory: StoreFactory) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")
        for i in range(60):
            await ref.tell("step", str(i))
        await ref.ask("barrier")
        assert await ref.query("get_order") == tuple(str(i) for i in range(60))


async def test_each_callers_order_is_kept_among_concurrent_callers(
    store_factory: StoreFactory,
) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")

        async def caller(name: str) -> None:
            for i in range(15):
                await ref.tell("step", f"{name}{i:02d}")

        async with anyio.create_task_group() as tg:
            for name in "abcd":
                tg.start_soon(caller, name)
        await ref.ask("barrier")
        order = await ref.query("get_order")
        assert isinstance(order, tuple)
        for name in "abcd":
            mine = [t for t in order if t.startswith(name)]
            assert mine == [f"{name}{i:02d}" for i in range(15)]


async def test_order_survives_a_restart_with_queued_tells(store_factory: StoreFactory) -> None:
    """Tells queued behind a blocked handler when the system stops keep their order."""
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")
        await ref.tell("hold", 1)
        for i in range(10):
            await ref.tell("step", str(i))
        with anyio.fail_after(5):
            await probe.emitted.wait()
    probe2 = Probe()
    probe2.gate.set()
    counter2 = make_counter(probe2)
    async with ActorSystem(store_factory(), [counter2]) as system:
        ref2 = system.ref(counter2, "c")
        await ref2.ask("barrier")
        assert await ref2.query("get_order") == tuple(str(i) for i in range(10))
        assert await ref2.query("get_total") == 1
