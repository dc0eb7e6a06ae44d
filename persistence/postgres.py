"""PostgreSQL store on asyncpg: one transaction per batch, few round trips, typed errors.

Writes go through one dedicated *writer* connection, which also holds a session-level
advisory lock naming this store the database's one owner (a second system gets
:class:`StoreLocked`); the server drops the lock when the owner's connection ends, so a
killed owner is taken over without cleanup. Reads go through a small pool and see
committed data only.

A batch is applied in one transaction. Consecutive items of one kind form a *run*, and
each run is one statement built on ``unnest`` of parameter arrays (data-modifying CTEs
for the several tables a commit touches), so a batch of a thousand commits costs about
as many round trips as a batch of one: ``BEGIN``, the transaction id, one statement
per run (plus a sequence lookup for entities the store has not seen), ``COMMIT``.

Faults: a connection lost before ``COMMIT`` was sent rolled the transaction back, so
the batch is retried once on a new connection. A connection lost while ``COMMIT`` was
in flight is resolved by asking the server for the fate of the transaction id
(``pg_xact_status``): committed, the results stand; rolled back, retried; unknown,
:class:`CommitUnknown` (never an acknowledgement for what may not have committed).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.parse
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import anyio

try:
    import asyncpg
except ImportError:  # pragma: no cover - the 'postgres' extra is missing: PostgresStore() says so
    asyncpg = None

from persistence.errors import (
    CommitUnknown,
    NotOurDatabase,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreReadOnly,
    StoreTimeout,
    StoreUnavailable,
)
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
LOCK_KEY = 0x6475726163746F72  # "ducactor"-ish: the advisory lock of the store's owner
"""Key of the session advisory lock the owning store holds (per database)."""

_SIG = "entity_type, entity_id, signal_id, handler, args, fingerprint, accepted_at, trace"
"""A signal's columns as read and written (``trace`` came with version 2, nullable)."""
_SIG_DDL = (
    "entity_type text NOT NULL, entity_id text NOT NULL, signal_id text NOT NULL, "
    "handler text NOT NULL, args text NOT NULL, fingerprint text NOT NULL, "
    "accepted_at double precision NOT NULL"
)
_SIG_ARRAYS = "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[]"

# Every table keys on (entity_type, entity_id, ...) like the SQLite schema; a later
# migration can add a shard and an epoch column without touching these keys.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE actors_meta (key text PRIMARY KEY, value text NOT NULL)",
        """CREATE TABLE events (
            entity_type text NOT NULL, entity_id text NOT NULL, seq bigint NOT NULL,
            type_name text NOT NULL, version bigint NOT NULL, data text NOT NULL,
            recorded_at double precision NOT NULL,
            PRIMARY KEY (entity_type, entity_id, seq))""",
        """CREATE TABLE snapshots (
            entity_type text NOT NULL, entity_id text NOT NULL, seq bigint NOT NULL,
            schema text NOT NULL, state text NOT NULL, taken_at double precision NOT NULL,
            PRIMARY KEY (entity_type, entity_id, seq))""",
        f"""CREATE TABLE inbox (
            position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {_SIG_DDL},
            CONSTRAINT inbox_signal UNIQUE (entity_type, entity_id, signal_id))""",
        """CREATE TABLE processed (
            entity_type text NOT NULL, entity_id text NOT NULL, signal_id text NOT NULL,
            fingerprint text NOT NULL, outcome text NOT NULL,
            processed_at double precision NOT NULL,
            PRIMARY KEY (entity_type, entity_id, signal_id))""",
        f"""CREATE TABLE dead_letters (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {_SIG_DDL},
            error text NOT NULL, traceback text NOT NULL, attempts bigint NOT NULL,
            failed_at double precision NOT NULL)""",
        """CREATE TABLE timers (
            entity_type text NOT NULL, entity_id text NOT NULL, key text NOT NULL,
            handler text NOT NULL, args text NOT NULL, due_at double precision NOT NULL,
            every double precision,
            PRIMARY KEY (entity_type, entity_id, key))""",
        "CREATE INDEX timers_by_due ON timers (due_at, entity_type, entity_id, key)",
        """CREATE TABLE journal (
            entity_type text NOT NULL, entity_id text NOT NULL, invocation_id text NOT NULL,
            step bigint NOT NULL, kind text NOT NULL, name text NOT NULL, result text NOT NULL,
            recorded_at double precision NOT NULL,
            PRIMARY KEY (entity_type, entity_id, invocation_id, step))""",
        f"CREATE TABLE outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {_SIG_DDL})",
    ],
    # the sender's trace context, kept with every stored signal (NULL: none, as for
    # every row written by version 1) and with timers, for the signals they deliver
    2: [f"ALTER TABLE {t} ADD COLUMN trace text" for t in ("inbox", "dead_letters", "outbox", "timers")],
    # retention: pruning by age finds old marks and dead letters without a full scan
    3: [
        "CREATE INDEX processed_by_time ON processed (processed_at)",
        "CREATE INDEX dead_letters_by_time ON dead_letters (failed_at)",
    ],
}
"""Schema statements by version; version N upgrades a database at N - 1."""

