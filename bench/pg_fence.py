"""What the fence costs a PostgresStore: commits with and without ``set_fence``.

``python -m bench.pg_fence [--dsn DSN] [--seconds 3] [--reps 3]``

Starts a throwaway embedded PostgreSQL (or uses ``--dsn``, whose user may create
databases), and for each mode (``unfenced``: one owner, no fence; ``fenced``: a member
that claimed every shard and called ``set_fence``) measures, in a fresh database per
repetition:

- single-row commits: one ``Commit`` (one event) per ``write``, one after another,
  over 1,000 entities (commits/s);
- batches of 1,000: one ``write`` of 1,000 ``Commit`` s on 1,000 entities (rows/s).

Modes alternate within each repetition; the median of ``--reps`` is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import urllib.parse

import asyncpg

from persistence import PostgresStore
from persistence.pg_embedded import EmbeddedPostgres
from persistence.store import Commit, NewEvent, SignalRecord

ENTITIES = 1_000


def _commit(entity: int, seq: int) -> Commit:
    eid = f"acct-{entity}"
    s = SignalRecord("Account", eid, f"s{seq}", "deposit", '{"amount":1}', "fp", 1.0)
    return Commit(
        "Account",
        eid,
        s,
        "{}",
        seq,
        (NewEvent("bank.Deposited", 1, '{"amount":1}'),),
        1.0,
        mark=False,
        from_inbox=False,
    )


async def _run(dsn: str, fenced: bool, seconds: float) -> tuple[float, float]:
    async with PostgresStore(dsn) as store:
        if fenced:
            await store.join("bench", "bench", serves=True, ttl=60)
            store.set_fence("bench", await store.claim("bench", range(store.shard_count)))
        seqs = [0] * ENTITIES
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            e = n % ENTITIES
            seqs[e] += 1
            await store.write([_commit(e, seqs[e])])
            n += 1
        single = n / (time.perf_counter() - start)
        rows = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            batch = []
            for e in range(ENTITIES):
                seqs[e] += 1
                batch.append(_commit(e, seqs[e]))
            await store.write(batch)
            rows += len(batch)
        batched = rows / (time.perf_counter() - start)
    return single, batched


async def _database(admin: str, name: str) -> str:
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(admin)._replace(path="/" + name))


async def measure(admin: str, seconds: float, reps: int) -> dict[str, list[tuple[float, float]]]:
    """Per mode, (single-row commits/s, rows/s in batches of 1,000) of each repetition."""
    out: dict[str, list[tuple[float, float]]] = {"unfenced": [], "fenced": []}
    for rep in range(reps):
        for mode in ("unfenced", "fenced") if rep % 2 == 0 else ("fenced", "unfenced"):
            dsn = await _database(admin, f"bench_fence_{mode}")
            out[mode].append(await _run(dsn, mode == "fenced", seconds))
    return out


def main() -> None:
    """Parse the arguments, start a server if needed, measure and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", help="an existing server's admin DSN (default: a throwaway embedded one)")
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per mode (default 3)")
    a = p.parse_args()
    server = None
    admin = a.dsn
    if admin is None:
        server = EmbeddedPostgres()
        server.start()
        admin = server.dsn()
    try:
        results = asyncio.run(measure(admin, a.seconds, a.reps))
    finally:
        if server is not None:
            server.stop()
    print("| mode | 1-row commits/s (median; runs) | rows/s in batches of 1,000 (median; runs) |")
    print("|---|---|---|")
    for mode, runs in results.items():
        singles = [r[0] for r in runs]
        batches = [r[1] for r in runs]
        print(
            f"| {mode} | {statistics.median(singles):,.0f} ({', '.join(f'{x:,.0f}' for x in singles)}) "
            f"| {statistics.median(batches):,.0f} ({', '.join(f'{x:,.0f}' for x in batches)}) |"
        )


if __name__ == "__main__":
    main()
