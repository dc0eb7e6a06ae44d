"""The bank over HTTP: a Starlette (ASGI) app. Needs the ``http`` extra.

``POST`` routes send signals (``ask``, or ``tell`` with ``Prefer: respond-async``;
an ``Idempotency-Key`` header becomes the signal's key), ``GET`` routes run queries::

    POST /accounts/{id}/open       {"owner": "alice", "overdraft_limit": 0}
    POST /accounts/{id}/deposit    {"amount": 100, "reference": "salary"}
    POST /accounts/{id}/withdraw   {"amount": 30}
    POST /accounts/{id}/overdraft  {"limit": 500}
    GET  /accounts/{id}            owner, balance, limit
    GET  /accounts/{id}/statement?last=10
    POST /transfers                {"id": "t-1", "from": "alice", "to": "bob", "amount": 25}
    GET  /transfers/{id}           its status (completed, failed or reversed)

    GET  /members                  the members of a shared store (name, status, shards, ...)

Refusals are 4xx answers with ``{"error": ..., "message": ...}``; a transfer that
failed or was reversed answers 409 with the reason and the transfer. Serve it with
``uvicorn --factory examples.bank.http:create_app [--workers N]``, or hand
``create_app`` a running ``ActorSystem``. Each worker process runs its own system,
configured by the environment:

- ``BANK_DB``: a SQLite file (default ``bank.db``) or a ``postgresql://`` DSN.
- ``BANK_SHARED=1``: open the SQLite file shared, so several processes (the workers,
  members started with ``python -m examples.bank.member``) use it at once. A plain
  SQLite file is exclusive: one worker. PostgreSQL is always shared.
- ``BANK_SERVE=0``: each worker is a client (``serve=False``): it owns no accounts and
  sends every call to the members that do (implies ``BANK_SHARED=1``). The default,
  ``1``, makes each worker a member too (on a shared store).

With the ``otel`` extra and ``opentelemetry-exporter-prometheus`` installed, the app
also serves the runtime's metrics for Prometheus::

    GET  /metrics                  Prometheus text format (see README, "Observability")

Without them it runs the same, without ``/metrics``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actors import ActorSystem, EntityRef, InvalidArguments, Member, Rejected, SystemClosed
from examples.bank.model import (
    ENTITIES,
    Account,
    AccountAlreadyOpen,
    AccountNotOpen,
    InsufficientFunds,
    InvalidRequest,
    Transfer,
    TransferConflict,
    TransferView,
    UnknownTransfer,
)
from examples.bank.worker import is_dsn, store_at
from examples.web import (
    BadRequest,
    Endpoint,
    body,
    endpoints,
    int_field,
    int_param,
    ok,
    send,
    str_field,
    wants_async,
)

try:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from actors.otel import OtelObserver
except ImportError:  # the otel extra or the Prometheus exporter is missing: no /metrics
    PROMETHEUS = False
else:
    PROMETHEUS = True

STATUSES: dict[type[Rejected], int] = {
    InvalidRequest: 422,
    AccountNotOpen: 404,
    UnknownTransfer: 404,
    AccountAlreadyOpen: 409,
    InsufficientFunds: 409,
    TransferConflict: 409,
}
"""The HTTP status of each refusal."""

endpoint = endpoints(STATUSES)


class BankAPI:
    """The routes, over the system they send to."""

    def __init__(self, system: ActorSystem | None) -> None:
        self.system = system

    def _system(self) -> ActorSystem:
        if self.system is None:
            raise SystemClosed("the bank is not running")
        return self.system

    def account(self, request: Request) -> EntityRef[Account]:
        return self._system().ref(Account, request.path_params["id"])

    async def open(self, request: Request) -> Response:
        data = await body(request)
        owner = str_field(data, "owner")
        limit = int_field(data, "overdraft_limit", 0)
        return await send(request, self.account(request), Account.open, owner, limit)

    async def deposit(self, request: Request) -> Response:
        data = await body(request)
        amount, reference = int_field(data, "amount"), str_field(data, "reference", "")
        return await send(request, self.account(request), Account.deposit, amount, reference, shape=_balance)

    async def withdraw(self, request: Request) -> Response:
        data = await body(request)
        amount, reference = int_field(data, "amount"), str_field(data, "reference", "")
        return await send(request, self.account(request), Account.withdraw, amount, reference, shape=_balance)

    async def overdraft(self, request: Request) -> Response:
        limit = int_field(await body(request), "limit")
        return await send(request, self.account(request), Account.set_overdraft_limit, limit)

    async def summary(self, request: Request) -> Response:
        return ok(await self.account(request).query(Account.summary))

    async def statement(self, request: Request) -> Response:
        last = int_param(request, "last", 10)
        return ok({"entries": await self.account(request).query(Account.statement, last)})

    async def transfer(self, request: Request) -> Response:
        data = await body(request)
        tid = str_field(data, "id")
        source, destination = str_field(data, "from"), str_field(data, "to")
        amount = int_field(data, "amount")
        ref = self._system().ref(Transfer, tid)
        key = request.headers.get("idempotency-key") or f"transfer/{tid}"  # idempotent by its id
        ref = ref.options(key=key)
        if wants_async(request):
            await ref.tell(Transfer.start, source, destination, amount)
            return ok({"accepted": True}, 202, headers={"location": f"/transfers/{tid}"})
        return _transfer_answer(await ref.ask(Transfer.start, source, destination, amount))

    async def transfer_status(self, request: Request) -> Response:
        return ok(await self._system().ref(Transfer, request.path_params["id"]).query(Transfer.view))

    async def members(self, request: Request) -> Response:
        """The members and clients of the shared store; ``me`` marks the one answering."""
        system = self._system()
        if system.member_id is None:
            raise BadRequest("the bank's store is not shared: it has no members", 404, "not_shared")
        return ok([_member(m) for m in await system.members()])

    def routes(self) -> list[Route]:
        """The app's routes; each answers errors as JSON (see ``examples.web.endpoints``)."""
        table: list[tuple[str, str, Endpoint]] = [
            ("POST", "/accounts/{id}/open", self.open),
            ("POST", "/accounts/{id}/deposit", self.deposit),
            ("POST", "/accounts/{id}/withdraw", self.withdraw),
            ("POST", "/accounts/{id}/overdraft", self.overdraft),
            ("GET", "/accounts/{id}", self.summary),
            ("GET", "/accounts/{id}/statement", self.statement),
            ("POST", "/transfers", self.transfer),
            ("GET", "/transfers/{id}", self.transfer_status),
            ("GET", "/members", self.members),
        ]
        return [Route(path, endpoint(fn), methods=[method]) for method, path, fn in table]


