"""The bank's HTTP front serves the runtime's metrics at /metrics (Prometheus text)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors import ActorSystem
from actors.testing import VirtualClock
from examples.bank.http import PROMETHEUS, BankMetrics, create_app, observed
from examples.bank.model import ENTITIES
from persistence import MemoryStore
from tests.otel.test_optional import BLOCK_OTEL

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@attrs.frozen
class Bank:
    client: httpx.AsyncClient
    system: ActorSystem


@pytest.fixture
async def bank() -> AsyncIterator[Bank]:
    metrics = BankMetrics()
    store = MemoryStore()
    async with ActorSystem(store, entities=ENTITIES, clock=VirtualClock(), **observed(metrics)) as system:
        transport = httpx.ASGITransport(app=create_app(system, metrics=metrics))
        async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as client:
            yield Bank(client, system)


async def calls(client: httpx.AsyncClient) -> None:
    for acc in ("alice", "bob"):
        r = await client.post(f"/accounts/{acc}/open", json={"owner": acc.title()})
        assert r.status_code == 200, r.text
    for amount in (10, 20, 30):
        r = await client.post("/accounts/alice/deposit", json={"amount": amount})
        assert r.status_code == 200, r.text


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    matches = [v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= ls]
    assert len(matches) == 1, (name, labels, [k for k in samples(text) if k[0] == name])
    return matches[0]


def test_the_prometheus_extras_are_installed_for_the_suite() -> None:
    assert PROMETHEUS


async def test_metrics_are_served_in_the_prometheus_text_format(bank: Bank) -> None:
    await calls(bank.client)
    r = await bank.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    # the gauges read the running system's statistics at the scrape
    assert value(r.text, "actors_actors_active") == bank.system.statistics().active_actors == 2
    assert value(r.text, "actors_commit_pending") == bank.system.statistics().pending_writes
    # the bank's own routes are unchanged beside it
    assert (await bank.client.get("/accounts/alice")).json()["balance"] == 60


async def test_metrics_count_the_calls_the_bank_served(bank: Bank) -> None:
    await calls(bank.client)
    text = (await bank.client.get("/metrics")).text
    deposits = {"entity_type": "Account", "handler": "deposit", "outcome": "ok"}
    assert value(text, "actors_invocations_total", **deposits) == 3
    assert value(text, "actors_invocation_duration_seconds_count", **deposits) == 3
    assert value(text, "actors_commit_batch_size_count", outcome="ok") >= 1


@attrs.frozen
class Statistics:
    active_actors: int


async def test_two_apps_in_one_process_have_their_own_metrics(tmp_path: Path) -> None:
    """Nothing global: a second BankMetrics registers and serves without a clash."""
    both = {5: BankMetrics(), 9: BankMetrics()}
    for n, metrics in both.items():
        metrics.observer.watch(lambda n=n: Statistics(n))  # type: ignore[misc]
    for n, metrics in both.items():
        app = create_app(db=tmp_path / "unused.db", metrics=metrics)  # lifespan not run: no system
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            assert value((await c.get("/metrics")).text, "actors_actors_active") == n


def test_without_the_extras_the_bank_runs_without_metrics(tmp_path: Path) -> None:
    code = BLOCK_OTEL + textwrap.dedent(
        f"""
        from starlette.testclient import TestClient
        import examples.bank.http as bank_http
        assert not bank_http.PROMETHEUS
        try:
            bank_http.BankMetrics()
        except ImportError as e:
            print("refused:", e)
        with TestClient(bank_http.create_app(db={str(tmp_path / "bank.db")!r})) as client:
            print("metrics", client.get("/metrics").status_code)
            print("open", client.post("/accounts/alice/open", json={{"owner": "Alice"}}).status_code)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "refused: /metrics needs the otel extra" in proc.stdout
    assert "metrics 404" in proc.stdout
    assert "open 200" in proc.stdout
