"""PostgresStore beyond the contract: schema ownership, the owner lock, bad input and faults.

Every fault is real where it can be: a port nothing listens on, a backend ended with
``pg_terminate_backend`` while the batch waits on a lock, a statement timeout, a
read-only database, a tablespace on a full tmpfs, a server stopped and started again.
Each must give a typed StoreError and lose nothing that was acknowledged.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from persistence import (
    CommitUnknown,
    NotOurDatabase,
    PostgresStore,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreTimeout,
    StoreUnavailable,
)
from persistence.pg_embedded import EmbeddedPostgres, free_port
from persistence.postgres import SCHEMA_VERSION, redact
from persistence.store import Accept, Accepted, Commit, Committed, NewEvent, SignalRecord
from tests._stores import PgServer, sql_at, with_database

pytestmark = pytest.mark.anyio


def sig(signal_id: str, entity_id: str = "alice") -> SignalRecord:
    return SignalRecord("Account", entity_id, signal_id, "deposit", "{}", f"fp-{signal_id}", 1.0)


def commit(signal_id: str, first_seq: int, *data: str, entity_id: str = "alice") -> Commit:
    events = tuple(NewEvent("bank.Deposited", 1, d) for d in data)
    s = sig(signal_id, entity_id)
    return Commit("Account", entity_id, s, '{"ok":null}', first_seq, events, 2.0, from_inbox=False)


async def events_of(store: PostgresStore, entity_id: str = "alice") -> list[str]:
    return [e.data for e in await store.read_events("Account", entity_id, after=0, limit=10_000)]


@asynccontextmanager
async def admin(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def wait_for_lock_wait(conn: asyncpg.Connection) -> int:
    """The pid of the store's writer once it waits on a lock (polled under a deadline)."""
    with anyio.fail_after(10):
        while True:
            pid = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'durable-actors%' AND wait_event_type = 'Lock'"
            )
            if pid is not None:
                return int(pid)
            await anyio.sleep(0.01)


# ---------------------------------------------------------------- schema


async def test_a_new_database_gets_the_schema_and_its_version(pg_dsn: str) -> None:
    async with PostgresStore(pg_dsn):
        pass
    assert sql_at(pg_dsn, "SELECT key, value FROM actors_meta ORDER BY key") == [
        ("application", "durable-actors"),
        ("schema_version", str(SCHEMA_VERSION)),
        ("shards", "256"),
    ]
    async with PostgresStore(pg_dsn) as store:  # a second open migrates nothing
        assert await store.write([Accept(sig("s1"))]) == [Accepted()]


async def test_a_database_of_another_application_is_refused_and_left_untouched(pg_dsn: str) -> None:
    async with admin(pg_dsn) as conn:
        await conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, total numeric)")
        await conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    with pytest.raises(NotOurDatabase, match="invoices"):
        async with PostgresStore(pg_dsn):
            pass
    tables = sql_at(pg_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert tables == [("invoices",)]
    assert sql_at(pg_dsn, "SELECT id, total::text FROM invoices") == [(1, "9.5")]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([("application", "someone-else"), ("schema_version", "1")], "someone-else"),
        ([("application", "durable-actors"), ("schema_version", "x")], "no valid schema version"),
        ([("application", "durable-actors"), ("schema_version", "99")], "newer than this code"),
    ],
)
async def test_a_foreign_or_newer_meta_table_is_refused(
    pg_dsn: str, rows: list[tuple[str, str]], match: str
) -> None:
    async with admin(pg_dsn) as conn:
        await conn.execute("CREATE TABLE actors_meta (key text PRIMARY KEY, value text NOT NULL)")
        await conn.executemany("INSERT INTO actors_meta VALUES ($1, $2)", rows)
    with pytest.raises(NotOurDatabase, match=match):
        async with PostgresStore(pg_dsn):
            pass
    assert sql_at(pg_dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(1,)]


# ---------------------------------------------------------------- several stores


async def test_a_second_store_on_the_same_database_opens_and_shares_it(pg_dsn: str) -> None:
    """No owner lock any more: stores share a database (the fence keeps one writer per shard)."""
    async with PostgresStore(pg_dsn) as first, PostgresStore(pg_dsn, lock_wait=0) as second:
        assert await first.write([Accept(sig("s1"))]) == [Accepted()]
        assert await second.write([Accept(sig("s2"))]) == [Accepted()]
        for store in (first, second):
            assert [e.signal.signal_id for e in await store.read_inbox(after=0, limit=10)] == ["s1", "s2"]


