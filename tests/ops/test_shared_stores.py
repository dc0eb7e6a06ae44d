"""The actors commands on shared stores: a member process on a shared SQLite file or on
PostgreSQL, ``actors members`` listing it, ``ask``/``tell``/``query`` as clients beside it;
and the PostgreSQL inspector's refusals (nothing is ever created)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from actors import InvalidArguments, NotOurDatabase, StoreError
from actors.cli import main
from actors.inspect import Inspection
from persistence import PostgresStore
from persistence.inspect import DatabaseNotFound, PostgresInspector
from tests._stores import PgServer, sql_at, with_database
from tests.ops.conftest import ROOT

ACCOUNT = "tests.models:Account"


@contextmanager
def member(where: str, name: str) -> Iterator[subprocess.Popen[str]]:
    """A member process on ``where``; it leaves cleanly when the block ends."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.ops._member", where, name],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    watchdog = threading.Timer(60, child.kill)  # a hung child ends the readline with EOF
    watchdog.start()
    try:
        line = child.stdout.readline()
        watchdog.cancel()
        if not line.startswith("ready "):
            child.kill()
            raise AssertionError(f"member did not start: {line!r} {child.communicate()[1][-3000:]}")
        yield child
    finally:
        watchdog.cancel()
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for f in (child.stdout, child.stderr):
            if f is not None:
                f.close()
    assert child.returncode == 0


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def members_json(capsys: pytest.CaptureFixture[str], where: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cli(capsys, "members", where, "--json"))
    return doc


def by_name(doc: dict[str, Any], name: str) -> dict[str, Any]:
    [row] = [m for m in doc["members"] if m["name"] == name]
    return row


@pytest.fixture
def shared_location(store_location: str) -> str:
    """A SQLite file opened shared, or a PostgreSQL DSN."""
    return store_location


def test_members_and_calls_beside_a_member_process(
    shared_location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    where = shared_location
    with member(where, "node-a"):
        doc = members_json(capsys, where)
        assert doc["clustered"] is True
        row = by_name(doc, "node-a")
        assert (row["status"], row["serves"], row["shards"], row["owns"]) == ("alive", True, 256, "0-255")
        beat = dt.datetime.fromisoformat(row["heartbeat_at"])
        assert beat.tzinfo is not None
        assert 0 <= row["seen_ago"] < 5  # the lease: it heartbeats every second
        assert abs((dt.datetime.now(dt.UTC) - beat).total_seconds()) < 30  # the database's clock
        table = cli(capsys, "members", where)
        assert "node-a" in table
        assert "alive" in table
        assert "0-255" in table
        assert "┃" in table
        # calls from clients: the member runs the handlers (no StoreLocked beside it)
        assert cli(capsys, "tell", where, ACCOUNT, "a", "deposit", '{"amount": 5}').split() == ["accepted"]
        done = subprocess.run(
            [sys.executable, "-m", "actors.cli", "ask", where, ACCOUNT, "a", "deposit", '{"amount": 2}'],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["7"]  # the tell ran first, on the member
        assert cli(capsys, "query", where, ACCOUNT, "a", "get_balance").split() == ["7"]
        events = [json.loads(x) for x in cli(capsys, "events", where, "Account", "a").splitlines()]
        assert [e["data"]["amount"] for e in events] == [5, 2]
        # the clients owned nothing while they ran; the member still owns every shard
        after = members_json(capsys, where)
        assert by_name(after, "node-a")["shards"] == 256
        assert all(m["shards"] == 0 for m in after["members"] if m["name"] != "node-a")
    left = by_name(members_json(capsys, where), "node-a")
    assert (left["status"], left["shards"], left["owns"]) == ("left", 0, "")


def test_a_client_ask_with_no_member_running_times_out(
    shared_location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    where = shared_location
    with member(where, "node-b"):
        pass  # the store was shared; nobody serves it now
    code = main(["ask", where, ACCOUNT, "z", "deposit", '{"amount": 1}', "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("actors: DeadlineExceeded")
    assert "the signal stays accepted" in err
    assert "(0 members alive)" in err
    assert err.count("\n") == 1


def test_an_exclusive_owner_refuses_the_call_and_says_who(
    held_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sql_at(held_db, "SELECT count(*) FROM inbox")
    assert main(["tell", str(held_db), ACCOUNT, "a", "deposit", '{"amount": 1}']) == 1
    err = capsys.readouterr().err
    assert err.startswith("actors: StoreLocked")
    assert "in use by another running system" in err
    assert sql_at(held_db, "SELECT count(*) FROM inbox") == before


def test_nobody_ever_joined_is_said_plainly(held_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert members_json(capsys, str(held_db)) == {"clustered": False, "members": []}
    assert "no member has ever joined this store" in cli(capsys, "members", str(held_db))


# ---------------------------------------------------------------- PostgresInspector


def tables(dsn: str) -> list[str]:
    return [
        str(r[0])
        for r in sql_at(dsn, "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace")
    ]


@pytest.mark.anyio
async def test_postgres_inspector_refuses_what_is_not_ours(
    pg_server: PgServer, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = with_database(pg_dsn, "no_such_db_here")
    with pytest.raises(DatabaseNotFound, match="no database 'no_such_db_here'"):
        async with PostgresInspector(missing):
            pass
    with pytest.raises(FileNotFoundError):  # the same family as a missing SQLite file
        async with Inspection(missing):
            pass
    assert not sql_at(pg_server.admin_dsn, "SELECT 1 FROM pg_database WHERE datname = 'no_such_db_here'")
    with pytest.raises(NotOurDatabase, match="it is empty"):
        async with PostgresInspector(pg_dsn):
            pass
    assert tables(pg_dsn) == []  # nothing was created
    database = pg_dsn.rsplit("/", 1)[1]
    pg_server.sql("CREATE TABLE people (name text)", database=database)
    with pytest.raises(NotOurDatabase, match=r"holds other tables \(people\)"):
        async with PostgresInspector(pg_dsn):
            pass
    assert tables(pg_dsn) == ["people"]
    with pytest.raises(ValueError, match="postgresql:// DSN"):
        PostgresInspector("mysql://x/y")


def test_postgres_errors_are_one_line_without_the_password(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable = f"postgresql://someone:s3cret-pw@127.0.0.1:{port}/db"
    for argv in (["members", unreachable], ["history", unreachable, "Account", "a"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("actors: StoreUnavailable: cannot connect to postgresql://someone:***@")
        assert "s3cret-pw" not in err
        assert err.count("\n") == 1
    assert main(["members", with_database(pg_dsn, "nope_db")]) == 1
    assert capsys.readouterr().err.startswith("actors: DatabaseNotFound: no database 'nope_db'")
    with pytest.raises(InvalidArguments, match="postgresql:// DSN or an Inspector"):
        Inspection(3.5)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_postgres_inspector_session_cannot_write(pg_dsn: str) -> None:
    async with PostgresStore(pg_dsn):
        pass  # the schema, made by a store
    async with PostgresInspector(pg_dsn) as ins:
        assert (await ins.members()).clustered is False  # the store opened, nobody joined
        conn = ins._conn
        with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
            await conn.execute("CREATE TABLE sneaky (x int)")
        with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
            await conn.execute("DELETE FROM events")
    assert "sneaky" not in tables(pg_dsn)
    with pytest.raises(StoreError, match="not open"):
        await ins.entity_types()
