"""Several members and clients in one process on one shared MemoryStore."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from actors import ActorSystem, Entity, applies, query, signal
from persistence import MemoryStore
from persistence.testing import until

pytestmark = pytest.mark.anyio

TTL = dt.timedelta(seconds=1)


@attrs.frozen
class Added:
    n: int


@attrs.define
class Counter(Entity):
    total: int = 0

    @signal
    def add(self, n: int) -> int:
        self.emit(Added(n))
        return self.total

    @query
    def get(self) -> int:
        return self.total

    @applies
    def _added(self, e: Added) -> None:
        self.total += e.n


async def test_a_lone_member_owns_every_shard_and_a_client_none() -> None:
    mem = MemoryStore(shared=True, shards=16)
    async with ActorSystem(mem.connect(), [Counter], lease_ttl=TTL) as a:
        async with ActorSystem(mem.connect(), [Counter], serve=False, lease_ttl=TTL) as c:
            ms = {m.member_id: m for m in await c.members()}
            assert ms[a.member_id].shards == tuple(range(16))
            assert ms[c.member_id].shards == ()
            assert not ms[c.member_id].serves
            for i in range(20):
                assert await c.ref(Counter, f"c{i}").ask(Counter.add, i) == i
            await c.ref(Counter, "c1").tell(Counter.add, 5)

            async def seen() -> bool:
                return await c.ref(Counter, "c1").query(Counter.get) == 6

            await until(seen, "the tell from the client is applied by the member")
            assert await a.ref(Counter, "c1").query(Counter.get) == 6


async def test_two_members_split_the_shards_and_hand_off_on_leave() -> None:
    mem = MemoryStore(shared=True, shards=16)
    async with ActorSystem(mem.connect(), [Counter], lease_ttl=TTL) as a:
        for i in range(20):
            await a.ref(Counter, f"c{i}").ask(Counter.add, 1)
        async with ActorSystem(mem.connect(), [Counter], lease_ttl=TTL) as b:

            async def split() -> bool:
                ms = {m.member_id: m for m in await b.members()}
                return (
                    len(ms[a.member_id].shards) + len(ms[b.member_id].shards) == 16
                    and bool(ms[b.member_id].shards)
                    and bool(ms[a.member_id].shards)
                )

            await until(split, "the second member gets a share")
            for i in range(20):
                assert await b.ref(Counter, f"c{i}").ask(Counter.add, 1) == 2
                assert await a.ref(Counter, f"c{i}").ask(Counter.add, 1) == 3

        # b left: a owns everything again at once
        async def back() -> bool:
            ms = [m for m in await a.members() if m.status == "alive"]
            return len(ms) == 1 and len(ms[0].shards) == 16

        await until(back, "a takes b's shards back after b left")
        for i in range(20):
            assert await a.ref(Counter, f"c{i}").query(Counter.get) == 3
