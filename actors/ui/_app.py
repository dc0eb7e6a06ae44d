"""The ASGI app of the web UI: server-rendered pages on starlette and jinja2.

Every page reads through :class:`actors.inspect.Inspection` (read-only); the one
write, retrying a dead letter, goes through a running :class:`ActorSystem` given to
:func:`app`, never to the file: only the system that owns the store may write it.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from actors._entity import Entity
from actors._system import ActorSystem
from actors.errors import ActorsError, InvalidArguments, UnknownEntity
from actors.inspect import Inspection, to_json
from persistence.errors import DatabaseNotFound
from persistence.inspect import is_dsn
from persistence.postgres import redact

_NAV = (
    ("/", "entities"),
    ("/timers", "timers"),
    ("/invocations", "invocations"),
    ("/inbox", "inbox"),
    ("/outbox", "outbox"),
    ("/dead-letters", "dead letters"),
    ("/members", "members"),
)
_LIMIT = 500
_NO_SYSTEM = (
    "Retry is disabled: this UI reads the database file only. A dead letter is retried by "
    "the running system that owns the store: mount actors.ui.app(..., system=system) in it."
)
_SIG = ("entity_type", "entity_id", "handler", "args", "signal_id", "accepted_at")

Page = Callable[[Request, Inspection], Awaitable[Response]]


def app(
    source: str | os.PathLike[str] | Inspection,
    *,
    entities: Sequence[type[Entity]] = (),
    system: ActorSystem | None = None,
) -> Starlette:
    """The UI as an ASGI app, to serve or to mount (``Mount("/actors", app(...))``).

    ``source`` is the database path (read-only, per request) or an open
    :class:`Inspection` that the caller keeps open. ``entities`` decode state (types
    without a class are shown as stored JSON). ``system`` is the running system that
    owns the store, to enable the retry button; it must run on the app's event loop.
    """
    if isinstance(source, (str, os.PathLike)):
        if not is_dsn(source) and not Path(source).is_file():
            raise DatabaseNotFound(f"no database at {source} (nothing was created; check the path)")
        classes = list(entities)

        @asynccontextmanager
        async def open_inspection() -> AsyncIterator[Inspection]:
            async with Inspection(source, entities=classes) as ins:
                yield ins

        label = redact(str(source)) if is_dsn(source) else str(source)
    elif isinstance(source, Inspection):
        opened = source

        @asynccontextmanager
        async def open_inspection() -> AsyncIterator[Inspection]:
            yield opened

        label = repr(source.inspector)
    else:
        raise InvalidArguments(
            f"source must be a database path, a postgresql:// DSN or an Inspection, got {source!r:.80}"
        )
    if system is not None and not isinstance(system, ActorSystem):
        raise InvalidArguments(f"system must be an ActorSystem, got {system!r:.80}")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("actors.ui", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    ui = _Ui(env, open_inspection, label, system)
    routes = [
        Route("/", ui.page(ui.home)),
        Route("/entities", ui.page(ui.entities)),
        Route("/entity", ui.page(ui.entity)),
        Route("/timers", ui.page(ui.timers)),
        Route("/invocations", ui.page(ui.invocations)),
        Route("/inbox", ui.page(ui.inbox)),
        Route("/outbox", ui.page(ui.outbox)),
        Route("/dead-letters", ui.page(ui.dead_letters)),
        Route("/members", ui.page(ui.members)),
        Route("/dead-letters/{dead_letter_id:int}/retry", ui.retry, methods=["POST"]),
    ]
    return Starlette(routes=routes)


class _Ui:
    def __init__(
        self,
        env: jinja2.Environment,
        open_inspection: Callable[[], Any],
        label: str,
        system: ActorSystem | None,
    ) -> None:
        self.env = env
        self.open = open_inspection
        self.label = label
        self.system = system

    def render(
        self, request: Request, name: str, here: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        base = str(request.scope.get("root_path", "")).rstrip("/")
        values.setdefault("error", None)
        html = self.env.get_template(name).render(base=base, nav=_NAV, here=here, source=self.label, **values)
        return HTMLResponse(html, status_code=status)

    def page(self, fn: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                async with self.open() as ins:
                    return await fn(request, ins)
            except ActorsError as e:
                status = 404 if isinstance(e, (UnknownEntity, DatabaseNotFound)) else 400
                if not isinstance(e, (UnknownEntity, InvalidArguments, DatabaseNotFound)):
                    status = 500
                return self.render(
                    request,
                    "list.html",
                    "error",
                    status,
                    error=f"{type(e).__name__}: {e}",
                    rows=[],
                    cols=[],
                    intro="",
                    empty="",
                )

        return endpoint

    # ------------------------------------------------------------ pages
    async def home(self, request: Request, ins: Inspection) -> Response:
        types = []
        for name in await ins.entity_types():
            n = len(await ins.entities(name, limit=100_000))
            types.append({"name": name, "count": n, "decoded": name in ins.specs})
        counts = [
            ("timers", "/timers", len(await ins.timers(limit=100_000))),
            ("invocations", "/invocations", len(await ins.invocations())),
            ("inbox", "/inbox", len(await ins.inbox(limit=100_000))),
            ("outbox", "/outbox", len(await ins.outbox(limit=100_000))),
            ("dead letters", "/dead-letters", len(await ins.dead_letters(limit=100_000))),
        ]
        return self.render(request, "home.html", "entities", types=types, counts=counts)

    async def entities(self, request: Request, ins: Inspection) -> Response:
        entity_type = _param(request, "type")
        rows = to_json(await ins.entities(entity_type, limit=_LIMIT))
        return self.render(
            request, "entities.html", "entities", entity_type=entity_type, rows=rows, limit=_LIMIT
        )

    async def entity(self, request: Request, ins: Inspection) -> Response:
        entity_type, entity_id = _param(request, "type"), _param(request, "id")
        raw_at = request.query_params.get("at")
        at = None
        if raw_at is not None:
            if not raw_at.isdecimal():
                raise InvalidArguments(f"at must be a sequence number, got {raw_at!r}")
            at = int(raw_at)
        st = to_json(await ins.state(entity_type, entity_id, at=at))
        events = to_json(await ins.history(entity_type, entity_id))
        query = urllib.parse.urlencode({"type": entity_type, "id": entity_id})
        base = str(request.scope.get("root_path", "")).rstrip("/")
        return self.render(
            request, "entity.html", "entities", st=st, events=events, here_url=f"{base}/entity?{query}"
        )

    async def timers(self, request: Request, ins: Inspection) -> Response:
        rows = to_json(await ins.timers(limit=_LIMIT))
        cols = ("entity_type", "entity_id", "key", "handler", "args", "due_at", "every")
        return self._list(request, "timers", rows, cols, "No timers.")

    async def invocations(self, request: Request, ins: Inspection) -> Response:
        rows = to_json(await ins.invocations())
        return self.render(request, "invocations.html", "invocations", rows=rows)

    async def inbox(self, request: Request, ins: Inspection) -> Response:
        rows = to_json(await ins.inbox(limit=_LIMIT))
        return self._list(request, "inbox", rows, ("position", *_SIG), "The inbox is empty.")

    async def outbox(self, request: Request, ins: Inspection) -> Response:
        rows = to_json(await ins.outbox(limit=_LIMIT))
        return self._list(request, "outbox", rows, ("id", *_SIG), "The outbox is empty.")

    async def members(self, request: Request, ins: Inspection) -> Response:
        m = to_json(await ins.members())
        if not m["clustered"]:
            return self._list(request, "members", [], (), "Not clustered: this store has a single owner.")
        rows = m["members"]
        return self._list(request, "members", rows, tuple(rows[0]) if rows else (), "No members.")

    def _list(self, request: Request, here: str, rows: Any, cols: Sequence[str], empty: str) -> Response:
        return self.render(request, "list.html", here, rows=rows, cols=cols, empty=empty, intro="")

    async def dead_letters(self, request: Request, ins: Inspection) -> Response:
        rows = to_json(await ins.dead_letters(limit=_LIMIT))
        retried = request.query_params.get("retried")
        note = (
            f"Dead letter {retried} is back in its entity's inbox." if retried and retried.isdecimal() else ""
        )
        return self.render(
            request,
            "dead_letters.html",
            "dead letters",
            rows=rows,
            retried=note,
            can_retry=self.system is not None,
            no_retry=_NO_SYSTEM,
        )

    # ------------------------------------------------------------ the one write
    async def retry(self, request: Request) -> Response:
        if not _same_origin(request):
            return HTMLResponse("refused: a retry must come from this UI's own pages", status_code=403)
        if self.system is None:
            return HTMLResponse(_NO_SYSTEM, status_code=409)
        dl_id = int(request.path_params["dead_letter_id"])
        try:
            await self.system.retry_dead_letter(dl_id)
        except ActorsError as e:
            return HTMLResponse(f"cannot retry dead letter {dl_id}: {type(e).__name__}: {e}", status_code=400)
        base = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(f"{base}/dead-letters?retried={dl_id}", status_code=303)


def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise InvalidArguments(f"the page needs the query parameter {name!r}")
    return value


def _same_origin(request: Request) -> bool:
    """A write must come from a page of this UI (a form of another site is refused)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by a browser's cross-site form (those always send Origin)
    return urllib.parse.urlsplit(origin).netloc == request.headers.get("host")
