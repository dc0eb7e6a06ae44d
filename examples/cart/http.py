"""The shop over HTTP: a Starlette (ASGI) app. Needs the ``http`` extra.

``POST``/``DELETE`` routes send signals (``ask``, or ``tell`` with
``Prefer: respond-async``; an ``Idempotency-Key`` header becomes the signal's key),
``GET`` routes run queries::

    POST   /items/{sku}               {"name": "Desk lamp", "price": 1990}
    POST   /items/{sku}/restock       {"quantity": 5}
    GET    /items/{sku}
    POST   /carts/{id}/items          {"sku": "lamp", "quantity": 2}
    DELETE /carts/{id}/items/{sku}?quantity=1      (no quantity: the whole line)
    POST   /carts/{id}/checkout       {"card": "4242 4242 4242 4242"}
    GET    /carts/{id}

Refusals are 4xx answers with ``{"error": ..., "message": ...}``. Serve it with
``uvicorn --factory examples.cart.http:create_app`` (database ``$CART_DB``, default
``cart.db``; payments go to a FakeGateway), or hand ``create_app`` a running
``ActorSystem`` and the cart class it runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actors import ActorSystem, EntityRef, Rejected, SystemClosed
from examples.cart.model import (
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
from examples.cart.payments import FakeGateway, PaymentGateway
from examples.web import Endpoint, body, endpoints, int_field, int_param, ok, send, str_field
from persistence import SqliteStore

STATUSES: dict[type[Rejected], int] = {
    InvalidRequest: 422,
    UnknownItem: 404,
    UnknownCart: 404,
    NotInCart: 404,
    UnknownReservation: 404,
    OutOfStock: 409,
    CartClosed: 409,
    EmptyCart: 409,
    PaymentFailed: 402,
}
"""The HTTP status of each refusal."""

endpoint = endpoints(STATUSES)


class ShopAPI:
    """The routes, over the system they send to and the cart class it runs."""

    def __init__(self, system: ActorSystem | None, cart: type[Cart]) -> None:
        self.system = system
        self.cart_type = cart

    def _system(self) -> ActorSystem:
        if self.system is None:
            raise SystemClosed("the shop is not running")
        return self.system

    def item(self, request: Request) -> EntityRef[InventoryItem]:
        return self._system().ref(InventoryItem, request.path_params["sku"])

    def cart(self, request: Request) -> EntityRef[Cart]:
        return self._system().ref(self.cart_type, request.path_params["id"])

    async def describe(self, request: Request) -> Response:
        data = await body(request)
        name, price = str_field(data, "name"), int_field(data, "price")
        return await send(request, self.item(request), InventoryItem.describe, name, price)

    async def restock(self, request: Request) -> Response:
        quantity = int_field(await body(request), "quantity")
        return await send(request, self.item(request), InventoryItem.restock, quantity)

    async def item_view(self, request: Request) -> Response:
        return ok(await self.item(request).query(InventoryItem.view))

    async def add_item(self, request: Request) -> Response:
        data = await body(request)
        sku, quantity = str_field(data, "sku"), int_field(data, "quantity", 1)
        return await send(request, self.cart(request), Cart.add_item, sku, quantity)

    async def remove_item(self, request: Request) -> Response:
        quantity = int_param(request, "quantity", 0)
        return await send(request, self.cart(request), Cart.remove_item, request.path_params["sku"], quantity)

    async def checkout(self, request: Request) -> Response:
        card = str_field(await body(request), "card")
        return await send(request, self.cart(request), Cart.checkout, card)

    async def cart_view(self, request: Request) -> Response:
        return ok(await self.cart(request).query(Cart.view))

    def routes(self) -> list[Route]:
        """The app's routes; each answers errors as JSON (see ``examples.web.endpoints``)."""
        table: list[tuple[str, str, Endpoint]] = [
            ("POST", "/items/{sku}", self.describe),
            ("POST", "/items/{sku}/restock", self.restock),
            ("GET", "/items/{sku}", self.item_view),
            ("POST", "/carts/{id}/items", self.add_item),
            ("DELETE", "/carts/{id}/items/{sku}", self.remove_item),
            ("POST", "/carts/{id}/checkout", self.checkout),
            ("GET", "/carts/{id}", self.cart_view),
        ]
        return [Route(path, endpoint(fn), methods=[method]) for method, path, fn in table]


def create_app(
    system: ActorSystem | None = None,
    *,
    cart: type[Cart] | None = None,
    gateway: PaymentGateway | None = None,
    db: str | os.PathLike[str] | None = None,
) -> Starlette:
    """The shop's ASGI app.

    Given ``system``, also give ``cart``: the class it runs (from ``Cart.using``).
    Without a system the app runs its own on SQLite file ``db``, charging
    ``gateway`` (default: a FakeGateway that fails each charge once first).
    """
    if system is not None and cart is None:
        raise TypeError("create_app(system, cart=...): name the cart class the system runs")
    cart_type = cart if cart is not None else Cart.using(gateway or FakeGateway(fail_first=1))
    api = ShopAPI(system, cart_type)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if system is not None:
            yield
            return
        path = Path(db if db is not None else os.environ.get("CART_DB", "cart.db"))
        async with ActorSystem(SqliteStore(path), entities=[InventoryItem, cart_type]) as own:
            api.system = own
            try:
                yield
            finally:
                api.system = None

    return Starlette(routes=api.routes(), lifespan=lifespan)
