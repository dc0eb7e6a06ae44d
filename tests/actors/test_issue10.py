"""Regressions of issue 10: holes in the guarantee, each reproduced through the public API.

Every test here failed on the commit the issue was filed against (8f75e08); the
numbers in the names are the issue's item numbers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import anyio
import attrs
import pytest

from actors import (
    ActorsError,
    ActorSystem,
    CorruptRecord,
    DefinitionError,
    Entity,
    HandlerFailed,
    InvalidArguments,
    PayloadTooLarge,
    Rejected,
    SerializationError,
    StoreError,
    StoreLocked,
    SupervisorPolicy,
    SystemClosed,
    applies,
    query,
    signal,
)
from actors._clock import SystemClock
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore, Store
from persistence.faults import FaultyStore
from persistence.store import Accept, Commit, FireTimer, SignalRecord, TakeOutbox

pytestmark = pytest.mark.anyio

FAST = SupervisorPolicy(
    max_attempts=3, initial_backoff=dt.timedelta(milliseconds=1), max_backoff=dt.timedelta(milliseconds=5)
)


# ---------------------------------------------------------------- entities


@attrs.frozen
class Put:
    items: tuple[str, ...]


@attrs.frozen
class Bumped:
    by: int


@attrs.define
class Bag(Entity):
    """Keeps lists; its handlers misbehave on request."""

    items: list[str] = attrs.field(factory=list)
    count: int = 0
    entity_name: ClassVar[str] = "Bag"

    gate: ClassVar[dict[str, anyio.Event]] = {}
    seen: ClassVar[list[list[str]]] = []
    runs: ClassVar[dict[str, int]] = {}

    @signal
    async def hold(self, name: str) -> None:
        await Bag.gate[name].wait()

    @signal
    def put(self, items: list[str]) -> None:
        Bag.seen.append(list(items))
        self.emit(Put(tuple(items)))

    @signal
    def put_and_crash_once(self, items: list[str]) -> int:
        Bag.seen.append(list(items))
        items.append("edited-by-handler")
        Bag.runs["crash_once"] = Bag.runs.get("crash_once", 0) + 1
        if Bag.runs["crash_once"] == 1:
            raise RuntimeError("first attempt crashes")
        self.emit(Put(tuple(items)))
        return len(items)

    @signal
    def get_items(self) -> list[str]:
        return self.items

    @signal
    def bump(self, by: int) -> int:
        self.emit(Bumped(by))
        return self.count

    @signal
    def assign_directly(self) -> None:
        self.count = 99

    @signal
    def append_directly(self) -> None:
        self.items.append("sneaked in")

    @query
    def get_count(self) -> int:
        return self.count

    @query
    def list_items(self) -> list[str]:
        return list(self.items)

    @applies
    def _put(self, e: Put) -> None:
        self.items = [*self.items, *e.items]

    @applies
    def _bumped(self, e: Bumped) -> None:
        self.count += e.by


@pytest.fixture(autouse=True)
def _reset_bag() -> None:
    Bag.gate.clear()
    Bag.seen.clear()
    Bag.runs.clear()


async def until(check: Callable[[], object], *, timeout: float = 10) -> None:
    """Wait until ``check()`` (or the awaitable it returns) is true, with a deadline."""
    with anyio.fail_after(timeout):
        while True:
            ok = check()
            if inspect.isawaitable(ok):
                ok = await ok
            if ok:
                return
            await anyio.sleep(0.001)


async def _received_at_least(system: ActorSystem, n: int) -> bool:
    return len(await system.ref(Sink, "sink").query(Sink.received)) >= n


def _system(store: Store | None = None, *entities: type[Entity], **kw: object) -> ActorSystem:
    return ActorSystem(store or MemoryStore(), list(entities) or [Bag], supervision=FAST, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- 1. shared references


async def test_01_a_told_list_mutated_after_tell_returns_is_not_what_the_handler_sees() -> None:
    async with _system() as system:
        bag = system.ref(Bag, "b")
        Bag.gate["g"] = anyio.Event()
        await bag.tell(Bag.hold, "g")
        mine = ["a", "b"]
        await bag.tell(Bag.put, mine)
        mine.append("changed after the ack")
        Bag.gate["g"].set()
        assert await bag.ask(Bag.get_items) == ["a", "b"]
        assert Bag.seen == [["a", "b"]]


async def test_01_a_handler_that_edits_its_argument_and_crashes_sees_the_original_on_retry() -> None:
    async with _system() as system:
        assert await system.ref(Bag, "b").ask(Bag.put_and_crash_once, ["x"]) == 2
        assert Bag.seen == [["x"], ["x"]]


async def test_01_a_list_returned_by_ask_does_not_alias_the_entity_state(tmp_path: Path) -> None:
    async with _system(SqliteStore(tmp_path / "db")) as system:
        bag = system.ref(Bag, "b")
        await bag.tell(Bag.put, ["a"])
        got = await bag.ask(Bag.get_items)
        got.append("caller's edit")
        assert await bag.query(Bag.list_items) == ["a"]
        keyed = await bag.options(key="k").ask(Bag.get_items)
        keyed.append("caller's edit")
        assert await bag.query(Bag.list_items) == ["a"]


# ---------------------------------------------------------------- 2. derived ids


@attrs.frozen
class Forwarded:
    by: str


@attrs.define
class Sink(Entity):
    got: tuple[str, ...] = ()

    @signal
    def take(self, by: str) -> None:
        self.emit(Forwarded(by))

    @query
    def received(self) -> tuple[str, ...]:
        return self.got

    @applies
    def _forwarded(self, e: Forwarded) -> None:
        self.got = (*self.got, e.by)


@attrs.define
class Forwarder(Entity):
    @signal
    async def forward(self) -> None:
        await self.ref(Sink, "sink").tell(Sink.take, self.id)

    @signal
    async def ask_sink(self) -> None:
        await self.ref(Sink, "sink").ask(Sink.take, self.id)


async def test_02_outbox_ids_of_different_senders_never_collide() -> None:
    async with _system(None, Forwarder, Sink) as system:
        await system.ref(Forwarder, "x").options(key="q/k:z").ask(Forwarder.forward)
        await system.ref(Forwarder, "x/k:q").options(key="z").ask(Forwarder.forward)
        with anyio.fail_after(10):
            await until(lambda: _received_at_least(system, 2))
        assert sorted(await system.ref(Sink, "sink").query(Sink.received)) == ["x", "x/k:q"]


async def test_02_journaled_ask_ids_of_different_senders_never_collide() -> None:
    async with _system(None, Forwarder, Sink) as system:
        await system.ref(Forwarder, "x").options(key="q/k:z").ask(Forwarder.ask_sink)
        await system.ref(Forwarder, "x/k:q").options(key="z").ask(Forwarder.ask_sink)
        assert sorted(await system.ref(Sink, "sink").query(Sink.received)) == ["x", "x/k:q"]


# ---------------------------------------------------------------- 3. key namespaces


@attrs.define
class Mover(Entity):
    @signal
    async def move(self, amount: int) -> int:
        return await self.ref(Bag, "acct").options(key="t-1/debit").ask(Bag.bump, amount)

    @signal
    async def linger(self) -> int:
        await self.run(_one_second)  # long enough for the old runtime to dead-letter the pending one
        return 1


def _one_second() -> None:
    import time

    time.sleep(1)


async def test_03_an_outside_key_cannot_forge_an_internal_step_key() -> None:
    async with _system(None, Bag, Mover) as system:
        acct = system.ref(Bag, "acct")
        await acct.options(key="t-1/debit").ask(Bag.bump, 5)  # a hostile client guesses the step key
        await system.ref(Mover, "t-1").ask(Mover.move, 7)
        assert await acct.query(Bag.get_count) == 12
        await system.ref(Mover, "t-2").ask(Mover.move, 1)  # another sender, same key text
        assert await acct.query(Bag.get_count) == 13


# ---------------------------------------------------------------- 4. timers re-armed


@attrs.frozen
class Ticked:
    n: int


@attrs.define
class Ticker(Entity):
    ticks: int = 0

    @signal
    def start(self) -> None:
        self.schedule(Ticker.tick, after=dt.timedelta(0), key="k")

    @signal
    def tick(self) -> None:
        self.emit(Ticked(self.ticks + 1))
        if self.ticks < 5:
            self.schedule(Ticker.tick, after=dt.timedelta(0), key="k")

    @signal
    def remind_at(self, at: str) -> None:
        self.schedule(Ticker.ring, at=dt.datetime.fromisoformat(at), key="r")

    @signal
    def ring(self) -> None:
        self.emit(Ticked(self.ticks + 1))

    @query
    def count(self) -> int:
        return self.ticks

    @applies
    def _ticked(self, e: Ticked) -> None:
        self.ticks = e.n


async def test_04_a_timer_rearmed_with_the_same_key_and_due_time_fires_again() -> None:
    clock = VirtualClock()
    async with _system(None, Ticker, clock=clock) as system:
        t = system.ref(Ticker, "t")
        await t.tell(Ticker.start)
        await clock.advance(dt.timedelta(0))
        assert await t.query(Ticker.count) == 5


async def test_04_a_reminder_reset_for_the_same_instant_rings_again() -> None:
    clock = VirtualClock()
    async with _system(None, Ticker, clock=clock) as system:
        t = system.ref(Ticker, "t")
        at = (clock.now() + dt.timedelta(minutes=1)).isoformat()
        await t.ask(Ticker.remind_at, at)
        await clock.advance(dt.timedelta(minutes=2))
        assert await t.query(Ticker.count) == 1
        await t.ask(Ticker.remind_at, at)  # the same instant, now in the past: rings at once
        await clock.advance(dt.timedelta(0))
        assert await t.query(Ticker.count) == 2


# ---------------------------------------------------------------- 5. failed internal writes


async def test_05_a_failed_timer_firing_write_is_retried_without_a_restart() -> None:
    clock = VirtualClock()
    store = FaultyStore(MemoryStore())
    async with _system(store, Ticker, clock=clock) as system:
        t = system.ref(Ticker, "t")
        at = (clock.now() + dt.timedelta(minutes=1)).isoformat()
        await t.ask(Ticker.remind_at, at)
        store.fail("write", times=1, when=lambda a: any(isinstance(w, FireTimer) for w in a[0]))
        await clock.advance(dt.timedelta(minutes=1))
        await clock.advance(dt.timedelta(minutes=5))
        assert store.failures == 1
        assert await t.query(Ticker.count) == 1


async def test_05_a_failed_outbox_delivery_write_is_retried_without_a_restart() -> None:
    clock = VirtualClock()
    store = FaultyStore(MemoryStore())
    async with _system(store, Forwarder, Sink, clock=clock) as system:
        store.fail("write", times=1, when=lambda a: any(isinstance(w, TakeOutbox) for w in a[0]))
        await system.ref(Forwarder, "x").ask(Forwarder.forward)
        await clock.advance(dt.timedelta(minutes=5))
        assert store.failures == 1
        assert await system.ref(Sink, "sink").query(Sink.received) == ("x",)


# ---------------------------------------------------------------- 6. shutdown


async def test_06_aclose_never_says_not_done_for_a_committed_ask(tmp_path: Path) -> None:
    store = FaultyStore(SqliteStore(tmp_path / "db"))
    release = anyio.Event()
    answers: list[object] = []
    async with _system(store) as system:
        bag = system.ref(Bag, "b")
        await bag.ask(Bag.bump, 1)  # active
        store.stall("write", release, when=lambda a: any(isinstance(w, Commit) for w in a[0]))

        async def asker() -> None:
            try:
                answers.append(await bag.ask(Bag.bump, 10))
            except SystemClosed as e:
                answers.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(asker)
            await until(lambda: store.calls["write"] >= 2)  # the ask's commit is in the store (stalled)
            tg.start_soon(system.aclose)
            await anyio.sleep(0.01)
            release.set()
    async with _system(SqliteStore(tmp_path / "db")) as system:
        count = await system.ref(Bag, "b").query(Bag.get_count)
    (answer,) = answers
    if isinstance(answer, SystemClosed):
        assert count == 1, "told 'closed' but the ask was applied"
        assert not answer.accepted
    else:
        assert answer == 11
        assert count == 11


@attrs.define
class Cleaner(Entity):
    @signal
    async def work(self, name: str) -> None:
        try:
            await Bag.gate[name].wait()
        finally:
            await self.ref(Bag, "other").ask(Bag.bump, 1)


async def test_06_aclose_does_not_hang_on_a_handler_whose_finally_asks() -> None:
    system = _system(None, Cleaner, Bag)
    async with system:
        Bag.gate["w"] = anyio.Event()
        await system.ref(Cleaner, "c").tell(Cleaner.work, "w")
        await until(lambda: system.is_active(Cleaner, "c"))
        await anyio.sleep(0.01)
        with anyio.fail_after(5):
            await system.aclose()


# ---------------------------------------------------------------- 7. BaseException


class Boom(BaseException):
    """Not an Exception: a handler may still raise it."""


@attrs.define
class Wild(Entity):
    count: int = 0

    @signal
    def base_exception(self) -> None:
        self.emit(Bumped(1))
        raise Boom("not an Exception")

    @signal
    async def cancelled_helper(self) -> None:
        self.emit(Bumped(1))
        task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        task.cancel()
        await task

    @query
    def get_count(self) -> int:
        return self.count

    @applies
    def _bumped(self, e: Bumped) -> None:
        self.count += e.by


@pytest.mark.parametrize("handler", ["base_exception", "cancelled_helper"])
async def test_07_a_base_exception_from_a_handler_is_answered_and_rolled_back(handler: str) -> None:
    async with _system(None, Wild) as system:
        w = system.ref(Wild, "w")
        with anyio.fail_after(10), pytest.raises(HandlerFailed):
            await w.ask(handler)
        assert await w.query(Wild.get_count) == 0


# ---------------------------------------------------------------- 8. direct field writes


@pytest.mark.parametrize("handler", [Bag.assign_directly, Bag.append_directly])
async def test_08_direct_field_writes_in_a_handler_are_refused(handler: object) -> None:
    async with _system() as system:
        bag = system.ref(Bag, "b")
        with pytest.raises(HandlerFailed) as info:
            await bag.ask(handler)  # type: ignore[call-overload]
        assert isinstance(info.value.__cause__, DefinitionError)
        assert await bag.query(Bag.get_count) == 0
        assert await bag.query(Bag.list_items) == []


# ---------------------------------------------------------------- 9. outbox tell from a def


@attrs.define
class PlainForwarder(Entity):
    @signal
    def forward(self) -> None:
        self.ref(Sink, "sink").tell(Sink.take, self.id)


async def test_09_an_outbox_tell_from_a_plain_def_handler_is_sent() -> None:
    async with _system(None, PlainForwarder, Sink) as system:
        await system.ref(PlainForwarder, "p").ask(PlainForwarder.forward)
        with anyio.fail_after(10):
            await until(lambda: _received_at_least(system, 1))
        assert await system.ref(Sink, "sink").query(Sink.received) == ("p",)


@attrs.define
class PlainAsker(Entity):
    @signal
    def ask_in_def(self) -> None:
        self.ref(Sink, "sink").ask(Sink.take, self.id)  # type: ignore[unused-coroutine]


async def test_09_an_ask_from_a_plain_def_handler_is_refused_at_once() -> None:
    async with _system(None, PlainAsker, Sink) as system:
        with pytest.raises(HandlerFailed) as info:
            await system.ref(PlainAsker, "p").ask(PlainAsker.ask_in_def)
        assert isinstance(info.value.__cause__, DefinitionError)
        assert "async def" in str(info.value.__cause__)


# ---------------------------------------------------------------- 10. lone surrogates


async def test_10_a_lone_surrogate_is_refused_at_the_edge(tmp_path: Path) -> None:
    async with _system(SqliteStore(tmp_path / "db")) as system:
        with pytest.raises(InvalidArguments):
            system.ref(Bag, "x\ud800")
        with pytest.raises(InvalidArguments):
            system.ref(Bag, "b").options(key="k\udfff")
        with pytest.raises((InvalidArguments, SerializationError)):
            await system.ref(Bag, "b").tell(Bag.put, ["\ud800"])
        assert await system.ref(Bag, "b").ask(Bag.bump, 1) == 1


@attrs.define
class Raiser(Entity):
    @signal
    def fail_with(self, text: str) -> None:
        raise ValueError(text.encode().decode("utf-8", "surrogateescape") + "\udcff")


async def test_10_a_surrogate_in_an_exception_text_is_dead_lettered_once(tmp_path: Path) -> None:
    policy = SupervisorPolicy(max_attempts=1)
    async with ActorSystem(SqliteStore(tmp_path / "db"), [Raiser, Bag], supervision=policy) as system:
        with anyio.fail_after(10), pytest.raises(HandlerFailed):
            await system.ref(Raiser, "r").ask(Raiser.fail_with, "bad")
        (dl,) = await system.dead_letters()
        assert "ValueError" in dl.error


async def test_10_one_write_that_fails_on_its_own_data_does_not_fail_its_batch(tmp_path: Path) -> None:
    store = FaultyStore(SqliteStore(tmp_path / "db"))
    async with _system(store) as system:
        bad = SignalRecord("Bag", "b\ud800", "k:x", "bump", '{"by":1}', "fp", 0.0)
        results: list[object] = []
        gate = anyio.Event()

        async def good(i: int) -> None:
            results.append(await system.ref(Bag, f"g{i}").ask(Bag.bump, 1))

        async def hostile() -> None:
            try:
                await system._kernel.committer.submit(Accept(bad))
            except StoreError as e:
                results.append(e)

        async with anyio.create_task_group() as tg:
            store.stall("write", gate, times=1)  # hold the committer so the rest share a batch
            tg.start_soon(system.ref(Bag, "primer").tell, Bag.bump, 1)
            await until(lambda: store.calls["write"] >= 1)
            tg.start_soon(hostile)
            for i in range(30):
                tg.start_soon(good, i)
            with anyio.fail_after(10):
                await until(lambda: system._kernel.committer.pending >= 31)
            gate.set()
        assert sum(1 for r in results if r == 1) == 30
        assert sum(1 for r in results if isinstance(r, StoreError)) == 1


# ---------------------------------------------------------------- 11. out-of-range timer


@attrs.define
class FarFuture(Entity):
    @signal
    def far(self) -> None:
        self.schedule(
            FarFuture.far, at=dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(-dt.timedelta(hours=5)))
        )

    @signal
    def very_far(self) -> None:
        self.schedule(FarFuture.far, after=dt.timedelta.max)

    @signal
    def ok(self) -> int:
        return 1


@pytest.mark.parametrize("handler", ["far", "very_far"])
async def test_11_an_out_of_range_timer_is_refused_and_the_system_lives(tmp_path: Path, handler: str) -> None:
    async with _system(SqliteStore(tmp_path / "db"), FarFuture) as system:
        with pytest.raises(HandlerFailed) as info:
            await system.ref(FarFuture, "f").ask(handler)
        assert isinstance(info.value.__cause__, InvalidArguments)
        assert await system.ref(FarFuture, "g").ask(FarFuture.ok) == 1
    async with _system(SqliteStore(tmp_path / "db"), FarFuture) as system:
        assert await system.ref(FarFuture, "g").ask(FarFuture.ok) == 1


# ---------------------------------------------------------------- 12. failure paths


class BadRepr(Exception):
    def __repr__(self) -> str:
        raise RuntimeError("repr fails")

    def __str__(self) -> str:
        raise RuntimeError("str fails")


class LazyRejected(Rejected):
    def __init__(self, amount: int) -> None:  # skips super().__init__
        self.amount = amount


@attrs.define
class Fragile(Entity):
    @signal
    def bad_repr(self) -> None:
        raise BadRepr()

    @signal
    def lazy_reject(self) -> None:
        raise LazyRejected(5)

    @signal
    def deep(self, value: list[object]) -> int:
        return 1

    @signal
    def deep_any(self, value: object) -> int:
        return 1

    @signal
    def ok(self) -> int:
        return 1


async def test_12_an_exception_whose_repr_fails_is_dead_lettered(tmp_path: Path) -> None:
    async with _system(SqliteStore(tmp_path / "db"), Fragile) as system:
        with anyio.fail_after(10), pytest.raises(HandlerFailed):
            await system.ref(Fragile, "f").ask(Fragile.bad_repr)
        assert len(await system.dead_letters()) == 1


async def test_12_a_rejected_subclass_without_super_init_is_a_rejection(tmp_path: Path) -> None:
    async with _system(SqliteStore(tmp_path / "db"), Fragile) as system:
        f = system.ref(Fragile, "f")
        with anyio.fail_after(10), pytest.raises(LazyRejected):
            await f.ask(Fragile.lazy_reject)
        with anyio.fail_after(10), pytest.raises(LazyRejected):
            await f.options(key="k").ask(Fragile.lazy_reject)
        with anyio.fail_after(10), pytest.raises(Rejected):
            await f.options(key="k").ask(Fragile.lazy_reject)  # the repeat, from the mark


@pytest.mark.parametrize("handler", ["deep", "deep_any"])
async def test_12_a_deeply_nested_argument_is_a_typed_error(tmp_path: Path, handler: str) -> None:
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    async with _system(SqliteStore(tmp_path / "db"), Fragile) as system:
        f = system.ref(Fragile, "f")
        with pytest.raises((InvalidArguments, SerializationError)):
            await f.tell(handler, nested)
        with pytest.raises((InvalidArguments, SerializationError)):
            await f.ask(handler, nested)
        assert await f.ask(Fragile.ok) == 1


# ---------------------------------------------------------------- 13. code bugs


@attrs.frozen
class Unapplied:
    pass


class NotJson:
    pass


@attrs.define
class Buggy(Entity):
    runs: ClassVar[list[str]] = []

    @signal
    def no_applier(self) -> None:
        Buggy.runs.append("no_applier")
        self.emit(Unapplied())

    @signal
    def bad_result(self) -> NotJson:
        Buggy.runs.append("bad_result")
        return NotJson()

    @signal
    def big_result(self) -> str:
        return "x" * 5000

    @signal
    async def big_activity(self) -> str:
        return await self.run(_big)

    @signal
    def ok(self) -> int:
        return 1


_BIG_CALLS: list[int] = []


def _big() -> str:
    _BIG_CALLS.append(1)
    return "y" * 5000


@pytest.fixture(autouse=True)
def _reset_buggy() -> None:
    Buggy.runs.clear()
    _BIG_CALLS.clear()


async def test_13_a_definition_error_is_dead_lettered_at_once_and_does_not_stop_the_entity() -> None:
    policy = SupervisorPolicy(max_attempts=5, max_restarts=1, initial_backoff=dt.timedelta(milliseconds=1))
    async with ActorSystem(MemoryStore(), [Buggy], supervision=policy) as system:
        b = system.ref(Buggy, "b")
        for _ in range(3):
            with pytest.raises(HandlerFailed) as info:
                await b.ask(Buggy.no_applier)
            assert isinstance(info.value.__cause__, DefinitionError)
        assert Buggy.runs == ["no_applier"] * 3  # once each: a code bug is not retried
        assert await b.ask(Buggy.ok) == 1  # and not stopped by restart intensity


async def test_13_an_unencodable_result_fails_the_same_with_or_without_a_key() -> None:
    async with _system(None, Buggy) as system:
        b = system.ref(Buggy, "b")
        with pytest.raises(HandlerFailed) as plain:
            await b.ask(Buggy.bad_result)
        with pytest.raises(HandlerFailed) as keyed:
            await b.options(key="k").ask(Buggy.bad_result)
        assert isinstance(plain.value.__cause__, SerializationError)
        assert isinstance(keyed.value.__cause__, SerializationError)


async def test_13_max_payload_applies_to_plain_results() -> None:
    async with ActorSystem(MemoryStore(), [Buggy], supervision=FAST, max_payload=1000) as system:
        with pytest.raises(HandlerFailed) as info:
            await system.ref(Buggy, "b").ask(Buggy.big_result)
        assert isinstance(info.value.__cause__, PayloadTooLarge)


async def test_13_an_oversize_activity_result_does_not_rerun_the_activity() -> None:
    async with ActorSystem(MemoryStore(), [Buggy], supervision=FAST, max_payload=1000) as system:
        with pytest.raises(ActorsError):
            await system.ref(Buggy, "b").ask(Buggy.big_activity)
        assert len(_BIG_CALLS) == 1


# ---------------------------------------------------------------- 14. compensations


async def _never_undo() -> None:
    raise RuntimeError("the undo keeps failing")


async def _step() -> None:
    raise RuntimeError("the step fails")


@attrs.define
class Sagaish(Entity):
    @signal
    async def doomed(self) -> None:
        async with self.saga() as saga:
            saga.compensate(_never_undo)
            await self.run(_step, retry=_ONE)

    @signal
    def ok(self) -> int:
        return 1


def _one() -> object:
    from actors import RetryPolicy

    return RetryPolicy(maximum_attempts=1)


_ONE = _one()


async def test_14_a_compensation_that_never_succeeds_is_bounded_and_dead_lettered() -> None:
    clock = VirtualClock()
    async with _system(None, Sagaish, clock=clock) as system:
        s = system.ref(Sagaish, "s")
        async with anyio.create_task_group() as tg:
            failures: list[BaseException] = []

            async def doomed() -> None:
                try:
                    await s.ask(Sagaish.doomed)
                except HandlerFailed as e:
                    failures.append(e)

            tg.start_soon(doomed)
            with anyio.fail_after(20):
                while not failures:
                    await clock.advance(dt.timedelta(hours=1))
        assert len(await system.dead_letters()) == 1
        assert await s.ask(Sagaish.ok) == 1


# ---------------------------------------------------------------- 15. shadowing names


def test_15_handler_and_field_names_that_shadow_entity_methods_are_refused() -> None:
    @attrs.define
    class ShadowRun(Entity):
        @signal
        def run(self) -> None:  # type: ignore[override]
            pass

    @attrs.define
    class ShadowField(Entity):
        resource: int = 0  # type: ignore[assignment]

    for cls in (ShadowRun, ShadowField):
        with pytest.raises(DefinitionError):
            ActorSystem(MemoryStore(), [cls])


# ---------------------------------------------------------------- 16, 17. the lock


async def test_16_the_same_database_through_a_symlink_is_locked(tmp_path: Path) -> None:
    db = tmp_path / "db"
    link = tmp_path / "link"
    async with SqliteStore(db):
        link.symlink_to(db)
        with pytest.raises(StoreLocked):
            async with SqliteStore(link):
                pass


async def test_16_removing_the_lock_file_does_not_allow_a_second_owner(tmp_path: Path) -> None:
    db = tmp_path / "db"
    async with SqliteStore(db):
        for name in os.listdir(tmp_path):
            if name.endswith(".lock"):
                os.unlink(tmp_path / name)
        with pytest.raises(StoreLocked):
            async with SqliteStore(db):
                pass


async def test_17_a_failed_open_is_typed_and_does_not_leak_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import persistence.sqlite as sq

    def full(*_a: object, **_k: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(sq.os, "pwrite", full)
        m.setattr(sq.os, "ftruncate", full)
        with pytest.raises(StoreError):
            async with SqliteStore(tmp_path / "db"):
                pass
    async with SqliteStore(tmp_path / "db"):  # the lock was released
        pass


# ---------------------------------------------------------------- 18. activities vs the store


@attrs.define
class Slow(Entity):
    count: int = 0
    release: ClassVar[threading.Event] = threading.Event()
    started: ClassVar[list[int]] = []

    @signal
    async def call_gateway(self) -> None:
        await self.run(_slow_gateway)

    @signal
    def ok(self) -> int:
        self.emit(Bumped(1))  # a commit: it needs the store's thread
        return self.count

    @applies
    def _bumped(self, e: Bumped) -> None:
        self.count += e.by


def _slow_gateway() -> None:
    Slow.started.append(1)
    Slow.release.wait(30)


async def test_18_slow_sync_activities_do_not_starve_store_writes(tmp_path: Path) -> None:
    Slow.release.clear()
    Slow.started.clear()
    async with _system(SqliteStore(tmp_path / "db"), Slow) as system:
        try:
            async with anyio.create_task_group() as tg:
                for i in range(45):
                    tg.start_soon(system.ref(Slow, f"s{i}").tell, Slow.call_gateway)
            with anyio.fail_after(10):
                await until(lambda: len(Slow.started) >= 40)
                assert await system.ref(Slow, "other").ask(Slow.ok) == 1
        finally:
            Slow.release.set()


# ---------------------------------------------------------------- 19. damaged rows


async def test_19_a_damaged_timer_row_is_isolated(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "db"
    clock = VirtualClock()
    async with _system(SqliteStore(db), Ticker, clock=clock) as system:
        for name in ("bad", "good"):
            await system.ref(Ticker, name).ask(
                Ticker.remind_at, (clock.now() + dt.timedelta(minutes=1)).isoformat()
            )
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE timers SET due_at = 'soon', handler = 'nope' WHERE entity_id = 'bad'")
    async with _system(SqliteStore(db), Ticker, clock=clock) as system:
        await clock.advance(dt.timedelta(minutes=2))
        assert await system.ref(Ticker, "good").query(Ticker.count) == 1
        assert await system.ref(Ticker, "bad").query(Ticker.count) == 0


async def test_19_a_damaged_processed_mark_is_a_corrupt_record(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "db"
    async with _system(SqliteStore(db)) as system:
        await system.ref(Bag, "b").options(key="k").ask(Bag.bump, 1)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE processed SET outcome = '{broken'")
    async with _system(SqliteStore(db)) as system:
        with pytest.raises(CorruptRecord):
            await system.ref(Bag, "b").options(key="k").ask(Bag.bump, 1)
        assert await system.ref(Bag, "c").ask(Bag.bump, 1) == 1


# ---------------------------------------------------------------- 20. CLI and ref timeouts


async def test_20_the_cli_leaves_other_types_pending_work_alone(tmp_path: Path) -> None:
    from actors.cli import main

    db = tmp_path / "db"
    async with SqliteStore(db) as store:  # a Mover signal is pending; Mover's handler asks a Bag
        pending = SignalRecord("Mover", "t-1", "k:m", "move", '{"amount":5}', "fp", 0.0)
        await store.write([Accept(pending)])
    code = await anyio.to_thread.run_sync(main, ["ask", str(db), f"{__name__}:Mover", "t-2", "linger"])
    assert code == 0
    async with SqliteStore(db) as store:  # the CLI ran with Mover only: the pending one waits
        assert await store.read_dead_letters(limit=10) == []
        assert [e.signal.entity_id for e in await store.read_inbox(after=0, limit=10)][:1] == ["t-1"]


@attrs.define
class Impatient(Entity):
    @signal
    async def wait_for_hold(self) -> str:
        try:
            await self.ref(Bag, "slow").options(timeout=0.05).ask(Bag.hold, "forever")
        except ActorsError as e:
            return type(e).__name__
        return "answered"


async def test_20_a_timeout_on_a_ref_inside_a_handler_is_applied() -> None:
    async with _system(None, Impatient, Bag) as system:
        Bag.gate["forever"] = anyio.Event()
        with anyio.fail_after(10):
            assert await system.ref(Impatient, "i").ask(Impatient.wait_for_hold) == "DeadlineExceeded"
        Bag.gate["forever"].set()


# ---------------------------------------------------------------- 21. clock steps


class SteppingClock(SystemClock):
    """The wall clock, which a test can step back."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return super().now() - self.offset


