"""kill -9 during a transfer saga: it resumes, finishes, and applies no step twice.

A child process (``tests/actors/_saga_worker.py``, SQLite or PostgreSQL, the real clock) gets
a transfer of 30 from alice with a ``tell`` and prints a marker from inside each
step; it blocks at the marker named on its command line and the parent kills it
there. The parent then reopens the store: the transfer signal is still in the
inbox, its handler re-runs, replays what the journal holds (debit and credit are
journaled asks, markers journaled activities) and does the rest.
"""

from __future__ import annotations

import pytest

from actors import ActorSystem
from persistence import Store
from tests._stores import sql_at as sql
from tests._stores import store_at
from tests.actors import _saga_worker as bank

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

OPENING = {"alice": 100, "bob": 0, "shut": 0}
STEPS = ["step-1", "step-2", "step-3"]


async def balances(system: ActorSystem) -> dict[str, int]:
    return {n: await system.ref(bank.Account, n).query(bank.Account.get_balance) for n in OPENING}


async def check_no_step_applied_twice(store: Store) -> None:
    for name in OPENING:
        moves = await bank.ledger(store, name)
        assert len(moves) == len(set(moves)), f"{name} applied a step twice: {moves}"
        for kind, tid in moves:
            if kind == "Refunded":
                assert ("Debited", tid) in moves, f"{name} refunded {tid} it never debited"


async def run_and_kill(db: str, dst: str, block_at: str) -> tuple[str, list[str]]:
    await bank.open_accounts(db, OPENING, closed=["shut"])
    async with await bank.spawn(db, f"transfer:{dst}:{block_at}") as proc:
        printed = await bank.kill_at(proc, block_at)
    return db, printed


@pytest.mark.parametrize(
    ("block_at", "in_child", "in_parent", "debited_at_kill", "credited_at_kill"),
    [
        ("step-1", ["step-1"], STEPS, False, False),  # before any step
        ("step-2", ["step-1", "step-2"], ["step-2", "step-3"], True, False),  # between debit and credit
        ("step-3", STEPS, ["step-3"], True, True),  # after both steps, before the commit
        ("done", [*STEPS, "completed", "done"], [], True, True),  # after the commit
    ],
)
async def test_a_transfer_killed_at_any_point_completes_once(
    store_location: str,
    block_at: str,
    in_child: list[str],
    in_parent: list[str],
    debited_at_kill: bool,
    credited_at_kill: bool,
) -> None:
    db, printed = await run_and_kill(store_location, "bob", block_at)
    assert printed == in_child
    async with store_at(db) as store:  # what the killed child left on disk
        assert await bank.ledger(store, "alice") == ([("Debited", "t1")] if debited_at_kill else [])
        assert await bank.ledger(store, "bob") == ([("Credited", "t1")] if credited_at_kill else [])
        pending = [e.signal.handler for e in await store.read_inbox(after=0, limit=100)]
        assert pending == ([] if block_at == "done" else ["start"])
        journaled = sql(db, "SELECT count(*) FROM journal")[0][0]
        assert journaled == {"step-1": 0, "step-2": 2, "step-3": 4, "done": 0}[block_at]

    async with bank.reopen(db) as system:
        assert bank.marks == in_parent  # finished steps replayed from the journal, not re-run
        assert await system.ref(bank.Transfer, "t1").ask(bank.Transfer.get_status) == "completed"
        assert await balances(system) == {"alice": 70, "bob": 30, "shut": 0}
        assert sum((await balances(system)).values()) == sum(OPENING.values())
        assert await bank.ledger(system.store, "alice") == [("Debited", "t1")]
        assert await bank.ledger(system.store, "bob") == [("Credited", "t1")]
        await check_no_step_applied_twice(system.store)
        assert await system.store.read_inbox(after=0, limit=100) == []
        assert sql(db, "SELECT count(*) FROM journal") == [(0,)]
        assert await system.dead_letters() == []


@pytest.mark.parametrize(
    ("block_at", "in_child", "in_parent", "refunded_at_kill"),
    [
        # between the debit and the refused credit
        ("step-2", ["step-1", "step-2"], ["step-2", "comp-1", "comp-2"], False),
        # compensating, before the refund
        ("comp-1", ["step-1", "step-2", "comp-1"], ["comp-1", "comp-2"], False),
        # compensating, after the refund
        ("comp-2", ["step-1", "step-2", "comp-1", "comp-2"], ["comp-2"], True),
    ],
)
async def test_a_refused_transfer_killed_while_compensating_is_compensated_once(
    store_location: str, block_at: str, in_child: list[str], in_parent: list[str], refunded_at_kill: bool
) -> None:
    db, printed = await run_and_kill(store_location, "shut", block_at)
    assert printed == in_child
    async with store_at(db) as store:
        expected = [("Debited", "t1")] + ([("Refunded", "t1")] if refunded_at_kill else [])
        assert await bank.ledger(store, "alice") == expected
        assert [e.signal.handler for e in await store.read_inbox(after=0, limit=100)] == ["start"]

    async with bank.reopen(db) as system:
        assert bank.marks == in_parent  # the compensation resumed where it was killed
        assert await system.ref(bank.Transfer, "t1").ask(bank.Transfer.get_status) == "compensated"
        assert await balances(system) == OPENING
        assert await bank.ledger(system.store, "alice") == [("Debited", "t1"), ("Refunded", "t1")]
        assert await bank.ledger(system.store, "shut") == []
        await check_no_step_applied_twice(system.store)
        assert await system.store.read_inbox(after=0, limit=100) == []
        assert await system.dead_letters() == []
