"""JSON codec on cattrs: values, events with stable type names, and upcasters.

Stored data is decoded only into registered types: an event's stored type name is
looked up in the registry built from the entities' ``@applies`` methods, never
imported. Payloads are plain JSON, so a store can be read with the sqlite3 shell.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from persistence.errors import CorruptRecord, PayloadTooLarge, SerializationError
from persistence.store import NewEvent, StoredEvent

JsonObject = dict[str, Any]
"""A decoded JSON object, as upcasters receive and return it."""

Upcaster = Callable[[JsonObject], JsonObject]
"""Turns the JSON data of one event version into that of the next version."""

T = TypeVar("T")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_loads = json.loads


@attrs.frozen
class EventTypeInfo:
    """How an event class is stored: its stable name, version and upcasters."""

    name: str
    version: int = 1
    upcasters: Mapping[int, Upcaster] = attrs.field(factory=dict)
    """From-version -> function giving the data of version ``from + 1``."""


_ATTR = "__actors_event_type__"


def event_type(
    name: str, *, version: int = 1, upcasters: Mapping[int, Upcaster] | None = None
) -> Callable[[type[T]], type[T]]:
    """Class decorator: store this event under a stable ``name`` at ``version``.

    ``upcasters`` maps each older version ``v`` to a function turning the JSON
    object of version ``v`` into that of ``v + 1``; reading an old event runs the
    chain up to ``version``. Without this decorator the name is ``module.QualName``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"event_type name must be a non-empty string, got {name!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"event_type version must be an int >= 1, got {version!r}")
    ups = dict(upcasters or {})
    for v, fn in ups.items():
        if not isinstance(v, int) or not 1 <= v < version or not callable(fn):
            raise ValueError(
                f"upcasters of {name!r} must map versions 1..{version - 1} to functions, got {v!r}: {fn!r}"
            )

    def mark(cls: type[T]) -> type[T]:
        setattr(cls, _ATTR, EventTypeInfo(name, version, ups))
        return cls

    return mark


def event_info(cls: type) -> EventTypeInfo:
    """The storage name and version of an event class (default ``module.QualName``, 1)."""
    info = cls.__dict__.get(_ATTR)
    if isinstance(info, EventTypeInfo):
        return info
    return EventTypeInfo(f"{cls.__module__}.{cls.__qualname__}")


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 4
_SHORT.maxstring = 120
_SHORT.maxother = 2000


def short_repr(value: object, limit: int = 200) -> str:
    """A repr for error messages that cannot fail: depth-bounded (a 100,000-deep list
    does not recurse), cut to ``limit``, and a failing ``__repr__`` is described."""
    try:
        text = _SHORT.repr(value)
    except BaseException as e:  # a user's __repr__ may raise anything
        text = f"<{type(value).__qualname__} object; repr() failed: {type(e).__name__}>"
    return text[:limit]


def fingerprint(*parts: str) -> str:
    """A short stable digest of text parts (used to compare signal arguments)."""
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