async def test_stores_opening_a_new_database_at_once_migrate_it_once(pg_dsn: str) -> None:
    stores = [PostgresStore(pg_dsn, shards=8) for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.__aenter__)
    try:
        assert {s.shard_count for s in stores} == {8}
        assert sql_at(pg_dsn, "SELECT count(*) FROM shards") == [(8,)]
    finally:
        for store in stores:
            await store.__aexit__(None, None, None)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dsn": ""}, TypeError),
        ({"dsn": 42}, TypeError),
        ({"dsn": "mysql://root@localhost/x"}, ValueError),
        ({"max_connections": 1}, ValueError),
        ({"min_connections": 0}, ValueError),
        ({"min_connections": 5, "max_connections": 4}, ValueError),
        ({"max_connections": 2.5}, TypeError),
        ({"statement_timeout": 0}, ValueError),
        ({"statement_timeout": -1.0}, ValueError),
        ({"lock_wait": float("nan")}, ValueError),
        ({"shards": 0}, ValueError),
        ({"shards": 65_537}, ValueError),
        ({"shards": True}, ValueError),
        ({"shards": "8"}, ValueError),
        ({"idle_in_transaction_timeout": 0}, ValueError),
        ({"idle_in_transaction_timeout": float("inf")}, ValueError),
        ({"connect_timeout": -1}, ValueError),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs: dict[str, object], error: type[Exception]) -> None:
    args = {"dsn": "postgresql://u@127.0.0.1:5432/db", **kwargs}
    with pytest.raises(error):
        PostgresStore(**args)  # type: ignore[arg-type]


async def test_a_server_that_is_down_gives_store_unavailable_and_hides_the_password() -> None:
    dsn = f"postgresql://someone:hunter2@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(StoreUnavailable) as info:
        async with PostgresStore(dsn, connect_timeout=5):
            pass
    assert "hunter2" not in str(info.value)
    assert "someone:***@127.0.0.1" in str(info.value)
    assert redact("postgresql://u:p@h:1/d") == "postgresql://u:***@h:1/d"


async def test_a_missing_database_is_named(pg_server: PgServer) -> None:
    dsn = with_database(pg_server.admin_dsn, "actors_no_such_db")
    with pytest.raises(StoreError, match="does not exist"):
        async with PostgresStore(dsn):
            pass


async def test_text_postgresql_cannot_hold_is_a_store_error_that_changes_nothing(pg_dsn: str) -> None:
    async with PostgresStore(pg_dsn) as store:
        await store.write([Accept(sig("s1"))])
        with pytest.raises(StoreError, match="cannot be stored"):
            await store.write([Accept(sig("s2")), Accept(sig("nul\x00"))])
        assert [e.signal.signal_id for e in await store.read_inbox(after=0, limit=10)] == ["s1"]
        assert await store.write([Accept(sig("s3"))]) == [Accepted()]


# ---------------------------------------------------------------- faults


async def test_a_connection_killed_mid_batch_is_retried_once_and_applied_once(pg_dsn: str) -> None:
    async with PostgresStore(pg_dsn) as store, admin(pg_dsn) as locker, admin(pg_dsn) as killer:
        await store.write([commit("s1", 1, '{"n":1}')])
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE processed IN ACCESS EXCLUSIVE MODE")
        async with anyio.create_task_group() as tg:
            results: list[object] = []

            async def write() -> None:
                results.extend(await store.write([Accept(sig("s2")), commit("s3", 2, '{"n":2}', '{"n":3}')]))

            tg.start_soon(write)
            pid = await wait_for_lock_wait(killer)  # the batch is inside its transaction
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
            await tx.rollback()  # lets the retry through
        assert results == [Accepted(), Committed()]
        assert store.retries == 1
        assert await events_of(store) == ['{"n":1}', '{"n":2}', '{"n":3}']
        assert [e.signal.signal_id for e in await store.read_inbox(after=0, limit=10)] == ["s2"]


async def test_a_batch_that_cannot_reach_the_server_again_is_not_acknowledged(
    pg_server: PgServer, pg_dsn: str
) -> None:
    name = pg_dsn.rsplit("/", 1)[1]
    async with PostgresStore(pg_dsn) as store:
        await store.write([commit("s1", 1, '{"n":1}')])
        pg_server.sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        async with admin(pg_server.admin_dsn) as killer:
            await killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            # pg_terminate_backend only signals: wait until the backends are gone, or the
            # next write could still run on its old connection before it dies
            with anyio.fail_after(10):
                while await killer.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
        try:
            with pytest.raises(StoreUnavailable):
                await store.write([commit("s2", 2, '{"n":2}')])
        finally:
            pg_server.sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        # the store reconnects by itself; the refused batch left nothing, and can be sent again
        assert await events_of(store) == ['{"n":1}']
        assert await store.write([commit("s2", 2, '{"n":2}')]) == [Committed()]
        assert await events_of(store) == ['{"n":1}', '{"n":2}']


