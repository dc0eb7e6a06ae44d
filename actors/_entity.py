"""What an entity is: the Entity base, the handler decorators and reading a class into a spec.

An entity class is an attrs class deriving from :class:`Entity`; its attrs fields
are its state. ``@signal`` methods decide and ``emit`` events, ``@applies`` methods
(pure, one per event type, taken from the annotation) change the fields, ``@query``
methods read. The decorators only attach a marker; each ``ActorSystem`` reads the
markers into an :class:`~actors._spec.EntitySpec` of its own (:func:`build_spec`), so
there is no global registry.

Inside a handler, ``self.emit``, ``self.run`` and the other context calls go to a
:class:`HandlerContext`: a protocol declared here and implemented by the invocation
(a layer above), so the entity model imports nothing of the runtime.
"""

from __future__ import annotations

import datetime as dt
import inspect
import random as _random
import typing
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar, cast, overload

import attrs

from actors._policies import RetryPolicy
from actors._ref import EntityRef
from actors._spec import (
    READ_ONLY,
    RESERVED_NAMES,
    EntitySpec,
    HandlerSpec,
    Kind,
    checker,
    is_immutable_type,
)
from actors.errors import DefinitionError
from persistence.codec import Codec, fingerprint

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
T = TypeVar("T")
E2 = TypeVar("E2", bound="Entity")

_MARK = "__actors_handler__"


def _mark(kind: Kind) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        if not inspect.isfunction(fn):
            raise DefinitionError(f"@{kind} decorates a function (a method), not {fn!r}")
        if getattr(fn, _MARK, kind) != kind:
            raise DefinitionError(f"{fn.__qualname__} is already a @{getattr(fn, _MARK)} handler")
        setattr(fn, _MARK, kind)
        return fn

    return decorate


signal = _mark("signal")
signal.__doc__ = """Mark a method as a signal handler: it validates, then ``self.emit``s events.

May be ``def`` or ``async def``. Raise :class:`Rejected` to refuse. Its arguments
must be annotated (they are stored as JSON); its return value is the ``ask`` result.
"""
query = _mark("query")
query.__doc__ = """Mark a method as a query handler: read-only, answered from committed state."""
applies = _mark("applies")
applies.__doc__ = """Mark a method as the applier of one event type (from its annotation).

Appliers are the only code that changes fields. They must be pure and synchronous:
no I/O, no clock, no randomness; they run again on every replay.
"""


class SagaScope(Protocol):
    """A compensation scope (``async with self.saga() as saga``); see ``actors._saga``."""

    def compensate(self, fn: Callable[..., Any], /, *args: object) -> None:
        """Register the undo of the next step: an activity function or a ref's ``ask``."""
        ...

    async def __aenter__(self) -> SagaScope: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class HandlerContext(Protocol):
    """What an entity's context calls act on: one run of a signal handler.

    Declared here, implemented by the invocation layer (``actors._invocation``).
    """

    applying: bool
    """An ``@applies`` method is running: field writes are allowed."""

    @property
    def now(self) -> dt.datetime:
        """The invocation's time."""
        ...

    @property
    def rng(self) -> _random.Random:
        """The invocation's seeded random generator."""
        ...

    def emit(self, entity: Entity, event: object) -> None:
        """Apply and keep ``event``."""
        ...

    def resource(self, kind: type[T]) -> T:
        """The system's resource of type ``kind``."""
        ...

    def schedule(
        self,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        *,
        after: dt.timedelta | None,
        at: dt.datetime | None,
        every: dt.timedelta | None,
        key: str | None,
    ) -> str:
        """Schedule a timer; returns its key."""
        ...

    def cancel(self, key: str) -> None:
        """Cancel a timer."""
        ...

    def ref(self, entity: type[E2] | str, entity_id: str) -> EntityRef[E2]:
        """A ref bound to this invocation."""
        ...

    def saga(self, retry: RetryPolicy | None) -> SagaScope:
        """A compensation scope."""
        ...

    def gather(
        self, steps: tuple[Awaitable[Any], ...], limit: int | None, return_exceptions: bool
    ) -> Coroutine[Any, Any, list[Any]]:
        """Journaled steps run concurrently."""
        ...

    def run(
        self,
        fn: Callable[..., Any],
        args: tuple[object, ...],
        retry: RetryPolicy | None,
        timeout: dt.timedelta | None,
        heartbeat_timeout: dt.timedelta | None,
    ) -> Coroutine[Any, Any, Any]:
        """A journaled activity step."""
        ...

    def wait_until(
        self, predicate: Callable[[], object], timeout: dt.timedelta | None
    ) -> Coroutine[Any, Any, bool]:
        """A checkpoint that parks until ``predicate`` holds or ``timeout`` passes."""
        ...

    def sleep(self, duration: dt.timedelta) -> Coroutine[Any, Any, None]:
        """A checkpoint that parks for ``duration``."""
        ...

    def patched(self, change_id: str) -> bool:
        """Whether this invocation runs change ``change_id``'s code (journaled)."""
        ...


