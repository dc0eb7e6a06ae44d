"""The same workloads on peers: floors without durability, raw SQLite, other libraries.

Each function is one run, like those of :mod:`bench.ours`. A peer library that is
not installed (or cannot run here) raises :class:`bench.common.Skip` with the
reason, which the table shows instead of a figure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from bench.common import Metrics, Params, Skip, latency_metrics, scratch_dir

# ---------------------------------------------------------------- floors


async def _asyncio_floor(p: Params) -> Metrics:
    accounts, n, inflight = int(p["accounts"]), int(p["ops"]), int(p["inflight"])
    loop = asyncio.get_running_loop()
    queues: list[asyncio.Queue[tuple[int, asyncio.Future[int]]]] = [asyncio.Queue() for _ in range(accounts)]

    async def actor(q: asyncio.Queue[tuple[int, asyncio.Future[int]]]) -> None:
        balance = 0
        while True:
            amount, fut = await q.get()
            balance += amount
            fut.set_result(balance)

    tasks = [asyncio.create_task(actor(q)) for q in queues]
    lat = [0] * n
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter_ns()
            fut: asyncio.Future[int] = loop.create_future()
            queues[i % accounts].put_nowait((1, fut))
            await fut
            lat[i] = time.perf_counter_ns() - t0

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(inflight, n))))
    secs = time.perf_counter() - start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"ops_per_s": n / secs, **latency_metrics(lat)}


def asyncio_ask(p: Params) -> Metrics:
    """A queue and a task per actor, ask = put (message, future) and await it; no disk."""
    return asyncio.run(_asyncio_floor(p))


_FLOOR_TABLE = (
    "CREATE TABLE events (entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, "
    "seq INTEGER NOT NULL, type_name TEXT NOT NULL, version INTEGER NOT NULL, "
    "data TEXT NOT NULL, recorded_at REAL NOT NULL, "
    "PRIMARY KEY (entity_type, entity_id, seq)) WITHOUT ROWID"
)
"""The raw floors' table: our events table's columns and key."""
_FLOOR_INSERT = "INSERT INTO events VALUES (?, ?, ?, 'bench.Deposited', 1, ?, ?)"


def _floor_rows(rows: int) -> list[tuple[str, str, int, str, float]]:
    """Event-like rows (~60 bytes of data and key) spread over 1,000 entities."""
    now = time.time()
    return [("Account", f"acc-{i % 1000}", i, '{"amount":1}', now) for i in range(rows)]


async def _aiosqlite_floor(p: Params) -> Metrics:
    try:
        import aiosqlite
    except ImportError as e:  # pragma: no cover - a core dependency
        raise Skip(f"aiosqlite is not importable: {e}") from e
    rows, per_txn = int(p["rows"]), int(p["per_txn"])
    sync = str(p.get("synchronous", "NORMAL"))
    explicit = bool(p.get("explicit", False))
    with scratch_dir() as d:
        async with aiosqlite.connect(d / "floor.db", isolation_level=None) as db:
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(f"PRAGMA synchronous = {sync}")
            await db.execute(_FLOOR_TABLE)
            sql = _FLOOR_INSERT
            all_rows = _floor_rows(rows)
            lat: list[int] = []
            start = time.perf_counter()
            for first in range(0, rows, per_txn):
                t0 = time.perf_counter_ns()
                if per_txn == 1 and not explicit:
                    # Autocommit: the INSERT is its own transaction, one round trip.
                    await db.execute(sql, all_rows[first])
                else:
                    await db.execute("BEGIN IMMEDIATE")
                    await db.executemany(sql, all_rows[first : first + per_txn])
                    await db.execute("COMMIT")
                lat.append(time.perf_counter_ns() - t0)
            secs = time.perf_counter() - start
    return {"ops_per_s": rows / secs, **latency_metrics(lat)}


def aiosqlite_insert(p: Params) -> Metrics:
    """Raw aiosqlite inserts into an events-like table, ``per_txn`` rows per transaction."""
    return asyncio.run(_aiosqlite_floor(p))


def sqlite3_insert(p: Params) -> Metrics:
    """Raw stdlib ``sqlite3`` inserts on the calling thread, ``per_txn`` rows per transaction.

    The issue-16 floor: the same event-like rows and primary key as the aiosqlite floor,
    spread over 1,000 entities, with no thread hop and no event loop in between.
    """
    import sqlite3

    rows, per_txn = int(p["rows"]), int(p["per_txn"])
    sync = str(p.get("synchronous", "NORMAL"))
    with scratch_dir() as d:
        db = sqlite3.connect(d / "floor.db", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {sync}")
            db.execute(_FLOOR_TABLE)
            all_rows = _floor_rows(rows)
            lat: list[int] = []
            start = time.perf_counter()
            for first in range(0, rows, per_txn):
                t0 = time.perf_counter_ns()
                db.execute("BEGIN IMMEDIATE")
                db.executemany(_FLOOR_INSERT, all_rows[first : first + per_txn])
                db.execute("COMMIT")
                lat.append(time.perf_counter_ns() - t0)
            secs = time.perf_counter() - start
        finally:
            db.close()
    return {"ops_per_s": rows / secs, **latency_metrics(lat)}


# ---------------------------------------------------------------- pykka


def pykka_ask(p: Params) -> Metrics:
    """A pykka ThreadingActor per account; asks kept ``inflight`` outstanding; no disk."""
    try:
        import pykka
    except ImportError as e:
        raise Skip(f"pykka is not installed ({e}); pip install -e '.[bench]'") from e
    accounts, n, inflight = int(p["accounts"]), int(p["ops"]), int(p["inflight"])

    class AccountActor(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.balance = 0

        def on_receive(self, message: Any) -> Any:
            self.balance += int(message)
            return self.balance

    refs = [AccountActor.start() for _ in range(accounts)]
    try:
        window: collections.deque[tuple[int, Any]] = collections.deque()
        lat: list[int] = []
        start = time.perf_counter()
        for i in range(n):
            if len(window) >= inflight:
                t0, fut = window.popleft()
                fut.get()
                lat.append(time.perf_counter_ns() - t0)
            window.append((time.perf_counter_ns(), refs[i % accounts].ask(1, block=False)))
        while window:
            t0, fut = window.popleft()
            fut.get()
            lat.append(time.perf_counter_ns() - t0)
        secs = time.perf_counter() - start
        total = sum(int(cast(int, r.ask(0))) for r in refs)
    finally:
        pykka.ActorRegistry.stop_all()
    if total != n:
        raise AssertionError("pykka: balances do not add up")
    return {"ops_per_s": n / secs, **latency_metrics(lat)}


# ---------------------------------------------------------------- eventsourcing


_ES_CLASSES: list[tuple[type[Any], type[Any]]] = []


def _es_classes() -> tuple[type[Any], type[Any]]:
    """The Account aggregate and its application, defined once (eventsourcing keys topics)."""
    if not _ES_CLASSES:
        try:
            from eventsourcing.application import Application
            from eventsourcing.domain import Aggregate, event
        except ImportError as e:
            raise Skip(f"eventsourcing is not installed ({e}); pip install -e '.[bench]'") from e

        class Account(Aggregate):
            def __init__(self) -> None:
                self.balance = 0

            @event("Deposited")
            def deposit(self, amount: int) -> None:
                self.balance += amount

        class Bank(Application[Any]):
            pass

        _ES_CLASSES.append((Bank, Account))
    return _ES_CLASSES[0]


def _es_app(path: Path, *, snapshots: bool = False, cache: int = 0) -> tuple[Any, type[Any]]:
    bank, account = _es_classes()
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    if snapshots:
        env["IS_SNAPSHOTTING_ENABLED"] = "y"
    if cache:
        # Its best configuration for one writer: aggregates kept in memory between
        # calls, not re-read (no fast-forward: nobody else writes) nor deep-copied.
        env["AGGREGATE_CACHE_MAXSIZE"] = str(cache)
        env["AGGREGATE_CACHE_FASTFORWARD"] = "n"
        env["DEEPCOPY_FROM_AGGREGATE_CACHE"] = "n"
    return bank(env=env), account


def eventsourcing_deposit(p: Params) -> Metrics:
    """eventsourcing on SQLite: get the aggregate, deposit, save; one save per deposit."""
    accounts, n, threads = int(p["accounts"]), int(p["ops"]), int(p["threads"])
    with scratch_dir() as d:
        app, account_cls = _es_app(d / "es.db", cache=accounts if p.get("cache") else 0)
        ids = []
        for _ in range(accounts):
            a = account_cls()
            app.save(a)
            ids.append(a.id)
        lat = [0] * n

        def deposit(i: int) -> None:
            t0 = time.perf_counter_ns()
            acc = app.repository.get(ids[i % accounts])
            acc.deposit(1)
            app.save(acc)
            lat[i] = time.perf_counter_ns() - t0

        start = time.perf_counter()
        if threads <= 1:
            for i in range(n):
                deposit(i)
        else:
            # Thread k owns the accounts a with a % threads == k, so no two threads save
            # the same aggregate (its optimistic concurrency check would reject one).
            def lane(k: int) -> None:
                for i in range(n):
                    if (i % accounts) % threads == k:
                        deposit(i)

            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(lane, range(threads)))
        secs = time.perf_counter() - start
        total = sum(app.repository.get(i).balance for i in ids)
        app.close()
    if total != n:
        raise AssertionError(f"eventsourcing: balances add up to {total}, not {n}")
    return {"ops_per_s": n / secs, **latency_metrics(lat)}


_ES_BUILT: dict[int, tuple[Path, Any]] = {}
_ES_DIR: list[Path] = []


def _es_files(events: int) -> tuple[Path, Any, float]:
    import atexit
    import shutil
    import tempfile

    if not _ES_DIR:
        _ES_DIR.append(Path(tempfile.mkdtemp(prefix="bench-es-")))
        atexit.register(shutil.rmtree, _ES_DIR[0], True)
    path = _ES_DIR[0] / f"es-{events}.db"
    rate = 0.0
    if events not in _ES_BUILT:
        app, account_cls = _es_app(path, snapshots=True)
        a = account_cls()
        start = time.perf_counter()
        done = 0
        while done < events:
            k = min(10_000, events - done)
            for _ in range(k):
                a.deposit(1)
            app.save(a)
            done += k
        rate = events / (time.perf_counter() - start)
        _ES_BUILT[events] = (path, a.id)
        app.close()
    path, agg_id = _ES_BUILT[events]
    return path, agg_id, rate


def eventsourcing_activation(p: Params) -> Metrics:
    """eventsourcing W4: a fresh application, then ``repository.get`` of one big aggregate."""
    events = int(p["events"])
    path, agg_id, rate = _es_files(events)
    out: Metrics = {}
    if rate:
        out["build_events_per_s"] = rate
    # Without a snapshot: a full replay of the aggregate's events.
    app, _ = _es_app(path, snapshots=True)
    t0 = time.perf_counter()
    got = app.repository.get(agg_id).balance
    secs = time.perf_counter() - t0
    if got != events:
        raise AssertionError("eventsourcing: replay does not add up")
    out["nosnap_first_query_ms"] = secs * 1e3
    out["replay_events_per_s"] = events / secs
    app.take_snapshot(agg_id)
    app.close()
    # With a snapshot at the last event.
    app, _ = _es_app(path, snapshots=True)
    t0 = time.perf_counter()
    got = app.repository.get(agg_id).balance
    out["snap_first_query_ms"] = (time.perf_counter() - t0) * 1e3
    app.close()
    # Drop the snapshot again so the next run replays in full.
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as c:
        tables = [
            r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'") if "snapshot" in r[0]
        ]
        for t in tables:
            c.execute(f"DELETE FROM {t}")
        c.commit()
    return out


# ---------------------------------------------------------------- DBOS


def dbos_deposit(p: Params) -> Metrics:
    """DBOS Transact on SQLite: a durable workflow whose one step is a SQL transaction."""
    try:
        import sqlalchemy as sa
        from dbos import DBOS, SQLAlchemyDatasource
    except ImportError as e:
        raise Skip(f"dbos is not installed ({e}); pip install -e '.[bench]'") from e
    accounts, n, threads = int(p["accounts"]), int(p["ops"]), int(p["threads"])
    bare = bool(p.get("bare", False))
    for name in ("dbos", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with scratch_dir() as d:
        try:
            DBOS(
                config={
                    "name": f"bench-{uuid.uuid4().hex[:8]}",
                    "system_database_url": f"sqlite:///{d / 'dbos-sys.db'}",
                    "log_level": "WARNING",
                }
            )
            db = SQLAlchemyDatasource.create(f"sqlite:///{d / 'dbos-app.db'}")
        except Exception as e:
            raise Skip(f"DBOS cannot start on SQLite here: {type(e).__name__}: {e}") from e

        @db.transaction
        def apply(acc: str, amount: int) -> int:
            s = db.sql_session()
            s.execute(
                sa.text(
                    "INSERT INTO accounts (id, balance) VALUES (:a, :m) "
                    "ON CONFLICT (id) DO UPDATE SET balance = balance + :m"
                ),
                {"a": acc, "m": amount},
            )
            return int(
                s.execute(sa.text("SELECT balance FROM accounts WHERE id = :a"), {"a": acc}).scalar_one()
            )

        @DBOS.workflow()
        def deposit(acc: str, amount: int) -> int:
            return int(apply(acc, amount))

        call: Callable[[str, int], int] = apply if bare else deposit
        try:
            DBOS.launch()
            with db.engine.begin() as c:
                c.execute(
                    sa.text(
                        "CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL)"
                    )
                )
            lat = [0] * n
            lock = threading.Lock()
            counter = iter(range(n))

            def worker() -> None:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    t0 = time.perf_counter_ns()
                    call(f"acc-{i % accounts}", 1)
                    lat[i] = time.perf_counter_ns() - t0

            start = time.perf_counter()
            if threads <= 1:
                worker()
            else:
                with ThreadPoolExecutor(threads) as ex:
                    for f in [ex.submit(worker) for _ in range(threads)]:
                        f.result()
            secs = time.perf_counter() - start
            with db.engine.connect() as c:
                total = int(c.execute(sa.text("SELECT sum(balance) FROM accounts")).scalar_one())
        finally:
            with contextlib.suppress(Exception):
                DBOS.destroy(destroy_registry=True)
    if total != n:
        raise AssertionError(f"DBOS: balances add up to {total}, not {n}")
    return {"ops_per_s": n / secs, **latency_metrics(lat)}
