"""JSON codec on cattrs: values, events with stable type names, and upcasters.

Stored data is decoded only into registered types: an event's stored type name is
looked up in the registry built from the entities' ``@applies`` methods, never
imported. Payloads are plain JSON, so a store can be read with the sqlite3 shell.

Besides what cattrs handles (attrs classes, lists, dicts, tuples, ``Optional``,
``Literal``, ``datetime``/``date`` as ISO text, ``Enum`` by value), every codec
stores, exactly and as readable text:

- ``Decimal`` as its string (``"19.90"``: never a float, so no digit is lost);
- ``UUID`` as its canonical hyphenated string;
- ``timedelta`` as an ISO 8601 duration (``"P30DT1H0.5S"``, ``"-P1D"``), exact to
  the microsecond;
- pydantic (v2) models through ``model_dump(mode="json")`` / ``model_validate``
  when pydantic is installed (it is not a dependency);
- any other type given to :func:`register_type` (the converter hook).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import re
import reprlib
import sys
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
import orjson
from cattrs.preconf.json import make_converter

from persistence.errors import CorruptRecord, PayloadTooLarge, SerializationError
from persistence.store import NewEvent, StoredEvent

JsonObject = dict[str, Any]
"""A decoded JSON object, as upcasters receive and return it."""

Upcaster = Callable[[JsonObject], JsonObject]
"""Turns the JSON data of one event version into that of the next version."""

T = TypeVar("T")

_std_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_loads = json.loads

# orjson writes subclasses of str/int/dict/list, dataclasses and datetimes only through
# ``default``; with none given it refuses them, and the standard encoder decides.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)


def json_text(raw: object) -> str:
    """Compact JSON text of plain data: the text the standard library's encoder gives
    (``separators=(",", ":")``, non-ASCII as is, NaN and infinities refused), about ten
    times faster on the data handlers pass and return.

    orjson writes it, except when its text could differ from the standard encoder's or
    it writes what must be refused; then the standard encoder writes (or refuses) it:
    anything orjson refuses (integers past 64 bits, lone surrogates, keys that are not
    strings, subclasses, nesting past 254), any ``null`` in its text (NaN and
    infinities come out as ``null`` there, without an error), and floats it spells
    differently (below 1e-4, where Python writes ``1e-05``: its text then holds
    ``e-`` or ``0.0000``). Strings that happen to hold those take the slower path to
    the same text. The same value always gives the same text, which argument
    fingerprints (repeat detection) rely on.
    """
    try:
        b = orjson.dumps(raw, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one
        return _std_dumps(raw)
    if b"null" in b or b"e-" in b or b"0.0000" in b:
        return _std_dumps(raw)
    return b.decode()


_dumps = json_text


@attrs.frozen
class EventTypeInfo:
    """How an event class is stored: its stable name, version, upcasters and old names."""

    name: str
    version: int = 1
    upcasters: Mapping[int, Upcaster] = attrs.field(factory=dict)
    """From-version -> function giving the data of version ``from + 1``."""
    aliases: tuple[str, ...] = ()
    """Earlier names of this event: stored rows under them decode to this class."""


class EventNameError(TypeError):
    """An event class has no stable stored name (see :func:`event_info`).

    The runtime reports it as ``actors.DefinitionError``.
    """


_ATTR = "__actors_event_type__"


def event_type(
    name: str,
    *,
    version: int = 1,
    upcasters: Mapping[int, Upcaster] | None = None,
    aliases: tuple[str, ...] | list[str] = (),
) -> Callable[[type[T]], type[T]]:
    """Class decorator: store this event under a stable ``name`` at ``version``.

    ``upcasters`` maps each older version ``v`` to a function turning the JSON
    object of version ``v`` into that of ``v + 1``; reading an old event runs the
    chain up to ``version``. ``aliases`` lists names the event was stored under
    before (a renamed class, or the ``module.QualName`` default it had before it
    got this decorator): rows stored under them are read as this class (versions
    and upcasters apply as for ``name``); new rows are written under ``name``.
    Without this decorator the name is ``module.QualName``.
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
    if isinstance(aliases, str) or not isinstance(aliases, (tuple, list)):
        raise TypeError(f"event_type aliases must be a tuple of names, got {aliases!r}")
    for a in aliases:
        if not isinstance(a, str) or not a or a == name:
            raise TypeError(
                f"event_type aliases of {name!r} must be non-empty strings other than the name, got {a!r}"
            )
    if len(set(aliases)) != len(aliases):
        raise TypeError(f"event_type aliases of {name!r} repeat a name: {aliases!r}")

    def mark(cls: type[T]) -> type[T]:
        setattr(cls, _ATTR, EventTypeInfo(name, version, ups, tuple(aliases)))
        return cls

    return mark


