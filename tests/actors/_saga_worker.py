"""Child process of the kill -9 tests, and the parent's side of them (not a test module).

The child runs a bank (``Account``, ``Transfer``) on a SQLite file with the real
clock, starts one piece of work with a ``tell`` and prints a marker line from
inside each step. At the step named on its command line it blocks (on stdin, which
the parent never writes), so the parent kills it at a known point::

    python -c "from tests.actors._saga_worker import main; main()" DB MODE

``MODE`` is ``outbox`` (an ``Account.pay`` whose outbox message is committed but
not delivered: the child blocks in the delivery) or ``transfer:DST:BLOCK_AT`` (a
transfer of 30 from ``alice`` to ``DST``; ``BLOCK_AT`` is one of ``step-1``,
``step-2``, ``step-3``, ``comp-1``, ``comp-2`` or ``done``).

The transfer saga registers each undo before its step: the refund of the debit
(a no-op for a transfer that debited nothing), and two marker compensations
around it, so a kill can fall before the refund (``comp-1``) or after it
(``comp-2``). The handlers themselves do not deduplicate debits, credits or
refunds by transfer id: a step applied twice would show in the event log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import anyio.abc
import attrs

from actors import ActorSystem, Entity, Rejected, applies, query, signal
from actors.testing import VirtualClock
from persistence import Store
from persistence.store import SignalRecord
from tests._stores import store_at

ROOT = Path(__file__).resolve().parents[2]
CHILD_CODE = "from tests.actors._saga_worker import main; main()"
KILL_DEADLINE = 8.0

BLOCK_AT: str | None = None
"""In the child: the marker at which ``mark`` blocks. None in the parent."""
marks: list[str] = []
"""Markers passed in this process, in order."""


def mark(name: str) -> str:
    """An activity that reports a point of the saga, and blocks there in the child."""
    marks.append(name)
    print(name, flush=True)
    if name == BLOCK_AT:
        sys.stdin.readline()  # the parent never writes: wait here for the kill
    return name


# ---------------------------------------------------------------- the bank


@attrs.frozen
class Opened:
    amount: int


@attrs.frozen
class Debited:
    transfer_id: str
    amount: int


@attrs.frozen
class Credited:
    transfer_id: str
    amount: int


@attrs.frozen
class Refunded:
    transfer_id: str
    amount: int


@attrs.frozen
class Closed:
    pass


@attrs.frozen
class Finished:
    status: str
    reason: str


class Refused(Rejected):
    """A refusal of the bank."""


@attrs.define
class Account(Entity):
    entity_name = "BankAccount"  # tests.models.Account is "Account"

    balance: int = 0
    closed: bool = False
    debits: tuple[str, ...] = ()

    @signal
    def open(self, amount: int) -> int:
        self.emit(Opened(amount))
        return self.balance

    @signal
    def close(self) -> None:
        self.emit(Closed())

    @signal
    def debit(self, transfer_id: str, amount: int) -> int:
        if amount > self.balance:
            raise Refused(f"{self.id}: insufficient funds")
        self.emit(Debited(transfer_id, amount))
        return self.balance

    @signal
    def credit(self, transfer_id: str, amount: int) -> int:
        if self.closed:
            raise Refused(f"{self.id} is closed")
        self.emit(Credited(transfer_id, amount))
        return self.balance

    @signal
    def refund(self, transfer_id: str, amount: int) -> int:
        """Undo a debit; nothing to undo when the transfer never debited here."""
        if transfer_id in self.debits:
            self.emit(Refunded(transfer_id, amount))
        return self.balance

    @signal
    async def pay(self, transfer_id: str, to: str, amount: int) -> int:
        """Debit here and credit ``to`` through the outbox."""
        if amount > self.balance:
            raise Refused(f"{self.id}: insufficient funds")
        self.emit(Debited(transfer_id, amount))
        await self.ref(Account, to).tell(Account.credit, transfer_id, amount)
        return self.balance

    @query
    def get_balance(self) -> int:
        return self.balance

    @applies
    def _opened(self, e: Opened) -> None:
        self.balance += e.amount

    @applies
    def _closed(self, e: Closed) -> None:
        self.closed = True

    @applies
    def _debited(self, e: Debited) -> None:
        self.balance -= e.amount
        self.debits = (*self.debits, e.transfer_id)

    @applies
    def _credited(self, e: Credited) -> None:
        self.balance += e.amount

    @applies
    def _refunded(self, e: Refunded) -> None:
        self.balance += e.amount


@attrs.define
class Transfer(Entity):
    """Moves money from one account to another; its id is the transfer id."""

    status: str = "new"
    reason: str = ""

    @signal
    async def start(self, src: str, dst: str, amount: int) -> str:
        tid = self.id
        try:
            async with self.saga() as saga:
                saga.compensate(mark, "comp-2")  # runs last, after the refund
                await self.run(mark, "step-1")
                saga.compensate(self.ref(Account, src).ask, Account.refund, tid, amount)
                await self.ref(Account, src).ask(Account.debit, tid, amount)
                saga.compensate(mark, "comp-1")  # runs first, before the refund
                await self.run(mark, "step-2")
                await self.ref(Account, dst).ask(Account.credit, tid, amount)
                await self.run(mark, "step-3")
        except Rejected as r:
            self.emit(Finished("compensated", r.message))
            return self.status
        self.emit(Finished("completed", ""))
        return self.status

    @signal
    def get_status(self) -> str:
        """A signal, not a query: an ask of it waits behind a pending ``start``."""
        return self.status

    @applies
    def _finished(self, e: Finished) -> None:
        self.status = e.status
        self.reason = e.reason


ENTITIES: list[type[Entity]] = [Account, Transfer]


# ---------------------------------------------------------------- the child


async def child(db: str, mode: str) -> None:
    global BLOCK_AT
    async with ActorSystem(store_at(db), ENTITIES) as system:
        if mode == "outbox":

            def stuck(ids: Sequence[int], signals: Sequence[SignalRecord]) -> None:
                print("outbox-committed", flush=True)
                sys.stdin.readline()  # blocks the whole process: nothing gets delivered

            system._directory.deliver_outbox = stuck  # type: ignore[method-assign]
            await system.ref(Account, "alice").tell(Account.pay, "pay-1", "bob", 30)
        else:
            _, dst, BLOCK_AT = mode.split(":")
            transfer = system.ref(Transfer, "t1")
            await transfer.tell(Transfer.start, "alice", dst, 30)
            status = await transfer.ask(Transfer.get_status)
            print(status, flush=True)
            print("done", flush=True)
            if BLOCK_AT == "done":
                await anyio.to_thread.run_sync(sys.stdin.readline)
        await anyio.sleep_forever()


def main() -> None:
    anyio.run(child, sys.argv[1], sys.argv[2])


# ---------------------------------------------------------------- the parent


async def open_accounts(db: str | Path, balances: dict[str, int], *, closed: Sequence[str] = ()) -> None:
    """Create the accounts (in this process), then close the store for the child."""
    async with ActorSystem(store_at(db), ENTITIES) as system:
        for name, amount in balances.items():
            await system.ref(Account, name).ask(Account.open, amount)
        for name in closed:
            await system.ref(Account, name).ask(Account.close)


async def spawn(db: str | Path, mode: str) -> anyio.abc.Process:
    """Start the child on ``db``; use as ``async with await spawn(...) as proc``."""
    return await anyio.open_process([sys.executable, "-c", CHILD_CODE, str(db), mode], cwd=ROOT)


async def kill_at(proc: anyio.abc.Process, marker: str) -> list[str]:
    """Read the child's marker lines until ``marker``, then kill -9 it; the lines read."""
    assert proc.stdout is not None
    buf = b""
    try:
        with anyio.fail_after(KILL_DEADLINE):
            while marker.encode() not in buf.split(b"\n")[:-1]:
                buf += await proc.stdout.receive()
    except (anyio.EndOfStream, TimeoutError):
        proc.kill()
        await proc.wait()
        assert proc.stderr is not None
        err = b"".join([chunk async for chunk in proc.stderr]).decode(errors="replace")
        raise AssertionError(
            f"the child never reached {marker!r}; it printed {buf!r}; stderr:\n{err}"
        ) from None
    proc.kill()
    assert await proc.wait() == -9
    return buf.decode().split()


