"""Guarantee 7, restart intensity: a flapping actor is stopped, says so, and resumes."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import pytest

from actors import ActorSystem, HandlerFailed, SupervisorPolicy
from actors.testing import VirtualClock
from tests.actors.support import Probe, StoreFactory, event_count, make_counter

pytestmark = pytest.mark.anyio

MINUTE = dt.timedelta(minutes=1)
POLICY = SupervisorPolicy(max_attempts=1, max_restarts=3, within=MINUTE)


def stop_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "actors" and r.levelno == logging.ERROR and "stopped" in r.getMessage()
    ]


async def test_a_flapping_actor_is_stopped_and_resumes_after_the_cool_down(
    store_factory: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actors")
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=-1)
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter], clock=clock, supervision=POLICY) as system:
        ref = system.ref(counter, "c")
        for amount in (1, 2, 3, 4, 5):
            await ref.tell("flaky", amount)  # poison: every run crashes
        await clock.advance(dt.timedelta(0))

        (line,) = stop_lines(caplog)
        message = line.getMessage()
        assert "Counter/c stopped" in message
        assert "4 crashes" in message
        assert "restart intensity (max 3)" in message
        assert len(probe.attempts) == 4  # the 5th was never run
        assert len(await system.dead_letters()) == 3

        with pytest.raises(HandlerFailed, match="stopped by its restart intensity"):
            await ref.ask("add", 100)
        await ref.tell("add", 1000)  # accepted: kept in the inbox for later
        assert await ref.query("get_total") == 0  # committed state is still readable
        assert system.is_active(counter, "c")

        probe.crashes_left = 0  # the cause is fixed meanwhile
        await clock.advance(MINUTE / 2)
        with pytest.raises(HandlerFailed):
            await ref.ask("add", 100)  # still cooling down
        await clock.advance(MINUTE / 2)

        assert any("resumes after its cool-down" in r.getMessage() for r in caplog.records)
        assert await ref.query("get_total") == 4 + 5 + 1000  # the inbox was resumed
        assert await ref.ask("add", 1) == 1010
        assert len(await system.dead_letters()) == 3
        assert await system.store.read_inbox(after=0, limit=10) == []
        assert await event_count(system, "Counter", "c") == 4


async def test_crashes_spread_over_the_window_do_not_stop_the_actor(
    store_factory: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actors")
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=-1)
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter], clock=clock, supervision=POLICY) as system:
        ref = system.ref(counter, "c")
        for amount in range(1, 9):
            with pytest.raises(HandlerFailed, match="dead-lettered"):
                await ref.ask("flaky", amount)
            await clock.advance(MINUTE / 3)  # never more than 3 crashes within a minute
        assert stop_lines(caplog) == []
        assert len(await system.dead_letters()) == 8
        assert await ref.ask("add", 1) == 1


async def test_flapping_asks_fail_and_the_actor_recovers(
    store_factory: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actors")
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=-1)
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter], clock=clock, supervision=POLICY) as system:
        ref = system.ref(counter, "c")
        for amount in range(1, 5):
            with pytest.raises(HandlerFailed):
                await ref.ask("flaky", amount)
        assert len(stop_lines(caplog)) == 1
        with pytest.raises(HandlerFailed, match="stopped"):
            await ref.ask("barrier")
        await clock.advance(MINUTE)
        assert await ref.ask("add", 7) == 7


async def test_a_tell_accepted_while_the_actor_resumes_is_applied_once(
    store_factory: StoreFactory,
) -> None:
    """A tell that lands while the actor resumes (at its first store read) runs once."""
    clock = VirtualClock()
    probe = Probe(clock=clock, crashes_left=-1)
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter], clock=clock, supervision=POLICY) as system:
        ref = system.ref(counter, "c")
        for amount in range(1, 5):
            with pytest.raises(HandlerFailed):
                await ref.ask("flaky", amount)
        await ref.tell("add", 10)  # held while stopped
        probe.crashes_left = 0
        store = system.store
        armed = [True]

        def hooked(read: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[object]]:
            async def read_then_tell(*args: object, **kwargs: object) -> object:
                if armed:
                    armed.clear()
                    await ref.tell("add", 1000)
                return await read(*args, **kwargs)

            return read_then_tell

        for name in ("read_inbox", "read_snapshots", "read_events", "read_mark"):
            setattr(store, name, hooked(getattr(store, name)))
        await clock.advance(MINUTE)
        assert armed == []  # the tell did land during the resume
        assert await ref.ask("barrier") == 1010
        assert await event_count(system, "Counter", "c") == 2