def _guard_write(entity: object, name: str) -> None:
    ctx = getattr(entity, "_actors_ctx", None)
    if ctx is not None and not ctx.applying and not name.startswith("_actors"):
        where = "a @query" if ctx is READ_ONLY else "a @signal handler"
        raise DefinitionError(
            f"{type(entity).__qualname__}.{name} was assigned in {where}: fields change only in "
            "@applies methods (emit an event)"
        )


class Entity:
    """Base class of entities. Subclass it with ``@attrs.define``; fields are state.

    Every field needs a default: a new entity starts from ``cls()``. Inside a
    handler, ``self.id``, ``self.emit``, ``self.now()`` and ``self.random()`` (and the
    other context calls) are available. Set ``snapshot_every`` (events between
    snapshots; 0 for never) and ``entity_name`` (stable stored name, default the
    class name) as class variables. Fields change only in ``@applies`` methods:
    assigning one in a handler or query raises ``DefinitionError``.
    """

    __slots__ = ("_actors_ctx", "_actors_id")
    _actors_ctx: HandlerContext | None
    snapshot_every: ClassVar[int] = 100
    entity_name: ClassVar[str | None] = None

    def __setattr__(self, name: str, value: Any) -> None:
        try:  # (an attribute read costs less than getattr() with a default; __init__ has none yet)
            ctx = self._actors_ctx
        except AttributeError:
            ctx = None
        if ctx is not None and not ctx.applying:  # else (an @applies method, no handler) allowed
            _guard_write(self, name)
        object.__setattr__(self, name, value)

    @property
    def id(self) -> str:
        """This entity's id."""
        try:
            return self._actors_id  # type: ignore[attr-defined,no-any-return]
        except AttributeError:
            raise RuntimeError("this entity is not run by an ActorSystem") from None

    def _ctx(self, call: str) -> HandlerContext:
        ctx: HandlerContext | None = getattr(self, "_actors_ctx", None)
        if ctx is None or ctx is READ_ONLY:
            raise RuntimeError(f"self.{call}() is only available inside a @signal handler")
        return ctx

    def emit(self, event: object) -> None:
        """Record ``event``: applied to the fields at once, persisted at commit."""
        try:
            ctx: HandlerContext | None = self._actors_ctx
        except AttributeError:
            ctx = None
        if ctx is None or ctx is READ_ONLY:
            ctx = self._ctx("emit")  # raises: only inside a @signal handler
        ctx.emit(self, event)

    def now(self) -> dt.datetime:
        """The time of this invocation (UTC): the same on every replay."""
        return self._ctx("now").now

    def random(self) -> _random.Random:
        """A random generator seeded from the invocation id: the same on every replay."""
        return self._ctx("random").rng

    def resource(self, kind: type[T]) -> T:
        """The object of type ``kind`` given to ``ActorSystem(resources=...)``.

        For what handlers need from outside (a payment gateway client, a mailer):
        use it inside activities (``self.run``), never to decide state directly.
        """
        return self._ctx("resource").resource(kind)

    def schedule(
        self,
        handler: Callable[..., Any] | str,
        /,
        *args: object,
        after: dt.timedelta | None = None,
        at: dt.datetime | None = None,
        every: dt.timedelta | None = None,
        key: str | None = None,
        **kwargs: object,
    ) -> str:
        """Deliver signal ``handler(*args)`` to this entity later; returns the timer key.

        Give ``after`` (from ``self.now()``) or ``at``; ``every`` repeats (missed ticks
        are coalesced into one firing). Scheduling a key again replaces that timer.
        Committed with the invocation: a failed handler schedules nothing.
        """
        return self._ctx("schedule").schedule(handler, args, kwargs, after=after, at=at, every=every, key=key)

    def cancel(self, key: str) -> None:
        """Cancel this entity's timer ``key`` (committed with the invocation)."""
        self._ctx("cancel").cancel(key)

    def ref(self, entity: type[E2] | str, entity_id: str) -> EntityRef[E2]:
        """A ref to another entity, bound to this invocation.

        Its ``tell`` goes through the outbox (sent only if this invocation commits);
        its ``ask`` is journaled (a re-run gets the recorded answer).
        """
        return self._ctx("ref").ref(entity, entity_id)

    def saga(self, *, retry: RetryPolicy | None = None) -> SagaScope:
        """A compensation scope: ``async with self.saga() as saga: saga.compensate(...)``.

        ``retry`` bounds how each compensation is retried (default: 20 attempts over
        about an hour); one still failing then raises ``CompensationFailed`` and the
        invocation is dead-lettered.
        """
        return self._ctx("saga").saga(retry)

    def gather(
        self, *steps: Awaitable[Any], limit: int | None = None, return_exceptions: bool = False
    ) -> Coroutine[Any, Any, list[Any]]:
        """Run journaled steps concurrently (at most ``limit`` at once); results in order.

        Pass un-awaited ``self.run(...)`` / ``self.ref(...).ask(...)`` calls. All
        branches finish; then the first failure (in argument order) is raised, or
        with ``return_exceptions=True`` failures are returned in their places.
        """
        return self._ctx("gather").gather(steps, limit, return_exceptions)

    def wait_until(
        self, predicate: Callable[[], object], /, *, timeout: dt.timedelta | None = None
    ) -> Coroutine[Any, Any, bool]:
        """Wait, without blocking this entity, until ``predicate()`` holds; ``await`` it.

        A checkpoint: what this invocation did so far (events, timers, outbox, journal)
        commits, the invocation parks and the entity goes on serving other signals
        and queries. ``predicate`` is evaluated on committed state after every commit
        of this entity; when it holds this returns True, when the durable ``timeout``
        passes first it returns False, and the invocation resumes as the entity's only
        running writer. Survives restarts (see the README, "Workflows").
        """
        return self._ctx("wait_until").wait_until(predicate, timeout)

    def sleep(self, duration: dt.timedelta, /) -> Coroutine[Any, Any, None]:
        """Sleep durably for ``duration`` without blocking this entity (a checkpoint,
        like ``wait_until``); ``await`` it."""
        return self._ctx("sleep").sleep(duration)

    def patched(self, change_id: str, /) -> bool:
        """Whether this invocation runs the code of change ``change_id``: True for
        invocations that reach this call under the new code, False when re-running an
        invocation journaled before the change (so it keeps its old steps). The answer
        is journaled."""
        return self._ctx("patched").patched(change_id)

    @overload
    def run(
        self,
        fn: Callable[..., Awaitable[R]],
        /,
        *args: object,
        retry: RetryPolicy | None = None,
        timeout: dt.timedelta | None = None,
        heartbeat_timeout: dt.timedelta | None = None,
    ) -> Coroutine[Any, Any, R]: ...
    @overload
    def run(
        self,
        fn: Callable[..., R],
        /,
        *args: object,
        retry: RetryPolicy | None = None,
        timeout: dt.timedelta | None = None,
        heartbeat_timeout: dt.timedelta | None = None,
    ) -> Coroutine[Any, Any, R]: ...
    def run(
        self,
        fn: Callable[..., Any],
        /,
        *args: object,
        retry: RetryPolicy | None = None,
        timeout: dt.timedelta | None = None,
        heartbeat_timeout: dt.timedelta | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Run activity ``fn(*args)`` (an external side effect) with retries; ``await`` it.

        The result is recorded before this returns, so a re-run after a crash gets it
        without calling ``fn`` again. Raises ``ActivityFailed`` when the activity fails
        for good (non-retryable error, or out of attempts). Only an ``async def``
        handler can await it: from a plain ``def`` this raises ``DefinitionError``.
        """
        return self._ctx("run").run(fn, args, retry, timeout, heartbeat_timeout)


def build_spec(cls: object, codec: Codec) -> EntitySpec:
    """Read an entity class's handlers; DefinitionError names what breaks the rules."""
    if not isinstance(cls, type) or not issubclass(cls, Entity):
        raise DefinitionError(f"{cls!r} is not a subclass of actors.Entity")
    if not attrs.has(cast(type, cls)):
        raise DefinitionError(f"{cls.__qualname__} must be an attrs class (@attrs.define)")
    name = cls.__dict__.get("entity_name") or cls.__name__
    if not isinstance(name, str) or not name or len(name) > 200:
        raise DefinitionError(f"{cls.__qualname__}.entity_name must be a short non-empty string")
    every = cls.snapshot_every
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise DefinitionError(f"{cls.__qualname__}.snapshot_every must be an int >= 0, got {every!r}")
    try:
        cls()
    except Exception as e:
        raise DefinitionError(
            f"{cls.__qualname__}() failed ({e}): every field of an entity needs a default"
        ) from e
    signals: dict[str, HandlerSpec] = {}
    queries: dict[str, HandlerSpec] = {}
    appliers: dict[type, Callable[[Any, Any], None]] = {}
    seen: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for attr, fn in vars(klass).items():
            if getattr(fn, _MARK, None) is not None:
                seen[attr] = fn
            elif attr in seen:  # overridden without a decorator
                del seen[attr]
    for attr, fn in seen.items():
        kind: Kind = getattr(fn, _MARK)
        if kind != "applies" and (attr in RESERVED_NAMES or attr.startswith("_actors")):
            raise DefinitionError(
                f"@{kind} {cls.__qualname__}.{attr} shadows Entity.{attr}: give the handler another name"
            )
        if kind == "applies":
            event_cls = _applier_event(cls, fn)
            if event_cls in appliers:
                raise DefinitionError(f"{cls.__qualname__} has two @applies for {event_cls.__qualname__}")
            try:
                codec.register_event(event_cls)
            except TypeError as e:  # no stable name (EventNameError), not attrs, a name clash
                raise DefinitionError(f"@applies {cls.__qualname__}.{attr}: {e}") from None
            appliers[event_cls] = fn
        else:
            h = _handler(cls, name, attr, kind, fn, codec)
            (signals if kind == "signal" else queries)[attr] = h
    fields = attrs.fields(cast(Any, cls))
    for a in fields:
        if a.name in RESERVED_NAMES or a.name.startswith("_actors"):
            raise DefinitionError(f"field {cls.__qualname__}.{a.name} shadows Entity.{a.name}: rename it")
    _guard_setattr(cls)
    hints = typing.get_type_hints(cls)
    schema = fingerprint(*(f"{a.name}:{hints.get(a.name, a.type)!r}" for a in fields))
    shallow = all(is_immutable_type(hints.get(a.name, a.type)) for a in fields)
    by_fn = {h.fn: h for h in (*signals.values(), *queries.values())}
    return EntitySpec(
        cls, name, signals, queries, appliers, every, schema, shallow, tuple(a.name for a in fields), by_fn
    )


def _guard_setattr(cls: type) -> None:
    """Make sure field writes of ``cls`` pass the guard, also when attrs made its own
    ``__setattr__`` for the class (it does for fields with validators or converters)."""
    own: Callable[[object, str, Any], None] = cls.__setattr__  # type: ignore[assignment]
    if own is cast(object, Entity.__setattr__) or getattr(own, "_actors_guarded", False):
        return

    def __setattr__(self: object, name: str, value: Any) -> None:
        _guard_write(self, name)
        own(self, name, value)

    __setattr__._actors_guarded = True  # type: ignore[attr-defined]
    cls.__setattr__ = __setattr__  # type: ignore[method-assign,assignment]


def _hints(cls: type, fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception as e:
        raise DefinitionError(f"{cls.__qualname__}.{fn.__name__}: cannot resolve annotations: {e}") from e


def _applier_event(cls: type, fn: Callable[..., Any]) -> type:
    where = f"{cls.__qualname__}.{fn.__name__}"
    if inspect.iscoroutinefunction(fn):
        raise DefinitionError(f"@applies {where} must be a plain def: appliers are pure")
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise DefinitionError(f"@applies {where} must take (self, event), takes {len(params)} parameters")
    tp = _hints(cls, fn).get(params[1].name)
    if tp is None:
        raise DefinitionError(f"@applies {where}: annotate the event parameter with its event class")
    if not isinstance(tp, type) or not attrs.has(tp):
        raise DefinitionError(f"@applies {where}: event type {tp!r} must be an attrs class")
    return tp


def _handler(
    cls: type, entity: str, attr: str, kind: Kind, fn: Callable[..., Any], codec: Codec
) -> HandlerSpec:
    where = f"{cls.__qualname__}.{attr}"
    sig = inspect.signature(fn)
    hints = _hints(cls, fn)
    ps = list(sig.parameters.values())
    if not ps or ps[0].kind not in (ps[0].POSITIONAL_ONLY, ps[0].POSITIONAL_OR_KEYWORD):
        raise DefinitionError(f"@{kind} {where} must be a method taking self first")
    params = []
    for p in ps[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DefinitionError(f"@{kind} {where}: *args/**kwargs are not allowed (name each argument)")
        tp = hints.get(p.name, inspect.Parameter.empty)
        if kind == "signal" and tp is inspect.Parameter.empty:
            raise DefinitionError(f"@signal {where}: annotate argument {p.name!r} (it is stored as JSON)")
        params.append((p.name, tp, checker(tp, codec), p.kind == p.KEYWORD_ONLY))
    is_async = inspect.iscoroutinefunction(fn)
    if kind == "query" and is_async:
        raise DefinitionError(f"@query {where} must be a plain def: queries read state and return")
    simple = all(p.kind == p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in ps[1:])
    plain = all(tp in (int, float, str, bool) for _n, tp, _c, _k in params)
    immutable = all(is_immutable_type(tp) for _n, tp, _c, _k in params)
    return HandlerSpec(
        entity,
        attr,
        kind,
        fn,
        is_async,
        sig,
        tuple(params),
        hints.get("return", Any),
        positional=tuple(p.name for p in ps[1:]) if simple else (),
        plain_json=plain,
        immutable_args=immutable,
    )
