"""SQLite store on aiosqlite: WAL, one transaction per batch, schema migrations.

One writer connection applies each batch with a handful of ``executemany`` calls;
a second, query-only connection serves reads, so a read never sees a transaction
that is still open. The store is single-owner: it holds an ``flock`` on the
database file itself (so a symlink, a hard link or another spelling of the path is
the same lock) and on a lock file beside the file's real path (``<path>.lock``,
which also names the owner); a second system, in this or another process, gets
:class:`StoreLocked` naming the owner; the kernel drops the locks when its process
dies, so a stale owner is taken over without any cleanup. Writes run on a worker
thread of the store's own, so activities filling the shared thread pool never
delay a commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar

import aiosqlite
import anyio

from persistence.errors import NotOurDatabase, StoreError, StoreLocked
from persistence.store import (
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
    OutboxEntry,
    ProcessedMark,
    Prune,
    Pruned,
    Requeue,
    SaveSnapshot,
    SignalRecord,
    SnapshotRecord,
    StoredEvent,
    TakeOutbox,
    TimerRecord,
    Write,
    WriteResult,
)

APPLICATION = "durable-actors"
SCHEMA_VERSION = 3

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
}
"""Schema scripts by version; version N upgrades a database at N - 1."""

Synchronous = Literal["NORMAL", "FULL"]
_SEQ_CACHE = 200_000
"""Entities whose last sequence the writer remembers (then it forgets them all)."""
_T = TypeVar("_T")


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


class SqliteStore:
    """The embedded default store: one SQLite file in WAL mode, owned by one system.

    ``synchronous="NORMAL"`` (default) survives a crash of the process (kill -9);
    ``"FULL"`` also survives power loss at some cost in commit latency.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
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
        self.path = p
        self.synchronous: Synchronous = synchronous
        self._busy_ms = int(busy_timeout * 1000)
        self._w: _Direct | None = None
        self._r: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._db_fd: int | None = None
        self._write_lock = anyio.Lock()
        self._threads = anyio.CapacityLimiter(1)
        """The writer's own thread: never queued behind activities on anyio's default pool."""
        self._seqs: dict[tuple[str, str], int] = {}
        """Last event seq per entity as committed (this store is the file's one owner)."""
        self._pending_seqs: dict[tuple[str, str], int] = {}
        """One transaction at a time on the writer connection."""

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._w is not None:
            raise StoreError(f"{self!r} is already open")
        try:
            self._check_file()
            self._take_lock()
            self._w = await anyio.to_thread.run_sync(self._connect_writer, limiter=self._threads)
            await anyio.to_thread.run_sync(_drive, self._migrate(self._w), limiter=self._threads)
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
        with anyio.CancelScope(shield=True):
            for conn in (self._r, self._w):
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()  # _Direct.close is a plain call despite the await
        self._r = self._w = None
        for fd in (self._lock_fd, self._db_fd):
            if fd is not None:
                os.close(fd)  # releases its flock
        self._lock_fd = self._db_fd = None

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
        if not _try_flock(self._lock_fd):
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
        return StoreLocked(
            f"{self.path} is in use by another running system "
            f"(pid {owner.get('pid', '?')} on {owner.get('host', '?')} "
            f"since {owner.get('since', '?')})",
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

    async def _migrate(self, db: _Direct) -> None:
        try:
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
            # only now that the file is known to be ours (or empty) may it be changed
            mode = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
            row = mode[0] if mode else None
            if row is None or str(row[0]).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {row!r})")
            for v in range(version + 1, SCHEMA_VERSION + 1):
                await db.execute("BEGIN IMMEDIATE")
                for stmt in _statements(MIGRATIONS[v]):
                    await db.execute(stmt)
                await db.execute(
                    "INSERT OR REPLACE INTO actors_meta VALUES ('application', ?), ('schema_version', ?)",
                    (APPLICATION, str(v)),
                )
                await db.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise translate(e, f"cannot open {self.path}") from e

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
        """
        async with self._write_lock:
            return await anyio.to_thread.run_sync(
                _drive, self._write(self._writer, batch), limiter=self._threads
            )

    async def _write(self, db: _Direct, batch: Sequence[Write]) -> list[WriteResult]:
        self._pending_seqs = {}
        try:
            await db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise translate(e, "write") from e
        try:
            results: list[WriteResult] = []
            i = 0
            while i < len(batch):
                j = i + 1
                while j < len(batch) and type(batch[j]) is type(batch[i]):
                    j += 1
                results.extend(await self._apply_run(db, batch[i:j]))
                i = j
            await db.execute("COMMIT")
            if len(self._seqs) > _SEQ_CACHE:
                self._seqs.clear()
            self._seqs.update(self._pending_seqs)
            return results
        except BaseException as e:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise translate(e, "write") from e
            raise

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
            rows.append(_sig_row(s))
            results.append(Accepted())
        if rows:
            await db.executemany(f"INSERT INTO inbox ({_SIG}) VALUES ({_SIG_PARAMS})", rows)
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
                await db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", events)
            except sqlite3.IntegrityError as e:
                raise StoreError(f"sequence conflict while appending events (a second writer?): {e}") from e
        marks = [
            (
                c.entity_type,
                c.entity_id,
                c.signal.signal_id,
                c.signal.fingerprint,
                c.outcome,
                c.recorded_at,
            )
            for c in run
            if c.mark
        ]
        if marks:
            try:
                await db.executemany("INSERT INTO processed VALUES (?, ?, ?, ?, ?, ?)", marks)
            except sqlite3.IntegrityError as e:
                raise StoreError(f"a signal in this batch is already processed: {e}") from e
        taken = [(c.entity_type, c.entity_id, c.signal.signal_id) for c in run if c.from_inbox]
        if taken:
            await db.executemany(
                "DELETE FROM inbox WHERE entity_type = ? AND entity_id = ? AND signal_id = ?",
                taken,
            )
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
        keys = list(dict.fromkeys((c.entity_type, c.entity_id) for c in run if c.events))
        nexts: dict[tuple[str, str], int] = {}
        unknown = []
        for k in keys:
            last = self._pending_seqs.get(k, self._seqs.get(k))
            if last is None:
                unknown.append(k)
            else:
                nexts[k] = last + 1
        for chunk in _chunks(unknown, 300):
            values = ", ".join("(?, ?)" for _ in chunk)
            for row in await db.execute_fetchall(
                f"WITH k(t, i) AS (VALUES {values}) SELECT t, i, (SELECT max(seq) FROM events "
                "WHERE entity_type = k.t AND entity_id = k.i) FROM k",
                [x for k in chunk for x in k],
            ):
                nexts[(row[0], row[1])] = int(row[2] or 0) + 1
        for c in run:
            if not c.events:
                continue
            key = (c.entity_type, c.entity_id)
            if c.first_seq != nexts[key]:
                raise StoreError(
                    f"sequence conflict on {c.entity_type}/{c.entity_id}: appending at "
                    f"{c.first_seq}, log ends at {nexts[key] - 1} (a second writer?)"
                )
            nexts[key] += len(c.events)
            self._pending_seqs[key] = nexts[key] - 1

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
                "INSERT OR REPLACE INTO timers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (t.entity_type, t.entity_id, t.key, t.handler, t.args, t.due_at, t.every, t.trace)
                    for t in c.set_timers
                ],
            )
        if c.cancel_timers:
            await db.executemany(
                "DELETE FROM timers WHERE entity_type = ? AND entity_id = ? AND key = ?",
                [(c.entity_type, c.entity_id, k) for k in c.cancel_timers],
            )
        ids = []
        for s in c.outbox:
            cur = await db.execute(f"INSERT INTO outbox ({_SIG}) VALUES ({_SIG_PARAMS})", _sig_row(s))
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
        except sqlite3.Error as e:
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

    async def read_inbox(self, *, after: int, limit: int) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order."""
        rows = await self._read(
            f"SELECT position, {_SIG} FROM inbox WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [InboxEntry(r[0], _sig(r[1:])) for r in rows]

    async def read_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        rows = await self._read(
            f"SELECT id, {_SIG}, error, traceback, attempts, failed_at FROM dead_letters ORDER BY id LIMIT ?",
            (limit,),
        )
        return [DeadLetter(r[0], _sig(r[1:9]), r[9], r[10], r[11], r[12]) for r in rows]

    async def read_timers(self, *, limit: int, after_due: float = float("-inf")) -> list[TimerRecord]:
        """Timers in due order."""
        rows = await self._read(
            "SELECT entity_type, entity_id, key, handler, args, due_at, every, trace FROM timers "
            "WHERE due_at > ? ORDER BY due_at, entity_type, entity_id, key LIMIT ?",
            (after_due if after_due != float("-inf") else -1e300, limit),
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

    async def read_outbox(self, *, after: int, limit: int) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order."""
        rows = await self._read(
            f"SELECT id, {_SIG} FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [OutboxEntry(r[0], _sig(r[1:])) for r in rows]


class _Direct:
    """A plain sqlite3 connection with the awaitable surface the write path uses.

    Its methods never suspend, so a coroutine using only them runs to completion in
    one ``send``: :func:`_drive` runs the write path that way inside a worker thread.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

    async def execute_fetchall(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    async def close(self) -> None:
        self._conn.close()


def _drive(coro: Coroutine[object, None, _T]) -> _T:
    """Run a coroutine that never suspends (see _Direct) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the SQLite write path suspended; it must only await _Direct calls")


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


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
