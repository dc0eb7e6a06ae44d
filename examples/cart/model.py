"""The shop's entities: ``InventoryItem`` (one per SKU) and ``Cart`` (one per cart id).

An item counts its stock and the reservations held against it, by reservation
id; ``reserve`` sets a reservation to a quantity, ``release`` drops it and
``commit`` turns it into a sale. All three are idempotent, so a saga may repeat
them safely.

A cart holds stock for its lines while it is open: adding a line reserves it
(so asking for more than is in stock is refused at once), and the cart expires
30 minutes after its last change (a durable timer, set again on every change),
releasing what it holds. Checkout is a workflow: it marks the cart "checking out",
starts one ``InventoryItem.reserve`` child per line (fan-out; a no-op for lines still
held, it takes them again after a failed payment released them) and awaits their
handles (fan-in: each ``handle.result()`` is a checkpoint, the cart parks and keeps
answering, refusing changes with ``CheckoutInProgress``), charges the payment gateway
(an activity, retried against a flaky gateway), then commits the reservations. When
a line is out of stock, the payment fails or the checkout is cancelled, the saga
releases every reservation and ``CheckoutFailed`` opens the cart again (its expiry
timer set anew).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from typing import ClassVar, Literal, cast

import attrs

from actors import (
    ActivityFailed,
    Cancelled,
    Entity,
    EntityRef,
    InvocationHandle,
    Rejected,
    RetryPolicy,
    applies,
    query,
    signal,
)
from examples.cart.payments import CardDeclined, PaymentGateway

CART_TTL = dt.timedelta(minutes=30)
"""A cart expires this long after its last change."""
EXPIRY = "expiry"
"""The key of a cart's expiry timer."""
MAX_QUANTITY = 1000
"""The most of one item a cart line may hold."""
PAYMENT_RETRY = RetryPolicy(
    initial_interval=dt.timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=dt.timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable=(CardDeclined,),
)
"""How a charge is retried: 1 s, 2 s, 4 s, 8 s apart; a declined card is final."""
PAYMENT_TIMEOUT = dt.timedelta(seconds=20)


# ---------------------------------------------------------------- business errors


class ShopError(Rejected):
    """Base of the shop's refusals."""


class InvalidRequest(ShopError):
    """A quantity, price, SKU or card that makes no sense."""


class UnknownItem(ShopError):
    """No item with that SKU is in the catalog."""


class OutOfStock(ShopError):
    """Not enough of the item is available."""


class UnknownReservation(ShopError):
    """No reservation with that id is held (nor was committed)."""


class UnknownCart(ShopError):
    """Nothing was ever put in this cart."""


class NotInCart(ShopError):
    """The cart has no line for that SKU."""


class CartClosed(ShopError):
    """The cart was checked out or expired: it takes no more changes."""


class CheckoutInProgress(CartClosed):
    """The cart is checking out: it takes no changes until the checkout ends."""


class EmptyCart(ShopError):
    """A checkout of a cart without lines."""


class PaymentFailed(ShopError):
    """The payment gateway refused or kept failing; the reservations were released."""


def check_sku(sku: str) -> None:
    if not sku or len(sku) > 100 or not sku.isprintable():
        raise InvalidRequest(f"a SKU is 1 to 100 printable characters, got {sku!r:.120}")


def check_quantity(quantity: int, *, low: int = 1) -> None:
    if not low <= quantity <= MAX_QUANTITY:
        raise InvalidRequest(f"quantity must be {low} to {MAX_QUANTITY}, got {quantity}")


# ---------------------------------------------------------------- inventory item


@attrs.frozen
class ItemDescribed:
    name: str
    price: int


@attrs.frozen
class Restocked:
    quantity: int


@attrs.frozen
class Reserved:
    reservation_id: str
    quantity: int
    """The reservation's quantity from now on (not a delta)."""


@attrs.frozen
class Released:
    reservation_id: str


@attrs.frozen
class ReservationCommitted:
    reservation_id: str
    quantity: int


@attrs.frozen
class Reservation:
    """What ``InventoryItem.reserve`` answers."""

    sku: str
    reservation_id: str
    quantity: int
    unit_price: int


