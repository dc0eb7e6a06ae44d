"""Child process of test_crash: deposits with idempotency keys until it is SIGKILLed.

``python _crash_writer.py DB`` (DB: a SQLite path or a PostgreSQL DSN): four workers
share a counter ``i``; each takes the next ``i`` and deposits ``i + 1`` (so every
deposit has its own amount) into
account ``acct-{i % 2}`` with key ``dep-{i}``, as a ``tell`` for even ``i`` and an
``ask`` for odd ones. Once the call returns (acknowledged) it prints ``i`` on its own
line and flushes. It never stops by itself.
"""

from __future__ import annotations

import itertools
import sys

import anyio

from actors import ActorSystem
from tests._stores import store_at
from tests.models import Account

WORKERS = 4


def account_of(i: int) -> str:
    """The account deposit ``i`` goes to."""
    return f"acct-{i % 2}"


def amount_of(i: int) -> int:
    """The amount of deposit ``i``: distinct for every deposit."""
    return i + 1


async def main(path: str) -> None:
    counter = itertools.count()
    async with ActorSystem(store_at(path), [Account]) as system:

        async def worker() -> None:
            while True:
                i = next(counter)
                ref = system.ref(Account, account_of(i)).options(key=f"dep-{i}")
                if i % 2:
                    await ref.ask(Account.deposit, amount_of(i))
                else:
                    await ref.tell(Account.deposit, amount_of(i))
                print(i, flush=True)

        async with anyio.create_task_group() as tg:
            for _ in range(WORKERS):
                tg.start_soon(worker)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