_SEQ_CACHE = 200_000
"""Entities whose last sequence the writer remembers (then it forgets them all)."""

_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    (
        asyncpg.exceptions.ConnectionDoesNotExistError,
        asyncpg.exceptions.ConnectionFailureError,
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.CrashShutdownError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.InternalClientError,  # e.g. a connection the server ended while idle
        ConnectionError,
        OSError,
    )
    if asyncpg is not None
    else (ConnectionError, OSError)
)
"""Errors after which the connection is gone and the transaction (if any) rolled back."""


class _LostBeforeCommit(Exception):
    """The writer connection died before COMMIT was sent: nothing was applied."""


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return "<unparsable dsn>"
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def translate(e: BaseException, what: str) -> StoreError:
    """Turn an asyncpg or socket error into the StoreError family (use with ``from``)."""
    msg = f"{type(e).__name__}: {e}".strip()
    if isinstance(e, StoreError):
        return e
    if isinstance(e, asyncpg.exceptions.ReadOnlySQLTransactionError):
        return StoreReadOnly(f"{what}: the database is read-only ({msg})")
    if isinstance(e, asyncpg.exceptions.QueryCanceledError):
        return StoreTimeout(f"{what}: the statement was cancelled or timed out ({msg})")
    if isinstance(e, asyncpg.exceptions.LockNotAvailableError):
        return StoreTimeout(f"{what}: a lock was not available in time ({msg})")
    if isinstance(e, asyncpg.exceptions.DiskFullError):
        return StoreFull(f"{what}: the server's disk is full ({msg})")
    if isinstance(e, asyncpg.exceptions.InsufficientResourcesError):
        return StoreFull(f"{what}: the server is out of resources ({msg})")
    if isinstance(e, asyncpg.exceptions.TooManyConnectionsError):
        return StoreUnavailable(f"{what}: the server has no free connection slot ({msg})")
    if isinstance(e, asyncpg.exceptions.InvalidCatalogNameError):
        return StoreError(f"{what}: the database does not exist ({msg})")
    if isinstance(
        e,
        asyncpg.exceptions.InvalidPasswordError | asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    ):
        return StoreError(f"{what}: the server refused the login ({msg})")
    if isinstance(e, asyncpg.exceptions.InsufficientPrivilegeError):
        return StoreError(f"{what}: the database user lacks a privilege ({msg})")
    if isinstance(e, asyncpg.exceptions.UniqueViolationError):
        return StoreError(f"{what}: {_conflict(e)} ({msg})")
    if isinstance(e, asyncpg.exceptions.CharacterNotInRepertoireError | UnicodeError):
        return StoreError(f"{what}: a text value cannot be stored (NUL or invalid character) ({msg})")
    if isinstance(e, (*_CONNECTION_LOST, TimeoutError)):
        return StoreUnavailable(f"{what}: the connection to the server failed ({msg})")
    return StoreError(f"{what}: {msg}")


def _conflict(e: asyncpg.exceptions.UniqueViolationError) -> str:
    name = getattr(e, "constraint_name", "") or ""
    if name.startswith("events"):
        return "sequence conflict while appending events (a second writer?)"
    if name.startswith("processed"):
        return "a signal in this batch is already processed"
    if name.startswith("inbox"):
        return "a signal in this batch is already in the inbox"
    return f"unique constraint {name or '?'} violated"


