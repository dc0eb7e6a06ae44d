"""EntityRef: how callers reach an entity. ``tell`` / ``ask`` / ``query``.

The handler is passed as the method itself (``Account.deposit``: mypy and pyright
then check the arguments and the result type) or by name (``"deposit"``, for
dynamic callers such as the CLI).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from actors._ids import check_text
from actors._spec import EntitySpec
from actors.errors import InvalidArguments

E = TypeVar("E")
P = ParamSpec("P")
R = TypeVar("R")

MAX_KEY_LENGTH = 256


class Caller(Protocol):
    """Who carries a ref's calls: the system for callers outside, the invocation for a
    ref made inside a handler (``self.ref``). Declared here, implemented above."""

    def tell(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
    ) -> Awaitable[None]:
        """Send a signal; the awaitable is done once it is accepted."""
        ...

    def ask(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
    ) -> Coroutine[Any, Any, Any]:
        """Send a signal and wait for the handler's result."""
        ...

    def query(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        timeout: float | None,
    ) -> Coroutine[Any, Any, Any]:
        """Run a query on the committed state."""
        ...

    def start(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
    ) -> Coroutine[Any, Any, InvocationHandle[Any]]:
        """Accept a signal durably and return a handle on its invocation."""
        ...


class HandleHost(Protocol):
    """Who answers a handle's calls: the system outside, the invocation inside a handler."""

    def handle_result(
        self, handle_id: str, returns: object, timeout: float | None
    ) -> Coroutine[Any, Any, Any]:
        """Wait for the invocation's outcome."""
        ...

    def handle_cancel(self, handle_id: str, reason: str) -> Coroutine[Any, Any, None]:
        """Request the invocation's cancellation durably."""
        ...


def _seconds(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, dt.timedelta):
        secs = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        secs = float(timeout)
    else:
        raise InvalidArguments(f"timeout must be a timedelta or seconds, got {timeout!r:.80}")
    if not secs > 0:
        raise InvalidArguments(f"timeout must be positive, got {timeout!r:.80}")
    return secs


class InvocationHandle(Generic[R]):
    """A handle on one started invocation (``ref.start``); ``id`` is its signal id.

    ``await handle.result(timeout=...)`` returns the handler's result or raises its
    ``Rejected``, ``HandlerFailed`` or ``Cancelled`` (also from another system on the
    same store, or after a restart: ``system.handle(id)``). Inside a handler, awaiting
    a child's result is a checkpoint (the entity keeps serving meanwhile).
    """

    __slots__ = ("_host", "_returns", "id")

    def __init__(self, host: HandleHost, handle_id: str, returns: object = Any) -> None:
        self._host = host
        self._returns = returns
        self.id = handle_id
        """The invocation's signal id (give it to ``system.handle`` to rebuild this handle)."""

    def __repr__(self) -> str:
        return f"InvocationHandle({self.id!r})"

    async def result(self, *, timeout: dt.timedelta | float | None = None) -> R:
        """The invocation's outcome; ``DeadlineExceeded`` after ``timeout`` (wall clock)."""
        value: R = await self._host.handle_result(self.id, self._returns, _seconds(timeout))
        return value

    async def cancel(self, reason: str = "") -> None:
        """Request cancellation, durably: the invocation gets ``Cancelled`` at its current
        or next durable await. Nothing happens if it already ended."""
        if not isinstance(reason, str):
            raise InvalidArguments(f"reason must be a str, got {type(reason).__name__}")
        await self._host.handle_cancel(self.id, reason[:2000])


