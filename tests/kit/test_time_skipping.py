"""VirtualClock(auto_advance=True) skips time by itself; a stalled ask fails, never hangs.

Every test bounds itself with ``anyio.fail_after`` (wall clock): a regression shows
as a failure, not a hung suite.
"""

from __future__ import annotations

import datetime as dt
import time

import anyio
import attrs
import pytest

from actors import ActorSystem, Entity, RetryPolicy, applies, query, signal
from actors.errors import InvalidArguments
from actors.testing import ClockStalled, VirtualClock
from persistence import MemoryStore, SqliteStore, Store

pytestmark = pytest.mark.anyio

TEN_MINUTES = dt.timedelta(minutes=10)


@attrs.frozen
class Charged:
    attempts: int


@attrs.define
class Gateway:
    """A fake payment gateway: fails ``fails`` times, or waits on ``gate`` if set."""

    fails: int = 0
    gate: anyio.Event | None = None
    started: anyio.Event = attrs.field(factory=anyio.Event)
    calls: list[dt.datetime] = attrs.field(factory=list)
    clock: VirtualClock | None = None

    async def charge(self, amount: int) -> int:
        assert self.clock is not None
        self.calls.append(self.clock.now())
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if len(self.calls) <= self.fails:
            raise ConnectionError("gateway down")
        return len(self.calls)


def make_payment(policy: RetryPolicy) -> type[Entity]:
    @attrs.define
    class Payment(Entity):
        attempts: int = 0

        @signal
        async def pay(self, amount: int) -> int:
            n: int = await self.run(self.resource(Gateway).charge, amount, retry=policy)
            self.emit(Charged(n))
            return n

        @applies
        def _charged(self, e: Charged) -> None:
            self.attempts = e.attempts

        @query
        def paid_after(self) -> int:
            return self.attempts

    return Payment


BACKING_OFF = RetryPolicy(initial_interval=TEN_MINUTES, maximum_attempts=5)


def system_for(
    payment: type[Entity], clock: VirtualClock, gateway: Gateway, store: Store | None = None
) -> ActorSystem:
    gateway.clock = clock
    return ActorSystem(
        store if store is not None else MemoryStore(),
        [payment],
        clock=clock,
        resources={Gateway: gateway},
    )


async def test_an_ask_whose_activity_backs_off_returns_at_once(tmp_path: object) -> None:
    clock = VirtualClock(auto_advance=True)
    start = clock.now()
    gateway = Gateway(fails=2)
    payment = make_payment(BACKING_OFF)
    began = time.monotonic()
    with anyio.fail_after(10):
        async with system_for(payment, clock, gateway, SqliteStore(f"{tmp_path}/p.db")) as system:
            assert await system.ref(payment, "p").ask("pay", 100) == 3
    assert time.monotonic() - began < 5
    # the retries came due in order, on virtual time: 10 minutes, then 20 minutes later
    assert [c - start for c in gateway.calls] == [dt.timedelta(0), TEN_MINUTES, 3 * TEN_MINUTES]
    assert clock.now() - start == 3 * TEN_MINUTES
    assert clock.skips >= 2


async def test_time_does_not_skip_while_no_ask_waits() -> None:
    clock = VirtualClock(auto_advance=True)
    start = clock.now()
    gateway = Gateway(fails=1)
    payment = make_payment(BACKING_OFF)
    with anyio.fail_after(10):
        async with system_for(payment, clock, gateway) as system:
            ref = system.ref(payment, "p")
            await ref.tell("pay", 100)  # accepted; the handler fails once and backs off
            await gateway.started.wait()
            await clock.settle()
            for _ in range(20):  # give a driver every chance to skip (it must not)
                await anyio.sleep(0.005)
            assert clock.now() == start
            assert await ref.query("paid_after") == 0
            assert len(gateway.calls) == 1
            # explicit advance still works on an auto-advancing clock
            await clock.advance(TEN_MINUTES)
            assert await ref.query("paid_after") == 2
            assert clock.now() - start == TEN_MINUTES


async def test_time_does_not_skip_while_an_async_activity_waits_on_the_world() -> None:
    clock = VirtualClock(auto_advance=True)
    start = clock.now()
    gateway = Gateway(gate=anyio.Event())
    payment = make_payment(BACKING_OFF)
    answers: list[int] = []
    with anyio.fail_after(10):
        async with system_for(payment, clock, gateway) as system, anyio.create_task_group() as tg:

            async def ask() -> None:
                answers.append(await system.ref(payment, "p").ask("pay", 100))

            tg.start_soon(ask)
            await gateway.started.wait()
            for _ in range(20):  # the ask waits, the system idles: only the activity holds time
                await anyio.sleep(0.005)
            assert clock.now() == start
            assert gateway.gate is not None
            gateway.gate.set()
    assert answers == [1]
    assert clock.now() == start


async def test_a_stalled_ask_on_a_manual_clock_fails_with_what_to_do() -> None:
    clock = VirtualClock(stall_timeout=0.3)
    gateway = Gateway(fails=1)
    payment = make_payment(BACKING_OFF)
    began = time.monotonic()
    with anyio.fail_after(10):
        async with system_for(payment, clock, gateway) as system:
            with pytest.raises(ClockStalled) as info:
                await system.ref(payment, "p").ask("pay", 100)
    took = time.monotonic() - began
    assert 0.3 <= took < 5
    msg = str(info.value)
    assert "ask Payment.pay to Payment/p" in msg
    assert "0.3s of wall time" in msg
    assert "clock.advance" in msg
    assert "auto_advance=True" in msg


async def test_a_stalled_ask_behind_an_activity_that_never_returns_fails() -> None:
    clock = VirtualClock(auto_advance=True, stall_timeout=0.3)
    gateway = Gateway(gate=anyio.Event())  # never set
    payment = make_payment(BACKING_OFF)
    with anyio.fail_after(10):
        async with system_for(payment, clock, gateway) as system:
            with pytest.raises(ClockStalled, match="async activity is running"):
                await system.ref(payment, "p").ask("pay", 100)


async def test_an_endless_retry_loop_is_reported_not_skipped_forever() -> None:
    clock = VirtualClock(auto_advance=True, stall_timeout=0.3)
    start = clock.now()
    gateway = Gateway(fails=10**9)
    payment = make_payment(RetryPolicy(initial_interval=dt.timedelta(seconds=1), maximum_attempts=10**9))
    with anyio.fail_after(10):
        async with system_for(payment, clock, gateway) as system:
            with pytest.raises(ClockStalled, match="time skipped from"):
                await system.ref(payment, "p").ask("pay", 100)
    assert clock.now() > start
    assert len(gateway.calls) > 3


async def test_an_answer_in_time_is_not_a_stall() -> None:
    clock = VirtualClock(stall_timeout=0.2)
    gateway = Gateway()
    payment = make_payment(BACKING_OFF)
    with anyio.fail_after(10):
        async with system_for(payment, clock, gateway) as system:
            for i in range(30):  # many asks over more than stall_timeout in all
                await system.ref(payment, f"p{i}").ask("pay", 1)
                await anyio.sleep(0.01)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"auto_advance": 1},
        {"stall_timeout": 0},
        {"stall_timeout": -1.0},
        {"stall_timeout": float("nan")},
        {"stall_timeout": "10"},
        {"stall_timeout": True},
    ],
)
def test_bad_clock_options_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArguments):
        VirtualClock(**kwargs)  # type: ignore[arg-type]


def test_the_clock_says_how_it_moves() -> None:
    assert "auto_advance=True" in repr(VirtualClock(auto_advance=True))
    assert "auto_advance" not in repr(VirtualClock())
