"""Entity workflows (issue 12, DESIGN section 6): the contract, through the public API.

Waits and sleeps park an invocation without blocking its entity; handles await and
cancel invocations; ``patched`` versions code under in-flight work; the replay check
gates a deploy; ``Rejected(commit=True)`` keeps effects; retries can be unlimited;
activities see the system's clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

import actors
from actors import (
    ActivityContext,
    ActorSystem,
    Entity,
    Rejected,
    RetryPolicy,
    applies,
    query,
    signal,
)
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore, Store
from persistence.store import Commit
from persistence.testing import until

pytestmark = [pytest.mark.anyio]

HOUR = dt.timedelta(hours=1)


@attrs.frozen
class Requested:
    amount: int


@attrs.frozen
class Decided:
    verdict: str
    by: str


@attrs.frozen
class Escalated:
    pass


@attrs.frozen
class Noted:
    text: str


@attrs.define
class Approval(Entity):
    amount: int = 0
    decision: str | None = None
    by: str = ""
    escalated: bool = False
    notes: tuple[str, ...] = ()
    branches: ClassVar[list[str]] = []

    @signal
    async def request(self, amount: int) -> str:
        self.emit(Requested(amount))
        # a pre-wait branch on a field another signal may change while this is parked
        Approval.branches.append("big" if self.amount > 100 else "small")
        approved = await self.wait_until(lambda: self.decision is not None, timeout=dt.timedelta(hours=48))
        if not approved:
            self.emit(Escalated())
            return "escalated"
        return f"{self.decision} by {self.by}"

    @signal
    def approve(self, by: str) -> None:
        self.emit(Decided("approved", by))

    @signal
    def note(self, text: str) -> None:
        self.emit(Noted(text))

    @signal
    async def nap(self, hours: int) -> str:
        await self.sleep(dt.timedelta(hours=hours))
        self.emit(Noted(f"woke after {hours}h"))
        return "rested"

    @query
    def status(self) -> tuple[int, str | None, bool, tuple[str, ...]]:
        return self.amount, self.decision, self.escalated, self.notes

    @applies
    def _requested(self, e: Requested) -> None:
        self.amount = e.amount

    @applies
    def _decided(self, e: Decided) -> None:
        self.decision = e.verdict
        self.by = e.by

    @applies
    def _escalated(self, e: Escalated) -> None:
        self.escalated = True

    @applies
    def _noted(self, e: Noted) -> None:
        self.notes = (*self.notes, e.text)


@pytest.fixture(autouse=True)
def _reset() -> None:
    Approval.branches.clear()


def _system(store: Store, clock: VirtualClock, *entities: type[Entity]) -> ActorSystem:
    return ActorSystem(store, list(entities) or [Approval], clock=clock)


async def test_a_parked_wait_does_not_block_its_entity() -> None:
    clock = VirtualClock()
    async with _system(MemoryStore(), clock) as system:
        ref = system.ref(Approval, "a")
        handle = await ref.start(Approval.request, 500)
        await clock.advance(dt.timedelta(0))
        await ref.tell(Approval.note, "while parked")  # runs while request waits
        await system.wait_idle()  # a tell returns once accepted: wait until it ran
        assert (await ref.query(Approval.status))[3] == ("while parked",)
        await ref.ask(Approval.approve, "ann")
        assert await handle.result(timeout=5) == "approved by ann"


async def test_a_wait_with_a_deadline_returns_false_when_it_passes() -> None:
    clock = VirtualClock()
    async with _system(MemoryStore(), clock) as system:
        ref = system.ref(Approval, "a")
        handle = await ref.start(Approval.request, 50)
        await clock.advance(dt.timedelta(hours=47))
        assert not (await ref.query(Approval.status))[2]
        await clock.advance(dt.timedelta(hours=2))
        assert await handle.result(timeout=5) == "escalated"
        assert (await ref.query(Approval.status))[2]


async def test_a_durable_sleep_survives_a_restart(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with _system(SqliteStore(tmp_path / "db"), clock) as system:
        handle = await system.ref(Approval, "a").start(Approval.nap, 24)
        await clock.advance(HOUR)
        hid = handle.id
    async with _system(SqliteStore(tmp_path / "db"), clock) as system:
        await clock.advance(dt.timedelta(hours=24))
        assert await system.handle(hid).result(timeout=5) == "rested"
        assert (await system.ref(Approval, "a").query(Approval.status))[3] == ("woke after 24h",)


async def test_a_rerun_takes_the_pre_wait_branch_it_took_the_first_time(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with _system(SqliteStore(tmp_path / "db"), clock) as system:
        ref = system.ref(Approval, "a")
        handle = await ref.start(Approval.request, 50)  # small: amount becomes 50 before the wait
        await clock.advance(dt.timedelta(0))
        hid = handle.id
    async with _system(SqliteStore(tmp_path / "db"), clock) as system:
        ref = system.ref(Approval, "a")
        await ref.ask(Approval.approve, "bob")
        assert await system.handle(hid).result(timeout=5) == "approved by bob"
    assert set(Approval.branches) == {"small"}


@attrs.frozen
class Counted:
    n: int


@attrs.define
class Child(Entity):
    n: int = 0

    @signal
    async def work(self, n: int) -> int:
        await self.sleep(dt.timedelta(minutes=n))
        self.emit(Counted(n))
        return n * n

    @applies
    def _counted(self, e: Counted) -> None:
        self.n = e.n


@attrs.define
class Parent(Entity):
    pings: int = 0

    @signal
    async def fan_out(self, count: int) -> int:
        handles = [await self.ref(Child, f"c{i}").start(Child.work, i) for i in range(count)]
        total = 0
        for h in handles:
            total += await h.result()
        return total

    @signal
    def ping(self) -> None:
        self.emit(Counted(self.pings + 1))

    @query
    def get_pings(self) -> int:
        return self.pings

    @applies
    def _counted(self, e: Counted) -> None:
        self.pings = e.n


async def test_a_parent_awaits_children_while_it_keeps_serving() -> None:
    clock = VirtualClock()
    async with _system(MemoryStore(), clock, Parent, Child) as system:
        parent = system.ref(Parent, "p")
        handle = await parent.start(Parent.fan_out, 5)
        await clock.advance(dt.timedelta(0))
        await parent.ask(Parent.ping)
        assert await parent.query(Parent.get_pings) == 1
        await clock.advance(dt.timedelta(minutes=10))
        assert await handle.result(timeout=5) == sum(i * i for i in range(5))


_UNDONE: list[str] = []


async def _reserve(item: str) -> None:
    pass


async def _release(item: str) -> None:
    _UNDONE.append(item)


@attrs.define
class Order(Entity):
    @signal
    async def checkout(self) -> str:
        async with self.saga() as saga:
            saga.compensate(_release, "a")
            await self.run(_reserve, "a")
            saga.compensate(_release, "b")
            await self.run(_reserve, "b")
            await self.sleep(dt.timedelta(days=1))  # waiting for payment
        return "paid"


async def test_cancel_is_durable_and_compensates_in_reverse(tmp_path: Path) -> None:
    _UNDONE.clear()
    clock = VirtualClock()
    async with _system(SqliteStore(tmp_path / "db"), clock, Order) as system:
        handle = await system.ref(Order, "o").start(Order.checkout)
        await clock.advance(HOUR)
        await handle.cancel("customer gave up")
        hid = handle.id
    async with _system(SqliteStore(tmp_path / "db"), clock, Order) as system:
        await clock.advance(HOUR)
        with pytest.raises(actors.Cancelled):
            await system.handle(hid).result(timeout=5)
    assert _UNDONE == ["b", "a"]


@attrs.define
class Versioned(Entity):
    steps: ClassVar[list[str]] = []

    @signal
    async def go(self) -> None:
        if self.patched("new-step"):
            Versioned.steps.append("new")
        else:
            Versioned.steps.append("old")
        await self.sleep(HOUR)


async def test_patched_is_true_for_new_invocations() -> None:
    Versioned.steps.clear()
    clock = VirtualClock()
    async with _system(MemoryStore(), clock, Versioned) as system:
        h = await system.ref(Versioned, "v").start(Versioned.go)
        await clock.advance(dt.timedelta(hours=2))
        await h.result(timeout=5)
    assert Versioned.steps == ["new"]


@attrs.define
class Keeper(Entity):
    notes: tuple[str, ...] = ()

    @signal
    def note_then_refuse(self, text: str) -> None:
        self.emit(Noted(text))
        raise Rejected("refused, but the note stays", commit=True)

    @query
    def get_notes(self) -> tuple[str, ...]:
        return self.notes

    @applies
    def _noted(self, e: Noted) -> None:
        self.notes = (*self.notes, e.text)


async def test_rejected_with_commit_keeps_the_effects() -> None:
    async with ActorSystem(MemoryStore(), [Keeper]) as system:
        ref = system.ref(Keeper, "k")
        with pytest.raises(Rejected):
            await ref.ask(Keeper.note_then_refuse, "kept")
        assert await ref.query(Keeper.get_notes) == ("kept",)


_TRIES: list[int] = []


def _flaky_forever() -> str:
    _TRIES.append(1)
    if len(_TRIES) < 12:
        raise RuntimeError("not yet")
    return "finally"


async def _clocked(ctx: ActivityContext) -> str:
    await ctx.clock.sleep(3600)
    return ctx.clock.now().isoformat()


@attrs.define
class Patient(Entity):
    @signal
    async def persist(self) -> str:
        policy = RetryPolicy(initial_interval=dt.timedelta(seconds=1), maximum_attempts=None)
        return await self.run(_flaky_forever, retry=policy)

    @signal
    async def clocked(self) -> str:
        return await self.run(_clocked)


async def test_unlimited_retries_and_the_activity_clock() -> None:
    _TRIES.clear()
    clock = VirtualClock(auto_advance=True)
    async with ActorSystem(MemoryStore(), [Patient], clock=clock) as system:
        ref = system.ref(Patient, "p")
        assert await ref.ask(Patient.persist) == "finally"
        assert len(_TRIES) == 12
        start = clock.now()
        assert await ref.ask(Patient.clocked) == (start + HOUR).isoformat()


async def test_the_replay_check_reports_nothing_for_compatible_code(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with _system(SqliteStore(tmp_path / "db"), clock) as system:
        await system.ref(Approval, "a").start(Approval.request, 5)
        await clock.advance(HOUR)
    report = await actors.testing.replay(tmp_path / "db", entities=[Approval])
    assert report.problems == []
    assert report.entities >= 1
    assert report.invocations >= 1


def test_the_module_is_wired() -> None:
    assert hasattr(actors, "Cancelled")
    assert hasattr(actors, "InvocationHandle")


async def test_a_rerun_keeps_its_pre_wait_branch_when_a_parked_signal_changed_the_field(
    tmp_path: Path,
) -> None:
    # first run: amount is 50 before the wait (small); while parked another request's
    # Requested(500) is committed, so the live state says "big"; a restart re-runs the
    # first invocation: its first segment must still see 50 and take "small" again
    clock = VirtualClock()
    async with _system(SqliteStore(tmp_path / "db"), clock) as system:
        ref = system.ref(Approval, "a")
        first = await ref.start(Approval.request, 50)
        await clock.advance(dt.timedelta(0))
        await ref.start(Approval.request, 500)
        await clock.advance(dt.timedelta(0))
        assert (await ref.query(Approval.status))[0] == 500
        hid = first.id
    assert Approval.branches == ["small", "big"]
    Approval.branches.clear()
    async with _system(SqliteStore(tmp_path / "db"), clock) as system:
        ref = system.ref(Approval, "a")
        await clock.advance(dt.timedelta(0))
        await ref.ask(Approval.approve, "cy")
        assert await system.handle(hid).result(timeout=5) == "approved by cy"
        assert (await ref.query(Approval.status))[0] == 500  # nothing applied twice
    assert sorted(Approval.branches) == ["big", "small"]


@attrs.define
class ApprovalV2(Entity):
    entity_name = "Approval"
    amount: int = 0
    decision: str | None = None

    @signal
    async def request(self, amount: int) -> str:
        self.emit(Noted("changed"))  # another event than the journaled segment emitted
        await self.wait_until(lambda: self.decision is not None)
        return "x"

    @applies
    def _requested(self, e: Requested) -> None:
        self.amount = e.amount

    @applies
    def _noted(self, e: Noted) -> None:
        pass

    @applies
    def _decided(self, e: Decided) -> None:
        self.decision = e.verdict

    @applies
    def _escalated(self, e: Escalated) -> None:
        pass


async def test_the_replay_check_names_an_incompatible_change(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with _system(SqliteStore(tmp_path / "db"), clock) as system:
        await system.ref(Approval, "a").start(Approval.request, 5)
        await clock.advance(HOUR)
    report = await actors.testing.replay(tmp_path / "db", entities=[ApprovalV2])
    assert report.invocations == 1
    assert len(report.problems) == 1
    p = report.problems[0]
    assert (p.entity_type, p.entity_id) == ("Approval", "a")
    assert p.invocation is not None
    assert p.invocation.startswith("s:")
    assert "Noted" in p.what or "Requested" in p.what


@attrs.define
class Window(Entity):
    """Waits for a decision until a short deadline of real time."""

    decision: str | None = None

    @signal
    async def request(self, millis: int) -> str:
        decided = await self.wait_until(
            lambda: self.decision is not None, timeout=dt.timedelta(milliseconds=millis)
        )
        return f"decided {self.decision}" if decided else f"timed out (decision {self.decision})"

    @signal
    def decide(self, verdict: str) -> None:
        self.emit(Decided(verdict, "ann"))

    @applies
    def _decided(self, e: Decided) -> None:
        self.decision = e.verdict


async def test_a_condition_committed_before_a_deadline_wake_up_resumes_wins() -> None:
    """The deadline wakes a parked wait while a signal that makes its condition true is
    being committed; the signal's commit lands before the wait resumes. The handler
    resumed with "timed out" while its own condition held (found by the cluster fault
    run: a gate closed "timed out" after its approval in the log). The condition wins
    now: ``wait_until`` returns True whenever it resumes with its predicate holding."""
    store = MemoryStore()
    held, let_go = asyncio.Event(), asyncio.Event()
    real_write = store.write

    async def write(batch: Any) -> Any:
        if any(isinstance(w, Commit) and w.signal.handler == "decide" for w in batch):
            held.set()
            await let_go.wait()
        return await real_write(batch)

    store.write = write  # type: ignore[method-assign]
    async with ActorSystem(store, [Window]) as system:
        ref = system.ref(Window, "w")
        handle = await ref.start(Window.request, 300)
        actor = system._directory.actors[("Window", "w")]

        async def parked() -> bool:
            return any(r.parked and not r.holding for r in actor.runs)

        await until(parked, "the wait parks")
        deciding = asyncio.ensure_future(ref.ask(Window.decide, "yes"))
        await held.wait()  # the decision is being committed

        async def deadline_passed() -> bool:
            return any(r.woken for r in actor.runs)

        await until(deadline_passed, "the deadline wakes the wait")
        let_go.set()
        await deciding
        assert await handle.result(timeout=10) == "decided yes"
