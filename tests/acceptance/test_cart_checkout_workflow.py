"""The cart's checkout as a workflow: reservations started as children and awaited
through their handles while the cart is parked "checking out".

A gated ``InventoryItem`` (same stored name) holds the reservation of a gated SKU
until the test opens its gate, so the checkout stays parked on that child's
``handle.result()`` for as long as the test needs.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import ClassVar

import anyio
import attrs
import pytest

from actors import ActorSystem, EntityRef, signal
from actors.testing import VirtualClock
from examples.cart.model import (
    CART_TTL,
    Cart,
    CheckoutInProgress,
    InventoryItem,
    PaymentFailed,
)
from examples.cart.payments import DECLINED_CARD, FakeGateway
from persistence import MemoryStore, SqliteStore, Store

pytestmark = pytest.mark.anyio

CARD = "4242 4242 4242 4242"
DEADLINE = 10  # seconds of wall time any condition below may take to hold


@attrs.define
class GatedItem(InventoryItem):
    """An InventoryItem that ``hold_up`` keeps busy until its gate opens."""

    entity_name: ClassVar[str | None] = "InventoryItem"
    gates: ClassVar[dict[str, anyio.Event]] = {}

    @signal
    async def hold_up(self) -> None:
        """Keep this item busy (signals queue behind) while its gate is closed."""
        gate = self.gates.get(self.id)
        if gate is not None:
            await gate.wait()


class Shop:
    """A system running the shop, with its item and cart classes (gated or not)."""

    def __init__(self, store: Store, clock: VirtualClock, gateway: FakeGateway, *, gated: bool) -> None:
        cart = Cart.using(gateway)
        self.item_type: type[InventoryItem] = InventoryItem
        if gated:
            self.item_type = GatedItem
            cart = attrs.define(type("Cart", (cart,), {"_item": _gated_item, "__module__": __name__}))
        self.cart_type = cart
        self.system = ActorSystem(store, entities=[self.item_type, cart], clock=clock)

    def item(self, sku: str) -> EntityRef[InventoryItem]:
        return self.system.ref(self.item_type, sku)

    def gated(self, sku: str) -> EntityRef[GatedItem]:
        return self.system.ref(GatedItem, sku)

    def cart(self, cart_id: str) -> EntityRef[Cart]:
        return self.system.ref(self.cart_type, cart_id)

    async def stock(self, **stock: int) -> None:
        for sku, quantity in stock.items():
            await self.item(sku).ask(InventoryItem.describe, sku.title(), 10_00)
            await self.item(sku).ask(InventoryItem.restock, quantity)

    async def available(self, sku: str) -> int:
        return (await self.item(sku).query(InventoryItem.view)).available

    async def status_becomes(self, cart_id: str, status: str) -> None:
        with anyio.fail_after(DEADLINE):
            while (await self.cart(cart_id).query(Cart.view)).status != status:  # noqa: ASYNC110
                await anyio.sleep(0.005)  # polls another task's state: no event to wait on


def _gated_item(self: Cart, sku: str) -> EntityRef[InventoryItem]:
    return self.ref(GatedItem, sku)


async def released(store: Store, sku: str) -> Counter[str]:
    """How many ``Released`` events the item's log holds, by reservation id."""
    events = await store.read_events("InventoryItem", sku, after=0, limit=10_000)
    return Counter(json.loads(e.data)["reservation_id"] for e in events if e.type_name.endswith("Released"))


