"""Guarantee 4 (atomic handlers) and the supervisor's retries and dead letters (7).

Time is a VirtualClock: the backoff between attempts is checked on the clock's
own timestamps, recorded by the handler itself.
"""

from __future__ import annotations

import datetime as dt

import anyio
import pytest

from actors import ActorSystem, HandlerFailed, Rejected, SupervisorPolicy
from actors.testing import VirtualClock
from tests.actors.support import NotNow, Outcome, Probe, StoreFactory, event_count, make_counter

pytestmark = pytest.mark.anyio

S = dt.timedelta(seconds=1)


def system_for(
    store_factory: StoreFactory, probe: Probe, clock: VirtualClock, **policy: object
) -> tuple[ActorSystem, type]:
    counter = make_counter(probe)
    system = ActorSystem(
        store_factory(),
        [counter],
        clock=clock,
        supervision=SupervisorPolicy(**policy),  # type: ignore[arg-type]
    )
    return system, counter


async def test_emit_then_rejected_leaves_no_trace(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [make_counter(Probe())]) as system:
        ref = system.ref("Counter", "c")
        await ref.ask("add", 10)
        with pytest.raises(NotNow, match="not now: 5"):
            await ref.ask("refuse", 5)
        with pytest.raises(Rejected):
            await ref.options(key="r").ask("refuse", 6)  # keyed: the refusal is recorded, not the event
        await ref.tell("refuse", 7)
        assert await ref.ask("barrier") == 10
        assert await ref.query("get_total") == 10
        assert await event_count(system, "Counter", "c") == 1
    async with ActorSystem(store_factory(), [make_counter(Probe())]) as system:
        assert await system.ref("Counter", "c").query("get_total") == 10


async def test_emit_then_crash_leaves_no_trace(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=-1)
    system, _ = system_for(store_factory, probe, clock, max_attempts=1)
    async with system:
        ref = system.ref("Counter", "c")
        await ref.ask("add", 10)
        with pytest.raises(HandlerFailed, match="flaky crash on 5") as info:
            await ref.ask("flaky", 5)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert await ref.query("get_total") == 10
        assert await event_count(system, "Counter", "c") == 1


async def test_a_crash_retried_to_success_applies_once(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=2)
    system, _ = system_for(store_factory, probe, clock, max_attempts=3, initial_backoff=S)
    async with system:
        ref = system.ref("Counter", "c")
        out = Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.capture, lambda: ref.ask("flaky", 5))
            await clock.advance(10 * S)
        assert out.error is None
        assert out.value == 5  # each attempt emitted once; only the last is kept
        assert len(probe.attempts) == 3
        assert await ref.query("get_total") == 5
        assert await event_count(system, "Counter", "c") == 1


async def test_retries_back_off_exponentially_on_the_clock(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    t0 = clock.now()
    probe = Probe(clock=clock, crashes_left=-1)
    system, _ = system_for(store_factory, probe, clock, max_attempts=4, initial_backoff=S)
    async with system:
        ref = system.ref("Counter", "c")
        out = Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.capture, lambda: ref.ask("flaky", 5))
            await clock.advance(2 * S)
            assert [t - t0 for t in probe.attempts] == [0 * S, 1 * S]
            assert not out.done.is_set()
            await clock.advance(60 * S)
        assert [t - t0 for t in probe.attempts] == [0 * S, 1 * S, 3 * S, 7 * S]
        assert isinstance(out.error, HandlerFailed)


async def test_backoff_is_capped_by_max_backoff(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    t0 = clock.now()
    probe = Probe(clock=clock, crashes_left=-1)
    system, _ = system_for(store_factory, probe, clock, max_attempts=5, initial_backoff=S, max_backoff=2 * S)
    async with system:
        out = Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.capture, lambda: system.ref("Counter", "c").ask("flaky", 5))
            await clock.advance(60 * S)
        assert [t - t0 for t in probe.attempts] == [0 * S, 1 * S, 3 * S, 5 * S, 7 * S]


async def test_exhausted_signal_is_dead_lettered_and_the_actor_moves_on(
    store_factory: StoreFactory,
) -> None:
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=-1)
    system, _ = system_for(store_factory, probe, clock, max_attempts=3, initial_backoff=S)
    async with system:
        ref = system.ref("Counter", "c")
        await ref.ask("add", 1)
        out = Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.capture, lambda: ref.ask("flaky", 5))
            await clock.advance(0 * S)
            await ref.tell("add", 10)  # queued behind the poison signal
            await clock.advance(60 * S)
        assert isinstance(out.error, HandlerFailed)
        assert "failed 3 times" in str(out.error)
        assert await ref.ask("add", 100) == 111  # served after the dead letter, in order
        (dead,) = await system.dead_letters()
        assert dead.signal.handler == "flaky"
        assert dead.signal.entity_id == "c"
        assert dead.attempts == 3
        assert "flaky crash on 5" in dead.error
        assert "Traceback" in dead.traceback
        assert "RuntimeError: flaky crash on 5" in dead.traceback
        assert await event_count(system, "Counter", "c") == 3


async def test_a_dead_lettered_tell_leaves_the_inbox(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=-1)
    system, _ = system_for(store_factory, probe, clock, max_attempts=2, initial_backoff=S)
    async with system:
        await system.ref("Counter", "c").tell("flaky", 5)
        await clock.advance(10 * S)
        assert len(await system.dead_letters()) == 1
        assert await system.store.read_inbox(after=0, limit=10) == []
    probe.crashes_left = 0  # a restart does not run it again: it is dead, not pending
    async with ActorSystem(store_factory(), [make_counter(probe)], clock=clock) as system:
        assert await system.ref("Counter", "c").ask("barrier") == 0


async def test_retry_dead_letter_delivers_it_again(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=-1)
    system, _ = system_for(store_factory, probe, clock, max_attempts=2, initial_backoff=S)
    async with system:
        ref = system.ref("Counter", "c")
        out = Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.capture, lambda: ref.ask("flaky", 5))
            await clock.advance(10 * S)
        assert isinstance(out.error, HandlerFailed)
        (dead,) = await system.dead_letters()
        probe.crashes_left = 0  # fixed: the second delivery succeeds
        await system.retry_dead_letter(dead.id)
        assert await ref.ask("barrier") == 5
        assert await system.dead_letters() == []
        assert await system.store.read_inbox(after=0, limit=10) == []
        assert await event_count(system, "Counter", "c") == 1


async def test_a_keyed_repeat_of_a_dead_letter_reports_the_failure(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=-1)
    system, _ = system_for(store_factory, probe, clock, max_attempts=1)
    async with system:
        keyed = system.ref("Counter", "c").options(key="poison")
        with pytest.raises(HandlerFailed):
            await keyed.ask("flaky", 5)
        probe.crashes_left = 0
        with pytest.raises(HandlerFailed, match="first outcome"):
            await keyed.ask("flaky", 5)  # the first outcome, not a second run
        assert len(probe.attempts) == 1
        (dead,) = await system.dead_letters()
        await system.retry_dead_letter(dead.id)  # an explicit retry does run it again
        assert await keyed.ask("flaky", 5) == 5
        assert len(probe.attempts) == 2
