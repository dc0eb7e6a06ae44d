"""The cart example's entities, in process, on a virtual clock.

Inventory reservations (idempotent by reservation id), holding stock while a cart
is open, checkout (parallel reservations, a retried payment activity against a
flaky gateway, the saga on failure) and the 30-minute expiry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import ActorSystem, EntityRef, InvalidArguments
from actors.testing import DEFAULT_START, VirtualClock
from examples.cart.model import (
    CART_TTL,
    Cart,
    CartClosed,
    EmptyCart,
    InvalidRequest,
    InventoryItem,
    NotInCart,
    OutOfStock,
    PaymentFailed,
    UnknownCart,
    UnknownItem,
    UnknownReservation,
)
from examples.cart.payments import DECLINED_CARD, FakeGateway
from persistence import MemoryStore, SqliteStore, Store

pytestmark = pytest.mark.anyio

S = dt.timedelta(seconds=1)
MIN = dt.timedelta(minutes=1)
CARD = "4242 4242 4242 4242"


class Shop:
    """A running shop for one test: system, clock, gateway and refs."""

    def __init__(self, system: ActorSystem, clock: VirtualClock, cart: type[Cart], gateway: FakeGateway):
        self.system, self.clock, self.cart_type, self.gateway = system, clock, cart, gateway

    def item(self, sku: str) -> EntityRef[InventoryItem]:
        return self.system.ref(InventoryItem, sku)

    def cart(self, cart_id: str) -> EntityRef[Cart]:
        return self.system.ref(self.cart_type, cart_id)

    async def available(self, sku: str) -> int:
        return (await self.item(sku).query(InventoryItem.view)).available

    async def drive(self, call: Callable[[], Awaitable[Any]], advance: dt.timedelta = 5 * MIN) -> Any:
        """Run ``call`` while the clock moves ``advance`` on; return its result or raise its error."""
        box: list[Any] = []
        errors: list[Exception] = []

        async def run() -> None:
            try:
                box.append(await call())
            except Exception as e:
                errors.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await self.clock.advance(advance)
        if errors:
            raise errors[0]
        return box[0]


def new_shop(store: Store, clock: VirtualClock, gateway: FakeGateway) -> tuple[ActorSystem, type[Cart]]:
    cart = Cart.using(gateway)
    return ActorSystem(store, entities=[InventoryItem, cart], clock=clock), cart


async def stocked(shop: Shop, **stock: int) -> None:
    for sku, quantity in stock.items():
        await shop.item(sku).ask(InventoryItem.describe, sku.title(), 10_00)
        await shop.item(sku).ask(InventoryItem.restock, quantity)


def shop_on(
    store: Store | None = None, *, fail_first: int = 0
) -> tuple[ActorSystem, Callable[[ActorSystem], Shop]]:
    clock = VirtualClock()
    gateway = FakeGateway(fail_first=fail_first, now=clock.now)
    system, cart = new_shop(store or MemoryStore(), clock, gateway)
    return system, lambda s: Shop(s, clock, cart, gateway)


# ---------------------------------------------------------------- inventory


async def test_reservations_are_idempotent_by_id() -> None:
    system, make = shop_on()
    async with system:
        shop = make(system)
        await stocked(shop, lamp=5)
        lamp = shop.item("lamp")
        for _ in range(2):
            r = await lamp.ask(InventoryItem.reserve, "r1", 2)
            assert (r.quantity, r.unit_price) == (2, 10_00)
            assert await shop.available("lamp") == 3
        await lamp.ask(InventoryItem.reserve, "r1", 4)  # a reservation is set, not added to
        assert await shop.available("lamp") == 1
        with pytest.raises(OutOfStock, match="only 5 x Lamp"):
            await lamp.ask(InventoryItem.reserve, "r1", 6)
        with pytest.raises(OutOfStock, match="only 1 x Lamp"):
            await lamp.ask(InventoryItem.reserve, "r2", 2)
        for _ in range(2):
            assert await lamp.ask(InventoryItem.release, "r1") == 5
        await lamp.ask(InventoryItem.reserve, "r3", 2)
        for _ in range(2):
            assert await lamp.ask(InventoryItem.commit, "r3") == 2
        view = await lamp.query(InventoryItem.view)
        assert (view.on_hand, view.reserved, view.available, view.sold) == (3, 0, 3, 2)
        with pytest.raises(UnknownReservation):
            await lamp.ask(InventoryItem.commit, "r9")
        with pytest.raises(UnknownReservation, match="already committed"):
            await lamp.ask(InventoryItem.reserve, "r3", 1)


async def test_bad_inventory_input_is_refused() -> None:
    system, make = shop_on()
    async with system:
        shop = make(system)
        with pytest.raises(UnknownItem, match="no item 'ghost'"):
            await shop.item("ghost").ask(InventoryItem.reserve, "r", 1)
        with pytest.raises(UnknownItem):
            await shop.item("ghost").query(InventoryItem.view)
        await stocked(shop, lamp=5)
        for q in (0, -1, 1001):
            with pytest.raises(InvalidRequest, match="quantity"):
                await shop.item("lamp").ask(InventoryItem.reserve, "r", q)
        with pytest.raises(InvalidRequest):
            await shop.item("lamp").ask(InventoryItem.restock, 0)
        with pytest.raises(InvalidRequest):
            await shop.item("lamp").ask(InventoryItem.describe, "Lamp", -1)
        with pytest.raises(InvalidArguments):
            await shop.item("lamp").ask("restock", "5")


# ---------------------------------------------------------------- cart lines


async def test_a_cart_holds_its_lines_in_the_inventory() -> None:
    system, make = shop_on()
    async with system:
        shop = make(system)
        await stocked(shop, lamp=5, mug=10)
        c = shop.cart("c1")
        await c.ask(Cart.add_item, "lamp", 2)
        view = await c.ask(Cart.add_item, "lamp", 1)
        assert [(line.sku, line.quantity) for line in view.lines] == [("lamp", 3)]
        assert view.total == 30_00
        assert await shop.available("lamp") == 2
        with pytest.raises(OutOfStock, match="only 5 x Lamp"):
            await c.ask(Cart.add_item, "lamp", 3)
        assert (await c.query(Cart.view)).lines[0].quantity == 3  # the refusal changed nothing
        await c.ask(Cart.add_item, "mug", 4)
        await c.ask(Cart.remove_item, "mug", 1)
        assert await shop.available("mug") == 7
        view = await c.ask(Cart.remove_item, "mug")
        assert [line.sku for line in view.lines] == ["lamp"]
        assert await shop.available("mug") == 10


async def test_bad_cart_input_is_refused() -> None:
    system, make = shop_on()
    async with system:
        shop = make(system)
        await stocked(shop, lamp=5)
        c = shop.cart("c1")
        with pytest.raises(UnknownCart):
            await c.query(Cart.view)
        with pytest.raises(EmptyCart):
            await c.ask(Cart.checkout, CARD)
        with pytest.raises(UnknownItem, match="no item 'ghost'"):
            await c.ask(Cart.add_item, "ghost", 1)
        for sku, q in (("lamp", 0), ("lamp", -2), ("lamp", 1001), ("", 1)):
            with pytest.raises(InvalidRequest):
                await c.ask(Cart.add_item, sku, q)
        with pytest.raises(OutOfStock):
            await c.ask(Cart.add_item, "lamp", 6)
        with pytest.raises(NotInCart):
            await c.ask(Cart.remove_item, "lamp")
        await c.ask(Cart.add_item, "lamp", 1)
        with pytest.raises(InvalidRequest, match="card"):
            await c.ask(Cart.checkout, " ")
        assert await shop.available("lamp") == 4


# ---------------------------------------------------------------- checkout


async def test_checkout_retries_a_flaky_gateway_and_places_the_order() -> None:
    system, make = shop_on(fail_first=2)
    async with system:
        shop = make(system)
        await stocked(shop, lamp=5, mug=10)
        c = shop.cart("c1")
        await c.ask(Cart.add_item, "lamp", 2)
        await c.ask(Cart.add_item, "mug", 1)
        order = await shop.drive(lambda: c.ask(Cart.checkout, CARD))
        assert (order.total, order.payment_id) == (30_00, "ch_0001")
        assert [a.outcome for a in shop.gateway.attempts] == ["503 unavailable"] * 2 + ["charged as ch_0001"]
        assert [a.at - DEFAULT_START for a in shop.gateway.attempts] == [0 * S, 1 * S, 3 * S]  # 1 s, then 2 s
        assert order.placed_at == DEFAULT_START
        lamp = await shop.item("lamp").query(InventoryItem.view)
        assert (lamp.on_hand, lamp.reserved, lamp.sold) == (3, 0, 2)
        assert await c.ask(Cart.checkout, CARD) == order  # answered again, not charged again
        assert len(shop.gateway.charges) == 1
        await shop.clock.advance(2 * CART_TTL)  # the expiry timer was cancelled
        view = await c.query(Cart.view)
        assert (view.status, view.order) == ("ordered", order)
        with pytest.raises(CartClosed, match="ordered"):
            await c.ask(Cart.add_item, "lamp", 1)


async def test_a_declined_card_releases_the_reservations() -> None:
    system, make = shop_on()
    async with system:
        shop = make(system)
        await stocked(shop, lamp=5, mug=10)
        c = shop.cart("c1")
        await c.ask(Cart.add_item, "lamp", 2)
        await c.ask(Cart.add_item, "mug", 3)
        with pytest.raises(PaymentFailed, match="declined"):
            await shop.drive(lambda: c.ask(Cart.checkout, DECLINED_CARD))
        assert [a.outcome for a in shop.gateway.attempts] == ["declined"]  # not retried
        assert (await shop.available("lamp"), await shop.available("mug")) == (5, 10)
        assert shop.gateway.charges == {}
        view = await c.query(Cart.view)
        assert (view.status, len(view.lines)) == ("open", 2)
        order = await shop.drive(lambda: c.ask(Cart.checkout, CARD))  # the customer tries another card
        assert order.total == 50_00
        assert (await shop.available("lamp"), await shop.available("mug")) == (3, 7)


async def test_a_gateway_that_stays_down_fails_the_checkout_after_its_retries() -> None:
    system, make = shop_on(fail_first=100)
    async with system:
        shop = make(system)
        await stocked(shop, lamp=5)
        c = shop.cart("c1")
        await c.ask(Cart.add_item, "lamp", 2)
        with pytest.raises(PaymentFailed, match="unavailable"):
            await shop.drive(lambda: c.ask(Cart.checkout, CARD))
        assert len(shop.gateway.attempts) == 5
        assert await shop.available("lamp") == 5


async def test_checkout_refuses_a_line_no_longer_in_stock_and_releases_the_others() -> None:
    system, make = shop_on()
    async with system:
        shop = make(system)
        await stocked(shop, lamp=2, mug=10)
        c = shop.cart("c1")
        await c.ask(Cart.add_item, "lamp", 2)
        await c.ask(Cart.add_item, "mug", 3)
        with pytest.raises(PaymentFailed):  # the failed payment released the holds...
            await shop.drive(lambda: c.ask(Cart.checkout, DECLINED_CARD))
        await shop.cart("c2").ask(Cart.add_item, "lamp", 1)  # ...and someone else took a lamp
        with pytest.raises(OutOfStock, match="only 1 x Lamp"):
            await shop.drive(lambda: c.ask(Cart.checkout, CARD))
        assert (await shop.available("lamp"), await shop.available("mug")) == (1, 10)
        assert len(shop.gateway.attempts) == 1  # never charged for the second try


# ---------------------------------------------------------------- expiry


async def test_a_cart_expires_30_minutes_after_its_last_change() -> None:
    system, make = shop_on()
    async with system:
        shop = make(system)
        await stocked(shop, lamp=5, mug=10)
        c = shop.cart("c1")
        await c.ask(Cart.add_item, "lamp", 2)
        await shop.clock.advance(20 * MIN)
        view = await c.ask(Cart.add_item, "mug", 3)  # a change: the timer starts again
        assert view.expires_at == DEFAULT_START + 20 * MIN + CART_TTL
        await shop.clock.advance(29 * MIN)
        assert (await c.query(Cart.view)).status == "open"
        assert await shop.available("lamp") == 3
        await shop.clock.advance(1 * MIN)
        view = await c.query(Cart.view)
        assert (view.status, view.lines, view.expires_at) == ("expired", (), None)
        assert (await shop.available("lamp"), await shop.available("mug")) == (5, 10)
        with pytest.raises(CartClosed, match="expired"):
            await c.ask(Cart.add_item, "lamp", 1)


async def test_an_expiry_due_while_the_shop_was_down_fires_after_the_restart(tmp_path: Path) -> None:
    clock = VirtualClock()
    gateway = FakeGateway(now=clock.now)
    system, cart = new_shop(SqliteStore(tmp_path / "shop.db"), clock, gateway)
    async with system:
        shop = Shop(system, clock, cart, gateway)
        await stocked(shop, lamp=5)
        await shop.cart("c1").ask(Cart.add_item, "lamp", 2)
    await clock.advance(CART_TTL + MIN)  # nothing runs: the shop is down
    system, cart = new_shop(SqliteStore(tmp_path / "shop.db"), clock, gateway)
    async with system:
        shop = Shop(system, clock, cart, gateway)
        await clock.advance(0)
        assert (await shop.cart("c1").query(Cart.view)).status == "expired"
        assert await shop.available("lamp") == 5
