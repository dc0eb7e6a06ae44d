"""Fan-out: a parent workflow starts 200 children and awaits every result while it keeps
answering signals and queries (the 1,000 and 10,000 figures are bench case W10)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import attrs
import pytest

from actors import ActorSystem, Entity, applies, query, signal
from actors.testing import VirtualClock
from persistence import SqliteStore

pytestmark = [pytest.mark.anyio]

CHILDREN = 200


@attrs.frozen
class Done:
    n: int


@attrs.define
class Kid(Entity):
    n: int = -1

    @signal
    async def work(self, n: int) -> int:
        await self.sleep(dt.timedelta(minutes=1 + n % 7))  # every child parks first
        self.emit(Done(n))
        return n * n

    @query
    def get_n(self) -> int:
        return self.n

    @applies
    def _done(self, e: Done) -> None:
        self.n = e.n


@attrs.frozen
class Pinged:
    count: int


@attrs.define
class Boss(Entity):
    pings: int = 0

    @signal
    async def fan_out(self, count: int) -> int:
        handles = [await self.ref(Kid, f"k{i}").start(Kid.work, i) for i in range(count)]
        total = 0
        for h in handles:
            total += await h.result()
        return total

    @signal
    def ping(self) -> int:
        self.emit(Pinged(self.pings + 1))
        return self.pings  # emit applied the event

    @query
    def get_pings(self) -> int:
        return self.pings

    @applies
    def _pinged(self, e: Pinged) -> None:
        self.pings = e.count


async def test_a_parent_awaits_200_children_and_answers_while_it_waits(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with ActorSystem(SqliteStore(tmp_path / "db"), [Boss, Kid], clock=clock) as system:
        boss = system.ref(Boss, "b")
        handle = await boss.start(Boss.fan_out, CHILDREN)
        await clock.advance(dt.timedelta(0))
        await system.wait_idle()
        # every child started and parked; the parent waits on the first result
        assert [await system.ref(Kid, f"k{i}").query(Kid.get_n) for i in (0, 99, 199)] == [-1, -1, -1]
        for expected in (1, 2, 3):
            assert await boss.ask(Boss.ping) == expected  # a signal runs while it waits
            assert await boss.query(Boss.get_pings) == expected  # and a query answers
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0.05)  # still waiting: no child is done
        await clock.advance(dt.timedelta(minutes=3))  # children with n % 7 < 3 finish
        await system.wait_idle()
        assert await boss.ask(Boss.ping) == 4  # still serving, part-way through the results
        await clock.advance(dt.timedelta(minutes=10))
        assert await handle.result(timeout=30) == sum(i * i for i in range(CHILDREN))
        ns = [await system.ref(Kid, f"k{i}").query(Kid.get_n) for i in range(CHILDREN)]
        assert ns == list(range(CHILDREN))  # each child ran once, on its own id
        assert await boss.query(Boss.get_pings) == 4