class PostgresStore:
    """A Store on a PostgreSQL server (asyncpg), owned by one running system at a time.

    ``dsn`` is a ``postgresql://user:password@host:port/database`` URL (a libpq
    key/value string works too). ``min_connections``/``max_connections`` bound the
    connections the store opens: one writer (which holds the owner lock) plus a pool
    of readers. ``statement_timeout`` (seconds) cancels any statement running longer,
    as :class:`StoreTimeout`; ``lock_wait`` is how long opening waits for a previous
    owner's lock to go (a killed owner's server process takes a moment to notice).
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = 2,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
        statement_timeout: float | None = None,
        lock_wait: float = 5.0,
    ) -> None:
        if asyncpg is None:
            raise StoreError("PostgresStore needs asyncpg: pip install 'durable-actors[postgres]'")
        if not isinstance(dsn, str) or not dsn.strip():
            raise TypeError(f"PostgresStore dsn must be a non-empty str, got {dsn!r:.80}")
        if "://" in dsn and not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"PostgresStore dsn must start with postgresql://, got {redact(dsn)!r:.80}")
        for name, v in (("min_connections", min_connections), ("max_connections", max_connections)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, got {v!r}")
        if max_connections < 2:
            raise ValueError(f"max_connections must be >= 2 (a writer and a reader), got {max_connections}")
        if not 1 <= min_connections <= max_connections:
            raise ValueError(
                f"min_connections must be 1..max_connections ({max_connections}), got {min_connections}"
            )
        for name, t in (("connect_timeout", connect_timeout), ("lock_wait", lock_wait)):
            if not isinstance(t, (int, float)) or isinstance(t, bool) or not t >= 0:
                raise ValueError(f"{name} must be seconds >= 0, got {t!r}")
        if statement_timeout is not None and (
            not isinstance(statement_timeout, (int, float))
            or isinstance(statement_timeout, bool)
            or not statement_timeout > 0
        ):
            raise ValueError(f"statement_timeout must be seconds > 0 or None, got {statement_timeout!r}")
        self.dsn = dsn
        self.min_connections = min_connections
        self.max_connections = max_connections
        self._connect_timeout = float(connect_timeout)
        self._lock_wait = float(lock_wait)
        self._settings: dict[str, str] = {"application_name": _owner_name()}
        if statement_timeout is not None:
            self._settings["statement_timeout"] = str(max(1, int(statement_timeout * 1000)))
        self._w: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._open = False
        self._write_lock = anyio.Lock()
        self._seqs: dict[tuple[str, str], int] = {}
        self._pending_seqs: dict[tuple[str, str], int] = {}
        self.retries = 0
        """Batches applied again after the connection was lost (for tests and metrics)."""

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.dsn)!r})"

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._open:
            raise StoreError(f"{self!r} is already open")
        try:
            self._w = await self._connect_writer()
            await self._migrate(self._w)
            self._pool = await self._create_pool()
        except BaseException:
            await self._close()
            raise
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        with anyio.CancelScope(shield=True):
            self._open = False
            pool, self._pool = self._pool, None
            w, self._w = self._w, None
            if pool is not None:
                with contextlib.suppress(Exception), anyio.move_on_after(5):
                    await pool.close()
                pool.terminate()
            if w is not None:
                with contextlib.suppress(Exception), anyio.move_on_after(5):
                    await w.close()
                w.terminate()
        self._seqs.clear()

    async def _connect(self) -> asyncpg.Connection:
        try:
            conn: asyncpg.Connection = await asyncpg.connect(
                self.dsn, timeout=self._connect_timeout, server_settings=self._settings
            )
        except (asyncpg.PostgresError, *_CONNECTION_LOST, TimeoutError, ValueError) as e:
            if isinstance(e, ValueError) and not isinstance(e, UnicodeError):
                raise StoreError(f"cannot connect to {redact(self.dsn)}: bad dsn ({e})") from e
            if isinstance(e, asyncpg.exceptions.ObjectNotInPrerequisiteStateError):
                # e.g. the database does not accept connections right now
                raise StoreUnavailable(f"cannot connect to {redact(self.dsn)}: {e}") from e
            raise translate(e, f"cannot connect to {redact(self.dsn)}") from e
        return conn

    async def _connect_writer(self) -> asyncpg.Connection:
        """Connect and take the owner lock (waiting up to ``lock_wait`` for a dead owner's)."""
        conn = await self._connect()
        try:
            deadline = time.monotonic() + self._lock_wait
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                if time.monotonic() >= deadline:
                    owner = await _lock_owner(conn)
                    raise StoreLocked(
                        f"{redact(self.dsn)} is in use by another running system "
                        f"({owner.get('application_name', '?')} from {owner.get('client_addr', '?')} "
                        f"since {owner.get('backend_start', '?')})",
                        owner,
                    )
                await anyio.sleep(0.05)
        except BaseException as e:
            conn.terminate()
            if isinstance(e, asyncpg.PostgresError | OSError):
                raise translate(e, f"cannot open {redact(self.dsn)}") from e
            raise
        self._seqs.clear()  # whatever happened while no lock was held, re-read it
        return conn

    async def _create_pool(self) -> asyncpg.Pool:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                self.dsn,
                min_size=max(self.min_connections - 1, 0),
                max_size=self.max_connections - 1,
                timeout=self._connect_timeout,
                server_settings={**self._settings, "default_transaction_read_only": "on"},
            )
        except (asyncpg.PostgresError, *_CONNECTION_LOST, TimeoutError) as e:
            raise translate(e, f"cannot connect to {redact(self.dsn)}") from e
        return pool

    async def _migrate(self, db: asyncpg.Connection) -> None:
        where = redact(self.dsn)
        try:
            tables = {
                r[0]
                for r in await db.fetch(
                    "SELECT c.relname FROM pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
                    "AND c.relnamespace = current_schema()::regnamespace"
                )
            }
            version = 0
            if tables:
                if "actors_meta" not in tables:
                    raise NotOurDatabase(
                        f"{where} holds tables of another application in schema "
                        f"{await db.fetchval('SELECT current_schema()')!r} "
                        f"({', '.join(sorted(tables)[:5])}); use an empty database"
                    )
                meta = {r[0]: r[1] for r in await db.fetch("SELECT key, value FROM actors_meta")}
                if meta.get("application") != APPLICATION:
                    raise NotOurDatabase(f"{where} belongs to {meta.get('application')!r}")
                stored = str(meta.get("schema_version", ""))
                if not stored.isdecimal():
                    raise NotOurDatabase(f"{where} has no valid schema version ({stored!r})")
                version = int(stored)
                if version > SCHEMA_VERSION:
                    raise NotOurDatabase(
                        f"{where} has schema version {version}, newer than this code's "
                        f"{SCHEMA_VERSION}: upgrade the package"
                    )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                async with db.transaction():
                    for stmt in MIGRATIONS[v]:
                        await db.execute(stmt)
                    await db.execute(
                        "INSERT INTO actors_meta VALUES ('application', $1), ('schema_version', $2) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        APPLICATION,
                        str(v),
                    )
        except (asyncpg.PostgresError, *_CONNECTION_LOST) as e:
            raise translate(e, f"cannot open {where}") from e

    # ------------------------------------------------------------ writes
    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        """Apply ``batch`` in one transaction; one result per item, in order.

        Retried once on a new connection when the old one died before ``COMMIT``
        (nothing was applied then); see the module docstring for a loss during it.
        """
        if not self._open:
            raise StoreError(f"{self!r} is closed")
        if not batch:
            return []
        async with self._write_lock:
            for attempt in (1, 2):
                try:
                    return await self._write_once(batch)
                except _LostBeforeCommit as lost:
                    if attempt == 2:
                        raise translate(lost.__cause__ or lost, "write") from lost.__cause__
                    self.retries += 1
            raise AssertionError("unreachable")  # pragma: no cover

    async def _writer(self) -> asyncpg.Connection:
        w = self._w
        if w is None or w.is_closed():
            self._w = None
            if w is not None:
                w.terminate()
            self._w = await self._connect_writer()
        return self._w

    async def _write_once(self, batch: Sequence[Write]) -> list[WriteResult]:
        try:
            db = await self._writer()
        except StoreUnavailable as e:
            raise StoreUnavailable(f"write: {e}") from e.__cause__
        self._pending_seqs = {}
        xid: str | None = None
        try:
            await db.execute("BEGIN")
            xid = await db.fetchval("SELECT pg_current_xact_id()::text")
            results: list[WriteResult] = []
            i = 0
            while i < len(batch):
                j = i + 1
                while j < len(batch) and type(batch[j]) is type(batch[i]):
                    j += 1
                results.extend(await self._apply_run(db, batch[i:j]))
                i = j
        except BaseException as e:
            await self._rollback(db)
            if isinstance(e, _CONNECTION_LOST):
                raise _LostBeforeCommit() from e
            if isinstance(e, asyncpg.PostgresError | UnicodeError):
                raise translate(e, "write") from e
            raise
        try:
            await db.execute("COMMIT")
        except _CONNECTION_LOST as e:
            self._drop_writer()
            if await self._committed(xid, e):
                return self._done(results)
            raise _LostBeforeCommit() from e
        except asyncpg.PostgresError as e:  # a deferred check or the server refusing at commit
            await self._rollback(db)
            raise translate(e, "write") from e
        return self._done(results)

    def _done(self, results: list[WriteResult]) -> list[WriteResult]:
        if len(self._seqs) > _SEQ_CACHE:
            self._seqs.clear()
        self._seqs.update(self._pending_seqs)
        return results

    def _drop_writer(self) -> None:
        if self._w is not None:
            self._w.terminate()
            self._w = None

    async def _rollback(self, db: asyncpg.Connection) -> None:
        if db.is_closed():
            self._drop_writer()
            return
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(5):
                await db.execute("ROLLBACK")
        except Exception:
            self._drop_writer()

    async def _committed(self, xid: str | None, cause: BaseException) -> bool:
        """After the connection died during COMMIT: did the transaction commit?"""
        status = None
        with contextlib.suppress(StoreUnavailable, *_CONNECTION_LOST):
            conn = await self._connect()
            try:
                status = await conn.fetchval("SELECT pg_xact_status($1::text::xid8)", xid)
            finally:
                conn.terminate()
        if status == "committed":
            return True
        if status == "aborted":
            return False
        raise CommitUnknown(
            f"write: the connection was lost while committing and the outcome of "
            f"transaction {xid} is unknown ({status or 'server unreachable'}); "
            f"nothing of this batch is acknowledged"
        ) from cause

    async def _apply_run(self, db: asyncpg.Connection, run: Sequence[Write]) -> list[WriteResult]:
        first = run[0]
        if isinstance(first, Accept):
            return list(await self._accept(db, [(w.signal, w.check_duplicate) for w in run]))  # type: ignore[union-attr]
        if isinstance(first, Commit):
            return list(await self._commit(db, run))  # type: ignore[arg-type]
        if isinstance(first, Journal):
            await self._journal(db, run)  # type: ignore[arg-type]
            return [None] * len(run)
        if isinstance(first, TakeOutbox):
            await db.execute("DELETE FROM outbox WHERE id = ANY($1::int8[])", [w.outbox_id for w in run])  # type: ignore[union-attr]
            return list(await self._accept(db, [(w.accept.signal, w.accept.check_duplicate) for w in run]))  # type: ignore[union-attr]
        out: list[WriteResult] = []
        for w in run:
            if isinstance(w, SaveSnapshot):
                await self._snapshot(db, w)
                out.append(None)
            elif isinstance(w, Requeue):
                await self._requeue(db, w.dead_letter_id)
                out.append(None)
            elif isinstance(w, FireTimer):
                out.append(await self._fire(db, w))
            elif isinstance(w, Prune):
                out.append(await self._prune(db, w))
            else:
                raise TypeError(f"unknown write {w!r}")
        return out

    async def _accept(
        self, db: asyncpg.Connection, items: Sequence[tuple[SignalRecord, bool]]
    ) -> list[Accepted | Duplicate]:
        """One statement: look up the first occurrence of each id, insert the new ones.

        Gives the results the items would get one by one: a repeat of an id within the
        run is a duplicate of its first occurrence; an unchecked repeat is inserted, so
        the inbox's unique key refuses it as it would refuse it alone.
        """
        sent: list[int] = []
        first: set[tuple[str, str, str]] = set()
        for n, (s, check) in enumerate(items):
            key = (s.entity_type, s.entity_id, s.signal_id)
            if key not in first or not check:
                first.add(key)
                sent.append(n)
        cols = _columns([_sig_row(items[n][0]) for n in sent], 8)
        rows = await db.fetch(_ACCEPT_SQL, *cols[:7], [items[n][1] for n in sent], cols[7])
        found: dict[int, Duplicate] = {}
        for r in rows:
            n = sent[int(r["ord"]) - 1]
            if r["pf"] is not None:
                mark = ProcessedMark(items[n][0].signal_id, r["pf"], r["outcome"], r["processed_at"])
                found[n] = Duplicate(r["pf"], mark)
            else:
                found[n] = Duplicate(r["qf"], None)
        sent_set = set(sent)
        seen: dict[tuple[str, str, str], Duplicate] = {}
        results: list[Accepted | Duplicate] = []
        for n, (s, _) in enumerate(items):
            key = (s.entity_type, s.entity_id, s.signal_id)
            if n in sent_set:
                result: Accepted | Duplicate = found.get(n, Accepted())
                seen[key] = Duplicate(s.fingerprint, None) if isinstance(result, Accepted) else result
                results.append(result)
            else:
                results.append(seen[key])
        return results

    async def _commit(self, db: asyncpg.Connection, run: Sequence[Commit]) -> list[Committed]:
        """One statement for the whole run (after a sequence lookup for unseen entities)."""
        await self._check_seqs(db, run)
        events = [
            (c.entity_type, c.entity_id, c.first_seq + i, e.type_name, e.version, e.data, c.recorded_at)
            for c in run
            for i, e in enumerate(c.events)
        ]
        marks = [
            (c.entity_type, c.entity_id, c.signal.signal_id, c.signal.fingerprint, c.outcome, c.recorded_at)
            for c in run
            if c.mark
        ]
        taken = [(c.entity_type, c.entity_id, c.signal.signal_id) for c in run if c.from_inbox]
        journals = [(c.entity_type, c.entity_id, c.signal.signal_id) for c in run if c.has_journal]
        dead = [
            (*_sig_row(c.signal), c.dead_letter[0], c.dead_letter[1], c.dead_letter[2], c.recorded_at)
            for c in run
            if c.dead_letter is not None
        ]
        timers: dict[tuple[str, str, str], TimerRecord | None] = {}
        for c in run:  # the net effect of the run's timer changes, in order
            for t in c.set_timers:
                timers[(t.entity_type, t.entity_id, t.key)] = t
            for k in c.cancel_timers:
                timers[(c.entity_type, c.entity_id, k)] = None
        set_rows = [
            (t.entity_type, t.entity_id, t.key, t.handler, t.args, t.due_at, t.every, t.trace)
            for t in timers.values()
            if t is not None
        ]
        cancel_rows = [k for k, t in timers.items() if t is None]
        outbox = [_sig_row(s) for c in run for s in c.outbox]
        dead_cols = _columns(dead, 12)
        set_cols = _columns(set_rows, 8)
        outbox_cols = _columns(outbox, 8)
        args: list[object] = [
            *_columns(events, 7),
            *_columns(marks, 6),
            *_columns(taken, 3),
            *_columns(journals, 3),
            *dead_cols[:7],
            *dead_cols[8:],
            *set_cols[:7],
            *_columns(cancel_rows, 3),
            *outbox_cols[:7],
            dead_cols[7],  # the traces come last: $48, $49 and $50
            outbox_cols[7],
            set_cols[7],
        ]
        rows = await db.fetch(_COMMIT_SQL, *args)
        ids = sorted(int(r[0]) for r in rows)
        results = []
        at = 0
        for c in run:
            n = len(c.outbox)
            results.append(Committed(tuple(ids[at : at + n])))
            at += n
        return results

    async def _check_seqs(self, db: asyncpg.Connection, run: Sequence[Commit]) -> None:
        """The log is contiguous from 1: each commit appends right after the last event."""
        keys = list(dict.fromkeys((c.entity_type, c.entity_id) for c in run if c.events))
        if not keys:
            return
        nexts: dict[tuple[str, str], int] = {}
        unknown = []
        for k in keys:
            last = self._pending_seqs.get(k, self._seqs.get(k))
            if last is None:
                unknown.append(k)
            else:
                nexts[k] = last + 1
        if unknown:
            for r in await db.fetch(
                "SELECT k.t, k.i, (SELECT max(seq) FROM events e WHERE e.entity_type = k.t "
                "AND e.entity_id = k.i) FROM unnest($1::text[], $2::text[]) AS k(t, i)",
                *_columns(unknown, 2),
            ):
                nexts[(r[0], r[1])] = int(r[2] or 0) + 1
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

    async def _journal(self, db: asyncpg.Connection, run: Sequence[Journal]) -> None:
        steps: dict[tuple[str, str, str, int], JournalEntry] = {}
        for w in run:  # the same step twice: the later one wins, as with sequential upserts
            e = w.entry
            steps[(e.entity_type, e.entity_id, e.invocation_id, e.step)] = e
        rows = [
            (e.entity_type, e.entity_id, e.invocation_id, e.step, e.kind, e.name, e.result, e.recorded_at)
            for e in steps.values()
        ]
        await db.execute(
            "INSERT INTO journal SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], "
            "$5::text[], $6::text[], $7::text[], $8::float8[]) "
            "ON CONFLICT (entity_type, entity_id, invocation_id, step) DO UPDATE SET "
            "kind = excluded.kind, name = excluded.name, result = excluded.result, "
            "recorded_at = excluded.recorded_at",
            *_columns(rows, 8),
        )
        inbox = [(w.inbox, True) for w in run if w.inbox is not None]
        if inbox:
            await self._accept(db, inbox)

    async def _snapshot(self, db: asyncpg.Connection, w: SaveSnapshot) -> None:
        s = w.snapshot
        # keep the newest `keep` of the stored ones plus the new one; the new one is
        # stored only if it is among them (an older snapshot pushes nothing out)
        await db.execute(
            """WITH keep AS (
                SELECT seq FROM (SELECT seq FROM snapshots WHERE entity_type = $1 AND entity_id = $2
                                 UNION SELECT $3::int8) x
                ORDER BY seq DESC LIMIT $7),
            del AS (
                DELETE FROM snapshots WHERE entity_type = $1 AND entity_id = $2
                AND seq NOT IN (SELECT seq FROM keep))
            INSERT INTO snapshots SELECT $1, $2, $3, $4, $5, $6 WHERE $3 IN (SELECT seq FROM keep)
            ON CONFLICT (entity_type, entity_id, seq) DO UPDATE SET
                schema = excluded.schema, state = excluded.state, taken_at = excluded.taken_at""",
            s.entity_type,
            s.entity_id,
            s.seq,
            s.schema,
            s.state,
            s.taken_at,
            max(w.keep, 1),
        )

    async def _requeue(self, db: asyncpg.Connection, dl_id: int) -> None:
        row = await db.fetchrow(
            f"""WITH d AS (DELETE FROM dead_letters WHERE id = $1 RETURNING {_SIG}),
            p AS (DELETE FROM processed USING d WHERE processed.entity_type = d.entity_type
                  AND processed.entity_id = d.entity_id AND processed.signal_id = d.signal_id)
            SELECT {_SIG} FROM d""",
            dl_id,
        )
        if row is None:
            raise StoreError(f"no dead letter with id {dl_id}")
        await self._accept(db, [(SignalRecord(*row), False)])

    async def _prune(self, db: asyncpg.Connection, w: Prune) -> Pruned:
        """One statement: a data-modifying CTE per kind, each on an index, counted.

        Each CTE deletes the rows its subquery picks, oldest first, up to ``limit``
        (``LIMIT NULL`` is none).
        """
        params: list[float | int | None] = [w.limit]
        parts: list[str] = []

        def delete(name: str, table: str, key: str, where: str, order: str) -> str:
            # without a limit, any order will do: skip the sort
            ordered = f" ORDER BY {order}" if w.limit is not None else ""
            picked = f"SELECT {key} FROM {table} t WHERE {where}{ordered} LIMIT $1::int8"
            parts.append(f"{name} AS (DELETE FROM {table} WHERE ({key}) IN ({picked}) RETURNING 1)")
            return f"(SELECT count(*) FROM {name})"

        def param(v: float | int, cast: str) -> str:
            params.append(v)
            return f"${len(params)}::{cast}"

        marks = journals = dead = "0"
        if w.marks_before is not None:
            cutoff = param(float(w.marks_before), "float8")
            marks = delete(
                "m",
                "processed",
                "entity_type, entity_id, signal_id",
                f"t.processed_at < {cutoff} AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.entity_type = "
                "t.entity_type AND i.entity_id = t.entity_id AND i.signal_id = t.signal_id)",
                "t.processed_at",
            )
            journals = delete(
                "j",
                "journal",
                "entity_type, entity_id, invocation_id, step",
                f"t.recorded_at < {cutoff} AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.entity_type = "
                "t.entity_type AND i.entity_id = t.entity_id AND i.signal_id = t.invocation_id)",
                "t.recorded_at",
            )
        where: list[str] = []
        if w.dead_letters_before is not None:
            where.append(f"t.failed_at < {param(float(w.dead_letters_before), 'float8')}")
        if w.keep_dead_letters is not None:
            # NULL (fewer than N + 1 letters) matches nothing
            where.append(
                "t.id <= (SELECT id FROM dead_letters ORDER BY id DESC "
                f"OFFSET {param(w.keep_dead_letters, 'int8')} LIMIT 1)"
            )
        if where:
            dead = delete("d", "dead_letters", "id", " OR ".join(where), "t.id")
        if not parts:
            return Pruned()
        row = await db.fetchrow(f"WITH {', '.join(parts)} SELECT {marks}, {dead}, {journals}", *params)
        counts = tuple(row) if row is not None else (0, 0, 0)  # a SELECT without FROM gives one row
        return Pruned(marks=int(counts[0]), dead_letters=int(counts[1]), journals=int(counts[2]))

    async def _fire(self, db: asyncpg.Connection, w: FireTimer) -> Accepted | Duplicate | None:
        t = w.timer
        row = await db.fetchrow(
            "SELECT handler, args, due_at, every FROM timers "
            "WHERE entity_type = $1 AND entity_id = $2 AND key = $3 FOR UPDATE",
            t.entity_type,
            t.entity_id,
            t.key,
        )
        if row is None or tuple(row) != (t.handler, t.args, t.due_at, t.every):
            return None  # replaced or cancelled meanwhile
        result = (await self._accept(db, [(w.signal, True)]))[0]
        if w.next_due is None:
            await db.execute(
                "DELETE FROM timers WHERE entity_type = $1 AND entity_id = $2 AND key = $3",
                t.entity_type,
                t.entity_id,
                t.key,
            )
        else:
            await db.execute(
                "UPDATE timers SET due_at = $4 WHERE entity_type = $1 AND entity_id = $2 AND key = $3",
                t.entity_type,
                t.entity_id,
                t.key,
                w.next_due,
            )
        return result

    # ------------------------------------------------------------ reads
    async def _read(self, sql: str, *params: object) -> list[asyncpg.Record]:
        """A read on the pool; retried once when the connection was lost (reads are safe)."""
        for attempt in (1, 2):
            pool = self._pool
            if not self._open or pool is None:
                raise StoreError(f"{self!r} is closed")
            try:
                rows: list[asyncpg.Record] = await pool.fetch(sql, *params)
                return rows
            except _CONNECTION_LOST as e:
                if attempt == 2:
                    raise translate(e, "read") from e
            except (asyncpg.PostgresError, UnicodeError) as e:
                raise translate(e, "read") from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def read_snapshots(self, entity_type: str, entity_id: str) -> list[SnapshotRecord]:
        """The entity's snapshots, newest first."""
        rows = await self._read(
            "SELECT seq, schema, state, taken_at FROM snapshots "
            "WHERE entity_type = $1 AND entity_id = $2 ORDER BY seq DESC",
            entity_type,
            entity_id,
        )
        return [SnapshotRecord(entity_type, entity_id, r[0], r[1], r[2], r[3]) for r in rows]

    async def read_events(
        self, entity_type: str, entity_id: str, *, after: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` events with ``seq > after``, in order."""
        rows = await self._read(
            "SELECT seq, type_name, version, data, recorded_at FROM events "
            "WHERE entity_type = $1 AND entity_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            entity_type,
            entity_id,
            after,
            _limit(limit),
        )
        return [StoredEvent(*r) for r in rows]

    async def last_seq(self, entity_type: str, entity_id: str) -> int:
        """The sequence of the entity's newest event (0 when it has none)."""
        rows = await self._read(
            "SELECT max(seq) FROM events WHERE entity_type = $1 AND entity_id = $2",
            entity_type,
            entity_id,
        )
        return int(rows[0][0] or 0)

    async def read_mark(self, entity_type: str, entity_id: str, signal_id: str) -> ProcessedMark | None:
        """The processed mark of a signal, if it was processed."""
        rows = await self._read(
            "SELECT signal_id, fingerprint, outcome, processed_at FROM processed "
            "WHERE entity_type = $1 AND entity_id = $2 AND signal_id = $3",
            entity_type,
            entity_id,
            signal_id,
        )
        return ProcessedMark(*rows[0]) if rows else None

    async def read_inbox(self, *, after: int, limit: int) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order."""
        rows = await self._read(
            f"SELECT position, {_SIG} FROM inbox WHERE position > $1 ORDER BY position LIMIT $2",
            after,
            _limit(limit),
        )
        return [InboxEntry(r[0], SignalRecord(*r[1:])) for r in rows]

    async def read_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        rows = await self._read(
            f"SELECT id, {_SIG}, error, traceback, attempts, failed_at FROM dead_letters "
            "ORDER BY id LIMIT $1",
            _limit(limit),
        )
        return [DeadLetter(r[0], SignalRecord(*r[1:9]), r[9], r[10], r[11], r[12]) for r in rows]

    async def read_timers(self, *, limit: int, after_due: float = float("-inf")) -> list[TimerRecord]:
        """Timers in due order."""
        rows = await self._read(
            "SELECT entity_type, entity_id, key, handler, args, due_at, every, trace FROM timers "
            "WHERE due_at > $1 ORDER BY due_at, entity_type, entity_id, key LIMIT $2",
            float(after_due),
            _limit(limit),
        )
        return [TimerRecord(*r) for r in rows]

    async def read_journal(self, entity_type: str, entity_id: str, invocation_id: str) -> list[JournalEntry]:
        """The recorded steps of one invocation, in step order."""
        rows = await self._read(
            "SELECT entity_type, entity_id, invocation_id, step, kind, name, result, recorded_at "
            "FROM journal WHERE entity_type = $1 AND entity_id = $2 AND invocation_id = $3 "
            "ORDER BY step",
            entity_type,
            entity_id,
            invocation_id,
        )
        return [JournalEntry(*r) for r in rows]

    async def read_outbox(self, *, after: int, limit: int) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order."""
        rows = await self._read(
            f"SELECT id, {_SIG} FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
            after,
            _limit(limit),
        )
        return [OutboxEntry(r[0], SignalRecord(*r[1:])) for r in rows]


_ACCEPT_SQL = f"""WITH k AS (
    SELECT * FROM unnest({_SIG_ARRAYS}, $8::bool[], $9::text[])
    WITH ORDINALITY AS k(t, i, s, h, a, f, at, chk, tr, ord)),
d AS (
    SELECT k.ord, p.fingerprint AS pf, p.outcome, p.processed_at, q.fingerprint AS qf
    FROM k LEFT JOIN processed p ON p.entity_type = k.t AND p.entity_id = k.i AND p.signal_id = k.s
    LEFT JOIN inbox q ON q.entity_type = k.t AND q.entity_id = k.i AND q.signal_id = k.s
    WHERE k.chk AND (p.signal_id IS NOT NULL OR q.signal_id IS NOT NULL)),
ins AS (
    INSERT INTO inbox ({_SIG})
    SELECT t, i, s, h, a, f, at, tr FROM k WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.ord = k.ord)
    ORDER BY k.ord)
SELECT ord, pf, outcome, processed_at, qf FROM d"""

_COMMIT_SQL = f"""WITH
ev AS (INSERT INTO events SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[],
        $5::int8[], $6::text[], $7::float8[])),
mk AS (INSERT INTO processed SELECT * FROM unnest($8::text[], $9::text[], $10::text[], $11::text[],
        $12::text[], $13::float8[])),
tk AS (DELETE FROM inbox USING unnest($14::text[], $15::text[], $16::text[]) AS k(t, i, s)
        WHERE inbox.entity_type = k.t AND inbox.entity_id = k.i AND inbox.signal_id = k.s),
jn AS (DELETE FROM journal USING unnest($17::text[], $18::text[], $19::text[]) AS k(t, i, s)
        WHERE journal.entity_type = k.t AND journal.entity_id = k.i AND journal.invocation_id = k.s),
dl AS (INSERT INTO dead_letters ({_SIG}, error, traceback, attempts, failed_at)
        SELECT t, i, s, h, a, f, at, tr, err, tb, n, fa FROM unnest($20::text[], $21::text[], $22::text[],
        $23::text[], $24::text[], $25::text[], $26::float8[], $27::text[], $28::text[], $29::int8[],
        $30::float8[], $48::text[]) WITH ORDINALITY AS k(t, i, s, h, a, f, at, err, tb, n, fa, tr, ord)
        ORDER BY ord),
ts AS (INSERT INTO timers (entity_type, entity_id, key, handler, args, due_at, every, trace)
        SELECT * FROM unnest($31::text[], $32::text[], $33::text[], $34::text[],
        $35::text[], $36::float8[], $37::float8[], $50::text[])
        ON CONFLICT (entity_type, entity_id, key) DO UPDATE SET handler = excluded.handler,
        args = excluded.args, due_at = excluded.due_at, every = excluded.every, trace = excluded.trace),
tc AS (DELETE FROM timers USING unnest($38::text[], $39::text[], $40::text[]) AS k(t, i, s)
        WHERE timers.entity_type = k.t AND timers.entity_id = k.i AND timers.key = k.s),
ob AS (INSERT INTO outbox ({_SIG})
        SELECT t, i, s, h, a, f, at, tr FROM unnest($41::text[], $42::text[], $43::text[], $44::text[],
        $45::text[], $46::text[], $47::float8[], $49::text[])
        WITH ORDINALITY AS k(t, i, s, h, a, f, at, tr, ord) ORDER BY ord RETURNING id)
SELECT id FROM ob"""


def _sig_row(s: SignalRecord) -> tuple[str, str, str, str, str, str, float, str | None]:
    return (s.entity_type, s.entity_id, s.signal_id, s.handler, s.args, s.fingerprint, s.accepted_at, s.trace)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows to per-column lists (the ``unnest`` parameter arrays)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


def _limit(limit: int) -> int:
    return max(0, min(int(limit), 2**62))


def _owner_name() -> str:
    return f"{APPLICATION} pid={os.getpid()} host={socket.gethostname()}"[:63]


async def _lock_owner(conn: asyncpg.Connection) -> dict[str, object]:
    """Who holds the owner lock: application name, address, pid and start of its session."""
    row = await conn.fetchrow(
        "SELECT a.application_name, a.client_addr::text, a.pid, a.backend_start::text "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.objid = ($1::int8 & 4294967295)::oid LIMIT 1",
        LOCK_KEY,
    )
    if row is None:
        return {}
    return {
        "application_name": row[0],
        "client_addr": row[1] or "local socket",
        "pid": row[2],
        "backend_start": row[3],
    }
