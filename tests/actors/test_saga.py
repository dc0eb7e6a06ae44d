"""Workflows inside a handler: sagas, fan-out/fan-in, waiting with a deadline.

``async with self.saga() as saga: saga.compensate(fn, *args)`` registers the undo
of each step; an exception leaving the block runs them in reverse order, each
retried until it succeeds, then propagates. ``await self.gather(*steps, limit=n)``
runs journaled steps concurrently. A timer with a key is a deadline a later
signal cancels. Everything runs on a ``VirtualClock``.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
import pytest

from actors import (
    ActivityFailed,
    ActorSystem,
    Entity,
    HandlerFailed,
    InvalidArguments,
    Rejected,
    RetryPolicy,
    applies,
    query,
    signal,
)
from actors._saga import COMPENSATION_RETRY
from actors.testing import VirtualClock
from persistence import MemoryStore, Store
from tests.actors import _saga_worker as bank
from tests.actors.support import Outcome, StoreFactory, event_count
from tests.models import Account, InsufficientFunds

pytestmark = pytest.mark.anyio

SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(hours=24)


# ---------------------------------------------------------------- entities


@attrs.frozen
class Booked:
    step: str


@attrs.frozen
class Noted:
    text: str


@attrs.frozen
class Requested:
    at: str


@attrs.frozen
class Decided:
    state: str
    at: str


class NoRoom(Rejected):
    """The trip's refusal."""


@attrs.define
class Probe:
    clock: VirtualClock
    log: list[str] = attrs.field(factory=list)
    """Activity calls, in order."""
    undo_failures: dict[str, int] = attrs.field(factory=dict)
    """How many more times ``cancel(step)`` fails."""
    undo_attempts: list[dt.datetime] = attrs.field(factory=list)
    crashes_left: int = 0
    running: int = 0
    most_running: int = 0
    finished: list[int] = attrs.field(factory=list)
    finished_at_raise: list[int] | None = None
    gate: anyio.Event = attrs.field(factory=anyio.Event)
    reached: anyio.Event = attrs.field(factory=anyio.Event)
    weird: Any = None
    """What the bad-argument handlers pass to gather."""
    escalations: int = 0
    desk_crashes: int = 0
    """How many more times ``Desk.undo`` crashes."""


