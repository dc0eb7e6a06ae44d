"""The bank's entities: ``Account`` (one per account id) and ``Transfer`` (one per transfer id).

An account is opened once, then takes deposits and withdrawals; it refuses to go
below zero unless an overdraft limit is set. Its statement keeps the last
``STATEMENT_SIZE`` entries, each stamped with ``self.now()`` (the deterministic
time of the invocation, so a replay stamps the same time).

A transfer is a saga: debit the source, credit the destination, and when the
credit is refused, put the money back on the source. Each step is a journaled
``ask`` with an idempotency key derived from the transfer id, so a transfer
resumed after a crash, or sent twice, moves the money once.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, Literal

import attrs

from actors import Entity, Rejected, applies, query, signal

STATEMENT_SIZE = 100
"""Entries an account keeps for its statement (older ones are dropped from the state)."""
MAX_AMOUNT = 10**12
"""The largest amount one deposit, withdrawal or transfer may move."""
MAX_ID = 100


# ---------------------------------------------------------------- business errors


class BankError(Rejected):
    """Base of the bank's refusals."""


class InvalidRequest(BankError):
    """The request itself is wrong: a non-positive amount, an empty owner, a bad id."""


class AccountNotOpen(BankError):
    """The account was never opened."""


class AccountAlreadyOpen(BankError):
    """The account is open already (for another owner)."""


class InsufficientFunds(BankError):
    """The withdrawal would go below the overdraft limit."""


class UnknownTransfer(BankError):
    """No transfer was ever started under this id."""


class TransferConflict(BankError):
    """The transfer id was used before with other details."""


def check_amount(amount: int) -> None:
    """Raise InvalidRequest unless ``amount`` is a positive amount we handle."""
    if amount <= 0:
        raise InvalidRequest(f"amount must be positive, got {amount}")
    if amount > MAX_AMOUNT:
        raise InvalidRequest(f"amount must be at most {MAX_AMOUNT}, got {amount}")


def check_id(what: str, value: str) -> None:
    """Raise InvalidRequest unless ``value`` is a usable id (1 to 100 printable characters)."""
    if not value or len(value) > MAX_ID or not value.isprintable():
        raise InvalidRequest(f"{what} must be 1 to {MAX_ID} printable characters, got {value!r:.120}")


# ---------------------------------------------------------------- account


@attrs.frozen
class AccountOpened:
    owner: str
    overdraft_limit: int
    at: dt.datetime


@attrs.frozen
class Deposited:
    amount: int
    reference: str
    at: dt.datetime


@attrs.frozen
class Withdrawn:
    amount: int
    reference: str
    at: dt.datetime


@attrs.frozen
class OverdraftLimitSet:
    limit: int
    at: dt.datetime


@attrs.frozen
class Entry:
    """One line of a statement."""

    at: dt.datetime
    """When it happened (the invocation's ``self.now()``)."""
    kind: Literal["open", "deposit", "withdrawal"]
    amount: int
    """Positive for money in, negative for money out."""
    balance: int
    """The balance after this entry."""
    reference: str
    """What the caller said it was for (a transfer names itself here)."""


@attrs.frozen
class AccountView:
    """What ``Account.summary`` answers."""

    id: str
    owner: str
    balance: int
    overdraft_limit: int
    opened_at: dt.datetime
    entries: int
    """Entries in all since the account was opened."""


@attrs.define
class Account(Entity):
    """A bank account. Amounts are in cents."""

    owner: str = ""
    opened_at: dt.datetime | None = None
    balance: int = 0
    overdraft_limit: int = 0
    recent: tuple[Entry, ...] = ()
    entries: int = 0
    snapshot_every: ClassVar[int] = 200

    # -- signals
    @signal
    def open(self, owner: str, overdraft_limit: int = 0) -> AccountView:
        """Open the account; opening it again for the same owner answers the same."""
        check_id("owner", owner)
        if overdraft_limit < 0 or overdraft_limit > MAX_AMOUNT:
            raise InvalidRequest(f"overdraft_limit must be 0 to {MAX_AMOUNT}, got {overdraft_limit}")
        if self.opened_at is not None:
            if owner != self.owner:
                raise AccountAlreadyOpen(f"account {self.id!r} is already open (owner {self.owner!r})")
            return self.summary()
        self.emit(AccountOpened(owner, overdraft_limit, self.now()))
        return self.summary()

    @signal
    def deposit(self, amount: int, reference: str = "") -> int:
        """Put money in; returns the new balance."""
        self._check_open()
        check_amount(amount)
        self.emit(Deposited(amount, reference[:200], self.now()))
        return self.balance

    @signal
    def withdraw(self, amount: int, reference: str = "") -> int:
        """Take money out (down to minus the overdraft limit); returns the new balance."""
        self._check_open()
        check_amount(amount)
        if self.balance - amount < -self.overdraft_limit:
            raise InsufficientFunds(
                f"insufficient funds in {self.id!r}: balance {self.balance}, "
                f"overdraft limit {self.overdraft_limit}, asked for {amount}"
            )
        self.emit(Withdrawn(amount, reference[:200], self.now()))
        return self.balance

    @signal
    def set_overdraft_limit(self, limit: int) -> AccountView:
        """Allow the balance to go down to ``-limit`` (0: no overdraft)."""
        self._check_open()
        if limit < 0 or limit > MAX_AMOUNT:
            raise InvalidRequest(f"overdraft limit must be 0 to {MAX_AMOUNT}, got {limit}")
        if self.balance < -limit:
            raise InvalidRequest(f"the balance {self.balance} is already below -{limit}")
        if limit != self.overdraft_limit:
            self.emit(OverdraftLimitSet(limit, self.now()))
        return self.summary()

    # -- queries
    @query
    def get_balance(self) -> int:
        """The balance."""
        self._check_open()
        return self.balance

    @query
    def summary(self) -> AccountView:
        """Owner, balance, limit and when it was opened."""
        self._check_open()
        assert self.opened_at is not None
        return AccountView(
            self.id, self.owner, self.balance, self.overdraft_limit, self.opened_at, self.entries
        )

    @query
    def statement(self, last: int = 10) -> list[Entry]:
        """The last ``last`` entries (at most ``STATEMENT_SIZE``), oldest first."""
        self._check_open()
        if not 1 <= last <= STATEMENT_SIZE:
            raise InvalidRequest(f"last must be 1 to {STATEMENT_SIZE}, got {last}")
        return list(self.recent[-last:])

    def _check_open(self) -> None:
        if self.opened_at is None:
            raise AccountNotOpen(f"account {self.id!r} is not open")

    # -- appliers
    def _add(self, entry: Entry) -> None:
        self.recent = (*self.recent[-(STATEMENT_SIZE - 1) :], entry)
        self.entries += 1

    @applies
    def _opened(self, e: AccountOpened) -> None:
        self.owner = e.owner
        self.opened_at = e.at
        self.overdraft_limit = e.overdraft_limit
        self._add(Entry(e.at, "open", 0, 0, f"opened for {e.owner}"))

    @applies
    def _deposited(self, e: Deposited) -> None:
        self.balance += e.amount
        self._add(Entry(e.at, "deposit", e.amount, self.balance, e.reference))

    @applies
    def _withdrawn(self, e: Withdrawn) -> None:
        self.balance -= e.amount
        self._add(Entry(e.at, "withdrawal", -e.amount, self.balance, e.reference))

    @applies
    def _limit_set(self, e: OverdraftLimitSet) -> None:
        self.overdraft_limit = e.limit


