"""Read-only inspection of a store's data, safe while a running system owns it.

:class:`Inspector` is the small protocol of reads the ``actors`` inspection
commands and the web UI need; :class:`SqliteInspector` implements it on a SQLite
file. It never takes the store's lock file, never creates or changes the database
(a missing file is :class:`DatabaseNotFound`), and reads through a read-only
connection (``mode=ro``), so it works beside a system that holds the file open in
WAL mode, in this process or another. :class:`PostgresInspector` implements the
same protocol on a PostgreSQL database (asyncpg, a session whose transactions are
read-only). :func:`inspector_for` picks one by the source: a ``postgresql://`` DSN
or a file path.

Payloads are returned as stored (JSON text); decoding them into entity classes is
the job of :mod:`actors.inspect`.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import aiosqlite
import anyio
import attrs

try:
    import asyncpg
except ImportError:  # pragma: no cover - the 'postgres' extra is missing: PostgresInspector() says so
    asyncpg = None

from persistence.errors import DatabaseNotFound, NotOurDatabase, StoreError
from persistence.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION
from persistence.postgres import redact as _redact
from persistence.postgres import translate as _translate
from persistence.sqlite import APPLICATION, NOW_SQL, SCHEMA_VERSION, translate
from persistence.store import (
    DeadLetter,
    InboxEntry,
    JournalEntry,
    OutboxEntry,
    SignalRecord,
    SnapshotRecord,
    StoredEvent,
    TimerRecord,
)

__all__ = [
    "DatabaseNotFound",
    "EntitySummary",
    "Inspector",
    "Members",
    "PostgresInspector",
    "SqliteInspector",
    "inspector_for",
    "is_dsn",
]

_SIG_COLS = "entity_type, entity_id, signal_id, handler, args, fingerprint, accepted_at"


@attrs.frozen
class EntitySummary:
    """An entity that has a history in the store."""

    entity_type: str
    """Stable name of the entity type."""
    entity_id: str
    """The entity's id."""
    last_seq: int
    """Sequence of its newest event."""
    updated_at: float
    """When its newest event was recorded (Unix seconds)."""


@attrs.frozen
class Members:
    """The members of a cluster on this store; ``clustered`` is False for a single owner."""

    clustered: bool
    """Whether a member ever joined the store (it has a membership table with rows)."""
    rows: tuple[dict[str, object], ...] = ()
    """One record per member, alive first, then by latest heartbeat (the same shape for
    every store): ``member_id``,
    ``name``, ``serves``, ``status``, ``ttl``, ``joined_at``, ``heartbeat_at`` (Unix
    seconds by the database's clock), ``seen_ago`` (seconds since that heartbeat, by
    the database's clock now), ``shards`` (how many it owns) and ``owns`` (which, as
    ranges like ``0-63,128``)."""
    shards: tuple[dict[str, object], ...] = ()
    """The shard map: ``shard``, ``owner`` (a member id or None) and ``epoch``."""


