"""PostgreSQL for the benchmarks: where a case's database lives, and raw insert floors.

``python -m bench`` starts one embedded server for the whole run (or uses
``--dsn`` / ``$ACTORS_POSTGRES_DSN``) and hands its admin DSN to every case's child
process in ``$BENCH_PG_DSN``. A case running on PostgreSQL gets a fresh database
per repetition, dropped afterwards, as a SQLite case gets a fresh file.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from bench.common import Metrics, Params, latency_metrics

ENV = "BENCH_PG_DSN"
_names = itertools.count(1)


def admin_dsn() -> str:
    """The server's admin DSN given by the parent (RuntimeError if there is none)."""
    dsn = os.environ.get(ENV, "")
    if not dsn:
        raise RuntimeError(f"no PostgreSQL server for this case: ${ENV} is not set (use python -m bench)")
    return dsn


def _with_db(dsn: str, name: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(dsn)._replace(path="/" + name))


async def _admin(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn())
    try:
        for s in statements:
            await conn.execute(s)
    finally:
        await conn.close()


def create_database(template: str | None = None) -> tuple[str, str]:
    """A new database (a copy of ``template`` if given): (name, dsn)."""
    name = f"bench_{os.getpid()}_{next(_names)}"
    tpl = f' TEMPLATE "{template}"' if template else ""
    asyncio.run(_admin(f'CREATE DATABASE "{name}"{tpl}'))
    return name, _with_db(admin_dsn(), name)


def drop_database(name: str) -> None:
    """Drop a database made by :func:`create_database` (ending its sessions)."""
    with contextlib.suppress(Exception):
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def drop_at_exit(name: str) -> None:
    """Drop ``name`` when this process ends (for databases cached across repetitions)."""
    atexit.register(drop_database, name)


@contextlib.contextmanager
def location(store: str, folder: Path, filename: str) -> Iterator[str]:
    """Where a case keeps its data: a SQLite file in ``folder`` or a fresh PostgreSQL database."""
    if store != "postgres":
        yield str(folder / filename)
        return
    name, dsn = create_database()
    try:
        yield dsn
    finally:
        drop_database(name)


def database_of(dsn: str) -> str:
    """The database name in a DSN."""
    return urllib.parse.urlsplit(dsn).path.lstrip("/")


# ---------------------------------------------------------------- raw insert floors


_TABLE = (
    "CREATE TABLE events (entity_type text NOT NULL, entity_id text NOT NULL, seq bigint NOT NULL, "
    "type_name text NOT NULL, version bigint NOT NULL, data text NOT NULL, "
    "recorded_at double precision NOT NULL, PRIMARY KEY (entity_type, entity_id, seq))"
)


async def _asyncpg_floor(p: Params, dsn: str) -> Metrics:
    import asyncpg

    rows, per_txn, explicit = int(p["rows"]), int(p["per_txn"]), bool(p.get("explicit", False))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_TABLE)
        data = '{"amount":1,"memo":"a deposit of about sixty bytes of JSON"}'
        now = time.time()
        one = "INSERT INTO events VALUES ($1, $2, $3, 'bank.Deposited', 1, $4, $5)"
        many = (
            "INSERT INTO events SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], "
            "$5::int8[], $6::text[], $7::float8[])"
        )
        lat: list[int] = []
        seqs: dict[int, int] = {}

        def key(i: int) -> tuple[str, int]:  # spread over 1,000 entities, like the notes' runs
            e = i % 1000
            seqs[e] = seqs.get(e, 0) + 1
            return f"acc-{e}", seqs[e]

        start = time.perf_counter()
        i = 0
        while i < rows:
            t0 = time.perf_counter_ns()
            if per_txn == 1:
                eid, seq = key(i)
                if explicit:
                    async with conn.transaction():
                        await conn.execute(one, "Account", eid, seq, data, now)
                else:
                    await conn.execute(one, "Account", eid, seq, data, now)
                i += 1
            else:
                k = min(per_txn, rows - i)
                keys = [key(i + j) for j in range(k)]
                async with conn.transaction():
                    await conn.execute(
                        many,
                        ["Account"] * k,
                        [e for e, _ in keys],
                        [s for _, s in keys],
                        ["bank.Deposited"] * k,
                        [1] * k,
                        [data] * k,
                        [now] * k,
                    )
                i += k
            lat.append(time.perf_counter_ns() - t0)
        secs = time.perf_counter() - start
        count = await conn.fetchval("SELECT count(*) FROM events")
        if count != rows:
            raise AssertionError(f"asyncpg floor: {count} rows stored, not {rows}")
    finally:
        await conn.close()
    return {"ops_per_s": rows / secs, **latency_metrics(lat)}


def asyncpg_insert(p: Params) -> Metrics:
    """Raw asyncpg inserts into an events-like table, ``per_txn`` rows per transaction."""
    name, dsn = create_database()
    try:
        return asyncio.run(_asyncpg_floor(p, dsn))
    finally:
        drop_database(name)