def event_info(cls: type) -> EventTypeInfo:
    """The storage name and version of an event class.

    Without ``@event_type`` the name is ``module.QualName``, which must not depend
    on how the program was started. A class defined in ``__main__`` gets the name
    of the module it is run as (``python -m shop.events`` stores ``shop.events.X``,
    as importing ``shop.events`` does); a class in a script run by path
    (``python shop/events.py``) has no such name and raises :class:`EventNameError`,
    which asks for ``@event_type("name")``.
    """
    info = cls.__dict__.get(_ATTR)
    if isinstance(info, EventTypeInfo):
        return info
    module = cls.__module__
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        run_as = getattr(spec, "name", None)
        if not isinstance(run_as, str) or not run_as or run_as == "__main__":
            raise EventNameError(
                f"event class {cls.__qualname__} is defined in the script being run (module "
                f"'__main__'), so its default stored name would change with how the program is "
                f"started; give it a stable name: @event_type({cls.__qualname__.lower()!r}) "
                "(from actors import event_type)"
            )
        module = run_as
    return EventTypeInfo(f"{module}.{cls.__qualname__}")


# ---------------------------------------------------------------- value types

_DURATION = re.compile(
    r"(-)?P(?:(\d{1,9})D)?(?:T(?:(\d{1,11})H)?(?:(\d{1,13})M)?(?:(\d{1,15})(?:\.(\d{1,6}))?S)?)?"
)


def format_duration(value: dt.timedelta) -> str:
    """``value`` as an ISO 8601 duration: days, hours, minutes, seconds; exact.

    Zero parts are left out (``P1D``, ``PT1M30S``, ``PT0.000001S``); zero is
    ``PT0S``; a negative duration has a leading minus (``-PT1S``).
    """
    sign = ""
    if value < dt.timedelta(0):
        sign, value = "-", -value
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    out = [sign, "P"]
    if value.days:
        out.append(f"{value.days}D")
    if hours or minutes or seconds or value.microseconds or not value.days:
        out.append("T")
        if hours:
            out.append(f"{hours}H")
        if minutes:
            out.append(f"{minutes}M")
        if seconds or value.microseconds or not (hours or minutes or value.days):
            frac = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
            out.append(f"{seconds}{frac}S")
    return "".join(out)


def parse_duration(text: object) -> dt.timedelta:
    """The ``timedelta`` of an ISO 8601 duration written by :func:`format_duration`.

    Takes days, hours, minutes and (fractional, to the microsecond) seconds, each
    part optional but at least one present; raises ``ValueError`` otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration is an ISO 8601 string like 'P1DT2H', got {type(text).__name__}")
    m = _DURATION.fullmatch(text)
    if m is None or not any(m.group(i) for i in range(2, 6)) or text.endswith("T"):
        raise ValueError(f"not an ISO 8601 duration like 'P1DT2H30M': {text!r:.80}")
    neg, d, h, mi, s, frac = m.groups()
    try:
        value = dt.timedelta(
            days=int(d or 0),
            hours=int(h or 0),
            minutes=int(mi or 0),
            seconds=int(s or 0),
            microseconds=int((frac or "").ljust(6, "0") or 0),
        )
    except OverflowError as e:
        raise ValueError(f"duration out of range: {text!r:.80}") from e
    return -value if neg else value


def _structure_decimal(raw: object, _tp: object) -> decimal.Decimal:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return decimal.Decimal(raw)
    if not isinstance(raw, str) or raw != raw.strip() or "_" in raw:
        raise ValueError(f"a Decimal is stored as its string, like '19.90', got {raw!r:.80}")
    try:
        return decimal.Decimal(raw)
    except decimal.InvalidOperation:
        raise ValueError(f"not a decimal number: {raw!r:.80}") from None


def _structure_uuid(raw: object, _tp: object) -> uuid.UUID:
    if not isinstance(raw, str):
        raise ValueError(f"a UUID is stored as its string, got {raw!r:.80}")
    return uuid.UUID(raw)


def _is_pydantic_model(tp: object) -> bool:
    pydantic = sys.modules.get("pydantic")  # never imported here: not a dependency
    base = getattr(pydantic, "BaseModel", None)
    return isinstance(tp, type) and base is not None and issubclass(tp, base) and tp is not base


@attrs.frozen
class _Custom:
    cls: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


_CUSTOM: dict[type, _Custom] = {}


def register_type(cls: type[T], *, encode: Callable[[T], Any], decode: Callable[[Any], T]) -> None:
    """Teach every codec (so every ``ActorSystem``) to store values of ``cls``.

    ``encode`` turns a value into JSON data (str, int, float, bool, None, lists and
    dicts of those); ``decode`` turns that data back into an equal value, raising on
    data it cannot read. Subclasses of ``cls`` are stored the same way. Register at
    import time, before any system that uses the type is created. Example::

        register_type(Money, encode=lambda m: [str(m.amount), m.currency],
                      decode=lambda d: Money(Decimal(d[0]), d[1]))

    Arguments, results, event fields and entity fields of type ``cls`` then
    round-trip through the store. Registering a class again replaces its functions.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_type takes a class, got {cls!r:.80}")
    if not callable(encode) or not callable(decode):
        raise TypeError(f"register_type({cls.__qualname__}): encode and decode must be functions")
    _CUSTOM[cls] = _Custom(cls, encode, decode)


