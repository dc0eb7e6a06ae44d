"""What an active entity costs in memory: an idle one holds no container of its own.

W6 (100,000 active entities) measured 327 MB of peak RSS when every actor carried an
empty mailbox deque, resumable deque and two sets (~2 KB); they are now shared and
empty until an actor needs its own (134 MB). ``tests/conftest.py`` checks after every
test that nothing was added to the shared ones.
"""

from __future__ import annotations

from pathlib import Path

import anyio.lowlevel
import attrs
import pytest

from actors import ActorSystem, Entity, _activities, _actor, signal
from persistence import SqliteStore
from tests.models import Account

pytestmark = pytest.mark.anyio


def _holds_nothing_of_its_own(actor: _actor.Actor) -> bool:
    return (
        actor.mailbox is _actor._NO_ENVELOPES
        and actor.resumable is _actor._NO_RUNS
        and actor.runs is _actor._NO_RUN_SET
        and actor.inbox_ids is _actor._NO_IDS
    )


async def test_an_idle_active_entity_holds_no_container_of_its_own(tmp_path: Path) -> None:
    async with ActorSystem(SqliteStore(tmp_path / "a.db"), entities=[Account]) as system:
        ref = system.ref(Account, "a1")
        await ref.ask(Account.deposit, 2)
        await ref.tell(Account.deposit, 3)  # through the stored inbox
        await ref.ask(Account.deposit, 1)  # queued behind the tell: it has run when this has
        actor = system._directory.actors[("Account", "a1")]
        assert await ref.query(Account.get_balance) == 6
        assert actor.entity is not None
        assert _holds_nothing_of_its_own(actor)


async def test_a_busy_entity_gets_its_own_mailbox_and_gives_it_back(tmp_path: Path) -> None:
    async with ActorSystem(SqliteStore(tmp_path / "a.db"), entities=[Account]) as system:
        ref = system.ref(Account, "a1")
        await ref.ask(Account.deposit, 1)
        actor = system._directory.actors[("Account", "a1")]
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(ref.ask, Account.deposit, 1)
            await anyio.lowlevel.checkpoint()  # one loop turn: 20 asks queued, no drain yet
            assert actor.mailbox is not _actor._NO_ENVELOPES
            assert len(actor.mailbox) == 20
        assert await ref.query(Account.get_balance) == 21
        assert _holds_nothing_of_its_own(actor)


async def test_asks_tells_and_queries_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    # Everything a message makes is freed by reference counting: Python's cyclic
    # collector has nothing to find, which keeps memory flat under load and makes a
    # higher gen-0 threshold safe for apps that want the ~15% it costs (README,
    # Performance). A reference cycle per message would show up here.
    import gc

    async with ActorSystem(SqliteStore(tmp_path / "a.db"), entities=[Account]) as system:
        refs = [system.ref(Account, f"a{i}") for i in range(20)]

        async def burst() -> None:
            async with anyio.create_task_group() as tg:
                for r in refs:
                    tg.start_soon(r.ask, Account.deposit, 1)
                    tg.start_soon(r.tell, Account.deposit, 1)
            for r in refs:  # each tell has run once this ask (queued behind it) has
                await r.ask(Account.deposit, 1)
                await r.query(Account.get_balance)

        await burst()  # warm: activations, caches, prepared statements
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(5):
                await burst()
            gc.collect()
            garbage = [type(o).__qualname__ for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert await refs[0].query(Account.get_balance) == 18
    assert garbage == []


@attrs.define
class Flagged(Entity):
    """Answers whether its invocation got the shared cancel flag."""

    n: int = 0

    @signal
    def plain(self) -> bool:
        return self._actors_ctx.cancel_flag is _activities.NEVER_CANCELLED  # type: ignore[no-any-return]

    @signal
    async def waiting(self) -> bool:
        await anyio.lowlevel.checkpoint()
        return self._actors_ctx.cancel_flag is _activities.NEVER_CANCELLED  # type: ignore[no-any-return]


async def test_synchronous_invocations_share_one_cancel_flag_that_refuses_any_change(tmp_path: Path) -> None:
    async with ActorSystem(SqliteStore(tmp_path / "a.db"), entities=[Flagged]) as system:
        ref = system.ref(Flagged, "f")
        assert await ref.ask(Flagged.plain) is True
        assert await ref.ask(Flagged.waiting) is False  # an async one can be cancelled: a flag of its own
    flag = _activities.NEVER_CANCELLED
    with pytest.raises(RuntimeError, match="cannot be cancelled"):
        flag.request("stop")
    with pytest.raises(RuntimeError, match="no async activity"):
        flag.add_scope(anyio.CancelScope())
    with pytest.raises(AttributeError, match="cannot change"):
        flag.reason = "stop"
    flag.deliver()  # nothing requested: nothing raised
    assert (flag.reason, flag.delivered) == (None, False)