@attrs.frozen
class ItemView:
    """What ``InventoryItem.view`` answers."""

    sku: str
    name: str
    price: int
    """Cents per unit."""
    on_hand: int
    """Units in the warehouse (reserved ones included)."""
    reserved: int
    available: int
    """On hand and not reserved."""
    sold: int


@attrs.define
class InventoryItem(Entity):
    """One SKU: its catalog entry, its stock and the reservations against it."""

    name: str = ""
    price: int = 0
    on_hand: int = 0
    reserved: dict[str, int] = attrs.field(factory=dict)
    sold: int = 0
    committed: frozenset[str] = frozenset()

    @property
    def available(self) -> int:
        return self.on_hand - sum(self.reserved.values())

    @signal
    def describe(self, name: str, price: int) -> ItemView:
        """Put the item in the catalog (or change its name and price, in cents)."""
        if not name or len(name) > 200:
            raise InvalidRequest("an item's name is 1 to 200 characters")
        if not 0 <= price <= 10**9:
            raise InvalidRequest(f"price must be 0 to {10**9} cents, got {price}")
        if (name, price) != (self.name, self.price):
            self.emit(ItemDescribed(name, price))
        return self.view()

    @signal
    def restock(self, quantity: int) -> ItemView:
        """Add ``quantity`` units to the stock."""
        self._check_listed()
        if not 1 <= quantity <= 10**6:
            raise InvalidRequest(f"quantity must be 1 to {10**6}, got {quantity}")
        self.emit(Restocked(quantity))
        return self.view()

    @signal
    def reserve(self, reservation_id: str, quantity: int) -> Reservation:
        """Hold ``quantity`` units under ``reservation_id`` (replacing what it held)."""
        self._check_listed()
        check_quantity(quantity)
        if reservation_id in self.committed:
            raise UnknownReservation(f"reservation {reservation_id!r} was already committed")
        held = self.reserved.get(reservation_id, 0)
        if quantity - held > self.available:
            raise OutOfStock(
                f"only {self.available + held} x {self.name} ({self.id}) available, asked for {quantity}"
            )
        if quantity != held:
            self.emit(Reserved(reservation_id, quantity))
        return Reservation(self.id, reservation_id, quantity, self.price)

    @signal
    def release(self, reservation_id: str) -> int:
        """Drop a reservation (nothing happens if it is not held); returns the units available."""
        if reservation_id in self.reserved:
            self.emit(Released(reservation_id))
        return self.available

    @signal
    def commit(self, reservation_id: str) -> int:
        """Sell what a reservation holds; committing it again answers the same."""
        if reservation_id not in self.committed and reservation_id not in self.reserved:
            raise UnknownReservation(f"no reservation {reservation_id!r} on {self.id}")
        if reservation_id in self.reserved:
            self.emit(ReservationCommitted(reservation_id, self.reserved[reservation_id]))
        return self.sold

    @query
    def view(self) -> ItemView:
        """Catalog entry and stock."""
        self._check_listed()
        reserved = sum(self.reserved.values())
        return ItemView(self.id, self.name, self.price, self.on_hand, reserved, self.available, self.sold)

    def _check_listed(self) -> None:
        if not self.name:
            raise UnknownItem(f"no item {self.id!r} in the catalog")

    @applies
    def _described(self, e: ItemDescribed) -> None:
        self.name, self.price = e.name, e.price

    @applies
    def _restocked(self, e: Restocked) -> None:
        self.on_hand += e.quantity

    @applies
    def _reserved(self, e: Reserved) -> None:
        self.reserved[e.reservation_id] = e.quantity

    @applies
    def _released(self, e: Released) -> None:
        del self.reserved[e.reservation_id]

    @applies
    def _committed(self, e: ReservationCommitted) -> None:
        del self.reserved[e.reservation_id]
        self.on_hand -= e.quantity
        self.sold += e.quantity
        self.committed = self.committed | {e.reservation_id}


# ---------------------------------------------------------------- cart


@attrs.frozen
class Line:
    sku: str
    quantity: int
    unit_price: int


@attrs.frozen
class Order:
    """A placed order: what ``Cart.checkout`` answers."""

    cart_id: str
    lines: tuple[Line, ...]
    total: int
    """Cents charged."""
    payment_id: str
    placed_at: dt.datetime


