"""The entities the benchmarks run: the DESIGN.md bank account, and a stalled twin for W5."""

from __future__ import annotations

from typing import ClassVar

import anyio
import attrs

from actors import Entity, Rejected, applies, query, signal


@attrs.frozen
class Deposited:
    amount: int


@attrs.define
class Account(Entity):
    """The DESIGN.md account, reduced to what the benchmarks call."""

    balance: int = 0
    deposits: int = 0
    snapshot_every: ClassVar[int] = 100

    @signal
    def deposit(self, amount: int) -> int:
        if amount <= 0:
            raise Rejected("amount must be positive")
        self.emit(Deposited(amount))
        return self.balance

    @applies
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount
        self.deposits += 1

    @query
    def get_balance(self) -> int:
        return self.balance

    @query
    def get_deposits(self) -> int:
        return self.deposits


@attrs.define
class StalledAccount(Entity):
    """Stored as ``Account``, but its ``deposit`` never finishes.

    W5's child process runs this class so that every signal it accepts is still
    pending in the inbox when the parent kills it; the restarted system runs the
    real :class:`Account` and has to apply all of them.
    """

    entity_name: ClassVar[str | None] = "Account"
    balance: int = 0
    deposits: int = 0

    @signal
    async def deposit(self, amount: int) -> int:
        await anyio.sleep_forever()
        return amount

    @applies
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount
        self.deposits += 1


@attrs.frozen
class Squared:
    n: int


@attrs.define
class FanChild(Entity):
    """W10's child: records its number and answers its square."""

    n: int = -1

    @signal
    def work(self, n: int) -> int:
        self.emit(Squared(n))
        return n * n

    @applies
    def _squared(self, e: Squared) -> None:
        self.n = e.n


@attrs.frozen
class Pinged:
    count: int


@attrs.define
class FanParent(Entity):
    """W10's parent: starts ``count`` children, awaits every result; serves pings meanwhile."""

    pings: int = 0

    @signal
    async def fan_out(self, count: int) -> int:
        handles = [await self.ref(FanChild, f"c{i}").start(FanChild.work, i) for i in range(count)]
        total = 0
        for h in handles:
            total += await h.result()
        return total

    @signal
    def ping(self) -> int:
        self.emit(Pinged(self.pings + 1))
        return self.pings  # emit applied the event

    @query
    def get_pings(self) -> int:
        return self.pings

    @applies
    def _pinged(self, e: Pinged) -> None:
        self.pings = e.count
