"""What an entity is: the Entity base, the handler decorators and the handler registry.

An entity class is an attrs class deriving from :class:`Entity`; its attrs fields
are its state. ``@signal`` methods decide and ``emit`` events, ``@applies`` methods
(pure, one per event type, taken from the annotation) change the fields, ``@query``
methods read. The decorators only attach a marker; each ``ActorSystem`` reads the
markers into an :class:`EntitySpec` of its own, so there is no global registry.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import enum
import inspect
import json
import random as _random
import typing
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast, overload

import attrs

from actors.errors import DefinitionError, InvalidArguments, SerializationError
from persistence.codec import Codec, fingerprint, short_repr

if TYPE_CHECKING:
    from actors.activities import RetryPolicy
    from actors.context import Invocation
    from actors.ref import EntityRef
    from actors.saga import Saga

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
T = TypeVar("T")
E2 = TypeVar("E2", bound="Entity")

_MARK = "__actors_handler__"
Kind = Literal["signal", "query", "applies"]


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


class _ReadOnly:
    """The context of a ``@query``: no field may change, no context call is available."""

    applying = False


READ_ONLY: Any = _ReadOnly()


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
    snapshot_every: ClassVar[int] = 100
    entity_name: ClassVar[str | None] = None

    def __setattr__(self, name: str, value: Any) -> None:
        _guard_write(self, name)
        object.__setattr__(self, name, value)

    @property
    def id(self) -> str:
        """This entity's id."""
        try:
            return self._actors_id  # type: ignore[attr-defined,no-any-return]
        except AttributeError:
            raise RuntimeError("this entity is not run by an ActorSystem") from None

    def _ctx(self, call: str) -> Invocation:
        ctx: Invocation | None = getattr(self, "_actors_ctx", None)
        if ctx is None or ctx is READ_ONLY:
            raise RuntimeError(f"self.{call}() is only available inside a @signal handler")
        return ctx

    def emit(self, event: object) -> None:
        """Record ``event``: applied to the fields at once, persisted at commit."""
        self._ctx("emit").emit(self, event)

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
        return self._ctx("resource").actor.system.resource(kind)

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
        from actors.ref import EntityRef

        inv = self._ctx("ref")
        system = inv.actor.system
        spec = system.spec_of(entity)
        system.check_id(entity_id)
        return EntityRef(system, spec, entity_id, inv=inv)

    def saga(self, *, retry: RetryPolicy | None = None) -> Saga:
        """A compensation scope: ``async with self.saga() as saga: saga.compensate(...)``.

        ``retry`` bounds how each compensation is retried (default: 20 attempts over
        about an hour); one still failing then raises ``CompensationFailed`` and the
        invocation is dead-lettered.
        """
        from actors.saga import Saga

        return Saga(self._ctx("saga"), retry)

    def gather(
        self, *steps: Awaitable[Any], limit: int | None = None, return_exceptions: bool = False
    ) -> Coroutine[Any, Any, list[Any]]:
        """Run journaled steps concurrently (at most ``limit`` at once); results in order.

        Pass un-awaited ``self.run(...)`` / ``self.ref(...).ask(...)`` calls. All
        branches finish; then the first failure (in argument order) is raised, or
        with ``return_exceptions=True`` failures are returned in their places.
        """
        from actors.saga import gather

        inv = self._ctx("gather")
        inv.assert_async("self.gather(...)")
        return gather(inv, steps, limit=limit, return_exceptions=return_exceptions)

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
        from actors.activities import run_activity

        inv = self._ctx("run")
        inv.assert_async("self.run(...)")
        return run_activity(inv, fn, args, retry=retry, timeout=timeout, heartbeat_timeout=heartbeat_timeout)


# ---------------------------------------------------------------- specs

