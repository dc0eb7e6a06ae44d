"""Workloads W1-W7 on this framework (ActorSystem on SqliteStore or PostgresStore).

Every public function here is one run of a case: it takes the case's parameters
and returns what it measured. Each builds its own database in a scratch folder,
so runs do not see each other's data (on PostgreSQL: a fresh database, see
``bench/pg.py``; a case runs there when its parameters say ``"store": "postgres"``).
The functions are synchronous (they call ``asyncio.run``) so that the child process
can time them one by one.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as dt
import gc
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio

from actors import ActorSystem, EntityRef
from bench.common import (
    Metrics,
    Params,
    current_rss_mb,
    latency_metrics,
    peak_rss_mb,
    remove_db,
    scratch_dir,
)
from bench.models import Account, Deposited
from bench.pg import create_database, drop_at_exit, location
from persistence import Codec, PostgresStore, SqliteStore, Store
from persistence.store import Commit, NewEvent, SaveSnapshot, SignalRecord, SnapshotRecord

ENTITIES = [Account]


def _is_pg(where: str | Path) -> bool:
    return str(where).startswith("postgresql://")


def _store(where: str | Path, synchronous: str = "NORMAL") -> Store:
    """The store at ``where``: a PostgreSQL DSN or a SQLite file."""
    if _is_pg(where):
        return PostgresStore(str(where), max_connections=8)
    return SqliteStore(where, synchronous=synchronous)  # type: ignore[arg-type]


def _system(path: str | Path, **kw: Any) -> ActorSystem:
    sync = kw.pop("synchronous", "NORMAL")
    return ActorSystem(_store(path, sync), entities=ENTITIES, **kw)


def _run(p: Params, coro: Coroutine[Any, Any, Metrics]) -> Metrics:
    """``asyncio.run``, on uvloop's event loop when the case asks for it (``loop: uvloop``)."""
    if p.get("loop") == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def _located(p: Params, fn: Callable[[Params], Coroutine[Any, Any, Metrics]]) -> Metrics:
    """Run ``fn(p)``; on PostgreSQL with a fresh database given to it as ``p["_where"]``."""
    if p.get("store") != "postgres":
        return _run(p, fn(p))
    with location("postgres", Path("."), "") as dsn:
        return _run(p, fn({**p, "_where": dsn}))


async def _closed_loop(
    n: int, inflight: int, call: Callable[[int], Awaitable[object]]
) -> tuple[float, list[int]]:
    """Run ``call(0..n-1)`` with ``inflight`` calls outstanding; (seconds, latencies ns)."""
    lat = [0] * n
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter_ns()
            await call(i)
            lat[i] = time.perf_counter_ns() - t0

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(inflight, n)):
            tg.start_soon(worker)
    return time.perf_counter() - start, lat


async def _activate(refs: list[EntityRef[Account]]) -> None:
    for r in refs:
        await r.query(Account.get_balance)


async def _total(refs: list[EntityRef[Account]]) -> int:
    return sum([await r.query(Account.get_deposits) for r in refs])


# ---------------------------------------------------------------- W1 durable ask


def _otel_observer() -> Any:
    """An ``OtelObserver`` on the SDK as an app would run it: spans through a batch
    processor (to an exporter that drops them), metrics to an in-memory reader."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from actors.otel import OtelObserver

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    return OtelObserver(MeterProvider(metric_readers=[InMemoryMetricReader()]), tracer_provider)


async def _w1(p: Params) -> Metrics:
    accounts, n, inflight = int(p["accounts"]), int(p["ops"]), int(p["inflight"])
    if p.get("gc_threshold"):  # as an app may tune it: the runtime makes no cyclic garbage
        gc.set_threshold(int(p["gc_threshold"]), 20, 20)
    if p.get("switch_interval"):  # as an app may set it: the writer thread gets the GIL sooner
        sys.setswitchinterval(float(p["switch_interval"]))
    kw: dict[str, Any] = {"synchronous": p.get("synchronous", "NORMAL")}
    if p.get("observer") == "otel":
        kw["observer"] = _otel_observer()
    with scratch_dir() as d:
        where = p.get("_where") or d / "w1.db"
        async with _system(where, **kw) as system:
            refs = [system.ref(Account, f"acc-{i}") for i in range(accounts)]
            await _activate(refs)
            if p.get("gc_freeze"):  # what start-up made stays out of the collector's full runs
                gc.freeze()

            if p.get("keyed"):  # each ask with a key of its own: a repeat check, a mark

                async def call(i: int) -> object:
                    return await refs[i % accounts].options(key=f"w1-{i}").ask(Account.deposit, 1)

            else:

                async def call(i: int) -> object:
                    return await refs[i % accounts].ask(Account.deposit, 1)

            secs, lat = await _closed_loop(n, inflight, call)
            if await _total(refs) != n:
                raise AssertionError("W1: balances do not add up to the deposits made")
            st = system.statistics()
    return {
        "ops_per_s": n / secs,
        **latency_metrics(lat),
        "mean_batch": st.commit_writes / max(st.commit_batches, 1),
    }


def w1_ask(p: Params) -> Metrics:
    """W1: durable ``ask`` deposits over ``accounts`` accounts, ``inflight`` outstanding."""
    return _located(p, _w1)


# ---------------------------------------------------------------- W2 durable tell


async def _wait_applied(refs: list[EntityRef[Account]], want: list[int]) -> None:
    """Until every account's query shows its expected deposit count (polls if needed)."""
    left = list(range(len(refs)))
    while left:
        left = [i for i in left if await refs[i].query(Account.get_deposits) != want[i]]
        if left:
            await anyio.sleep(0.001)


