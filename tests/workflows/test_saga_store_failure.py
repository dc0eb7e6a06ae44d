"""A saga whose step fails because the store failed does not compensate: the
invocation runs again from its journal and the steps that happened stand.

Found by the cluster fault run: during a database restart the credit of a transfer
failed with a StoreError after it had committed; the saga refunded the debit, the
re-run then found the credit done and completed the transfer: money was created.
"""

from __future__ import annotations

import pytest

from actors import ActorSystem
from examples.bank.model import ENTITIES, Account, Transfer
from persistence import MemoryStore
from persistence.faults import FaultyStore
from persistence.store import Commit

pytestmark = pytest.mark.anyio


async def test_a_store_failure_in_a_saga_step_is_retried_not_compensated() -> None:
    store = FaultyStore(MemoryStore())
    async with ActorSystem(store, ENTITIES) as system:
        await system.ref(Account, "alice").ask(Account.open, "alice")
        await system.ref(Account, "alice").ask(Account.deposit, 100)
        await system.ref(Account, "bob").ask(Account.open, "bob")
        store.fail(
            "write",
            times=1,
            when=lambda a: any(isinstance(w, Commit) and w.entity_id == "bob" and w.events for w in a[0]),
        )
        view = await system.ref(Transfer, "t1").options(key="t1").ask(Transfer.start, "alice", "bob", 30)
        assert view.status == "completed"
        assert store.failures == 1  # the credit's commit failed once
        assert await system.ref(Account, "alice").query(Account.get_balance) == 70
        assert await system.ref(Account, "bob").query(Account.get_balance) == 30
        alice = [
            e.type_name.rsplit(".", 1)[-1]
            for e in await store.read_events("Account", "alice", after=0, limit=50)
        ]
        assert alice.count("Deposited") == 1  # the opening deposit only: no refund