async def test_changes_to_a_cart_parked_in_its_checkout_are_refused() -> None:
    gateway = FakeGateway(fail_first=0)
    GatedItem.gates = {}
    shop = Shop(MemoryStore(), VirtualClock(), gateway, gated=True)
    async with shop.system:
        await shop.stock(lamp=5, mug=10)
        c = shop.cart("c1")
        await c.ask(Cart.add_item, "mug", 2)
        await c.ask(Cart.add_item, "lamp", 1)
        GatedItem.gates = {"lamp": anyio.Event()}
        await shop.gated("lamp").tell(GatedItem.hold_up)  # the lamp's reserve will queue behind it
        handle = await c.start(Cart.checkout, CARD)
        await shop.status_becomes("c1", "checking out")  # parked on the lamp's handle
        view = await c.query(Cart.view)  # queries answer while parked
        assert (view.expires_at, [line.quantity for line in view.lines]) == (None, [1, 2])
        with pytest.raises(CheckoutInProgress, match="checking out"):
            await c.ask(Cart.add_item, "mug", 1)
        with pytest.raises(CheckoutInProgress):
            await c.ask(Cart.remove_item, "mug")
        with pytest.raises(CheckoutInProgress):
            await c.ask(Cart.checkout, CARD)  # a second checkout does not start
        await c.ask(Cart.expire)  # the expiry handler leaves a checking-out cart alone
        assert (await c.query(Cart.view)).status == "checking out"
        assert await shop.available("mug") == 8  # the refused changes changed nothing
        assert gateway.attempts == []  # the payment waits for every reservation
        GatedItem.gates["lamp"].set()
        with anyio.fail_after(DEADLINE):
            order = await handle.result()
        assert (order.total, [line.sku for line in order.lines]) == (30_00, ["lamp", "mug"])
        view = await c.query(Cart.view)
        assert (view.status, view.order) == ("ordered", order)
        assert (await shop.available("lamp"), await shop.available("mug")) == (4, 8)
        assert len(gateway.charges) == 1


async def test_a_failed_payment_releases_every_reservation_exactly_once() -> None:
    clock, gateway, store = VirtualClock(), FakeGateway(fail_first=0), MemoryStore()
    shop = Shop(store, clock, gateway, gated=False)
    async with shop.system:
        await shop.stock(lamp=5, mug=10, poster=3)
        c = shop.cart("c1")
        for sku, n in (("lamp", 2), ("mug", 3), ("poster", 1)):
            await c.ask(Cart.add_item, sku, n)
        with pytest.raises(PaymentFailed, match="declined"):
            await c.ask(Cart.checkout, DECLINED_CARD)
        rids = {sku: f"cart/c1/{sku}" for sku in ("lamp", "mug", "poster")}
        for sku, rid in rids.items():
            assert await released(store, sku) == Counter({rid: 1}), sku
        assert [await shop.available(sku) for sku in rids] == [5, 10, 3]
        view = await c.query(Cart.view)  # CheckoutFailed opened the cart again, its timer anew
        assert (view.status, len(view.lines), view.expires_at) == ("open", 3, clock.now() + CART_TTL)
        await c.ask(Cart.remove_item, "poster")  # usable again
        await clock.advance(CART_TTL)  # the re-armed expiry fires and releases nothing twice
        assert (await c.query(Cart.view)).status == "expired"
        for sku, rid in rids.items():
            assert await released(store, sku) == Counter({rid: 1}), sku
        assert [a.outcome for a in gateway.attempts] == ["declined"]
        assert gateway.charges == {}


async def test_a_checkout_parked_at_a_restart_resumes_and_places_the_order_once(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    clock, gateway = VirtualClock(), FakeGateway(fail_first=0)
    GatedItem.gates = {}
    shop = Shop(SqliteStore(db), clock, gateway, gated=True)
    async with shop.system:
        await shop.stock(lamp=5, mug=10)
        c = shop.cart("c1")
        await c.ask(Cart.add_item, "lamp", 2)
        await c.ask(Cart.add_item, "mug", 1)
        GatedItem.gates = {"mug": anyio.Event()}  # never opened: the shop stops while parked
        await shop.gated("mug").tell(GatedItem.hold_up)
        handle = await c.start(Cart.checkout, CARD)
        await shop.status_becomes("c1", "checking out")
    assert gateway.attempts == []
    GatedItem.gates = {}  # hold_up runs again after the restart and returns at once
    shop = Shop(SqliteStore(db), clock, gateway, gated=True)
    async with shop.system:
        with anyio.fail_after(DEADLINE):
            answer = await shop.system.handle(handle.id).result()  # a rebuilt handle answers plain data
        view = await shop.cart("c1").query(Cart.view)
        assert view.status == "ordered"
        assert view.order is not None
        assert (
            (answer["total"], answer["payment_id"])
            == (view.order.total, view.order.payment_id)
            == (30_00, "ch_0001")
        )
        lamp = await shop.item("lamp").query(InventoryItem.view)
        assert (lamp.on_hand, lamp.reserved, lamp.sold) == (3, 0, 2)
        assert (await shop.available("mug"), len(gateway.charges), len(gateway.attempts)) == (9, 1, 1)
