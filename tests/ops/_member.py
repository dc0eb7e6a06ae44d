"""Child process: a member of a shared store running ``tests.models:Account``.

``python -m tests.ops._member WHERE NAME`` (WHERE: a SQLite file, opened shared, or a
``postgresql://`` DSN) joins as member NAME, prints ``ready <member id>`` once it owns
its shards, and leaves cleanly when its stdin closes.
"""

from __future__ import annotations

import datetime as dt
import sys

import anyio

from actors import ActorSystem
from persistence import PostgresStore, SqliteStore
from persistence.inspect import is_dsn
from tests.models import Account


async def main(where: str, name: str) -> None:
    store = PostgresStore(where) if is_dsn(where) else SqliteStore(where, shared=True)
    lease = dt.timedelta(seconds=5)
    async with ActorSystem(store, [Account], member_name=name, lease_ttl=lease) as system:
        print(f"ready {system.member_id}", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