@contextlib.asynccontextmanager
async def reopen(db: str | Path) -> AsyncIterator[ActorSystem]:
    """A new system on ``db`` (the restart), once everything it recovered has settled."""
    clock = VirtualClock(dt.datetime.now(dt.UTC))
    marks.clear()
    async with ActorSystem(store_at(db), ENTITIES, clock=clock) as system:
        # settled is not enough: an activity attempt (a marker) waits on the world, not on
        # the clock, so the recovered work is done when none runs and the inbox is empty
        work = system._kernel.work
        with anyio.fail_after(KILL_DEADLINE):
            while True:
                await clock.settle()
                if not work.running_activities and not await system.store.read_inbox(after=0, limit=1):
                    break
                # a step that failed waits on the clock to retry (a compensation's backoff):
                # move time on; an activity attempt under way needs real time instead
                await clock.advance(dt.timedelta(seconds=1))
                await anyio.sleep(0.005)
        yield system


async def ledger(store: Store, account: str) -> list[tuple[str, str]]:
    """(event name, transfer id) of an account's money movements, in order."""
    events = await store.read_events("BankAccount", account, after=0, limit=10_000)
    out = []
    for e in events:
        name = e.type_name.rsplit(".", 1)[-1]
        if name in ("Debited", "Credited", "Refunded"):
            out.append((name, json.loads(e.data)["transfer_id"]))
    return out


if __name__ == "__main__":
    from tests.actors._saga_worker import main as _main  # the module, not a second __main__ copy

    _main()
