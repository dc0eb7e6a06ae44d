"""Asks waiting for another member's answer read their processed marks in one store
read per turn of the loop (``read_marks`` on PostgreSQL); a failing batch falls back
to one read per mark, so one bad key never fails the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from actors import ActorSystem
from actors._ids import keyed_id
from actors._marks import Key, MarkReads
from actors._tasks import Tasks
from actors.errors import StoreError
from examples.bank.model import Account
from persistence import PostgresStore
from persistence.store import ProcessedMark

pytestmark = pytest.mark.anyio


class _Store:
    """Marks of the keys whose signal id starts with ``done``; ``bad`` fails any read."""

    def __init__(self) -> None:
        self.batches: list[list[Key]] = []
        self.singles: list[Key] = []

    def _mark(self, key: Key) -> ProcessedMark | None:
        return ProcessedMark(key[2], "fp", f'{{"ok":"{key[1]}"}}', 0.0) if key[2].startswith("done") else None

    async def read_marks(self, keys: Sequence[Key]) -> dict[Key, ProcessedMark]:
        self.batches.append(list(keys))
        await anyio.sleep(0.01)
        if any(k[2] == "bad" for k in keys):
            raise StoreError("read: bad key")
        if any(k[2] == "odd" for k in keys):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return {k: m for k in keys if (m := self._mark(k)) is not None}

    async def read_mark(self, entity_type: str, entity_id: str, signal_id: str) -> ProcessedMark | None:
        self.singles.append((entity_type, entity_id, signal_id))
        if signal_id == "bad":
            raise StoreError("read: bad key")
        if signal_id == "odd":  # a store bug that is no StoreError
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return self._mark((entity_type, entity_id, signal_id))


class _Kernel:
    def __init__(self, store: _Store) -> None:
        self.store = store
        self.tasks = Tasks(logging.getLogger("actors.test"))
        self.tasks.state = "running"


async def test_the_reads_of_one_turn_are_one_store_read() -> None:
    store = _Store()
    reads = MarkReads(_Kernel(store))  # type: ignore[arg-type]
    keys = [("Account", f"a{i}", "done" if i % 2 else "pending") for i in range(100)]
    got = await asyncio.gather(*(reads.read(k) for k in [*keys, keys[1]]))
    assert len(store.batches) == 1
    assert len(store.batches[0]) == 100
    assert store.singles == []
    assert [m is not None for m in got[:100]] == [i % 2 == 1 for i in range(100)]
    assert got[100] == got[1]
    later = await reads.read(keys[3])  # a later turn: a batch of its own
    assert later is not None
    assert len(store.batches) == 2


async def test_one_bad_key_fails_only_its_own_read() -> None:
    store = _Store()
    reads = MarkReads(_Kernel(store))  # type: ignore[arg-type]
    good = reads.read(("Account", "a1", "done-1"))
    bad = reads.read(("Account", "a2", "bad"))
    results: list[Any] = list(await asyncio.gather(good, bad, return_exceptions=True))
    assert isinstance(results[0], ProcessedMark)
    assert results[0].signal_id == "done-1"
    assert isinstance(results[1], StoreError)
    assert len(store.batches) == 1
    assert len(store.singles) == 2


async def test_a_read_failing_with_no_store_error_fails_only_its_own_readers() -> None:
    store = _Store()
    reads = MarkReads(_Kernel(store))  # type: ignore[arg-type]
    keys = [("Account", "a1", "done-1"), ("Account", "a2", "odd"), ("Account", "a3", "pending")]
    with anyio.fail_after(5):  # every reader is answered: none is left waiting
        results: list[Any] = list(await asyncio.gather(*map(reads.read, keys), return_exceptions=True))
    assert isinstance(results[0], ProcessedMark)
    assert isinstance(results[1], StoreError)
    assert "surrogates" in str(results[1])
    assert results[2] is None


async def test_a_reader_cancelled_while_waiting_leaves_the_others_their_answer() -> None:
    store = _Store()
    reads = MarkReads(_Kernel(store))  # type: ignore[arg-type]
    doomed = asyncio.ensure_future(reads.read(("Account", "a1", "done-1")))
    other = asyncio.ensure_future(reads.read(("Account", "a1", "done-1")))
    await asyncio.sleep(0.005)  # both wait in the batch's read
    doomed.cancel()
    mark = await other
    assert mark is not None
    assert mark.outcome == '{"ok":"a1"}'
    assert doomed.cancelled()


async def test_postgres_reads_many_marks_in_one_statement(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    async with ActorSystem(store, [Account]) as system:
        for i in range(3):
            ref = system.ref(Account, f"a{i}").options(key=f"open-{i}")
            await ref.ask(Account.open, f"owner {i}")
        keys = [("Account", f"a{i}", keyed_id(f"open-{i}")) for i in range(3)]
        missing = ("Account", "a0", "k:never")
        marks = await store.read_marks([*keys, missing])
        assert set(marks) == set(keys)
        for k in keys:
            assert marks[k] == await store.read_mark(*k)
        assert await store.read_marks([]) == {}
        for bad in (["Account"], [("Account", "a0")], [("Account", "a0", 7)], "abc"):
            with pytest.raises(TypeError, match="read_marks keys"):
                await store.read_marks(bad)  # type: ignore[arg-type]
        # text the server cannot take fails this read only, as a StoreError
        with pytest.raises(StoreError):
            await store.read_marks([("Account", "a\x00", "k:x")])
        assert set(await store.read_marks(keys)) == set(keys)