class BankMetrics:
    """The runtime's OpenTelemetry metrics, served in Prometheus' text format.

    Give :attr:`observer` to the ``ActorSystem`` and this object to :func:`create_app`,
    which serves ``GET /metrics``. Each instance has its own meter provider and
    Prometheus registry (nothing global), so several apps can live in one process.
    Needs the ``otel`` extra and ``opentelemetry-exporter-prometheus``
    (:data:`PROMETHEUS` says whether they are installed).
    """

    def __init__(self) -> None:
        if not PROMETHEUS:
            raise ImportError(
                "/metrics needs the otel extra and opentelemetry-exporter-prometheus: "
                "pip install 'durable-entity-actors[otel]' opentelemetry-exporter-prometheus"
            )
        self.registry = CollectorRegistry()
        self.meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=self.registry)])
        self.observer = OtelObserver(self.meter_provider)
        """The observer to run the system with; its gauges read ``watch``-ed statistics."""

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``: collects on the event loop, so the gauges read the system safely."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def observed(metrics: BankMetrics | None) -> dict[str, Any]:
    """``ActorSystem`` keyword arguments that feed ``metrics`` (none when it is None)."""
    return {} if metrics is None else {"observer": metrics.observer}


def _member(m: Member) -> dict[str, object]:
    return {
        "member_id": m.member_id,
        "name": m.name,
        "serves": m.serves,
        "status": m.status,
        "shards": len(m.shards),
        "seen_ago": round(m.seen_ago, 3),
        "me": m.me,
    }


def _balance(balance: int) -> dict[str, int]:
    return {"balance": balance}


def _transfer_answer(view: TransferView) -> Response:
    """200 with the transfer when it completed; 409 with the reason when it failed or was reversed."""
    if view.status == "completed":
        return ok(view)
    return ok({"error": f"transfer_{view.status}", "message": view.reason, "transfer": view}, 409)


def _flag(name: str, default: bool) -> bool:
    """A 0/1 environment variable (``default`` when unset or empty)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidArguments(f"${name} must be 0 or 1, got {raw!r:.40}")


def create_app(
    system: ActorSystem | None = None,
    *,
    db: str | os.PathLike[str] | None = None,
    metrics: BankMetrics | None = None,
    shared: bool | None = None,
    serve: bool | None = None,
) -> Starlette:
    """The bank's ASGI app over ``system``; without one, it runs its own on ``db``.

    ``db`` (default ``$BANK_DB``, else ``bank.db``) is a SQLite file or a
    ``postgresql://`` DSN. ``shared`` (default ``$BANK_SHARED``) opens the SQLite file
    shared by several processes (PostgreSQL always is); ``serve`` (default
    ``$BANK_SERVE``, else True) False makes the app's system a client that owns no
    shards (it implies ``shared``). A bad environment value is ``InvalidArguments``.

    ``metrics`` (the one ``system`` was given the observer of) is served at
    ``/metrics``; an app running its own system makes its own when the Prometheus
    extras are installed.
    """
    api = BankAPI(system)
    location = str(db if db is not None else os.environ.get("BANK_DB") or "bank.db")
    if serve is None:
        serve = _flag("BANK_SERVE", True)
    if shared is None:
        shared = _flag("BANK_SHARED", not serve)
    if not serve and not shared and not is_dsn(location):
        raise InvalidArguments("a client (serve=False) needs a shared store: BANK_SHARED=1 or PostgreSQL")
    if metrics is None and system is None and PROMETHEUS:
        metrics = BankMetrics()
    if metrics is not None and system is not None:
        metrics.observer.watch(system.statistics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if system is not None:
            yield
            return
        store = store_at(location, shared=shared)
        async with ActorSystem(store, entities=ENTITIES, serve=serve, **observed(metrics)) as own:
            api.system = own
            if metrics is not None:
                metrics.observer.watch(own.statistics)
            try:
                yield
            finally:
                api.system = None
                if metrics is not None:
                    metrics.observer.watch(None)

    routes = api.routes()
    if metrics is not None:
        routes.append(Route("/metrics", metrics.endpoint, methods=["GET"]))
    return Starlette(routes=routes, lifespan=lifespan)
