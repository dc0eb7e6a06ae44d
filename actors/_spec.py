"""Handler and entity specs: what a system knows about each entity class.

A :class:`HandlerSpec` binds, checks, encodes and calls one handler; an
:class:`EntitySpec` holds an entity class's handlers, appliers and snapshot
settings, resolves a handler given as function or name, and builds the record of
a signal call. Plain data: built by ``actors._entity.build_spec``.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import enum
import inspect
import operator
import typing
import uuid
from collections.abc import Callable
from typing import Any, Literal

import attrs

from actors.errors import InvalidArguments, SerializationError, UnknownHandler
from persistence.codec import Codec, fingerprint, int_heads, json_text, short_repr
from persistence.store import SignalRecord

Kind = Literal["signal", "query", "applies"]
Kept = tuple[Any, ...]
"""The values of an entity's fields, in ``EntitySpec.field_names`` order."""


class _ReadOnly:
    """The context of a ``@query``: no field may change, no context call is available."""

    applying = False


READ_ONLY: Any = _ReadOnly()


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


def is_immutable_type(tp: object) -> bool:
    if tp in _IMMUTABLE:
        return True
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return True
    origin = typing.get_origin(tp)
    if origin in (tuple, frozenset, typing.Union, type(int | None)):
        return all(is_immutable_type(a) for a in typing.get_args(tp) if a is not Ellipsis)
    return origin is Literal


