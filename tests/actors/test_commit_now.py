"""A lone commit is written at once by its caller (``WritesNow``), not handed to the
committer's task: one turn of the event loop less per durable ask when nothing else
runs (W1 at 1 in flight: +24%). With other actors running, commits are grouped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from actors import ActorSystem, StoreError
from persistence import MemoryStore, SqliteStore
from persistence.store import Commit, Write, WriteResult
from tests.models import Account

pytestmark = pytest.mark.anyio


def _spy_now(store: SqliteStore) -> list[int]:
    """Sizes of the batches with commits that ``store.write_now`` wrote (at once)."""
    sizes: list[int] = []
    real = store.write_now

    def write_now(batch: Sequence[Write]) -> list[WriteResult] | None:
        got = real(batch)
        if got is not None and any(isinstance(w, Commit) for w in batch):
            sizes.append(len(batch))
        return got

    store.write_now = write_now  # type: ignore[method-assign]
    return sizes


async def test_one_ask_at_a_time_is_written_by_its_caller(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    sizes = _spy_now(store)
    async with ActorSystem(store, entities=[Account]) as system:
        ref = system.ref(Account, "a")
        for _ in range(5):
            await ref.ask(Account.deposit, 2)
        assert sizes == [1] * 5  # each by its caller, none handed to the committer's task
    async with SqliteStore(tmp_path / "a.db") as again:  # durable: on disk
        events = await again.read_events("Account", "a", after=0, limit=100)
        assert len(events) == 5


async def test_asks_to_many_running_actors_are_still_grouped(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    sizes = _spy_now(store)
    async with ActorSystem(store, entities=[Account]) as system:
        refs = [system.ref(Account, f"a{i}") for i in range(20)]
        for r in refs:
            await r.ask(Account.deposit, 1)  # active, so the burst below runs at once
        sizes.clear()
        before = system.statistics()
        async with anyio.create_task_group() as tg:
            for r in refs:
                tg.start_soon(r.ask, Account.deposit, 1)
        after = system.statistics()
        assert len(sizes) <= 1  # at most the first, before the others ran
        writes = after.commit_writes - before.commit_writes
        batches = after.commit_batches - before.commit_batches
        assert writes == 20
        assert batches < 10  # grouped
        assert [await r.query(Account.get_balance) for r in refs] == [2] * 20


async def test_a_write_set_on_the_instance_sees_every_commit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    seen: list[Write] = []
    real = store.write

    async def write(batch: Sequence[Write]) -> list[WriteResult]:
        seen.extend(w for w in batch if isinstance(w, Commit))
        return await real(batch)

    store.write = write  # type: ignore[method-assign]
    async with ActorSystem(store, entities=[Account]) as system:
        for _ in range(3):
            await system.ref(Account, "a").ask(Account.deposit, 1)
    assert len(seen) == 3


class CountingStore(MemoryStore):
    """A store whose ``write`` does more than its base's: it must see every write."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        self.commits += sum(isinstance(w, Commit) for w in batch)
        return await super().write(batch)


async def test_a_store_that_overrides_write_gets_every_commit() -> None:
    store = CountingStore()
    async with ActorSystem(store, entities=[Account]) as system:
        for _ in range(4):
            await system.ref(Account, "a").ask(Account.deposit, 1)
        assert store.commits == 4


async def test_a_failing_write_now_fails_its_caller_and_nothing_else(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    real = store.write_now
    failures = [sqlite3.OperationalError("disk I/O error")]

    def write_now(batch: Sequence[Write]) -> list[WriteResult] | None:
        if failures:
            raise failures.pop()
        return real(batch)

    store.write_now = write_now  # type: ignore[method-assign]
    async with ActorSystem(store, entities=[Account]) as system:
        ref = system.ref(Account, "a")
        with pytest.raises(StoreError, match="disk I/O error"):
            await ref.ask(Account.deposit, 5)
        assert await ref.ask(Account.deposit, 1) == 1  # the failed one changed nothing
        assert await ref.query(Account.get_balance) == 1
