"""Guarantee 6: snapshots every N events; activation = newest usable snapshot + tail.

A snapshot that cannot be used (corrupt, other schema) is skipped with a warning;
an event that cannot be read is a CorruptRecord naming entity and sequence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest

from actors import ActorSystem, CorruptRecord, Entity
from persistence import SqliteStore, Store
from persistence.store import Commit, NewEvent, SaveSnapshot, SignalRecord, SnapshotRecord, StoredEvent
from tests.actors.support import Probe, StoreFactory, make_counter, sql

pytestmark = pytest.mark.anyio


def counter() -> type[Entity]:
    return make_counter(Probe(), every=10)


def spy_reads(store: Store) -> list[tuple[int, int]]:
    """Record (after, how many events returned) of every read_events call."""
    reads: list[tuple[int, int]] = []
    read: Callable[..., Awaitable[list[StoredEvent]]] = store.read_events

    async def read_events(entity_type: str, entity_id: str, *, after: int, limit: int) -> list[StoredEvent]:
        events = await read(entity_type, entity_id, after=after, limit=limit)
        reads.append((after, len(events)))
        return events

    store.read_events = read_events  # type: ignore[method-assign]
    return reads


async def fill(store: Store, events: int = 25) -> None:
    cls = counter()
    async with ActorSystem(store, [cls]) as system:
        ref = system.ref(cls, "c")
        for _ in range(events):
            await ref.ask("add", 1)


async def write_raw(store: Store, *writes: SaveSnapshot | Commit) -> None:
    async with store:
        await store.write(list(writes))


def snapshot(seq: int, state: str, schema: str) -> SaveSnapshot:
    return SaveSnapshot(SnapshotRecord("Counter", "c", seq, schema, state, 0.0), keep=5)


async def current_schema(store: Store) -> str:
    async with store:
        return (await store.read_snapshots("Counter", "c"))[0].schema


async def test_a_snapshot_is_taken_every_n_events(store_factory: StoreFactory) -> None:
    await fill(store_factory())
    store = store_factory()
    async with store:
        snaps = await store.read_snapshots("Counter", "c")
    assert [s.seq for s in snaps] == [20, 10]
    assert json.loads(snaps[0].state)["total"] == 20
    assert json.loads(snaps[1].state)["total"] == 10


async def test_snapshots_are_rows_in_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await fill(SqliteStore(path))
    rows = sql(path, "SELECT seq, state FROM snapshots WHERE entity_id = 'c' ORDER BY seq")
    assert [(seq, json.loads(state)["total"]) for seq, state in rows] == [(10, 10), (20, 20)]
    assert sql(path, "SELECT count(*) FROM events WHERE entity_id = 'c'") == [(25,)]


async def test_activation_loads_the_newest_snapshot_and_replays_only_the_tail(
    store_factory: StoreFactory,
) -> None:
    await fill(store_factory())
    store = store_factory()
    reads = spy_reads(store)
    cls = counter()
    async with ActorSystem(store, [cls]) as system:
        assert await system.ref(cls, "c").query("get_total") == 25
        assert reads == [(20, 5)]
        assert await system.ref(cls, "c").ask("add", 1) == 26
        assert reads == [(20, 5)]  # activated once


async def test_without_snapshots_activation_replays_everything(store_factory: StoreFactory) -> None:
    store = store_factory()
    cls = make_counter(Probe(), every=0)
    async with ActorSystem(store, [cls]) as system:
        for _ in range(25):
            await system.ref(cls, "c").ask("add", 1)
        assert await store.read_snapshots("Counter", "c") == []
    store = store_factory()
    reads = spy_reads(store)
    async with ActorSystem(store, [cls]) as system:
        assert await system.ref(cls, "c").query("get_total") == 25
    assert reads == [(0, 25)]


async def test_a_corrupt_snapshot_in_the_file_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    await fill(SqliteStore(path))
    sql(path, "UPDATE snapshots SET state = 'garbage' WHERE seq = 20")
    store = SqliteStore(path)
    reads = spy_reads(store)
    cls = counter()
    caplog.set_level(logging.WARNING, logger="actors")
    async with ActorSystem(store, [cls]) as system:
        assert await system.ref(cls, "c").query("get_total") == 25
    assert reads == [(10, 15)]  # fell back to the snapshot at 10
    (warning,) = [r for r in caplog.records if r.name == "actors" and r.levelno == logging.WARNING]
    assert "snapshot at seq 20 of Counter/c" in warning.getMessage()


@pytest.mark.parametrize(
    "state",
    ["garbage", '{"total": "many"}', '{"total": 1', "[]", "null"],
)
async def test_an_unreadable_snapshot_is_skipped(
    store_factory: StoreFactory, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    await fill(store_factory())
    schema = await current_schema(store_factory())
    await write_raw(store_factory(), snapshot(25, state, schema))
    store = store_factory()
    reads = spy_reads(store)
    cls = counter()
    caplog.set_level(logging.WARNING, logger="actors")
    async with ActorSystem(store, [cls]) as system:
        assert await system.ref(cls, "c").query("get_total") == 25
        assert await system.ref(cls, "c").ask("add", 1) == 26
    assert reads == [(20, 5)]
    assert any("snapshot at seq 25 of Counter/c" in r.getMessage() for r in caplog.records)


async def test_a_snapshot_of_another_schema_is_skipped(
    store_factory: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await fill(store_factory())
    await write_raw(store_factory(), snapshot(25, '{"total": 999}', "another-schema"))
    store = store_factory()
    reads = spy_reads(store)
    cls = counter()
    caplog.set_level(logging.WARNING, logger="actors")
    async with ActorSystem(store, [cls]) as system:
        assert await system.ref(cls, "c").query("get_total") == 25
    assert reads == [(20, 5)]
    assert any("another state schema" in r.getMessage() for r in caplog.records)


async def test_snapshots_of_an_older_class_are_skipped_after_the_fields_change(
    store_factory: StoreFactory,
) -> None:
    await fill(store_factory())

    @attrs.define
    class Grown(counter()):  # type: ignore[misc]
        extra: int = 0
        entity_name = "Counter"

    store = store_factory()
    reads = spy_reads(store)
    async with ActorSystem(store, [Grown]) as system:
        assert await system.ref(Grown, "c").query("get_total") == 25
    assert reads == [(0, 25)]  # both snapshots skipped: a full replay


async def test_an_unreadable_event_in_the_file_is_a_corrupt_record(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await fill(SqliteStore(path))
    sql(path, "UPDATE events SET data = 'not json' WHERE entity_id = 'c' AND seq = 23")
    cls = counter()
    async with ActorSystem(SqliteStore(path), [cls]) as system:
        ref = system.ref(cls, "c")
        with pytest.raises(CorruptRecord, match=r"event 23 of Counter/c") as info:
            await ref.ask("add", 1)
        assert isinstance(info.value, CorruptRecord)
        with pytest.raises(CorruptRecord, match=r"event 23 of Counter/c"):
            await ref.query("get_total")
        assert await system.ref(cls, "other").ask("add", 3) == 3  # the rest of the system works
    assert sql(path, "SELECT count(*) FROM events WHERE entity_id = 'c'") == [(25,)]


async def test_an_event_of_an_unknown_type_is_a_corrupt_record(store_factory: StoreFactory) -> None:
    await fill(store_factory())
    sig = SignalRecord("Counter", "c", "k:raw", "add", "{}", "x", 0.0)
    bogus = Commit("Counter", "c", sig, "{}", 26, (NewEvent("no.such.Event", 1, "{}"),), from_inbox=False)
    await write_raw(store_factory(), bogus)
    cls = counter()
    async with ActorSystem(store_factory(), [cls]) as system:
        with pytest.raises(CorruptRecord, match=r"event 26 of Counter/c.*no\.such\.Event"):
            await system.ref(cls, "c").query("get_total")
        with pytest.raises(CorruptRecord, match=r"event 26 of Counter/c"):
            await system.ref(cls, "c").ask("add", 1)
        assert await system.store.last_seq("Counter", "c") == 26
