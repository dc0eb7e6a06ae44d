"""Guarantee 5: queries read committed state and never wait behind a running handler."""

from __future__ import annotations

import anyio
import pytest

from actors import ActorSystem
from tests.actors.support import NotNow, Outcome, Probe, StoreFactory, make_counter
from tests.models import Account

pytestmark = pytest.mark.anyio

AT_ONCE = 5.0
"""A wall-clock guard only: a query stuck behind the held handler would never return."""


async def test_a_query_does_not_wait_behind_a_running_handler(store_factory: StoreFactory) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")
        await ref.ask("add", 10)
        out = Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.capture, lambda: ref.ask("hold", 5))
            with anyio.fail_after(AT_ONCE):
                await probe.emitted.wait()  # it emitted and now waits on the gate
                assert await ref.query("get_total") == 10  # the committed value, at once
                assert await ref.query("get_total") == 10
            assert not out.done.is_set()
            probe.gate.set()
        assert out.value == 15
        assert await ref.query("get_total") == 15


async def test_a_query_on_another_entity_is_not_blocked_either(store_factory: StoreFactory) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system, anyio.create_task_group() as tg:
        tg.start_soon(system.ref(counter, "held").ask, "hold", 5)
        with anyio.fail_after(AT_ONCE):
            await probe.emitted.wait()
            assert await system.ref(counter, "other").query("get_total") == 0
        probe.gate.set()


async def test_a_query_never_sees_the_state_of_a_handler_that_then_refuses(
    store_factory: StoreFactory,
) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")
        await ref.ask("add", 10)
        out = Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.capture, lambda: ref.ask("hold", -5))  # emits -5, then refuses
            with anyio.fail_after(AT_ONCE):
                await probe.emitted.wait()
                assert await ref.query("get_total") == 10
            probe.gate.set()
        assert isinstance(out.error, NotNow)
        assert await ref.query("get_total") == 10


async def test_after_ask_returns_the_same_caller_sees_its_effects(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        for i in range(1, 31):
            await ref.ask(Account.deposit, 1)
            assert await ref.query(Account.get_balance) == i


async def test_a_query_result_is_a_copy(store_factory: StoreFactory) -> None:
    probe = Probe()
    counter = make_counter(probe)
    async with ActorSystem(store_factory(), [counter]) as system:
        ref = system.ref(counter, "c")
        await ref.ask("step", "a")
        order = await ref.query("get_order")
        assert order == ("a",)
        await ref.ask("step", "b")
        assert order == ("a",)
        assert await ref.query("get_order") == ("a", "b")


async def test_a_query_activates_from_the_store(store_factory: StoreFactory) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        await system.ref(Account, "a").ask(Account.deposit, 42)
    async with ActorSystem(store_factory(), [Account]) as system:
        assert await system.ref(Account, "a").query(Account.get_balance) == 42
        assert await system.ref(Account, "never-seen").query(Account.get_balance) == 0
