"""Minimal reproductions of what the torture harness's fault classes found (issue 10).

Each test states the promise the harness saw broken, in a few lines against the public
API; each failed on the runtime before the fix. Every wait has a deadline, so a hang
fails instead of hanging the suite. ``python -m bench.torture
--kills 0 --faults all`` runs the full fault classes these came from.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from pathlib import Path
from typing import ClassVar

import anyio
import attrs
import pytest

from actors import ActorSystem, Entity, InvalidArguments, SystemClosed, applies, event_type, query, signal
from persistence import SqliteStore
from persistence.faults import FaultyStore
from persistence.store import FireTimer, TakeOutbox

pytestmark = pytest.mark.anyio
DEADLINE = 5.0


@event_type("issue10.noted")
@attrs.frozen
class Noted:
    tag: str


@event_type("issue10.spent")
@attrs.frozen
class Spent:
    amount: int


class Abort(BaseException):
    """A BaseException that is no Exception (as KeyboardInterrupt)."""


async def forever() -> None:
    await anyio.sleep(3600)


@attrs.define
class Box(Entity):
    entity_name = "Issue10Box"
    snapshot_every: ClassVar[int] = 1000
    count: int = 0
    looped: int = 0
    tags: tuple[str, ...] = ()

    @signal
    def put(self, tag: str) -> int:
        self.emit(Noted(tag))
        return self.count

    @signal
    def keep(self, items: list[str]) -> None:
        self.emit(Noted(json.dumps(items)))

    @signal
    async def forward(self, tag: str, sink: str) -> None:
        await self.ref(Box, sink).ask(Box.put, json.dumps([self.id, tag]))  # a journaled ask: derived id

    @signal
    async def tell_out(self, tag: str, sink: str) -> None:
        await self.ref(Box, sink).tell(Box.put, tag)  # through the outbox

    @signal
    def loop(self, times: int) -> None:
        self.emit(Noted("loop"))
        if self.looped < times:
            self.schedule(Box.loop, times, after=dt.timedelta(0), key="loop")  # same key, same due time

    @signal
    def later(self, tag: str) -> None:
        self.schedule(Box.put, tag, after=dt.timedelta(milliseconds=10), key="later")

    @signal
    async def boom(self, how: str) -> None:
        self.emit(Noted("phantom"))
        if how == "base":
            raise Abort("a BaseException from a handler")
        helper = asyncio.ensure_future(asyncio.sleep(3600))
        helper.cancel()
        await helper

    @signal
    async def stall(self, other: str) -> None:
        try:
            await self.run(forever)
        finally:
            await self.ref(Box, other).ask(Box.put, "cleanup")

    @query
    def get_count(self) -> int:
        return self.count

    @query
    def get_tags(self) -> list[str]:
        return list(self.tags)

    @applies
    def _noted(self, e: Noted) -> None:
        self.count += 1
        self.tags = (*self.tags, e.tag)
        if e.tag == "loop":
            self.looped += 1


@attrs.define
class Purse(Entity):
    entity_name = "Issue10Purse"
    spent: int = 0

    @signal
    def spend(self, amount: int) -> int:
        self.emit(Spent(amount))
        return self.spent

    @query
    def get_spent(self) -> int:
        return self.spent

    @applies
    def _spent(self, e: Spent) -> None:
        self.spent += e.amount


@attrs.define
class Mover(Entity):
    """A saga step keyed by the framework user's own step key, as the bank example does."""

    entity_name = "Issue10Mover"

    @signal
    async def start(self, purse: str, amount: int) -> None:
        await self.ref(Purse, purse).options(key=f"{self.id}/debit").ask(Purse.spend, amount)


ENTITIES: list[type[Entity]] = [Box, Purse, Mover]


def system(path: Path, store: object = None) -> ActorSystem:
    return ActorSystem(store or SqliteStore(path / "t.db"), entities=ENTITIES)  # type: ignore[arg-type]