class Codec:
    """Encodes values, events and states to JSON text and back, with a size limit.

    One codec per system; its cattrs converter caches per-type hooks, so encoding a
    type is cheap after the first time.
    """

    def __init__(self, *, max_payload: int = 2 * 1024 * 1024) -> None:
        if not isinstance(max_payload, int) or isinstance(max_payload, bool) or max_payload < 64:
            raise ValueError(f"max_payload must be an int >= 64 bytes, got {max_payload!r}")
        self.max_payload = max_payload
        self.converter: cattrs.Converter = make_converter()
        self._by_name: dict[str, tuple[type, EventTypeInfo]] = {}
        self._by_type: dict[type, EventTypeInfo] = {}

    # -- events registry
    def register_event(self, cls: type) -> EventTypeInfo:
        """Make ``cls`` storable and decodable; two classes may not share a name."""
        if not attrs.has(cls):
            raise TypeError(f"event type {cls.__qualname__} must be an attrs class")
        info = event_info(cls)
        known = self._by_name.get(info.name)
        if known is not None and known[0] is not cls:
            raise TypeError(
                f"event name {info.name!r} is used by both {known[0].__qualname__} and {cls.__qualname__}"
            )
        self._by_name[info.name] = (cls, info)
        self._by_type[cls] = info
        return info

    def is_event(self, cls: type) -> bool:
        """Whether ``cls`` is a registered event type."""
        return cls in self._by_type

    # -- plain values
    def dumps(self, value: object, as_type: object = None, *, what: str = "value") -> str:
        """JSON text of ``value`` (unstructured as ``as_type``), within the size limit."""
        try:
            raw = self.converter.unstructure(value, unstructure_as=as_type)
            text = _dumps(raw)
        except PayloadTooLarge:
            raise
        except Exception as e:
            raise SerializationError(f"cannot encode {what} {short_repr(value)}: {_text(e)}") from e
        self.check_size(text, what)
        return text

    def check_size(self, text: str, what: str) -> None:
        """Raise PayloadTooLarge when ``text`` is over the limit.

        Raises SerializationError when ``text`` has no UTF-8 form (a lone surrogate).
        """
        try:
            size = len(text) if text.isascii() else len(text.encode())
        except UnicodeEncodeError as e:
            raise SerializationError(f"{what} cannot be stored as UTF-8 text: {e}") from e
        if size > self.max_payload:
            raise PayloadTooLarge(
                f"{what} is {size} bytes encoded, over the limit of {self.max_payload} bytes"
            )

    def loads(self, text: str, as_type: type[T] | Any) -> Any:
        """Decode JSON ``text`` into ``as_type``; raises SerializationError."""
        try:
            return self.converter.structure(_loads(text), as_type)
        except Exception as e:
            raise SerializationError(f"cannot decode {as_type!r}: {e}") from e

    def loads_state(self, text: str, cls: type[T]) -> T:
        """Decode a whole attrs instance: a JSON object holding every field.

        cattrs fills a missing field with its default and reads any non-object as
        "all missing", so a damaged state would decode silently to defaults.
        """
        try:
            raw = _loads(text)
        except ValueError as e:
            raise SerializationError(f"cannot decode {cls.__qualname__}: {e}") from e
        names = {a.name for a in attrs.fields(cls)}  # type: ignore[arg-type]
        if not isinstance(raw, dict) or not names <= raw.keys():
            raise SerializationError(
                f"cannot decode {cls.__qualname__}: not a JSON object with the fields {sorted(names)}"
            )
        return self.loads(text, cls)  # type: ignore[no-any-return]

    # -- events
    def encode_event(self, event: object) -> NewEvent:
        """Encode an event of a registered type."""
        info = self._by_type.get(type(event))
        if info is None:
            raise SerializationError(f"{type(event).__qualname__} is not a registered event type")
        data = self.dumps(event, type(event), what=f"event {info.name}")
        return NewEvent(info.name, info.version, data)

    def decode_event(self, entity: str, stored: StoredEvent) -> object:
        """Decode a stored event, upcasting old versions; CorruptRecord names the place."""
        known = self._by_name.get(stored.type_name)
        where = f"event {stored.seq} of {entity} ({stored.type_name} v{stored.version})"
        if known is None:
            raise CorruptRecord(f"{where}: unknown event type name")
        cls, info = known
        try:
            data = _loads(stored.data)
            for v in range(stored.version, info.version):
                up = info.upcasters.get(v)
                if up is None:
                    raise CorruptRecord(f"{where}: no upcaster from version {v}")
                data = up(data)
            if stored.version > info.version:
                raise CorruptRecord(f"{where}: newer than this code's version {info.version}")
            return self.converter.structure(data, cls)
        except CorruptRecord:
            raise
        except Exception as e:
            raise CorruptRecord(f"{where}: {e}") from e


def _text(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    try:
        return str(e)[:300]
    except BaseException:  # a user's __str__ may raise anything
        return type(e).__name__