# ---------------------------------------------------------------- transfer

TransferStatus = Literal["new", "completed", "failed", "reversed"]
"""``failed``: the debit was refused, nothing moved. ``reversed``: the credit was
refused and the debit was put back."""


@attrs.frozen
class TransferRequested:
    source: str
    destination: str
    amount: int
    at: dt.datetime


@attrs.frozen
class TransferCompleted:
    at: dt.datetime


@attrs.frozen
class TransferFailed:
    reason: str
    refusal: str
    """The refusal's class name (``InsufficientFunds``, ``AccountNotOpen``...)."""
    reversed: bool
    """The source was debited, then refunded."""
    at: dt.datetime


@attrs.frozen
class TransferView:
    """What ``Transfer.start`` and ``Transfer.status`` answer."""

    id: str
    status: TransferStatus
    source: str
    destination: str
    amount: int
    reason: str
    """Why it failed or was reversed (empty when it completed)."""
    refusal: str
    """The class name of the refusal that stopped it (empty when it completed)."""
    requested_at: dt.datetime | None
    finished_at: dt.datetime | None


@attrs.define
class Transfer(Entity):
    """Moves money from one account to another, once per transfer id."""

    status: TransferStatus = "new"
    source: str = ""
    destination: str = ""
    amount: int = 0
    reason: str = ""
    refusal: str = ""
    requested_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    snapshot_every: ClassVar[int] = 0

    @signal
    async def start(self, source: str, destination: str, amount: int) -> TransferView:
        """Run the transfer (or answer how it went, if this id ran before)."""
        if self.status != "new":
            if (source, destination, amount) != (self.source, self.destination, self.amount):
                raise TransferConflict(
                    f"transfer {self.id!r} was already requested as {self.amount} "
                    f"from {self.source!r} to {self.destination!r}"
                )
            return self.view()
        check_id("source", source)
        check_id("destination", destination)
        check_amount(amount)
        if source == destination:
            raise InvalidRequest("source and destination are the same account")
        self.emit(TransferRequested(source, destination, amount, self.now()))
        await self._run_saga()
        return self.view()

    async def _run_saga(self) -> None:
        note = f"transfer {self.id}"
        src = self.ref(Account, self.source)
        dst = self.ref(Account, self.destination)
        debited = False
        try:
            async with self.saga() as saga:
                await src.options(key=f"{note}/debit").ask(Account.withdraw, self.amount, note)
                debited = True
                refund = src.options(key=f"{note}/refund")
                saga.compensate(refund.ask, Account.deposit, self.amount, f"{note} reversed")
                await dst.options(key=f"{note}/credit").ask(Account.deposit, self.amount, note)
        except Rejected as refused:
            kind = type(refused).__name__
            self.emit(TransferFailed(refused.message, kind, debited, self.now()))
            return
        self.emit(TransferCompleted(self.now()))

    @query
    def view(self) -> TransferView:
        """The transfer's status (a transfer shows here once its saga has run: it commits at the end)."""
        if self.status == "new":
            raise UnknownTransfer(f"no transfer {self.id!r} has run (yet)")
        return TransferView(
            self.id,
            self.status,
            self.source,
            self.destination,
            self.amount,
            self.reason,
            self.refusal,
            self.requested_at,
            self.finished_at,
        )

    @applies
    def _requested(self, e: TransferRequested) -> None:
        self.source, self.destination, self.amount = e.source, e.destination, e.amount
        self.requested_at = e.at

    @applies
    def _completed(self, e: TransferCompleted) -> None:
        self.status = "completed"
        self.finished_at = e.at

    @applies
    def _failed(self, e: TransferFailed) -> None:
        self.status = "reversed" if e.reversed else "failed"
        self.reason = e.reason
        self.refusal = e.refusal
        self.finished_at = e.at


ENTITIES: list[type[Entity]] = [Account, Transfer]
"""What an ActorSystem running the bank is given."""
