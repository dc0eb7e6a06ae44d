"""Resources: objects from outside handed to handlers through the system."""

from __future__ import annotations

import attrs
import pytest

from actors import ActorSystem, Entity, InvalidArguments, signal
from persistence import MemoryStore

pytestmark = pytest.mark.anyio


class Gateway:
    """A client of the outside world."""

    def __init__(self) -> None:
        self.charged: list[int] = []

    def charge(self, cents: int) -> str:
        self.charged.append(cents)
        return f"ch_{len(self.charged)}"


class FakeGateway(Gateway):
    """A subclass stands in for its base."""


@attrs.define
class Shop(Entity):
    orders: int = 0

    @signal
    async def buy(self, cents: int) -> str:
        gateway = self.resource(Gateway)
        return await self.run(gateway.charge, cents)

    @signal
    def needs_missing(self) -> None:
        self.resource(dict)


async def test_a_handler_reaches_its_resource_by_type() -> None:
    gw = FakeGateway()
    async with ActorSystem(MemoryStore(), [Shop], resources={FakeGateway: gw}) as system:
        assert await system.ref(Shop, "s").ask(Shop.buy, 250) == "ch_1"
    assert gw.charged == [250]


async def test_a_missing_resource_is_a_clear_error() -> None:
    async with ActorSystem(MemoryStore(), [Shop], resources={Gateway: Gateway()}) as system:
        with pytest.raises(Exception, match="no resource of type"):
            await system.ref(Shop, "s").ask(Shop.needs_missing)


@pytest.mark.parametrize("bad", [[Gateway()], {Gateway: "not a gateway"}, {"Gateway": Gateway()}])
async def test_bad_resources_are_refused(bad: object) -> None:
    with pytest.raises(InvalidArguments, match="resources must map types"):
        ActorSystem(MemoryStore(), [Shop], resources=bad)  # type: ignore[arg-type]