def make_entities(probe: Probe) -> list[type[Entity]]:
    """Fresh entity classes (and their activities) reporting to ``probe``."""

    async def reserve(step: str) -> str:
        probe.log.append(f"reserve {step}")
        return step

    async def cancel(step: str) -> None:
        probe.log.append(f"cancel {step}")
        if step == "flight":
            probe.undo_attempts.append(probe.clock.now())
        left = probe.undo_failures.get(step, 0)
        if left:
            probe.undo_failures[step] = left - 1
            raise ConnectionError(f"cannot reach the {step} desk")

    async def slow(i: int, secs: int) -> int:
        probe.log.append(f"slow {i}")
        probe.running += 1
        probe.most_running = max(probe.most_running, probe.running)
        try:
            await probe.clock.sleep(secs)
        finally:
            probe.running -= 1
        probe.finished.append(i)
        return i * 10

    async def failing(secs: int) -> int:
        probe.log.append("failing")
        await probe.clock.sleep(secs)
        raise ValueError("this branch fails")

    async def held(i: int) -> int:
        probe.log.append(f"held {i}")
        probe.reached.set()
        await probe.gate.wait()
        return i

    once = RetryPolicy(maximum_attempts=1)

    @attrs.define
    class Trip(Entity):
        booked: tuple[str, ...] = ()

        @signal
        async def book(self, steps: tuple[str, ...], fail_at: str, how: str) -> tuple[str, ...]:
            async with self.saga() as saga:
                for step in steps:
                    saga.compensate(cancel, step)
                    await self.run(reserve, step)
                    self.emit(Booked(step))
                    if step == fail_at:
                        if how == "reject":
                            raise NoRoom(f"no room at the {step}")
                        raise RuntimeError(f"crash at the {step}")
            return self.booked

        @query
        def get_booked(self) -> tuple[str, ...]:
            return self.booked

        @applies
        def _booked(self, e: Booked) -> None:
            self.booked = (*self.booked, e.step)

    @attrs.define
    class Desk(Entity):
        """Undoes reservations when asked; crashes while ``probe.desk_crashes`` says so."""

        undone: tuple[str, ...] = ()

        @signal
        def undo(self, step: str) -> None:
            probe.log.append(f"desk undo {step}")
            if probe.desk_crashes:
                probe.desk_crashes -= 1
                raise ConnectionError("the desk's database is down")
            self.emit(Booked(step))

        @query
        def get_undone(self) -> tuple[str, ...]:
            return self.undone

        @applies
        def _booked(self, e: Booked) -> None:
            self.undone = (*self.undone, e.step)

    @attrs.define
    class Tour(Entity):
        @signal
        async def book(self, steps: tuple[str, ...]) -> None:
            """Every step's undo is an ask to the desk; the last step is refused."""
            async with self.saga() as saga:
                for step in steps:
                    saga.compensate(self.ref(Desk, "d").ask, Desk.undo, step)
                    await self.run(reserve, step)
                raise NoRoom(f"no room at the {steps[-1]}")

    @attrs.define
    class Fan(Entity):
        results: tuple[str, ...] = ()

        @signal
        async def ordered(self, n: int) -> list[int]:
            """Branch i takes n - i seconds: they finish in reverse order."""
            return await self.gather(*(self.run(slow, i, n - i) for i in range(n)))

        @signal
        async def limited(self, n: int, limit: int | None) -> list[int]:
            return await self.gather(*(self.run(slow, i, 1) for i in range(n)), limit=limit)

        @signal
        async def mixed(self, return_exceptions: bool) -> list[str]:
            steps = [
                self.run(slow, 0, 5),  # ok, finishes last
                self.run(failing, 3, retry=once),  # fails at 3 s
                self.ref(Account, "poor").ask(Account.withdraw, 100),  # refused at once
                self.run(slow, 3, 1),  # ok
            ]
            try:
                results = await self.gather(*steps, return_exceptions=return_exceptions)
            except Exception as e:
                probe.finished_at_raise = sorted(probe.finished)
                return [f"raised {type(e).__name__}"]
            return [type(r).__name__ if isinstance(r, Exception) else str(r) for r in results]

        @signal
        async def mixed_asks(self) -> list[int]:
            results = await self.gather(
                self.ref(Account, "a").ask(Account.withdraw, 30),
                self.run(slow, 1, 2),
                self.ref(Account, "b").ask(Account.withdraw, 5),
                self.run(slow, 2, 1),
            )
            self.emit(Noted(str(results)))
            if probe.crashes_left:
                probe.crashes_left -= 1
                raise RuntimeError("crash after the gather")
            return results

        @signal
        async def with_a_held_branch(self) -> list[int]:
            results = await self.gather(
                self.run(slow, 0, 1),
                self.ref(Account, "a").ask(Account.withdraw, 30),
                self.run(held, 2),
            )
            self.emit(Noted(str(results)))
            return results

        @signal
        async def bad_limit(self) -> str:
            step = self.run(slow, 0, 1)
            try:
                await self.gather(step, limit=probe.weird)
            except InvalidArguments as e:
                closed = inspect.getcoroutinestate(step) == inspect.CORO_CLOSED  # type: ignore[arg-type]
                return f"InvalidArguments: {e} (step closed: {closed})"
            return "accepted"

        @signal
        async def bad_step(self) -> str:
            step = self.run(slow, 0, 1)
            try:
                await self.gather(step, probe.weird)
            except InvalidArguments as e:
                closed = inspect.getcoroutinestate(step) == inspect.CORO_CLOSED  # type: ignore[arg-type]
                return f"InvalidArguments: {e} (step closed: {closed})"
            return "accepted"

        @query
        def get_results(self) -> tuple[str, ...]:
            return self.results

        @applies
        def _noted(self, e: Noted) -> None:
            self.results = (*self.results, e.text)

    @attrs.define
    class Approval(Entity):
        """Human in the loop: escalate when nobody approves within 24 hours."""

        state: str = "new"
        requested_at: str = ""
        decided_at: str = ""

        @signal
        def request(self) -> None:
            self.emit(Requested(self.now().isoformat()))
            self.schedule(Approval.escalate, after=DAY, key="deadline")

        @signal
        def approve(self) -> None:
            if self.state != "pending":
                raise Rejected(f"cannot approve: the request is {self.state}")
            self.cancel("deadline")
            self.emit(Decided("approved", self.now().isoformat()))

        @signal
        def escalate(self) -> None:
            probe.escalations += 1
            self.emit(Decided("escalated", self.now().isoformat()))

        @query
        def get(self) -> tuple[str, str, str]:
            return (self.state, self.requested_at, self.decided_at)

        @applies
        def _requested(self, e: Requested) -> None:
            self.state = "pending"
            self.requested_at = e.at

        @applies
        def _decided(self, e: Decided) -> None:
            self.state = e.state
            self.decided_at = e.at

    return [Trip, Desk, Tour, Fan, Approval, Account, bank.Account, bank.Transfer]


