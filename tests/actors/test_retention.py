"""The retention job: ``ActorSystem(retention=Retention(...))`` prunes on the system's clock."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from actors import (
    ActorSystem,
    Entity,
    HandlerFailed,
    InvalidArguments,
    Retention,
    SupervisorPolicy,
    applies,
    query,
    signal,
)
from actors._retention import prune_once
from actors.testing import VirtualClock
from persistence import MemoryStore

pytestmark = pytest.mark.anyio

DAY = dt.timedelta(days=1)


@attrs.frozen
class Added:
    n: int


@attrs.define
class Tally(Entity):
    total: int = 0

    @signal
    def add(self, n: int) -> int:
        self.emit(Added(n))
        return self.total

    @signal
    def broken(self) -> None:
        raise RuntimeError("always")

    @query
    def get(self) -> int:
        return self.total

    @applies
    def _added(self, e: Added) -> None:
        self.total += e.n


ONCE = SupervisorPolicy(max_attempts=1)


async def test_old_marks_are_pruned_on_schedule_and_a_repeat_is_then_new() -> None:
    clock = VirtualClock()
    policy = Retention(marks_for=dt.timedelta(days=30), every=DAY)
    store = MemoryStore()
    async with ActorSystem(store, [Tally], clock=clock, retention=policy) as system:
        t = system.ref(Tally, "t")
        assert await t.options(key="k1").ask(Tally.add, 5) == 5
        await clock.advance(dt.timedelta(days=10))
        assert await t.options(key="k1").ask(Tally.add, 5) == 5  # a repeat: the first outcome
        assert await t.options(key="k2").ask(Tally.add, 1) == 6
        await clock.advance(dt.timedelta(days=22))  # k1 is 32 days old, k2 22: the job ran daily
        assert await t.options(key="k2").ask(Tally.add, 1) == 6  # still remembered
        assert await t.options(key="k1").ask(Tally.add, 5) == 11  # forgotten: applied again


async def test_dead_letters_are_capped_by_count_and_age() -> None:
    clock = VirtualClock()
    policy = Retention(marks_for=None, dead_letters_for=dt.timedelta(days=7), keep_dead_letters=2, every=DAY)
    async with ActorSystem(MemoryStore(), [Tally], clock=clock, retention=policy, supervision=ONCE) as system:
        for i in range(4):
            with pytest.raises(HandlerFailed):
                await system.ref(Tally, f"b{i}").ask(Tally.broken)
        assert len(await system.dead_letters()) == 4
        await clock.advance(DAY)
        assert [d.signal.entity_id for d in await system.dead_letters()] == ["b2", "b3"]
        await clock.advance(dt.timedelta(days=7))
        assert await system.dead_letters() == []


async def test_prune_once_works_in_batches() -> None:
    clock = VirtualClock()
    async with ActorSystem(MemoryStore(), [Tally], clock=clock) as system:
        for i in range(7):
            await system.ref(Tally, "t").options(key=f"k{i}").ask(Tally.add, 1)
        await clock.advance(dt.timedelta(days=2))
        policy = Retention(marks_for=DAY, batch=3)
        done = await prune_once(system._kernel.committer, clock, policy)
        assert done.marks == 7
        assert await system.ref(Tally, "t").options(key="k0").ask(Tally.add, 1) == 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"marks_for": dt.timedelta(0)},
        {"every": dt.timedelta(seconds=-1)},
        {"keep_dead_letters": -1},
        {"batch": 0},
        {"marks_for": 30},
    ],
)
def test_a_bad_policy_is_invalid_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArguments):
        Retention(**kwargs)  # type: ignore[arg-type]


def test_retention_must_be_a_policy() -> None:
    with pytest.raises(InvalidArguments):
        ActorSystem(MemoryStore(), [Tally], retention=30)  # type: ignore[arg-type]
