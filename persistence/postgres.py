"""PostgreSQL store on asyncpg: one transaction per batch, few round trips, typed errors.

Several systems (members and clients, on any hosts) may open one database at once:
the store implements :class:`~persistence.store.SharedStore`. Writes go through one
dedicated *writer* connection; reads through a small read-only pool; membership,
shard claims and wake-ups through a *control* connection opened on first use (it also
holds a session advisory lock per joined member, so a member whose process is gone is
declared dead at once); wake-ups arrive on one *listener* connection
(``LISTEN``, from opening on; see :meth:`PostgresStore.subscribe`). Every session sets
``idle_in_transaction_session_timeout``, so a paused process cannot hold a row lock
for long.

A batch is applied in one transaction. Consecutive items of one kind form a *run*, and
each run is one statement built on ``unnest`` of parameter arrays (data-modifying CTEs
for the several tables a commit touches), so a batch of a thousand commits costs about
as many round trips as a batch of one: ``BEGIN``, the transaction id, one statement
per run (plus a sequence lookup for entities the store has not seen), ``COMMIT``.

Fencing: once :meth:`PostgresStore.set_fence` was called, a batch with fenced writes
is checked twice. Before ``BEGIN``: every shard it touches must be in the fence.
Inside the transaction, in the statement that also fetches the transaction id: the
``shards`` rows must still name this member at the fence's epochs, read ``FOR SHARE``
(which conflicts with a claim's ``UPDATE``), so the check costs no extra round trip
and holds until ``COMMIT``. Fewer rows than shards: rollback and
:class:`~persistence.errors.ShardLost`.

Faults: a connection lost before ``COMMIT`` was sent rolled the transaction back, so
the batch is retried once on a new connection. A connection lost while ``COMMIT`` was
in flight is resolved by asking the server for the fate of the transaction id
(``pg_xact_status``): committed, the results stand; rolled back, retried; unknown,
:class:`CommitUnknown` (never an acknowledgement for what may not have committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import socket
import urllib.parse
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import anyio

try:
    import asyncpg
except ImportError:  # pragma: no cover - the 'postgres' extra is missing: PostgresStore() says so
    asyncpg = None

from persistence.errors import (
    SEQUENCE_CONFLICT_CAUSES,
    CommitUnknown,
    InvalidWrite,
    NotOurDatabase,
    ShardLost,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreTimeout,
    StoreUnavailable,
)
from persistence.store import (
    FENCED_WRITES,
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
SCHEMA_VERSION = 5
MIGRATE_KEY = 0x6475726163746F72  # "ducactor"-ish
"""Key of the transaction advisory lock that serializes opening (migrating) a database."""
MAX_SHARDS = 65_536
"""The most shards a database may have."""
TOPICS = ("inbox", "outcome", "shards", "cancel")
"""The wake-up topics of :meth:`PostgresStore.publish`."""
CHANNEL_PREFIX = "durable_actors_"
"""Prefix of the ``NOTIFY`` channels (``durable_actors_inbox``...), so they cannot clash."""
_PAYLOAD_MAX = 7_900
"""Bytes of one ``NOTIFY`` payload at most (the server's limit is 8,000)."""

log = logging.getLogger(__name__)

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
    # several members: the shard of every row a member reads by shard (filled by the
    # store, see _migrate_v4), membership and shard ownership with epochs
    4: [
        *(f"ALTER TABLE {t} ADD COLUMN shard int" for t in ("inbox", "timers", "outbox")),
        """CREATE TABLE members (
            member_id text PRIMARY KEY, name text NOT NULL, serves boolean NOT NULL,
            status text NOT NULL CHECK (status IN ('alive', 'left', 'dead')),
            ttl double precision NOT NULL, joined_at double precision NOT NULL,
            heartbeat_at double precision NOT NULL,
            lock_key bigint)""",
        """CREATE TABLE shards (
            shard int PRIMARY KEY, owner text REFERENCES members (member_id),
            epoch bigint NOT NULL DEFAULT 0)""",
    ],
    # a batch written in one statement leaves its writer's token here, in the same
    # transaction: the proof of its commit when the connection died before the answer
    5: [
        """CREATE TABLE write_marks (
            writer text PRIMARY KEY, token bigint NOT NULL, written_at double precision NOT NULL)""",
    ],
}
"""Schema statements by version; version N upgrades a database at N - 1 (version 4 also
runs :func:`_migrate_v4`: the shard of existing rows is computed in Python)."""

_V4_AFTER = [
    *(f"ALTER TABLE {t} ALTER COLUMN shard SET NOT NULL" for t in ("inbox", "timers", "outbox")),
    "CREATE INDEX inbox_by_shard ON inbox (shard, position)",
    "CREATE INDEX timers_by_shard ON timers (shard, due_at)",
    "CREATE INDEX outbox_by_shard ON outbox (shard, id)",
    "CREATE INDEX shards_by_owner ON shards (owner)",
]
"""Version 4, after the shards of existing rows are filled."""

_MEMBERSHIP_LOCK_TIMEOUT = "2000"
"""``lock_timeout`` (ms) of the control connection: membership never waits long."""
_LISTEN_PING = 5.0
"""Seconds between checks that an idle listener connection still answers."""

_NOW = "extract(epoch FROM clock_timestamp())::float8"
"""The database's clock in Unix seconds: every membership time is taken from it."""

WRITE_TRANSACTION_LIMIT = 10.0
"""Seconds a write transaction may last at most (PostgreSQL 17+: ``transaction_timeout``)."""

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
        return "sequence conflict while appending events " + SEQUENCE_CONFLICT_CAUSES
    if name.startswith("processed"):
        return "a signal in this batch is already processed"
    if name.startswith("inbox"):
        return "a signal in this batch is already in the inbox"
    return f"unique constraint {name or '?'} violated"