# ---------------------------------------------------------------- helpers


def system_of(store: Store, probe: Probe) -> ActorSystem:
    return ActorSystem(store, make_entities(probe), clock=probe.clock)


async def drive(
    clock: VirtualClock, call: Callable[[], Awaitable[Any]], *, step: dt.timedelta = SECOND, most: int = 200
) -> Outcome:
    """Run ``call`` in the background, advancing the virtual clock until it is done."""
    out = Outcome()
    async with anyio.create_task_group() as tg:
        tg.start_soon(out.capture, call)
        for _ in range(most):
            await clock.advance(step)
            if out.done.is_set():
                break
        else:
            tg.cancel_scope.cancel()
            pytest.fail(f"the call did not finish within {most} steps of {step}")
    return out


# ---------------------------------------------------------------- sagas


async def test_a_successful_saga_runs_no_compensation(store_factory: StoreFactory) -> None:
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        trip = system.ref("Trip", "t")
        assert await trip.ask("book", ("flight", "hotel", "car"), "", "") == ("flight", "hotel", "car")
        assert probe.log == ["reserve flight", "reserve hotel", "reserve car"]


async def test_a_failing_saga_compensates_in_reverse_order_then_raises(store_factory: StoreFactory) -> None:
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        trip = system.ref("Trip", "t")
        with pytest.raises(NoRoom, match="no room at the car"):
            await trip.ask("book", ("flight", "hotel", "car", "show"), "car", "reject")
        assert probe.log == [
            "reserve flight",
            "reserve hotel",
            "reserve car",
            "cancel car",
            "cancel hotel",
            "cancel flight",
        ]
        assert await trip.query("get_booked") == ()  # the refused handler left no trace
        assert await event_count(system, "Trip", "t") == 0