def _custom_for(tp: object) -> _Custom | None:
    if not isinstance(tp, type):
        return None
    for klass in tp.__mro__:
        found = _CUSTOM.get(klass)
        if found is not None:
            return found
    return None


def _install_hooks(conv: cattrs.Converter) -> None:
    conv.register_unstructure_hook(decimal.Decimal, str)
    conv.register_structure_hook(decimal.Decimal, _structure_decimal)
    conv.register_unstructure_hook(uuid.UUID, str)
    conv.register_structure_hook(uuid.UUID, _structure_uuid)
    conv.register_unstructure_hook(dt.timedelta, format_duration)
    conv.register_structure_hook(dt.timedelta, lambda raw, _tp: parse_duration(raw))
    conv.register_unstructure_hook_func(_is_pydantic_model, lambda m: m.model_dump(mode="json"))
    conv.register_structure_hook_func(_is_pydantic_model, lambda raw, tp: tp.model_validate(raw))
    # last registered wins in cattrs: user types go on top of everything above
    conv.register_unstructure_hook_factory(lambda tp: _custom_for(tp) is not None, _custom_encoder)
    conv.register_structure_hook_factory(lambda tp: _custom_for(tp) is not None, _custom_decoder)
    for cls in _CUSTOM:  # exact types first: cattrs tries them before any predicate
        conv.register_unstructure_hook(cls, _custom_encoder(cls))
        conv.register_structure_hook(cls, _custom_decoder(cls))


def _custom_encoder(tp: Any) -> Callable[[Any], Any]:
    found = _custom_for(tp)
    assert found is not None
    return found.encode


def _custom_decoder(tp: Any) -> Callable[[Any, Any], Any]:
    found = _custom_for(tp)
    assert found is not None
    decode = found.decode
    return lambda raw, _tp: decode(raw)


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


def _cannot_encode(value: object, what: str, e: Exception) -> SerializationError:
    return SerializationError(f"cannot encode {what} {short_repr(value)}: {_text(e)}")


_PLAIN_TYPES = (int, str, float, bool)


