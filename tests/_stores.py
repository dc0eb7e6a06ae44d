"""Test support: a PostgreSQL server for the suite, and stores opened by location.

The server is the embedded one (``persistence.pg_embedded``), started once per test
session on a temporary folder and a free port, or an existing one when the
environment variable ``ACTORS_TEST_POSTGRES`` holds a DSN (its user must be allowed
to ``CREATE DATABASE``). Each test gets a database of its own, created empty and
dropped (with its connections) after the test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

from persistence import PostgresStore, SqliteStore, Store
from persistence.pg_embedded import EmbeddedPostgres

ENV = "ACTORS_TEST_POSTGRES"
T = TypeVar("T")
_names = itertools.count(1)


def store_at(where: str | Path) -> Store:
    """A store by location: a ``postgresql://`` DSN or a SQLite file path."""
    text = str(where)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text)
    return SqliteStore(text)


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on its own loop in another thread (safe under any running loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fn())).result()  # type: ignore[arg-type]


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database of the same server."""
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


class PgServer:
    """A server the tests may create databases on (embedded, or given by ``ACTORS_TEST_POSTGRES``)."""

    def __init__(self, admin_dsn: str, embedded: EmbeddedPostgres | None = None) -> None:
        self.admin_dsn = admin_dsn
        self.embedded = embedded

    def sql(self, *statements: str, database: str | None = None) -> None:
        """Run statements (no parameters) on the admin connection or on ``database``."""
        dsn = self.admin_dsn if database is None else with_database(self.admin_dsn, database)

        async def go() -> None:
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                for s in statements:
                    await conn.execute(s)
            finally:
                await conn.close()

        _run(go)

    def create_database(self) -> tuple[str, str]:
        """A new empty database: (name, dsn)."""
        name = f"actors_test_{os.getpid()}_{next(_names)}"
        self.sql(f'CREATE DATABASE "{name}"')
        return name, with_database(self.admin_dsn, name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` and end its sessions (a killed worker's may linger)."""
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_server() -> PgServer:
    """The session's server: ``ACTORS_TEST_POSTGRES`` or a fresh embedded one."""
    dsn = os.environ.get(ENV, "").strip()
    if dsn:
        return PgServer(dsn)
    server = EmbeddedPostgres()
    server.start()
    return PgServer(server.dsn(), server)


def sql_at(where: str | Path, query_text: str) -> list[tuple[object, ...]]:
    """Run one parameterless statement on a store's database (SQLite file or DSN)."""
    text = str(where)
    if not text.startswith(("postgresql://", "postgres://")):
        import contextlib
        import sqlite3

        with contextlib.closing(sqlite3.connect(text)) as db:
            rows = db.execute(query_text).fetchall()
            db.commit()
            return rows

    async def go() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(text, timeout=10)
        try:
            return [tuple(r) for r in await conn.fetch(query_text)]
        finally:
            await conn.close()

    return _run(go)