async def _w2(p: Params) -> Metrics:
    accounts, n, inflight = int(p["accounts"]), int(p["ops"]), int(p["inflight"])
    with scratch_dir() as d:
        async with _system(p.get("_where") or d / "w2.db") as system:
            refs = [system.ref(Account, f"acc-{i}") for i in range(accounts)]
            await _activate(refs)
            want = [n // accounts + (1 if i < n % accounts else 0) for i in range(accounts)]

            async def call(i: int) -> None:
                await refs[i % accounts].tell(Account.deposit, 1)

            start = time.perf_counter()
            accept_secs, lat = await _closed_loop(n, inflight, call)
            # The system's own idle barrier (no sleeps), then a query on every account
            # counts its deposits; polling only if the barrier was not enough.
            await system.wait_idle()
            await _wait_applied(refs, want)
            secs = time.perf_counter() - start
    return {
        "ops_per_s": n / secs,
        "accept_per_s": n / accept_secs,
        **latency_metrics(lat),
    }


def w2_tell(p: Params) -> Metrics:
    """W2: durable ``tell`` deposits, timed until every one is applied."""
    return _located(p, _w2)


# ---------------------------------------------------------------- W3 fixed offered load


async def _w3(p: Params) -> Metrics:
    accounts, rate, duration = int(p["accounts"]), float(p["rate"]), float(p["seconds"])
    n = int(rate * duration)
    interval = 1e9 / rate
    lat: list[int] = []
    svc: list[int] = []
    with scratch_dir() as d:
        async with _system(p.get("_where") or d / "w3.db") as system:
            refs = [system.ref(Account, f"acc-{i}") for i in range(accounts)]
            await _activate(refs)

            async def one(i: int, due: int) -> None:
                sent = time.perf_counter_ns()
                await refs[i % accounts].ask(Account.deposit, 1)
                end = time.perf_counter_ns()
                lat.append(end - due)
                svc.append(end - sent)

            t0 = time.perf_counter_ns()
            async with anyio.create_task_group() as tg:
                i = 0
                while i < n:
                    now = time.perf_counter_ns()
                    due = min(n, int((now - t0) / interval) + 1)
                    while i < due:
                        tg.start_soon(one, i, t0 + int(i * interval))
                        i += 1
                    if i < n:
                        wait = (t0 + i * interval - time.perf_counter_ns()) / 1e9
                        await anyio.sleep(max(wait, 0.0))
            secs = (time.perf_counter_ns() - t0) / 1e9
    service = latency_metrics(svc)
    return {
        "ops_per_s": n / secs,
        "offered_per_s": rate,
        **latency_metrics(lat),
        **{f"svc_{k}": v for k, v in service.items()},
    }


def w3_latency(p: Params) -> Metrics:
    """W3: asks sent at a fixed rate (open loop); latency from each ask's scheduled time."""
    return _located(p, _w3)


# ---------------------------------------------------------------- W4 activation

_W4_DIR: Path | None = None
_W4_BUILT: dict[tuple[int, str], tuple[str, str, float]] = {}


def _w4_dir() -> Path:
    global _W4_DIR
    if _W4_DIR is None:
        _W4_DIR = Path(tempfile.mkdtemp(prefix="bench-w4-"))
        atexit.register(shutil.rmtree, _W4_DIR, True)
    return _W4_DIR


def _schema_of(codec: Codec) -> str:
    from actors._entity import build_spec  # internal: the fingerprint snapshots are checked by

    return build_spec(Account, codec).schema


async def _build_log(path: str, events: int) -> float:
    """Append ``events`` deposits of entity Account/big straight through ``Store.write``."""
    codec = Codec()
    codec.register_event(Deposited)
    ev: NewEvent = codec.encode_event(Deposited(1))
    per_commit, per_batch = 1000, 20
    now = time.time()
    start = time.perf_counter()
    async with _store(path) as store:
        seq = 1
        while seq <= events:
            batch: list[Commit] = []
            while seq <= events and len(batch) < per_batch:
                k = min(per_commit, events - seq + 1)
                sig = SignalRecord("Account", "big", f"g:build-{seq}", "deposit", '{"amount":1}', "x", now)
                batch.append(
                    Commit(
                        "Account",
                        "big",
                        sig,
                        '{"ok":0}',
                        seq,
                        (ev,) * k,
                        recorded_at=now,
                        mark=False,
                        from_inbox=False,
                    )
                )
                seq += k
            await store.write(batch)
    return events / (time.perf_counter() - start)


async def _add_snapshot(path: str, events: int) -> None:
    """Store the snapshot the system would have taken at the last event."""
    codec = Codec()
    state = codec.dumps(Account(balance=events, deposits=events), Account, what="snapshot")
    snap = SnapshotRecord("Account", "big", events, _schema_of(codec), state, time.time())
    async with _store(path) as store:
        await store.write([SaveSnapshot(snap)])


def _w4_files(events: int, store: str) -> tuple[str, str, float]:
    if (events, store) not in _W4_BUILT:
        if store == "postgres":
            name, plain = create_database()
            drop_at_exit(name)
            rate = asyncio.run(_build_log(plain, events))
            copy, snapped = create_database(template=name)
            drop_at_exit(copy)
        else:
            d = _w4_dir()
            plain, snapped = str(d / f"log-{events}.db"), str(d / f"snap-{events}.db")
            rate = asyncio.run(_build_log(plain, events))
            shutil.copyfile(plain, snapped)
        asyncio.run(_add_snapshot(snapped, events))
        _W4_BUILT[(events, store)] = (plain, snapped, rate)
    return _W4_BUILT[(events, store)]


async def _first_query(path: str, events: int) -> tuple[float, float]:
    """(seconds to open the system, seconds for the first query) on a fresh system."""
    t0 = time.perf_counter()
    async with _system(path) as system:
        t1 = time.perf_counter()
        got = await system.ref(Account, "big").query(Account.get_deposits)
        t2 = time.perf_counter()
    if got != events:
        raise AssertionError(f"W4: activation found {got} deposits, not {events}")
    return t1 - t0, t2 - t1


def w4_activation(p: Params) -> Metrics:
    """W4: a fresh system on a file holding one entity of ``events`` events; one query."""
    events = int(p["events"])
    plain, snapped, build_rate = _w4_files(events, str(p.get("store", "sqlite")))
    open_snap, q_snap = asyncio.run(_first_query(snapped, events))
    open_plain, q_plain = asyncio.run(_first_query(plain, events))
    return {
        "snap_first_query_ms": q_snap * 1e3,
        "snap_open_ms": open_snap * 1e3,
        "nosnap_first_query_ms": q_plain * 1e3,
        "nosnap_open_ms": open_plain * 1e3,
        "replay_events_per_s": events / q_plain,
        "build_events_per_s": build_rate,
    }


# ---------------------------------------------------------------- W5 recovery after SIGKILL


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def _w5_child(path: str, entities: int, inflight: int) -> None:
    from bench.models import StalledAccount

    store = _store(path)
    async with ActorSystem(store, entities=[StalledAccount]) as system:
        refs = [system.ref(StalledAccount, f"acc-{i}") for i in range(entities)]

        async def call(i: int) -> None:
            await refs[i].tell(StalledAccount.deposit, 1)

        await _closed_loop(entities, inflight, call)
        print("ready", flush=True)
        await anyio.sleep_forever()


async def _count_inbox(path: str) -> int:
    count, after = 0, 0
    async with _store(path) as store:
        while True:
            entries = await store.read_inbox(after=after, limit=5000)
            count += len(entries)
            if len(entries) < 5000:
                return count
            after = entries[-1].position


async def _recover(path: str, entities: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    async with _system(path) as system:
        t_open = time.perf_counter() - t0
        refs = [system.ref(Account, f"acc-{i}") for i in range(entities)]
        await system.wait_idle()
        await _wait_applied(refs, [1] * entities)
        return time.perf_counter() - t0, t_open


def w5_recovery(p: Params) -> Metrics:
    """W5: a child accepts ``entities`` tells (one per entity) and is SIGKILLed; recover."""
    entities = int(p["entities"])
    with scratch_dir() as d, location(str(p.get("store", "sqlite")), d, "w5.db") as db:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.ours", "w5-child", db, str(entities), "512"],
            stdout=subprocess.PIPE,
            env=_child_env(),
            text=True,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"W5 child did not get ready (said {line!r})")
            os.kill(child.pid, signal.SIGKILL)
        finally:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait()
        pending = asyncio.run(_count_inbox(db))
        secs, t_open = asyncio.run(_recover(db, entities))
    return {"recovery_s": secs, "open_s": t_open, "pending": float(pending)}


# ---------------------------------------------------------------- W6 memory


async def _w6_child(mode: str, entities: int, path: str) -> dict[str, float]:
    passivate = dt.timedelta(milliseconds=50) if mode == "touched" else None
    async with _system(path, passivate_after=passivate) as system:
        base = current_rss_mb()
        refs_made = 0
        chunk = 10_000
        active_max = 0
        for start in range(0, entities, chunk):
            stop = min(entities, start + chunk)
            refs = [system.ref(Account, f"acc-{i}") for i in range(start, stop)]

            async def call(i: int, refs: list[EntityRef[Account]] = refs) -> object:
                return await refs[i].ask(Account.deposit, 1)

            await _closed_loop(len(refs), 512, call)
            refs_made += len(refs)
            active_max = max(active_max, system.statistics().active_actors)
            if mode == "touched":
                system.passivate_idle()
        active = system.statistics().active_actors
        return {
            "rss_mb": peak_rss_mb(),
            "end_rss_mb": current_rss_mb(),
            "baseline_rss_mb": base,
            "active_at_end": float(active),
            "active_max": float(active_max),
            "touched": float(refs_made),
        }


def w6_memory(p: Params) -> Metrics:
    """W6: peak RSS of a child that activates (or touches, with passivation) entities."""
    with scratch_dir() as d, location(str(p.get("store", "sqlite")), d, "w6.db") as db:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.ours",
                "w6-child",
                str(p["mode"]),
                str(p["entities"]),
                db,
            ],
            capture_output=True,
            env=_child_env(),
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"W6 child failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- W7 queries