class PostgresStore:
    """A Store on a PostgreSQL server (asyncpg), shared by any number of systems.

    ``dsn`` is a ``postgresql://user:password@host:port/database`` URL (a libpq
    key/value string works too). ``min_connections``/``max_connections`` bound the
    writer and the pool of readers (membership and wake-ups add a control and a
    listener connection when used). ``statement_timeout`` (seconds) cancels any
    statement running longer, as :class:`StoreTimeout`. ``shards`` is the number of
    shards of a new database (``None``: the database's own, :data:`SHARDS` for a new
    one); a value that differs from an existing database's is a :class:`StoreError`.
    ``idle_in_transaction_timeout`` (seconds) is set on every session: the server ends
    a session that stays inside a transaction that long (a paused process), so its row
    locks cannot block a takeover. ``lock_wait`` is accepted for compatibility and
    ignored: the store no longer takes an owner lock (safety comes from the fence).
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = 2,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
        statement_timeout: float | None = None,
        shards: int | None = None,
        idle_in_transaction_timeout: float = 5.0,
        lock_wait: float = 0.0,
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
        timeouts: list[tuple[str, float | None]] = [
            ("statement_timeout", statement_timeout),
            ("idle_in_transaction_timeout", idle_in_transaction_timeout),
        ]
        for name, limit in timeouts:
            if limit is None and name == "statement_timeout":
                continue
            if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not 0 < limit < 86_400:
                raise ValueError(f"{name} must be seconds > 0 (below a day), got {limit!r}")
        if shards is not None and (
            not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= MAX_SHARDS
        ):
            raise ValueError(f"shards must be an int 1..{MAX_SHARDS} or None, got {shards!r:.40}")
        self.dsn = dsn
        self.min_connections = min_connections
        self.max_connections = max_connections
        self._connect_timeout = float(connect_timeout)
        self._shards_wanted = shards
        self._shard_count = shards or SHARDS
        self._settings: dict[str, str] = {
            "application_name": _owner_name(),
            "idle_in_transaction_session_timeout": str(max(1, int(idle_in_transaction_timeout * 1000))),
        }
        if statement_timeout is not None:
            self._settings["statement_timeout"] = str(max(1, int(statement_timeout * 1000)))
        self._w: asyncpg.Connection | None = None
        # the writer's session (backend pid, start time): ended for good before a batch
        # lost in its one statement is looked up (see _one_committed)
        self._w_session: tuple[int, object] | None = None
        self._writer_id = f"{_owner_name()}:{secrets.token_hex(8)}"
        self._marked = False  # a write_marks row of this store exists (removed on close)
        self._pool: asyncpg.Pool | None = None
        self._open = False
        self._write_lock = anyio.Lock()
        # the writer's last sequence per entity, by shard (dropped when a shard's fence changes)
        self._seqs: dict[int, dict[tuple[str, str], int]] = {}
        self._seq_count = 0
        self._seq_gen = 0
        self._pending_seqs: dict[tuple[str, str], int] = {}
        # the fence: None until set_fence (then only these shards at these epochs)
        self._fence: dict[int, int] | None = None
        self._fence_member = ""
        # membership and wake-ups
        self._ctl: asyncpg.Connection | None = None
        self._ctl_lock = anyio.Lock()
        self._joined: dict[str, int] = {}  # member id -> key of its session advisory lock
        self._idle_limit = float(idle_in_transaction_timeout)
        # the writer's transaction limit (seconds) once a member joined (see _bound_writer)
        self._writer_limit: float | None = None
        self._limited: asyncpg.Connection | None = None
        self._callbacks: list[Callable[[str, str], None]] = []
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.retries = 0
        """Batches applied again after the connection was lost (for tests and metrics)."""
        self.reconnects = 0
        """Times the wake-up listener connection was established again after a loss."""

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.dsn)!r})"

    @property
    def shard_count(self) -> int:
        """The number of shards of this database (fixed when it was created)."""
        return self._shard_count

    @property
    def shared(self) -> bool:
        """Always True: several systems may open one PostgreSQL database (commits are
        fenced once :meth:`set_fence` is called)."""
        return True

    @property
    def wakes(self) -> bool:
        """True: :meth:`subscribe` is called back (``LISTEN``/``NOTIFY``)."""
        return True

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._open:
            raise StoreError(f"{self!r} is already open")
        try:
            self._w = await self._connect_writer()
            await self._migrate(self._w)
            self._pool = await self._create_pool()
            # listen from the start, so a subscriber hears everything published after
            # subscribe() returns (the first connection is awaited, a failed one retried)
            self._listening = asyncio.Event()
            self._listen_task = asyncio.get_running_loop().create_task(self._listen())
            with anyio.move_on_after(self._connect_timeout):
                await self._listening.wait()
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
            task, self._listen_task = self._listen_task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException), anyio.move_on_after(5):
                    await task
            pool, self._pool = self._pool, None
            if self._marked and self._w is not None and not self._w.is_closed():
                # this store's token, and any left by a process that died (a day old)
                with contextlib.suppress(Exception), anyio.move_on_after(5):
                    await self._w.execute(
                        f"DELETE FROM write_marks WHERE writer = $1 OR written_at < {_NOW} - 86400",
                        self._writer_id,
                    )
                self._marked = False
            conns = [self._w, self._ctl, self._listener]
            self._w = self._ctl = self._listener = None
            if pool is not None:
                with contextlib.suppress(Exception), anyio.move_on_after(5):
                    await pool.close()
                pool.terminate()
            for conn in conns:
                if conn is not None:
                    with contextlib.suppress(Exception), anyio.move_on_after(5):
                        await conn.close()
                    conn.terminate()
        self._seqs.clear()
        self._seq_count = 0
        self._joined.clear()

    async def _connect(self, **settings: str) -> asyncpg.Connection:
        try:
            conn: asyncpg.Connection = await asyncpg.connect(
                self.dsn, timeout=self._connect_timeout, server_settings={**self._settings, **settings}
            )
        except (asyncpg.PostgresError, *_CONNECTION_LOST, TimeoutError, ValueError) as e:
            if isinstance(e, ValueError) and not isinstance(e, UnicodeError):
                raise StoreError(f"cannot connect to {redact(self.dsn)}: bad dsn ({e})") from e
            if isinstance(e, asyncpg.exceptions.ObjectNotInPrerequisiteStateError):
                # e.g. the database does not accept connections right now
                raise StoreUnavailable(f"cannot connect to {redact(self.dsn)}: {e}") from e
            raise translate(e, f"cannot connect to {redact(self.dsn)}") from e
        try:  # every session's transactions are bounded (see _connect_writer)
            if conn.get_server_version().major >= 17:
                await conn.execute(f"SET transaction_timeout = {int(WRITE_TRANSACTION_LIMIT * 1000)}")
        except (asyncpg.PostgresError, *_CONNECTION_LOST) as e:
            conn.terminate()
            raise translate(e, f"cannot connect to {redact(self.dsn)}") from e
        return conn

    async def _connect_writer(self) -> asyncpg.Connection:
        """Connect the writer (a new writer re-reads every entity's last sequence).

        On PostgreSQL 17 and later the writer's transactions are also bounded by
        ``transaction_timeout`` (``WRITE_TRANSACTION_LIMIT``, set on every session by
        ``_connect``): a member paused in the middle of sending a statement is not
        *idle* in its transaction, so only this ends the session and frees the shard
        rows its fence (or its membership statement) holds, which a takeover skips
        until then (found by the cluster fault run: stalls of over a minute)."""
        conn = await self._connect()
        self._forget_seqs(None)  # whatever other members did meanwhile, read it again
        try:
            row = await conn.fetchrow(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            )
        except (asyncpg.PostgresError, *_CONNECTION_LOST) as e:
            conn.terminate()
            raise translate(e, f"cannot connect to {redact(self.dsn)}") from e
        self._w_session = (int(row[0]), row[1]) if row is not None else None
        return conn

    async def _create_pool(self) -> asyncpg.Pool:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                self.dsn,
                min_size=max(self.min_connections - 1, 0),
                max_size=self.max_connections - 1,
                timeout=self._connect_timeout,
                server_settings={**self._settings, "default_transaction_read_only": "on"},
                reset=_reset_reader,
            )
        except (asyncpg.PostgresError, *_CONNECTION_LOST, TimeoutError) as e:
            raise translate(e, f"cannot connect to {redact(self.dsn)}") from e
        return pool

    async def _migrate(self, db: asyncpg.Connection) -> None:
        """Check the database is ours and bring it to :data:`SCHEMA_VERSION`, in one
        transaction that holds an advisory lock, so stores opening at once take turns."""
        where = redact(self.dsn)
        try:
            async with db.transaction():
                await db.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_KEY)
                tables = {
                    r[0]
                    for r in await db.fetch(
                        "SELECT c.relname FROM pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
                        "AND c.relnamespace = current_schema()::regnamespace"
                    )
                }
                version = 0
                meta: dict[str, str] = {}
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
                    for stmt in MIGRATIONS[v]:
                        await db.execute(stmt)
                    if v == 4:
                        await self._migrate_v4(db)
                    await db.execute(
                        "INSERT INTO actors_meta VALUES ('application', $1), ('schema_version', $2) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        APPLICATION,
                        str(v),
                    )
                if version >= 4:
                    self._check_shards(meta.get("shards", ""), where)
        except (asyncpg.PostgresError, *_CONNECTION_LOST) as e:
            raise translate(e, f"cannot open {where}") from e

    def _check_shards(self, stored: str, where: str) -> None:
        if not stored.isdecimal() or not 1 <= int(stored) <= MAX_SHARDS:
            raise NotOurDatabase(f"{where} has no valid shard count ({stored!r:.40})")
        n = int(stored)
        if self._shards_wanted is not None and self._shards_wanted != n:
            raise StoreError(
                f"{where} has {n} shards, but this store was opened with shards={self._shards_wanted} "
                f"(the shard count of a database is fixed when it is created)"
            )
        self._shard_count = n

    async def _migrate_v4(self, db: asyncpg.Connection) -> None:
        """Fill the shard of existing rows (computed here, with :func:`shard_of`), then
        constrain and index it, and make every shard free at epoch 0.

        Outbox rows written before version 4 do not name their sender; they get the
        shard of their target (any member may deliver a message: delivery is an
        unfenced accept).
        """
        n = self._shard_count
        for table in ("inbox", "timers", "outbox"):
            keys = [
                (r[0], r[1]) for r in await db.fetch(f"SELECT DISTINCT entity_type, entity_id FROM {table}")
            ]
            if keys:
                await db.execute(
                    f"UPDATE {table} x SET shard = k.s FROM unnest($1::text[], $2::text[], $3::int[]) "
                    "AS k(t, i, s) WHERE x.entity_type = k.t AND x.entity_id = k.i",
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [shard_of(t, i, n) for t, i in keys],
                )
        for stmt in _V4_AFTER:
            await db.execute(stmt)
        await db.execute("INSERT INTO shards (shard) SELECT generate_series(0, $1::int - 1)", n)
        await db.execute("INSERT INTO actors_meta VALUES ('shards', $1)", str(n))

    # ------------------------------------------------------------ writes
    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        """Apply ``batch`` in one transaction; one result per item, in order.

        Retried once on a new connection when the old one died before ``COMMIT``
        (nothing was applied then); see the module docstring for a loss during it.
        With a fence (:meth:`set_fence`), a batch with fenced writes is applied only
        while this member owns their shards at the fence's epochs, else
        :class:`ShardLost` and nothing is written.
        """
        if not self._open:
            raise StoreError(f"{self!r} is closed")
        if not batch:
            return []
        async with self._write_lock:
            for attempt in (1, 2):
                fence = self._fence_of(batch)
                try:
                    return await self._write_once(batch, fence)
                except _LostBeforeCommit as lost:
                    if attempt == 2:
                        raise translate(lost.__cause__ or lost, "write") from lost.__cause__
                    self.retries += 1
            raise AssertionError("unreachable")  # pragma: no cover

    def _fence_of(self, batch: Sequence[Write]) -> tuple[str, list[int], list[int]] | None:
        """The fence check a batch needs: (member, shards, epochs), or None (no fenced
        write, or no fence). A shard outside the fence is refused here, before BEGIN."""
        if self._fence is None:
            return None
        n = self._shard_count
        touched: set[int] = set()
        for w in batch:
            if isinstance(w, FENCED_WRITES):
                entity = write_entity(w)
                if entity is not None:
                    touched.add(shard_of(entity[0], entity[1], n))
        if not touched:
            return None
        missing = touched.difference(self._fence)
        if missing:
            raise ShardLost(
                f"write refused: this member ({self._fence_member}) does not own shard(s) "
                f"{_shard_list(missing)}; nothing was written",
                frozenset(missing),
            )
        shards = sorted(touched)
        return (self._fence_member, shards, [self._fence[s] for s in shards])

    async def _writer(self) -> asyncpg.Connection:
        w = self._w
        if w is None or w.is_closed():
            self._w = None
            if w is not None:
                w.terminate()
            self._w = w = await self._connect_writer()
        if self._writer_limit is not None and self._limited is not w:
            limit = self._writer_limit
            sets = f"SET idle_in_transaction_session_timeout = {int(min(limit, self._idle_limit) * 1000)}"
            if w.get_server_version().major >= 17:
                sets += f"; SET transaction_timeout = {int(limit * 1000)}"
            try:
                await w.execute(sets)
            except (asyncpg.PostgresError, *_CONNECTION_LOST) as e:
                self._drop_writer()
                raise translate(e, "write") from e
            self._limited = w
        return w

    def _bound_writer(self, ttl: float) -> None:
        """Bound the writer's transactions by the lease of the member that joined.

        The fence holds its shards' rows (``FOR SHARE``) for the length of a write
        transaction, and a takeover skips locked rows: a member paused in the middle of
        a write (SIGSTOP, a stalled VM) delays the takeover until the server ends that
        transaction. So the server ends it after half the lease (at least 1 s, at most
        ``WRITE_TRANSACTION_LIMIT``), idle or not (PostgreSQL 17+; before that, idle
        only): a takeover then comes at most that long after the lease is over."""
        self._writer_limit = max(1.0, min(WRITE_TRANSACTION_LIMIT, ttl / 2))
        self._limited = None

    async def _write_once(
        self, batch: Sequence[Write], fence: tuple[str, list[int], list[int]] | None
    ) -> list[WriteResult]:
        try:
            db = await self._writer()
        except StoreUnavailable as e:
            raise StoreUnavailable(f"write: {e}") from e.__cause__
        self._pending_seqs = {}
        gen = self._seq_gen
        if all(type(w) is Commit and not w.outbox for w in batch):
            return await self._write_one(db, batch, fence, gen)  # type: ignore[arg-type]
        xid: str | None = None
        try:
            await db.execute("BEGIN")
            if fence is None:
                xid = await db.fetchval("SELECT pg_current_xact_id()::text")
            else:
                member, shards, epochs = fence
                row = await db.fetchrow(_FENCE_SQL, shards, epochs, member)
                assert row is not None  # a SELECT without FROM gives one row
                xid = row[0]
                if len(row[1]) < len(shards):
                    raise self._lost(member, dict(zip(shards, epochs, strict=True)), set(row[1]))
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
                return self._done(results, gen)
            raise _LostBeforeCommit() from e
        except asyncpg.PostgresError as e:  # a deferred check or the server refusing at commit
            await self._rollback(db)
            raise translate(e, "write") from e
        return self._done(results, gen)

    async def _write_one(
        self,
        db: asyncpg.Connection,
        batch: Sequence[Commit],
        fence: tuple[str, list[int], list[int]] | None,
        gen: int,
    ) -> list[WriteResult]:
        """A batch of commits (without outbox) in one statement, its own transaction:
        one round trip instead of four (``BEGIN``, the fence or transaction id, the
        statement, ``COMMIT``). The fence is in the statement: every write of it is
        conditioned on the touched shards' rows, read ``FOR SHARE`` before any row is
        written. So is the writer's token in ``write_marks``, which tells whether it
        committed if the connection dies before the answer (:meth:`_one_committed`)."""
        member, shards, epochs = fence if fence is not None else ("", [], [])
        session = self._w_session
        token = secrets.randbits(63)
        try:
            await self._check_seqs(db, batch)  # reads only for entities it does not know
            taken = inbox_taken(batch)
            names, args = self._commit_parts(batch, taken)
            row = await db.fetchrow(
                _commit_statement(names, one=True), *args, shards, epochs, member, self._writer_id, token
            )
        except BaseException as e:
            if isinstance(e, _CONNECTION_LOST):
                self._drop_writer()
                if await self._one_committed(token, session, e):
                    self._marked = True
                    return self._done([Committed()] * len(batch), gen)
                raise _LostBeforeCommit() from e
            if isinstance(e, asyncpg.PostgresError | UnicodeError):
                raise translate(e, "write") from e
            raise
        assert row is not None  # a SELECT without FROM gives one row
        if not row[0]:
            raise self._lost(member, dict(zip(shards, epochs, strict=True)), set(row[1]))
        if row[2] != len(taken):  # nothing was written: some were gone, processed already
            raise signal_taken(taken, row[2])
        self._marked = True
        return self._done([Committed()] * len(batch), gen)

    async def _one_committed(
        self, token: int, session: tuple[int, object] | None, cause: BaseException
    ) -> bool:
        """After the connection died during a batch's one statement: did it commit?

        First the old session must be over (ended here if the server still runs it, as
        it may be waiting on a lock): its transaction then committed or rolled back for
        good. Then the writer's token tells which (read ``FOR SHARE``: a transaction
        still ending holds its row). Unknown: :class:`CommitUnknown`."""
        found: object = None
        learned = False
        with contextlib.suppress(StoreUnavailable, TimeoutError, asyncpg.PostgresError, *_CONNECTION_LOST):
            conn = await self._connect()
            try:
                with anyio.fail_after(max(self._connect_timeout, 5.0)):
                    while session is not None and await conn.fetchval(  # noqa: ASYNC110 (server state)
                        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE pid = $1 AND backend_start = $2) AS still",
                        *session,
                    ):
                        await anyio.sleep(0.01)  # signalled; polled until it is gone
                    found = await conn.fetchval(
                        "SELECT token FROM write_marks WHERE writer = $1 FOR SHARE", self._writer_id
                    )
                    learned = session is not None
            finally:
                conn.terminate()
        if learned:
            return found == token
        raise CommitUnknown(
            f"write: the connection was lost during the statement of a batch and its outcome "
            f"is unknown ({'its session could not be ended' if session is not None else 'no session'}"
            f" or the server is unreachable); nothing of this batch is acknowledged"
        ) from cause

    def _lost(self, member: str, checked: dict[int, int], held: set[int]) -> ShardLost:
        """The fence check found fewer shards than it asked for: drop the lost ones from
        the fence (unless :meth:`set_fence` changed them meanwhile)."""
        lost = frozenset(checked).difference(held)
        if self._fence is not None and self._fence_member == member:
            gone = [s for s in lost if self._fence.get(s) == checked[s]]
            for s in gone:
                del self._fence[s]
            self._forget_seqs(gone)
        return ShardLost(
            f"write refused: this member ({member}) no longer owns shard(s) {_shard_list(lost)} "
            f"at the epochs it holds (taken over or handed off); nothing was written",
            lost,
        )

    def _done(self, results: list[WriteResult], gen: int) -> list[WriteResult]:
        n = self._shard_count
        if gen != self._seq_gen:  # a fence changed during the write: what it learned may be stale,
            for key in self._pending_seqs:  # and what was cached before it surely is (it wrote more)
                per = self._seqs.get(shard_of(key[0], key[1], n))
                if per is not None and per.pop(key, None) is not None:
                    self._seq_count -= 1
            return results
        for key, last in self._pending_seqs.items():
            per = self._seqs.setdefault(shard_of(key[0], key[1], n), {})
            if key not in per:
                self._seq_count += 1
            per[key] = last
        if self._seq_count > _SEQ_CACHE:
            self._forget_seqs(None)
        return results

    def _forget_seqs(self, shards: Collection[int] | None) -> None:
        """Forget the last sequences of these shards' entities (``None``: all)."""
        self._seq_gen += 1
        if shards is None:
            self._seqs.clear()
            self._seq_count = 0
            return
        for s in shards:
            self._seq_count -= len(self._seqs.pop(s, ()))

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
        shard_count = self._shard_count
        shards = [shard_of(items[n][0].entity_type, items[n][0].entity_id, shard_count) for n in sent]
        rows = await db.fetch(_ACCEPT_SQL, *cols[:7], [items[n][1] for n in sent], cols[7], shards)
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
        taken = inbox_taken(run)
        names, args = self._commit_parts(run, taken)
        if not names:
            return [Committed()] * len(run)
        row = await db.fetchrow(_commit_statement(names, one=False), *args)
        assert row is not None  # a SELECT without FROM gives one row
        if row[1] != len(taken):  # some were gone: processed already (the caller rolls back)
            raise signal_taken(taken, row[1])
        ids = sorted(int(i) for i in row[0])
        results = []
        at = 0
        for c in run:
            n = len(c.outbox)
            results.append(Committed(tuple(ids[at : at + n])))
            at += n
        return results

    def _commit_parts(
        self, run: Sequence[Commit], taken: list[tuple[str, str, str]]
    ) -> tuple[tuple[str, ...], list[list[Any]]]:
        """The parts of :data:`_COMMIT_PARTS` a run of commits needs (those with rows),
        and their parameter arrays in that order (``taken``: its ``inbox_taken``)."""
        rows: dict[str, list[tuple[Any, ...]]] = {
            "ev": [
                (c.entity_type, c.entity_id, c.first_seq + i, e.type_name, e.version, e.data, c.recorded_at)
                for c in run
                for i, e in enumerate(c.events)
            ],
            "mk": [c.mark_row() for c in run if c.mark],
            "tk": taken,
            "jn": [(c.entity_type, c.entity_id, c.signal.signal_id) for c in run if c.has_journal],
            "dl": [
                (*_sig_row(c.signal), c.dead_letter[0], c.dead_letter[1], c.dead_letter[2], c.recorded_at)
                for c in run
                if c.dead_letter is not None
            ],
        }
        n = self._shard_count
        timers: dict[tuple[str, str, str], TimerRecord | None] = {}
        for c in run:  # the net effect of the run's timer changes, in order
            for t in c.set_timers:
                timers[(t.entity_type, t.entity_id, t.key)] = t
            for k in c.cancel_timers:
                timers[(c.entity_type, c.entity_id, k)] = None
        rows["ts"] = [
            (t.entity_type, t.entity_id, t.key, t.handler, t.args, t.due_at, t.every, t.trace,
             shard_of(t.entity_type, t.entity_id, n))
            for t in timers.values()
            if t is not None
        ]  # fmt: skip
        rows["tc"] = [k for k, t in timers.items() if t is None]
        # an outbox row carries the shard of its sender (the committing entity)
        rows["ob"] = [(*_sig_row(s), shard_of(c.entity_type, c.entity_id, n)) for c in run for s in c.outbox]
        names = tuple(name for name in _COMMIT_PARTS if rows[name])
        args: list[list[Any]] = []
        for name in names:
            args.extend(_columns(rows[name], len(_COMMIT_PARTS[name][0])))
        return names, args

    async def _check_seqs(self, db: asyncpg.Connection, run: Sequence[Commit]) -> None:
        """The log is contiguous from 1: each commit appends right after the last event."""
        keys = list(dict.fromkeys((c.entity_type, c.entity_id) for c in run if c.events))
        if not keys:
            return
        nexts: dict[tuple[str, str], int] = {}
        unknown = []
        n = self._shard_count
        for k in keys:
            last = self._pending_seqs.get(k)
            if last is None:
                last = self._seqs.get(shard_of(k[0], k[1], n), {}).get(k)
            if last is None:
                unknown.append(k)
            else:
                nexts[k] = last + 1
        if unknown:
            nexts.update(await self._log_ends(db, unknown))
        read = set(unknown)
        for c in run:
            if not c.events:
                continue
            key = (c.entity_type, c.entity_id)
            if c.first_seq != nexts[key] and key not in read and key not in self._pending_seqs:
                # the remembered end may be stale (e.g. a commit whose outcome was unknown
                # did commit): ask the database before calling it a conflict
                nexts.update(await self._log_ends(db, [key]))
                read.add(key)
            if c.first_seq != nexts[key]:
                raise StoreError(
                    f"sequence conflict on {c.entity_type}/{c.entity_id}: appending at "
                    f"{c.first_seq}, log ends at {nexts[key] - 1} {SEQUENCE_CONFLICT_CAUSES}"
                )
            nexts[key] += len(c.events)
            self._pending_seqs[key] = nexts[key] - 1

    async def _log_ends(
        self, db: asyncpg.Connection, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        """The next sequence of each entity's log, as the database has it."""
        rows = await db.fetch(
            "SELECT k.t, k.i, (SELECT max(seq) FROM events e WHERE e.entity_type = k.t "
            "AND e.entity_id = k.i) FROM unnest($1::text[], $2::text[]) AS k(t, i)",
            *_columns(keys, 2),
        )
        return {(r[0], r[1]): int(r[2] or 0) + 1 for r in rows}

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

    # ------------------------------------------------------------ several members
    async def _control(self) -> asyncpg.Connection:
        """The control connection (membership, claims, wake-ups sent), opened on first use.

        A new one takes again the advisory lock of every member joined through this
        store; a member whose lock could not be taken again (its old session still
        lingers on the server) is then declared dead by the next claim of any member,
        and finds out at its next heartbeat.
        """
        c = self._ctl
        if c is not None and not c.is_closed():
            return c
        self._drop_ctl()
        c = await self._connect(lock_timeout=_MEMBERSHIP_LOCK_TIMEOUT)
        try:
            for key in self._joined.values():
                await c.fetchval("SELECT pg_try_advisory_lock($1)", key)
        except BaseException:
            c.terminate()
            raise
        self._ctl = c
        return c

    def _drop_ctl(self) -> None:
        if self._ctl is not None:
            self._ctl.terminate()
            self._ctl = None

    async def _ctl_do(self, what: str, fn: Callable[[asyncpg.Connection], Any], *, retry: bool = True) -> Any:
        """Run ``fn`` on the control connection; once more on a new one when the old one
        was lost (only for ``retry``: statements whose repetition is harmless)."""
        if not self._open:
            raise StoreError(f"{self!r} is closed")
        async with self._ctl_lock:
            for attempt in (1, 2):
                try:
                    conn = await self._control()
                    return await fn(conn)
                except _CONNECTION_LOST as e:
                    self._drop_ctl()
                    if attempt == 2 or not retry:
                        raise translate(e, what) from e
                except (asyncpg.PostgresError, UnicodeError) as e:
                    raise translate(e, what) from e
            raise AssertionError("unreachable")  # pragma: no cover

    async def join(self, member_id: str, name: str, *, serves: bool, ttl: float) -> None:
        """Add a member, alive, heartbeat now (the database's clock); ``member_id`` must
        be new. The store holds a session advisory lock for it, so other members can
        tell at once when its process is gone."""
        _check_member(member_id)
        if not isinstance(name, str):
            raise InvalidWrite(f"join name must be a str, got {name!r:.80}")
        if not isinstance(serves, bool):
            raise InvalidWrite(f"join serves must be a bool, got {serves!r:.40}")
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 0 < ttl <= 86_400:
            raise InvalidWrite(f"join ttl must be seconds in (0, 86400], got {ttl!r:.40}")
        key = _member_key(member_id)

        async def go(db: asyncpg.Connection) -> None:
            if not await db.fetchval("SELECT pg_try_advisory_lock($1)", key):
                raise StoreError(f"member {member_id!r} is already joined (its lock is held)")
            try:
                done = await db.fetchval(
                    "INSERT INTO members (member_id, name, serves, status, ttl, joined_at, heartbeat_at, "
                    f"lock_key) VALUES ($1, $2, $3, 'alive', $4, {_NOW}, {_NOW}, $5) "
                    "ON CONFLICT (member_id) DO NOTHING RETURNING 1",
                    member_id,
                    name,
                    serves,
                    float(ttl),
                    key,
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await db.fetchval("SELECT pg_advisory_unlock($1)", key)
                raise
            if done is None:
                await db.fetchval("SELECT pg_advisory_unlock($1)", key)
                raise StoreError(f"member id {member_id!r} was used before (a member id is never reused)")

        await self._ctl_do("join", go, retry=False)
        self._joined[member_id] = key
        if serves:
            self._bound_writer(ttl)

    async def heartbeat(self, member_id: str) -> bool:
        """Renew the member's lease (the database's clock); False when it is no longer
        alive: it owns nothing then and must stop (it may join again under a new id)."""
        _check_member(member_id)

        async def go(db: asyncpg.Connection) -> bool:
            row = await db.fetchval(
                f"UPDATE members SET heartbeat_at = {_NOW} WHERE member_id = $1 AND status = 'alive' "
                "RETURNING 1",
                member_id,
            )
            if row is None and member_id in self._joined:
                with contextlib.suppress(Exception):
                    await db.fetchval("SELECT pg_advisory_unlock($1)", self._joined.pop(member_id))
            return row is not None

        alive: bool = await self._ctl_do("heartbeat", go)
        return alive

    async def claim(self, member_id: str, wanted: Collection[int]) -> dict[int, int]:
        """Take the ``wanted`` shards that are free or owned by a member that is not alive.

        One statement: it first declares dead every alive member whose heartbeat is
        older than its ttl by the database's clock, or whose advisory lock no session
        holds (its process or connection is gone); rows another transaction holds are
        skipped (``SKIP LOCKED``), never waited for. Each shard taken gets epoch + 1.
        Returns ``{shard: epoch}`` of the shards taken now; nothing if this member is
        not alive (or its own lease ran out). Not retried when the connection is lost
        (:class:`StoreUnavailable`): shards it may have taken then show as this
        member's in :meth:`shard_map`.
        """
        _check_member(member_id)
        shards = self._shard_arg(wanted, "claim")

        async def go(db: asyncpg.Connection) -> dict[int, int]:
            rows = await db.fetch(_CLAIM_SQL, member_id, shards)
            return {int(r[0]): int(r[1]) for r in rows}

        taken: dict[int, int] = await self._ctl_do("claim", go, retry=False)
        return dict(sorted(taken.items()))

    async def release(self, member_id: str, shards: Mapping[int, int]) -> None:
        """Give up shards this member owns at these epochs (owner none, epoch + 1); a
        shard it no longer owns at that epoch is left alone. They leave the fence first."""
        _check_member(member_id)
        epochs = self._epochs_arg(shards, "release")
        if self._fence is not None and self._fence_member == member_id:
            gone = [s for s, e in epochs.items() if self._fence.get(s) == e]
            for s in gone:
                del self._fence[s]
            self._forget_seqs(gone)

        async def go(db: asyncpg.Connection) -> None:
            await db.execute(
                "UPDATE shards SET owner = NULL, epoch = shards.epoch + 1 "
                "FROM unnest($2::int[], $3::int8[]) AS h(shard, epoch) "
                "WHERE shards.shard = h.shard AND shards.epoch = h.epoch AND shards.owner = $1",
                member_id,
                list(epochs),
                list(epochs.values()),
            )

        if epochs:
            await self._ctl_do("release", go)

    async def leave(self, member_id: str) -> None:
        """The member leaves cleanly: status ``left``, every shard it owns released (in
        one transaction), its advisory lock let go; the fence is emptied."""
        _check_member(member_id)
        if self._fence is not None and self._fence_member == member_id:
            self._fence = {}
            self._forget_seqs(None)

        async def go(db: asyncpg.Connection) -> None:
            await db.execute(
                "WITH m AS (UPDATE members SET status = 'left' WHERE member_id = $1 AND status = 'alive') "
                "UPDATE shards SET owner = NULL, epoch = epoch + 1 WHERE owner = $1",
                member_id,
            )
            key = self._joined.pop(member_id, None)
            if key is not None:
                await db.fetchval("SELECT pg_advisory_unlock($1)", key)

        await self._ctl_do("leave", go)

    async def members(self) -> list[MemberRecord]:
        """Every member row (alive first, then the most recent), with ``seen_ago``.

        Read on the control connection, like every membership statement: the reader
        pool can queue thousands of reads behind a takeover (actors activating), and
        balancing must not wait behind them."""
        rows = await self._ctl_do(
            "members",
            lambda db: db.fetch(
                "SELECT member_id, name, serves, status, ttl, joined_at, heartbeat_at, "
                f"{_NOW} - heartbeat_at FROM members "
                "ORDER BY status = 'alive' DESC, joined_at DESC, member_id"
            ),
        )
        return [MemberRecord(*r) for r in rows]

    async def shard_map(self) -> list[ShardRecord]:
        """Every shard, in order (on the control connection, see :meth:`members`)."""
        rows = await self._ctl_do(
            "shard_map", lambda db: db.fetch("SELECT shard, owner, epoch FROM shards ORDER BY shard")
        )
        return [ShardRecord(*r) for r in rows]

    def set_fence(self, member_id: str, epochs: Mapping[int, int]) -> None:
        """From now on, a batch with a fenced write is applied only if ``member_id`` owns
        every shard its fenced writes touch at exactly these epochs (checked inside the
        transaction, see the module docstring); otherwise :class:`ShardLost`. The writer
        forgets what it knew of the entities of every shard whose epoch changed or that
        left the fence (another member may have written to them meanwhile)."""
        _check_member(member_id)
        new = self._epochs_arg(epochs, "set_fence")
        old = self._fence
        if old is None or self._fence_member != member_id:
            self._forget_seqs(None)
        else:
            changed = {s for s in old.keys() | new.keys() if old.get(s) != new.get(s)}
            self._forget_seqs(changed)
        self._fence_member = member_id
        self._fence = new

    def _epochs_arg(self, epochs: object, what: str) -> dict[int, int]:
        if not isinstance(epochs, Mapping):
            raise InvalidWrite(f"{what} needs a mapping of shard to epoch, got {epochs!r:.80}")
        shards = self._shard_arg(list(epochs), what, strict=what == "set_fence")
        out: dict[int, int] = {}
        for s in shards:
            e = epochs[s]
            if not isinstance(e, int) or isinstance(e, bool) or not 0 <= e <= 2**63 - 1:
                raise InvalidWrite(f"{what}: the epoch of shard {s} must be an int >= 0, got {e!r:.40}")
            out[s] = e
        return out

    # ------------------------------------------------------------ wake-ups
    async def publish(self, topic: str, items: Sequence[str]) -> None:
        """Wake the subscribers of every store on this database: one ``NOTIFY`` per
        payload of at most 7,900 bytes (a JSON array of items), all in one round trip
        on the control connection, never on the writer (``NOTIFY`` in a write
        transaction takes a database-wide lock at commit). An item too large for a
        payload is sent as ``"*"`` (poll now)."""
        if topic not in TOPICS:
            raise InvalidWrite(f"publish topic must be one of {', '.join(TOPICS)}, got {topic!r:.40}")
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise InvalidWrite(f"publish items must be a sequence of str, got {items!r:.80}")
        for item in items:
            if not isinstance(item, str):
                raise InvalidWrite(f"publish items must be str, got {item!r:.40}")
        payloads = _payloads(items)
        if not payloads:
            return

        async def go(db: asyncpg.Connection) -> None:
            await db.execute(
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL_PREFIX + topic, payloads
            )

        await self._ctl_do("publish", go)

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(topic, item)`` on the event loop for every item published by any
        store on this database, this one included, from now on. The store listens from
        the moment it is opened, on one connection for every callback; when it is lost
        it is established again (with backoff) and then every callback gets
        ``(topic, "*")`` for each topic: something may have been missed."""
        if not callable(callback):
            raise TypeError(f"subscribe needs a callable, got {callback!r:.80}")
        if not self._open:
            raise StoreError(f"{self!r} is closed")
        self._callbacks.append(callback)

    def _emit(self, topic: str, item: str) -> None:
        for cb in list(self._callbacks):
            try:
                cb(topic, item)
            except Exception:
                log.exception("a wake-up callback failed (topic %s, item %r)", topic, item[:80])

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        topic = channel.removeprefix(CHANNEL_PREFIX)
        try:
            items = json.loads(payload)
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError(payload[:80])
        except ValueError:
            items = ["*"]  # not one of ours: look anyway
        for item in items:
            self._emit(topic, item)

    async def _listen(self) -> None:
        """Keep one ``LISTEN`` connection; after any loss, reconnect with backoff and say ``*``."""
        delay = 0.05
        missed = False
        while True:
            lost = asyncio.Event()
            try:
                conn = await self._connect()
            except StoreError:
                missed = True
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                conn.add_termination_listener(_setter(lost))
                for t in TOPICS:
                    await conn.add_listener(CHANNEL_PREFIX + t, self._on_notify)
            except (asyncpg.PostgresError, *_CONNECTION_LOST):
                conn.terminate()
                missed = True
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._listener = conn
            self._listening.set()
            delay = 0.05
            if missed:
                self.reconnects += 1
                for t in TOPICS:
                    self._emit(t, "*")
            # a closed socket ends the session at once; a silent network fails the ping
            while not lost.is_set():
                with anyio.move_on_after(_LISTEN_PING):
                    await lost.wait()
                if lost.is_set():
                    break
                try:
                    with anyio.fail_after(_LISTEN_PING):
                        await conn.fetchval("SELECT 1")
                except (TimeoutError, asyncpg.PostgresError, *_CONNECTION_LOST):
                    break
            self._listening.clear()
            self._listener = None
            conn.terminate()
            missed = True

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
        if len(rows) < limit and (rows or after == 0):  # the log's end: the writer need not read it
            self._learn_end(entity_type, entity_id, int(rows[-1][0]) if rows else 0)
        return [StoredEvent(*r) for r in rows]

    def _learn_end(self, entity_type: str, entity_id: str, last: int) -> None:
        """Remember that the entity's log reached ``last`` (the writer checks each commit
        against the end it knows, and reads it only for entities it does not know).

        Events are never deleted, so this is a lower bound of the end: were it stale (an
        owner before this one appended since), the commit would not follow on from it
        and the writer reads the end again before calling it a conflict."""
        key = (entity_type, entity_id)
        per = self._seqs.setdefault(shard_of(entity_type, entity_id, self._shard_count), {})
        known = per.get(key)
        if known is None:
            if self._seq_count >= _SEQ_CACHE:
                return
            self._seq_count += 1
        elif known >= last:
            return
        per[key] = last

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

    async def read_marks(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], ProcessedMark]:
        """The processed marks of several signals, ``(entity_type, entity_id, signal_id)``
        each, in one read: those processed (a signal not processed has no entry)."""
        check_mark_keys(keys)
        if not keys:
            return {}
        rows = await self._read(
            "SELECT p.entity_type, p.entity_id, p.signal_id, p.fingerprint, p.outcome, p.processed_at "
            "FROM processed p JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(t, i, s) "
            "ON p.entity_type = k.t AND p.entity_id = k.i AND p.signal_id = k.s",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        return {(r[0], r[1], r[2]): ProcessedMark(r[2], r[3], r[4], r[5]) for r in rows}

    async def read_inbox(
        self, *, after: int, limit: int, shards: Collection[int] | None = None
    ) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order; with ``shards``,
        only those of entities in these shards."""
        if shards is None:
            rows = await self._read(
                f"SELECT position, {_SIG} FROM inbox WHERE position > $1 ORDER BY position LIMIT $2",
                after,
                _limit(limit),
            )
        else:
            rows = await self._read(
                f"SELECT position, {_SIG} FROM inbox WHERE shard = ANY($3::int[]) AND position > $1 "
                "ORDER BY position LIMIT $2",
                after,
                _limit(limit),
                self._shard_arg(shards, "read_inbox"),
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

    async def read_timers(
        self, *, limit: int, after_due: float = float("-inf"), shards: Collection[int] | None = None
    ) -> list[TimerRecord]:
        """Timers in due order; with ``shards``, only those of entities in these shards."""
        cols = "SELECT entity_type, entity_id, key, handler, args, due_at, every, trace FROM timers "
        order = " ORDER BY due_at, entity_type, entity_id, key LIMIT $2"
        if shards is None:
            rows = await self._read(cols + "WHERE due_at > $1" + order, float(after_due), _limit(limit))
        else:
            rows = await self._read(
                cols + "WHERE shard = ANY($3::int[]) AND due_at > $1" + order,
                float(after_due),
                _limit(limit),
                self._shard_arg(shards, "read_timers"),
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

    async def read_outbox(
        self, *, after: int, limit: int, shards: Collection[int] | None = None
    ) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order; with ``shards``, only
        those whose sender (the entity whose commit wrote them) is in these shards."""
        if shards is None:
            rows = await self._read(
                f"SELECT id, {_SIG} FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
                after,
                _limit(limit),
            )
        else:
            rows = await self._read(
                f"SELECT id, {_SIG} FROM outbox WHERE shard = ANY($3::int[]) AND id > $1 "
                "ORDER BY id LIMIT $2",
                after,
                _limit(limit),
                self._shard_arg(shards, "read_outbox"),
            )
        return [OutboxEntry(r[0], SignalRecord(*r[1:])) for r in rows]

    def _shard_arg(self, shards: object, what: str, *, strict: bool = False) -> list[int]:
        """``shards`` as a list of shard numbers; a number out of range is no shard and is
        dropped (refused when ``strict``); anything but ints is :class:`InvalidWrite`."""
        if isinstance(shards, (str, bytes)) or not isinstance(shards, Collection):
            raise InvalidWrite(f"{what} shards must be a collection of ints or None, got {shards!r:.80}")
        out: list[int] = []
        for s in shards:
            if not isinstance(s, int) or isinstance(s, bool):
                raise InvalidWrite(f"{what}: a shard must be an int, got {s!r:.40}")
            if 0 <= s < self._shard_count:
                out.append(s)
            elif strict:
                raise InvalidWrite(f"{what}: {s} is not a shard (0..{self._shard_count - 1})")
        return out


_ACCEPT_SQL = f"""WITH k AS (
    SELECT * FROM unnest({_SIG_ARRAYS}, $8::bool[], $9::text[], $10::int[])
    WITH ORDINALITY AS k(t, i, s, h, a, f, at, chk, tr, sh, ord)),
d AS (
    SELECT k.ord, p.fingerprint AS pf, p.outcome, p.processed_at, q.fingerprint AS qf
    FROM k LEFT JOIN processed p ON p.entity_type = k.t AND p.entity_id = k.i AND p.signal_id = k.s
    LEFT JOIN inbox q ON q.entity_type = k.t AND q.entity_id = k.i AND q.signal_id = k.s
    WHERE k.chk AND (p.signal_id IS NOT NULL OR q.signal_id IS NOT NULL)),
ins AS (
    INSERT INTO inbox ({_SIG}, shard)
    SELECT t, i, s, h, a, f, at, tr, sh FROM k WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.ord = k.ord)
    ORDER BY k.ord)
SELECT ord, pf, outcome, processed_at, qf FROM d"""


_COMMIT_PARTS: dict[str, tuple[tuple[str, ...], str]] = {
    "ev": (
        ("text", "text", "int8", "text", "int8", "text", "float8"),
        "INSERT INTO events SELECT * FROM unnest({a}) {w}",
    ),
    "mk": (
        ("text", "text", "text", "text", "text", "float8"),
        "INSERT INTO processed SELECT * FROM unnest({a}) {w}",
    ),
    "tk": (
        ("text", "text", "text"),
        "DELETE FROM inbox USING unnest({a}) AS k(t, i, s) WHERE inbox.entity_type = k.t "
        "AND inbox.entity_id = k.i AND inbox.signal_id = k.s {g} RETURNING 1",
    ),
    "jn": (
        ("text", "text", "text"),
        "DELETE FROM journal USING unnest({a}) AS k(t, i, s) WHERE journal.entity_type = k.t "
        "AND journal.entity_id = k.i AND journal.invocation_id = k.s {g}",
    ),
    "dl": (
        ("text", "text", "text", "text", "text", "text", "float8", "text", "text", "text", "int8", "float8"),
        f"INSERT INTO dead_letters ({_SIG}, error, traceback, attempts, failed_at) "
        "SELECT t, i, s, h, a, f, at, tr, err, tb, n, fa FROM unnest({a}) "
        "WITH ORDINALITY AS k(t, i, s, h, a, f, at, tr, err, tb, n, fa, ord) {w} ORDER BY ord",
    ),
    "ts": (
        ("text", "text", "text", "text", "text", "float8", "float8", "text", "int"),
        "INSERT INTO timers (entity_type, entity_id, key, handler, args, due_at, every, trace, shard) "
        "SELECT * FROM unnest({a}) {w} ON CONFLICT (entity_type, entity_id, key) DO UPDATE SET "
        "handler = excluded.handler, args = excluded.args, due_at = excluded.due_at, "
        "every = excluded.every, trace = excluded.trace",
    ),
    "tc": (
        ("text", "text", "text"),
        "DELETE FROM timers USING unnest({a}) AS k(t, i, s) WHERE timers.entity_type = k.t "
        "AND timers.entity_id = k.i AND timers.key = k.s {g}",
    ),
    "ob": (
        ("text", "text", "text", "text", "text", "text", "float8", "text", "int"),
        f"INSERT INTO outbox ({_SIG}, shard) SELECT t, i, s, h, a, f, at, tr, sh FROM unnest({{a}}) "
        "WITH ORDINALITY AS k(t, i, s, h, a, f, at, tr, sh, ord) {w} ORDER BY ord RETURNING id",
    ),
}
"""What a run of commits writes, one data-modifying CTE per table and kind of change,
each on ``unnest`` of its parameter arrays (their types): events, processed marks, the
signals taken from the inbox, finished journals, dead letters, timers set and
cancelled, the outbox (returns its ids). A statement has only the parts with rows:
every part opens its table and indexes, with or without rows (a commit of one event
alone costs about a third less on the server than with all eight)."""


@functools.cache
def _commit_statement(names: tuple[str, ...], *, one: bool) -> str:
    """The statement of a run of commits with the parts ``names``.

    ``one=False``: inside a batch's transaction; returns one row: the outbox ids, and
    how many inbox signals it took (fewer than asked: some were gone, the caller rolls
    back). ``one=True``: the batch's only statement, its own transaction: the fence
    (the touched shards this member owns at the fence's epochs; none without a fence)
    and the inbox signals it takes are read and locked before any row is written, and
    every write is conditioned on both (all shards held, every signal still there); the
    writer's token is upserted with them; returns whether the fence held, the shards it
    found and how many of the signals were there. Its last five parameters: shards,
    epochs, member, writer, token."""
    ctes: list[str] = []
    at = 1
    taken = ""  # the inbox keys' parameters, for the check of one=True
    guard = "AND (SELECT held FROM ok)" if one else ""
    for name in names:
        types, template = _COMMIT_PARTS[name]
        arrays = ", ".join(f"${at + k}::{t}[]" for k, t in enumerate(types))
        if name == "tk":
            taken = arrays
        at += len(types)
        ctes.append(f"{name} AS ({template.format(a=arrays, w=f'WHERE TRUE {guard}', g=guard)})")
    if not one:
        ids = "ARRAY(SELECT id FROM ob)" if "ob" in names else "ARRAY[]::int8[]"
        count = "(SELECT count(*) FROM tk)" if "tk" in names else "0"
        return f"WITH {', '.join(ctes)} SELECT {ids}, {count}"
    sh, ep, member, writer, token = (f"${at + k}" for k in range(5))
    head = [
        f"f AS MATERIALIZED (SELECT s.shard FROM shards s JOIN unnest({sh}::int[], {ep}::int8[]) "
        f"AS h(shard, epoch) ON s.shard = h.shard AND s.epoch = h.epoch WHERE s.owner = {member} "
        "FOR SHARE OF s)",
    ]
    fenced = f"(SELECT count(*) FROM f) = cardinality({sh}::int[])"
    held, found = fenced, "0"
    if taken:  # each inbox row once (IN, not a join: a signal taken twice counts once)
        head.append(
            "tq AS MATERIALIZED (SELECT q.position FROM inbox q WHERE (q.entity_type, q.entity_id, "
            f"q.signal_id) IN (SELECT * FROM unnest({taken})) FOR UPDATE OF q)"
        )
        first = taken.split(", ", 1)[0]
        held += f" AND (SELECT count(*) FROM tq) = cardinality({first})"
        found = "(SELECT count(*) FROM tq)"
    head += [
        f"ok AS MATERIALIZED (SELECT {held} AS held)",
        f"wm AS (INSERT INTO write_marks SELECT {writer}, {token}, {_NOW} WHERE (SELECT held FROM ok) "
        "ON CONFLICT (writer) DO UPDATE SET token = excluded.token, written_at = excluded.written_at)",
    ]
    return f"WITH {', '.join(head + ctes)} SELECT {fenced}, ARRAY(SELECT shard FROM f), {found}"


_FENCE_SQL = """WITH f AS MATERIALIZED (
    SELECT s.shard FROM shards s JOIN unnest($1::int[], $2::int8[]) AS h(shard, epoch)
    ON s.shard = h.shard AND s.epoch = h.epoch
    WHERE s.owner = $3 FOR SHARE OF s)
SELECT pg_current_xact_id()::text, ARRAY(SELECT shard FROM f)"""
"""The fence, in the statement that fetches the transaction id: the touched shards this
member still owns at the fence's epochs, locked FOR SHARE until COMMIT (a claim's UPDATE
waits for it, or skips the row; a claim that committed first is seen, READ COMMITTED
re-reading the newest row version)."""


_CLAIM_SQL = f"""WITH me AS (
    SELECT 1 FROM members WHERE member_id = $1 AND status = 'alive' AND heartbeat_at >= {_NOW} - ttl),
held AS MATERIALIZED (
    SELECT l.classid, l.objid FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())),
gone AS (
    SELECT m.member_id FROM members m
    WHERE m.status = 'alive' AND m.member_id <> $1
    AND (m.heartbeat_at < {_NOW} - m.ttl
         OR (m.lock_key IS NOT NULL AND NOT EXISTS (
             SELECT 1 FROM held WHERE held.classid = ((m.lock_key >> 32) & 4294967295)::oid
             AND held.objid = (m.lock_key & 4294967295)::oid)))
    FOR UPDATE OF m SKIP LOCKED),
dead AS (
    UPDATE members SET status = 'dead' FROM gone WHERE members.member_id = gone.member_id
    RETURNING members.member_id),
cand AS (
    SELECT s.shard FROM shards s
    WHERE s.shard = ANY($2::int[]) AND EXISTS (SELECT 1 FROM me)
    AND (s.owner IS NULL OR s.owner IN (SELECT member_id FROM dead)
         OR s.owner IN (SELECT member_id FROM members WHERE status <> 'alive'))
    FOR UPDATE OF s SKIP LOCKED)
UPDATE shards SET owner = $1, epoch = shards.epoch + 1 FROM cand
WHERE shards.shard = cand.shard RETURNING shards.shard, shards.epoch"""
"""Claim: declare dead the members whose lease ran out (database clock) or whose lock
no session holds, then take the wanted shards that are free or a non-alive member's,
skipping rows another transaction holds."""


def _check_member(member_id: object) -> None:
    if not isinstance(member_id, str) or not member_id or len(member_id) > 200:
        raise InvalidWrite(
            f"a member id must be a non-empty str (at most 200 characters), got {member_id!r:.80}"
        )


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    def done(_conn: object) -> None:
        event.set()

    return done


def _member_key(member_id: str) -> int:
    """The key of a member's session advisory lock (64 bits from its id)."""
    h = hashlib.blake2b(f"durable-actors member\0{member_id}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(h.digest(), "big", signed=True)


def _payloads(items: Sequence[str]) -> list[str]:
    """``items`` as JSON arrays of at most :data:`_PAYLOAD_MAX` bytes each."""
    out: list[str] = []
    chunk: list[str] = []
    size = 2
    for item in dict.fromkeys(items):  # a repeat wakes nobody twice
        enc = json.dumps(item)
        n = len(enc.encode()) + 1
        if n + 2 > _PAYLOAD_MAX:
            item, enc, n = "*", '"*"', 4
        if chunk and size + n > _PAYLOAD_MAX:
            out.append(json.dumps(chunk, separators=(",", ":")))
            chunk, size = [], 2
        chunk.append(item)
        size += n
    if chunk:
        out.append(json.dumps(chunk, separators=(",", ":")))
    return out


def _shard_list(shards: Collection[int]) -> str:
    some = sorted(shards)
    text = ", ".join(str(s) for s in some[:20])
    return text + (f" and {len(some) - 20} more" if len(some) > 20 else "")


async def _reset_reader(conn: asyncpg.Connection) -> None:
    """What a reader connection needs when it goes back to the pool: nothing, unless a
    transaction was left open. Readers change no session state, so asyncpg's default
    reset (``RESET ALL``, ``UNLISTEN *``... one more round trip per read) is skipped."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


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
