"""Back-pressure: a bounded mailbox per entity, and outside callers told so."""

from __future__ import annotations

from typing import ClassVar

import anyio
import attrs
import pytest

from actors import ActorSystem, Entity, InvalidArguments, Overloaded, applies, query, signal
from persistence import MemoryStore

pytestmark = pytest.mark.anyio


@attrs.frozen
class Added:
    n: int


@attrs.define
class Slow(Entity):
    total: int = 0
    gate: ClassVar[anyio.Event | None] = None

    @signal
    async def hold(self) -> None:
        assert Slow.gate is not None
        await Slow.gate.wait()

    @signal
    def add(self, n: int) -> None:
        self.emit(Added(n))

    @query
    def get(self) -> int:
        return self.total

    @applies
    def _added(self, e: Added) -> None:
        self.total += e.n


async def test_a_flooded_entity_refuses_outside_calls_and_writes_nothing() -> None:
    Slow.gate = anyio.Event()
    store = MemoryStore()
    async with ActorSystem(store, [Slow], max_mailbox=50) as system:
        ref = system.ref(Slow, "s")
        await ref.tell(Slow.hold)  # the entity is busy: what follows queues
        await anyio.wait_all_tasks_blocked()  # hold runs (out of the mailbox), waiting at the gate
        accepted = 0
        refusals: list[Overloaded] = []
        for _ in range(200):
            try:
                await ref.tell(Slow.add, 1)
                accepted += 1
            except Overloaded as e:
                refusals.append(e)
        assert accepted >= 50
        assert len(refusals) == 200 - accepted
        assert {(e.entity_id, e.limit) for e in refusals} == {("s", 50)}
        assert min(e.queued for e in refusals) >= 50
        with pytest.raises(Overloaded):
            await ref.ask(Slow.add, 1)
        assert await system.ref(Slow, "other").ask(Slow.add, 1) is None  # others are not hurt
        inbox = await store.read_inbox(after=0, limit=1000)
        assert len([e for e in inbox if e.signal.entity_id == "s"]) == accepted + 1  # hold + accepted
        Slow.gate.set()
        await system.wait_idle()
        assert await ref.query(Slow.get) == accepted  # every accepted one applied, no refused one


async def test_unbounded_when_asked() -> None:
    Slow.gate = anyio.Event()
    async with ActorSystem(MemoryStore(), [Slow], max_mailbox=None) as system:
        ref = system.ref(Slow, "s")
        await ref.tell(Slow.hold)
        for _ in range(300):
            await ref.tell(Slow.add, 1)
        Slow.gate.set()
        await system.wait_idle()
        assert await ref.query(Slow.get) == 300


def test_a_bad_bound_is_invalid_arguments() -> None:
    with pytest.raises(InvalidArguments):
        ActorSystem(MemoryStore(), [Slow], max_mailbox=0)
