"""Entities shared by the tests: the bank account of DESIGN.md and a few misfits."""

from __future__ import annotations

import attrs

from actors import Entity, Rejected, applies, query, signal


@attrs.frozen
class Deposited:
    amount: int


@attrs.frozen
class Withdrawn:
    amount: int


class InsufficientFunds(Rejected):
    """A distinct refusal, to check subclasses survive a repeat."""


@attrs.define
class Account(Entity):
    """The DESIGN.md account."""

    balance: int = 0
    snapshot_every = 100

    @signal
    def deposit(self, amount: int) -> int:
        if amount <= 0:
            raise Rejected("amount must be positive")
        self.emit(Deposited(amount))
        return self.balance

    @signal
    def withdraw(self, amount: int) -> int:
        if amount > self.balance:
            raise InsufficientFunds("insufficient funds")
        self.emit(Withdrawn(amount))
        return self.balance

    @applies
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount

    @applies
    def _withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount

    @query
    def get_balance(self) -> int:
        return self.balance