def checker(tp: object, codec: Codec) -> Callable[[object], bool]:
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
    _by_position: tuple[str, ...] = attrs.field(init=False, repr=False, eq=False)
    _by_keyword: tuple[str, ...] = attrs.field(init=False, repr=False, eq=False)
    args_what: str = attrs.field(init=False, repr=False, eq=False)
    """"arguments of Entity.handler": how errors name its arguments (made once)."""
    result_what: str = attrs.field(init=False, repr=False, eq=False)
    """"result of Entity.handler": how errors name its result (made once)."""
    _fast_bind: bool = attrs.field(init=False, repr=False, eq=False)
    _checks: tuple[tuple[str, object, Callable[[object], bool]], ...] = attrs.field(
        init=False, repr=False, eq=False
    )
    """(name, exact type, checker) per parameter: a value of exactly its annotated class
    fits without calling the checker (every checker of a class accepts its instances)."""
    _int_heads: tuple[tuple[str, str], ...] | None = attrs.field(init=False, repr=False, eq=False)
    """(name, text before its value) per parameter when every one is an ``int``: the
    arguments' JSON text is made without an encoder (the same text)."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_by_position", tuple(p[0] for p in self.params if not p[3]))
        object.__setattr__(self, "_by_keyword", tuple(p[0] for p in self.params if p[3]))
        object.__setattr__(self, "args_what", f"arguments of {self.entity}.{self.name}")
        object.__setattr__(self, "result_what", f"result of {self.entity}.{self.name}")
        object.__setattr__(self, "_fast_bind", bool(self.positional) or not self.params)
        checks = tuple((p[0], _exact_class(p[1]), p[2]) for p in self.params)
        object.__setattr__(self, "_checks", checks)
        ints = self.params and all(p[1] is int for p in self.params)
        object.__setattr__(self, "_int_heads", int_heads(tuple(p[0] for p in self.params)) if ints else None)

    def bind(self, args: tuple[object, ...], kwargs: dict[str, object]) -> dict[str, object]:
        """Bind call arguments to parameter names; InvalidArguments if they do not fit."""
        pos = self.positional
        if not kwargs and self._fast_bind and len(args) == len(pos):
            values = {pos[0]: args[0]} if len(args) == 1 else dict(zip(pos, args, strict=True))
        else:
            try:
                ba = self.signature.bind(None, *args, **kwargs)
            except TypeError as e:
                raise InvalidArguments(f"{self.entity}.{self.name}: {e}") from None
            ba.apply_defaults()
            values = dict(ba.arguments)
            values.pop(next(iter(self.signature.parameters)))
        for name, exact, check in self._checks:
            v = values[name]
            if type(v) is not exact and not check(v):
                tp = next(p[1] for p in self.params if p[0] == name)
                raise InvalidArguments(
                    f"{self.entity}.{self.name}: argument {name!r} must be {_type_name(tp)}, "
                    f"got {type(v).__name__} {short_repr(v, 80)}"
                )
        return values

    def encode(self, codec: Codec, values: dict[str, object]) -> str:
        """The JSON text of bound arguments."""
        heads = self._int_heads
        if heads is not None:  # an int's repr is its JSON text (also an IntEnum's int.__repr__)
            try:
                if len(heads) == 1:  # most handlers take one argument: no list made
                    text = heads[0][1] + int.__repr__(values[heads[0][0]]) + "}"
                else:
                    text = "".join([h + int.__repr__(values[n]) for n, h in heads]) + "}"
            except ValueError as e:  # past 4,300 digits
                raise SerializationError(f"{self.entity}.{self.name}: cannot encode arguments: {e}") from e
            if len(text) * 4 > codec.max_payload:  # else within it however it is encoded
                codec.check_size(text, self.args_what)
            return text
        if self.plain_json:
            try:
                text = _plain_dumps(values)
            except ValueError as e:  # NaN or infinity
                raise SerializationError(f"{self.entity}.{self.name}: cannot encode arguments: {e}") from e
            codec.check_size(text, self.args_what)
            return text
        conv = codec.converter
        try:
            raw = {n: conv.unstructure(values[n], unstructure_as=tp) for n, tp, _c, _k in self.params}
        except Exception as e:
            raise SerializationError(f"{self.entity}.{self.name}: cannot encode arguments: {e}") from e
        return codec.dumps(raw, what=self.args_what)

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
        by_position = self._by_position
        if not self._by_keyword:
            if len(by_position) == 1:  # most handlers take one argument
                return self.fn(entity, values[by_position[0]])
            return self.fn(entity, *map(values.__getitem__, by_position))
        get = values.__getitem__  # no comprehension: no function object or cell per call
        return self.fn(entity, *map(get, by_position), **{n: get(n) for n in self._by_keyword})

    def call_query(self, entity: Any, values: dict[str, object]) -> Any:
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


_plain_dumps = json_text


def _exact_class(tp: object) -> object:
    """The class whose instances fit annotation ``tp`` without a check (None: none)."""
    return tp if isinstance(tp, type) and typing.get_origin(tp) is None else None


def _type_name(tp: object) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp).replace("typing.", "")


@attrs.frozen
class EntitySpec:
    """Everything a system knows about one entity class."""

    cls: type[Any]
    """The entity class (a subclass of ``actors.Entity``)."""
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
    by_fn: dict[Callable[..., Any], HandlerSpec] = attrs.field(factory=dict)
    """Signal and query handlers by their function (inherited ones too)."""
    values: Callable[[Any], Kept] = attrs.field(init=False, repr=False, eq=False)
    """The values of an instance's fields (``values(entity)``): a full copy of its state
    when every field is immutable (``shallow_copy``), for a tenth of a ``clone``'s time.
    The getter itself (one C call), not a method around it: every first emit takes it."""

    def __attrs_post_init__(self) -> None:
        names = self.field_names
        if len(names) > 1:  # one C call giving the tuple
            get: Callable[[Any], Kept] = operator.attrgetter(*names)
        elif names:
            one = operator.attrgetter(names[0])
            get = lambda e: (one(e),)  # noqa: E731
        else:
            get = lambda e: ()  # noqa: E731
        object.__setattr__(self, "values", get)

    def resolve(self, handler: object, kind: Kind) -> HandlerSpec:
        """The handler given as function or name; UnknownHandler otherwise."""
        if isinstance(handler, str):
            table = self.signals if kind == "signal" else self.queries
            h = table.get(handler)
            if h is None:
                other = self.queries if kind == "signal" else self.signals
                hint = f" (it is a @{'query' if kind == 'signal' else 'signal'})" if handler in other else ""
                raise UnknownHandler(
                    f"{self.name} has no @{kind} named {short_repr(handler, 100)}{hint}; "
                    f"it has: {', '.join(sorted(table)) or 'none'}"
                )
            return h
        try:
            h = self.by_fn.get(handler) if callable(handler) else None
        except TypeError:  # unhashable
            h = None
        if h is None:
            raise UnknownHandler(f"{short_repr(handler, 100)} is not a handler of {self.name}")
        if h.kind != kind:
            raise UnknownHandler(f"{self.name}.{h.name} is a @{h.kind}, not a @{kind}")
        return h

    def build_signal(
        self,
        codec: Codec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        signal_id: str,
        accepted_at: float,
        keyed: bool,
        trace: str | None = None,
    ) -> tuple[HandlerSpec, dict[str, object], SignalRecord]:
        """Resolve, bind, check and encode a signal call into its record.

        Only ids that can repeat (``keyed``) get a fingerprint (it tells a reused key
        from a repeat); a generated id never repeats, so it is spared the digest.
        """
        try:  # the handler given as the function (resolve's path, inline: every call takes it)
            h = self.by_fn[handler]  # type: ignore[index]  # any value: KeyError or TypeError
        except (KeyError, TypeError):  # a name, an unknown or unhashable value
            h = self.resolve(handler, "signal")
        else:
            if h.kind != "signal":
                h = self.resolve(handler, "signal")  # raises, naming the kind
        values = h.bind(args, kwargs)
        text = h.encode(codec, values)
        fp = h.fingerprint(text) if keyed else ""
        return h, values, SignalRecord(self.name, entity_id, signal_id, h.name, text, fp, accepted_at, trace)

    def new(self, entity_id: str) -> Any:
        """A fresh instance in its initial state."""
        e = self.cls()
        object.__setattr__(e, "_actors_id", entity_id)
        object.__setattr__(e, "_actors_ctx", None)
        return e

    def restore(self, values: Kept, entity_id: str) -> Any:
        """An instance with the field ``values`` taken by ``values()``."""
        c = object.__new__(self.cls)
        put = object.__setattr__
        for name, v in zip(self.field_names, values, strict=True):
            put(c, name, v)
        put(c, "_actors_id", entity_id)
        put(c, "_actors_ctx", None)
        return c

    def clone(self, e: Any) -> Any:
        """An independent copy of an instance's state (for rollback and queries)."""
        c = object.__new__(type(e))
        put = object.__setattr__
        if self.shallow_copy:
            for name in self.field_names:
                put(c, name, getattr(e, name))
        else:
            for name in self.field_names:
                put(c, name, copy.deepcopy(getattr(e, name)))
        put(c, "_actors_id", e._actors_id)
        put(c, "_actors_ctx", None)
        return c
