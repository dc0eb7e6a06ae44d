"""What the fence costs on ``SqliteStore``: commits per second with and without it.

``python -m bench.sqlite_fence [--seconds S] [--runs N]`` commits batches of
``Commit`` records (one event each, spread over 1,000 entities) into a new file for
each of three set-ups, one process, one batch in flight:

- ``exclusive``: ``SqliteStore(path)``, the single-owner store;
- ``shared``: ``SqliteStore(path, shared=True)`` without ``set_fence`` (nothing fenced);
- ``shared+fence``: the same with a member owning every shard and its fence set, so
  each batch first selects the owner and epoch of the shards it touches inside its
  write transaction.

It prints the median commits/s of the runs for batches of 1 and of 100 commits.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from persistence.sqlite import SqliteStore
from persistence.store import Commit, NewEvent, SignalRecord

ENTITIES = 1000


async def _rate(path: Path, mode: str, batch: int, seconds: float) -> float:
    store = SqliteStore(path, shared=mode != "exclusive")
    async with store:
        if mode == "shared+fence":
            await store.join("bench", "bench", serves=True, ttl=60.0)
            store.set_fence("bench", await store.claim("bench", range(store.shard_count)))
        seqs = [0] * ENTITIES
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            writes = []
            for _ in range(batch):
                k = n % ENTITIES
                seqs[k] += 1
                s = SignalRecord("B", f"e{k}", f"s{n}", "h", "{}", "fp", 1.0)
                event = NewEvent("E", 1, '{"amount":1}')
                writes.append(Commit("B", f"e{k}", s, "{}", seqs[k], (event,), 1.0, from_inbox=False))
                n += 1
            await store.write(writes)
        return n / (time.perf_counter() - start)


async def main(seconds: float, runs: int) -> None:
    modes = ("exclusive", "shared", "shared+fence")
    print(f"commits/s, median of {runs} runs of {seconds} s (one process, one batch in flight)")
    print(f"{'batch':>6} " + " ".join(f"{m:>14}" for m in modes) + "  fence cost")
    for batch in (1, 100):
        rates: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(runs):
            for m in modes:  # interleaved, so drift on a busy machine hits all alike
                with tempfile.TemporaryDirectory() as d:
                    rates[m].append(await _rate(Path(d) / "b.db", m, batch, seconds))
        med = {m: statistics.median(r) for m, r in rates.items()}
        cost = 1 - med["shared+fence"] / med["shared"]
        print(f"{batch:>6} " + " ".join(f"{med[m]:>14,.0f}" for m in modes) + f"  {cost:>9.0%}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    anyio.run(main, args.seconds, args.runs)
