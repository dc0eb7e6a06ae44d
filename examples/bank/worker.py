"""The bank demo's worker process: it sends the transfers, and the demo kills it.

``python -m examples.bank.worker --db FILE --transfers N --seed S`` opens the bank
on ``FILE`` (a SQLite file, or a ``postgresql://`` DSN) and sends the N planned
transfers with ``tell``, a batch at a time, each with its transfer id as
idempotency key. ``tell`` returns once the signal is on disk, so after each batch
the worker prints ``accepted <count>``: the parent may SIGKILL it from then on,
and every accepted transfer must still happen.
Left alone, it waits until every transfer has finished and prints ``finished``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import anyio
import attrs

from actors import ActorSystem
from examples.bank.model import ENTITIES, Transfer
from persistence import PostgresStore, SqliteStore, Store

ACCOUNTS = tuple(f"acc-{i:02d}" for i in range(1, 9))
"""The demo's accounts."""
OPENING_BALANCE = 1_000_00
"""What each demo account starts with (cents)."""
GHOST = "acc-99"
"""An account that is never opened: every credit to it is refused and reversed."""
BATCH = 25
"""Transfers sent at once (concurrent tells)."""
PAUSE = 0.02
"""Seconds between batches: clients arriving over time."""


@attrs.frozen
class Planned:
    """One transfer of the demo's plan."""

    id: str
    source: str
    destination: str
    amount: int


def plan(count: int, seed: int) -> list[Planned]:
    """The demo's transfers, the same for the same arguments (parent and worker agree)."""
    rng = random.Random(seed)
    out = []
    for i in range(1, count + 1):
        source = rng.choice(ACCOUNTS)
        destination = GHOST if i % 40 == 0 else rng.choice([a for a in ACCOUNTS if a != source])
        amount = rng.choice([rng.randint(1_00, 80_00), rng.randint(1_00, 400_00)])
        out.append(Planned(f"t-{i:04d}", source, destination, amount))
    return out


def key(t: Planned) -> str:
    """The idempotency key of a transfer's start signal."""
    return f"transfer/{t.id}"


async def send(system: ActorSystem, t: Planned) -> None:
    """Send one transfer with ``tell``: returns once it is durably accepted."""
    ref = system.ref(Transfer, t.id).options(key=key(t))
    await ref.tell(Transfer.start, t.source, t.destination, t.amount)


def is_dsn(db: str | Path) -> bool:
    """Whether ``db`` names a PostgreSQL database (a ``postgresql://`` DSN), not a SQLite file."""
    return str(db).startswith(("postgresql://", "postgres://"))


def store_at(db: str | Path, *, shared: bool = False) -> Store:
    """The bank's store: PostgreSQL for a ``postgresql://`` DSN (always shared), else a
    SQLite file (opened shared by several processes when ``shared``, else exclusive)."""
    if is_dsn(db):
        return PostgresStore(str(db))
    return SqliteStore(db, shared=shared)


async def run(db: str, count: int, seed: int) -> None:
    transfers = plan(count, seed)
    async with ActorSystem(store_at(db), entities=ENTITIES) as system:
        print("ready", flush=True)
        accepted = 0
        for start in range(0, len(transfers), BATCH):
            batch = transfers[start : start + BATCH]
            async with anyio.create_task_group() as tg:
                for t in batch:
                    tg.start_soon(send, system, t)
            accepted += len(batch)
            print(f"accepted {accepted}", flush=True)
            await anyio.sleep(PAUSE)
        for t in transfers:  # asking with the same key waits for the first outcome
            await (
                system.ref(Transfer, t.id)
                .options(key=key(t))
                .ask(Transfer.start, t.source, t.destination, t.amount)
            )
        print("finished", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.bank.worker", description=__doc__)
    parser.add_argument("--db", required=True, help="the bank's SQLite file or PostgreSQL DSN")
    parser.add_argument("--transfers", type=int, default=300, help="how many transfers to send")
    parser.add_argument("--seed", type=int, default=7, help="seed of the transfer plan")
    args = parser.parse_args(argv)
    anyio.run(run, args.db, args.transfers, args.seed)


if __name__ == "__main__":
    main()
