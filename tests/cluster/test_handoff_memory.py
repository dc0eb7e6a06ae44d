"""Handoff and takeover resume everything a member had: parked workflows, timers,
the outbox; a cancel and a result reach an invocation wherever it runs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

import attrs
import pytest

from actors import ActorSystem, Cancelled, Entity, InvalidArguments, applies, query, signal
from actors._run import Run
from examples.approval.model import Budget, Expense
from persistence import MemoryStore
from persistence.store import Accept, Accepted, SignalRecord
from persistence.testing import until

pytestmark = pytest.mark.anyio

TTL = dt.timedelta(seconds=1)
SPLIT_SHARDS = 64
"""For tests that need both members to own shards. Rendezvous hashing gives every one
of n shards to the same member of two with probability 2 / 2**n: with 8 shards one
run in 128 waited in vain for a split (member ids are random), with 64 never."""
APPROVAL = [Budget, Expense]


@attrs.frozen
class Rang:
    tag: str


@attrs.define
class Bell(Entity):
    rang: tuple[str, ...] = ()

    @signal
    def set(self, tag: str, seconds: float) -> None:
        self.schedule(Bell.ring, tag, after=dt.timedelta(seconds=seconds), key=tag)

    @signal
    def ring(self, tag: str) -> None:
        self.emit(Rang(tag))

    @signal
    def forward(self, to: str, tag: str) -> None:
        self.ref(Bell, to).tell(Bell.ring, tag)  # through the outbox, after this commits

    @query
    def get(self) -> tuple[str, ...]:
        return self.rang

    @applies
    def _rang(self, e: Rang) -> None:
        self.rang = (*self.rang, e.tag)


async def _split(a: ActorSystem, b: ActorSystem) -> bool:
    ms = {m.member_id: m.shards for m in await a.members()}
    mine, theirs = ms.get(a.member_id), ms.get(b.member_id)
    return bool(mine) and bool(theirs) and sum(map(len, ms.values())) == SPLIT_SHARDS


async def test_a_parked_workflow_resumes_on_the_member_that_takes_its_shard() -> None:
    mem = MemoryStore(shared=True, shards=8)
    async with ActorSystem(mem.connect(), APPROVAL, serve=False, lease_ttl=TTL) as client:
        async with ActorSystem(mem.connect(), APPROVAL, lease_ttl=TTL) as a:
            ok = await client.ref(Expense, "e1").start(Expense.submit, "team", 50)
            gone = await client.ref(Expense, "e2").start(Expense.submit, "team", 30)

            async def parked() -> bool:
                held = await client.ref(Budget, "team").query(Budget.status)
                return held.held == 80

            await until(parked, "both workflows hold their amount and wait")
            assert a.statistics().active_actors >= 2
        async with ActorSystem(mem.connect(), APPROVAL, lease_ttl=TTL) as b:  # a left: b has everything
            await client.ref(Expense, "e1").tell(Expense.approve, "manager")
            assert await ok.result(timeout=10) == "approved by manager"
            await gone.cancel("withdrawn")
            with pytest.raises(Cancelled):
                await gone.result(timeout=10)
            status = await b.ref(Budget, "team").query(Budget.status)
            assert (status.held, status.spent) == (0, 50)


async def test_a_timer_set_on_one_member_fires_once_on_the_next() -> None:
    mem = MemoryStore(shared=True, shards=8)
    async with ActorSystem(mem.connect(), [Bell], lease_ttl=TTL) as a:
        await a.ref(Bell, "b").ask(Bell.set, "later", 0.3)
        assert len(a._kernel.timers) == 1
    async with ActorSystem(mem.connect(), [Bell], lease_ttl=TTL) as b:

        async def rang() -> bool:
            return await b.ref(Bell, "b").query(Bell.get) == ("later",)

        await until(rang, "the timer fires on the member that took the entity")
        assert await b.store.read_timers(limit=10) == []


async def test_an_outbox_tell_reaches_an_entity_of_another_member() -> None:
    mem = MemoryStore(shared=True, shards=SPLIT_SHARDS)
    async with (
        ActorSystem(mem.connect(), [Bell], lease_ttl=TTL) as a,
        ActorSystem(mem.connect(), [Bell], lease_ttl=TTL) as b,
    ):
        await until(lambda: _split(a, b), "both members own shards")
        own_a, own_b = a._kernel.shards, b._kernel.shards
        src = next(f"s{i}" for i in range(1000) if own_a.owns("Bell", f"s{i}"))
        dst = next(f"d{i}" for i in range(1000) if own_b.owns("Bell", f"d{i}"))
        await a.ref(Bell, src).ask(Bell.forward, dst, "hello")

        async def arrived() -> bool:
            return await a.ref(Bell, dst).query(Bell.get) == ("hello",)

        await until(arrived, "the outbox message reaches the other member's entity")
        assert await b.ref(Bell, dst).query(Bell.get) == ("hello",)


async def test_a_member_whose_session_ended_is_replaced_at_once() -> None:
    mem = MemoryStore(shared=True, shards=8)
    a = ActorSystem(mem.connect(), [Bell], lease_ttl=dt.timedelta(minutes=10))
    await a.__aenter__()
    await a.ref(Bell, "b").ask(Bell.ring, "one")
    a._cluster.joined = False  # type: ignore[union-attr]  # dies without leaving: no handoff
    await a.aclose()
    async with ActorSystem(mem.connect(), [Bell], lease_ttl=dt.timedelta(minutes=10)) as b:
        assert await b.ref(Bell, "b").ask(Bell.ring, "two") is None  # no 10-minute wait
        assert await b.ref(Bell, "b").query(Bell.get) == ("one", "two")
        statuses = {m.member_id: m.status for m in await b.members()}
        assert statuses[a.member_id] == "dead"


async def test_bad_cluster_arguments_are_refused(tmp_path: object) -> None:
    with pytest.raises(InvalidArguments, match="serve=False"):
        ActorSystem(MemoryStore(), [Bell], serve=False)
    with pytest.raises(InvalidArguments, match="lease_ttl"):
        ActorSystem(MemoryStore(shared=True), [Bell], lease_ttl=dt.timedelta(0))
    with pytest.raises(InvalidArguments, match="lease_ttl"):
        ActorSystem(MemoryStore(shared=True), [Bell], lease_ttl=5)  # type: ignore[arg-type]
    for bad in ("", "a\0b", "x\ud800", "line\nbreak", "n" * 201):
        with pytest.raises(InvalidArguments, match="member_name"):
            ActorSystem(MemoryStore(shared=True), [Bell], member_name=bad)
    async with ActorSystem(MemoryStore(), [Bell]) as alone:
        assert alone.member_id is None
        with pytest.raises(InvalidArguments, match="not shared"):
            await alone.members()


@attrs.define
class Child(Entity):
    @signal
    def work(self, n: int) -> int:
        return n * 2


@attrs.define
class Parent(Entity):
    @signal
    async def go(self, child: str, n: int) -> int:
        handle = await self.ref(Child, child).start(Child.work, n)
        return int(await handle.result()) + 1  # parked until the child's outcome


async def test_a_parent_awaits_a_child_that_runs_on_another_member() -> None:
    mem = MemoryStore(shared=True, shards=SPLIT_SHARDS)
    async with (
        ActorSystem(mem.connect(), [Parent, Child], lease_ttl=TTL) as a,
        ActorSystem(mem.connect(), [Parent, Child], lease_ttl=TTL) as b,
    ):
        await until(lambda: _split(a, b), "both members own shards")
        parent = next(f"p{i}" for i in range(1000) if a._kernel.shards.owns("Parent", f"p{i}"))
        child = next(f"c{i}" for i in range(1000) if b._kernel.shards.owns("Child", f"c{i}"))
        assert await a.ref(Parent, parent).options(timeout=10).ask(Parent.go, child, 20) == 41
        assert await b.ref(Parent, parent).options(timeout=10).ask(Parent.go, child, 5) == 11  # asked from b


async def test_a_handoff_whose_wait_runs_out_leaves_the_caller_running() -> None:
    """A handoff waits (at most a lease) for the tasks of the actors it stops. A task
    that takes the cancel and ends normally only after that wait ran out used to leak
    a CancelledError out of the wait into its caller: the balancer task died silently
    and the member never claimed or handed off a shard again (a fault run's stall)."""
    mem = MemoryStore(shared=True, shards=8)
    async with ActorSystem(mem.connect(), APPROVAL, lease_ttl=dt.timedelta(seconds=0.5)) as a:
        await a.ref(Expense, "e1").start(Expense.submit, "team", 50)

        def parked_run() -> Run | None:
            actor = a._directory.actors.get(("Expense", "e1"))
            return next(iter(actor.runs), None) if actor is not None else None

        async def parked() -> bool:
            run = parked_run()
            return run is not None and run.parked

        await until(parked, "the workflow waits for a decision")
        run = parked_run()
        assert run is not None

        async def stubborn() -> None:  # outlives the handoff's wait, then ends normally
            for _ in range(3):
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0.3)

        run.task = asyncio.get_running_loop().create_task(stubborn())
        shard = a._kernel.shards.shard("Expense", "e1")
        cluster = a._cluster
        assert cluster is not None
        await cluster.give_up(frozenset({shard}), release=True)
        await asyncio.sleep(0.05)  # the leaked cancel struck at the next await
        assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
        await run.task

        async def taken_back() -> bool:  # the only member: the shard is its own again
            return any(m.me and shard in m.shards for m in await a.members())

        await until(taken_back, "the member claims its shard again")


