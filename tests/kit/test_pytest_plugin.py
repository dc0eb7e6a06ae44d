"""The pytest plugin, as a user's project sees it: pytester runs real test files."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

ENTITY = """
from datetime import timedelta

import attrs
import pytest

from actors import Entity, RetryPolicy, applies, query, signal


class Gateway:
    def __init__(self, failures: int = 0) -> None:
        self.failures, self.calls = failures, 0

    async def charge(self, cents: int) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("try later")
        return self.calls


@attrs.frozen
class Paid:
    attempts: int


@attrs.define
class Invoice(Entity):
    attempts: int = 0

    @signal
    async def pay(self, cents: int) -> int:
        retry = RetryPolicy(initial_interval=timedelta(hours=1), maximum_attempts=5)
        n = await self.run(self.resource(Gateway).charge, cents, retry=retry)
        self.emit(Paid(n))
        return n

    @signal
    def remind(self) -> None:
        self.schedule(Invoice.pay, 100, after=timedelta(days=30), key="due")

    @applies
    def _paid(self, e: Paid) -> None:
        self.attempts = e.attempts

    @query
    def paid_after(self) -> int:
        return self.attempts
"""


def test_the_plugin_is_registered_by_entry_point() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("actors") == "actors.pytest_plugin"


def test_fixtures_skip_time_and_run_on_a_temporary_sqlite_store(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ENTITY
        + """

@pytest.mark.anyio
async def test_backoff_returns_at_once(actor_system_factory, virtual_clock):
    start = virtual_clock.now()
    async with actor_system_factory(entities=[Invoice], resources={Gateway: Gateway(2)}) as system:
        assert await system.ref(Invoice, "i").ask(Invoice.pay, 100) == 3
    assert virtual_clock.now() - start == timedelta(hours=3)  # 1 h, then 2 h of backoff
    assert actor_system_factory.sqlite_path.exists()


@pytest.mark.anyio
async def test_a_second_system_reopens_the_store(actor_system_factory, virtual_clock):
    async with actor_system_factory(entities=[Invoice], resources={Gateway: Gateway()}) as system:
        await system.ref(Invoice, "i").ask(Invoice.remind)
    async with actor_system_factory(entities=[Invoice], resources={Gateway: Gateway()}) as system:
        await virtual_clock.advance(timedelta(days=30))
        assert await system.ref(Invoice, "i").query(Invoice.paid_after) == 1


@pytest.mark.anyio
async def test_memory_store_and_own_clock(actor_system_factory, virtual_clock):
    from actors.testing import VirtualClock
    mine = VirtualClock()
    async with actor_system_factory(entities=[Invoice], store="memory", clock=mine,
                                    resources={Gateway: Gateway()}) as system:
        assert system.clock is mine
        assert await system.ref(Invoice, "i").ask(Invoice.pay, 1) == 1
    assert not actor_system_factory.sqlite_path.exists()
    async with actor_system_factory(entities=[Invoice], store="memory",
                                    resources={Gateway: Gateway()}) as system:
        assert system.clock is virtual_clock
        assert await system.ref(Invoice, "i").query(Invoice.paid_after) == 1  # same memory store


def test_a_bad_store_kind_is_refused(actor_system_factory):
    from actors import InvalidArguments
    with pytest.raises(InvalidArguments, match="sqlite"):
        actor_system_factory(entities=[Invoice], store="postgres")


def test_each_test_gets_its_own_clock_and_folder(actor_system_factory, virtual_clock, tmp_path):
    assert virtual_clock.auto_advance
    assert actor_system_factory.clock is virtual_clock
    assert actor_system_factory.sqlite_path.parent == tmp_path
"""
    )
    result = pytester.runpytest_subprocess("-p", "anyio", "-q")
    result.assert_outcomes(passed=5)


def test_a_hanging_test_fails_with_the_stall_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ENTITY
        + """

@pytest.mark.anyio
async def test_stalls(actor_system_factory):
    from actors.testing import VirtualClock
    manual = VirtualClock(stall_timeout=0.3)  # nothing advances it
    async with actor_system_factory(entities=[Invoice], clock=manual,
                                    resources={Gateway: Gateway(1)}) as system:
        await system.ref(Invoice, "i").ask(Invoice.pay, 100)
"""
    )
    result = pytester.runpytest_subprocess("-p", "anyio", "-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ClockStalled*ask Invoice.pay to Invoice/i*clock.advance*"])