async def eventually(check: object, deadline: float = DEADLINE) -> bool:
    """Poll ``await check()`` until true, under a deadline."""
    with anyio.move_on_after(deadline):
        while not await check():  # type: ignore[operator]  # noqa: ASYNC110 - a poll under a deadline
            await anyio.sleep(0.01)
        return True
    return False


# ------------------------------------------------------------ hostile ids and keys (items 2, 3, 4, 10)


async def test_a_handler_runs_on_the_arguments_as_told(tmp_path: Path) -> None:
    async with system(tmp_path) as s:
        items = ["as told"]
        await s.ref(Box, "lists").tell(Box.keep, items)
        items.append("changed after tell returned")
        await s.ref(Box, "lists").ask(Box.put, "sync")  # behind the tell in the mailbox
        tags = await s.ref(Box, "lists").query(Box.get_tags)
    assert tags == [json.dumps(["as told"]), "sync"]


async def test_a_lone_surrogate_entity_id_is_refused_with_invalid_arguments(tmp_path: Path) -> None:
    async with system(tmp_path) as s:
        with pytest.raises(InvalidArguments):
            await s.ref(Box, "\ud800").tell(Box.put, "x")  # at ref() or at the call: before any write


async def test_a_lone_surrogate_key_is_refused_with_invalid_arguments(tmp_path: Path) -> None:
    async with system(tmp_path) as s:
        with pytest.raises(InvalidArguments):
            await s.ref(Box, "b").options(key="k\udc00").tell(Box.put, "x")


async def test_one_bad_call_does_not_fail_the_others_in_its_batch(tmp_path: Path) -> None:
    failed: list[BaseException] = []

    async def put(s: ActorSystem, eid: str) -> None:
        try:
            await s.ref(Box, eid).tell(Box.put, "x")
        except Exception as e:
            if eid.startswith("good"):
                failed.append(e)

    async with system(tmp_path) as s, anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(put, s, f"good-{i}")
        tg.start_soon(put, s, "\ud800")
    assert failed == []


async def test_derived_ask_ids_of_different_senders_do_not_collide(tmp_path: Path) -> None:
    async with system(tmp_path) as s:
        with anyio.fail_after(DEADLINE * 4):
            await s.ref(Box, "x").options(key="a/k:b").ask(Box.forward, "one", "sink")
            await s.ref(Box, "x/k:a").options(key="b").ask(Box.forward, "two", "sink")
        tags = await s.ref(Box, "sink").query(Box.get_tags)
    assert sorted(tags) == sorted([json.dumps(["x", "one"]), json.dumps(["x/k:a", "two"])])


async def test_an_outside_key_cannot_forge_a_handlers_step(tmp_path: Path) -> None:
    async with system(tmp_path) as s:
        await s.ref(Purse, "p").options(key="m-1/debit").ask(Purse.spend, 40)  # a caller's own call
        await s.ref(Mover, "m-1").ask(Mover.start, "p", 40)  # its step must run: a different caller
        assert await s.ref(Purse, "p").query(Purse.get_spent) == 80


async def test_a_timer_rearmed_for_the_same_instant_fires_again(tmp_path: Path) -> None:
    async with system(tmp_path) as s:
        box = s.ref(Box, "looper")
        await box.tell(Box.loop, 3)

        async def done() -> bool:
            return await box.query(Box.get_count) >= 3  # the first run and two re-arms

        assert await eventually(done)


# ------------------------------------------------------------ failed internal writes (item 5)


async def test_a_timer_whose_firing_write_failed_fires_without_a_restart(tmp_path: Path) -> None:
    store = FaultyStore(SqliteStore(tmp_path / "t.db"))
    store.fail("write", when=lambda args: any(isinstance(w, FireTimer) for w in args[0]))
    async with system(tmp_path, store) as s:
        box = s.ref(Box, "b")
        await box.tell(Box.later, "rang")

        async def rang() -> bool:
            return "rang" in await box.query(Box.get_tags)

        assert await eventually(rang)
    assert store.failures == 1