async def test_wake_ups_with_hostile_payloads_raise_nothing() -> None:
    """Anyone who may connect to a PostgreSQL database may NOTIFY its channels: a
    wake-up only ever leads to a read of the store, and a malformed one to nothing."""
    mem = MemoryStore(shared=True, shards=8)
    async with ActorSystem(mem.connect(), [Bell], lease_ttl=TTL) as a:
        await a.ref(Bell, "b").ask(Bell.set, "x", 3600)
        cluster = a._cluster
        assert cluster is not None
        for topic in ("inbox", "outcome", "shards", "cancel", "nope"):
            for item in ("9" * 5000, "\u0661\u0662", "-1", "", "*", "i:[1,2", "\x00", "s:" + "x" * 8000):
                cluster._heard(topic, item)
        await a.ref(Bell, "b").ask(Bell.ring, "after")
        assert await a.ref(Bell, "b").query(Bell.get) == ("after",)


async def test_an_inbox_read_that_outlives_a_move_of_its_shard_routes_nothing_of_it() -> None:
    """A read of the inbox that began before a shard moved away and back (another
    member processed its signals meanwhile) returns rows that are no longer pending:
    routed, they would be applied twice (a 200-fault run found one tell applied twice).
    Rows of a shard whose epoch changed during the read are dropped; the claim that
    changed it reads the shard again."""
    mem = MemoryStore(shared=True, shards=8)
    async with ActorSystem(mem.connect(), [Bell], lease_ttl=TTL) as a:
        store = a._kernel.store
        own = a._kernel.shards
        shard = own.shard("Bell", "b")
        release = asyncio.Event()
        reading = asyncio.Event()
        real_read = store.read_inbox

        async def slow_read(**kw: Any) -> Any:
            rows = await real_read(**kw)
            reading.set()
            await release.wait()
            return rows

        signal = SignalRecord("Bell", "b", "g:stale-1", "ring", '{"tag": "twice?"}', "fp", 0.0)
        assert isinstance((await store.write([Accept(signal)]))[0], Accepted)
        store.read_inbox = slow_read  # type: ignore[method-assign]
        routing = asyncio.ensure_future(a._directory.recover(shards={shard}))
        await reading.wait()
        own.epochs[shard] += 2  # the shard went away and came back meanwhile
        release.set()
        assert await routing == 0
        store.read_inbox = real_read  # type: ignore[method-assign]
        assert ("Bell", "b") not in a._directory.actors