@runtime_checkable
class Inspector(Protocol):
    """Reads of a store for people and tools; never writes, never takes ownership.

    An async context manager: entering opens it, leaving closes it. Every ``limit``
    bounds a list; lists come in a stable order so a caller can page with ``after``.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def entity_types(self) -> list[str]:
        """Names of the entity types that have events, sorted."""
        ...

    async def entities(
        self, entity_type: str | None = None, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[EntitySummary]:
        """Entities with events (of one type, or all), ordered by (type, id), after ``after``."""
        ...

    async def read_events(
        self, entity_type: str, entity_id: str, *, after: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` events of one entity with ``seq > after``, in order."""
        ...

    async def read_snapshots(self, entity_type: str, entity_id: str) -> list[SnapshotRecord]:
        """The entity's snapshots, newest first."""
        ...

    async def last_seq(self, entity_type: str, entity_id: str) -> int:
        """The sequence of the entity's newest event (0 when it has none)."""
        ...

    async def read_inbox(self, *, after: int = 0, limit: int = 1000) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order."""
        ...

    async def read_outbox(self, *, after: int = 0, limit: int = 1000) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order."""
        ...

    async def read_dead_letters(self, *, after: int = 0, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters with ``id > after``, oldest first."""
        ...

    async def read_timers(self, *, limit: int = 1000) -> list[TimerRecord]:
        """Durable timers in due order."""
        ...

    async def read_journals(self, *, limit: int = 10_000) -> list[JournalEntry]:
        """Journaled steps of every unfinished invocation, by entity, invocation and step."""
        ...

    async def members(self) -> Members:
        """The cluster's members (``clustered=False`` while the store has one owner)."""
        ...


def _check_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, got {limit!r}")
    return limit


def _sig(row: Sequence[object]) -> SignalRecord:
    return SignalRecord(*row)  # type: ignore[arg-type]


class SqliteInspector:
    """Read-only inspection of a SQLite store file, beside its running owner or not.

    ``SqliteInspector(path)`` checks nothing until entered; entering raises
    :class:`DatabaseNotFound` for a missing file, :class:`NotOurDatabase` for a file
    that is not a database of this framework, :class:`StoreError` otherwise.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        if not isinstance(path, (str, os.PathLike)) or not str(path) or str(path) == ":memory:":
            raise ValueError(f"SqliteInspector needs the path of a database file, got {path!r}")
        if not isinstance(busy_timeout, (int, float)) or busy_timeout < 0:
            raise ValueError(f"busy_timeout must be seconds >= 0, got {busy_timeout!r}")
        self.path = Path(path)
        self._busy_ms = int(busy_timeout * 1000)
        self._conn: aiosqlite.Connection | None = None
        self._tables: set[str] = set()

    def __repr__(self) -> str:
        return f"SqliteInspector({str(self.path)!r})"

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._conn is not None:
            raise StoreError(f"{self!r} is already open")
        p = self.path
        if p.is_dir():
            raise StoreError(f"{p} is a directory, not a database file")
        if not p.is_file():
            raise DatabaseNotFound(f"no database at {p} (nothing was created; check the path)")
        uri = f"file:{urllib.parse.quote(str(p.resolve()))}?mode=ro"
        try:
            conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as e:
            raise translate(e, f"cannot open {p} read-only") from e
        try:
            await conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            await conn.execute("PRAGMA query_only = 1")
            self._conn = conn
            await self._check_ours()
        except BaseException as e:
            self._conn = None
            await conn.close()
            if isinstance(e, sqlite3.Error):
                raise translate(e, f"cannot open {p} read-only") from e
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _check_ours(self) -> None:
        rows = await self._read("SELECT name FROM sqlite_master WHERE type = 'table'", ())
        self._tables = {r[0] for r in rows}
        if "actors_meta" not in self._tables:
            raise NotOurDatabase(f"{self.path} is not a {APPLICATION} database")
        meta = {r[0]: r[1] for r in await self._read("SELECT key, value FROM actors_meta", ())}
        if meta.get("application") != APPLICATION:
            raise NotOurDatabase(f"{self.path} belongs to {meta.get('application')!r}")
        version = str(meta.get("schema_version", ""))
        if not version.isdecimal() or not 1 <= int(version) <= SCHEMA_VERSION:
            raise NotOurDatabase(
                f"{self.path} has schema version {version!r}; this code reads 1 to {SCHEMA_VERSION}"
            )

    async def _read(self, sql: str, params: Sequence[object]) -> Iterable[sqlite3.Row]:
        if self._conn is None:
            raise StoreError(f"{self!r} is not open (use it with async with)")
        try:
            return await self._conn.execute_fetchall(sql, params)
        except sqlite3.Error as e:
            raise translate(e, f"read {self.path}") from e

    # ------------------------------------------------------------ entities
    async def entity_types(self) -> list[str]:
        """Names of the entity types that have events, sorted."""
        rows = await self._read("SELECT DISTINCT entity_type FROM events ORDER BY entity_type", ())
        return [r[0] for r in rows]

    async def entities(
        self, entity_type: str | None = None, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[EntitySummary]:
        """Entities with events (of one type, or all), ordered by (type, id), after ``after``."""
        _check_limit(limit)
        where, params = ["1"], []
        if entity_type is not None:
            where.append("entity_type = ?")
            params.append(entity_type)
        if after is not None:
            where.append("(entity_type, entity_id) > (?, ?)")
            params.extend(after)
        rows = await self._read(
            "SELECT entity_type, entity_id, max(seq), max(recorded_at) FROM events "
            f"WHERE {' AND '.join(where)} GROUP BY entity_type, entity_id "
            "ORDER BY entity_type, entity_id LIMIT ?",
            (*params, limit),
        )
        return [EntitySummary(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    async def read_events(
        self, entity_type: str, entity_id: str, *, after: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` events of one entity with ``seq > after``, in order."""
        rows = await self._read(
            "SELECT seq, type_name, version, data, recorded_at FROM events "
            "WHERE entity_type = ? AND entity_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (entity_type, entity_id, after, _check_limit(limit)),
        )
        return [StoredEvent(*r) for r in rows]

    async def read_snapshots(self, entity_type: str, entity_id: str) -> list[SnapshotRecord]:
        """The entity's snapshots, newest first."""
        rows = await self._read(
            "SELECT seq, schema, state, taken_at FROM snapshots "
            "WHERE entity_type = ? AND entity_id = ? ORDER BY seq DESC",
            (entity_type, entity_id),
        )
        return [SnapshotRecord(entity_type, entity_id, r[0], r[1], r[2], r[3]) for r in rows]

    async def last_seq(self, entity_type: str, entity_id: str) -> int:
        """The sequence of the entity's newest event (0 when it has none)."""
        rows = await self._read(
            "SELECT max(seq) FROM events WHERE entity_type = ? AND entity_id = ?",
            (entity_type, entity_id),
        )
        return next((int(r[0] or 0) for r in rows), 0)

    # ------------------------------------------------------------ queues
    async def read_inbox(self, *, after: int = 0, limit: int = 1000) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order."""
        rows = await self._read(
            f"SELECT position, {_SIG_COLS} FROM inbox WHERE position > ? ORDER BY position LIMIT ?",
            (after, _check_limit(limit)),
        )
        return [InboxEntry(r[0], _sig(r[1:])) for r in rows]

    async def read_outbox(self, *, after: int = 0, limit: int = 1000) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order."""
        rows = await self._read(
            f"SELECT id, {_SIG_COLS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, _check_limit(limit)),
        )
        return [OutboxEntry(r[0], _sig(r[1:])) for r in rows]

    async def read_dead_letters(self, *, after: int = 0, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters with ``id > after``, oldest first."""
        rows = await self._read(
            f"SELECT id, {_SIG_COLS}, error, traceback, attempts, failed_at FROM dead_letters "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after, _check_limit(limit)),
        )
        return [DeadLetter(r[0], _sig(r[1:8]), r[8], r[9], r[10], r[11]) for r in rows]

    async def read_timers(self, *, limit: int = 1000) -> list[TimerRecord]:
        """Durable timers in due order."""
        rows = await self._read(
            "SELECT entity_type, entity_id, key, handler, args, due_at, every FROM timers "
            "ORDER BY due_at, entity_type, entity_id, key LIMIT ?",
            (_check_limit(limit),),
        )
        return [TimerRecord(*r) for r in rows]

    async def read_journals(self, *, limit: int = 10_000) -> list[JournalEntry]:
        """Journaled steps of every unfinished invocation, by entity, invocation and step."""
        rows = await self._read(
            "SELECT entity_type, entity_id, invocation_id, step, kind, name, result, recorded_at "
            "FROM journal ORDER BY entity_type, entity_id, invocation_id, step LIMIT ?",
            (_check_limit(limit),),
        )
        return [JournalEntry(*r) for r in rows]

    async def members(self) -> Members:
        """The cluster's members and the shard map (``clustered=False`` while no member
        ever joined: the store has had one owner)."""
        if not {"members", "shards"} <= self._tables:
            return Members(False)
        rows = list(
            await self._read(
                "SELECT member_id, name, serves, status, ttl, joined_at, heartbeat_at, "
                f"max(0.0, {NOW_SQL} - heartbeat_at) FROM members "
                "ORDER BY status <> 'alive', heartbeat_at DESC, member_id",
                (),
            )
        )
        if not rows:
            return Members(False)
        shards = await self._read("SELECT shard, owner, epoch FROM shards ORDER BY shard", ())
        return _members(rows, shards)


def _ranges(shards: list[int]) -> str:
    """Sorted shard numbers as ranges: ``[0, 1, 2, 5]`` -> ``0-2,5``."""
    runs: list[list[int]] = []
    for s in shards:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _members(rows: Iterable[Sequence[Any]], shard_rows: Iterable[Sequence[Any]]) -> Members:
    """The :class:`Members` record of member rows (``member_id, name, serves, status, ttl,
    joined_at, heartbeat_at, seen_ago``) and shard rows (``shard, owner, epoch``)."""
    shards = [(int(r[0]), r[1], int(r[2])) for r in shard_rows]
    owned: dict[object, list[int]] = {}
    for shard, owner, _ in shards:
        owned.setdefault(owner, []).append(shard)
    members = tuple(
        {
            "member_id": r[0],
            "name": r[1],
            "serves": bool(r[2]),
            "status": r[3],
            "ttl": float(r[4]),
            "joined_at": float(r[5]),
            "heartbeat_at": float(r[6]),
            "seen_ago": round(max(0.0, float(r[7])), 3),
            "shards": len(owned.get(r[0], ())),
            "owns": _ranges(owned.get(r[0], [])),
        }
        for r in rows
    )
    return Members(True, members, tuple({"shard": s, "owner": o, "epoch": e} for s, o, e in shards))


def is_dsn(source: object) -> bool:
    """Whether ``source`` names a PostgreSQL database (a ``postgresql://`` or
    ``postgres://`` URL) rather than a SQLite file."""
    return isinstance(source, str) and source.startswith(("postgresql://", "postgres://"))


def inspector_for(source: str | os.PathLike[str]) -> SqliteInspector | PostgresInspector:
    """The read-only inspector of ``source``: :class:`PostgresInspector` for a
    ``postgresql://`` DSN, :class:`SqliteInspector` for a file path (nothing is opened
    until it is entered)."""
    if is_dsn(source):
        return PostgresInspector(str(source))
    return SqliteInspector(source)


_PG_NOW = "extract(epoch FROM clock_timestamp())::float8"
"""The database's clock in Unix seconds (as the store measures heartbeats)."""


class PostgresInspector:
    """Read-only inspection of a PostgreSQL store, beside its running members or not.

    ``PostgresInspector(dsn)`` connects when entered, with one session whose every
    transaction is read-only (``default_transaction_read_only``), so it can neither
    create nor change anything. Entering raises :class:`DatabaseNotFound` when the
    server has no such database, :class:`NotOurDatabase` for a database without this
    framework's schema (an empty one included: nothing is created), and another
    :class:`StoreError` (``StoreUnavailable`` for an unreachable server) otherwise.
    """

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0, statement_timeout: float = 60.0) -> None:
        if asyncpg is None:  # pragma: no cover - depends on the installed extras
            raise StoreError("PostgresInspector needs asyncpg: pip install 'durable-actors[postgres]'")
        if not is_dsn(dsn):
            raise ValueError(f"PostgresInspector needs a postgresql:// DSN, got {_redact(dsn)!r:.80}")
        for name, t in (("connect_timeout", connect_timeout), ("statement_timeout", statement_timeout)):
            if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 < t < 86_400:
                raise ValueError(f"{name} must be seconds > 0 (below a day), got {t!r}")
        self.dsn = dsn
        self._connect_timeout = float(connect_timeout)
        self._settings = {
            "application_name": "actors-inspect",
            "default_transaction_read_only": "on",
            "statement_timeout": str(max(1, int(statement_timeout * 1000))),
        }
        self._conn: Any = None
        self._tables: set[str] = set()

    def __repr__(self) -> str:
        return f"PostgresInspector({_redact(self.dsn)!r})"

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._conn is not None:
            raise StoreError(f"{self!r} is already open")
        where = _redact(self.dsn)
        try:
            conn = await asyncpg.connect(
                self.dsn, timeout=self._connect_timeout, server_settings=self._settings
            )
        except asyncpg.exceptions.InvalidCatalogNameError as e:
            raise DatabaseNotFound(
                f"no database {_database(self.dsn)!r} on the server of {where} (nothing was created; "
                "check the DSN)"
            ) from e
        except ValueError as e:
            if isinstance(e, UnicodeError):
                raise _translate(e, f"cannot connect to {where}") from e
            raise StoreError(f"cannot connect to {where}: bad dsn ({e})") from e
        except _PG_ERRORS as e:
            raise _translate(e, f"cannot connect to {where}") from e
        try:
            self._conn = conn
            await self._check_ours()
        except BaseException:
            self._conn = None
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await conn.close()
            conn.terminate()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await conn.close()
            conn.terminate()

    async def _check_ours(self) -> None:
        where = _redact(self.dsn)
        rows = await self._read(
            "SELECT c.relname FROM pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND c.relnamespace = current_schema()::regnamespace"
        )
        self._tables = {r[0] for r in rows}
        if "actors_meta" not in self._tables:
            what = (
                "is empty"
                if not self._tables
                else f"holds other tables ({', '.join(sorted(self._tables)[:5])})"
            )
            raise NotOurDatabase(
                f"{where} is not a {APPLICATION} database: it {what} (nothing was created; "
                "a system makes the schema when it first opens the database)"
            )
        meta = {r[0]: r[1] for r in await self._read("SELECT key, value FROM actors_meta")}
        if meta.get("application") != APPLICATION:
            raise NotOurDatabase(f"{where} belongs to {meta.get('application')!r}")
        version = str(meta.get("schema_version", ""))
        if not version.isdecimal() or not 1 <= int(version) <= PG_SCHEMA_VERSION:
            raise NotOurDatabase(
                f"{where} has schema version {version!r:.40}; this code reads 1 to {PG_SCHEMA_VERSION}"
            )

    async def _read(self, sql: str, *params: object) -> list[Any]:
        if self._conn is None:
            raise StoreError(f"{self!r} is not open (use it with async with)")
        try:
            rows: list[Any] = await self._conn.fetch(sql, *params)
        except _PG_READ_ERRORS as e:
            raise _translate(e, f"read {_redact(self.dsn)}") from e
        return rows

    # ------------------------------------------------------------ entities
    async def entity_types(self) -> list[str]:
        """Names of the entity types that have events, sorted."""
        rows = await self._read("SELECT DISTINCT entity_type FROM events ORDER BY entity_type")
        return [r[0] for r in rows]

    async def entities(
        self, entity_type: str | None = None, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[EntitySummary]:
        """Entities with events (of one type, or all), ordered by (type, id), after ``after``."""
        _check_limit(limit)
        where: list[str] = ["true"]
        params: list[object] = []
        if entity_type is not None:
            params.append(entity_type)
            where.append(f"entity_type = ${len(params)}")
        if after is not None:
            params.extend(after)
            where.append(f"(entity_type, entity_id) > (${len(params) - 1}, ${len(params)})")
        params.append(limit)
        rows = await self._read(
            "SELECT entity_type, entity_id, max(seq), max(recorded_at) FROM events "
            f"WHERE {' AND '.join(where)} GROUP BY entity_type, entity_id "
            f"ORDER BY entity_type, entity_id LIMIT ${len(params)}",
            *params,
        )
        return [EntitySummary(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    async def read_events(
        self, entity_type: str, entity_id: str, *, after: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` events of one entity with ``seq > after``, in order."""
        rows = await self._read(
            "SELECT seq, type_name, version, data, recorded_at FROM events "
            "WHERE entity_type = $1 AND entity_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            entity_type,
            entity_id,
            after,
            _check_limit(limit),
        )
        return [StoredEvent(*r) for r in rows]

    async def read_snapshots(self, entity_type: str, entity_id: str) -> list[SnapshotRecord]:
        """The entity's snapshots, newest first."""
        rows = await self._read(
            "SELECT seq, schema, state, taken_at FROM snapshots "
            "WHERE entity_type = $1 AND entity_id = $2 ORDER BY seq DESC",
            entity_type,
            entity_id,
        )
        return [SnapshotRecord(entity_type, entity_id, r[0], r[1], r[2], r[3]) for r in rows]

    async def last_seq(self, entity_type: str, entity_id: str) -> int:
        """The sequence of the entity's newest event (0 when it has none)."""
        rows = await self._read(
            "SELECT max(seq) FROM events WHERE entity_type = $1 AND entity_id = $2", entity_type, entity_id
        )
        return int(rows[0][0] or 0)

    # ------------------------------------------------------------ queues
    async def read_inbox(self, *, after: int = 0, limit: int = 1000) -> list[InboxEntry]:
        """Pending signals with ``position > after``, in acceptance order."""
        rows = await self._read(
            f"SELECT position, {_SIG_COLS} FROM inbox WHERE position > $1 ORDER BY position LIMIT $2",
            after,
            _check_limit(limit),
        )
        return [InboxEntry(r[0], _sig(r[1:])) for r in rows]

    async def read_outbox(self, *, after: int = 0, limit: int = 1000) -> list[OutboxEntry]:
        """Undelivered outbox messages with ``id > after``, in order."""
        rows = await self._read(
            f"SELECT id, {_SIG_COLS} FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
            after,
            _check_limit(limit),
        )
        return [OutboxEntry(r[0], _sig(r[1:])) for r in rows]

    async def read_dead_letters(self, *, after: int = 0, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters with ``id > after``, oldest first."""
        rows = await self._read(
            f"SELECT id, {_SIG_COLS}, error, traceback, attempts, failed_at FROM dead_letters "
            "WHERE id > $1 ORDER BY id LIMIT $2",
            after,
            _check_limit(limit),
        )
        return [DeadLetter(r[0], _sig(r[1:8]), r[8], r[9], r[10], r[11]) for r in rows]

    async def read_timers(self, *, limit: int = 1000) -> list[TimerRecord]:
        """Durable timers in due order."""
        rows = await self._read(
            "SELECT entity_type, entity_id, key, handler, args, due_at, every FROM timers "
            "ORDER BY due_at, entity_type, entity_id, key LIMIT $1",
            _check_limit(limit),
        )
        return [TimerRecord(*r) for r in rows]

    async def read_journals(self, *, limit: int = 10_000) -> list[JournalEntry]:
        """Journaled steps of every unfinished invocation, by entity, invocation and step."""
        rows = await self._read(
            "SELECT entity_type, entity_id, invocation_id, step, kind, name, result, recorded_at "
            "FROM journal ORDER BY entity_type, entity_id, invocation_id, step LIMIT $1",
            _check_limit(limit),
        )
        return [JournalEntry(*r) for r in rows]

    async def members(self) -> Members:
        """The cluster's members and the shard map (``clustered=False`` while no member
        ever joined, or on a database older than schema version 4)."""
        if not {"members", "shards"} <= self._tables:
            return Members(False)
        rows = await self._read(
            "SELECT member_id, name, serves, status, ttl, joined_at, heartbeat_at, "
            f"{_PG_NOW} - heartbeat_at FROM members "
            "ORDER BY status <> 'alive', heartbeat_at DESC, member_id"
        )
        if not rows:
            return Members(False)
        return _members(rows, await self._read("SELECT shard, owner, epoch FROM shards ORDER BY shard"))


_PG_ERRORS: tuple[type[BaseException], ...] = (
    (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
    if asyncpg is not None
    else (OSError, TimeoutError)
)
"""What asyncpg raises for a refused, failed or lost connection or statement."""
_PG_READ_ERRORS: tuple[type[BaseException], ...] = (*_PG_ERRORS, UnicodeError)


def _database(dsn: str) -> str:
    return urllib.parse.urlsplit(dsn).path.lstrip("/") or "?"
