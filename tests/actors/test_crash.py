"""Guarantee 2 under kill -9: nothing acknowledged is lost, nothing is applied twice.

A child process (``_crash_writer.py``) deposits with idempotency keys and prints
each acknowledged key; the test SIGKILLs it mid-stream, reopens the same store (a
SQLite file or a PostgreSQL database) and
checks every acknowledged deposit is applied exactly once (unacknowledged ones may
be applied or not, but never twice).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from actors import ActorSystem
from tests._stores import store_at
from tests.actors._crash_writer import account_of, amount_of
from tests.models import Account, InsufficientFunds

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("_crash_writer.py")
DEADLINE = 10.0
"""Wall-clock guard for one child's run; the writer acknowledges hundreds per second."""


async def run_and_kill(path: str, kill_after: int, log: Path) -> set[int]:
    """Run the writer until ``kill_after`` acks, SIGKILL it, return every ack it printed."""
    acked: set[int] = set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as stderr, anyio.fail_after(DEADLINE):
        process = await anyio.open_process(
            [sys.executable, str(WRITER), str(path)], cwd=ROOT, env=env, stderr=stderr
        )
        async with process:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            try:
                while len(acked) < kill_after:
                    acked.add(int(await lines.receive_until(b"\n", 64)))
            except (anyio.EndOfStream, anyio.IncompleteRead):
                pytest.fail(f"the writer stopped early:\n{await anyio.Path(log).read_text()}")
            os.kill(process.pid, signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
            try:  # acks printed before the kill and not read yet count as well
                while True:
                    acked.add(int(await lines.receive_until(b"\n", 64)))
            except (anyio.EndOfStream, anyio.IncompleteRead):
                pass
    return acked


async def applied_deposits(system: ActorSystem, account: str) -> list[int]:
    """The deposit numbers ``i`` in the account's event log, in log order."""
    ref = system.ref(Account, account)
    with pytest.raises(InsufficientFunds):
        await ref.ask(Account.withdraw, 10**15)  # a barrier behind the recovered tells
    events = await system.store.read_events("Account", account, after=0, limit=1_000_000)
    assert {e.type_name for e in events} <= {"tests.models.Deposited"}
    deposits = [json.loads(e.data)["amount"] - 1 for e in events]
    assert await ref.query(Account.get_balance) == sum(amount_of(i) for i in deposits)
    return deposits


@pytest.mark.parametrize("kill_after", [1, 60, 250])
async def test_sigkill_loses_no_acknowledged_deposit_and_applies_none_twice(
    tmp_path: Path, kill_after: int, store_location: str
) -> None:
    path = store_location
    acked = await run_and_kill(path, kill_after, tmp_path / "writer.log")
    assert len(acked) >= kill_after

    async with ActorSystem(store_at(path), [Account]) as system:
        applied: list[int] = []
        for account in ("acct-0", "acct-1"):
            deposits = await applied_deposits(system, account)
            assert all(account_of(i) == account for i in deposits)
            applied += deposits
        assert len(applied) == len(set(applied)), "a deposit was applied twice"
        missing = acked - set(applied)
        assert not missing, f"acknowledged deposits lost: {sorted(missing)[:10]}"
        assert await system.store.read_inbox(after=0, limit=10) == []

        before = {a: await system.ref(Account, a).query(Account.get_balance) for a in ("acct-0", "acct-1")}
        for i in sorted(acked):  # every acknowledged key repeated: no effect
            ref = system.ref(Account, account_of(i)).options(key=f"dep-{i}")
            await ref.tell(Account.deposit, amount_of(i))
        for account, balance in before.items():
            assert sorted(await applied_deposits(system, account)) == sorted(
                i for i in applied if account_of(i) == account
            )
            assert await system.ref(Account, account).query(Account.get_balance) == balance
