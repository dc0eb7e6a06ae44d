"""SQLite store on aiosqlite: WAL, one transaction per batch, schema migrations.

One writer connection applies each batch with a handful of ``executemany`` calls;
a second, query-only connection serves reads, so a read never sees a transaction
that is still open. By default the store is single-owner: it holds an ``flock`` on
the database file itself (so a symlink, a hard link or another spelling of the path
is the same lock) and on a lock file beside the file's real path (``<path>.lock``,
which also names the owner); a second system, in this or another process, gets
:class:`StoreLocked` naming the owner; the kernel drops the locks when its process
dies, so a stale owner is taken over without any cleanup. Writes run on a worker
thread of the store's own, so activities filling the shared thread pool never
delay a commit; on a single-owner ``NORMAL`` store a small batch (up to 64 writes)
is written on the event loop's thread instead, which saves the two thread hops
around it (SQLite's automatic checkpoint is then off: most checkpoints run beside
the writes on a connection and thread of their own, and every fourth on the worker
thread between two writes, which lets the WAL restart).

``SqliteStore(path, shared=True)`` is the :class:`~persistence.store.SharedStore` of
processes of one host: it takes the same locks *shared*, so any number of shared
openers coexist and exclude an exclusive one (and the other way round). Each batch
is one ``BEGIN IMMEDIATE`` transaction (SQLite has one writer at a time; others wait
up to ``busy_timeout``), membership times are SQLite's clock, and the fence is
checked inside the batch's write transaction, which makes it exact. A member also
holds an ``flock`` on its own file (``<path>.members/<hash of its id>.lock``) for
as long as it is joined, so ``claim`` declares a member whose process is gone dead
at once instead of waiting for its lease. SQLite cannot wake other processes:
``publish`` does nothing and subscribers are never called; members poll.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar

import aiosqlite
import anyio

from persistence.errors import (
    SEQUENCE_CONFLICT_CAUSES,
    InvalidWrite,
    NotOurDatabase,
    ShardLost,
    StoreError,
    StoreLocked,
)
from persistence.store import (
    SHARDS,
    Accept,
    Accepted,
    Commit,
    Committed,
    DeadLetter,
    Duplicate,
    FireTimer,
    InboxEntry,
    Journal,
    JournalEntry,
    MemberRecord,
    OutboxEntry,
    ProcessedMark,
    Prune,
    Pruned,
    Requeue,
    SaveSnapshot,
    ShardRecord,
    SignalRecord,
    SnapshotRecord,
    StoredEvent,
    TakeOutbox,
    TimerRecord,
    Write,
    WriteResult,
    check_mark_keys,
    inbox_taken,
    shard_of,
    signal_taken,
    write_entity,
)

APPLICATION = "durable-actors"
SCHEMA_VERSION = 4

_SIG_COLS = "entity_type, entity_id, signal_id, handler, args, fingerprint, accepted_at"
"""A signal's columns as version 1 created them (its DDL is built from this)."""
_SIG = f"{_SIG_COLS}, trace"
"""A signal's columns as read and written: version 2 added the nullable ``trace``."""
_SIG_PARAMS = ", ".join("?" * len(_SIG.split(", ")))

MIGRATIONS: dict[int, str] = {
    1: f"""
    CREATE TABLE actors_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE events (
        entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, seq INTEGER NOT NULL,
        type_name TEXT NOT NULL, version INTEGER NOT NULL, data TEXT NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (entity_type, entity_id, seq)) WITHOUT ROWID;
    CREATE TABLE snapshots (
        entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, seq INTEGER NOT NULL,
        schema TEXT NOT NULL, state TEXT NOT NULL, taken_at REAL NOT NULL,
        PRIMARY KEY (entity_type, entity_id, seq)) WITHOUT ROWID;
    CREATE TABLE inbox (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        {_SIG_COLS.replace(", ", " TEXT NOT NULL, ").replace("accepted_at", "accepted_at REAL")},
        UNIQUE (entity_type, entity_id, signal_id));
    CREATE TABLE processed (
        entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, signal_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL, outcome TEXT NOT NULL, processed_at REAL NOT NULL,
        PRIMARY KEY (entity_type, entity_id, signal_id)) WITHOUT ROWID;
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        {_SIG_COLS.replace(", ", " TEXT NOT NULL, ").replace("accepted_at", "accepted_at REAL")},
        error TEXT NOT NULL, traceback TEXT NOT NULL, attempts INTEGER NOT NULL,
        failed_at REAL NOT NULL);
    CREATE TABLE timers (
        entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, key TEXT NOT NULL,
        handler TEXT NOT NULL, args TEXT NOT NULL, due_at REAL NOT NULL, every REAL,
        PRIMARY KEY (entity_type, entity_id, key)) WITHOUT ROWID;
    CREATE INDEX timers_by_due ON timers (due_at);
    CREATE TABLE journal (
        entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, invocation_id TEXT NOT NULL,
        step INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, result TEXT NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (entity_type, entity_id, invocation_id, step)) WITHOUT ROWID;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        {_SIG_COLS.replace(", ", " TEXT NOT NULL, ").replace("accepted_at", "accepted_at REAL")});
    """,
    # the sender's trace context, kept with every stored signal (NULL: none, as for
    # every row written by version 1) and with timers, for the signals they deliver
    2: """
    ALTER TABLE inbox ADD COLUMN trace TEXT;
    ALTER TABLE dead_letters ADD COLUMN trace TEXT;
    ALTER TABLE outbox ADD COLUMN trace TEXT;
    ALTER TABLE timers ADD COLUMN trace TEXT;
    """,
    # retention: pruning by age finds old marks and dead letters without a full scan
    3: """
    CREATE INDEX processed_by_time ON processed (processed_at);
    CREATE INDEX dead_letters_by_time ON dead_letters (failed_at);
    """,
    # several members: the shard of every queued row (inbox and timers: their entity's;
    # outbox: the sender's; a row written before version 4 does not name its sender
    # and gets its target's shard), computed by the store's ``actors_shard`` function with the
    # count the opener put in actors_meta in the same transaction; membership and the
    # shard table, every shard free at epoch 0
    4: """
    ALTER TABLE inbox ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE timers ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
    UPDATE inbox SET shard = actors_shard(entity_type, entity_id,
        (SELECT CAST(value AS INTEGER) FROM actors_meta WHERE key = 'shard_count'));
    UPDATE timers SET shard = actors_shard(entity_type, entity_id,
        (SELECT CAST(value AS INTEGER) FROM actors_meta WHERE key = 'shard_count'));
    UPDATE outbox SET shard = actors_shard(entity_type, entity_id,
        (SELECT CAST(value AS INTEGER) FROM actors_meta WHERE key = 'shard_count'));
    CREATE INDEX inbox_by_shard ON inbox (shard, position);
    CREATE INDEX timers_by_shard ON timers (shard, due_at);
    CREATE INDEX outbox_by_shard ON outbox (shard, id);
    CREATE TABLE members (
        member_id TEXT PRIMARY KEY, name TEXT NOT NULL, serves INTEGER NOT NULL,
        status TEXT NOT NULL, ttl REAL NOT NULL, joined_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL) WITHOUT ROWID;
    CREATE TABLE shards (shard INTEGER PRIMARY KEY, owner TEXT, epoch INTEGER NOT NULL);
    INSERT INTO shards (shard, owner, epoch)
        WITH RECURSIVE n(s) AS (SELECT 0 UNION ALL SELECT s + 1 FROM n WHERE s + 1 <
            (SELECT CAST(value AS INTEGER) FROM actors_meta WHERE key = 'shard_count'))
        SELECT s, NULL, 0 FROM n;
    """,
}
"""Schema scripts by version; version N upgrades a database at N - 1."""

MAX_SHARDS = 4096
"""The most shards a database may have."""
NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"
"""SQLite's clock as Unix seconds (millisecond resolution), for membership times."""
_MAX_NAME = 500
"""The longest member id or name taken."""

Synchronous = Literal["NORMAL", "FULL"]
_log = logging.getLogger("persistence.sqlite")
_SEQ_CACHE = 200_000
"""Entities whose last sequence the writer remembers (then it forgets them all)."""
_INLINE_MAX = 64
"""By default a batch of at most this many writes, on a single-owner ``NORMAL`` store,
is written on the calling (event loop's) thread: no thread hop (``inline_writes``)."""
_CHECKPOINT_PAGES = 1000
"""About this many WAL pages written (estimated) and a checkpoint is due (SQLite's own
automatic checkpoint, at 1,000 pages, is off on an inline writer)."""
_RESTART_EVERY = 4
"""Of the due checkpoints, every this many-th runs on the writer's thread between two
writes (so the WAL restarts from its start); the others run beside the writes, on a
connection and thread of their own (see ``SqliteStore._write_job``)."""
_T = TypeVar("_T")


_shard = functools.lru_cache(maxsize=1 << 16)(shard_of)
"""shard_of, remembered for the entities seen recently."""


def _sig_row(s: SignalRecord) -> tuple[str, str, str, str, str, str, float, str | None]:
    return (
        s.entity_type,
        s.entity_id,
        s.signal_id,
        s.handler,
        s.args,
        s.fingerprint,
        s.accepted_at,
        s.trace,
    )


