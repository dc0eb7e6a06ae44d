"""Three versions of one workflow entity, for the ``actors replay`` command tests.

``Request`` wrote the database; ``RequestCompatible`` is a later version that fits its
history (a new query, a new field with a default, the same steps before the wait);
``RequestIncompatible`` emits another event before the wait, so a parked invocation's
re-run differs from its journal.
"""

from __future__ import annotations

import datetime as dt

import attrs

from actors import Entity, applies, event_type, query, signal

DAY = dt.timedelta(days=1)


@event_type("replay_model.asked")
@attrs.frozen
class Asked:
    amount: int


@event_type("replay_model.decided")
@attrs.frozen
class Decided:
    verdict: str


@event_type("replay_model.flagged")
@attrs.frozen
class Flagged:
    why: str


@attrs.define
class Request(Entity):
    """The version that wrote the database: asks, then waits a day for a decision."""

    entity_name = "Request"
    amount: int = 0
    verdict: str | None = None

    @signal
    async def ask_for(self, amount: int) -> str:
        self.emit(Asked(amount))
        decided = await self.wait_until(lambda: self.verdict is not None, timeout=DAY)
        return self.verdict or "" if decided else "timed out"

    @signal
    def decide(self, verdict: str) -> None:
        self.emit(Decided(verdict))

    @applies
    def _asked(self, e: Asked) -> None:
        self.amount = e.amount

    @applies
    def _decided(self, e: Decided) -> None:
        self.verdict = e.verdict


@attrs.define
class RequestCompatible(Entity):
    """A later version that fits the stored history."""

    entity_name = "Request"
    amount: int = 0
    verdict: str | None = None
    note: str = ""

    @signal
    async def ask_for(self, amount: int) -> str:
        self.emit(Asked(amount))
        decided = await self.wait_until(lambda: self.verdict is not None, timeout=DAY)
        if not decided:
            return "timed out, try again"
        return self.verdict or ""

    @signal
    def decide(self, verdict: str) -> None:
        self.emit(Decided(verdict))

    @query
    def pending(self) -> bool:
        return self.verdict is None

    @applies
    def _asked(self, e: Asked) -> None:
        self.amount = e.amount

    @applies
    def _decided(self, e: Decided) -> None:
        self.verdict = e.verdict


@attrs.define
class RequestIncompatible(Entity):
    """A later version whose first segment emits another event than the journal's."""

    entity_name = "Request"
    amount: int = 0
    verdict: str | None = None

    @signal
    async def ask_for(self, amount: int) -> str:
        if amount > 100:
            self.emit(Flagged("big"))
        self.emit(Asked(amount))
        await self.wait_until(lambda: self.verdict is not None, timeout=DAY)
        return self.verdict or ""

    @signal
    def decide(self, verdict: str) -> None:
        self.emit(Decided(verdict))

    @applies
    def _asked(self, e: Asked) -> None:
        self.amount = e.amount

    @applies
    def _flagged(self, e: Flagged) -> None:
        pass

    @applies
    def _decided(self, e: Decided) -> None:
        self.verdict = e.verdict
