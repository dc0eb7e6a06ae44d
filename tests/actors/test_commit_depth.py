"""A store with ``write_depth`` 2 (SQLite, single owner) is given the next batch while
one is being written: it writes it as soon as the first is done, beside the event
loop's work, instead of after the committer has seen the first one's end.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from actors import ActorSystem, StoreError
from persistence import MemoryStore
from persistence.store import Commit, Write, WriteResult
from tests.models import Account

pytestmark = pytest.mark.anyio


class Gated(MemoryStore):
    """Holds the first batch with a commit until ``let_go``; says when a second one
    with a commit arrives while the first is held; fails the first if ``fail`` is set."""

    write_depth = 2

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.held = 0
        self.first = anyio.Event()
        self.second = anyio.Event()
        self.let_go = anyio.Event()
        self.fail = False

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        if self.armed and any(isinstance(w, Commit) for w in batch):
            self.held += 1
            if self.held == 1:
                self.first.set()
                await self.let_go.wait()
                if self.fail:
                    raise StoreError("the disk said no")
            elif self.held == 2:
                self.second.set()
        return await super().write(batch)


async def _two_asks(store: Gated, system: ActorSystem) -> tuple[list[object], list[object]]:
    a, b = system.ref(Account, "a"), system.ref(Account, "b")
    await a.query(Account.get_balance)
    await b.query(Account.get_balance)
    store.armed = True
    got_a: list[object] = []
    got_b: list[object] = []

    async def ask(ref: object, out: list[object]) -> None:
        try:
            out.append(await ref.ask(Account.deposit, 5))  # type: ignore[attr-defined]
        except StoreError as e:
            out.append(e)

    async with anyio.create_task_group() as tg:
        try:
            tg.start_soon(ask, a, got_a)
            with anyio.fail_after(5):
                await store.first.wait()  # a's batch is held by the store
            tg.start_soon(ask, b, got_b)
            with anyio.fail_after(5):  # with one batch at a time, b's would wait for a's
                await store.second.wait()
            assert got_a == []
        finally:
            store.let_go.set()  # a failed check must not leave the held write hanging
    return got_a, got_b


async def test_the_next_batch_reaches_the_store_while_one_is_written() -> None:
    store = Gated()
    async with ActorSystem(store, entities=[Account]) as system:
        got_a, got_b = await _two_asks(store, system)
        assert got_a == [5]
        assert got_b == [5]
        assert await system.ref(Account, "a").query(Account.get_balance) == 5
    assert [len(store._d.events[("Account", k)]) for k in ("a", "b")] == [1, 1]


async def test_a_failed_batch_leaves_the_one_behind_it_alone() -> None:
    store = Gated()
    store.fail = True
    async with ActorSystem(store, entities=[Account]) as system:
        got_a, got_b = await _two_asks(store, system)
        assert isinstance(got_a[0], StoreError)
        assert got_b == [5]
        a = system.ref(Account, "a")
        assert await a.query(Account.get_balance) == 0  # rebuilt from what is stored
        assert await a.ask(Account.deposit, 1) == 1
    assert len(store._d.events[("Account", "a")]) == 1  # the failed batch wrote nothing


async def test_close_writes_both_batches_under_way() -> None:
    store = Gated()
    system = ActorSystem(store, entities=[Account])
    results: list[object] = []
    async with system:
        a, b = system.ref(Account, "a"), system.ref(Account, "b")
        await a.query(Account.get_balance)
        await b.query(Account.get_balance)
        store.armed = True
        async with anyio.create_task_group() as tg:
            try:
                tg.start_soon(lambda: _collect(a, results))
                with anyio.fail_after(5):
                    await store.first.wait()
                tg.start_soon(lambda: _collect(b, results))
                with anyio.fail_after(5):
                    await store.second.wait()
                closing = anyio.Event()

                async def close() -> None:
                    closing.set()
                    await system.aclose()  # waits for the batch under way, then closes

                tg.start_soon(close)
                await closing.wait()
                await anyio.wait_all_tasks_blocked()
                assert results == [5]  # b's batch written and answered, a's still held
            finally:
                store.let_go.set()
    assert sorted(results) == [5, 5]  # type: ignore[type-var]
    assert [len(store._d.events[("Account", k)]) for k in ("a", "b")] == [1, 1]


async def _collect(ref: object, out: list[object]) -> None:
    out.append(await ref.ask(Account.deposit, 5))  # type: ignore[attr-defined]