def int_heads(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(name, the JSON text before its value) per key of an object whose values are all
    ints: ``{"a":`` then ``,"b":``...; joined with the ints' ``int.__repr__`` and a
    closing ``}`` they are the encoder's text (handler arguments, events)."""
    return tuple((n, ("{" if i == 0 else ",") + json_text(n) + ":") for i, n in enumerate(names))


@attrs.frozen
class _EventCoding:
    """How the events of one class are written."""

    info: EventTypeInfo
    what: str
    """"event <name>": how errors name it."""
    plain: tuple[str, ...] | None
    """The field names when every field is an ``int``, ``str``, ``float`` or ``bool``
    set by ``__init__``: cattrs writes such a class as a dict of its fields' values,
    as they are, so the codec makes that dict itself. None: cattrs writes it."""
    int_heads: tuple[tuple[str, str], ...] | None
    """``int_heads`` of the fields when every field is an ``int``."""


def _event_coding(cls: type, info: EventTypeInfo) -> _EventCoding:
    what = f"event {info.name}"
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: cattrs reports them when it writes one
        return _EventCoding(info, what, None, None)
    fields = attrs.fields(cls)
    types = [hints.get(f.name) for f in fields]
    plain = all(f.init for f in fields) and all(
        tp in _PLAIN_TYPES and _custom_for(tp) is None for tp in types
    )
    if not plain:
        return _EventCoding(info, what, None, None)
    names = tuple(f.name for f in fields)
    heads = int_heads(names) if names and all(tp is int for tp in types) else None
    return _EventCoding(info, what, names, heads)


def _int_object(value: object, heads: tuple[tuple[str, str], ...]) -> str | None:
    """The JSON object of ``value``'s int fields, or None when one holds anything but a
    plain ``int`` of at most 4,300 digits (the general path then writes or refuses it)."""
    if len(heads) == 1:  # most events have one field: no list made
        name, head = heads[0]
        v = getattr(value, name, None)
        if type(v) is not int:
            return None
        try:
            return head + int.__repr__(v) + "}"
        except ValueError:  # past 4,300 digits
            return None
    parts = []
    for name, head in heads:
        v = getattr(value, name, None)
        if type(v) is not int:
            return None
        try:
            parts.append(head + int.__repr__(v))
        except ValueError:  # past 4,300 digits
            return None
    parts.append("}")
    return "".join(parts)


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
        _install_hooks(self.converter)
        self._by_name: dict[str, tuple[type, EventTypeInfo]] = {}
        self._by_type: dict[type, EventTypeInfo] = {}
        self._coding: dict[type, _EventCoding] = {}
        """How each registered type is written (made once at registration)."""

    # -- events registry
    def register_event(self, cls: type) -> EventTypeInfo:
        """Make ``cls`` storable and decodable; two classes may not share a name or alias.

        Raises :class:`EventNameError` (a ``TypeError``) for a class with no stable
        name, ``TypeError`` for a non-attrs class or a name clash.
        """
        if not attrs.has(cls):
            raise TypeError(f"event type {cls.__qualname__} must be an attrs class")
        info = event_info(cls)
        for name in (info.name, *info.aliases):
            known = self._by_name.get(name)
            if known is not None and known[0] is not cls:
                raise TypeError(
                    f"event name {name!r} is used by both {known[0].__module__}.{known[0].__qualname__} "
                    f"and {cls.__module__}.{cls.__qualname__} (as a name or an alias)"
                )
        for name in (info.name, *info.aliases):
            self._by_name[name] = (cls, info)
        self._by_type[cls] = info
        self._coding[cls] = _event_coding(cls, info)
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
            raise _cannot_encode(value, what, e) from e
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
        coding = self._coding.get(type(event))
        if coding is None:
            raise SerializationError(f"{type(event).__qualname__} is not a registered event type")
        info = coding.info
        heads = coding.int_heads
        if heads is not None:
            text = _int_object(event, heads)
            if text is not None and len(text) * 4 <= self.max_payload:  # within it however encoded
                return NewEvent(info.name, info.version, text)  # (else the general path sizes it)
        names = coding.plain
        if names is None:
            return NewEvent(info.name, info.version, self.dumps(event, type(event), what=coding.what))
        try:  # what cattrs makes of such a class: each field's value as it is
            text = _dumps({n: getattr(event, n) for n in names})
        except Exception as e:
            raise _cannot_encode(event, coding.what, e) from e
        self.check_size(text, coding.what)
        return NewEvent(info.name, info.version, text)

    def decode_event(self, entity: str, stored: StoredEvent) -> object:
        """Decode a stored event, upcasting old versions; CorruptRecord names the place."""
        known = self._by_name.get(stored.type_name)
        where = f"event {stored.seq} of {entity} ({stored.type_name} v{stored.version})"
        if known is None:
            raise CorruptRecord(
                f"{where}: unknown event type name {stored.type_name!r}: no event class of this "
                "system has it as its name or alias. If the class was renamed or moved (or was "
                "defined in a script run as __main__), keep reading its rows with "
                f"@event_type('new.name', aliases=({stored.type_name!r},)) on the class, or "
                f"@event_type({stored.type_name!r}) to keep the old name; and check that the "
                "entity whose @applies takes it is in this system's entities"
            )
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
