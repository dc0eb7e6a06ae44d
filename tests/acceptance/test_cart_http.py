"""The shop's HTTP front, in process: carts, items and checkout; errors are JSON 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from actors import ActorSystem
from actors.testing import VirtualClock
from examples.cart.http import create_app
from examples.cart.model import Cart, InventoryItem
from examples.cart.payments import DECLINED_CARD, FakeGateway
from persistence import MemoryStore

pytestmark = pytest.mark.anyio

CARD = "4242 4242 4242 4242"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    cart = Cart.using(FakeGateway(fail_first=0))  # answers at once: no clock to move
    async with ActorSystem(MemoryStore(), entities=[InventoryItem, cart], clock=VirtualClock()) as system:
        transport = httpx.ASGITransport(app=create_app(system, cart=cart))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as c:
            for sku, price, stock in (("lamp", 19_90, 5), ("mug", 7_50, 10)):
                r = await c.post(f"/items/{sku}", json={"name": sku.title(), "price": price})
                assert r.status_code == 200, r.text
                r = await c.post(f"/items/{sku}/restock", json={"quantity": stock})
                assert r.json()["available"] == stock
            yield c


def refused(r: httpx.Response, status: int, error: str, message: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert message in r.json()["message"]


async def test_shopping_and_checkout(client: httpx.AsyncClient) -> None:
    r = await client.post("/carts/c1/items", json={"sku": "lamp", "quantity": 2})
    assert r.json()["lines"] == [{"sku": "lamp", "quantity": 2, "unit_price": 19_90}]
    assert r.json()["expires_at"] == "2026-01-01T00:30:00+00:00"
    await client.post("/carts/c1/items", json={"sku": "mug", "quantity": 3})
    r = await client.delete("/carts/c1/items/mug", params={"quantity": 1})
    assert r.json()["total"] == 2 * 19_90 + 2 * 7_50
    assert (await client.get("/items/mug")).json()["available"] == 8
    r = await client.post("/carts/c1/checkout", json={"card": CARD})
    assert r.status_code == 200, r.text
    assert (r.json()["total"], r.json()["payment_id"]) == (54_80, "ch_0001")
    cart = (await client.get("/carts/c1")).json()
    assert (cart["status"], cart["order"]["payment_id"]) == ("ordered", "ch_0001")
    lamp = (await client.get("/items/lamp")).json()
    assert (lamp["on_hand"], lamp["sold"], lamp["available"]) == (3, 2, 3)


async def test_refusals_are_json(client: httpx.AsyncClient) -> None:
    refused(await client.post("/carts/c1/items", json={"sku": "lamp", "quantity": 6}), 409, "out_of_stock",
            "only 5 x Lamp")  # fmt: skip
    refused(
        await client.post("/carts/c1/items", json={"sku": "lamp", "quantity": -1}), 422, "invalid_request"
    )
    refused(
        await client.post("/carts/c1/items", json={"sku": "lamp", "quantity": "2"}), 422, "invalid_request"
    )
    refused(await client.post("/carts/c1/items", json={"sku": "ghost"}), 404, "unknown_item")
    refused(await client.get("/carts/c1"), 404, "unknown_cart")
    refused(await client.get("/items/ghost"), 404, "unknown_item")
    refused(await client.post("/carts/c1/checkout", json={"card": CARD}), 409, "empty_cart")
    await client.post("/carts/c1/items", json={"sku": "lamp", "quantity": 1})
    refused(await client.delete("/carts/c1/items/mug"), 404, "not_in_cart")
    refused(await client.delete("/carts/c1/items/lamp?quantity=x"), 400, "bad_request")
    refused(await client.post("/carts/c1/checkout", json={}), 422, "invalid_request", "'card' is required")
    r = await client.post("/carts/c1/checkout", json={"card": DECLINED_CARD})
    refused(r, 402, "payment_failed", "declined")
    assert (await client.get("/items/lamp")).json()["available"] == 5  # the saga released the hold
    assert (await client.post("/carts/c1/checkout", json={"card": CARD})).status_code == 200
    refused(await client.post("/carts/c1/items", json={"sku": "mug"}), 409, "cart_closed")


async def test_respond_async_and_idempotency_keys(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/carts/c1/items", json={"sku": "mug", "quantity": 1}, headers={"Prefer": "respond-async"}
    )
    assert r.status_code == 202
    for _ in range(2):
        r = await client.post(
            "/carts/c1/items", json={"sku": "mug", "quantity": 2}, headers={"Idempotency-Key": "add-1"}
        )
        assert r.json()["lines"][0]["quantity"] == 3
    assert (await client.get("/items/mug")).json()["available"] == 7


def test_an_app_given_a_system_needs_its_cart_class() -> None:
    with pytest.raises(TypeError, match="cart"):
        create_app(ActorSystem(MemoryStore(), entities=[InventoryItem]))