async def _w7(p: Params) -> Metrics:
    accounts, n = int(p["accounts"]), int(p["ops"])
    with scratch_dir() as d:
        async with _system(p.get("_where") or d / "w7.db") as system:
            refs = [system.ref(Account, f"acc-{i}") for i in range(accounts)]
            for r in refs:
                await r.ask(Account.deposit, 1)

            async def call(i: int) -> object:
                return await refs[i % accounts].query(Account.get_balance)

            secs, lat = await _closed_loop(n, 1, call)
            secs64, _ = await _closed_loop(n, 64, call)
    return {"ops_per_s": n / secs, **latency_metrics(lat), "ops_per_s_c64": n / secs64}


def w7_queries(p: Params) -> Metrics:
    """W7: queries on active entities, one at a time and 64 at a time."""
    return _located(p, _w7)


# ---------------------------------------------------------------- child entry points


def main(argv: list[str]) -> int:
    """``python -m bench.ours w5-child DB N INFLIGHT`` or ``w6-child MODE N DB``."""
    if argv[:1] == ["w5-child"]:
        asyncio.run(_w5_child(argv[1], int(argv[2]), int(argv[3])))
        return 0
    if argv[:1] == ["w6-child"]:
        path = argv[3]
        if not _is_pg(path):
            remove_db(Path(path))
        print(json.dumps(asyncio.run(_w6_child(argv[1], int(argv[2]), path))))
        return 0
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# ---------------------------------------------------------------- W8 timers at start


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def w8_timers(p: Params) -> Metrics:
    """W8: open a system over ``timers`` stored timers (all due in a day): start time and memory."""
    n = int(p["timers"])
    with scratch_dir() as d:
        db = d / "w8.db"

        async def schema() -> None:
            async with SqliteStore(db):
                pass

        asyncio.run(schema())
        due = time.time() + 86_400
        with sqlite3.connect(db) as conn:  # the setup is not timed: rows straight into the table
            conn.executemany(
                "INSERT INTO timers (entity_type, entity_id, key, handler, args, due_at, every, trace) "
                "VALUES ('Account', ?, 'k', 'deposit', '{\"amount\":1}', ?, NULL, NULL)",
                ((f"acc-{i}", due + i * 0.001) for i in range(n)),
            )
        gc.collect()
        before = _rss_mb()

        async def start() -> tuple[float, int, float]:
            t0 = time.perf_counter()
            async with ActorSystem(SqliteStore(db), entities=ENTITIES) as system:
                took = time.perf_counter() - t0
                return took, len(system._kernel.timers), _rss_mb() - before

        took, held, added = asyncio.run(start())
    return {"start_ms": took * 1000, "rss_added_mb": added, "in_memory": held}


