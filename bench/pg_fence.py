"""What the fence costs a PostgresStore: commits with and without ``set_fence``.

``python -m bench.pg_fence [--dsn DSN] [--seconds 3] [--reps 3]``

Starts a throwaway embedded PostgreSQL (or uses ``--dsn``, whose user may create
databases), and for each mode (``unfenced``: one owner, no fence; ``fenced``: a member
that claimed every shard and called ``set_fence``) measures, in a fresh database per
repetition:

- single-row commits: one ``Commit`` (one event) per ``write``, one after another,
  over 1,000 entities (commits/s);
- batches of 1,000: one ``write`` of 1,000 ``Commit`` s on 1,000 entities (rows/s).

Both stores are open at once and measured in alternating slices of 0.5 s, so a
change of load on the machine hits both alike; the median of ``--reps`` is printed.
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


class _Mode:
    """One store (fenced or not) on its own database, and what it has written."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.seqs = [0] * ENTITIES
        self.n = 0
        self.single = [0, 0.0]  # commits, seconds
        self.batched = [0, 0.0]  # rows, seconds

    async def singles(self, seconds: float) -> None:
        start = time.perf_counter()
        done = 0
        while time.perf_counter() - start < seconds:
            e = self.n % ENTITIES
            self.seqs[e] += 1
            await self.store.write([_commit(e, self.seqs[e])])
            self.n += 1
            done += 1
        self.single[0] += done
        self.single[1] += time.perf_counter() - start

    async def batches(self, seconds: float) -> None:
        start = time.perf_counter()
        rows = 0
        while time.perf_counter() - start < seconds:
            batch = []
            for e in range(ENTITIES):
                self.seqs[e] += 1
                batch.append(_commit(e, self.seqs[e]))
            await self.store.write(batch)
            rows += len(batch)
        self.batched[0] += rows
        self.batched[1] += time.perf_counter() - start


async def _run(plain_dsn: str, fenced_dsn: str, seconds: float) -> dict[str, tuple[float, float]]:
    """Both modes at once, in alternating slices of 0.5 s (so load drift hits both alike)."""
    async with PostgresStore(plain_dsn) as plain, PostgresStore(fenced_dsn) as fenced:
        await fenced.join("bench", "bench", serves=True, ttl=600)
        fenced.set_fence("bench", await fenced.claim("bench", range(fenced.shard_count)))
        modes = {"unfenced": _Mode(plain), "fenced": _Mode(fenced)}
        slices = max(1, round(seconds / 0.5))
        for k in range(slices):
            for m in modes.values() if k % 2 == 0 else reversed(modes.values()):
                await m.singles(0.5)
        for k in range(slices):
            for m in modes.values() if k % 2 == 0 else reversed(modes.values()):
                await m.batches(0.5)
        return {name: (m.single[0] / m.single[1], m.batched[0] / m.batched[1]) for name, m in modes.items()}


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
    for _ in range(reps):
        plain = await _database(admin, "bench_fence_unfenced")
        fenced = await _database(admin, "bench_fence_fenced")
        for mode, rates in (await _run(plain, fenced, seconds)).items():
            out[mode].append(rates)
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