@attrs.frozen
class LineChanged:
    line: Line
    """The line from now on; quantity 0 removes it."""
    at: dt.datetime


@attrs.frozen
class OrderPlaced:
    order: Order


@attrs.frozen
class CartExpired:
    at: dt.datetime


@attrs.frozen
class CheckoutStarted:
    at: dt.datetime


@attrs.frozen
class CheckoutFailed:
    """The checkout ended without an order: the cart is open again (its reservations released)."""

    reason: str
    at: dt.datetime


CartStatus = Literal["open", "checking out", "ordered", "expired"]


@attrs.frozen
class CartView:
    """What ``Cart.view`` answers."""

    id: str
    status: CartStatus
    lines: tuple[Line, ...]
    total: int
    updated_at: dt.datetime | None
    expires_at: dt.datetime | None
    order: Order | None


@attrs.define
class Cart(Entity):
    """A shopping cart. Build the class to run with ``Cart.using(gateway)``."""

    status: CartStatus = "open"
    lines: dict[str, Line] = attrs.field(factory=dict)
    updated_at: dt.datetime | None = None
    order: Order | None = None
    last_failure: str | None = None
    """Why the last checkout failed (None once an order is placed or before any failure)."""
    gateway: ClassVar[PaymentGateway | None] = None
    """The payment gateway checkouts charge (set by ``using``)."""

    @classmethod
    def using(cls, gateway: PaymentGateway) -> type[Cart]:
        """This cart class, charging ``gateway`` (stored under the same entity name)."""
        namespace = {"gateway": gateway, "entity_name": cls.entity_name or cls.__name__}
        namespace |= {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        return cast("type[Cart]", attrs.define(type(cls.__name__, (cls,), namespace)))

    @property
    def expires_at(self) -> dt.datetime | None:
        return self.updated_at + CART_TTL if self.updated_at and self.status == "open" else None

    def _item(self, sku: str) -> EntityRef[InventoryItem]:
        return self.ref(InventoryItem, sku)

    def _rid(self, sku: str) -> str:
        """The id of the reservation that holds this cart's line of ``sku``."""
        return f"cart/{self.id}/{sku}"

    def _check_open(self) -> None:
        if self.status == "checking out":
            raise CheckoutInProgress(f"cart {self.id!r} is checking out: it takes no changes until that ends")
        if self.status != "open":
            raise CartClosed(f"cart {self.id!r} is {self.status}: it takes no more changes")

    def _changed(self, line: Line) -> None:
        self.emit(LineChanged(line, self.now()))
        self.schedule(Cart.expire, after=CART_TTL, key=EXPIRY)

    # -- signals
    @signal
    async def add_item(self, sku: str, quantity: int) -> CartView:
        """Add ``quantity`` units of ``sku``, holding them in the inventory."""
        check_sku(sku)
        check_quantity(quantity)
        self._check_open()
        old = self.lines.get(sku)
        want = quantity + (old.quantity if old else 0)
        check_quantity(want)
        held = await self._item(sku).ask(InventoryItem.reserve, self._rid(sku), want)
        self._changed(Line(sku, want, held.unit_price))
        return self.view()

    @signal
    async def remove_item(self, sku: str, quantity: int = 0) -> CartView:
        """Take ``quantity`` units of ``sku`` out (0: the whole line), releasing them."""
        check_sku(sku)
        check_quantity(quantity, low=0)
        self._check_open()
        old = self.lines.get(sku)
        if old is None:
            raise NotInCart(f"cart {self.id!r} has no {sku!r}")
        left = 0 if quantity == 0 else max(0, old.quantity - quantity)
        item = self._item(sku)
        if left:
            await item.ask(InventoryItem.reserve, self._rid(sku), left)
        else:
            await item.ask(InventoryItem.release, self._rid(sku))
        self._changed(attrs.evolve(old, quantity=left))
        return self.view()

    @signal
    async def checkout(self, card: str) -> Order:
        """Reserve every line, charge ``card`` and place the order; answers the order again after."""
        if self.order is not None:
            return self.order
        self._check_open()
        if not self.lines:
            raise EmptyCart(f"cart {self.id!r} is empty")
        if not card.strip() or len(card) > 40:
            raise InvalidRequest("card must be 1 to 40 characters")
        gateway = type(self).gateway
        if gateway is None:
            raise PaymentFailed("this shop has no payment gateway (build the cart with Cart.using)")
        lines = sorted(self.lines.values(), key=lambda line: line.sku)
        self.emit(CheckoutStarted(self.now()))
        self.cancel(EXPIRY)  # a cart checking out does not expire; a failure sets the timer again
        try:
            async with self.saga() as saga:
                for line in lines:  # release is idempotent: registered before the step, as sagas do
                    saga.compensate(self._item(line.sku).ask, InventoryItem.release, self._rid(line.sku))
                # fan-out: each start is journaled and sent with the first checkpoint below
                handles = [await self._start_hold(line) for line in lines]
                held = [await handle.result() for handle in handles]  # fan-in: each a checkpoint
                total = sum(r.quantity * r.unit_price for r in held)
                payment = await self.run(
                    gateway.charge, card, total, retry=PAYMENT_RETRY, timeout=PAYMENT_TIMEOUT
                )
        except ActivityFailed as e:
            reason = f"payment failed, nothing charged: {_cause(e)}"
            self._failed(reason)
            raise PaymentFailed(reason, commit=True) from None
        except Rejected as r:  # a line out of stock (or gone from the catalog)
            self._failed(r.message)
            r.commit = True  # keep CheckoutFailed: the cart is open again
            raise
        except Cancelled as c:
            self._failed(f"cancelled: {c}")
            raise
        await self.gather(*(self._item(r.sku).ask(InventoryItem.commit, r.reservation_id) for r in held))
        order = Order(
            self.id, tuple(Line(r.sku, r.quantity, r.unit_price) for r in held), total, payment, self.now()
        )
        self.emit(OrderPlaced(order))
        return order

    def _start_hold(self, line: Line) -> Awaitable[InvocationHandle[Reservation]]:
        """Start the reservation of one line as a child invocation (await it for the handle)."""
        return self._item(line.sku).start(InventoryItem.reserve, self._rid(line.sku), line.quantity)

    def _failed(self, reason: str) -> None:
        """Open the cart again after a failed checkout (the saga released its reservations)."""
        self.emit(CheckoutFailed(reason[:500], self.now()))
        self.schedule(Cart.expire, after=CART_TTL, key=EXPIRY)

    @signal
    async def expire(self) -> None:
        """The expiry timer: release everything held and close the cart (if it is still due)."""
        due = self.expires_at
        if due is None or self.now() < due:
            return  # changed since the timer was set, checking out, or closed
        await self.gather(
            *(self._item(sku).ask(InventoryItem.release, self._rid(sku)) for sku in sorted(self.lines))
        )
        self.emit(CartExpired(self.now()))

    # -- queries
    @query
    def view(self) -> CartView:
        """Lines, status and when the cart expires."""
        if self.updated_at is None:
            raise UnknownCart(f"no cart {self.id!r}")
        lines = tuple(sorted(self.lines.values(), key=lambda line: line.sku))
        total = sum(line.quantity * line.unit_price for line in lines)
        return CartView(self.id, self.status, lines, total, self.updated_at, self.expires_at, self.order)

    # -- appliers
    @applies
    def _line_changed(self, e: LineChanged) -> None:
        if e.line.quantity:
            self.lines[e.line.sku] = e.line
        else:
            self.lines.pop(e.line.sku, None)
        self.updated_at = e.at

    @applies
    def _checkout_started(self, e: CheckoutStarted) -> None:
        self.status = "checking out"

    @applies
    def _checkout_failed(self, e: CheckoutFailed) -> None:
        self.status = "open"
        self.last_failure = e.reason
        self.updated_at = e.at  # the cart's 30 minutes start again

    @applies
    def _placed(self, e: OrderPlaced) -> None:
        self.status = "ordered"
        self.order = e.order
        self.last_failure = None

    @applies
    def _expired(self, e: CartExpired) -> None:
        self.status = "expired"
        self.lines = {}


def _cause(e: ActivityFailed) -> str:
    """The gateway's own words when the failure has its cause attached, else the framework's."""
    return str(e.__cause__) if e.__cause__ is not None else str(e)


def entities(gateway: PaymentGateway) -> list[type[Entity]]:
    """What an ActorSystem running the shop is given."""
    return [InventoryItem, Cart.using(gateway)]