def _sig(row: Sequence[object]) -> SignalRecord:
    return SignalRecord(*row)  # type: ignore[arg-type]


def translate(e: BaseException, what: str) -> StoreError:
    """Turn a driver error into the framework's StoreError family (use with ``from``)."""
    msg = str(e)
    if isinstance(e, sqlite3.DatabaseError) and "file is not a database" in msg:
        return NotOurDatabase(f"{what}: the file is not a SQLite database ({msg})")
    if "readonly" in msg or "read-only" in msg:
        return StoreError(f"{what}: the database is read-only ({msg})")
    if "locked" in msg or "busy" in msg:
        return StoreError(f"{what}: the database is locked by another connection ({msg})")
    if "full" in msg:
        return StoreError(f"{what}: the disk is full ({msg})")
    return StoreError(f"{what}: {type(e).__name__}: {msg}")


def _marks_query(keys: Sequence[tuple[str, str, str]]) -> tuple[str, list[str]]:
    """The query of the processed marks of ``keys`` (the keys as the outer loop of a
    join: each is a primary-key search)."""
    values = ", ".join("(?, ?, ?)" for _ in keys)
    sql = (
        f"WITH k(t, i, s) AS (VALUES {values}) SELECT p.entity_type, p.entity_id, p.signal_id, "
        "p.fingerprint, p.outcome, p.processed_at FROM k JOIN processed p "
        "ON p.entity_type = k.t AND p.entity_id = k.i AND p.signal_id = k.s"
    )
    return sql, [x for k in keys for x in k]


def _found_marks(found: dict[tuple[str, str, str], ProcessedMark], rows: Iterable[sqlite3.Row]) -> None:
    for r in rows:
        found[(r[0], r[1], r[2])] = ProcessedMark(r[2], r[3], r[4], r[5])


def _locked(e: sqlite3.OperationalError) -> bool:
    msg = str(e)
    return "locked" in msg or "busy" in msg


