"""The runtime runs unchanged on uvloop's event loop (the ``uvloop`` extra)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import anyio
import attrs
import pytest

from actors import ActorSystem, Entity, applies, query, signal
from persistence import SqliteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"use_uvloop": True})


@attrs.frozen
class Added:
    n: int


async def _double(n: int) -> int:
    return 2 * n


@attrs.define
class Counter(Entity):
    total: int = 0

    @signal
    async def add_twice(self, n: int) -> int:
        doubled = await self.run(_double, n)
        self.emit(Added(doubled))
        self.schedule(Counter.add, 1, after=dt.timedelta(milliseconds=10), key="later")
        return self.total

    @signal
    def add(self, n: int) -> None:
        self.emit(Added(n))

    @query
    def get(self) -> int:
        return self.total

    @applies
    def _added(self, e: Added) -> None:
        self.total += e.n


async def test_tell_ask_activity_and_timer_on_uvloop(tmp_path: Path) -> None:
    import uvloop

    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    async with ActorSystem(SqliteStore(tmp_path / "db"), [Counter]) as system:
        c = system.ref(Counter, "c")
        await c.tell(Counter.add, 1)
        assert await c.ask(Counter.add_twice, 5) == 11
        with anyio.fail_after(5):
            while await c.query(Counter.get) != 12:  # noqa: ASYNC110 - the timer runs on the real clock
                await anyio.sleep(0.005)
    async with ActorSystem(SqliteStore(tmp_path / "db"), [Counter]) as system:
        assert await system.ref(Counter, "c").query(Counter.get) == 12