async def test_a_compensation_is_retried_until_it_succeeds(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    probe = Probe(clock, undo_failures={"flight": 2})
    async with system_of(store_factory(), probe) as system:
        t0 = clock.now()
        out = await drive(
            clock, lambda: system.ref("Trip", "t").ask("book", ("flight", "hotel"), "hotel", "reject")
        )
        assert isinstance(out.error, NoRoom)  # propagated once every undo succeeded
        assert probe.log == [
            "reserve flight",
            "reserve hotel",
            "cancel hotel",
            "cancel flight",
            "cancel flight",
            "cancel flight",
        ]
        # the compensation retry policy's backoff: 1 s, then 2 s
        first = COMPENSATION_RETRY.initial_interval
        assert probe.undo_attempts == [t0, t0 + first, t0 + first + 2 * first]


@pytest.mark.parametrize("attempt", [48, 60, 1100, COMPENSATION_RETRY.maximum_attempts - 1])
def test_the_compensation_backoff_stays_at_its_maximum_however_long_it_retries(attempt: int) -> None:
    """Retried until it succeeds: hours of failures must not overflow the doubling backoff."""
    assert COMPENSATION_RETRY.delay(attempt) == COMPENSATION_RETRY.maximum_interval


async def test_a_compensation_outlasts_a_steep_backoff(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same end to end, with a backoff that would overflow after three attempts."""
    steep = attrs.evolve(COMPENSATION_RETRY, backoff_coefficient=1e6)
    monkeypatch.setattr("actors._saga.COMPENSATION_RETRY", steep)
    clock = VirtualClock()
    probe = Probe(clock, undo_failures={"flight": 5})
    async with system_of(store_factory(), probe) as system:
        out = await drive(
            clock,
            lambda: system.ref("Trip", "t").ask("book", ("flight",), "flight", "reject"),
            step=steep.maximum_interval,
            most=20,
        )
        assert isinstance(out.error, NoRoom)
        assert len(probe.undo_attempts) == 6
        gaps = [b - a for a, b in zip(probe.undo_attempts, probe.undo_attempts[1:], strict=False)]
        assert gaps[0] == steep.initial_interval
        assert gaps[2:] == [steep.maximum_interval] * 3
        assert await system.dead_letters() == []


async def test_an_ask_compensation_is_replayed_not_repeated(store_factory: StoreFactory) -> None:
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        with pytest.raises(NoRoom):
            await system.ref("Tour", "t").ask("book", ("flight", "hotel"))
        assert await system.ref("Desk", "d").query("get_undone") == ("hotel", "flight")


async def test_an_ask_compensation_is_retried_until_it_succeeds(store_factory: StoreFactory) -> None:
    probe = Probe(VirtualClock(), desk_crashes=4)  # more than the desk's 3 attempts per signal
    async with system_of(store_factory(), probe) as system:
        out = await drive(
            probe.clock, lambda: system.ref("Tour", "t").ask("book", ("flight", "hotel")), most=60
        )
        assert isinstance(out.error, NoRoom)
        assert await system.ref("Desk", "d").query("get_undone") == ("hotel", "flight")


async def test_a_crashing_saga_compensates_once_although_it_is_retried(store_factory: StoreFactory) -> None:
    """The supervisor re-runs the crashed handler: its steps and undos replay from the journal."""
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        out = await drive(
            probe.clock, lambda: system.ref("Trip", "t").ask("book", ("flight", "hotel"), "hotel", "crash")
        )
        assert isinstance(out.error, HandlerFailed)
        assert "crash at the hotel" in str(out.error)
        assert probe.log == ["reserve flight", "reserve hotel", "cancel hotel", "cancel flight"]
        [dead] = await system.dead_letters()
        assert dead.attempts == system.supervision.max_attempts


async def test_a_compensation_can_be_an_ask_to_another_entity(store_factory: StoreFactory) -> None:
    """The transfer registers ``self.ref(src).ask`` with ``Account.refund`` as the debit's undo."""
    probe = Probe(VirtualClock())
    bank.marks.clear()
    async with system_of(store_factory(), probe) as system:
        for name, amount in (("alice", 100), ("bob", 0), ("shut", 0)):
            await system.ref(bank.Account, name).ask(bank.Account.open, amount)
        await system.ref(bank.Account, "shut").ask(bank.Account.close)

        assert (
            await system.ref(bank.Transfer, "t1").ask(bank.Transfer.start, "alice", "shut", 30)
            == "compensated"
        )
        assert bank.marks == ["step-1", "step-2", "comp-1", "comp-2"]
        assert await bank.ledger(system.store, "alice") == [("Debited", "t1"), ("Refunded", "t1")]
        assert await bank.ledger(system.store, "shut") == []
        assert await system.ref(bank.Account, "alice").query(bank.Account.get_balance) == 100

        bank.marks.clear()
        assert (
            await system.ref(bank.Transfer, "t2").ask(bank.Transfer.start, "alice", "bob", 30) == "completed"
        )
        assert bank.marks == ["step-1", "step-2", "step-3"]  # success: no compensation ran
        assert await bank.ledger(system.store, "alice") == [
            ("Debited", "t1"),
            ("Refunded", "t1"),
            ("Debited", "t2"),
        ]
        assert await bank.ledger(system.store, "bob") == [("Credited", "t2")]
        balances = [
            await system.ref(bank.Account, n).query(bank.Account.get_balance)
            for n in ("alice", "bob", "shut")
        ]
        assert balances == [70, 30, 0]


async def test_an_undo_registered_before_a_refused_step_undoes_nothing(store_factory: StoreFactory) -> None:
    """The debit itself is refused: its registered refund runs and finds nothing to undo."""
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        await system.ref(bank.Account, "alice").ask(bank.Account.open, 10)
        await system.ref(bank.Account, "bob").ask(bank.Account.open, 0)
        assert (
            await system.ref(bank.Transfer, "t1").ask(bank.Transfer.start, "alice", "bob", 30)
            == "compensated"
        )
        assert await bank.ledger(system.store, "alice") == []
        assert await system.ref(bank.Account, "alice").query(bank.Account.get_balance) == 10


# ---------------------------------------------------------------- gather


async def test_gather_returns_results_in_argument_order() -> None:
    probe = Probe(VirtualClock())
    async with system_of(MemoryStore(), probe) as system:
        out = await drive(probe.clock, lambda: system.ref("Fan", "f").ask("ordered", 5))
        assert out.error is None
        assert out.value == [0, 10, 20, 30, 40]
        assert probe.finished == [4, 3, 2, 1, 0]  # they finished the other way round
        assert probe.most_running == 5


@pytest.mark.parametrize(("limit", "most"), [(1, 1), (2, 2), (None, 5)])
async def test_gather_runs_at_most_limit_steps_at_once(limit: int | None, most: int) -> None:
    probe = Probe(VirtualClock())
    async with system_of(MemoryStore(), probe) as system:
        t0 = probe.clock.now()
        out = await drive(probe.clock, lambda: system.ref("Fan", "f").ask("limited", 5, limit))
        assert out.error is None
        assert out.value == [0, 10, 20, 30, 40]
        assert probe.most_running == most
        assert sorted(probe.log) == [f"slow {i}" for i in range(5)]
        # each step takes 1 s: the limit shows in the elapsed time too
        assert probe.clock.now() - t0 >= dt.timedelta(seconds=-(-5 // most))


async def test_gather_lets_every_branch_finish_then_raises_the_first_failure_in_argument_order(
    store_factory: StoreFactory,
) -> None:
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        out = await drive(probe.clock, lambda: system.ref("Fan", "f").ask("mixed", False))
        assert out.error is None
        # branch 2 (refused at 0 s) failed before branch 1 (at 3 s): argument order wins
        assert out.value == [f"raised {ActivityFailed.__name__}"]
        assert probe.finished_at_raise == [0, 3]  # branch 0 (5 s) finished before the raise


async def test_gather_can_return_the_failures_in_place(store_factory: StoreFactory) -> None:
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        out = await drive(probe.clock, lambda: system.ref("Fan", "f").ask("mixed", True))
        assert out.error is None
        assert out.value == ["0", ActivityFailed.__name__, InsufficientFunds.__name__, "30"]


async def test_a_rerun_replays_finished_branches_from_the_journal(store_factory: StoreFactory) -> None:
    probe = Probe(VirtualClock(), crashes_left=1)
    async with system_of(store_factory(), probe) as system:
        await system.ref(Account, "a").ask(Account.deposit, 100)
        await system.ref(Account, "b").ask(Account.deposit, 10)
        out = await drive(probe.clock, lambda: system.ref("Fan", "f").ask("mixed_asks"))
        assert out.error is None
        assert out.value == [70, 10, 5, 20]
        assert probe.crashes_left == 0  # it did crash once and run again
        assert sorted(probe.log) == ["slow 1", "slow 2"]  # the activities ran once
        assert await event_count(system, "Account", "a") == 2  # deposit + one withdrawal
        assert await event_count(system, "Account", "b") == 2
        assert await system.ref(Account, "a").query(Account.get_balance) == 70
        assert await system.ref("Fan", "f").query("get_results") == ("[70, 10, 5, 20]",)


async def test_a_restart_in_the_middle_of_a_gather_replays_the_finished_branches(
    store_factory: StoreFactory,
) -> None:
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        await system.ref(Account, "a").ask(Account.deposit, 100)
        await system.ref("Fan", "f").tell("with_a_held_branch")
        with anyio.fail_after(5):
            await probe.reached.wait()
        await probe.clock.advance(SECOND)  # the slow branch finishes; the held one waits
        assert probe.finished == [0]
        # leaving the block stops the system with the gather unfinished
    probe.gate.set()
    async with system_of(store_factory(), probe) as system:
        await probe.clock.settle()
        assert await system.ref("Fan", "f").query("get_results") == ("[0, 70, 2]",)
        assert probe.log.count("slow 0") == 1  # replayed
        assert probe.log.count("held 2") == 2  # unfinished: ran again
        assert await event_count(system, "Account", "a") == 2
        assert await system.ref(Account, "a").query(Account.get_balance) == 70


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "2"])
async def test_gather_refuses_a_bad_limit(store_factory: StoreFactory, limit: object) -> None:
    probe = Probe(VirtualClock(), weird=limit)
    async with system_of(store_factory(), probe) as system:
        answer = await system.ref("Fan", "f").ask("bad_limit")
        assert answer.startswith("InvalidArguments: limit must be")
        assert answer.endswith("(step closed: True)")  # the steps it will never run are closed
        assert probe.log == []


async def _a_plain_coroutine_function() -> int:
    return 1


@pytest.mark.parametrize(
    "weird",
    [5, None, _a_plain_coroutine_function, "self.run(...)", (1, 2)],
    ids=["int", "none", "function", "str", "tuple"],
)
async def test_gather_refuses_what_is_not_an_unawaited_step(
    store_factory: StoreFactory, weird: object
) -> None:
    probe = Probe(VirtualClock(), weird=weird)
    async with system_of(store_factory(), probe) as system:
        answer = await system.ref("Fan", "f").ask("bad_step")
        assert answer.startswith("InvalidArguments: gather() takes un-awaited steps")
        assert answer.endswith("(step closed: True)")
        assert probe.log == []


# ---------------------------------------------------------------- waiting with a deadline


async def test_an_approval_before_the_deadline_is_never_escalated(store_factory: StoreFactory) -> None:
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        approval = system.ref("Approval", "a")
        t0 = probe.clock.now()
        await approval.ask("request")
        assert await approval.query("get") == ("pending", t0.isoformat(), "")
        assert [t.key for t in await system.store.read_timers(limit=10)] == ["deadline"]

        await probe.clock.advance(23 * HOUR)
        await approval.ask("approve")
        assert await approval.query("get") == ("approved", t0.isoformat(), (t0 + 23 * HOUR).isoformat())
        assert await system.store.read_timers(limit=10) == []

        await probe.clock.advance(7 * DAY)
        assert probe.escalations == 0
        assert (await approval.query("get"))[0] == "approved"


async def test_without_approval_the_request_escalates_at_exactly_24_hours(
    store_factory: StoreFactory,
) -> None:
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        approval = system.ref("Approval", "a")
        t0 = probe.clock.now()
        await approval.ask("request")

        await probe.clock.advance(DAY - dt.timedelta(milliseconds=1))
        assert probe.escalations == 0
        assert (await approval.query("get"))[0] == "pending"

        await probe.clock.advance(dt.timedelta(milliseconds=1))
        assert probe.escalations == 1
        assert await approval.query("get") == ("escalated", t0.isoformat(), (t0 + DAY).isoformat())
        with pytest.raises(Rejected, match="escalated"):
            await approval.ask("approve")

        await probe.clock.advance(7 * DAY)
        assert probe.escalations == 1


async def test_a_deadline_survives_a_restart(store_factory: StoreFactory) -> None:
    probe = Probe(VirtualClock())
    async with system_of(store_factory(), probe) as system:
        t0 = probe.clock.now()
        await system.ref("Approval", "a").ask("request")
        await probe.clock.advance(10 * HOUR)
    async with system_of(store_factory(), probe) as system:
        await probe.clock.advance(13 * HOUR)
        assert probe.escalations == 0
        await probe.clock.advance(HOUR)
        assert probe.escalations == 1
        assert await system.ref("Approval", "a").query("get") == (
            "escalated",
            t0.isoformat(),
            (t0 + DAY).isoformat(),
        )
