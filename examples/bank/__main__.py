"""Placeholder demo until the bank example lands: the DESIGN.md account on SQLite."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

from actors import ActorSystem
from persistence import SqliteStore
from tests.models import Account


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        async with ActorSystem(SqliteStore(Path(d) / "bank.db"), entities=[Account]) as system:
            alice = system.ref(Account, "alice")
            await alice.tell(Account.deposit, 100)
            left = await alice.ask(Account.withdraw, 30)
            print("left after withdrawing 30:", left)
            print("balance:", await alice.query(Account.get_balance))


anyio.run(main)
