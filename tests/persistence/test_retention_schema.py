"""Schema version 3: the retention indexes, and the upgrade of a version 2 database.

Version 3 adds indexes on ``processed(processed_at)`` and ``dead_letters(failed_at)``
so that :class:`~persistence.store.Prune` finds old rows without scanning the tables.
A database written by version 2 opens, keeps its rows, gets the indexes and prunes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from persistence import StoreError, postgres, sqlite
from persistence.store import Accept, Accepted, Duplicate, Prune, Pruned, SignalRecord
from tests._stores import sql_at, store_at

pytestmark = pytest.mark.anyio

INDEXES = {"processed_by_time", "dead_letters_by_time"}


def _statements(where: str, version: int) -> list[str]:
    if where.startswith("postgresql://"):
        return list(postgres.MIGRATIONS[version])
    return [s.strip() for s in sqlite.MIGRATIONS[version].split(";") if s.strip()]


def newest(where: str) -> str:
    """The schema version this code brings a database of that store to (3 or later)."""
    return str(postgres.SCHEMA_VERSION if where.startswith("postgresql://") else sqlite.SCHEMA_VERSION)


def make_v2_database(where: str) -> None:
    """A database as version 2 of the schema left it, with marks and dead letters."""
    for stmt in _statements(where, 1) + _statements(where, 2):
        sql_at(where, stmt)
    sig = "'Account', 'alice', 'dead-{n}', 'deposit', '{{}}', 'fp-{n}', 10.0, NULL"
    for stmt in (
        "INSERT INTO actors_meta VALUES ('application', 'durable-actors'), ('schema_version', '2')",
        "INSERT INTO processed VALUES ('Account', 'alice', 'old', 'fp-old', '{}', 100.0)",
        "INSERT INTO processed VALUES ('Account', 'alice', 'new', 'fp-new', '{}', 900.0)",
        *(
            "INSERT INTO dead_letters (entity_type, entity_id, signal_id, handler, args, fingerprint, "
            f"accepted_at, trace, error, traceback, attempts, failed_at) VALUES ({sig.format(n=n)}, "
            f"'boom', 'tb', 3, {t})"
            for n, t in ((1, 50.0), (2, 60.0), (3, 70.0))
        ),
    ):
        sql_at(where, stmt)


def indexes(where: str) -> set[str]:
    if where.startswith("postgresql://"):
        rows = sql_at(where, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
    else:
        rows = sql_at(where, "SELECT name FROM sqlite_master WHERE type = 'index'")
    return {str(r[0]) for r in rows}


def version(where: str) -> str:
    [(v,)] = sql_at(where, "SELECT value FROM actors_meta WHERE key = 'schema_version'")
    return str(v)


@pytest.fixture
def v2_location(store_location: str) -> str:
    make_v2_database(store_location)
    return store_location


def signal(sid: str) -> SignalRecord:
    return SignalRecord("Account", "alice", sid, "deposit", "{}", f"fp-{sid}", 1.0)


async def test_a_new_database_has_the_retention_indexes(store_location: str) -> None:
    async with store_at(store_location):
        pass
    assert version(store_location) == newest(store_location)
    assert indexes(store_location) >= INDEXES


async def test_a_version_2_database_is_upgraded_and_prunes(v2_location: str) -> None:
    assert not INDEXES & indexes(v2_location)
    async with store_at(v2_location) as store:
        assert [d.signal.signal_id for d in await store.read_dead_letters(limit=10)] == [
            "dead-1",
            "dead-2",
            "dead-3",
        ]
        assert await store.read_mark("Account", "alice", "old") is not None
        pruned = await store.write([Prune(marks_before=500.0, dead_letters_before=55.0, keep_dead_letters=1)])
        assert pruned == [Pruned(marks=1, dead_letters=2, journals=0)]
        assert [d.signal.signal_id for d in await store.read_dead_letters(limit=10)] == ["dead-3"]
        assert await store.write([Accept(signal("old")), Accept(signal("new"))]) == [
            Accepted(),
            Duplicate("fp-new", await store.read_mark("Account", "alice", "new")),
        ]
    assert version(v2_location) == newest(v2_location)
    assert indexes(v2_location) >= INDEXES
    async with store_at(v2_location) as store:  # a second open finds the newest: nothing to do
        assert await store.read_mark("Account", "alice", "old") is None


def test_pruning_by_age_uses_the_indexes(tmp_path: Path) -> None:
    """SQLite's plan for the age deletes searches the new indexes, not the whole table."""
    where = str(tmp_path / "store.db")
    for stmt in _statements(where, 1) + _statements(where, 2) + _statements(where, 3):
        sql_at(where, stmt)
    plans = {
        "processed_by_time": "EXPLAIN QUERY PLAN DELETE FROM processed WHERE processed_at < 5 "
        "AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.entity_type = processed.entity_type "
        "AND i.entity_id = processed.entity_id AND i.signal_id = processed.signal_id)",
        "dead_letters_by_time": "EXPLAIN QUERY PLAN DELETE FROM dead_letters WHERE failed_at < 5",
    }
    for index, query in plans.items():
        detail = " ".join(str(r[-1]) for r in sql_at(where, query))
        assert f"USING INDEX {index}" in detail or f"USING COVERING INDEX {index}" in detail, detail


async def test_a_failed_upgrade_to_3_changes_nothing(tmp_path: Path) -> None:
    """The upgrade runs in one transaction: a database it cannot finish stays at version 2."""
    where = str(tmp_path / "store.db")
    make_v2_database(where)
    sql_at(where, "CREATE INDEX dead_letters_by_time ON dead_letters (failed_at)")  # half done by hand
    with pytest.raises(StoreError, match="already exists"):
        async with store_at(where):
            pass
    assert version(where) == "2"
    assert "processed_by_time" not in indexes(where)
