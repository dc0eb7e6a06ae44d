"""Back-pressure measured: 1,000 tasks flood one entity with 100,000 tells.

    python -m bench.flood 10000     # with max_mailbox=10,000 (the default)
    python -m bench.flood none      # unbounded

A refused caller (``Overloaded``) waits 1 ms and moves on to its next tell (it does
not retry), so the figures show how much the entity queues and what it costs.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import anyio

from actors import ActorSystem, Overloaded
from bench.models import Account
from persistence import SqliteStore


async def flood(limit: int | None, tells: int = 100_000, tasks: int = 1000) -> str:
    """Run the flood; one line of figures."""
    with tempfile.TemporaryDirectory() as d:
        async with ActorSystem(SqliteStore(Path(d) / "f.db"), [Account], max_mailbox=limit) as system:
            ref = system.ref(Account, "hot")
            accepted = refused = peak = 0
            numbers = iter(range(tells))

            async def worker() -> None:
                nonlocal accepted, refused, peak
                for _ in numbers:
                    try:
                        await ref.tell(Account.deposit, 1)
                        accepted += 1
                    except Overloaded as e:
                        refused += 1
                        peak = max(peak, e.queued)
                        await anyio.sleep(0.001)

            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(tasks):
                    tg.start_soon(worker)
            await system.wait_idle()
            took = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        f"max_mailbox={limit}: accepted={accepted} refused={refused} "
        f"longest_queue_refused_at={peak} {took:.1f}s peak_rss={rss:.0f}MB"
    )


def main() -> None:
    """``python -m bench.flood LIMIT|none``."""
    arg = sys.argv[1] if len(sys.argv) > 1 else "10000"
    print(asyncio.run(flood(None if arg == "none" else int(arg))))


if __name__ == "__main__":
    main()