class EntityRef(Generic[E]):
    """A handle on one entity (type and id); cheap to create, safe to share.

    ``tell`` returns once the signal is durably accepted; ``ask`` returns the
    handler's result once its events are committed; ``query`` reads committed state.
    """

    __slots__ = ("_caller", "_key", "_owner", "_spec", "_timeout", "id")

    def __init__(
        self,
        caller: Caller,
        owner: object,
        spec: EntitySpec,
        entity_id: str,
        *,
        key: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self._caller = caller
        self._owner = owner
        """The system the entity lives in (refs of one entity in one system are equal)."""
        self._spec = spec
        self.id = entity_id
        self._key = key
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"EntityRef({self._spec.name}, {self.id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EntityRef):
            return NotImplemented
        return (self._owner, self._spec.name, self.id) == (
            other._owner,
            other._spec.name,
            other.id,
        )

    def __hash__(self) -> int:
        return hash((self._spec.name, self.id))

    @property
    def entity_type(self) -> str:
        """The stable name of the entity type."""
        return self._spec.name

    def options(self, *, key: str | None = None, timeout: dt.timedelta | float | None = None) -> EntityRef[E]:
        """This ref with an idempotency ``key`` and/or a ``timeout`` for its calls.

        A repeat of a call with the same key returns the first outcome; the same key
        with other arguments raises ``IdempotencyConflict``. ``timeout`` (seconds or
        timedelta, wall clock) bounds how long a call waits; past it the call raises
        ``DeadlineExceeded`` (a signal already accepted still runs).
        """
        if key is not None:
            check_text(key, "key", max_length=MAX_KEY_LENGTH)
        secs: float | None
        if timeout is None:
            secs = None
        elif isinstance(timeout, dt.timedelta):
            secs = timeout.total_seconds()
        elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            secs = float(timeout)
        else:
            raise InvalidArguments(f"timeout must be a timedelta or seconds, got {timeout!r}")
        if secs is not None and not secs > 0:
            raise InvalidArguments(f"timeout must be positive, got {timeout!r}")
        return EntityRef(self._caller, self._owner, self._spec, self.id, key=key, timeout=secs)

    # -- tell
    @overload
    def tell(
        self,
        handler: Callable[Concatenate[E, P], Awaitable[Any]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Awaitable[None]: ...
    @overload
    def tell(
        self, handler: Callable[Concatenate[E, P], Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[None]: ...
    @overload
    def tell(self, handler: str, /, *args: object, **kwargs: object) -> Awaitable[None]: ...
    def tell(self, handler: Any, /, *args: Any, **kwargs: Any) -> Awaitable[None]:
        """Send a signal; ``await`` it: it returns once the signal is durably accepted (on disk).

        Inside a handler (a ref from ``self.ref``) the signal goes to the outbox at the
        call itself, so a plain ``def`` handler may call it without ``await``: it is
        sent only if the invocation commits, and delivered at least once after it.
        """
        return self._caller.tell(self._spec, self.id, handler, args, kwargs, self._key, self._timeout)

    # -- ask
    @overload
    def ask(
        self,
        handler: Callable[Concatenate[E, P], Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Coroutine[Any, Any, R]: ...
    @overload
    def ask(
        self, handler: Callable[Concatenate[E, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]: ...
    @overload
    def ask(self, handler: str, /, *args: object, **kwargs: object) -> Coroutine[Any, Any, object]: ...
    def ask(self, handler: Any, /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """Send a signal and wait for the handler's result, returned after its commit.

        ``Rejected`` raised by the handler is raised here; a handler that crashed on
        every attempt raises ``HandlerFailed``. Inside a handler the answer is
        journaled: a re-run after a crash gets the recorded answer, and the callee
        sees the call once; the handler must be an ``async def`` (a plain ``def``
        could not await it: ``DefinitionError`` at the call). An ask that would close
        a cycle raises ``DeadlockError``.
        """
        return self._caller.ask(self._spec, self.id, handler, args, kwargs, self._key, self._timeout)

    # -- start
    @overload
    def start(
        self,
        handler: Callable[Concatenate[E, P], Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Coroutine[Any, Any, InvocationHandle[R]]: ...
    @overload
    def start(
        self, handler: Callable[Concatenate[E, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, InvocationHandle[R]]: ...
    @overload
    def start(
        self, handler: str, /, *args: object, **kwargs: object
    ) -> Coroutine[Any, Any, InvocationHandle[Any]]: ...
    def start(self, handler: Any, /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, InvocationHandle[Any]]:
        """Send a signal like ``tell`` (accepted durably) and return a handle on its invocation.

        Inside a handler the start is journaled and sent with the invocation's next
        commit (a checkpoint or its end); awaiting the child's ``result()`` there is a
        checkpoint.
        """
        return self._caller.start(self._spec, self.id, handler, args, kwargs, self._key, self._timeout)

    # -- query
    @overload
    async def query(
        self, handler: Callable[Concatenate[E, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...
    @overload
    async def query(self, handler: str, /, *args: object, **kwargs: object) -> object: ...
    async def query(self, handler: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run a ``@query`` on the committed state; never waits behind a running handler."""
        return await self._caller.query(self._spec, self.id, handler, args, kwargs, self._timeout)
