"""What only the SQLite store does: its file, its schema, its lock and its pragmas.

The behaviour shared with every store is in test_store_contract.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import sys
import threading
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from persistence import NotOurDatabase, SqliteStore, StoreError, StoreLocked
from persistence.sqlite import APPLICATION, SCHEMA_VERSION, translate
from persistence.store import Accept, Commit, Committed, NewEvent, ProcessedMark, SignalRecord

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TABLES = {
    "actors_meta",
    "members",
    "shards",
    "events",
    "snapshots",
    "inbox",
    "processed",
    "dead_letters",
    "timers",
    "journal",
    "outbox",
}


def sig(signal_id: str) -> SignalRecord:
    return SignalRecord("Account", "alice", signal_id, "deposit", '{"amount":1}', "fp", 1.0)


# ---------------------------------------------------------------- file helpers (sync)


def fingerprint_file(p: Path) -> tuple[bytes, int, int]:
    st = p.stat()
    return p.read_bytes(), st.st_mtime_ns, st.st_size


def side_files(p: Path) -> list[str]:
    """SQLite's companion files (WAL, shared memory, rollback journal) beside ``p``."""
    return sorted(
        f.name
        for f in p.parent.iterdir()
        if f.name in {f"{p.name}-wal", f"{p.name}-shm", f"{p.name}-journal"}
    )


def write_file(p: Path, data: bytes) -> None:
    p.write_bytes(data)


def listing(folder: Path) -> list[str]:
    return sorted(f.name for f in folder.iterdir())


def lock_owner(db: Path) -> dict[str, object]:
    owner: dict[str, object] = json.loads(Path(f"{db}.lock").read_text())
    return owner


