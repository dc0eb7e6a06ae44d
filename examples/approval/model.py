"""An expense approval: a human in the loop, a deadline, an escalation and cancellation.

``Expense.submit`` holds the amount on its team's ``Budget`` (a journaled ask), then
waits for a decision without blocking the expense: ``approve``/``deny`` run while it
waits. After 48 hours without one it escalates to a manager and waits 24 hours more;
still nothing, or a denial, refuses the expense (``Rejected(commit=True)`` keeps the
record of why) and the saga gives the hold back. The submitter can cancel it
(``handle.cancel``): the wait raises ``Cancelled`` and the saga gives the hold back
too. An approval spends the hold. So every hold ends spent or released, once.
"""

from __future__ import annotations

import datetime as dt

import attrs

from actors import Cancelled, Entity, Rejected, applies, event_type, query, signal

FIRST_WAIT = dt.timedelta(hours=48)
"""How long the approver has before the expense escalates."""
ESCALATED_WAIT = dt.timedelta(hours=24)
"""How long the manager has after the escalation."""


@event_type("approval.held")
@attrs.frozen
class Held:
    """Budget: ``amount`` is held for ``expense``."""

    expense: str
    amount: int


@event_type("approval.released")
@attrs.frozen
class Released:
    """Budget: the hold of ``expense`` went back to what is left."""

    expense: str


@event_type("approval.spent")
@attrs.frozen
class Spent:
    """Budget: the hold of ``expense`` was spent."""

    expense: str


@attrs.frozen
class BudgetView:
    """What a budget's ``status`` query answers."""

    left: int
    held: int
    spent: int
    released: int


@attrs.define
class Budget(Entity):
    """A team's budget: what is left, what pending expenses hold, what was spent."""

    left: int = 1_000
    holds: dict[str, int] = attrs.field(factory=dict)
    spent: int = 0
    released: int = 0

    @signal
    def hold(self, expense: str, amount: int) -> int:
        """Hold ``amount`` for ``expense`` (once per expense); what is left after it."""
        if expense in self.holds:
            return self.left
        if amount > self.left:
            raise Rejected(f"budget has {self.left} left, {amount} asked")
        self.emit(Held(expense, amount))
        return self.left

    @signal
    def release(self, expense: str) -> None:
        """Give the hold of ``expense`` back (nothing if it holds nothing)."""
        if expense in self.holds:
            self.emit(Released(expense))

    @signal
    def spend(self, expense: str) -> None:
        """Spend the hold of ``expense`` (nothing if it holds nothing)."""
        if expense in self.holds:
            self.emit(Spent(expense))

    @query
    def status(self) -> BudgetView:
        """Left, held, spent and released so far."""
        return BudgetView(self.left, sum(self.holds.values()), self.spent, self.released)

    @applies
    def _held(self, e: Held) -> None:
        self.holds = {**self.holds, e.expense: e.amount}
        self.left -= e.amount

    @applies
    def _released(self, e: Released) -> None:
        holds = dict(self.holds)
        amount = holds.pop(e.expense)
        self.left += amount
        self.released += amount
        self.holds = holds

    @applies
    def _spent(self, e: Spent) -> None:
        holds = dict(self.holds)
        self.spent += holds.pop(e.expense)
        self.holds = holds


@event_type("approval.submitted")
@attrs.frozen
class Submitted:
    """Expense: submitted for ``team``'s budget."""

    team: str
    amount: int


@event_type("approval.decided")
@attrs.frozen
class Decided:
    """Expense: approved or denied by someone."""

    verdict: str
    by: str


@event_type("approval.escalated")
@attrs.frozen
class Escalated:
    """Expense: no decision in time; a manager decides now."""

    to: str


@event_type("approval.closed")
@attrs.frozen
class Closed:
    """Expense: its workflow ended (``approved``, ``denied``, ``timed out``, ``cancelled``)."""

    outcome: str


@attrs.frozen
class ExpenseView:
    """What an expense's ``status`` query answers."""

    team: str
    amount: int
    decision: str | None
    by: str
    escalated_to: str | None
    outcome: str | None


@attrs.define
class Expense(Entity):
    """One expense report and its approval workflow."""

    team: str = ""
    amount: int = 0
    decision: str | None = None
    by: str = ""
    escalated_to: str | None = None
    outcome: str | None = None

    @signal
    async def submit(self, team: str, amount: int, manager: str = "manager") -> str:
        """Hold the amount, wait for a decision (escalating once), then spend or release."""
        if self.team:
            raise Rejected(f"expense {self.id} was already submitted")
        if amount <= 0:
            raise Rejected("amount must be positive")
        self.emit(Submitted(team, amount))
        budget = self.ref(Budget, team)
        try:  # a cancel reaches the next durable await: the hold's ask, a wait or the spend
            async with self.saga() as saga:
                saga.compensate(budget.ask, Budget.release, self.id)
                await budget.ask(Budget.hold, self.id, amount)
                decided = await self.wait_until(lambda: self.decision is not None, timeout=FIRST_WAIT)
                if not decided:
                    self.emit(Escalated(manager))
                    decided = await self.wait_until(lambda: self.decision is not None, timeout=ESCALATED_WAIT)
                if not decided:
                    self.emit(Closed("timed out"))
                    raise Rejected("no decision within 72 hours", commit=True)
                if self.decision != "approved":
                    self.emit(Closed("denied"))
                    raise Rejected(f"denied by {self.by}", commit=True)
                await budget.ask(Budget.spend, self.id)
                self.emit(Closed("approved"))
        except Cancelled:
            self.emit(Closed("cancelled"))  # after the saga gave the hold back; kept with the outcome
            raise
        return f"approved by {self.by}"

    @signal
    def approve(self, by: str) -> None:
        """Approve the pending expense (refused once it is decided or closed)."""
        self._decide("approved", by)

    @signal
    def deny(self, by: str) -> None:
        """Deny the pending expense (refused once it is decided or closed)."""
        self._decide("denied", by)

    def _decide(self, verdict: str, by: str) -> None:
        if not self.team or self.outcome is not None or self.decision is not None:
            state = self.outcome or self.decision or "not submitted"
            raise Rejected(f"expense {self.id} is not waiting for a decision ({state})")
        if self.escalated_to is not None and by != self.escalated_to:
            raise Rejected(f"expense {self.id} was escalated to {self.escalated_to}; {by} cannot decide it")
        self.emit(Decided(verdict, by))

    @query
    def status(self) -> ExpenseView:
        """The expense and where its workflow is."""
        return ExpenseView(self.team, self.amount, self.decision, self.by, self.escalated_to, self.outcome)

    @applies
    def _submitted(self, e: Submitted) -> None:
        self.team = e.team
        self.amount = e.amount

    @applies
    def _decided(self, e: Decided) -> None:
        self.decision = e.verdict
        self.by = e.by

    @applies
    def _escalated(self, e: Escalated) -> None:
        self.escalated_to = e.to

    @applies
    def _closed(self, e: Closed) -> None:
        self.outcome = e.outcome