_IMMUTABLE = (
    int, float, str, bool, bytes, type(None), dt.datetime, dt.date, dt.timedelta, decimal.Decimal, uuid.UUID
)  # fmt: skip
IMMUTABLE_VALUES: frozenset[type] = frozenset(_IMMUTABLE)
"""Types whose values may be shared without a copy (none of their parts can change)."""

RESERVED_NAMES = frozenset(
    {
        "id", "emit", "now", "random", "resource", "schedule", "cancel", "ref", "saga",
        "gather", "run", "wait_until", "sleep", "patched", "snapshot_every", "entity_name",
    }
)  # fmt: skip
"""Names of Entity's own attributes (and of those the next versions add): no handler or
field may take one, or it would shadow the context call."""


def _is_immutable_type(tp: object) -> bool:
    if tp in _IMMUTABLE:
        return True
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return True
    origin = typing.get_origin(tp)
    if origin in (tuple, frozenset, typing.Union, type(int | None)):
        return all(_is_immutable_type(a) for a in typing.get_args(tp) if a is not Ellipsis)
    return origin is Literal


def _checker(tp: object, codec: Codec) -> Callable[[object], bool]:
    """A cheap predicate telling whether a value fits annotation ``tp``."""
    if tp in (Any, object, inspect.Parameter.empty):
        return lambda v: True
    if tp is int:
        return lambda v: type(v) is int or (isinstance(v, int) and not isinstance(v, bool))
    if tp is float:
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is dt.date:  # a datetime is a date to isinstance, but is stored with its time
        return lambda v: isinstance(v, dt.date) and not isinstance(v, dt.datetime)
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return lambda v: isinstance(v, tp)
    conv = codec.converter

    def roundtrip(v: object) -> bool:
        try:
            conv.structure(conv.unstructure(v, unstructure_as=tp), tp)  # type: ignore[arg-type]
        except Exception:
            return False
        return True

    return roundtrip


@attrs.frozen
class HandlerSpec:
    """A registered handler: how to bind, check, encode and call it."""

    entity: str
    name: str
    kind: Kind
    fn: Callable[..., Any]
    is_async: bool
    signature: inspect.Signature
    params: tuple[tuple[str, object, Callable[[object], bool], bool], ...]
    """(name, annotation, checker, keyword_only) per parameter after ``self``."""
    returns: object
    positional: tuple[str, ...] = ()
    """Names of the parameters when all are positional-or-keyword without defaults
    (the fast binding path); empty when the signature needs ``inspect`` to bind."""
    plain_json: bool = False
    """Every parameter is an int, float, str or bool: encode without cattrs."""
    immutable_args: bool = False
    """Every parameter's type is immutable: bound values may be shared with the handler."""

    def bind(self, args: tuple[object, ...], kwargs: dict[str, object]) -> dict[str, object]:
        """Bind call arguments to parameter names; InvalidArguments if they do not fit."""
        if not kwargs and self.positional and len(args) == len(self.positional):
            values = dict(zip(self.positional, args, strict=True))
        else:
            try:
                ba = self.signature.bind(None, *args, **kwargs)
            except TypeError as e:
                raise InvalidArguments(f"{self.entity}.{self.name}: {e}") from None
            ba.apply_defaults()
            values = dict(ba.arguments)
            values.pop(next(iter(self.signature.parameters)))
        for name, tp, check, _kw in self.params:
            v = values[name]
            if not check(v):
                raise InvalidArguments(
                    f"{self.entity}.{self.name}: argument {name!r} must be {_type_name(tp)}, "
                    f"got {type(v).__name__} {short_repr(v, 80)}"
                )
        return values

    def encode(self, codec: Codec, values: dict[str, object]) -> str:
        """The JSON text of bound arguments."""
        if self.plain_json:
            try:
                text = _plain_dumps(values)
            except ValueError as e:  # NaN or infinity
                raise SerializationError(f"{self.entity}.{self.name}: cannot encode arguments: {e}") from e
            codec.check_size(text, f"arguments of {self.entity}.{self.name}")
            return text
        conv = codec.converter
        try:
            raw = {n: conv.unstructure(values[n], unstructure_as=tp) for n, tp, _c, _k in self.params}
        except Exception as e:
            raise SerializationError(f"{self.entity}.{self.name}: cannot encode arguments: {e}") from e
        return codec.dumps(raw, what=f"arguments of {self.entity}.{self.name}")

    def decode(self, codec: Codec, text: str) -> dict[str, object]:
        """Bound arguments back from their JSON text."""
        raw = codec.loads(text, dict[str, Any])
        conv = codec.converter
        try:
            return {n: conv.structure(raw[n], tp) for n, tp, _c, _k in self.params}  # type: ignore[arg-type]
        except Exception as e:
            raise SerializationError(f"{self.entity}.{self.name}: cannot decode arguments: {e}") from e

    def call(self, entity: object, values: dict[str, object]) -> Any:
        """Call the handler on ``entity`` with bound ``values``."""
        pos = [values[n] for n, _t, _c, kw in self.params if not kw]
        kws = {n: values[n] for n, _t, _c, kw in self.params if kw}
        return self.fn(entity, *pos, **kws)

    def call_query(self, entity: Entity, values: dict[str, object]) -> Any:
        """Call a ``@query`` on ``entity``: any field write in it raises DefinitionError."""
        before = getattr(entity, "_actors_ctx", None)
        object.__setattr__(entity, "_actors_ctx", READ_ONLY)
        try:
            return self.call(entity, values)
        finally:
            object.__setattr__(entity, "_actors_ctx", before)

    def fingerprint(self, args_json: str) -> str:
        """Digest of handler name and encoded arguments."""
        return fingerprint(self.name, args_json)


