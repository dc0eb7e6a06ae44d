"""Durable timers on a virtual clock (DESIGN.md guarantee 8).

Every test drives time with ``actors.testing.VirtualClock``: ``await advance(clock, d)``
fires what falls due, in order, and returns once the system has settled, so a
30-day expiry takes milliseconds and nothing here sleeps on the wall clock.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import anyio
import attrs
import pytest

from actors import (
    ActorSystem,
    Entity,
    HandlerFailed,
    InvalidArguments,
    Rejected,
    SupervisorPolicy,
    applies,
    query,
    signal,
)
from actors.testing import DEFAULT_START, VirtualClock
from persistence import Store

pytestmark = pytest.mark.anyio

StoreFactory = Callable[[], Store]
MIN = dt.timedelta(minutes=1)
EXPIRY = dt.timedelta(minutes=30)


# ---------------------------------------------------------------- entities


@attrs.frozen
class ItemAdded:
    sku: str


@attrs.frozen
class CartExpired:
    at: str


@attrs.define
class Cart(Entity):
    """A cart that expires 30 minutes after its last change."""

    items: tuple[str, ...] = ()
    expired_at: str | None = None

    @signal
    def add(self, sku: str) -> int:
        if self.expired_at is not None:
            raise Rejected("the cart expired")
        self.emit(ItemAdded(sku))
        self.schedule(Cart.expire, after=EXPIRY, key="expiry")
        return len(self.items)

    @signal
    def expire(self) -> None:
        self.emit(CartExpired(self.now().isoformat()))

    @applies
    def _added(self, e: ItemAdded) -> None:
        self.items = (*self.items, e.sku)

    @applies
    def _expired(self, e: CartExpired) -> None:
        self.expired_at = e.at

    @query
    def get_expired_at(self) -> str | None:
        return self.expired_at

    @query
    def get_items(self) -> tuple[str, ...]:
        return self.items


@attrs.frozen
class Rang:
    name: str
    at: str


@attrs.frozen
class Noted:
    name: str


class Boom(RuntimeError):
    """A handler crash."""


@attrs.define
class Alarm(Entity):
    """Schedules ``ring(name)`` in many ways; records every ring with its ``now()``."""

    rings: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    @signal
    def arm(self, name: str, seconds: float) -> str:
        return self.schedule(Alarm.ring, name, after=dt.timedelta(seconds=seconds), key=name)

    @signal
    def arm_many(self, names: tuple[str, ...], seconds: tuple[float, ...]) -> None:
        for name, secs in zip(names, seconds, strict=True):
            self.schedule(Alarm.ring, name, after=dt.timedelta(seconds=secs), key=name)

    @signal
    def arm_at(self, name: str, at: dt.datetime) -> None:
        self.schedule(Alarm.ring, name, at=at, key=name)

    @signal
    def arm_unkeyed(self, name: str, seconds: float) -> str:
        return self.schedule("ring", name, after=dt.timedelta(seconds=seconds))

    @signal
    def arm_every(self, name: str, minutes: int) -> None:
        self.schedule(Alarm.ring, name, every=dt.timedelta(minutes=minutes), key=name)

    @signal
    def disarm(self, name: str) -> None:
        self.cancel(name)

    @signal
    def disarm_then_arm(self, name: str, seconds: float) -> None:
        self.cancel(name)
        self.schedule(Alarm.ring, name, after=dt.timedelta(seconds=seconds), key=name)

    @signal
    def arm_then_reject(self, name: str, seconds: float) -> None:
        self.emit(Noted(name))
        self.schedule(Alarm.ring, name, after=dt.timedelta(seconds=seconds), key=name)
        raise Rejected("changed my mind")

    @signal
    def arm_then_crash(self, name: str, seconds: float) -> None:
        self.emit(Noted(name))
        self.schedule(Alarm.ring, name, after=dt.timedelta(seconds=seconds), key=name)
        raise Boom("crash after scheduling")

    @signal
    def disarm_then_reject(self, name: str) -> None:
        self.cancel(name)
        raise Rejected("no")

    @signal
    def ring(self, name: str) -> None:
        self.emit(Rang(name, self.now().isoformat()))

    @signal
    def note(self, name: str) -> None:
        self.emit(Noted(name))

    @applies
    def _rang(self, e: Rang) -> None:
        self.rings = (*self.rings, (e.name, e.at))

    @applies
    def _noted(self, e: Noted) -> None:
        self.notes = (*self.notes, e.name)

    @query
    def get_rings(self) -> tuple[tuple[str, str], ...]:
        return self.rings

    @query
    def get_notes(self) -> tuple[str, ...]:
        return self.notes


def system_of(store: Store, clock: VirtualClock, **kw: object) -> ActorSystem:
    return ActorSystem(store, entities=[Cart, Alarm], clock=clock, **kw)  # type: ignore[arg-type]


async def advance(clock: VirtualClock, delta: dt.timedelta) -> None:
    """``clock.advance`` under a wall-clock deadline: a system that never settles fails the test."""
    with anyio.fail_after(10):
        await clock.advance(delta)


def iso(t: dt.datetime) -> str:
    return t.isoformat()


async def stored_timers(store: Store) -> list[tuple[str, str, str]]:
    return [(t.entity_type, t.entity_id, t.key) for t in await store.read_timers(limit=1000)]


# ---------------------------------------------------------------- reset and expiry


async def test_cart_expires_thirty_minutes_after_its_last_change(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    start = clock.now()
    async with system_of(store_factory(), clock) as system:
        cart = system.ref(Cart, "c1")
        assert await cart.ask(Cart.add, "apple") == 1

        await advance(clock, 20 * MIN)
        assert await cart.query(Cart.get_expired_at) is None
        assert await cart.ask(Cart.add, "pear") == 2  # reschedules "expiry" to start + 50 min
        last_change = clock.now()
        assert [t.key for t in system._kernel.timers.pending("Cart", "c1")] == ["expiry"]

        await advance(clock, 20 * MIN)  # 40 min after the first change, 20 after the last
        assert await cart.query(Cart.get_expired_at) is None
        assert system._kernel.timers.fired == 0

        await advance(clock, 11 * MIN)  # 31 min after the last change
        assert await cart.query(Cart.get_expired_at) == iso(last_change + EXPIRY)
        assert last_change + EXPIRY == start + 50 * MIN
        assert system._kernel.timers.fired == 1
        assert system._kernel.timers.pending("Cart", "c1") == []
        assert await stored_timers(system.store) == []
        with pytest.raises(Rejected, match="expired"):
            await cart.ask(Cart.add, "plum")

        await advance(clock, EXPIRY * 3)  # the replaced first timer never fires
        assert system._kernel.timers.fired == 1


async def test_now_in_a_timer_handler_is_the_due_time(store_factory: StoreFactory) -> None:
    # An odd start and an odd delay: now() is exactly the due time, not a rounded tick.
    clock = VirtualClock(dt.datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=dt.UTC))
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "a")
        armed_at = clock.now()
        await alarm.ask(Alarm.arm, "x", 90.5)
        # advance in one jump well past the due time: the handler still sees the due time
        await advance(clock, dt.timedelta(hours=2))
        assert await alarm.query(Alarm.get_rings) == (("x", iso(armed_at + dt.timedelta(seconds=90.5))),)


# ---------------------------------------------------------------- cancel and atomicity


async def test_cancel_removes_the_timer(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "a")
        await alarm.ask(Alarm.arm_many, ("keep", "drop"), (60.0, 60.0))
        assert sorted(await stored_timers(system.store)) == [("Alarm", "a", "drop"), ("Alarm", "a", "keep")]
        await alarm.ask(Alarm.disarm, "drop")
        assert await stored_timers(system.store) == [("Alarm", "a", "keep")]
        await advance(clock, 5 * MIN)
        assert [n for n, _ in await alarm.query(Alarm.get_rings)] == ["keep"]
        assert system._kernel.timers.fired == 1


async def test_cancel_of_an_unknown_key_is_harmless(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "a")
        await alarm.ask(Alarm.arm, "real", 60)
        await alarm.ask(Alarm.disarm, "never-scheduled")  # no error
        await system.ref(Alarm, "other").ask(Alarm.disarm, "real")  # another entity's key: not ours
        assert await stored_timers(system.store) == [("Alarm", "a", "real")]
        await advance(clock, 2 * MIN)
        assert [n for n, _ in await alarm.query(Alarm.get_rings)] == ["real"]
        assert await system.ref(Alarm, "other").query(Alarm.get_rings) == ()


async def test_cancel_then_schedule_the_same_key_in_one_handler_keeps_the_new_timer(
    store_factory: StoreFactory,
) -> None:
    clock = VirtualClock()
    start = clock.now()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "a")
        await alarm.ask(Alarm.arm, "k", 60)
        await alarm.ask(Alarm.disarm_then_arm, "k", 600)
        await advance(clock, 20 * MIN)
        assert await alarm.query(Alarm.get_rings) == (("k", iso(start + dt.timedelta(seconds=600))),)


async def test_unkeyed_timers_get_distinct_keys(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "a")
        k1 = await alarm.ask(Alarm.arm_unkeyed, "one", 10)
        k2 = await alarm.ask(Alarm.arm_unkeyed, "two", 20)
        assert k1 != k2
        await advance(clock, MIN)
        assert [n for n, _ in await alarm.query(Alarm.get_rings)] == ["one", "two"]


async def test_a_rejected_handler_schedules_nothing(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "a")
        with pytest.raises(Rejected, match="changed my mind"):
            await alarm.ask(Alarm.arm_then_reject, "nope", 60)
        assert system._kernel.timers.pending("Alarm", "a") == []
        assert await stored_timers(system.store) == []
        await advance(clock, 10 * MIN)
        assert await alarm.query(Alarm.get_rings) == ()
        assert await alarm.query(Alarm.get_notes) == ()
        assert system._kernel.timers.fired == 0


async def test_a_rejected_handler_cancels_nothing(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "a")
        await alarm.ask(Alarm.arm, "stay", 60)
        with pytest.raises(Rejected):
            await alarm.ask(Alarm.disarm_then_reject, "stay")
        assert await stored_timers(system.store) == [("Alarm", "a", "stay")]
        await advance(clock, 2 * MIN)
        assert [n for n, _ in await alarm.query(Alarm.get_rings)] == ["stay"]


async def test_a_crashing_handler_schedules_nothing(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    policy = SupervisorPolicy(max_attempts=2, initial_backoff=dt.timedelta(seconds=1))
    async with system_of(store_factory(), clock, supervision=policy) as system:
        alarm = system.ref(Alarm, "a")
        await alarm.tell(Alarm.arm_then_crash, "nope", 5)
        await advance(clock, MIN)  # both attempts crash; the signal is dead-lettered
        dead = await system.dead_letters()
        assert [(d.signal.handler, d.attempts) for d in dead] == [("arm_then_crash", 2)]
        assert "Boom" in dead[0].error
        assert system._kernel.timers.pending("Alarm", "a") == []
        assert await stored_timers(system.store) == []
        await advance(clock, 10 * MIN)
        assert await alarm.query(Alarm.get_rings) == ()
        assert await alarm.query(Alarm.get_notes) == ()
        assert system._kernel.timers.fired == 0

        # and an ask of the same crash reports it, still with nothing scheduled
        async with anyio.create_task_group() as tg:
            failure: list[BaseException] = []

            async def ask() -> None:
                try:
                    await alarm.ask(Alarm.arm_then_crash, "nope2", 5)
                except HandlerFailed as e:
                    failure.append(e)

            tg.start_soon(ask)
            await advance(clock, MIN)
        assert len(failure) == 1
        await advance(clock, 10 * MIN)
        assert await alarm.query(Alarm.get_rings) == ()
        assert await stored_timers(system.store) == []


# ---------------------------------------------------------------- long timers, at=, order, activation


async def test_a_thirty_day_timer_fires_in_milliseconds(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    start = clock.now()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "a")
        await alarm.ask(Alarm.arm, "month", dt.timedelta(days=30).total_seconds())
        t0 = time.perf_counter()
        await advance(clock, dt.timedelta(days=29, hours=23, minutes=59))
        assert await alarm.query(Alarm.get_rings) == ()
        await advance(clock, dt.timedelta(minutes=1))
        elapsed = time.perf_counter() - t0
        assert await alarm.query(Alarm.get_rings) == (("month", iso(start + dt.timedelta(days=30))),)
        assert clock.now() == start + dt.timedelta(days=30)
        assert elapsed < 5.0  # 30 virtual days in (much) less than the wall-clock budget


async def test_at_schedules_for_an_absolute_time(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    when = DEFAULT_START + dt.timedelta(hours=5, minutes=7)
    past = DEFAULT_START - dt.timedelta(hours=1)
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "a")
        await alarm.ask(Alarm.arm_at, "abs", when)
        await alarm.ask(Alarm.arm_at, "past", past)  # already due: fires at once, with its own time
        await advance(clock, dt.timedelta(0))
        assert await alarm.query(Alarm.get_rings) == (("past", iso(past)),)
        await advance(clock, dt.timedelta(hours=5, minutes=6))
        assert len(await alarm.query(Alarm.get_rings)) == 1
        await advance(clock, dt.timedelta(hours=1))
        assert await alarm.query(Alarm.get_rings) == (("past", iso(past)), ("abs", iso(when)))


async def test_timers_due_in_one_advance_fire_in_due_order(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    start = clock.now()
    async with system_of(store_factory(), clock) as system:
        a, b = system.ref(Alarm, "a"), system.ref(Alarm, "b")
        await a.ask(Alarm.arm_many, ("a3", "a1", "a5"), (300.0, 100.0, 500.0))
        await b.ask(Alarm.arm_many, ("b4", "b2"), (400.0, 200.0))
        await a.ask(Alarm.arm, "a2", 200)  # scheduled later, due at the same time as b2
        await advance(clock, dt.timedelta(hours=1))
        got_a = await a.query(Alarm.get_rings)
        got_b = await b.query(Alarm.get_rings)
        assert [n for n, _ in got_a] == ["a1", "a2", "a3", "a5"]
        assert [n for n, _ in got_b] == ["b2", "b4"]
        every = dict(got_a + got_b)
        assert every == {n: iso(start + dt.timedelta(seconds=int(n[1]) * 100)) for n in every}
        assert system._kernel.timers.fired == 6


async def test_a_timer_activates_a_passivated_entity(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    async with system_of(store_factory(), clock, passivate_after=MIN) as system:
        alarm = system.ref(Alarm, "sleepy")
        await alarm.ask(Alarm.note, "before")
        await alarm.ask(Alarm.arm, "wake", dt.timedelta(hours=1).total_seconds())
        await advance(clock, 10 * MIN)
        assert not system.is_active(Alarm, "sleepy")  # the sweeper passivated it
        await advance(clock, dt.timedelta(hours=1))
        # the timer's signal activated it again (state rebuilt from the store) and it rang
        assert [n for n, _ in await alarm.query(Alarm.get_rings)] == ["wake"]
        assert await alarm.query(Alarm.get_notes) == ("before",)


async def test_schedule_rejects_bad_arguments(store_factory: StoreFactory) -> None:
    @attrs.define
    class Bad(Entity):
        n: int = 0

        @signal
        def try_it(self, how: str) -> str:
            calls: dict[str, Callable[[], object]] = {
                "both": lambda: self.schedule(Bad.noop, after=MIN, at=DEFAULT_START),
                "neither": lambda: self.schedule(Bad.noop),
                "negative": lambda: self.schedule(Bad.noop, after=-MIN),
                "naive": lambda: self.schedule(Bad.noop, at=dt.datetime(2026, 1, 1)),
                "zero-every": lambda: self.schedule(Bad.noop, every=dt.timedelta(0)),
                "empty-key": lambda: self.schedule(Bad.noop, after=MIN, key=""),
                "long-key": lambda: self.schedule(Bad.noop, after=MIN, key="k" * 1000),
                "bad-args": lambda: self.schedule(Bad.noop, "extra", after=MIN),
                "cancel-empty": lambda: self.cancel(""),
            }
            try:
                calls[how]()
            except InvalidArguments as e:
                return f"InvalidArguments: {e}"
            return "accepted"

        @signal
        def noop(self) -> None:
            pass

    clock = VirtualClock()
    async with ActorSystem(store_factory(), entities=[Bad], clock=clock) as system:
        ref = system.ref(Bad, "b")
        for how in ("both", "neither", "negative", "naive", "zero-every", "empty-key", "long-key"):
            assert (await ref.ask(Bad.try_it, how)).startswith("InvalidArguments"), how
        assert (await ref.ask(Bad.try_it, "bad-args")).startswith("InvalidArguments")
        assert (await ref.ask(Bad.try_it, "cancel-empty")).startswith("InvalidArguments")
        assert await system.store.read_timers(limit=10) == []


# ---------------------------------------------------------------- restarts


async def test_a_timer_due_while_the_system_was_down_fires_once_on_start(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    start = clock.now()
    async with system_of(store_factory(), clock) as system:
        await system.ref(Alarm, "a").ask(Alarm.arm, "late", 600)
        await advance(clock, 5 * MIN)
        assert await system.ref(Alarm, "a").query(Alarm.get_rings) == ()

    await advance(clock, dt.timedelta(hours=3))  # "down": no system is attached to the clock
    assert clock.now() == start + dt.timedelta(hours=3, minutes=5)

    async with system_of(store_factory(), clock) as system:
        await advance(clock, dt.timedelta(0))  # let the start-up firing settle
        alarm = system.ref(Alarm, "a")
        assert await alarm.query(Alarm.get_rings) == (("late", iso(start + dt.timedelta(seconds=600))),)
        assert system._kernel.timers.fired == 1
        await advance(clock, dt.timedelta(days=1))
        assert len(await alarm.query(Alarm.get_rings)) == 1
        assert await stored_timers(system.store) == []

    async with system_of(store_factory(), clock) as system:  # and not again on the next start
        await advance(clock, MIN)
        assert len(await system.ref(Alarm, "a").query(Alarm.get_rings)) == 1
        assert system._kernel.timers.fired == 0


async def test_timers_missed_while_down_fire_in_due_order_and_later_ones_wait(
    store_factory: StoreFactory,
) -> None:
    clock = VirtualClock()
    start = clock.now()
    async with system_of(store_factory(), clock) as system:
        await system.ref(Alarm, "a").ask(Alarm.arm_many, ("t3", "t1", "t9"), (180.0, 60.0, 540.0))
        await system.ref(Alarm, "b").ask(Alarm.arm_many, ("t2", "t4"), (120.0, 240.0))
        # A restart with no downtime keeps them pending.
    async with system_of(store_factory(), clock) as system:
        await advance(clock, dt.timedelta(0))
        assert system._kernel.timers.fired == 0
        assert len(system._kernel.timers) == 5

    await advance(clock, 5 * MIN)  # down while t1..t4 fall due

    async with system_of(store_factory(), clock) as system:
        await advance(clock, dt.timedelta(0))
        a, b = system.ref(Alarm, "a"), system.ref(Alarm, "b")
        assert await a.query(Alarm.get_rings) == (
            ("t1", iso(start + 1 * MIN)),
            ("t3", iso(start + 3 * MIN)),
        )
        assert await b.query(Alarm.get_rings) == (
            ("t2", iso(start + 2 * MIN)),
            ("t4", iso(start + 4 * MIN)),
        )
        assert system._kernel.timers.fired == 4
        await advance(clock, 5 * MIN)  # t9 is due at start + 9 min, after the restart
        assert [n for n, _ in await a.query(Alarm.get_rings)] == ["t1", "t3", "t9"]
        assert system._kernel.timers.fired == 5


# ---------------------------------------------------------------- recurring


async def test_a_recurring_timer_fires_on_every_tick(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    start = clock.now()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "r")
        await alarm.ask(Alarm.arm_every, "tick", 5)
        await advance(clock, 4 * MIN)
        assert await alarm.query(Alarm.get_rings) == ()
        await advance(clock, MIN)
        assert await alarm.query(Alarm.get_rings) == (("tick", iso(start + 5 * MIN)),)
        await advance(clock, 12 * MIN)  # 17 min: ticks at 10 and 15
        assert [at for _, at in await alarm.query(Alarm.get_rings)] == [
            iso(start + m * MIN) for m in (5, 10, 15)
        ]
        timers = system._kernel.timers
        assert [t.due_at for t in timers.pending("Alarm", "r")] == [(start + 20 * MIN).timestamp()]
        await alarm.ask(Alarm.disarm, "tick")
        await advance(clock, 30 * MIN)
        assert len(await alarm.query(Alarm.get_rings)) == 3
        assert await stored_timers(system.store) == []


async def test_a_recurring_timer_coalesces_ticks_missed_while_down(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    start = clock.now()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "r")
        await alarm.ask(Alarm.arm_every, "tick", 5)
        await advance(clock, 6 * MIN)  # fired at 5
        assert len(await alarm.query(Alarm.get_rings)) == 1

    await advance(clock, 21 * MIN)  # down from 6 to 27 min: ticks 10, 15, 20, 25 missed

    async with system_of(store_factory(), clock) as system:
        await advance(clock, dt.timedelta(0))
        alarm = system.ref(Alarm, "r")
        rings = await alarm.query(Alarm.get_rings)
        assert len(rings) == 2, rings  # the four missed ticks fire once
        assert rings[1] == ("tick", iso(start + 10 * MIN))  # as the first missed tick
        # ... and the timer goes on on its original grid (30, 35), not 27 + 5
        timers = system._kernel.timers
        assert [t.due_at for t in timers.pending("Alarm", "r")] == [(start + 30 * MIN).timestamp()]
        await advance(clock, 3 * MIN)  # 30
        await advance(clock, 5 * MIN)  # 35
        assert [at for _, at in (await alarm.query(Alarm.get_rings))[2:]] == [
            iso(start + 30 * MIN),
            iso(start + 35 * MIN),
        ]
    async with system_of(store_factory(), clock) as system:  # the grid is stored, too
        timers = system._kernel.timers
        assert [t.due_at for t in timers.pending("Alarm", "r")] == [(start + 40 * MIN).timestamp()]


async def test_one_long_advance_fires_every_tick_on_the_grid(store_factory: StoreFactory) -> None:
    # One advance over many ticks wakes the timer service once per tick (the virtual
    # clock fires each due sleep in order), so every tick fires; what must not happen
    # is a burst after the jump or a drift off the grid.
    clock = VirtualClock()
    start = clock.now()
    async with system_of(store_factory(), clock) as system:
        alarm = system.ref(Alarm, "r")
        await alarm.ask(Alarm.arm_every, "tick", 5)
        await advance(clock, dt.timedelta(minutes=27))
        ats = [at for _, at in await alarm.query(Alarm.get_rings)]
        assert ats == [iso(start + m * MIN) for m in range(5, 30, 5)]
        timers = system._kernel.timers
        assert [t.due_at for t in timers.pending("Alarm", "r")] == [(start + 30 * MIN).timestamp()]
