"""What the examples' HTTP fronts share: JSON bodies, error answers, signal options.

An HTTP front turns a request into a signal (``tell`` or ``ask``) or a query, and
every refusal into a 4xx answer with a JSON body ``{"error": ..., "message": ...}``,
never a traceback. Needs the ``http`` extra (Starlette).

- ``Idempotency-Key: <key>`` on a POST makes it the signal's idempotency key: a
  client that retries after a lost answer gets the first outcome again.
- ``Prefer: respond-async`` on a POST sends the signal with ``tell``: the answer is
  ``202 Accepted`` once the signal is durably accepted, without waiting for it to run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cattrs.preconf.json import make_converter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from actors import (
    ActorsError,
    DeadlineExceeded,
    EntityRef,
    IdempotencyConflict,
    InvalidArguments,
    PayloadTooLarge,
    Rejected,
    SystemClosed,
)

Endpoint = Callable[[Request], Awaitable[Response]]

log = logging.getLogger("examples.web")
_converter = make_converter()


class BadRequest(Exception):
    """A request we cannot read: answered with its ``status`` and a JSON message."""

    def __init__(self, message: str, status: int = 400, error: str = "bad_request") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error


def to_json(value: object) -> Any:
    """Plain JSON data of an attrs value, a list of them, or a scalar (datetimes as ISO text)."""
    return _converter.unstructure(value)


def ok(value: object, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON answer of ``value``."""
    return JSONResponse(to_json(value), status_code=status, headers=headers)


def error(status: int, error: str, message: str) -> JSONResponse:
    """A JSON error answer."""
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def endpoints(statuses: Mapping[type[Rejected], int]) -> Callable[[Endpoint], Endpoint]:
    """A decorator turning errors into JSON answers; ``statuses`` maps refusals to codes.

    A ``Rejected`` subclass not in ``statuses`` (nor a subclass of one) is a 409.
    """

    def status_of(exc: Rejected) -> int:
        for cls in type(exc).__mro__:
            if cls in statuses:
                return statuses[cls]
        return 409

    def wrap(fn: Endpoint) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except BadRequest as e:
                return error(e.status, e.error, e.message)
            except Rejected as e:
                return error(status_of(e), _snake(type(e).__name__), e.message or str(e))
            except InvalidArguments as e:
                return error(422, "invalid_arguments", str(e))
            except IdempotencyConflict as e:
                return error(409, "idempotency_conflict", str(e))
            except PayloadTooLarge as e:
                return error(413, "payload_too_large", str(e))
            except DeadlineExceeded as e:
                return error(504, "deadline_exceeded", str(e))
            except SystemClosed as e:
                return error(503, "unavailable", str(e))
            except ActorsError as e:
                log.exception("%s %s failed", request.method, request.url.path)
                return error(500, _snake(type(e).__name__), str(e))
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)
                return error(500, "internal_error", "the server failed to handle this request")

        endpoint.__name__ = fn.__name__
        endpoint.__doc__ = fn.__doc__
        return endpoint

    return wrap


async def body(request: Request) -> dict[str, object]:
    """The request's JSON object body (``{}`` when empty)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _missing(name: str) -> BadRequest:
    return BadRequest(f"{name!r} is required", 422, "invalid_request")


def int_field(data: Mapping[str, object], name: str, default: int | None = None) -> int:
    """An integer field of a JSON body (422 when it is missing or not an integer)."""
    if name not in data:
        if default is None:
            raise _missing(name)
        return default
    v = data[name]
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRequest(f"{name!r} must be an integer, got {json.dumps(v)[:80]}", 422, "invalid_request")
    return v


def str_field(data: Mapping[str, object], name: str, default: str | None = None) -> str:
    """A string field of a JSON body (422 when it is missing or not a string)."""
    if name not in data:
        if default is None:
            raise _missing(name)
        return default
    v = data[name]
    if not isinstance(v, str):
        raise BadRequest(f"{name!r} must be a string, got {json.dumps(v)[:80]}", 422, "invalid_request")
    return v


def int_param(request: Request, name: str, default: int) -> int:
    """An integer query parameter (400 when it is not one)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer, got {raw!r:.80}") from None


def with_key(request: Request, ref: EntityRef[Any]) -> EntityRef[Any]:
    """``ref`` with the request's ``Idempotency-Key`` header as its key, if it has one."""
    key = request.headers.get("idempotency-key")
    return ref.options(key=key) if key else ref


def wants_async(request: Request) -> bool:
    """Whether the client sent ``Prefer: respond-async`` (answer 202 after ``tell``)."""
    prefer = request.headers.get("prefer", "")
    return "respond-async" in [p.strip().lower() for p in prefer.split(",")]


async def send(
    request: Request,
    ref: EntityRef[Any],
    handler: Callable[..., Any],
    *args: object,
    shape: Callable[[Any], object] = lambda result: result,
) -> Response:
    """Send a signal as the request asks: ``ask`` and answer ``shape(result)``, or ``tell`` and 202."""
    ref = with_key(request, ref)
    if wants_async(request):
        await ref.tell(handler, *args)
        return JSONResponse({"accepted": True}, status_code=202)
    return ok(shape(await ref.ask(handler, *args)))