_plain_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _type_name(tp: object) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp).replace("typing.", "")


@attrs.frozen
class EntitySpec:
    """Everything a system knows about one entity class."""

    cls: type[Entity]
    name: str
    signals: dict[str, HandlerSpec]
    queries: dict[str, HandlerSpec]
    appliers: dict[type, Callable[[Any, Any], None]]
    snapshot_every: int
    schema: str
    """Fingerprint of the state's fields: a snapshot of another schema is skipped."""
    shallow_copy: bool
    """All fields are immutable values, so a shallow copy is a full copy."""
    field_names: tuple[str, ...] = ()
    """The attrs fields (the state)."""

    def new(self, entity_id: str) -> Entity:
        """A fresh instance in its initial state."""
        e = self.cls()
        object.__setattr__(e, "_actors_id", entity_id)
        object.__setattr__(e, "_actors_ctx", None)
        return e

    def clone(self, e: Entity) -> Entity:
        """An independent copy of an instance's state (for rollback and queries)."""
        c = object.__new__(type(e))
        put = object.__setattr__
        if self.shallow_copy:
            for name in self.field_names:
                put(c, name, getattr(e, name))
        else:
            for name in self.field_names:
                put(c, name, copy.deepcopy(getattr(e, name)))
        put(c, "_actors_id", e._actors_id)  # type: ignore[attr-defined]
        put(c, "_actors_ctx", None)
        return c


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
    shallow = all(_is_immutable_type(hints.get(a.name, a.type)) for a in fields)
    return EntitySpec(
        cls, name, signals, queries, appliers, every, schema, shallow, tuple(a.name for a in fields)
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
        params.append((p.name, tp, _checker(tp, codec), p.kind == p.KEYWORD_ONLY))
    is_async = inspect.iscoroutinefunction(fn)
    if kind == "query" and is_async:
        raise DefinitionError(f"@query {where} must be a plain def: queries read state and return")
    simple = all(p.kind == p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in ps[1:])
    plain = all(tp in (int, float, str, bool) for _n, tp, _c, _k in params)
    immutable = all(_is_immutable_type(tp) for _n, tp, _c, _k in params)
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
