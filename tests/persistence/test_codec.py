"""The codec: stable event names and versions, upcasters, size limit, clear errors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persistence import Codec, CorruptRecord, event_type
from persistence.codec import JsonObject, event_info, fingerprint, json_text
from persistence.errors import ActorsError, PayloadTooLarge, SerializationError
from persistence.store import NewEvent, StoredEvent

ENTITY = "Account/alice"


@attrs.frozen
class Plain:
    amount: int


@event_type("account.deposited", version=2)
@attrs.frozen
class Named:
    amount: int


@attrs.frozen
class Outer:
    @attrs.frozen
    class Inner:
        x: int


def stored(type_name: str, data: object, *, version: int = 1, seq: int = 7) -> StoredEvent:
    return StoredEvent(seq, type_name, version, json.dumps(data), 0.0)


def make_v3(calls: list[int], upcasters: dict[int, Callable[[JsonObject], JsonObject]] | None = None) -> type:
    """Version 3 of an event whose v1 had ``amt``, v2 ``amount``, v3 also ``currency``."""

    def v1_to_v2(d: JsonObject) -> JsonObject:
        calls.append(1)
        return {"amount": d["amt"]}

    def v2_to_v3(d: JsonObject) -> JsonObject:
        calls.append(2)
        return {**d, "currency": "EUR"}

    ups = {1: v1_to_v2, 2: v2_to_v3} if upcasters is None else upcasters

    @event_type("account.paid", version=3, upcasters=ups)
    @attrs.frozen
    class Paid:
        amount: int
        currency: str

    return Paid


# ---------------------------------------------------------------- names and versions


def test_default_name_is_module_and_qualname() -> None:
    assert event_info(Plain).name == f"{__name__}.Plain"
    assert event_info(Plain).version == 1
    assert event_info(Outer.Inner).name == f"{__name__}.Outer.Inner"


def test_event_type_sets_name_and_version() -> None:
    info = event_info(Named)
    assert (info.name, info.version) == ("account.deposited", 2)
    codec = Codec()
    assert codec.register_event(Named) == info
    assert codec.encode_event(Named(5)) == NewEvent("account.deposited", 2, '{"amount":5}')


def test_event_type_returns_the_class_itself() -> None:
    class Bare:
        pass

    assert event_type("bare")(Bare) is Bare


def test_a_subclass_does_not_inherit_the_stored_name() -> None:
    @attrs.frozen
    class Special(Named):
        note: str = ""

    assert event_info(Special).name.endswith("Special")
    assert event_info(Special).version == 1
    codec = Codec()
    codec.register_event(Named)
    codec.register_event(Special)  # no clash with its parent's name
    assert codec.encode_event(Special(1, "n")).type_name == event_info(Special).name


def test_events_round_trip() -> None:
    codec = Codec()
    codec.register_event(Plain)
    new = codec.encode_event(Plain(42))
    assert new == NewEvent(f"{__name__}.Plain", 1, '{"amount":42}')
    back = codec.decode_event(ENTITY, StoredEvent(1, new.type_name, new.version, new.data, 0.0))
    assert back == Plain(42)
    assert type(back) is Plain


def test_is_event_tells_registered_types() -> None:
    codec = Codec()
    assert not codec.is_event(Plain)
    codec.register_event(Plain)
    assert codec.is_event(Plain)
    assert not codec.is_event(Named)


# ---------------------------------------------------------------- upcasters


def test_upcasters_chain_from_v1_to_v3() -> None:
    calls: list[int] = []
    paid = make_v3(calls)
    codec = Codec()
    codec.register_event(paid)
    assert codec.decode_event(ENTITY, stored("account.paid", {"amt": 5}, version=1)) == paid(5, "EUR")
    assert calls == [1, 2]


def test_upcasters_start_at_the_stored_version() -> None:
    calls: list[int] = []
    paid = make_v3(calls)
    codec = Codec()
    codec.register_event(paid)
    assert codec.decode_event(ENTITY, stored("account.paid", {"amount": 6}, version=2)) == paid(6, "EUR")
    assert calls == [2]
    calls.clear()
    current = {"amount": 7, "currency": "USD"}
    assert codec.decode_event(ENTITY, stored("account.paid", current, version=3)) == paid(7, "USD")
    assert calls == []


def test_encoding_writes_the_current_version() -> None:
    paid = make_v3([])
    codec = Codec()
    codec.register_event(paid)
    assert codec.encode_event(paid(1, "EUR")) == NewEvent("account.paid", 3, '{"amount":1,"currency":"EUR"}')


def test_a_missing_upcaster_is_a_corrupt_record_naming_entity_and_seq() -> None:
    calls: list[int] = []
    paid = make_v3(calls, {2: lambda d: {**d, "currency": "EUR"}})
    codec = Codec()
    codec.register_event(paid)
    with pytest.raises(CorruptRecord) as info:
        codec.decode_event(ENTITY, stored("account.paid", {"amt": 5}, version=1, seq=12))
    msg = str(info.value)
    assert "event 12 of Account/alice" in msg
    assert "no upcaster from version 1" in msg


def test_an_unknown_type_name_is_a_corrupt_record() -> None:
    codec = Codec()
    codec.register_event(Plain)
    with pytest.raises(
        CorruptRecord, match=r"event 7 of Account/alice \(gone\.Event v1\): unknown event type"
    ):
        codec.decode_event(ENTITY, stored("gone.Event", {"amount": 1}))


def test_an_event_from_a_newer_version_is_a_corrupt_record() -> None:
    codec = Codec()
    codec.register_event(Named)
    with pytest.raises(CorruptRecord, match=r"event 7 of Account/alice .*newer than this code's version 2"):
        codec.decode_event(ENTITY, stored("account.deposited", {"amount": 1}, version=3))


def test_a_failing_upcaster_is_a_corrupt_record_with_its_cause() -> None:
    def broken(d: JsonObject) -> JsonObject:
        raise KeyError("amt")

    paid = make_v3([], {1: broken, 2: lambda d: d})
    codec = Codec()
    codec.register_event(paid)
    with pytest.raises(CorruptRecord, match="event 7 of Account/alice") as info:
        codec.decode_event(ENTITY, stored("account.paid", {"x": 1}, version=1))
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("data", ["not json", '{"amount": "many"}', "[1]", "{}"])
def test_unreadable_event_data_is_a_corrupt_record(data: str) -> None:
    codec = Codec()
    codec.register_event(Plain)
    with pytest.raises(CorruptRecord, match="event 3 of Account/alice"):
        codec.decode_event(ENTITY, StoredEvent(3, f"{__name__}.Plain", 1, data, 0.0))


# ---------------------------------------------------------------- registration


def test_two_classes_with_one_name_are_refused() -> None:
    @event_type("account.deposited")
    @attrs.frozen
    class Impostor:
        amount: int

    codec = Codec()
    codec.register_event(Named)
    with pytest.raises(TypeError, match=r"'account\.deposited' is used by both .*Named and .*Impostor"):
        codec.register_event(Impostor)
    # the first registration stands
    assert codec.decode_event(ENTITY, stored("account.deposited", {"amount": 2}, version=2)) == Named(2)
    assert not codec.is_event(Impostor)


def test_registering_a_class_twice_is_fine() -> None:
    codec = Codec()
    assert codec.register_event(Named) == codec.register_event(Named)


def test_an_event_must_be_an_attrs_class() -> None:
    class NotAttrs:
        pass

    with pytest.raises(TypeError, match="must be an attrs class"):
        Codec().register_event(NotAttrs)


def test_encoding_an_unregistered_event_is_refused() -> None:
    with pytest.raises(SerializationError, match="not a registered event type"):
        Codec().encode_event(Plain(1))


# ---------------------------------------------------------------- values and limits


def test_default_limit_is_two_mebibytes() -> None:
    assert Codec().max_payload == 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "fits"),
    [
        ("x" * 98, True),  # 100 bytes with its quotes
        ("x" * 99, False),
        ("é" * 49, True),  # two bytes each: 100
        ("é" * 50, False),
        ("😀" * 24, True),  # four bytes each: 98
        ("😀" * 25, False),
    ],
)
def test_payload_limit_counts_utf8_bytes(text: str, fits: bool) -> None:
    codec = Codec(max_payload=100)
    if fits:
        assert json.loads(codec.dumps(text)) == text
    else:
        with pytest.raises(PayloadTooLarge, match=r"greeting is \d+ bytes encoded, over the limit of 100"):
            codec.dumps(text, what="greeting")


def test_payload_too_large_is_a_value_error_of_the_framework() -> None:
    codec = Codec(max_payload=64)
    codec.register_event(Named)
    with pytest.raises(PayloadTooLarge) as info:
        codec.encode_event(Named(10**80))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ActorsError)
    assert "account.deposited" in str(info.value)


def test_check_size_of_text_already_encoded() -> None:
    codec = Codec(max_payload=64)
    codec.check_size("a" * 64, "args")
    with pytest.raises(PayloadTooLarge, match="args is 65 bytes"):
        codec.check_size("a" * 65, "args")


@pytest.mark.parametrize("value", [object(), {"x": math.nan}, math.inf, {"k": lambda: 1}, "\ud800"])
def test_unserializable_values_raise_serialization_error(value: object) -> None:
    with pytest.raises(SerializationError) as info:
        Codec().dumps(value, what="argument")
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, ActorsError)


def test_a_lone_surrogate_is_refused_by_check_size_too() -> None:
    with pytest.raises(SerializationError, match="UTF-8"):
        Codec().check_size('"\ud800"', "args")


def test_values_round_trip_through_their_types() -> None:
    codec = Codec()
    text = codec.dumps({"a": Plain(1)}, dict[str, Plain])
    assert text == '{"a":{"amount":1}}'
    assert codec.loads(text, dict[str, Plain]) == {"a": Plain(1)}
    assert codec.dumps("héllo") == '"héllo"'  # readable in the sqlite3 shell


@pytest.mark.parametrize(("text", "as_type"), [("{", int), ('"x"', int), ('{"amount": []}', Plain)])
def test_loads_failures_are_serialization_errors(text: str, as_type: Any) -> None:
    with pytest.raises(SerializationError, match="cannot decode"):
        Codec().loads(text, as_type)


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("name", ["", None, 3, b"name"])
def test_event_type_name_must_be_a_non_empty_string(name: object) -> None:
    with pytest.raises(TypeError, match="non-empty string"):
        event_type(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [0, -1, True, "2", 1.0, None])
def test_event_type_version_must_be_a_positive_int(version: object) -> None:
    with pytest.raises(ValueError, match="version must be an int >= 1"):
        event_type("e", version=version)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "upcasters",
    [
        {0: lambda d: d},
        {3: lambda d: d},  # version 3 is current: nothing to upcast from it
        {4: lambda d: d},
        {"1": lambda d: d},
        {1: "not callable"},
    ],
)
def test_event_type_upcasters_must_map_older_versions_to_functions(upcasters: dict[Any, Any]) -> None:
    with pytest.raises(ValueError, match=r"upcasters of 'e' must map versions 1\.\.2"):
        event_type("e", version=3, upcasters=upcasters)


def test_upcasters_need_a_version_above_one() -> None:
    with pytest.raises(ValueError, match="upcasters"):
        event_type("e", upcasters={1: lambda d: d})


@pytest.mark.parametrize("limit", [63, 0, -1, True, 100.0, "100", None])
def test_codec_limit_must_be_an_int_of_at_least_64(limit: object) -> None:
    with pytest.raises(ValueError, match="max_payload must be an int >= 64"):
        Codec(max_payload=limit)  # type: ignore[arg-type]


def test_codec_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Codec(1024)  # type: ignore[misc]
    assert Codec(max_payload=64).max_payload == 64


def test_fingerprint_is_stable_and_keeps_part_boundaries() -> None:
    assert fingerprint("deposit", '{"amount":1}') == fingerprint("deposit", '{"amount":1}')
    assert fingerprint("deposit", '{"amount":1}') != fingerprint("deposit", '{"amount":2}')
    assert fingerprint("ab", "c") != fingerprint("a", "bc")
    assert len(fingerprint("x")) == 24
    int(fingerprint("x"), 16)


# ---------------------------------------------------------------- json_text: orjson, the stdlib's text

_STD = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: orjson refuses them
    | st.floats()  # NaN and infinities too: orjson writes them as null
    | st.floats(min_value=-1e-3, max_value=1e-3)  # where orjson spells floats its own way
    | st.text()  # lone surrogates too
)
_json_like = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _outcome(fn: Callable[[object], str], value: object) -> tuple[str, object]:
    try:
        return "text", fn(value)
    except (ValueError, TypeError) as e:
        return "refused", type(e)


@settings(max_examples=600, deadline=None)
@given(_json_like)
def test_json_text_is_the_standard_encoders_text_or_its_refusal(value: object) -> None:
    # byte for byte: argument fingerprints (repeat detection) compare stored texts
    assert _outcome(json_text, value) == _outcome(_STD, value)


@pytest.mark.parametrize(
    "value",
    [
        1e-05,
        -7.1440485381704444e-06,
        1.171393144917332e-08,
        1e16,
        1e22,
        5e-324,
        2**64,
        -(2**63) - 1,
        {"a": [1, 2.5, True, None]},
        {"amount": 1, "note": "re-run 0.00001"},
        'é\u2028\x00\x1f"\\',
        [[[[[[1]]]]]],
        {1: "int key"},
    ],
)
def test_json_text_matches_the_standard_encoder_where_orjson_differs_or_refuses(value: object) -> None:
    assert json_text(value) == _STD(value)


@pytest.mark.parametrize("value", [math.nan, {"x": [math.inf]}, -math.inf, {"deep": {"er": math.nan}}])
def test_json_text_refuses_nan_and_infinities_where_orjson_would_write_null(value: object) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        json_text(value)
    with pytest.raises(SerializationError):
        Codec().dumps(value)


def test_json_text_leaves_types_it_does_not_know_to_the_standard_encoder() -> None:
    import datetime as dt
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    @dataclass
    class Point:
        x: int

    assert json_text({"level": Level.HIGH}) == _STD({"level": Level.HIGH}) == '{"level":3}'
    for value in (Point(1), dt.datetime(2026, 1, 1), object()):
        with pytest.raises(TypeError):
            json_text(value)