async def test_a_commit_lost_in_flight_is_resolved_by_its_transaction_id(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dies right after the server committed: the store asks the server."""
    async with PostgresStore(pg_dsn) as store:
        await store.write([Accept(sig("s0"))])
        writer = store._w
        assert writer is not None
        real_execute = asyncpg.Connection.execute

        async def commit_then_die(self: asyncpg.Connection, query: str, *args: object) -> str:
            result: str = await real_execute(self, query, *args)
            if self is writer and query == "COMMIT":
                writer.terminate()
                raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (injected)")
            return result

        monkeypatch.setattr(asyncpg.Connection, "execute", commit_then_die)
        # an accept and a commit: a transaction of two statements (a commit alone is one)
        assert await store.write([Accept(sig("a1")), commit("s1", 1, '{"n":1}')]) == [Accepted(), Committed()]
        assert store.retries == 0  # committed: not applied a second time
        assert await events_of(store) == ['{"n":1}']
        assert await store.write([commit("s2", 2, '{"n":2}')]) == [Committed()]  # a new writer


async def test_a_commit_whose_outcome_cannot_be_learned_is_commit_unknown(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresStore(pg_dsn) as store:
        await store.write([Accept(sig("s0"))])
        writer = store._w
        assert writer is not None
        real_execute = asyncpg.Connection.execute

        async def commit_then_die(self: asyncpg.Connection, query: str, *args: object) -> str:
            result: str = await real_execute(self, query, *args)
            if self is writer and query == "COMMIT":
                writer.terminate()
                raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (injected)")
            return result

        async def unreachable() -> asyncpg.Connection:
            raise StoreUnavailable("server unreachable (injected)")

        monkeypatch.setattr(asyncpg.Connection, "execute", commit_then_die)
        monkeypatch.setattr(store, "_connect", unreachable)
        with pytest.raises(CommitUnknown, match="outcome of transaction"):
            await store.write([Accept(sig("a1")), commit("s1", 1, '{"n":1}')])


async def test_a_batch_of_commits_is_one_statement_and_one_round_trip(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresStore(pg_dsn) as store:
        await store.write([commit("s1", 1, '{"n":1}')])  # the log's end is known from here on
        sent = statements_of(monkeypatch, store._w)
        assert await store.write([commit("s2", 2, '{"n":2}'), commit("b1", 1, "{}", entity_id="bob")]) == [
            Committed(),
            Committed(),
        ]
        assert len(sent) == 2  # bob's log end is read first (an entity it has not seen)
        assert await store.write([commit("s3", 3, '{"n":3}'), commit("b2", 2, "{}", entity_id="bob")]) == [
            Committed(),
            Committed(),
        ]
        assert len(sent) == 3
        assert "write_marks" in sent[-1]
    assert await events_of_dsn(pg_dsn) == ['{"n":1}', '{"n":2}', '{"n":3}']
    assert sql_at(pg_dsn, "SELECT count(*) FROM write_marks") == [(0,)]  # removed on close


def statements_of(monkeypatch: pytest.MonkeyPatch, conn: object) -> list[str]:
    """The statements ``conn`` sends from now on."""
    sent: list[str] = []
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        real = getattr(asyncpg.Connection, name)

        async def spy(
            self: asyncpg.Connection, query: str, *args: object, _real: Any = real, **kw: object
        ) -> object:
            if self is conn:
                sent.append(query)
            return await _real(self, query, *args, **kw)

        monkeypatch.setattr(asyncpg.Connection, name, spy)
    return sent


async def test_the_log_end_read_with_the_events_spares_the_writer_a_read(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresStore(pg_dsn) as a, PostgresStore(pg_dsn) as b:
        await b.write([commit("s1", 1, '{"n":1}'), commit("b1", 1, "{}", entity_id="bob")])
        assert await a.read_events("Account", "alice", after=5, limit=10) == []  # past the end: no end
        assert len(await a.read_events("Account", "alice", after=0, limit=1)) == 1  # a full page: no end
        assert len(await a.read_events("Account", "bob", after=0, limit=10)) == 1  # bob's whole log
        sent = statements_of(monkeypatch, a._w)
        assert await a.write([commit("b2", 2, "{}", entity_id="bob")]) == [Committed()]
        assert len(sent) == 1  # bob's end was learned from the read: the commit only
        assert await a.write([commit("s2", 2, '{"n":2}')]) == [Committed()]
        assert len(sent) == 3  # alice's end was read first
        # what a learned goes stale: b appends bob's 3; a's commit at 4 is checked against the database
        assert await b.write([commit("b3", 3, "{}", entity_id="bob")]) == [Committed()]
        assert await a.write([commit("b4", 4, "{}", entity_id="bob")]) == [Committed()]
        with pytest.raises(StoreError, match="sequence conflict"):
            await a.write([commit("b5", 4, "{}", entity_id="bob")])
        assert [e.seq for e in await b.read_events("Account", "bob", after=0, limit=10)] == [1, 2, 3, 4]


async def events_of_dsn(dsn: str) -> list[str]:
    async with PostgresStore(dsn) as store:
        return await events_of(store)


def _lose_answers_to(monkeypatch: pytest.MonkeyPatch, writer: object, marker: str) -> None:
    """The writer's statement containing ``marker`` runs to its end, then the connection
    dies before the answer is read."""
    real_fetchrow = asyncpg.Connection.fetchrow

    async def run_then_die(self: asyncpg.Connection, query: str, *args: object, **kw: Any) -> object:
        result = await real_fetchrow(self, query, *args, **kw)
        if self is writer and marker in query:
            self.terminate()
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (injected)")
        return result

    monkeypatch.setattr(asyncpg.Connection, "fetchrow", run_then_die)


async def test_a_statement_committed_but_unanswered_is_resolved_by_its_token(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresStore(pg_dsn) as store:
        await store.write([commit("s1", 1, '{"n":1}')])
        _lose_answers_to(monkeypatch, store._w, "write_marks")
        assert await store.write([commit("s2", 2, '{"n":2}')]) == [Committed()]
        assert store.retries == 0  # committed: not applied a second time
        monkeypatch.undo()
        assert await events_of(store) == ['{"n":1}', '{"n":2}']
        assert await store.write([commit("s3", 3, '{"n":3}')]) == [Committed()]  # a new writer
        assert await events_of(store) == ['{"n":1}', '{"n":2}', '{"n":3}']


async def test_a_statement_cut_off_while_it_waits_is_ended_then_retried_once(pg_dsn: str) -> None:
    """The client loses the connection while the server still runs the statement (it
    waits on a row lock): the old session is ended before the token is read, so it
    cannot commit after the retry (without that, both would write ``s2``)."""
    async with PostgresStore(pg_dsn) as store, admin(pg_dsn) as locker, admin(pg_dsn) as watch:
        await store.write([commit("s1", 1, '{"n":1}')])
        tx = locker.transaction()
        await tx.start()  # holds the processed key s2 (uncommitted): the statement waits on it
        await locker.execute("INSERT INTO processed VALUES ('Account', 'alice', 's2', 'x', 'x', 0)")
        results: list[object] = []
        async with anyio.create_task_group() as tg:

            async def write() -> None:
                results.extend(await store.write([commit("s2", 2, '{"n":2}')]))

            tg.start_soon(write)
            old = await wait_for_lock_wait(watch)
            assert store._w is not None
            store._w.terminate()  # the client side only: the server's session goes on waiting
            retry = await wait_for_lock_wait_other_than(watch, old)  # the retry, on a new session
            assert not await watch.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", old)
            assert retry != old
            await tx.rollback()
        assert results == [Committed()]
        assert store.retries == 1
        assert await events_of(store) == ['{"n":1}', '{"n":2}']


async def wait_for_lock_wait_other_than(conn: asyncpg.Connection, pid: int) -> int:
    with anyio.fail_after(10):
        while True:
            found = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'durable-actors%' AND wait_event_type = 'Lock' AND pid <> $1",
                pid,
            )
            if found is not None:
                return int(found)
            await anyio.sleep(0.01)


async def test_a_statement_whose_outcome_cannot_be_learned_is_commit_unknown(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresStore(pg_dsn) as store:
        await store.write([commit("s1", 1, '{"n":1}')])
        _lose_answers_to(monkeypatch, store._w, "write_marks")

        async def unreachable() -> asyncpg.Connection:
            raise StoreUnavailable("server unreachable (injected)")

        monkeypatch.setattr(store, "_connect", unreachable)
        with pytest.raises(CommitUnknown, match="outcome is unknown"):
            await store.write([commit("s2", 2, '{"n":2}')])


async def test_a_statement_timeout_is_store_timeout_and_keeps_nothing(pg_dsn: str) -> None:
    async with PostgresStore(pg_dsn, statement_timeout=0.3) as store, admin(pg_dsn) as locker:
        await store.write([commit("s1", 1, '{"n":1}')])
        async with locker.transaction():
            await locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(StoreTimeout):
                await store.write([Accept(sig("s2")), commit("s3", 2, '{"n":2}')])
        assert await store.read_inbox(after=0, limit=10) == []
        assert await events_of(store) == ['{"n":1}']
        assert await store.write([Accept(sig("s2")), commit("s3", 2, '{"n":2}')]) == [Accepted(), Committed()]


async def test_a_read_only_database_refuses_writes_and_keeps_serving_reads(
    pg_server: PgServer, pg_dsn: str
) -> None:
    name = pg_dsn.rsplit("/", 1)[1]
    async with PostgresStore(pg_dsn) as store:
        await store.write([commit("s1", 1, '{"n":1}')])
    pg_server.sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    async with PostgresStore(pg_dsn) as store:
        with pytest.raises(StoreReadOnly):
            await store.write([commit("s2", 2, '{"n":2}')])
        assert await events_of(store) == ['{"n":1}']


async def test_an_empty_read_only_database_cannot_be_opened(pg_server: PgServer, pg_dsn: str) -> None:
    name = pg_dsn.rsplit("/", 1)[1]
    pg_server.sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    with pytest.raises(StoreReadOnly):
        async with PostgresStore(pg_dsn):
            pass


@pytest.fixture
def small_tablespace(pg_server: PgServer) -> Iterator[str]:
    """A 1 MiB tmpfs the server can write to, as tablespace ``actors_small``."""
    embedded = pg_server.embedded
    if embedded is None or os.geteuid() != 0 or embedded._user is None:
        pytest.skip("needs the embedded server and root (to mount a small tmpfs for it)")
    mount = Path(tempfile.mkdtemp(prefix="actors-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        os.chown(mount, embedded._user.pw_uid, embedded._user.pw_gid)
        pg_server.sql(f"CREATE TABLESPACE actors_small LOCATION '{mount}'")
        yield "actors_small"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


async def test_a_full_disk_is_store_full_and_loses_nothing_acknowledged(
    pg_server: PgServer, small_tablespace: str
) -> None:
    name, dsn = pg_server.create_database()
    try:
        async with PostgresStore(dsn) as store:
            async with admin(dsn) as conn:  # the event log on the 1 MiB disk
                await conn.execute(f"ALTER TABLE events SET TABLESPACE {small_tablespace}")
                await conn.execute(f"ALTER INDEX events_pkey SET TABLESPACE {small_tablespace}")
            acked: list[str] = []

            async def fill() -> None:
                for n in range(1000):  # 40 KiB of incompressible data a batch
                    data = [f'{{"pad":"{secrets.token_hex(1024)}"}}' for _ in range(20)]
                    await store.write([commit(f"s{n}", len(acked) + 1, *data)])
                    acked.extend(data)

            with pytest.raises(StoreFull):
                await fill()
            assert acked, "the disk was full before the first batch: the test proves nothing"
            assert await events_of(store) == acked
            # what does not need the full disk still works
            assert await store.write([Accept(sig("after"))]) == [Accepted()]
    finally:
        pg_server.drop_database(name)
        pg_server.sql(f"DROP TABLESPACE {small_tablespace}")


async def test_the_store_rides_out_a_server_restart() -> None:
    """Stopped server: typed errors, nothing acknowledged; started again: the store carries on."""
    with EmbeddedPostgres() as server:
        dsn = server.dsn()
        async with PostgresStore(dsn) as store:
            await store.write([commit("s1", 1, '{"n":1}')])
            await anyio.to_thread.run_sync(lambda: server.stop(keep_data=True))
            with pytest.raises(StoreUnavailable):
                await store.write([commit("s2", 2, '{"n":2}')])
            with pytest.raises(StoreUnavailable):
                await store.read_events("Account", "alice", after=0, limit=10)
            await anyio.to_thread.run_sync(server.start)
            assert await events_of(store) == ['{"n":1}']
            assert await store.write([commit("s2", 2, '{"n":2}')]) == [Committed()]
            assert await events_of(store) == ['{"n":1}', '{"n":2}']