def query(p: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(p)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def execute(p: Path, *statements: str) -> None:
    con = sqlite3.connect(p, isolation_level=None)
    try:
        for s in statements:
            con.execute(s)
    finally:
        con.close()


def foreign_database(p: Path) -> None:
    execute(
        p,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
        "INSERT INTO users VALUES (1, 'ada')",
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "actors.db"


async def open_and_close(p: Path) -> None:
    async with SqliteStore(p):
        pass


# ---------------------------------------------------------------- not our database


async def test_a_file_of_random_bytes_is_not_our_database(db: Path) -> None:
    write_file(db, b"this is no database\n" + random.Random(7).randbytes(8192))
    before = fingerprint_file(db)
    with pytest.raises(NotOurDatabase, match="not a SQLite database"):
        await open_and_close(db)
    assert fingerprint_file(db) == before
    assert side_files(db) == []
    # the failed open released the lock: a second attempt says the same, not "locked"
    with pytest.raises(NotOurDatabase):
        await open_and_close(db)


async def test_a_database_of_another_application_is_left_untouched(db: Path) -> None:
    foreign_database(db)
    before = fingerprint_file(db)
    with pytest.raises(NotOurDatabase, match=r"another application \(tables: users\)"):
        await open_and_close(db)
    assert fingerprint_file(db) == before
    assert side_files(db) == []
    assert query(db, "PRAGMA journal_mode") == [("delete",)]
    assert query(db, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("users",)]
    with pytest.raises(NotOurDatabase):
        await open_and_close(db)


async def test_a_meta_table_of_another_application_is_not_ours(db: Path) -> None:
    execute(
        db,
        "CREATE TABLE actors_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO actors_meta VALUES ('application', 'someone-else'), ('schema_version', '1')",
    )
    before = fingerprint_file(db)
    with pytest.raises(NotOurDatabase, match="someone-else"):
        await open_and_close(db)
    assert fingerprint_file(db) == before


async def test_a_newer_schema_version_is_refused_unchanged(db: Path) -> None:
    async with SqliteStore(db) as store:
        await store.write([Accept(sig("s1"))])
    newer = SCHEMA_VERSION + 1
    execute(db, f"UPDATE actors_meta SET value = '{newer}' WHERE key = 'schema_version'")
    before = fingerprint_file(db)
    with pytest.raises(NotOurDatabase, match=f"schema version {newer}, newer than"):
        await open_and_close(db)
    assert fingerprint_file(db) == before
    assert side_files(db) == []
    assert query(db, "SELECT signal_id FROM inbox") == [("s1",)]


async def test_a_garbled_schema_version_is_not_ours(db: Path) -> None:
    await open_and_close(db)
    execute(db, "UPDATE actors_meta SET value = 'two' WHERE key = 'schema_version'")
    with pytest.raises(NotOurDatabase, match="schema version"):
        await open_and_close(db)


# ---------------------------------------------------------------- unusable paths


@pytest.fixture
def unprivileged_access(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``os.access`` honour permission bits even when the tests run as root.

    Root may write to a 0o444 file, so the kernel never says "read-only" to it. The
    store asks ``os.access``; under root we answer as the kernel answers anyone else.
    """
    real = os.access

    def access(path: str | os.PathLike[str], mode: int, **kw: bool) -> bool:
        if mode & os.W_OK and os.path.exists(path) and not os.stat(path).st_mode & 0o222:
            return False
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)


@pytest.mark.usefixtures("unprivileged_access")
async def test_a_read_only_file_is_refused_unchanged(db: Path) -> None:
    async with SqliteStore(db) as store:
        await store.write([Accept(sig("s1"))])
    os.chmod(db, 0o444)
    try:
        assert not os.access(db, os.W_OK)
        before = fingerprint_file(db)
        with pytest.raises(StoreError, match="read-only") as info:
            await open_and_close(db)
        assert str(db) in str(info.value)
        assert type(info.value) is StoreError
        assert fingerprint_file(db) == before
    finally:
        os.chmod(db, 0o644)
    await open_and_close(db)  # and it opens again once writable


@pytest.mark.usefixtures("unprivileged_access")
async def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(StoreError, match="read-only"):
            await open_and_close(folder / "actors.db")
        assert listing(folder) == []
    finally:
        os.chmod(folder, 0o755)


async def test_a_directory_is_not_a_database_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        await open_and_close(tmp_path)
    assert listing(tmp_path) == []


async def test_a_missing_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        await open_and_close(tmp_path / "nowhere" / "actors.db")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("path", [123, None, b"actors.db", ["actors.db"]])
def test_path_must_be_str_or_pathlike(path: object) -> None:
    with pytest.raises(TypeError, match=r"str or os\.PathLike"):
        SqliteStore(path)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_path_must_name_a_file(path: str) -> None:
    with pytest.raises(ValueError, match="file path"):
        SqliteStore(path)


@pytest.mark.parametrize("timeout", [-1, "5", None])
def test_busy_timeout_is_validated(db: Path, timeout: object) -> None:
    with pytest.raises(ValueError, match="busy_timeout"):
        SqliteStore(db, busy_timeout=timeout)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the lock


async def test_a_second_store_in_this_process_is_locked_out(db: Path) -> None:
    async with SqliteStore(db):
        with pytest.raises(StoreLocked) as info:
            await open_and_close(db)
        owner = info.value.owner
        assert owner["pid"] == os.getpid()
        assert owner["host"] == socket.gethostname()
        since = datetime.strptime(str(owner["since"]), "%Y-%m-%dT%H:%M:%S%z")
        assert abs(since.timestamp() - datetime.now().timestamp()) < 3600
        assert f"pid {os.getpid()}" in str(info.value)
        assert socket.gethostname() in str(info.value)
    # released on close
    async with SqliteStore(db) as store:
        assert await store.read_inbox(after=0, limit=10) == []


CHILD = """
import sys
import anyio
from persistence import SqliteStore
from persistence.store import Accept, SignalRecord

async def main() -> None:
    async with SqliteStore(sys.argv[1]) as store:
        s = SignalRecord("Account", "alice", "from-child", "deposit", "{}", "fp", 1.0)
        await store.write([Accept(s)])
        print("ready", flush=True)
        sys.stdin.readline()

anyio.run(main)
"""


async def read_until_ready(proc: anyio.abc.Process) -> None:
    assert proc.stdout is not None
    got = b""
    with anyio.fail_after(60):
        while b"ready\n" not in got:
            try:
                got += await proc.stdout.receive()
            except anyio.EndOfStream:
                assert proc.stderr is not None
                err = b"".join([chunk async for chunk in proc.stderr])
                pytest.fail(f"the child exited before taking the store: {err.decode()}")


@pytest.mark.slow
async def test_another_process_holds_the_lock_until_it_dies(db: Path) -> None:
    """A store held by a live process is refused; once it is killed -9, it is taken over."""
    async with await anyio.open_process([sys.executable, "-c", CHILD, str(db)], cwd=ROOT) as proc:
        await read_until_ready(proc)
        with pytest.raises(StoreLocked) as info:
            await open_and_close(db)
        assert info.value.owner["pid"] == proc.pid
        assert info.value.owner["host"] == socket.gethostname()
        assert f"pid {proc.pid}" in str(info.value)
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
    # the kernel dropped the dead owner's lock: take over, with its acknowledged write
    async with SqliteStore(db) as store:
        assert [e.signal.signal_id for e in await store.read_inbox(after=0, limit=10)] == ["from-child"]
        assert lock_owner(db)["pid"] == os.getpid()


# ---------------------------------------------------------------- schema and pragmas


async def test_the_store_runs_in_wal_mode(db: Path) -> None:
    async with SqliteStore(db):
        assert query(db, "PRAGMA journal_mode") == [("wal",)]
    assert query(db, "PRAGMA journal_mode") == [("wal",)]


async def test_a_new_database_gets_the_schema_and_its_version(db: Path) -> None:
    await open_and_close(db)
    tables = {r[0] for r in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables - {"sqlite_sequence"} == TABLES
    meta = dict(query(db, "SELECT key, value FROM actors_meta"))
    assert meta == {"application": APPLICATION, "schema_version": str(SCHEMA_VERSION), "shard_count": "256"}
    # reopening an up-to-date database changes nothing in the schema
    await open_and_close(db)
    assert dict(query(db, "SELECT key, value FROM actors_meta")) == meta


async def test_an_empty_file_becomes_a_store(db: Path) -> None:
    write_file(db, b"")
    async with SqliteStore(db) as store:
        assert await store.write([Accept(sig("s1"))]) is not None
    assert query(db, "SELECT signal_id FROM inbox") == [("s1",)]


async def test_the_events_table_is_keyed_on_type_id_and_seq(db: Path) -> None:
    await open_and_close(db)
    execute(db, "INSERT INTO events VALUES ('A', 'x', 1, 'E', 1, '{}', 0)")
    with pytest.raises(sqlite3.IntegrityError):
        execute(db, "INSERT INTO events VALUES ('A', 'x', 1, 'F', 1, '{}', 0)")
    execute(db, "INSERT INTO events VALUES ('A', 'y', 1, 'E', 1, '{}', 0)")
    execute(db, "INSERT INTO events VALUES ('B', 'x', 1, 'E', 1, '{}', 0)")
    assert query(db, "SELECT count(*) FROM events") == [(3,)]


@pytest.mark.parametrize(("option", "level"), [("NORMAL", 1), ("FULL", 2)])
async def test_synchronous_is_applied_to_both_connections(db: Path, option: str, level: int) -> None:
    store = SqliteStore(db, synchronous=option)  # type: ignore[arg-type]
    assert store.synchronous == option
    async with store:
        # synchronous is per connection: only the store's own connections can tell
        for conn in (store._w, store._r):
            assert conn is not None
            assert list(await conn.execute_fetchall("PRAGMA synchronous")) == [(level,)]


def wal_pages(p: Path) -> int:
    wal = Path(f"{p}-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


async def test_the_wal_stays_bounded_with_small_inline_writes(db: Path) -> None:
    # small batches are written on the event loop's thread with SQLite's automatic
    # checkpoint off: the store's own checkpoints must keep the WAL near their interval
    # (without them it grows by a few pages per commit: past 3 intervals here)
    # (the WAL restarts after every _RESTART_EVERY-th due checkpoint: those beside the
    # writes copy pages but cannot restart it)
    from persistence.sqlite import _CHECKPOINT_PAGES, _RESTART_EVERY

    bound = _CHECKPOINT_PAGES * _RESTART_EVERY
    n = bound * 3 // 2
    async with SqliteStore(db) as store:
        for i in range(n):
            await store.write([Accept(sig(f"s{i}"))])
        assert wal_pages(db) < bound * 2
        assert query(db, "SELECT count(*) FROM inbox") == [(n,)]
        with sqlite3.connect(db) as other:  # what is committed is in the file for any reader
            assert other.execute("SELECT count(*) FROM inbox").fetchone() == (n,)


@pytest.mark.parametrize(
    ("options", "batch", "inline"),
    [
        ({}, 1, True),
        ({}, 64, True),
        ({}, 65, False),  # a big batch: SQLite's work runs beside the event loop
        ({"synchronous": "FULL"}, 1, False),  # an fsync per commit never blocks the loop
        ({"shared": True}, 1, False),  # other processes' writes may make it wait
        ({"inline_writes": 0}, 1, False),  # asked for
        ({"inline_writes": 8}, 8, True),
        ({"inline_writes": 8}, 9, False),
    ],
)
async def test_where_a_write_runs(
    db: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, object], batch: int, inline: bool
) -> None:

    import persistence.sqlite as mod

    threads: list[int] = []
    real = mod._drive

    def drive(coro: object) -> object:
        threads.append(threading.get_ident())
        return real(coro)  # type: ignore[arg-type]

    monkeypatch.setattr(mod, "_drive", drive)
    async with SqliteStore(db, **options) as store:  # type: ignore[arg-type]
        threads.clear()
        got = await store.write([Accept(sig(f"s{i}")) for i in range(batch)])
    assert len(got) == batch
    assert len(threads) == 1
    assert (threads[0] == threading.get_ident()) is inline
    assert query(db, "SELECT count(*) FROM inbox") == [(batch,)]


@pytest.mark.parametrize(
    ("options", "now"),
    [
        ({}, True),
        ({"inline_writes": 0}, False),
        ({"synchronous": "FULL"}, False),
        ({"shared": True}, False),
    ],
)
async def test_marks_are_read_at_once_where_writes_are(
    db: Path, options: dict[str, object], now: bool
) -> None:
    """``read_marks_now``: through the writer's connection on this thread, under the
    same conditions as ``write_now``; else None (the runtime then reads on a thread)."""
    s = sig("s1")
    keys = [("Account", "alice", "s1"), ("Account", "alice", "s2")]
    async with SqliteStore(db, **options) as store:  # type: ignore[arg-type]
        await store.write([Commit("Account", "alice", s, '{"ok":1}', 1, (), 5.0, from_inbox=False)])
        got = store.read_marks_now(keys)
        if now:
            assert (
                got
                == await store.read_marks(keys)
                == {keys[0]: ProcessedMark("s1", s.fingerprint, '{"ok":1}', 5.0)}
            )
            async with store._write_lock:  # a write under way: not now
                assert store.read_marks_now(keys) is None
            with pytest.raises(TypeError, match="read_marks keys"):
                store.read_marks_now(["nope"])  # type: ignore[list-item]
            real = store.read_marks

            async def wrapped(keys: list[tuple[str, str, str]]) -> object:  # every read must reach it
                return await real(keys)

            store.read_marks = wrapped  # type: ignore[method-assign,assignment]
            assert store.read_marks_now(keys) is None
        else:
            assert got is None


@pytest.mark.parametrize("option", [-1, 1.5, True, "64", None])
def test_inline_writes_is_validated(db: Path, option: object) -> None:
    with pytest.raises(ValueError, match="inline_writes"):
        SqliteStore(db, inline_writes=option)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["OFF", "normal", "EXTRA", 1, None])
def test_synchronous_is_validated(db: Path, option: object) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(db, synchronous=option)  # type: ignore[arg-type]


def test_default_options(db: Path) -> None:
    store = SqliteStore(db)
    assert store.synchronous == "NORMAL"
    assert store.path == db
    assert repr(store) == f"SqliteStore({str(db)!r})"


# ---------------------------------------------------------------- driver errors


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (sqlite3.DatabaseError("file is not a database"), NotOurDatabase, "not a SQLite database"),
        (sqlite3.OperationalError("attempt to write a readonly database"), StoreError, "read-only"),
        (sqlite3.OperationalError("database is locked"), StoreError, "locked by another"),
        (sqlite3.OperationalError("database or disk is full"), StoreError, "disk is full"),
        (sqlite3.IntegrityError("UNIQUE constraint failed: x"), StoreError, "IntegrityError"),
    ],
)
def test_driver_errors_are_translated(error: sqlite3.Error, kind: type[StoreError], words: str) -> None:
    translated = translate(error, "write")
    assert type(translated) is kind
    assert str(translated).startswith("write: ")
    assert words in str(translated)
    assert str(error) in str(translated)


async def test_closing_under_cancellation_still_releases_the_file(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An owner cancelled while it closes (a torn-down task group) must not keep the lock."""
    store = SqliteStore(db)
    await store.__aenter__()
    reader = store._r
    assert reader is not None
    close = reader.close

    async def close_after_a_checkpoint() -> None:
        await anyio.lowlevel.checkpoint()  # where a pending cancellation is delivered
        await close()

    monkeypatch.setattr(reader, "close", close_after_a_checkpoint)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await store.__aexit__(None, None, None)
    async with SqliteStore(db) as again:
        assert await again.read_inbox(after=0, limit=10) == []


# ---------------------------------------------------------------- batches of events


def events_commit(entity_id: str, seq: int, data: str, at: float, *, mark: bool = False) -> Commit:
    return Commit(
        "Account", entity_id, sig(f"s-{entity_id}-{seq}"), '{"ok":null}', seq,
        (NewEvent("Deposited", 1, data),), at, mark=mark, from_inbox=False,
    )  # fmt: skip


@pytest.mark.parametrize("options", [{}, {"inline_writes": 0}])
async def test_a_batch_that_only_appends_events_is_one_statement(db: Path, options: dict[str, int]) -> None:
    """One INSERT of every row, its own transaction (SQLite runs it without the GIL);
    the rows read back exactly as given (three rows padded to four: the padding row is
    not stored). A batch with anything else takes BEGIN."""
    data = ['{"a":"é😀\\u0000"}', '{"n":123456789012345678901234567890}', '{"x":1e-07}']
    ats = [1.1, 1700000000.1234567, 5e-324]
    async with SqliteStore(db, **options) as store:  # type: ignore[arg-type]
        statements: list[str] = []
        store._writer.connection.set_trace_callback(statements.append)
        got = await store.write([events_commit(f"e{i}", 1, data[i], ats[i]) for i in range(3)])
        assert got == [Committed()] * 3
        writes = [x for x in statements if not x.startswith("WITH k(t, i)")]  # log ends read first
        assert len(writes) == 1
        assert writes[0].startswith("INSERT INTO events SELECT * FROM (VALUES (")
        statements.clear()
        await store.write([events_commit("e0", 2, "{}", 2.0, mark=True)])
        assert statements[0] == "BEGIN IMMEDIATE"
        assert statements[-1] == "COMMIT"
        store._writer.connection.set_trace_callback(None)
    rows = query(db, "SELECT entity_id, seq, type_name, version, data, recorded_at FROM events ORDER BY 1, 2")
    assert rows == [
        ("e0", 1, "Deposited", 1, data[0], ats[0]),
        ("e0", 2, "Deposited", 1, "{}", 2.0),
        ("e1", 1, "Deposited", 1, data[1], ats[1]),
        ("e2", 1, "Deposited", 1, data[2], ats[2]),
    ]


async def test_a_conflict_in_the_one_statement_writes_nothing_of_it(db: Path) -> None:
    async with SqliteStore(db) as store:
        await store.write([events_commit("x", 1, "{}", 1.0)])
        other = sqlite3.connect(db)  # behind the store's back: its remembered log end is stale
        other.execute("INSERT INTO events VALUES ('Account', 'x', 2, 'Deposited', 1, '{}', 1.0)")
        other.commit()
        other.close()
        with pytest.raises(StoreError, match="sequence conflict"):
            await store.write([events_commit("y", 1, "{}", 1.0), events_commit("x", 2, "{}", 1.0)])
        assert await store.read_events("Account", "y", after=0, limit=10) == []  # all or nothing
        await store.write([events_commit("y", 1, "{}", 1.0)])  # and the store goes on
    assert query(db, "SELECT entity_id, seq FROM events ORDER BY 1, 2") == [("x", 1), ("x", 2), ("y", 1)]


async def test_more_rows_than_one_statement_takes_go_in_a_transaction(db: Path) -> None:
    """Rows beyond SQLite's limit on parameters: a transaction of several statements,
    each of as many rows as the limit allows (here 14 parameters: 2 events, 2 marks)."""
    async with SqliteStore(db) as store:
        store._params_max = 14  # as with a small SQLITE_MAX_VARIABLE_NUMBER
        statements: list[str] = []
        store._writer.connection.set_trace_callback(statements.append)
        await store.write([events_commit(f"e{i}", 1, "{}", 1.0, mark=True) for i in range(3)])
        store._writer.connection.set_trace_callback(None)
        writes = [
            x.split(" SELECT * FROM (VALUES ")[0] + f" x{x.count('), (') + 1 - x.count('(NULL, ')}"
            for x in statements
            if " SELECT * FROM (VALUES " in x
        ]
        assert statements[0] == "BEGIN IMMEDIATE"
        assert statements[-1] == "COMMIT"
        assert writes == [
            "INSERT INTO events x2",
            "INSERT INTO events x1",
            "INSERT INTO processed x2",
            "INSERT INTO processed x1",
        ]
    assert query(db, "SELECT count(*) FROM events") == [(3,)]
    assert query(db, "SELECT count(*) FROM processed") == [(3,)]


async def test_the_next_batch_is_queued_on_the_writer_thread_while_one_is_written(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write lock is not held while a batch is on the writer's thread: the next one
    is queued there at once, and runs right after it. Meanwhile nothing uses the writer
    connection on the event loop's thread."""

    async with SqliteStore(db, inline_writes=0) as store:
        real = store._write_counted
        started, gate = threading.Event(), threading.Event()
        order: list[int] = []

        def held(batch: list[Commit], check: object) -> object:
            order.append(len(batch))
            if len(order) == 1:
                started.set()
                gate.wait(10)
            return real(batch, check)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "_write_counted", held)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.write, [events_commit("a", 1, "{}", 1.0)])
                await anyio.to_thread.run_sync(started.wait)
                tg.start_soon(
                    store.write, [events_commit("b", 1, "{}", 1.0), events_commit("c", 1, "{}", 1.0)]
                )
                await anyio.wait_all_tasks_blocked()
                assert store._queued == 2  # the second is queued behind the first
                assert store.write_now([events_commit("d", 1, "{}", 1.0)]) is None
                assert store.read_marks_now([("Account", "a", "s")]) is None
                gate.set()
        finally:
            gate.set()
        assert order == [1, 2]
        assert store._queued == 0
    assert query(db, "SELECT entity_id FROM events ORDER BY 1") == [("a",), ("b",), ("c",)]


def _hold(
    store: SqliteStore, method: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event, list[bool]]:
    """Make the store's checkpoint ``method`` wait for a gate: (started, gate, ran)."""
    real = getattr(store, method)
    started, gate, ran = threading.Event(), threading.Event(), []

    def held() -> None:
        started.set()
        gate.wait(10)
        real()
        ran.append(True)

    monkeypatch.setattr(store, method, held)
    return started, gate, ran


async def test_a_due_checkpoint_runs_after_its_batch_is_answered(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint is a job of its own behind the batch on the writer's thread: the
    batch's write returns while it runs (the event loop goes on meanwhile), and until
    it ends nothing uses the writer connection on the event loop's thread."""
    from persistence.sqlite import _CHECKPOINT_PAGES, _RESTART_EVERY

    async with SqliteStore(db) as store:
        store._beside_count = _RESTART_EVERY - 1  # the next due one is the writer's thread's
        started, gate, ran = _hold(store, "_checkpoint", monkeypatch)
        store._wal_pages = _CHECKPOINT_PAGES  # a checkpoint is due with the next write
        try:
            with anyio.fail_after(5):  # the write does not wait for the held checkpoint
                assert await store.write([events_commit("a", 1, "{}", 1.0)]) == [Committed()]
            await anyio.to_thread.run_sync(started.wait)
            assert store._queued == 1  # the checkpoint, still running
            assert store.write_now([events_commit("b", 1, "{}", 1.0)]) is None
            assert store.read_marks_now([("Account", "a", "s")]) is None
            assert not ran
        finally:
            gate.set()
        # queued behind the checkpoint (the thread runs its jobs in order), so answered
        # after its end, which the event loop has counted by then
        assert await store.write([events_commit("b", 1, "{}", 1.0)]) == [Committed()]
        assert ran == [True]
        assert store._queued == 0
        assert store._wal_pages < _CHECKPOINT_PAGES
    assert query(db, "SELECT entity_id FROM events ORDER BY 1") == [("a",), ("b",)]


def _file_rows(db: Path, tmp: Path) -> int:
    """Events in the database file itself (what checkpoints copied), without its WAL."""
    copy = tmp / "main-only.db"
    copy.write_bytes(db.read_bytes())
    with sqlite3.connect(copy) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


async def test_a_checkpoint_beside_the_writes_does_not_hold_them(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Most due checkpoints run on a connection and thread of their own: writes go on
    (on the loop's thread and the writer's) while one runs, another due one waits for
    it, and what it copied is in the database file itself."""
    from persistence.sqlite import _CHECKPOINT_PAGES

    async with SqliteStore(db) as store:
        started, gate, ran = _hold(store, "_checkpoint_there", monkeypatch)
        await store.write([events_commit("a", 1, "{}", 1.0)])
        store._wal_pages = _CHECKPOINT_PAGES  # a checkpoint is due with the next write
        try:
            with anyio.fail_after(5):  # nothing waits for the held checkpoint
                assert await store.write([events_commit("b", 1, "{}", 1.0)]) == [Committed()]
                await anyio.to_thread.run_sync(started.wait)
                store._wal_pages = _CHECKPOINT_PAGES  # due again: waits for the one running
                big = [events_commit(f"c{i}", 1, "{}", 1.0) for i in range(100)]  # the writer's thread
                assert await store.write(big) == [Committed()] * 100
                assert store.write_now([events_commit("d", 1, "{}", 1.0)]) is None  # (due: never inline)
                assert await store.write([events_commit("d", 1, "{}", 1.0)]) == [Committed()]
            assert store._queued == 0  # none queued on the writer's thread
            assert store._beside_count == 1
            assert not ran
        finally:
            gate.set()
        await anyio.to_thread.run_sync(lambda: store._beside_job.result(10))  # type: ignore[union-attr]
        assert ran == [True]
        assert _file_rows(db, tmp_path) >= 2  # a and b were copied into the file itself
        # the next write starts the due one (the first has ended)
        assert await store.write([events_commit("e", 1, "{}", 1.0)]) == [Committed()]
        assert store._beside_count == 2
        assert store._wal_pages < _CHECKPOINT_PAGES
    assert query(db, "SELECT count(*) FROM events") == [(104,)]


async def test_a_failed_checkpoint_beside_is_logged_and_writes_go_on(
    db: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from persistence.sqlite import _CHECKPOINT_PAGES

    async with SqliteStore(db) as store:
        await store.write([events_commit("a", 1, "{}", 1.0)])

        class Broken:
            def execute(self, sql: str) -> object:
                raise sqlite3.OperationalError("disk I/O error")

            def close(self) -> None:
                pass

        store._beside_conn = Broken()  # type: ignore[assignment]
        store._wal_pages = _CHECKPOINT_PAGES
        assert await store.write([events_commit("b", 1, "{}", 1.0)]) == [Committed()]
        await anyio.to_thread.run_sync(lambda: store._beside_job.result(10))  # type: ignore[union-attr]
        assert await store.write([events_commit("c", 1, "{}", 1.0)]) == [Committed()]
    assert "checkpoint of" in caplog.text
    assert "disk I/O error" in caplog.text
    assert query(db, "SELECT entity_id FROM events ORDER BY 1") == [("a",), ("b",), ("c",)]


async def test_closing_waits_for_a_checkpoint_beside_and_closes_its_connection(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's close lets a running checkpoint end, then closes its connection: the
    last connection closed, SQLite removes the WAL (it would stay with one left open)."""

    from persistence.sqlite import _CHECKPOINT_PAGES

    store = SqliteStore(db)
    async with store:
        real = store._checkpoint_there
        started, ran = threading.Event(), []

        def slow() -> None:
            started.set()
            real()
            ran.append(True)

        monkeypatch.setattr(store, "_checkpoint_there", slow)
        await store.write([events_commit("a", 1, "{}", 1.0)])
        store._wal_pages = _CHECKPOINT_PAGES
        await store.write([events_commit("b", 1, "{}", 1.0)])
        await anyio.to_thread.run_sync(started.wait)
    assert ran == [True]
    assert store._beside_conn is None
    assert store._beside is None
    assert wal_pages(db) == 0  # the file is gone (SQLite removes it when the last connection closes)
    assert not await anyio.Path(f"{db}-wal").exists()
    assert query(db, "SELECT entity_id FROM events ORDER BY 1") == [("a",), ("b",)]


async def test_no_checkpoint_beside_starts_while_or_after_the_store_closes(db: Path) -> None:
    """A write that comes due while the checkpoint thread is shut down still commits
    (no RuntimeError from the pool); once closed, nothing starts one (no thread or
    connection left behind)."""
    from persistence.sqlite import _CHECKPOINT_PAGES

    store = SqliteStore(db)
    async with store:
        await store.write([events_commit("a", 1, "{}", 1.0)])
        store._wal_pages = _CHECKPOINT_PAGES
        await store.write([events_commit("b", 1, "{}", 1.0)])
        assert store._beside is not None
        await anyio.to_thread.run_sync(store._beside.shutdown)  # as while closing
        store._wal_pages = _CHECKPOINT_PAGES
        assert await store.write([events_commit("c", 1, "{}", 1.0)]) == [Committed()]
        assert store._beside_job is None
    store._checkpoint_beside()
    assert store._beside is None
    assert store._beside_conn is None
    assert query(db, "SELECT entity_id FROM events ORDER BY 1") == [("a",), ("b",), ("c",)]


async def test_a_failure_while_closing_still_closes_the_connections_and_the_lock(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing goes on past a step that raised: the reader's thread ends (else the
    interpreter would wait for it at exit) and the lock is free for the next owner."""
    from persistence.sqlite import _CHECKPOINT_PAGES

    store = await SqliteStore(db).__aenter__()
    assert store._r is not None
    reader_thread: threading.Thread = store._r._thread  # aiosqlite's (not a daemon)
    await store.write([events_commit("a", 1, "{}", 1.0)])
    store._wal_pages = _CHECKPOINT_PAGES
    await store.write([events_commit("b", 1, "{}", 1.0)])  # a checkpoint beside: its thread

    def boom() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "_close_beside", boom)
    with pytest.raises(RuntimeError, match="boom"):
        await store.__aexit__(None, None, None)
    assert store._r is None
    assert store._w is None
    assert store._lock_fd is None
    await anyio.to_thread.run_sync(reader_thread.join, 5)  # it ends once its connection is closed
    assert not reader_thread.is_alive()
    async with SqliteStore(db) as again:  # the lock was given back
        assert await again.last_seq("Account", "b") == 1


async def test_batches_of_any_size_share_a_few_statements(db: Path) -> None:
    """Batches are padded up to a power of two rows: 40 sizes, 7 statement texts (each
    text a prepared statement SQLite's cache keeps: one per size held 60 MB after
    600 sizes)."""
    from persistence.sqlite import _insert_sql

    _insert_sql.cache_clear()
    async with SqliteStore(db) as store:
        for n in range(1, 41):
            await store.write([events_commit(f"e{k}", n - k, "{}", 1.0) for k in range(n)])
    assert _insert_sql.cache_info().currsize == 7  # 1, 2, 4, 8, 16, 32 and 64 rows
    assert query(db, "SELECT count(*) FROM events") == [(sum(range(1, 41)),)]


async def test_a_write_to_a_closed_store_is_a_store_error(db: Path) -> None:
    store = SqliteStore(db, inline_writes=0)
    async with store:
        pass
    for batch in ([events_commit("a", 1, "{}", 1.0)], [Accept(sig("s1"))]):
        with pytest.raises(StoreError, match="closed"):
            await store.write(batch)


@pytest.mark.parametrize("mark", [False, True])  # the one statement, and a transaction
async def test_a_value_with_no_utf8_form_fails_the_batch_as_a_store_error(db: Path, mark: bool) -> None:
    async with SqliteStore(db) as store:
        bad = [events_commit("a", 1, "{}", 1.0, mark=mark), events_commit("b", 1, "\ud800", 1.0, mark=mark)]
        with pytest.raises(StoreError, match="surrogates not allowed"):
            await store.write(bad)
        assert await store.write([events_commit("a", 1, "{}", 1.0, mark=mark)]) == [Committed()]
    assert query(db, "SELECT entity_id FROM events") == [("a",)]  # nothing of the failed batch