# ---------------------------------------------------------------- W9 keyed asks over a long history


def w9_keyed_history(p: Params) -> Metrics:
    """W9: keyed durable asks (512 in flight) on a store already holding ``history``
    processed marks and ``history // 100`` dead letters: reads must not slow as they grow."""
    history, n, accounts = int(p["history"]), int(p["ops"]), int(p["accounts"])
    with scratch_dir() as d:
        db = d / "w9.db"

        async def schema() -> None:
            async with SqliteStore(db):
                pass

        asyncio.run(schema())
        now = time.time()
        with sqlite3.connect(db) as conn:  # the setup is not timed: old keyed signals, straight in
            conn.executemany(
                "INSERT INTO processed VALUES ('Account', ?, ?, 'fp', '{\"ok\":1}', ?)",
                ((f"acc-{i % accounts}", f"k:old-{i}", now - 86_400) for i in range(history)),
            )
            conn.executemany(
                "INSERT INTO dead_letters (entity_type, entity_id, signal_id, handler, args, fingerprint, "
                "accepted_at, error, traceback, attempts, failed_at, trace) "
                "VALUES ('Account', ?, ?, 'deposit', '{\"amount\":1}', 'fp', ?, 'e', 'tb', 3, ?, NULL)",
                ((f"acc-{i % accounts}", f"k:dead-{i}", now, now) for i in range(history // 100)),
            )

        async def run() -> Metrics:
            async with _system(db) as system:
                refs = [system.ref(Account, f"acc-{i}") for i in range(accounts)]
                await _activate(refs)

                async def call(i: int) -> object:
                    return await refs[i % accounts].options(key=f"new-{i}").ask(Account.deposit, 1)

                secs, lat = await _closed_loop(n, 512, call)
            return {"ops_per_s": n / secs, **latency_metrics(lat)}

        return asyncio.run(run())


# ---------------------------------------------------------------- W10 fan-out of child workflows


def w10_fan_out(p: Params) -> Metrics:
    """W10: a parent starts ``children`` child invocations and awaits every result, while
    the bench asks it ``ping`` and queries it in a loop: wall time of the fan-out, the
    pings and queries answered while it waited (and their worst latency), peak RSS."""
    from bench.models import FanChild, FanParent

    n = int(p["children"])

    async def run() -> Metrics:
        with scratch_dir() as d:
            gc.collect()
            before = current_rss_mb()
            async with ActorSystem(SqliteStore(d / "w10.db"), entities=[FanParent, FanChild]) as system:
                parent = system.ref(FanParent, "p")
                await parent.query(FanParent.get_pings)  # activated: not part of the timing
                t0 = time.perf_counter()
                handle = await parent.start(FanParent.fan_out, n)
                done = asyncio.ensure_future(handle.result(timeout=600))
                served: list[int] = []
                peak = current_rss_mb()
                while not done.done():
                    s0 = time.perf_counter_ns()
                    await parent.ask(FanParent.ping)
                    await parent.query(FanParent.get_pings)
                    if not done.done():
                        served.append(time.perf_counter_ns() - s0)
                    peak = max(peak, current_rss_mb())
                    await asyncio.sleep(0.005)
                total = await done
                wall = time.perf_counter() - t0
                if total != sum(i * i for i in range(n)):
                    raise AssertionError(f"fan-out answered {total}")
        worst = max(served) / 1e6 if served else float("nan")
        return {
            "wall_s": wall,
            "children_per_s": n / wall,
            "served": len(served),
            "served_max_ms": worst,
            "rss_added_mb": peak - before,
            "peak_rss_mb": peak_rss_mb(),
        }

    return asyncio.run(run())