class SqliteStore:
    """The embedded default store: one SQLite file in WAL mode, owned by one system.

    ``synchronous="NORMAL"`` (default) survives a crash of the process (kill -9);
    ``"FULL"`` also survives power loss at some cost in commit latency.

    ``inline_writes`` (default 64): on a single-owner ``NORMAL`` store, a batch of at
    most this many writes is written on the event loop's thread, which saves the two
    thread hops around it (the loop waits for that commit); 0 keeps every write on the
    store's worker thread. Ignored with ``FULL`` and ``shared=True`` (always the thread).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        shared: bool = False,
        shards: int | None = None,
        inline_writes: int = _INLINE_MAX,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"SqliteStore path must be a str or os.PathLike, got {path!r}")
        p = Path(path)
        if not str(path) or str(path) == ":memory:":
            raise ValueError("SqliteStore needs a file path (use MemoryStore for memory)")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if not isinstance(busy_timeout, (int, float)) or busy_timeout < 0:
            raise ValueError(f"busy_timeout must be seconds >= 0, got {busy_timeout!r}")
        if not isinstance(shared, bool):
            raise ValueError(f"shared must be True or False, got {shared!r}")
        if shards is not None and (
            isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS
        ):
            raise ValueError(f"shards must be an int 1..{MAX_SHARDS} or None, got {shards!r}")
        if isinstance(inline_writes, bool) or not isinstance(inline_writes, int) or inline_writes < 0:
            raise ValueError(f"inline_writes must be an int >= 0, got {inline_writes!r}")
        self.path = p
        self._shared = shared
        self._inline_max = inline_writes
        self._shards_wanted = shards
        self._shard_count = 0
        self._shared_db: tuple[int, int] | None = None
        """Key of this process's shared flock on the database file (shared mode)."""
        self._member_fds: dict[str, int] = {}
        """The flocked file of each member joined through this store."""
        self._fence: tuple[str, dict[int, int]] | None = None
        self._seq_keys: dict[int, set[tuple[str, str]]] = {}
        """Shared mode: the entities of each fenced shard whose last seq is cached."""
        self._callbacks: list[Callable[[str, str], None]] = []
        self.synchronous: Synchronous = synchronous
        self._busy_ms = int(busy_timeout * 1000)
        self._w: _Direct | None = None
        self._r: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._db_fd: int | None = None
        self._write_lock = anyio.Lock(fast_acquire=True)  # uncontended: no extra loop turn
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        """The writer connection's own thread: its jobs run one after another, in the
        order given, each as soon as the one before ends (not when the event loop gets
        round to it); never queued behind activities on anyio's default pool."""
        self._params_max = 999
        """Parameters one statement may have (SQLite's limit, read when it opens)."""
        self._queued = 0
        """Jobs given to the writer's thread and not yet awaited back: while there are
        any, nothing uses the writer connection on the event loop's thread."""
        self.write_depth = 1 if shared else 2
        """Batches a committer may give :meth:`write` before the first is written: the
        next is queued on the writer's thread while one is written, so SQLite writes
        beside the event loop's Python (single owner; 1 when shared)."""
        self._seqs: dict[tuple[str, str], int] = {}
        """Last event seq per entity as committed: by the file's one owner, or (shared)
        only for entities of shards this member holds in its fence."""
        self._pending_seqs: dict[tuple[str, str], int] = {}
        """One transaction at a time on the writer connection."""
        self._inline = not shared and synchronous == "NORMAL" and inline_writes > 0
        """Whether small batches are written on the caller's thread: only with no other
        writer to wait for (single owner) and no fsync per commit (``NORMAL``)."""
        self._wal_pages = 0
        """Inline writer: WAL pages written since the last checkpoint (an estimate)."""
        self._beside_count = 0
        """Checkpoints run beside the writes since the last one on the writer's thread."""
        self._beside: concurrent.futures.ThreadPoolExecutor | None = None
        """The thread of the checkpoints beside the writes (made with the first)."""
        self._beside_conn: sqlite3.Connection | None = None
        self._beside_job: concurrent.futures.Future[None] | None = None
        self.wal_retries = 0
        """Times opening found the file locked while switching it to WAL mode (and waited)."""

    def __repr__(self) -> str:
        shared = ", shared=True" if self.shared else ""
        return f"SqliteStore({str(self.path)!r}{shared})"

    @property
    def shared(self) -> bool:
        """Whether other systems (of any process of this host) may open the file at the
        same time: then each is a member or a client, and commits are fenced."""
        return self._shared

    @property
    def wakes(self) -> bool:
        """False: SQLite cannot call other processes back; members poll."""
        return False

    @property
    def shard_count(self) -> int:
        """The number of shards of this database (fixed when it was created), read when
        the store opens; before that, the count asked for (256 by default)."""
        return self._shard_count or self._shards_wanted or SHARDS

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._w is not None:
            raise StoreError(f"{self!r} is already open")
        try:
            self._check_file()
            self._take_lock()
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="actors-sqlite-writer")
            self._w = await self._on_thread(self._connect_writer)
            await self._on_thread(self._to_wal, self._w)
            await self._on_thread(_drive, self._migrate(self._w))
            self._params_max = self._w.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._r = await self._connect(query_only=True)
        except OSError as e:
            await self._close()
            raise StoreError(f"cannot open {self.path}: {e}") from e
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        # Shielded: a cancelled owner must still close the connections and drop the lock.
        # Each step runs whatever the one before it raised: a connection left open keeps
        # a thread of aiosqlite's alive (the interpreter would wait for it at exit), and
        # a lock left held keeps the file from the next owner.
        try:
            with anyio.CancelScope(shield=True):
                try:
                    if self._thread is not None:  # the jobs given to it end first
                        await anyio.to_thread.run_sync(self._thread.shutdown)
                        self._thread = None  # nothing is written from here on, nor checkpointed beside
                    if self._beside is not None:  # a checkpoint under way ends, then its connection closes
                        beside = self._beside
                        with contextlib.suppress(RuntimeError):  # (shut down already: closed below)
                            beside.submit(self._close_beside)
                        await anyio.to_thread.run_sync(beside.shutdown)
                        self._beside = self._beside_job = None
                        self._close_beside()  # nothing left to do unless its thread could not
                finally:
                    for conn in (self._r, self._w):
                        if conn is not None:
                            with contextlib.suppress(Exception):
                                await conn.close()  # _Direct.close is a plain call despite the await
        finally:
            self._r = self._w = None
            for fd in (*self._member_fds.values(), self._lock_fd, self._db_fd):
                if fd is not None:
                    os.close(fd)  # releases its flock
            self._member_fds.clear()
            self._lock_fd = self._db_fd = None
            if self._shared_db is not None:
                _release_shared(self._shared_db)
                self._shared_db = None

    def _check_file(self) -> None:
        p = self.path
        if p.is_dir():
            raise StoreError(f"{p} is a directory, not a database file")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise StoreError(f"cannot open {p}: folder {parent} does not exist")
        if p.exists() and not os.access(p, os.W_OK):
            raise StoreError(f"{p} is read-only: the store needs to write to it")
        if not os.access(parent, os.W_OK):
            raise StoreError(f"folder {parent} is read-only: SQLite needs it for WAL files")

    def _take_lock(self) -> None:
        """Lock the lock file beside the real path, then the database file itself.

        The first catches a second owner in this process before it opens the database
        (closing a file that SQLite has open would drop SQLite's own POSIX locks); the
        second is what identifies the file whatever its path, and holds even when the
        lock file is removed by hand. Each fd is kept on ``self`` as soon as it is
        open, so a failure releases both in ``_close``.
        """
        real = os.path.realpath(self.path)
        lock_path = f"{real}.lock"
        try:
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot create lock file {lock_path}: {e}") from e
        if self.shared:
            if not _try_flock(self._lock_fd, shared=True):
                raise self._locked(self._lock_fd)
            self._shared_db = _take_shared(real)
            if self._shared_db is None:
                raise self._locked(self._lock_fd)
            return
        if not _try_flock(self._lock_fd):
            if _try_flock(self._lock_fd, shared=True):  # held only by shared openers
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                raise StoreLocked(
                    f"{self.path} is in use by systems that opened it with shared=True "
                    "(open it with SqliteStore(path, shared=True) to join them)",
                    {"shared": True},
                )
            raise self._locked(self._lock_fd)
        try:
            self._db_fd = os.open(real, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot open {self.path}: {e}") from e
        if not _try_flock(self._db_fd):
            raise self._locked(self._lock_fd)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, json.dumps(info).encode(), 0)

    def _locked(self, fd: int) -> StoreLocked:
        owner = _read_owner(fd)
        but = " (it is exclusive: shared=True cannot join it)" if self.shared else ""
        return StoreLocked(
            f"{self.path} is in use by another running system "
            f"(pid {owner.get('pid', '?')} on {owner.get('host', '?')} "
            f"since {owner.get('since', '?')}){but}",
            owner,
        )

    def _connect_writer(self) -> _Direct:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise translate(e, f"cannot open {self.path}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            if self._inline:  # checkpoints run on the worker thread, never inline
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.create_function("actors_shard", 3, _shard_sql, deterministic=True)
        except sqlite3.Error as e:
            conn.close()
            raise translate(e, f"cannot open {self.path}") from e
        return _Direct(conn)

    async def _connect(self, *, query_only: bool) -> aiosqlite.Connection:
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as e:
            raise translate(e, f"cannot open {self.path}") from e
        try:
            await conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            await conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            if query_only:
                await conn.execute("PRAGMA query_only = 1")
        except sqlite3.Error as e:
            await conn.close()
            raise translate(e, f"cannot open {self.path}") from e
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _version(self, db: _Direct) -> int:
        """The schema version of the file (0: empty); NotOurDatabase for a foreign one."""
        rows = await db.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        tables = {r[0] for r in rows}
        version = 0
        if tables:
            if "actors_meta" not in tables:
                raise NotOurDatabase(
                    f"{self.path} is a SQLite database of another application "
                    f"(tables: {', '.join(sorted(tables)[:5])})"
                )
            meta = {r[0]: r[1] for r in await db.execute_fetchall("SELECT key, value FROM actors_meta")}
            if meta.get("application") != APPLICATION:
                raise NotOurDatabase(f"{self.path} belongs to {meta.get('application')!r}")
            stored = str(meta.get("schema_version", ""))
            if not stored.isdecimal():
                raise NotOurDatabase(f"{self.path} has no valid schema version ({stored!r})")
            version = int(stored)
            if version > SCHEMA_VERSION:
                raise NotOurDatabase(
                    f"{self.path} has schema version {version}, newer than this "
                    f"code's {SCHEMA_VERSION}: upgrade the package"
                )
        return version

    def _to_wal(self, db: _Direct) -> None:
        """Put the file in WAL mode (on a worker thread), once it is known to be ours.

        Setting the mode wants the file to itself: while another connection writes
        (a second process creating the same new file, in its migration), SQLite refuses
        at once with "database is locked" and calls no busy handler. So the switch is
        tried again for up to ``busy_timeout``; a file already in WAL mode is not asked."""
        try:
            _drive(self._version(db))  # refuses a file that is not ours before changing it
        except sqlite3.Error as e:
            raise translate(e, f"cannot open {self.path}") from e
        deadline = time.monotonic() + self._busy_ms / 1000
        conn = db.connection
        while True:
            try:
                rows = conn.execute("PRAGMA journal_mode").fetchall()
                if not rows or str(rows[0][0]).lower() != "wal":
                    rows = conn.execute("PRAGMA journal_mode = WAL").fetchall()
                break
            except sqlite3.OperationalError as e:
                if not _locked(e) or time.monotonic() >= deadline:
                    raise translate(e, f"cannot open {self.path}") from e
                self.wal_retries += 1
                time.sleep(0.005)  # a worker thread: another process must commit first
            except sqlite3.Error as e:
                raise translate(e, f"cannot open {self.path}") from e
        row = rows[0] if rows else None
        if row is None or str(row[0]).lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL mode (got {row!r})")

    async def _migrate(self, db: _Direct) -> None:
        try:
            version = await self._version(db)
            for v in range(version + 1, SCHEMA_VERSION + 1):
                await db.execute("BEGIN IMMEDIATE")
                # another process opening the file at the same time may have done it
                if await self._version(db) >= v:
                    await db.execute("COMMIT")
                    continue
                if v == 4:  # the shard count its statements read (actors_meta exists since 1)
                    await db.execute(
                        "INSERT OR REPLACE INTO actors_meta VALUES ('shard_count', ?)",
                        (str(self._shards_wanted or SHARDS),),
                    )
                for stmt in _statements(MIGRATIONS[v]):
                    await db.execute(stmt)
                await db.execute(
                    "INSERT OR REPLACE INTO actors_meta VALUES ('application', ?), ('schema_version', ?)",
                    (APPLICATION, str(v)),
                )
                await db.execute("COMMIT")
            await self._read_shard_count(db)
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise translate(e, f"cannot open {self.path}") from e

    async def _read_shard_count(self, db: _Direct) -> None:
        rows = list(await db.execute_fetchall("SELECT value FROM actors_meta WHERE key = 'shard_count'"))
        stored = str(rows[0][0]) if rows else ""
        if not stored.isdecimal() or not 1 <= int(stored) <= MAX_SHARDS:
            raise NotOurDatabase(f"{self.path} has no valid shard count ({stored!r})")
        count = int(stored)
        if self._shards_wanted is not None and self._shards_wanted != count:
            raise StoreError(
                f"{self.path} has {count} shards, not the {self._shards_wanted} asked for: the "
                "count is fixed when the database is created (pass shards=None to use it)"
            )
        self._shard_count = count

    # ------------------------------------------------------------ writes
    @property
    def _writer(self) -> _Direct:
        if self._w is None:
            raise StoreError(f"{self!r} is closed")
        return self._w

    @property
    def _reader(self) -> aiosqlite.Connection:
        if self._r is None:
            raise StoreError(f"{self!r} is closed")
        return self._r

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        """Apply ``batch`` in one transaction; one result per item, in order.

        Consecutive items of the same kind are applied together with ``executemany``;
        the whole batch runs in one call to a worker thread (one hop, not one per
        statement), which is not abandoned on cancellation.

        With a fence (:meth:`set_fence`), a batch with fenced writes is checked first:
        a shard not in the fence is refused before the database is asked; then, inside
        the batch's ``BEGIN IMMEDIATE`` transaction and before any other statement, the
        owner and epoch of every touched shard must be this member's and the fence's,
        or nothing is written and :class:`ShardLost` names the lost shards.
        """
        async with self._write_lock:
            check = self._fence_check(batch)
            job = self._write_job(batch, check)
            if not isinstance(job, concurrent.futures.Future):
                return job  # written here, on this thread
            self._queued += 1  # under the lock: the next write sees it
        # the lock is free again: the next batch may be queued on the thread behind this one
        try:
            results, pages = await self._awaited(job)
        except ShardLost as e:
            if check is not None:
                self._drop_fence({s: check[1][s] for s in e.shards if s in check[1]})
            raise
        self._wal_pages += pages
        return results

    def _write_job(
        self, batch: Sequence[Write], check: tuple[str, dict[int, int]] | None
    ) -> list[WriteResult] | concurrent.futures.Future[tuple[list[WriteResult], int]]:
        """Write ``batch`` here, or give it to the writer's thread (the write lock held).

        A single-owner ``NORMAL`` store writes a small batch on this thread when nothing
        is queued on the writer's: a commit in WAL mode without an fsync is a few page
        writes to the OS cache, and no other process can make it wait (the file is this
        store's alone), so it costs less than the two thread hops around it. A big batch
        goes to the thread, where SQLite's work runs beside the event loop's. The WAL's
        checkpoint (copying pages into the database, fsyncs) never runs on this thread:
        SQLite's automatic one is off on that connection, and one is due about every
        1,000 pages written (``_CHECKPOINT_PAGES``). Most run beside the writes, on a
        connection and thread of their own: they copy what was written before they
        began while the writer goes on, so neither the writer nor the event loop waits
        for them. Every fourth (``_RESTART_EVERY``) is queued on the writer's thread
        behind a batch, between two writes, where it copies only what was written
        since the last one and lets the next write restart the WAL from its start (a
        checkpoint beside continuous writes never catches up with them, and the WAL is
        only restarted after one that did): the WAL stays near 4,000 pages. That one
        is a job of its own, so the batch's results go back first: its callers (and
        the event loop) go on while SQLite copies the pages. A checkpoint that comes
        due while one beside is still running waits for it.
        """
        if not self._inline:
            return self._submit(self._write_counted, batch, check)
        if self._wal_pages >= _CHECKPOINT_PAGES and not self._checkpointing_beside():
            self._wal_pages = 0
            self._beside_count += 1
            if self._beside_count < _RESTART_EVERY:
                self._checkpoint_beside()
            else:
                self._beside_count = 0
                job = self._submit(self._write_counted, batch, None)
                self._checkpoint_after()
                return job
        if len(batch) <= self._inline_max and not self._queued and self._thread is not None:
            return self._write_here(batch)
        return self._submit(self._write_counted, batch, None)

    def _checkpoint_after(self) -> None:
        """Queue a checkpoint on the writer's thread, behind what is there; counted in
        ``_queued`` until it ends (nothing uses the writer connection here meanwhile)."""
        job = self._submit(self._checkpoint)
        self._queued += 1

        def ended(done: asyncio.Future[None]) -> None:
            self._queued -= 1
            if not done.cancelled() and done.exception() is not None:  # a bug: _checkpoint logs its errors
                _log.error("checkpoint of %s failed", self.path, exc_info=done.exception())

        asyncio.wrap_future(job).add_done_callback(ended)

    def _checkpointing_beside(self) -> bool:
        """A checkpoint beside the writes is under way (the next one waits for it)."""
        job = self._beside_job
        return job is not None and not job.done()

    def _checkpoint_beside(self) -> None:
        """Start a checkpoint on a connection and thread of its own, while the writer
        goes on writing: SQLite lets a checkpoint copy the WAL's pages into the database
        beside a writer (it copies what was written before it began). It cannot restart
        the WAL (the writer has written more by its end), which the next checkpoint on
        the writer's thread does, copying only what was written since."""
        if self._thread is None:  # closed: nothing more is written
            return
        if self._beside is None:
            self._beside = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="actors-sqlite-checkpoint"
            )
        try:
            self._beside_job = self._beside.submit(self._checkpoint_there)
        except RuntimeError:  # the store is closing (that thread is shut down): the write goes on
            self._beside_job = None

    def _checkpoint_there(self) -> None:
        """On the thread of the checkpoints beside the writes."""
        try:
            if self._beside_conn is None:
                self._beside_conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._beside_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:  # committed all the same; the next checkpoint catches up
            _log.warning("checkpoint of %s failed: %s", self.path, e)

    def _close_beside(self) -> None:
        """On the thread of the checkpoints beside the writes, after the last of them."""
        if self._beside_conn is not None:
            self._beside_conn.close()
            self._beside_conn = None

    def _checkpoint(self) -> None:
        """On the writer's thread: copy the WAL's pages into the database (PASSIVE: waits
        for no reader) and reset the WAL if every page got there."""
        try:
            self._writer._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:  # committed all the same; the next checkpoint catches up
            _log.warning("checkpoint of %s failed: %s", self.path, e)

    def _submit(self, fn: Callable[..., _T], *args: object) -> concurrent.futures.Future[_T]:
        """Give ``fn(*args)`` to the writer's thread (the caller counts it in ``_queued``)."""
        thread = self._thread
        if thread is None:
            raise StoreError(f"{self!r} is closed")
        try:
            return thread.submit(fn, *args)
        except RuntimeError as e:  # shut down meanwhile
            raise StoreError(f"{self!r} is closed") from e

    async def _awaited(self, job: concurrent.futures.Future[_T]) -> _T:
        """The result of a job given to the writer's thread (counted in ``_queued``);
        not abandoned on cancellation: it runs to its end, and so does this wait."""
        try:
            with anyio.CancelScope(shield=True):
                result = await asyncio.wrap_future(job)
        finally:
            self._queued -= 1
        return result

    async def _on_thread(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run ``fn(*args)`` on the writer's thread, after what is queued there."""
        job = self._submit(fn, *args)
        self._queued += 1
        return await self._awaited(job)

    def _write_counted(
        self, batch: Sequence[Write], check: tuple[str, dict[int, int]] | None
    ) -> tuple[list[WriteResult], int]:
        """On the writer's thread: write ``batch``; its results and the WAL pages it
        wrote (estimated)."""
        conn = self._writer._conn
        before = conn.total_changes
        results = _drive(self._write(self._writer, batch, check))
        return results, 2 + conn.total_changes - before

    def _write_here(self, batch: Sequence[Write]) -> list[WriteResult]:
        """Write ``batch`` on this thread (the write lock held)."""
        before = self._writer._conn.total_changes
        try:
            return _drive(self._write(self._writer, batch))
        finally:
            self._count_pages(before)

    def _count_pages(self, changes_before: int) -> None:
        # pages: one or two per transaction, one per row at most (rows of scattered entities)
        self._wal_pages += 2 + self._writer._conn.total_changes - changes_before

    def write_now(self, batch: Sequence[Write]) -> list[WriteResult] | None:
        """Apply a small batch at once on this thread, as :meth:`write` would, or return
        None having done nothing: not a single-owner ``NORMAL`` store, a big batch, a
        checkpoint due, another write under way, or a ``write`` of a subclass or set on
        the instance (a wrapper must see every write; :class:`~persistence.store.WritesNow`)."""
        if (
            not self._inline
            or getattr(self.write, "__func__", None) is not SqliteStore.write  # overridden or wrapped
            or self._w is None
            or len(batch) > self._inline_max
            or self._wal_pages >= _CHECKPOINT_PAGES
            or self._write_lock.locked()
            or self._queued
            or self._fence is not None
        ):
            return None
        self._write_lock.acquire_nowait()
        try:
            return self._write_here(batch)
        finally:
            self._write_lock.release()

    def _fence_check(self, batch: Sequence[Write]) -> tuple[str, dict[int, int]] | None:
        """The (member, {shard: epoch}) the batch's fenced writes need; ShardLost for a
        shard outside the fence; None when nothing is to be checked."""
        if self._fence is None:
            return None
        member, epochs = self._fence
        touched = set()
        for w in batch:
            entity = write_entity(w)
            if entity is not None:
                touched.add(_shard(*entity, self._shard_count))
        if not touched:
            return None
        missing = touched - epochs.keys()
        if missing:
            raise ShardLost(
                f"member {member} does not hold shard(s) {sorted(missing)} in its fence: "
                "nothing of the batch was written",
                frozenset(missing),
            )
        return member, {s: epochs[s] for s in touched}

    async def _write(
        self, db: _Direct, batch: Sequence[Write], check: tuple[str, dict[int, int]] | None = None
    ) -> list[WriteResult]:
        if check is None and not self._shared:
            rows = _event_rows(batch, 1 << ((self._params_max // 7).bit_length() - 1))
            if rows is not None:
                return await self._write_events(db, batch, rows)  # type: ignore[arg-type]
        self._pending_seqs = {}
        try:
            await db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise translate(e, "write") from e
        try:
            if check is not None:
                await self._check_fence(db, *check)
            results: list[WriteResult] = []
            i = 0
            while i < len(batch):
                j = i + 1
                while j < len(batch) and type(batch[j]) is type(batch[i]):
                    j += 1
                results.extend(await self._apply_run(db, batch[i:j]))
                i = j
            await db.execute("COMMIT")
            self._remember_seqs()
            return results
        except BaseException as e:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error | UnicodeError):  # a lone surrogate: no UTF-8 to bind
                raise translate(e, "write") from e
            raise

    async def _insert(self, db: _Direct, head: str, rows: Sequence[Sequence[object]]) -> None:
        """``head VALUES (...), (...)``: ``rows`` in as few statements as SQLite's limit on
        parameters allows (one ``executemany`` would give the GIL back and take it again
        after every row, and wait for it while the event loop runs Python)."""
        width = len(rows[0])
        per = max(1, 1 << ((self._params_max // width).bit_length() - 1))  # a power of two
        for i in range(0, len(rows), per):
            flat, n = _padded([x for r in rows[i : i + per] for x in r], width)
            await db.execute(_insert_sql(head, width, n), flat)

    async def _write_events(
        self, db: _Direct, batch: Sequence[Commit], rows: list[object]
    ) -> list[WriteResult]:
        """A batch of commits that only append events (a single owner's, no fence): one
        ``INSERT`` of all their rows, a transaction of its own (all or nothing). SQLite
        runs it without the GIL from end to end, where a statement per row needs the
        GIL back after each row (and waits for it while the event loop runs Python)."""
        self._pending_seqs = {}
        try:
            await self._check_seqs(db, batch)
            flat, n = _padded(rows, 7)
            await db.execute(_insert_sql("INSERT INTO events", 7, n), flat)
        except sqlite3.IntegrityError as e:
            raise StoreError(_append_conflict(e)) from e
        except (sqlite3.Error, UnicodeError) as e:  # a lone surrogate: no UTF-8 to bind
            raise translate(e, "write") from e
        self._remember_seqs()
        plain = Committed()
        return [plain] * len(batch)

    async def _check_fence(self, db: _Direct, member: str, epochs: dict[int, int]) -> None:
        rows = await db.execute_fetchall(
            "SELECT shard, owner, epoch FROM shards WHERE shard IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(epochs)),),
        )
        held = {int(r[0]) for r in rows if r[1] == member and r[2] == epochs[int(r[0])]}
        lost = epochs.keys() - held
        if lost:
            raise ShardLost(
                f"member {member} no longer owns shard(s) {sorted(lost)} at the epochs it "
                "holds (taken over or released): nothing of the batch was written",
                frozenset(lost),
            )

    def _remember_seqs(self) -> None:
        """Keep the committed batch's last seqs: all of them for the file's one owner; in
        shared mode only those of entities in shards of the fence (dropped with them)."""
        if len(self._seqs) > _SEQ_CACHE:
            self._seqs.clear()
            self._seq_keys.clear()
        if not self.shared:
            self._seqs.update(self._pending_seqs)
            return
        if self._fence is None:
            return
        epochs = self._fence[1]
        for key, seq in self._pending_seqs.items():
            shard = _shard(*key, self._shard_count)
            if shard in epochs:
                self._seqs[key] = seq
                self._seq_keys.setdefault(shard, set()).add(key)

    async def _apply_run(self, db: _Direct, run: Sequence[Write]) -> list[WriteResult]:
        first = run[0]
        if isinstance(first, Accept):
            return list(await self._accept(db, [(w.signal, w.check_duplicate) for w in run]))  # type: ignore[union-attr]
        if isinstance(first, Commit):
            return list(await self._commit(db, run))  # type: ignore[arg-type]
        if isinstance(first, SaveSnapshot):
            await self._snapshots(db, run)  # type: ignore[arg-type]
            return [None] * len(run)
        out: list[WriteResult] = []
        for w in run:
            out.append(await self._apply_one(db, w))
        return out

    async def _apply_one(self, db: _Direct, w: Write) -> WriteResult:
        if isinstance(w, Requeue):
            await self._requeue(db, w.dead_letter_id)
            return None
        if isinstance(w, Journal):
            e = w.entry
            await db.execute(
                "INSERT OR REPLACE INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    e.entity_type,
                    e.entity_id,
                    e.invocation_id,
                    e.step,
                    e.kind,
                    e.name,
                    e.result,
                    e.recorded_at,
                ),
            )
            if w.inbox is not None:
                await self._accept(db, [(w.inbox, True)])
            return None
        if isinstance(w, FireTimer):
            return await self._fire(db, w)
        if isinstance(w, TakeOutbox):
            await db.execute("DELETE FROM outbox WHERE id = ?", (w.outbox_id,))
            return (await self._accept(db, [(w.accept.signal, w.accept.check_duplicate)]))[0]
        if isinstance(w, Prune):
            return await self._prune(db, w)
        raise TypeError(f"unknown write {w!r}")

    async def _accept(
        self, db: _Direct, items: Sequence[tuple[SignalRecord, bool]]
    ) -> list[Accepted | Duplicate]:
        known: dict[tuple[str, str, str], Duplicate] = {}
        checked = [s for s, check in items if check]
        for chunk in _chunks(checked, 300):
            keys = [(s.entity_type, s.entity_id, s.signal_id) for s in chunk]
            values = ", ".join("(?, ?, ?)" for _ in keys)
            flat = [x for k in keys for x in k]
            # the keys as the outer loop of a join: each is a primary-key search (a row-value
            # IN (VALUES ...) of more than one key scans the whole table instead)
            keyed = f"WITH k(t, i, s) AS (VALUES {values}) SELECT p.entity_type, p.entity_id, p.signal_id"
            on = "ON p.entity_type = k.t AND p.entity_id = k.i AND p.signal_id = k.s"
            for row in await db.execute_fetchall(
                f"{keyed}, p.fingerprint FROM k JOIN inbox p {on}",
                flat,
            ):
                known[(row[0], row[1], row[2])] = Duplicate(row[3], None)
            for row in await db.execute_fetchall(
                f"{keyed}, p.fingerprint, p.outcome, p.processed_at FROM k JOIN processed p {on}",
                flat,
            ):
                mark = ProcessedMark(row[2], row[3], row[4], row[5])
                known[(row[0], row[1], row[2])] = Duplicate(row[3], mark)
        results: list[Accepted | Duplicate] = []
        rows = []
        for s, check in items:
            key = (s.entity_type, s.entity_id, s.signal_id)
            dup = known.get(key) if check else None  # unchecked: the UNIQUE index decides
            if dup is not None:
                results.append(dup)
                continue
            known[key] = Duplicate(s.fingerprint, None)
            rows.append((*_sig_row(s), _shard(s.entity_type, s.entity_id, self._shard_count)))
            results.append(Accepted())
        if rows:
            await self._insert(db, f"INSERT INTO inbox ({_SIG}, shard)", rows)
        return results

    async def _commit(self, db: _Direct, run: Sequence[Commit]) -> list[Committed]:
        events = [
            (
                c.entity_type,
                c.entity_id,
                c.first_seq + i,
                e.type_name,
                e.version,
                e.data,
                c.recorded_at,
            )
            for c in run
            for i, e in enumerate(c.events)
        ]
        if events:
            await self._check_seqs(db, run)
            try:
                await self._insert(db, "INSERT INTO events", events)
            except sqlite3.IntegrityError as e:
                raise StoreError(_append_conflict(e)) from e
        marks = [c.mark_row() for c in run if c.mark]
        if marks:
            try:
                await self._insert(db, "INSERT INTO processed", marks)
            except sqlite3.IntegrityError as e:
                raise StoreError(f"a signal in this batch is already processed: {e}") from e
        taken = inbox_taken(run)
        if taken:  # each must still be there: else it was processed already (SignalTaken)
            done = await db.executemany(
                "DELETE FROM inbox WHERE entity_type = ? AND entity_id = ? AND signal_id = ?",
                taken,
            )
            if done.rowcount != len(taken):
                raise signal_taken(taken, done.rowcount)
        journals = [(c.entity_type, c.entity_id, c.signal.signal_id) for c in run if c.has_journal]
        if journals:
            await db.executemany(
                "DELETE FROM journal WHERE entity_type = ? AND entity_id = ? AND invocation_id = ?",
                journals,
            )
        plain = Committed()
        results = []
        for c in run:
            extras = c.dead_letter is not None or c.set_timers or c.cancel_timers or c.outbox
            results.append(await self._commit_extras(db, c) if extras else plain)
        return results

    async def _check_seqs(self, db: _Direct, run: Sequence[Commit]) -> None:
        """The log is contiguous from 1: each commit appends right after the last event."""
        if self._seqs_known(run):
            return
        keys = list(dict.fromkeys((c.entity_type, c.entity_id) for c in run if c.events))
        nexts: dict[tuple[str, str], int] = {}
        unknown = []
        for k in keys:
            last = self._pending_seqs.get(k, self._seqs.get(k))
            if last is None:
                unknown.append(k)
            else:
                nexts[k] = last + 1
        nexts.update(await self._log_ends(db, unknown))
        read = set(unknown)
        for c in run:
            if not c.events:
                continue
            key = (c.entity_type, c.entity_id)
            if c.first_seq != nexts[key] and key not in read and key not in self._pending_seqs:
                nexts.update(await self._log_ends(db, [key]))  # the remembered end may be stale
                read.add(key)
            if c.first_seq != nexts[key]:
                raise StoreError(
                    f"sequence conflict on {c.entity_type}/{c.entity_id}: appending at "
                    f"{c.first_seq}, log ends at {nexts[key] - 1} {SEQUENCE_CONFLICT_CAUSES}"
                )
            nexts[key] += len(c.events)
            self._pending_seqs[key] = nexts[key] - 1

    def _seqs_known(self, run: Sequence[Commit]) -> bool:
        """The check in one pass, when every entity's log end is known (remembered, or
        moved by this batch) and each commit appends right after it: True, and the ends
        moved on. False changes nothing: an unknown or stale end is read from the
        database, and a conflict is named, by the full check."""
        pending, seqs = self._pending_seqs, self._seqs
        moved: dict[tuple[str, str], int] = {}
        for c in run:
            n = len(c.events)
            if not n:
                continue
            key = (c.entity_type, c.entity_id)
            last = moved.get(key)
            if last is None:
                last = pending.get(key)
                if last is None:
                    last = seqs.get(key)
                    if last is None:
                        return False
            if c.first_seq != last + 1:
                return False
            moved[key] = last + n
        pending.update(moved)
        return True

    async def _log_ends(self, db: _Direct, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The next sequence of each entity's log, as the database has it."""
        out: dict[tuple[str, str], int] = {}
        for chunk in _chunks(keys, 300):
            values = ", ".join("(?, ?)" for _ in chunk)
            for row in await db.execute_fetchall(
                f"WITH k(t, i) AS (VALUES {values}) SELECT t, i, (SELECT max(seq) FROM events "
                "WHERE entity_type = k.t AND entity_id = k.i) FROM k",
                [x for k in chunk for x in k],
            ):
                out[(row[0], row[1])] = int(row[2] or 0) + 1
        return out

    async def _commit_extras(self, db: _Direct, c: Commit) -> Committed:
        if c.dead_letter is not None:
            err, tb, attempts = c.dead_letter
            await db.execute(
                f"INSERT INTO dead_letters ({_SIG}, error, traceback, attempts, failed_at) "
                f"VALUES ({_SIG_PARAMS}, ?, ?, ?, ?)",
                (*_sig_row(c.signal), err, tb, attempts, c.recorded_at),
            )
        if c.set_timers:
            await db.executemany(
                "INSERT OR REPLACE INTO timers (entity_type, entity_id, key, handler, args, due_at, "
                "every, trace, shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        t.entity_type,
                        t.entity_id,
                        t.key,
                        t.handler,
                        t.args,
                        t.due_at,
                        t.every,
                        t.trace,
                        _shard(t.entity_type, t.entity_id, self._shard_count),
                    )
                    for t in c.set_timers
                ],
            )
        if c.cancel_timers:
            await db.executemany(
                "DELETE FROM timers WHERE entity_type = ? AND entity_id = ? AND key = ?",
                [(c.entity_type, c.entity_id, k) for k in c.cancel_timers],
            )
        ids = []
        sender = _shard(c.entity_type, c.entity_id, self._shard_count) if c.outbox else 0
        for s in c.outbox:
            cur = await db.execute(
                f"INSERT INTO outbox ({_SIG}, shard) VALUES ({_SIG_PARAMS}, ?)", (*_sig_row(s), sender)
            )
            ids.append(int(cur.lastrowid or 0))
        return Committed(tuple(ids))

    async def _snapshots(self, db: _Direct, run: Sequence[SaveSnapshot]) -> None:
        for w in run:
            s = w.snapshot
            await db.execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
                (s.entity_type, s.entity_id, s.seq, s.schema, s.state, s.taken_at),
            )
            await db.execute(
                "DELETE FROM snapshots WHERE entity_type = ? AND entity_id = ? AND seq NOT IN "
                "(SELECT seq FROM snapshots WHERE entity_type = ? AND entity_id = ? "
                "ORDER BY seq DESC LIMIT ?)",
                (s.entity_type, s.entity_id, s.entity_type, s.entity_id, max(w.keep, 1)),
            )

    async def _requeue(self, db: _Direct, dl_id: int) -> None:
        rows = await db.execute_fetchall(f"SELECT {_SIG} FROM dead_letters WHERE id = ?", (dl_id,))
        if not rows:
            raise StoreError(f"no dead letter with id {dl_id}")
        s = _sig(next(iter(rows)))
        await db.execute("DELETE FROM dead_letters WHERE id = ?", (dl_id,))
        await db.execute(
            "DELETE FROM processed WHERE entity_type = ? AND entity_id = ? AND signal_id = ?",
            (s.entity_type, s.entity_id, s.signal_id),
        )
        await self._accept(db, [(s, False)])

    async def _prune(self, db: _Direct, w: Prune) -> Pruned:
        """A delete per kind, each on an index (the inbox looked up by its unique key).

        With a ``limit`` each delete takes the oldest rows its subquery picks.
        """
        marks = journals = dead = 0
        limit = -1 if w.limit is None else w.limit  # SQLite: a negative LIMIT is none
        if w.marks_before is not None:
            marks = await self._delete(
                db,
                "processed",
                "entity_type, entity_id, signal_id",
                "processed_at < ? AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.entity_type = "
                "t.entity_type AND i.entity_id = t.entity_id AND i.signal_id = t.signal_id) "
                "ORDER BY processed_at",
                [w.marks_before, limit],
            )
            journals = await self._delete(
                db,
                "journal",
                "entity_type, entity_id, invocation_id, step",
                "recorded_at < ? AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.entity_type = "
                "t.entity_type AND i.entity_id = t.entity_id AND i.signal_id = t.invocation_id) "
                "ORDER BY recorded_at",
                [w.marks_before, limit],
            )
        where: list[str] = []
        params: list[float | int] = []
        if w.dead_letters_before is not None:
            where.append("failed_at < ?")
            params.append(w.dead_letters_before)
        if w.keep_dead_letters is not None:
            # NULL (fewer than N + 1 letters) matches nothing
            where.append("id <= (SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?)")
            params.append(w.keep_dead_letters)
        if where:
            dead = await self._delete(
                db, "dead_letters", "id", f"{' OR '.join(where)} ORDER BY id", [*params, limit]
            )
        return Pruned(marks=marks, dead_letters=dead, journals=journals)

    @staticmethod
    async def _delete(db: _Direct, table: str, key: str, where: str, params: Sequence[object]) -> int:
        """Delete the rows of ``table`` (alias ``t``) that ``where ORDER BY ...`` picks, up to
        the last parameter (a LIMIT; -1 for all); the number deleted."""
        if params[-1] == -1:  # all of them: one pass, without the subquery
            cond = where.rsplit(" ORDER BY ", 1)[0]
            cur = await db.execute(f"DELETE FROM {table} AS t WHERE {cond}", params[:-1])
        else:
            picked = f"SELECT {key} FROM {table} AS t WHERE {where} LIMIT ?"
            cur = await db.execute(f"DELETE FROM {table} WHERE ({key}) IN ({picked})", params)
        return cur.rowcount

    async def _fire(self, db: _Direct, w: FireTimer) -> Accepted | Duplicate | None:
        t = w.timer
        rows = list(
            await db.execute_fetchall(
                "SELECT handler, args, due_at, every FROM timers "
                "WHERE entity_type = ? AND entity_id = ? AND key = ?",
                (t.entity_type, t.entity_id, t.key),
            )
        )
        if not rows or tuple(rows[0]) != (t.handler, t.args, t.due_at, t.every):
            return None  # replaced or cancelled meanwhile
        result = (await self._accept(db, [(w.signal, True)]))[0]
        if w.next_due is None:
            await db.execute(
                "DELETE FROM timers WHERE entity_type = ? AND entity_id = ? AND key = ?",
                (t.entity_type, t.entity_id, t.key),
            )
        else:
            await db.execute(
                "UPDATE timers SET due_at = ? WHERE entity_type = ? AND entity_id = ? AND key = ?",
                (w.next_due, t.entity_type, t.entity_id, t.key),
            )
        return result

    # ------------------------------------------------------------ reads
    async def _read(self, sql: str, params: Sequence[object]) -> Iterable[sqlite3.Row]:
        try:
            return await self._reader.execute_fetchall(sql, params)
        except (sqlite3.Error, UnicodeError) as e:  # a lone surrogate: no UTF-8 to bind
            raise translate(e, "read") from e

    async def read_snapshots(self, entity_type: str, entity_id: str) -> list[SnapshotRecord]:
        """The entity's snapshots, newest first."""
        rows = await self._read(
            "SELECT seq, schema, state, taken_at FROM snapshots "
            "WHERE entity_type = ? AND entity_id = ? ORDER BY seq DESC",
            (entity_type, entity_id),
        )
        return [SnapshotRecord(entity_type, entity_id, r[0], r[1], r[2], r[3]) for r in rows]

    async def read_events(
        self, entity_type: str, entity_id: str, *, after: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` events with ``seq > after``, in order."""
        rows = await self._read(
            "SELECT seq, type_name, version, data, recorded_at FROM events "
            "WHERE entity_type = ? AND entity_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (entity_type, entity_id, after, limit),
        )
        return [StoredEvent(*r) for r in rows]

    async def last_seq(self, entity_type: str, entity_id: str) -> int:
        """The sequence of the entity's newest event (0 when it has none)."""
        rows = await self._read(
            "SELECT max(seq) FROM events WHERE entity_type = ? AND entity_id = ?",
            (entity_type, entity_id),
        )
        for r in rows:
            return int(r[0] or 0)
        return 0

    async def read_mark(self, entity_type: str, entity_id: str, signal_id: str) -> ProcessedMark | None:
        """The processed mark of a signal, if it was processed."""
        rows = await self._read(
            "SELECT signal_id, fingerprint, outcome, processed_at FROM processed "
            "WHERE entity_type = ? AND entity_id = ? AND signal_id = ?",
            (entity_type, entity_id, signal_id),
        )
        for r in rows:
            return ProcessedMark(*r)
        return None

    async def read_marks(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], ProcessedMark]:
        """The processed marks of several signals, ``(entity_type, entity_id, signal_id)``
        each, in one read per 300: those processed (a signal not processed has no entry)."""
        check_mark_keys(keys)
        found: dict[tuple[str, str, str], ProcessedMark] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), 300):
            sql, params = _marks_query(chunk)
            _found_marks(found, await self._read(sql, params))
        return found

    def read_marks_now(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], ProcessedMark] | None:
        """:meth:`read_marks` of at most 300 keys at once on this thread, through the
        writer's connection, or None having read nothing: the same conditions as
        :meth:`write_now` (a single-owner ``NORMAL`` store, no write under way, no
        ``read_marks`` of a subclass or set on the instance). A repeat check of a keyed
        signal then costs no thread hop."""
        if (
            not self._inline
            or getattr(self.read_marks, "__func__", None) is not SqliteStore.read_marks
            or self._w is None
            or len(keys) > 300
            or self._write_lock.locked()
            or self._queued
        ):
            return None
        check_mark_keys(keys)
        found: dict[tuple[str, str, str], ProcessedMark] = {}
        if not keys:
            return found
        sql, params = _marks_query(keys)
        self._write_lock.acquire_nowait()
        try:
            _found_marks(found, self._writer.connection.execute(sql, params).fetchall())
        except (sqlite3.Error, UnicodeError) as e:
            raise translate(e, "read") from e
        finally:
            self._write_lock.release()
        return found

    async def read_inbox(
        self, *, after: int, limit: int, shards: Collection[int] | None = None
    ) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order; with ``shards``,
        only those of entities in these shards."""
        where, params = _in_shards(shards)
        if where is None:
            return []
        rows = await self._read(
            f"SELECT position, {_SIG} FROM inbox WHERE {where}position > ? ORDER BY position LIMIT ?",
            (*params, after, limit),
        )
        return [InboxEntry(r[0], _sig(r[1:])) for r in rows]

    async def read_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        rows = await self._read(
            f"SELECT id, {_SIG}, error, traceback, attempts, failed_at FROM dead_letters ORDER BY id LIMIT ?",
            (limit,),
        )
        return [DeadLetter(r[0], _sig(r[1:9]), r[9], r[10], r[11], r[12]) for r in rows]

    async def read_timers(
        self, *, limit: int, after_due: float = float("-inf"), shards: Collection[int] | None = None
    ) -> list[TimerRecord]:
        """Timers in due order; with ``shards``, only those of entities in these shards."""
        where, params = _in_shards(shards)
        if where is None:
            return []
        rows = await self._read(
            "SELECT entity_type, entity_id, key, handler, args, due_at, every, trace FROM timers "
            f"WHERE {where}due_at > ? ORDER BY due_at, entity_type, entity_id, key LIMIT ?",
            (*params, after_due if after_due != float("-inf") else -1e300, limit),
        )
        return [TimerRecord(*r) for r in rows]

    async def read_journal(self, entity_type: str, entity_id: str, invocation_id: str) -> list[JournalEntry]:
        """The recorded steps of one invocation, in step order."""
        rows = await self._read(
            "SELECT entity_type, entity_id, invocation_id, step, kind, name, result, recorded_at "
            "FROM journal WHERE entity_type = ? AND entity_id = ? AND invocation_id = ? "
            "ORDER BY step",
            (entity_type, entity_id, invocation_id),
        )
        return [JournalEntry(*r) for r in rows]

    async def read_outbox(
        self, *, after: int, limit: int, shards: Collection[int] | None = None
    ) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order; with ``shards``, only
        those whose sender (the entity whose commit wrote them) is in these shards."""
        where, params = _in_shards(shards)
        if where is None:
            return []
        rows = await self._read(
            f"SELECT id, {_SIG} FROM outbox WHERE {where}id > ? ORDER BY id LIMIT ?",
            (*params, after, limit),
        )
        return [OutboxEntry(r[0], _sig(r[1:])) for r in rows]

    # ------------------------------------------------------------ several members
    async def _membership(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` on the writer connection, on its thread, after the pending writes."""
        conn = self._writer._conn
        async with self._write_lock:
            try:
                return await self._on_thread(fn, conn)
            except sqlite3.Error as e:
                raise translate(e, "membership") from e

    def _member_file(self, member_id: str) -> str:
        digest = hashlib.sha256(member_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return os.path.join(f"{os.path.realpath(self.path)}.members", f"{digest}.lock")

    async def join(self, member_id: str, name: str, *, serves: bool, ttl: float) -> None:
        """Add a member, alive, heartbeat now (SQLite's clock). ``member_id`` must be new.

        The member holds an ``flock`` on its own file beside the database until it
        leaves or the store closes, so others see at once when its process is gone.
        """
        _check_id("member_id", member_id)
        _check_id("name", name)
        if not isinstance(serves, bool):
            raise InvalidWrite(f"join serves must be True or False, got {serves!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not (0 < ttl < math.inf):
            raise InvalidWrite(f"join ttl must be seconds > 0, got {ttl!r}")
        if member_id in self._member_fds:
            raise StoreError(f"member {member_id} already joined through {self!r}")
        path = self._member_file(member_id)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot create member lock file {path}: {e}") from e
        if not _try_flock(fd):
            os.close(fd)
            raise StoreError(f"member id {member_id!r} is in use by a running member (ids are never reused)")

        def insert(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "INSERT INTO members (member_id, name, serves, status, ttl, joined_at, heartbeat_at) "
                    f"VALUES (?, ?, ?, 'alive', ?, {NOW_SQL}, {NOW_SQL})",
                    (member_id, name, int(serves), float(ttl)),
                )

        try:
            await self._membership(insert)
        except StoreError as e:
            os.close(fd)
            if "UNIQUE" in str(e):
                raise StoreError(f"member id {member_id!r} was used before (ids are never reused)") from e
            raise
        except BaseException:
            os.close(fd)
            raise
        self._member_fds[member_id] = fd

    async def heartbeat(self, member_id: str) -> bool:
        """Renew the member's lease (SQLite's clock); False when it is no longer alive."""
        _check_id("member_id", member_id)

        def renew(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                cur = conn.execute(
                    f"UPDATE members SET heartbeat_at = {NOW_SQL} WHERE member_id = ? AND status = 'alive'",
                    (member_id,),
                )
                return cur.rowcount == 1

        return await self._membership(renew)

    def _gone(self, member_ids: Iterable[str]) -> list[str]:
        """Members whose process is provably gone: nobody holds their flock any more."""
        gone = []
        for member_id in member_ids:
            if member_id in self._member_fds:
                continue
            path = self._member_file(member_id)
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue  # no file (removed by hand): only its lease tells
            try:
                if _try_flock(fd):
                    gone.append(member_id)
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            finally:
                os.close(fd)
        return gone

    async def claim(self, member_id: str, wanted: Collection[int]) -> dict[int, int]:
        """Take the ``wanted`` shards that are free or owned by a member that is not alive.

        First declares dead every alive member whose heartbeat (SQLite's clock) is
        older than its ``ttl``, and at once every member whose process is gone (its
        member file is no longer locked). Each shard taken gets epoch + 1. Returns
        ``{shard: epoch}`` of the shards taken now; nothing if this member is not alive.
        A shard number the database does not have is ignored. SQLite has no row
        locks: the claim waits for the one writer (at most ``busy_timeout``), as every
        write does.
        """
        _check_id("member_id", member_id)
        shards = [s for s in self._check_shards(wanted, "claim", in_range=False) if 0 <= s < self.shard_count]

        def take(conn: sqlite3.Connection) -> dict[int, int]:
            alive = [r[0] for r in conn.execute("SELECT member_id FROM members WHERE status = 'alive'")]
            gone = self._gone(m for m in alive if m != member_id)
            with _transaction(conn):
                conn.execute(
                    f"UPDATE members SET status = 'dead' WHERE status = 'alive' AND "
                    f"(heartbeat_at < {NOW_SQL} - ttl OR member_id IN (SELECT value FROM json_each(?)))",
                    (json.dumps(gone),),
                )
                me = conn.execute("SELECT status FROM members WHERE member_id = ?", (member_id,)).fetchone()
                if me is None or me[0] != "alive" or not shards:
                    return {}
                rows = conn.execute(
                    "UPDATE shards SET owner = ?, epoch = epoch + 1 "
                    "WHERE shard IN (SELECT value FROM json_each(?)) AND (owner IS NULL OR NOT EXISTS "
                    "(SELECT 1 FROM members m WHERE m.member_id = shards.owner AND m.status = 'alive')) "
                    "RETURNING shard, epoch",
                    (member_id, json.dumps(shards)),
                ).fetchall()
                return {int(r[0]): int(r[1]) for r in rows}

        return await self._membership(take)

    async def release(self, member_id: str, shards: Mapping[int, int]) -> None:
        """Give up shards this member owns at these epochs (owner none, epoch + 1); a
        shard it no longer owns at that epoch is left alone. They leave the fence."""
        _check_id("member_id", member_id)
        if not isinstance(shards, Mapping):
            raise InvalidWrite(f"release shards must be a mapping of shard to epoch, got {shards!r:.80}")
        self._check_shards(shards.keys(), "release")
        for e in shards.values():
            if isinstance(e, bool) or not isinstance(e, int):
                raise InvalidWrite(f"release epochs must be ints, got {e!r:.80}")
        rows = [(s, member_id, e) for s, e in shards.items()]

        def give(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "UPDATE shards SET owner = NULL, epoch = epoch + 1 "
                    "WHERE shard = ? AND owner = ? AND epoch = ?",
                    rows,
                )

        await self._membership(give)
        if self._fence is not None and self._fence[0] == member_id:
            self._drop_fence(dict(shards))

    async def leave(self, member_id: str) -> None:
        """The member leaves cleanly: status ``left``, every shard it owns released, its
        member file unlocked and removed."""
        _check_id("member_id", member_id)

        def go(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "UPDATE members SET status = 'left' WHERE member_id = ? AND status = 'alive'",
                    (member_id,),
                )
                conn.execute(
                    "UPDATE shards SET owner = NULL, epoch = epoch + 1 WHERE owner = ?", (member_id,)
                )

        await self._membership(go)
        if self._fence is not None and self._fence[0] == member_id:
            self._drop_fence(dict(self._fence[1]))
        fd = self._member_fds.pop(member_id, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._member_file(member_id))
            os.close(fd)

    async def members(self) -> list[MemberRecord]:
        """Every member row (alive first, then the most recent heartbeat first), with
        ``seen_ago`` by SQLite's clock."""
        rows = await self._read(
            "SELECT member_id, name, serves, status, ttl, joined_at, heartbeat_at, "
            f"max(0.0, {NOW_SQL} - heartbeat_at) FROM members "
            "ORDER BY status <> 'alive', heartbeat_at DESC, member_id",
            (),
        )
        return [MemberRecord(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in rows]

    async def shard_map(self) -> list[ShardRecord]:
        """Every shard, in order."""
        rows = await self._read("SELECT shard, owner, epoch FROM shards ORDER BY shard", ())
        return [ShardRecord(int(r[0]), r[1], int(r[2])) for r in rows]

    def set_fence(self, member_id: str, epochs: Mapping[int, int]) -> None:
        """From now on, apply a batch with fenced writes only if ``member_id`` owns every
        shard they touch at exactly these epochs, checked inside the batch's write
        transaction (see :meth:`write`). Replaces the previous fence; cached sequences
        of shards whose epoch changed or that left the fence are forgotten."""
        _check_id("member_id", member_id)
        if not isinstance(epochs, Mapping):
            raise InvalidWrite(f"set_fence epochs must be a mapping of shard to epoch, got {epochs!r:.80}")
        new: dict[int, int] = {}
        for s, e in epochs.items():
            if isinstance(s, bool) or not isinstance(s, int) or isinstance(e, bool) or not isinstance(e, int):
                raise InvalidWrite(f"set_fence takes int shards and epochs, got {s!r:.40}: {e!r:.40}")
            new[s] = e
        old = self._fence[1] if self._fence is not None and self._fence[0] == member_id else {}
        self._forget_seqs(s for s, e in old.items() if new.get(s) != e)
        if self._fence is not None and self._fence[0] != member_id:
            self._forget_seqs(list(self._seq_keys))
        self._fence = (member_id, new)

    def _drop_fence(self, shards: Mapping[int, int]) -> None:
        """Remove shards from the fence if they are still held there at these epochs."""
        if self._fence is None:
            return
        epochs = self._fence[1]
        dropped = [s for s, e in shards.items() if epochs.get(s) == e]
        for s in dropped:
            del epochs[s]
        self._forget_seqs(dropped)

    def _forget_seqs(self, shards: Iterable[int]) -> None:
        for s in shards:
            for key in self._seq_keys.pop(s, ()):
                self._seqs.pop(key, None)

    async def publish(self, topic: str, items: Sequence[str]) -> None:
        """Does nothing: SQLite cannot wake other processes; members poll."""

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """Keeps ``callback`` but never calls it: SQLite has no wake-ups, members poll."""
        self._callbacks.append(callback)

    def _check_shards(self, shards: Iterable[object], what: str, *, in_range: bool = True) -> list[int]:
        """The shards as a sorted list of ints; InvalidWrite for anything else (and, with
        ``in_range``, for a shard the database does not have)."""
        out = []
        for s in shards:
            if isinstance(s, bool) or not isinstance(s, int) or (in_range and not 0 <= s < self.shard_count):
                raise InvalidWrite(f"{what}: shards are ints 0..{self.shard_count - 1}, got {s!r:.80}")
            out.append(s)
        return sorted(set(out))


class _Direct:
    """A plain sqlite3 connection with the awaitable surface the write path uses.

    Its methods never suspend, so a coroutine using only them runs to completion in
    one ``send``: :func:`_drive` runs the write path that way inside a worker thread.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def connection(self) -> sqlite3.Connection:
        """The sqlite3 connection (for what must not run as a coroutine)."""
        return self._conn

    async def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

    async def execute_fetchall(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    async def close(self) -> None:
        self._conn.close()


@functools.cache
def _insert_sql(head: str, width: int, rows: int) -> str:
    """``head`` of the rows among ``rows`` of ``width`` parameters each whose first is
    not NULL (the rest pad a batch up to ``rows``, a power of two: a few statement
    texts, so a few prepared statements cached, whatever the batch sizes)."""
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} SELECT * FROM (VALUES {', '.join([one] * rows)}) WHERE column1 IS NOT NULL"


def _append_conflict(e: sqlite3.IntegrityError) -> str:
    return f"sequence conflict while appending events {SEQUENCE_CONFLICT_CAUSES}: {e}"


def _padded(flat: list[object], width: int) -> tuple[list[object], int]:
    """``flat`` (rows of ``width`` values, the first never None) padded with rows of
    None up to a power of two rows; and that number of rows."""
    rows = len(flat) // width
    bucket = 1 << (rows - 1).bit_length()
    if bucket > rows:
        flat = flat + [None] * ((bucket - rows) * width)
    return flat, bucket


def _event_rows(batch: Sequence[Write], rows_max: int) -> list[object] | None:
    """The values of every event row of ``batch``, flat, if it holds only commits that
    append events and nothing else (no mark, inbox, journal, dead letter, timer or
    outbox) and at most ``rows_max`` rows; else None."""
    flat: list[object] = []
    for c in batch:
        if (
            type(c) is not Commit
            or not c.events
            or c.mark
            or c.from_inbox
            or c.has_journal
            or c.dead_letter is not None
            or c.set_timers
            or c.cancel_timers
            or c.outbox
        ):
            return None
        t, i, seq, at = c.entity_type, c.entity_id, c.first_seq, c.recorded_at
        for e in c.events:
            flat += (t, i, seq, e.type_name, e.version, e.data, at)
            seq += 1
    return flat if 0 < len(flat) <= rows_max * 7 else None


def _drive(coro: Coroutine[object, None, _T]) -> _T:
    """Run a coroutine that never suspends (see _Direct) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the SQLite write path suspended; it must only await _Direct calls")


def _try_flock(fd: int, *, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


_shared_files: dict[tuple[int, int], list[int]] = {}
"""Shared mode: per database file (device, inode), this process's one flocked fd and
how many open stores use it. One fd per process, closed only when the last of them
closes: closing any fd of the file would drop SQLite's own POSIX locks on it, which
belong to the process, not to a connection."""
_shared_files_lock = threading.Lock()


def _take_shared(real: str) -> tuple[int, int] | None:
    """Hold a shared flock on the database file for one more store of this process;
    its key, or None when an exclusive owner holds the file."""
    with _shared_files_lock:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(real)
            entry = _shared_files.get((st.st_dev, st.st_ino))
            if entry is not None:
                entry[1] += 1
                return (st.st_dev, st.st_ino)
        fd = os.open(real, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_flock(fd, shared=True):
            os.close(fd)  # no store of this process has the file open (it would be listed)
            return None
        st = os.fstat(fd)
        _shared_files[(st.st_dev, st.st_ino)] = [fd, 1]
        return (st.st_dev, st.st_ino)


def _release_shared(key: tuple[int, int]) -> None:
    with _shared_files_lock:
        entry = _shared_files[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _shared_files[key]
            os.close(entry[0])


def _shard_sql(entity_type: object, entity_id: object, count: object) -> int:
    """``actors_shard(type, id, count)`` for the schema upgrade: :func:`shard_of` in SQL."""
    return shard_of(str(entity_type), str(entity_id), int(count))  # type: ignore[call-overload]


def _in_shards(shards: Collection[int] | None) -> tuple[str | None, tuple[object, ...]]:
    """The WHERE prefix and parameters of a shard-filtered read (None: no shard asked)."""
    if shards is None:
        return "", ()
    picked = set()
    for s in shards:
        if isinstance(s, bool) or not isinstance(s, int):
            raise InvalidWrite(f"shards must be ints, got {s!r:.80}")
        picked.add(s)
    if not picked:
        return None, ()
    return "shard IN (SELECT value FROM json_each(?)) AND ", (json.dumps(sorted(picked)),)


def _check_id(what: str, value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise InvalidWrite(
            f"{what} must be a non-empty str of at most {_MAX_NAME} characters, got {value!r:.80}"
        )


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE`` transaction: committed, or rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _read_owner(fd: int) -> dict[str, object]:
    try:
        data = os.pread(fd, 4096, 0)
        info = json.loads(data.decode() or "{}")
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _chunks(items: Sequence[_T], n: int) -> Iterable[Sequence[_T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