async def test_an_outbox_message_whose_delivery_write_failed_is_delivered_without_a_restart(
    tmp_path: Path,
) -> None:
    store = FaultyStore(SqliteStore(tmp_path / "t.db"))
    store.fail("write", when=lambda args: any(isinstance(w, TakeOutbox) for w in args[0]))
    async with system(tmp_path, store) as s:
        await s.ref(Box, "b").ask(Box.tell_out, "sent", "sink")

        async def arrived() -> bool:
            return "sent" in await s.ref(Box, "sink").query(Box.get_tags)

        assert await eventually(arrived)
    assert store.failures == 1


# ------------------------------------------------------------ shutdown (item 6)


async def test_an_ask_told_system_closed_was_not_applied(tmp_path: Path) -> None:
    told: dict[str, str] = {}
    for rnd in range(5):
        s = system(tmp_path)
        await s.__aenter__()

        async def ask(tag: str, s: ActorSystem = s) -> None:
            try:
                await s.ref(Box, f"b{len(tag) % 3}").ask(Box.put, tag)
                told[tag] = "ok"
            except SystemClosed:
                told[tag] = "closed"

        tasks = [asyncio.ensure_future(ask(f"r{rnd}-{i}")) for i in range(200)]
        for _ in range(1000):  # let some of them finish, not all: then close with the rest in flight
            if sum(t.done() for t in tasks) >= 20:
                break
            await anyio.sleep(0.001)
        await s.aclose()
        await asyncio.wait(tasks, timeout=DEADLINE)
    async with system(tmp_path) as s:
        applied = [t for i in range(3) for t in await s.ref(Box, f"b{i}").query(Box.get_tags)]
    assert "closed" in told.values()  # the scenario did close with asks in flight
    assert [t for t in applied if told.get(t) == "closed"] == []


def test_aclose_returns_while_a_handler_whose_finally_asks_is_parked(tmp_path: Path) -> None:
    # in a thread of its own: a hang here is shielded from cancellation, so only a join can time it out
    async def main() -> None:
        async with system(tmp_path) as s:
            await s.ref(Box, "staller").tell(Box.stall, "other")
            await anyio.sleep(0.3)  # the handler reaches its activity (in memory: nothing to poll)

    worker = threading.Thread(target=anyio.run, args=(main,), daemon=True)
    worker.start()
    worker.join(DEADLINE * 2)
    assert not worker.is_alive(), "aclose() did not return"


# ------------------------------------------------------------ BaseExceptions (item 7)


async def test_an_ask_whose_handler_raises_a_base_exception_is_answered(tmp_path: Path) -> None:
    async with system(tmp_path) as s:
        with anyio.move_on_after(DEADLINE) as scope:
            with pytest.raises(Exception):  # noqa: B017, PT011 - any answer will do; none is the bug
                await s.ref(Box, "b").ask(Box.boom, "base")
        assert not scope.cancelled_caught, "the ask got no answer"


async def test_a_handler_awaiting_a_cancelled_helper_leaves_no_trace(tmp_path: Path) -> None:
    async with system(tmp_path) as s:
        box = s.ref(Box, "b")
        await box.ask(Box.put, "before")
        with anyio.move_on_after(DEADLINE), pytest.raises(BaseException):  # noqa: B017, PT011
            await box.ask(Box.boom, "cancelled")
        with anyio.fail_after(DEADLINE):
            after = await box.ask(Box.put, "after")
        tags = await box.query(Box.get_tags)
    async with system(tmp_path) as s:
        logged = await s.ref(Box, "b").query(Box.get_tags)
    assert (after, tags, logged) == (2, ["before", "after"], ["before", "after"])


# ------------------------------------------------------------ found on the way (not in the list)


async def test_aclose_from_another_task_closes_the_system(tmp_path: Path) -> None:
    s = system(tmp_path)
    await s.__aenter__()
    await s.ref(Box, "b").tell(Box.put, "x")
    async with anyio.create_task_group() as tg:
        tg.start_soon(s.aclose)  # as a SIGTERM handler's task would
    assert not s.running
