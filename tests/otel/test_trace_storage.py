"""Stores keep a signal's trace context: schema version 2 and the upgrade from version 1.

The contract suite (``persistence.testing``) checks that every write keeps the trace;
these tests check that a database written by version 1 (no ``trace`` columns) opens,
reads as before with no trace, is upgraded in place, and then keeps traces.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from persistence import StoreError, postgres, sqlite
from persistence.store import Accept, Accepted, Commit, SignalRecord, TimerRecord
from tests._stores import sql_at, store_at
from tests.otel.support import info, telemetry

pytestmark = pytest.mark.anyio

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _v1_statements(where: str) -> list[str]:
    if where.startswith("postgresql://"):
        return list(postgres.MIGRATIONS[1])
    return [s.strip() for s in sqlite.MIGRATIONS[1].split(";") if s.strip()]


def make_v1_database(where: str) -> None:
    """A database as version 1 of the schema left it, with a row in every signal table."""
    for stmt in _v1_statements(where):
        sql_at(where, stmt)
    sig = "'Account', 'alice', 'old-{n}', 'deposit', '{{}}', 'fp-{n}', 10.0"
    for stmt in (
        "INSERT INTO actors_meta VALUES ('application', 'durable-actors'), ('schema_version', '1')",
        "INSERT INTO events VALUES ('Account', 'alice', 1, 'Deposited', 1, '{}', 5.0)",
        f"INSERT INTO inbox (entity_type, entity_id, signal_id, handler, args, fingerprint, accepted_at) "
        f"VALUES ({sig.format(n=1)})",
        f"INSERT INTO outbox (entity_type, entity_id, signal_id, handler, args, fingerprint, accepted_at) "
        f"VALUES ({sig.format(n=2)})",
        "INSERT INTO dead_letters (entity_type, entity_id, signal_id, handler, args, fingerprint, "
        "accepted_at, error, traceback, attempts, failed_at) "
        f"VALUES ({sig.format(n=3)}, 'boom', 'tb', 3, 11.0)",
        "INSERT INTO timers VALUES ('Account', 'alice', 'tick', 'expire', '{}', 50.0, NULL)",
    ):
        sql_at(where, stmt)


def old(n: int) -> SignalRecord:
    return SignalRecord("Account", "alice", f"old-{n}", "deposit", "{}", f"fp-{n}", 10.0)


@pytest.fixture
def v1_location(store_location: str) -> str:
    make_v1_database(store_location)
    return store_location


async def test_a_version_1_database_opens_reads_and_is_upgraded(v1_location: str) -> None:
    async with store_at(v1_location) as store:
        assert [e.signal for e in await store.read_inbox(after=0, limit=10)] == [old(1)]
        assert [e.signal for e in await store.read_outbox(after=0, limit=10)] == [old(2)]
        dead = await store.read_dead_letters(limit=10)
        assert [(d.signal, d.error, d.attempts) for d in dead] == [(old(3), "boom", 3)]
        tick = TimerRecord("Account", "alice", "tick", "expire", "{}", 50.0)
        assert await store.read_timers(limit=10) == [tick]
        assert [e.seq for e in await store.read_events("Account", "alice", after=0, limit=10)] == [1]
    version = sql_at(v1_location, "SELECT value FROM actors_meta WHERE key = 'schema_version'")
    newest = postgres.SCHEMA_VERSION if v1_location.startswith("postgresql://") else sqlite.SCHEMA_VERSION
    assert version == [(str(newest),)]  # upgraded through 2 to the newest
    assert sqlite.SCHEMA_VERSION >= 2
    assert postgres.SCHEMA_VERSION >= 2


async def test_an_upgraded_database_keeps_traces_across_a_reopen(v1_location: str) -> None:
    new = SignalRecord("Account", "bob", "new-1", "deposit", "{}", "fp-new", 20.0, trace=TRACE)
    timer = TimerRecord("Account", "bob", "t", "expire", "{}", 70.0, trace=TRACE)
    async with store_at(v1_location) as store:
        assert await store.write([Accept(new)]) == [Accepted()]
        out = SignalRecord("Account", "carol", "m", "deposit", "{}", "fp-m", 21.0, trace=TRACE)
        await store.write(
            [Commit("Account", "bob", new, '{"ok":null}', 1, set_timers=(timer,), outbox=(out,), mark=False)]
        )
    async with store_at(v1_location) as store:  # a second open finds version 2: nothing to do
        assert [e.signal for e in await store.read_outbox(after=0, limit=10)] == [old(2), out]
        assert timer in await store.read_timers(limit=10)
        assert [e.signal for e in await store.read_inbox(after=0, limit=10)] == [old(1)]


async def test_a_failed_upgrade_changes_nothing(tmp_path: Path) -> None:
    """The upgrade runs in one transaction: a database it cannot finish stays at version 1."""
    where = str(tmp_path / "store.db")
    make_v1_database(where)
    sql_at(where, "ALTER TABLE outbox ADD COLUMN trace TEXT")  # a half-done upgrade by hand
    with pytest.raises(StoreError, match="duplicate column"):
        async with store_at(where):
            pass
    assert sql_at(where, "SELECT value FROM actors_meta WHERE key = 'schema_version'") == [("1",)]
    columns = [r[1] for r in sql_at(where, "PRAGMA table_info(inbox)")]
    assert "trace" not in columns


async def test_a_carried_trace_round_trips_through_the_store(store_location: str) -> None:
    """carry() -> stored with the signal -> read back -> the invocation's parent."""
    t = telemetry()
    with t.tracer_provider.get_tracer("app").start_as_current_span("sender"):
        carried = t.observer.carry()
    assert carried is not None
    signal = SignalRecord("Account", "alice", "s1", "deposit", "{}", "fp", 1.0, trace=carried)
    async with store_at(store_location) as store:
        await store.write([Accept(signal)])
    async with store_at(store_location) as store:  # as after a restart
        [entry] = await store.read_inbox(after=0, limit=10)
    run = t.observer.invocation_started(info(trace=entry.signal.trace))
    t.observer.invocation_ended(run, "ok", None)
    sender, invocation = t.span("sender"), t.span("Account.deposit")
    assert sender.context is not None
    assert invocation.parent is not None
    assert invocation.parent.span_id == sender.context.span_id
    assert invocation.parent.trace_id == sender.context.trace_id
