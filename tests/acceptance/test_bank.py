"""The bank example's entities, in process: accounts, statements, the transfer saga."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from actors import ActorSystem, IdempotencyConflict, InvalidArguments
from actors.testing import DEFAULT_START, VirtualClock
from examples.bank.model import (
    ENTITIES,
    STATEMENT_SIZE,
    Account,
    AccountAlreadyOpen,
    AccountNotOpen,
    InsufficientFunds,
    InvalidRequest,
    Transfer,
    TransferConflict,
    UnknownTransfer,
)
from persistence import MemoryStore, SqliteStore, Store

pytestmark = pytest.mark.anyio

StoreFactory = Callable[[], Store]
MIN = dt.timedelta(minutes=1)


def bank(store: Store, clock: VirtualClock | None = None) -> ActorSystem:
    return ActorSystem(store, entities=ENTITIES, clock=clock or VirtualClock())


async def open_with(system: ActorSystem, acc: str, amount: int, limit: int = 0) -> None:
    ref = system.ref(Account, acc)
    await ref.ask(Account.open, f"owner of {acc}", limit)
    if amount:
        await ref.ask(Account.deposit, amount, "opening")


async def balances(system: ActorSystem, *accounts: str) -> list[int]:
    return [await system.ref(Account, a).query(Account.get_balance) for a in accounts]


# ---------------------------------------------------------------- accounts


async def test_deposits_and_withdrawals_make_a_timestamped_statement(store_factory: StoreFactory) -> None:
    clock = VirtualClock()
    async with bank(store_factory(), clock) as system:
        alice = system.ref(Account, "alice")
        view = await alice.ask(Account.open, "Alice")
        assert (view.owner, view.balance, view.opened_at) == ("Alice", 0, DEFAULT_START)
        await clock.advance(MIN)
        assert await alice.ask(Account.deposit, 100_00, "salary") == 100_00
        await clock.advance(MIN)
        assert await alice.ask(Account.withdraw, 30_00) == 70_00
        assert await alice.query(Account.get_balance) == 70_00
        entries = await alice.query(Account.statement, 2)
    assert [(e.at, e.kind, e.amount, e.balance, e.reference) for e in entries] == [
        (DEFAULT_START + MIN, "deposit", 100_00, 100_00, "salary"),
        (DEFAULT_START + 2 * MIN, "withdrawal", -30_00, 70_00, ""),
    ]
    async with bank(store_factory(), clock) as system:  # the same after a restart
        alice = system.ref(Account, "alice")
        assert [e.kind for e in await alice.query(Account.statement, 10)] == ["open", "deposit", "withdrawal"]
        assert (await alice.query(Account.summary)).entries == 3


async def test_no_overdraft_unless_a_limit_is_set() -> None:
    async with bank(MemoryStore()) as system:
        await open_with(system, "a", 10_00)
        a = system.ref(Account, "a")
        with pytest.raises(InsufficientFunds, match="insufficient funds"):
            await a.ask(Account.withdraw, 10_01)
        await a.ask(Account.set_overdraft_limit, 5_00)
        assert await a.ask(Account.withdraw, 15_00) == -5_00
        with pytest.raises(InsufficientFunds):
            await a.ask(Account.withdraw, 1)
        with pytest.raises(InvalidRequest, match="already below"):
            await a.ask(Account.set_overdraft_limit, 0)
        assert await a.query(Account.get_balance) == -5_00


async def test_an_account_limited_at_opening_may_go_below_zero() -> None:
    async with bank(MemoryStore()) as system:
        await open_with(system, "a", 0, limit=50)
        assert await system.ref(Account, "a").ask(Account.withdraw, 50) == -50


async def test_bad_input_is_a_clear_refusal_that_changes_nothing() -> None:
    async with bank(MemoryStore()) as system:
        ghost = system.ref(Account, "ghost")
        with pytest.raises(AccountNotOpen, match="account 'ghost' is not open"):
            await ghost.ask(Account.deposit, 100)
        with pytest.raises(AccountNotOpen):
            await ghost.query(Account.get_balance)
        await open_with(system, "a", 100)
        a = system.ref(Account, "a")
        for amount in (0, -5):
            with pytest.raises(InvalidRequest, match="amount must be positive"):
                await a.ask(Account.deposit, amount)
            with pytest.raises(InvalidRequest):
                await a.ask(Account.withdraw, amount)
        with pytest.raises(InvalidRequest, match="at most"):
            await a.ask(Account.deposit, 10**13)
        with pytest.raises(InvalidArguments):
            await a.ask("deposit", "ten")
        with pytest.raises(InvalidRequest):
            await a.query(Account.statement, 0)
        with pytest.raises(InvalidRequest):
            await system.ref(Account, "b").ask(Account.open, "")
        assert (await a.ask(Account.open, "owner of a")).balance == 100  # same owner: same answer
        with pytest.raises(AccountAlreadyOpen):
            await a.ask(Account.open, "mallory")
        assert await a.query(Account.get_balance) == 100


async def test_the_statement_keeps_the_last_entries() -> None:
    async with bank(MemoryStore()) as system:
        await open_with(system, "a", 0)
        a = system.ref(Account, "a")
        for i in range(1, STATEMENT_SIZE + 11):
            await a.ask(Account.deposit, i)
        entries = await a.query(Account.statement, STATEMENT_SIZE)
        assert len(entries) == STATEMENT_SIZE
        assert entries[-1].amount == STATEMENT_SIZE + 10
        assert (await a.query(Account.summary)).entries == STATEMENT_SIZE + 11


# ---------------------------------------------------------------- transfers


async def test_a_transfer_moves_money_once(store_factory: StoreFactory) -> None:
    async with bank(store_factory()) as system:
        await open_with(system, "a", 100)
        await open_with(system, "b", 0)
        t = system.ref(Transfer, "t-1")
        view = await t.options(key="t-1").ask(Transfer.start, "a", "b", 60)
        assert (view.status, view.reason) == ("completed", "")
        again = await t.options(key="t-1").ask(Transfer.start, "a", "b", 60)  # a re-sent request
        assert again == view
        assert await t.ask(Transfer.start, "a", "b", 60) == view  # no key: the entity knows its id
        assert await balances(system, "a", "b") == [40, 60]
        with pytest.raises(TransferConflict, match="already requested"):
            await t.ask(Transfer.start, "a", "b", 61)
        with pytest.raises(IdempotencyConflict):
            await t.options(key="t-1").ask(Transfer.start, "a", "b", 61)
        assert await t.query(Transfer.view) == view
        statement = await system.ref(Account, "b").query(Account.statement)
        assert [(e.amount, e.reference) for e in statement] == [
            (0, "opened for owner of b"),
            (60, "transfer t-1"),
        ]


async def test_a_refused_credit_is_compensated() -> None:
    async with bank(MemoryStore()) as system:
        await open_with(system, "a", 100)
        view = await system.ref(Transfer, "t-1").ask(Transfer.start, "a", "nobody", 70)
        assert (view.status, view.refusal) == ("reversed", "AccountNotOpen")
        assert view.reason == "account 'nobody' is not open"
        assert await balances(system, "a") == [100]
        statement = await system.ref(Account, "a").query(Account.statement, 2)
        assert [(e.amount, e.reference) for e in statement] == [
            (-70, "transfer t-1"),
            (70, "transfer t-1 reversed"),
        ]


async def test_a_refused_debit_moves_nothing() -> None:
    async with bank(MemoryStore()) as system:
        await open_with(system, "a", 10)
        await open_with(system, "b", 0)
        view = await system.ref(Transfer, "t-1").ask(Transfer.start, "a", "b", 11)
        assert (view.status, view.refusal) == ("failed", "InsufficientFunds")
        view = await system.ref(Transfer, "t-2").ask(Transfer.start, "nobody", "b", 1)
        assert (view.status, view.refusal) == ("failed", "AccountNotOpen")
        assert await balances(system, "a", "b") == [10, 0]


async def test_a_malformed_transfer_is_refused_without_a_trace() -> None:
    async with bank(MemoryStore()) as system:
        await open_with(system, "a", 10)
        t = system.ref(Transfer, "t-1")
        for args, match in [
            (("a", "a", 1), "same account"),
            (("a", "b", 0), "positive"),
            (("a", "", 1), "destination"),
            (("a", "x" * 101, 1), "destination"),
        ]:
            with pytest.raises(InvalidRequest, match=match):
                await t.ask(Transfer.start, *args)
        with pytest.raises(UnknownTransfer):
            await t.query(Transfer.view)


async def test_transfers_interrupted_by_a_stop_resume_on_restart(tmp_path: Path) -> None:
    """Tells accepted just before the system stops run after the restart, each once."""
    db = tmp_path / "bank.db"
    accounts = [f"acc-{i}" for i in range(4)]
    plan = [(f"t-{i}", accounts[i % 4], accounts[(i + 1) % 4], 1 + i % 7) for i in range(40)]
    async with ActorSystem(SqliteStore(db), entities=ENTITIES) as system:
        for acc in accounts:
            await open_with(system, acc, 100)
        for tid, src, dst, amount in plan:
            await system.ref(Transfer, tid).options(key=tid).tell(Transfer.start, src, dst, amount)
        # leaving the block stops the system at once: some transfers are mid-saga
    async with ActorSystem(SqliteStore(db), entities=ENTITIES) as system:
        with anyio.fail_after(20):
            views = [
                await system.ref(Transfer, tid).options(key=tid).ask(Transfer.start, src, dst, amount)
                for tid, src, dst, amount in plan
            ]
        assert {v.status for v in views} == {"completed"}
        want = dict.fromkeys(accounts, 100)
        for _tid, src, dst, amount in plan:
            want[src] -= amount
            want[dst] += amount
        assert await balances(system, *accounts) == [want[a] for a in accounts]