@attrs.frozen
class Opened:
    pass


@attrs.frozen
class Closed:
    outcome: str


@attrs.define
class Door(Entity):
    """A workflow that opens, then waits (a checkpoint: its commit, then it parks)."""

    approved: bool = False
    outcome: str | None = None

    @signal
    async def request(self) -> str:
        self.emit(Opened())
        ok = await self.wait_until(lambda: self.approved, timeout=dt.timedelta(hours=1))
        self.emit(Closed("approved" if ok else "timed out"))
        return "approved" if ok else "timed out"

    @signal
    def approve(self) -> None:
        self.approved = self.approved  # no event: approvals are not the point here

    @applies
    def _opened(self, e: Opened) -> None:
        pass

    @applies
    def _closed(self, e: Closed) -> None:
        self.outcome = e.outcome


async def test_a_workflow_paused_inside_its_checkpoint_commit_is_not_counted_as_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A member gives a shard up while a workflow of it is inside the commit before it
    parks (the commit is finished first): the pause cancels the drain waiting on the
    workflow's segment, then the workflow parks. Parking set that segment's result on a
    cancelled future (InvalidStateError), which the supervisor took for a crash of the
    handler (a warning, a retry counted, a dead letter with ``max_attempts=1``); found
    by the cluster fault run with parked workflows. Now the workflow parks, the pause
    reaches it there, and the member that takes the shard resumes it from its journal."""
    mem = MemoryStore(shared=True, shards=8)
    async with ActorSystem(mem.connect(), [Door], lease_ttl=TTL) as a:
        store = a._kernel.store
        entered, let_go = asyncio.Event(), asyncio.Event()
        real_write = store.write

        async def held_write(batch: Any) -> Any:
            if any(getattr(w, "entity_type", None) == "Door" and getattr(w, "events", ()) for w in batch):
                entered.set()
                await let_go.wait()
            return await real_write(batch)

        store.write = held_write  # type: ignore[method-assign]
        handle = await a.ref(Door, "d1").start(Door.request)
        await entered.wait()  # the checkpoint commit is under way
        cluster = a._cluster
        assert cluster is not None
        shard = a._kernel.shards.shard("Door", "d1")
        giving_up = asyncio.ensure_future(cluster.give_up(frozenset({shard}), release=True))
        await asyncio.sleep(0)  # the pause is requested while the commit is held
        let_go.set()
        await giving_up
        store.write = real_write  # type: ignore[method-assign]
        assert a._kernel.retries == 0
        assert not [r for r in caplog.records if "crashed" in r.getMessage()]

        async def taken_back() -> bool:  # the only member: the shard is its own again
            return any(m.me and shard in m.shards for m in await a.members())

        await until(taken_back, "the member claims its shard again")
        await a.ref(Door, "d1").tell(Door.approve)  # a nudge: the predicate is read again
        assert a._kernel.retries == 0
        events = await a.store.read_events("Door", "d1", after=0, limit=10)
        assert [e.type_name.rsplit(".", 1)[-1] for e in events] == ["Opened"]  # once; still parked
        assert handle.id.startswith("s:")


async def test_a_wake_up_between_a_pause_and_its_cancel_reaching_the_workflow_is_dropped() -> None:
    """A parked workflow's deadline (or predicate) wakes it right after a pause cancelled
    it, and a drain resumes it before its task has run the cancel: the drain found the
    wait's future cancelled and died with InvalidStateError (an unretrieved task error,
    found by the cluster fault run). Now the resume does nothing and the run ends on its
    own, paused (here the drain's resume is called at that moment)."""
    mem = MemoryStore(shared=True, shards=8)
    async with ActorSystem(mem.connect(), [Door], lease_ttl=TTL) as a:
        await a.ref(Door, "d1").start(Door.request)
        actor = a._directory.actors[("Door", "d1")]

        async def parked() -> bool:
            return any(r.parked and not r.holding for r in actor.runs)

        await until(parked, "the workflow parks")
        run = next(iter(actor.runs))
        actor.pause()  # the parked run is cancelled; its task has not run the cancel yet
        assert run.go is not None
        assert run.go.cancelled()
        await actor.runtime.parking.resume(actor, run)  # returns: nothing to resume
        assert run.task is not None
        await asyncio.wait([run.task])
        assert run.task.done()
        assert a._kernel.retries == 0
        assert not run.parked
