"""Regressions found by the model-based tests (test_model.py) and the torture harness."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest

from actors import ActorSystem, Entity, UnknownHandler, applies, query, signal
from persistence import MemoryStore

pytestmark = pytest.mark.anyio


@attrs.frozen
class Bumped:
    by: int


class Base(Entity):
    """Handlers on a shared base class, inherited by two entity types."""

    count: int

    @signal
    def bump(self, by: int) -> int:
        self.emit(Bumped(by))
        return self.count

    @query
    def get_count(self) -> int:
        return self.count

    @applies
    def _bumped(self, e: Bumped) -> None:
        self.count += e.by


@attrs.define
class Often(Base):
    count: int = 0
    snapshot_every: ClassVar[int] = 1


@attrs.define
class Seldom(Base):
    count: int = 0
    snapshot_every: ClassVar[int] = 100


async def test_an_inherited_handler_passed_as_a_function_resolves_for_every_subclass() -> None:
    """Handlers were looked up by function alone, so only the last registered subclass
    owned an inherited one: ``ref(Often).ask(Often.bump)`` raised UnknownHandler."""
    async with ActorSystem(MemoryStore(), entities=[Often, Seldom]) as system:
        often, seldom = system.ref(Often, "x"), system.ref(Seldom, "x")
        assert await often.ask(Often.bump, 2) == 2
        assert await seldom.ask(Seldom.bump, 5) == 5
        await often.tell(Base.bump, 1)
        assert await often.ask(Often.bump, 1) == 4
        assert await often.query(Often.get_count) == 4
        assert await seldom.query(Base.get_count) == 5


async def test_a_handler_of_an_unrelated_entity_is_still_refused() -> None:
    @attrs.define
    class Other(Entity):
        n: int = 0

        @signal
        def poke(self) -> None:
            pass

    async with ActorSystem(MemoryStore(), entities=[Often, Other]) as system:
        with pytest.raises(UnknownHandler, match="is not a handler of Often"):
            await system.ref(Often, "x").tell(Other.poke)
