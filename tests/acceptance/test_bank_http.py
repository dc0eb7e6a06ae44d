"""The bank's HTTP front, in process: POST sends signals, GET runs queries, errors are JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from actors import ActorSystem
from actors.testing import VirtualClock
from examples.bank.http import create_app
from examples.bank.model import ENTITIES
from persistence import MemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with ActorSystem(MemoryStore(), entities=ENTITIES, clock=VirtualClock()) as system:
        transport = httpx.ASGITransport(app=create_app(system))
        async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as c:
            yield c


async def opened(client: httpx.AsyncClient, acc: str, amount: int = 0) -> None:
    r = await client.post(f"/accounts/{acc}/open", json={"owner": acc.title()})
    assert r.status_code == 200, r.text
    if amount:
        r = await client.post(f"/accounts/{acc}/deposit", json={"amount": amount})
        assert r.status_code == 200, r.text


def refused(r: httpx.Response, status: int, error: str, message: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    assert data["error"] == error
    assert message in data["message"]
    assert "Traceback" not in r.text


async def test_signals_and_queries(client: httpx.AsyncClient) -> None:
    r = await client.post("/accounts/alice/open", json={"owner": "Alice", "overdraft_limit": 10})
    assert r.json() == {
        "id": "alice",
        "owner": "Alice",
        "balance": 0,
        "overdraft_limit": 10,
        "opened_at": "2026-01-01T00:00:00+00:00",
        "entries": 1,
    }
    r = await client.post("/accounts/alice/deposit", json={"amount": 100, "reference": "salary"})
    assert (r.status_code, r.json()) == (200, {"balance": 100})
    r = await client.post("/accounts/alice/withdraw", json={"amount": 105})
    assert r.json() == {"balance": -5}
    r = await client.post("/accounts/alice/overdraft", json={"limit": 20})
    assert r.json()["overdraft_limit"] == 20
    r = await client.get("/accounts/alice")
    assert (r.json()["balance"], r.json()["owner"]) == (-5, "Alice")
    r = await client.get("/accounts/alice/statement", params={"last": 2})
    assert r.json() == {
        "entries": [
            {"at": "2026-01-01T00:00:00+00:00", "kind": "deposit", "amount": 100, "balance": 100,
             "reference": "salary"},
            {"at": "2026-01-01T00:00:00+00:00", "kind": "withdrawal", "amount": -105, "balance": -5,
             "reference": ""},
        ]
    }  # fmt: skip


async def test_bad_input_is_a_json_4xx(client: httpx.AsyncClient) -> None:
    refused(await client.post("/accounts/nobody/deposit", json={"amount": 5}), 404, "account_not_open",
            "account 'nobody' is not open")  # fmt: skip
    refused(await client.get("/accounts/nobody"), 404, "account_not_open")
    await opened(client, "a", 10)
    refused(await client.post("/accounts/a/deposit", json={"amount": -5}), 422, "invalid_request", "positive")
    refused(await client.post("/accounts/a/deposit", json={"amount": "5"}), 422, "invalid_request", "integer")
    refused(await client.post("/accounts/a/deposit", json={"amount": True}), 422, "invalid_request")
    refused(await client.post("/accounts/a/deposit", json={}), 422, "invalid_request", "'amount' is required")
    refused(await client.post("/accounts/a/deposit", content=b"{nope"), 400, "bad_request", "not valid JSON")
    refused(await client.post("/accounts/a/deposit", json=[1]), 400, "bad_request", "JSON object")
    refused(await client.post("/accounts/a/withdraw", json={"amount": 11}), 409, "insufficient_funds")
    refused(await client.post("/accounts/a/open", json={"owner": "Mallory"}), 409, "account_already_open")
    refused(await client.get("/accounts/a/statement?last=x"), 400, "bad_request")
    refused(await client.get("/accounts/a/statement?last=0"), 422, "invalid_request")
    refused(await client.post(f"/accounts/{'x' * 300}/open", json={"owner": "X"}), 422, "invalid_arguments")
    big = {"amount": 1, "reference": "x" * (3 * 1024 * 1024)}
    refused(await client.post("/accounts/a/deposit", json=big), 413, "payload_too_large")
    assert (await client.get("/accounts/a")).json()["balance"] == 10


async def test_transfers(client: httpx.AsyncClient) -> None:
    await opened(client, "a", 100)
    await opened(client, "b")
    t = {"id": "t-1", "from": "a", "to": "b", "amount": 30}
    r = await client.post("/transfers", json=t)
    assert (r.status_code, r.json()["status"]) == (200, "completed")
    assert (await client.post("/transfers", json=t)).json() == r.json()  # idempotent by id
    assert (await client.get("/transfers/t-1")).json() == r.json()
    assert [(await client.get(f"/accounts/{x}")).json()["balance"] for x in "ab"] == [70, 30]
    refused(await client.post("/transfers", json={**t, "amount": 31}), 409, "idempotency_conflict")
    r = await client.post("/transfers", json={"id": "t-2", "from": "a", "to": "ghost", "amount": 5})
    refused(r, 409, "transfer_reversed", "account 'ghost' is not open")
    assert r.json()["transfer"]["refusal"] == "AccountNotOpen"
    r = await client.post("/transfers", json={"id": "t-3", "from": "a", "to": "b", "amount": 500})
    refused(r, 409, "transfer_failed", "insufficient funds")
    assert (await client.get("/transfers/t-3")).json()["status"] == "failed"
    refused(await client.get("/transfers/t-9"), 404, "unknown_transfer")
    refused(await client.post("/transfers", json={**t, "id": "t-4", "to": "a"}), 422, "invalid_request")
    refused(await client.post("/transfers", json={"id": "t-5"}), 422, "invalid_request", "'from'")
    assert [(await client.get(f"/accounts/{x}")).json()["balance"] for x in "ab"] == [70, 30]


async def test_respond_async_tells_and_answers_202(client: httpx.AsyncClient) -> None:
    await opened(client, "a")
    r = await client.post("/accounts/a/deposit", json={"amount": 7}, headers={"Prefer": "respond-async"})
    assert (r.status_code, r.json()) == (202, {"accepted": True})
    r = await client.post("/accounts/a/deposit", json={"amount": 1})  # handled after the tell, in order
    assert r.json() == {"balance": 8}
    t = {"id": "t-1", "from": "a", "to": "b", "amount": 1}
    r = await client.post("/transfers", json=t, headers={"Prefer": "respond-async"})
    assert (r.status_code, r.headers["location"]) == (202, "/transfers/t-1")


async def test_an_idempotency_key_makes_a_retry_safe(client: httpx.AsyncClient) -> None:
    await opened(client, "a")
    for _ in range(3):
        r = await client.post("/accounts/a/deposit", json={"amount": 5}, headers={"Idempotency-Key": "dep-1"})
        assert r.json() == {"balance": 5}
    r = await client.post("/accounts/a/deposit", json={"amount": 6}, headers={"Idempotency-Key": "dep-1"})
    refused(r, 409, "idempotency_conflict")
    assert (await client.get("/accounts/a")).json()["balance"] == 5


async def test_without_a_running_system_the_answer_is_503() -> None:
    transport = httpx.ASGITransport(app=create_app())  # its lifespan never ran
    async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as client:
        refused(await client.get("/accounts/a"), 503, "unavailable")


async def test_the_app_can_run_its_own_system(tmp_path: Path) -> None:
    app = create_app(db=tmp_path / "bank.db")
    for _ in range(2):  # the second time on the same file: the state is still there
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as client:
                await client.post("/accounts/a/open", json={"owner": "A"})
                r = await client.post("/accounts/a/deposit", json={"amount": 5})
    assert r.json() == {"balance": 10}
