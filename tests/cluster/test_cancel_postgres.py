"""A cancel reaches an invocation parked on another member of a shared PostgreSQL
store at once: the canceller records it and wakes the member that runs it (the
``cancel`` wake-up). It once failed on PostgreSQL only (the store refused the topic),
and the invocation learned of its cancel only when its wait ran out."""

from __future__ import annotations

import datetime as dt

import anyio
import pytest

from actors import ActorSystem, Cancelled
from examples.approval.model import Budget, Expense
from persistence import PostgresStore
from persistence.testing import until

pytestmark = pytest.mark.anyio

TTL = dt.timedelta(seconds=2)
APPROVAL = [Budget, Expense]


async def test_a_client_cancels_a_workflow_parked_on_a_member(pg_dsn: str) -> None:
    async with (
        ActorSystem(PostgresStore(pg_dsn), APPROVAL, lease_ttl=TTL) as member,
        ActorSystem(PostgresStore(pg_dsn), APPROVAL, serve=False, lease_ttl=TTL) as client,
    ):
        handle = await client.ref(Expense, "e1").start(Expense.submit, "team", 40)

        async def parked() -> bool:
            held = await client.ref(Budget, "team").query(Budget.status)
            return held.held == 40

        await until(parked, "the workflow holds its amount and waits for a decision")
        assert member.statistics().active_actors >= 2  # it runs on the member
        await handle.cancel("withdrawn")
        with anyio.fail_after(5):  # its wait is hours long: only the wake-up ends it now
            with pytest.raises(Cancelled):
                await handle.result()
        status = await client.ref(Budget, "team").query(Budget.status)
        assert (status.held, status.spent) == (0, 0)