@attrs.define
class StepBack(Entity):
    attempts: ClassVar[list[int]] = []

    @signal
    def flaky(self) -> int:
        StepBack.attempts.append(1)
        if len(StepBack.attempts) == 1:
            raise RuntimeError("transient")
        return len(StepBack.attempts)


async def test_21_backoff_does_not_stall_when_the_wall_clock_steps_back() -> None:
    StepBack.attempts.clear()
    clock = SteppingClock()
    policy = SupervisorPolicy(initial_backoff=dt.timedelta(milliseconds=300))
    answers: list[int] = []
    async with (
        ActorSystem(MemoryStore(), [StepBack], clock=clock, supervision=policy) as system,
        anyio.create_task_group() as tg,
    ):

        async def ask() -> None:
            answers.append(await system.ref(StepBack, "s").ask(StepBack.flaky))

        tg.start_soon(ask)
        with anyio.fail_after(10):
            await until(lambda: bool(StepBack.attempts))
            clock.offset = dt.timedelta(hours=1)  # the wall clock steps back during the backoff
            await until(lambda: bool(answers))
    assert answers == [2]


def test_module_names_every_item() -> None:
    names = [n for n in globals() if n.startswith("test_")]
    items = {int(n.split("_")[1]) for n in names if n.split("_")[1].isdigit()}
    assert items >= set(range(1, 22)) - {22}, sorted(set(range(1, 22)) - items)


# ---------------------------------------------------------------- 13, the store's side


_JOURNALED: list[int] = []


def _journaled_step() -> int:
    _JOURNALED.append(1)
    return 7


@attrs.define
class Stepper(Entity):
    @signal
    async def step(self) -> int:
        return await self.run(_journaled_step)


async def test_13_a_failing_journal_write_is_a_store_fault_not_a_crash(tmp_path: Path) -> None:
    """A disk error under a journaled step was counted as a handler crash: after three
    the signal was dead-lettered and the caller told HandlerFailed for a passing fault."""
    _JOURNALED.clear()
    store = FaultyStore(SqliteStore(tmp_path / "db"))
    policy = SupervisorPolicy(max_attempts=1, initial_backoff=dt.timedelta(milliseconds=1))
    async with ActorSystem(store, [Stepper], supervision=policy) as system:
        from persistence.store import Journal

        store.fail(
            "write", times=3, when=lambda a: any(isinstance(w, Journal) and w.inbox is None for w in a[0])
        )
        with anyio.fail_after(10):
            assert await system.ref(Stepper, "s").ask(Stepper.step) == 7
        assert await system.dead_letters() == []
        assert store.failures == 3
