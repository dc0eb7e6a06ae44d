"""Guarantee 3: a signal id is applied at most once; a repeat returns the first outcome."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from actors import ActorSystem, IdempotencyConflict, Rejected
from persistence.store import Accept, Write, WriteResult
from tests.actors.support import NotNow, Outcome, Probe, StoreFactory, event_count, make_counter
from tests.models import Account, InsufficientFunds

pytestmark = pytest.mark.anyio


async def test_a_repeated_ask_returns_the_first_outcome_and_applies_once(
    store_factory: StoreFactory,
) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        await ref.ask(Account.deposit, 5)
        keyed = ref.options(key="dep-1")
        assert await keyed.ask(Account.deposit, 100) == 105
        await ref.ask(Account.deposit, 1)  # the balance moves on...
        assert await keyed.ask(Account.deposit, 100) == 105  # ...the repeat answers as the first time
        assert await ref.query(Account.get_balance) == 106
        assert await event_count(system, "Account", "a") == 3


async def test_a_repeat_after_a_restart_returns_the_first_outcome(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        assert await system.ref(Account, "a").options(key="dep-1").ask(Account.deposit, 100) == 100
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        assert await ref.options(key="dep-1").ask(Account.deposit, 100) == 100
        await ref.options(key="dep-1").tell(Account.deposit, 100)
        assert await ref.ask(Account.deposit, 1) == 101
        assert await event_count(system, "Account", "a") == 2


async def test_a_repeated_rejection_comes_back_as_the_same_subclass(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        keyed = ref.options(key="wd-1")
        with pytest.raises(InsufficientFunds, match="insufficient funds"):
            await keyed.ask(Account.withdraw, 50)
        await ref.ask(Account.deposit, 100)  # now it would succeed, but the answer is fixed
        with pytest.raises(InsufficientFunds, match="insufficient funds"):
            await keyed.ask(Account.withdraw, 50)
        assert await ref.query(Account.get_balance) == 100
    async with ActorSystem(store_factory(), [Account]) as system:
        with pytest.raises(InsufficientFunds, match="insufficient funds") as info:
            await system.ref(Account, "a").options(key="wd-1").ask(Account.withdraw, 50)
        assert type(info.value) is InsufficientFunds
        assert await event_count(system, "Account", "a") == 1


async def test_a_repeated_rejection_of_a_test_local_subclass(store_factory: StoreFactory) -> None:
    counter = make_counter(Probe())
    async with ActorSystem(store_factory(), [counter]) as system:
        keyed = system.ref(counter, "c").options(key="r")
        for _ in range(2):
            with pytest.raises(NotNow, match="not now: 3"):
                await keyed.ask("refuse", 3)
        assert await event_count(system, "Counter", "c") == 0


async def test_same_key_other_arguments_is_a_conflict_for_ask(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        keyed = ref.options(key="k")
        await keyed.ask(Account.deposit, 10)
        with pytest.raises(IdempotencyConflict, match="k:k"):
            await keyed.ask(Account.deposit, 11)
        with pytest.raises(IdempotencyConflict):
            await keyed.ask(Account.withdraw, 10)  # another handler
        assert await ref.query(Account.get_balance) == 10
        assert await event_count(system, "Account", "a") == 1


async def test_same_key_other_arguments_is_a_conflict_for_tell(store_factory: StoreFactory) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")
        await ref.options(key="held").tell("hold", 1)  # pending in the inbox while it is held
        await ref.options(key="held").tell("hold", 1)  # same arguments: fine, nothing new
        with pytest.raises(IdempotencyConflict):
            await ref.options(key="held").tell("hold", 2)  # conflicts with the pending one
        probe.gate.set()
        assert await ref.ask("barrier") == 1
        with pytest.raises(IdempotencyConflict):
            await ref.options(key="held").tell("add", 1)  # conflicts with the processed one
        assert await ref.ask("barrier") == 1
        assert await event_count(system, "Counter", "c") == 1


async def test_ask_then_tell_with_the_same_key(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        assert await ref.options(key="k").ask(Account.deposit, 10) == 10
        await ref.options(key="k").tell(Account.deposit, 10)
        with pytest.raises(IdempotencyConflict):
            await ref.options(key="k").tell(Account.deposit, 12)
        assert await ref.ask(Account.deposit, 1) == 11
        assert await event_count(system, "Account", "a") == 2


async def test_tell_then_ask_with_the_same_key(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        await ref.options(key="k").tell(Account.deposit, 100)
        assert await ref.options(key="k").ask(Account.deposit, 100) == 100
        with pytest.raises(IdempotencyConflict):
            await ref.options(key="k").ask(Account.deposit, 5)
        assert await ref.query(Account.get_balance) == 100
        assert await event_count(system, "Account", "a") == 1


async def test_a_repeated_tell_leaves_nothing_pending(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        for _ in range(3):
            await ref.options(key="t").tell(Account.deposit, 7)
        await ref.ask(Account.deposit, 1)
        assert await ref.query(Account.get_balance) == 8
        assert await system.store.read_inbox(after=0, limit=10) == []


async def test_concurrent_repeats_apply_once(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        results: list[int] = []

        async def once(tell: bool) -> None:
            keyed = ref.options(key="same")
            if tell:
                await keyed.tell(Account.deposit, 50)
            else:
                results.append(await keyed.ask(Account.deposit, 50))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(once, i % 3 == 0)
        await ref.ask(Account.deposit, 1)
        assert results == [50] * len(results)
        assert await ref.query(Account.get_balance) == 51
        assert await event_count(system, "Account", "a") == 2
        assert await system.store.read_inbox(after=0, limit=10) == []


async def test_a_key_is_per_entity(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        a, b = system.ref(Account, "a"), system.ref(Account, "b")
        assert await a.options(key="k").ask(Account.deposit, 1) == 1
        assert await b.options(key="k").ask(Account.deposit, 2) == 2  # not a conflict, not a repeat


async def test_a_conflicting_tell_while_the_keyed_ask_runs_is_refused(
    store_factory: StoreFactory,
) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")
        tell_error: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.options(key="k").ask, "hold", 1)
            with anyio.fail_after(5):
                await probe.emitted.wait()
            try:
                await ref.options(key="k").tell("add", 1000)
            except IdempotencyConflict as e:
                tell_error = e
            finally:
                probe.gate.set()
        assert await ref.ask("barrier") == 1
        assert isinstance(tell_error, IdempotencyConflict)


async def test_a_repeated_plain_rejection_stays_plain(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a").options(key="bad")
        with pytest.raises(Rejected, match="amount must be positive") as info:
            await ref.ask(Account.deposit, 0)
        assert type(info.value) is Rejected
        with pytest.raises(Rejected, match="amount must be positive"):
            await ref.ask(Account.deposit, 0)


async def test_a_tell_in_flight_when_a_conflicting_keyed_ask_arrives(store_factory: StoreFactory) -> None:
    counter = make_counter(Probe())
    store = store_factory()
    write = store.write
    stalled, release = anyio.Event(), anyio.Event()

    async def stalling_write(batch: Sequence[Write]) -> list[WriteResult]:
        if any(isinstance(w, Accept) and w.signal.signal_id.endswith(":k") for w in batch):
            stalled.set()
            await release.wait()
        return await write(batch)

    store.write = stalling_write  # type: ignore[method-assign]
    async with ActorSystem(store, [counter]) as system:
        ref = system.ref(counter, "c")
        tell, ask = Outcome(), Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(tell.capture, lambda: ref.options(key="k").tell("add", 1000))
            with anyio.fail_after(5):
                await stalled.wait()  # the tell's Accept is being written
            tg.start_soon(ask.capture, lambda: ref.options(key="k").ask("add", 1))
            await anyio.wait_all_tasks_blocked()
            release.set()
        total = await ref.ask("barrier")
        conflicts = [o.error for o in (tell, ask) if isinstance(o.error, IdempotencyConflict)]
        assert total in (1, 1000)
        assert len(conflicts) == 1, f"tell: {tell.error!r}, ask: {ask.error!r}, total {total}"
