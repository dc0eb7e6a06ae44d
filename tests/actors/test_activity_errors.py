"""ActivityFailed names its cause's type, the same on the first run and on a replay."""

from __future__ import annotations

import attrs
import pytest

from actors import ActivityFailed, ActorSystem, Entity, RetryPolicy, applies, query, signal
from tests.actors.support import StoreFactory

pytestmark = pytest.mark.anyio


class CardDeclined(Exception):
    """The fake gateway's business failure."""


CALLS: list[str] = []


def charge(amount: int) -> str:
    CALLS.append(f"charge {amount}")
    raise CardDeclined(f"declined {amount}")


@attrs.frozen
class Noted:
    cause: str


@attrs.define
class Payer(Entity):
    causes: tuple[str, ...] = ()
    crash_next: bool = True

    @signal
    async def pay(self, amount: int) -> str:
        try:
            await self.run(charge, amount, retry=RetryPolicy(non_retryable=(CardDeclined,)))
        except ActivityFailed as e:
            self.emit(Noted(e.cause_type))
        if CRASH:
            CRASH.pop()
            raise RuntimeError("crash after the activity: the re-run replays the journal")
        return self.causes[-1]

    @applies
    def _noted(self, e: Noted) -> None:
        self.causes = (*self.causes, e.cause)

    @query
    def get_causes(self) -> tuple[str, ...]:
        return self.causes


CRASH: list[bool] = []


async def test_cause_type_survives_the_journal(store_factory: StoreFactory) -> None:
    CALLS.clear()
    CRASH[:] = [True]
    async with ActorSystem(store_factory(), [Payer]) as system:
        p = system.ref(Payer, "p")
        assert await p.ask(Payer.pay, 5) == f"{__name__}.CardDeclined"
        assert CALLS == ["charge 5"]  # the re-run did not call the gateway again
        assert await p.query(Payer.get_causes) == (f"{__name__}.CardDeclined",)
