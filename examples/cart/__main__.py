"""``python -m examples.cart``: a shop on a virtual clock, in three scenes.

1. A checkout that succeeds after the (deliberately flaky) payment gateway failed
   twice: the activity's retry policy waits 1 s, then 2 s, on the clock.
2. A checkout whose card is declined: the saga releases the reservations.
3. A cart left alone: 30 minutes after its last change its durable timer fires
   and it gives its stock back.

The clock is an ``actors.testing.VirtualClock``, so half an hour passes in
milliseconds; the store is SQLite in a temporary folder (``--db`` to keep it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio

from actors import ActorsError, ActorSystem, Rejected
from actors.testing import VirtualClock
from examples.cart.model import Cart, InventoryItem, ItemView
from examples.cart.payments import DECLINED_CARD, FakeGateway
from persistence import SqliteStore

T = TypeVar("T")

START = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC)
GOOD_CARD = "4242 4242 4242 4242"
CATALOG = [("lamp", "Desk lamp", 19_90, 5), ("mug", "Mug", 7_50, 10), ("poster", "Poster", 12_00, 2)]
"""SKU, name, price in cents, stock."""


def money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


class Shop:
    """The demo's view of the running shop: refs, the clock, and printing."""

    def __init__(self, system: ActorSystem, clock: VirtualClock, cart: type[Cart], gateway: FakeGateway):
        self.system, self.clock, self.cart_type, self.gateway = system, clock, cart, gateway
        self.seen = 0

    def say(self, text: str) -> None:
        print(f"   {self.clock.now():%H:%M:%S}  {text}")

    async def drive(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` while moving the clock a second at a time, so retries come due."""
        box: dict[str, T] = {}
        failed: list[Exception] = []

        async def run() -> None:
            try:
                box["value"] = await call()
            except Exception as e:
                failed.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await self.clock.advance(0)
            for _ in range(600):
                if box or failed:
                    break
                await self.clock.advance(dt.timedelta(seconds=1))
        if failed:
            raise failed[0]
        return box["value"]

    async def wait_until(self, hour: int, minute: int) -> None:
        """Let the virtual clock run to ``hour:minute`` of the demo's day (timers fire on the way)."""
        await self.clock.advance(START.replace(hour=hour, minute=minute) - self.clock.now())

    async def item(self, sku: str) -> ItemView:
        return await self.system.ref(InventoryItem, sku).query(InventoryItem.view)

    async def available(self, sku: str) -> int:
        return (await self.item(sku)).available

    def gateway_calls(self) -> None:
        for a in self.gateway.attempts[self.seen :]:
            print(f"   {a.at:%H:%M:%S}  gateway: attempt {a.attempt}, {money(a.amount)}: {a.outcome}")
        self.seen = len(self.gateway.attempts)

    async def add(self, cart: str, sku: str, quantity: int) -> None:
        before = await self.available(sku)
        try:
            view = await self.system.ref(self.cart_type, cart).ask(Cart.add_item, sku, quantity)
        except Rejected as r:
            self.say(f"{cart} adds {quantity} x {sku}: refused ({type(r).__name__}: {r.message})")
            return
        after = await self.available(sku)
        expires = f"{view.expires_at:%H:%M:%S}" if view.expires_at else "-"
        self.say(
            f"{cart} adds {quantity} x {sku}: held, {sku} available {before} -> {after}; expires {expires}"
        )

    async def checkout(self, cart: str, card: str) -> None:
        ref = self.system.ref(self.cart_type, cart)
        view = await ref.query(Cart.view)
        self.say(f"{cart} checks out {money(view.total)} with card {card}")
        try:
            order = await self.drive(lambda: ref.ask(Cart.checkout, card))
        except Rejected as r:
            self.gateway_calls()
            self.say(f"checkout refused ({type(r).__name__}: {r.message})")
            return
        self.gateway_calls()
        self.say(f"order placed: {money(order.total)} paid, payment {order.payment_id}")


async def stock(shop: Shop) -> None:
    for sku, name, price, quantity in CATALOG:
        ref = shop.system.ref(InventoryItem, sku)
        await ref.ask(InventoryItem.describe, name, price)
        await ref.options(key=f"initial-stock/{sku}").ask(InventoryItem.restock, quantity)
    listed = ", ".join(f"{q} x {sku} at {money(p)}" for sku, _n, p, q in CATALOG)
    print(f"Catalog: {listed}")


async def scene_checkout(shop: Shop) -> None:
    print("\n1. A successful checkout; the payment gateway fails twice before it answers")
    await shop.add("alice", "lamp", 2)
    await shop.add("alice", "mug", 3)
    await shop.add("alice", "poster", 5)
    await shop.checkout("alice", GOOD_CARD)
    lamp, mug = await shop.item("lamp"), await shop.item("mug")
    shop.say(f"sold: lamp {lamp.sold} (on hand {lamp.on_hand}), mug {mug.sold} (on hand {mug.on_hand})")


async def scene_declined(shop: Shop) -> None:
    print("\n2. A checkout that fails at payment and rolls back")
    await shop.add("bob", "poster", 2)
    held = await shop.available("poster")
    await shop.checkout("bob", DECLINED_CARD)
    view = await shop.system.ref(shop.cart_type, "bob").query(Cart.view)
    lines = ", ".join(f"{line.quantity} x {line.sku}" for line in view.lines)
    shop.say(
        f"rolled back: poster available {held} -> {await shop.available('poster')}, nothing charged; "
        f"bob's cart is {view.status} with {lines} (it expires at {view.expires_at:%H:%M:%S})"
    )


async def scene_expiry(shop: Shop) -> None:
    print("\n3. A cart left alone expires 30 minutes after its last change")
    await shop.wait_until(9, 5)
    await shop.add("carol", "mug", 4)
    await shop.wait_until(9, 20)
    await shop.add("carol", "lamp", 1)
    ref = shop.system.ref(shop.cart_type, "carol")
    await shop.wait_until(9, 49)
    view = await ref.query(Cart.view)
    mug, lamp = await shop.available("mug"), await shop.available("lamp")
    shop.say(f"carol's cart is {view.status}, 29 minutes after its last change; mug available {mug}")
    await shop.wait_until(9, 51)
    view = await ref.query(Cart.view)
    shop.say(
        f"carol's cart is {view.status} (its timer fired at 09:50:00): its holds were released, "
        f"mug available {mug} -> {await shop.available('mug')}, "
        f"lamp available {lamp} -> {await shop.available('lamp')}"
    )


async def summary(shop: Shop) -> None:
    print("\nAt the end")
    print(f"   {'item':<8}{'on hand':>9}{'reserved':>10}{'available':>11}{'sold':>6}")
    for sku, *_ in CATALOG:
        v = await shop.item(sku)
        print(f"   {sku:<8}{v.on_hand:>9}{v.reserved:>10}{v.available:>11}{v.sold:>6}")
    for cart in ("alice", "bob", "carol"):
        view = await shop.system.ref(shop.cart_type, cart).query(Cart.view)
        print(f"   cart {cart}: {view.status}" + (f" ({view.order.payment_id})" if view.order else ""))
    charged = sum(amount for _, amount in shop.gateway.charges.values())
    print(
        f"   gateway: {len(shop.gateway.attempts)} calls, {len(shop.gateway.charges)} charge, "
        f"{money(charged)} in all"
    )


async def demo(db: Path) -> None:
    clock = VirtualClock(START)
    gateway = FakeGateway(fail_first=2, now=clock.now)
    cart = Cart.using(gateway)
    print(f"Cart demo on a virtual clock from {START:%Y-%m-%d %H:%M} UTC, SQLite file {db}")
    async with ActorSystem(SqliteStore(db), entities=[InventoryItem, cart], clock=clock) as system:
        shop = Shop(system, clock, cart, gateway)
        await stock(shop)
        await scene_checkout(shop)
        await scene_declined(shop)
        await scene_expiry(shop)
        await summary(shop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.cart", description=__doc__)
    parser.add_argument("--db", type=Path, help="SQLite file to use (must not exist yet); default: temporary")
    args = parser.parse_args(argv)
    try:
        if args.db is not None:
            if args.db.exists():
                parser.error(f"{args.db} exists: the demo tells a story from an empty shop")
            anyio.run(demo, args.db)
            return 0
        with tempfile.TemporaryDirectory(prefix="cart-demo-") as tmp:
            anyio.run(demo, Path(tmp) / "cart.db")
        return 0
    except ActorsError as e:
        print(f"cart demo failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
