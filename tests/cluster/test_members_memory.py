"""Several members and clients in one process on one shared MemoryStore."""

from __future__ import annotations

import datetime as dt

import anyio
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
    async with (
        ActorSystem(mem.connect(), [Counter], lease_ttl=TTL) as a,
        ActorSystem(mem.connect(), [Counter], serve=False, lease_ttl=TTL) as c,
    ):
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


async def _owner(system: ActorSystem, entity_type: str, entity_id: str) -> str | None:
    shard = system._kernel.shards.shard(entity_type, entity_id)
    for m in await system.members():
        if shard in m.shards:
            return m.member_id
    return None


async def _split(a: ActorSystem, b: ActorSystem) -> None:
    async def split() -> bool:
        ms = {m.member_id: m for m in await a.members()}
        mine, theirs = ms[a.member_id].shards, ms[b.member_id].shards
        return len(mine) + len(theirs) == a._kernel.shards.count and bool(mine) and bool(theirs)

    await until(split, "both members own shards")


async def test_sagas_across_members_and_a_client_move_money_once() -> None:
    from examples.bank.model import ENTITIES, Account, Transfer

    mem = MemoryStore(shared=True, shards=64)  # 16 left one member without shards in 1 run of 32,768
    async with (
        ActorSystem(mem.connect(), ENTITIES, lease_ttl=TTL) as a,
        ActorSystem(mem.connect(), ENTITIES, lease_ttl=TTL) as b,
        ActorSystem(mem.connect(), ENTITIES, serve=False, lease_ttl=TTL) as client,
    ):
        await _split(a, b)
        on_a = [f"acc-{i}" for i in range(100) if a._kernel.shards.owns("Account", f"acc-{i}")]
        on_b = [f"acc-{i}" for i in range(100) if b._kernel.shards.owns("Account", f"acc-{i}")]
        names = [*on_a[:3], *on_b[:3]]  # the accounts live on both members
        owners = {await _owner(a, "Account", n) for n in names}
        assert owners == {a.member_id, b.member_id}
        for n in names:
            await client.ref(Account, n).ask(Account.open, n)
            await client.ref(Account, n).ask(Account.deposit, 100)
        handles = []
        for i in range(12):
            src, dst = names[i % 6], names[(i + 1) % 6]
            h = await client.ref(Transfer, f"t{i}").options(key=f"t{i}").start(Transfer.start, src, dst, 10)
            handles.append(h)
        for h in handles:
            view = await h.result(timeout=20)
            assert view.status == "completed"
        again = (
            await client.ref(Transfer, "t3").options(key="t3").start(Transfer.start, names[3], names[4], 10)
        )
        assert (await again.result(timeout=5)).status == "completed"  # a repeat: answered, not re-run
        balances = [await client.ref(Account, n).query(Account.get_balance) for n in names]
        assert balances == [100] * 6  # each account sent 2 x 10 and received 2 x 10
        for n in names:  # no step applied twice
            log = await client.store.read_events("Account", n, after=0, limit=1000)
            assert [e.seq for e in log] == list(range(1, len(log) + 1))
            assert len(log) == 1 + 1 + 2 + 2  # opened, deposited, 2 debits, 2 credits


async def test_a_member_paused_past_its_lease_commits_nothing_after_the_takeover() -> None:
    mem = MemoryStore(shared=True, shards=4)
    async with ActorSystem(mem.connect(), [Counter], lease_ttl=TTL) as a:
        ref_a = a.ref(Counter, "x")
        assert await ref_a.ask(Counter.add, 1) == 1
        stuck = anyio.Event()

        async def paused(member_id: str) -> bool:  # a's heartbeats stop (as if SIGSTOPped)
            await stuck.wait()
            return False

        a._cluster.store.heartbeat = paused  # type: ignore[union-attr,method-assign]
        async with ActorSystem(mem.connect(), [Counter], lease_ttl=TTL) as b:

            async def took_over() -> bool:
                return await _owner(b, "Counter", "x") == b.member_id

            await until(took_over, "b takes x's shard after a's lease expired")
            # a still believes it owns x: its tell is accepted (anyone may accept), but its
            # commit is fenced off; b runs the signal from the inbox
            await ref_a.tell(Counter.add, 10)

            async def applied() -> bool:
                return await b.ref(Counter, "x").query(Counter.get) == 11

            await until(applied, "b applies the tell a accepted")
            assert not a._kernel.shards.owns("Counter", "x")  # a gave the shard up
            assert await a.ref(Counter, "x").ask(Counter.add, 100) == 111  # now asked through b
            log = await b.store.read_events("Counter", "x", after=0, limit=100)
            assert [e.seq for e in log] == [1, 2, 3]
            stuck.set()
