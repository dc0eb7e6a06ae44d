"""Everyday value types in every position: argument, result, event field, entity field.

``Decimal``, ``UUID``, ``timedelta``, ``date``, ``datetime``, ``Enum``, a pydantic
model and a type taught with ``register_type`` go through the real store (SQLite,
reopened) and come back exactly: same type, same digits (``Decimal("1.10")`` is not
``Decimal("1.1")`` here: reprs are compared, not ``==``).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import sqlite3
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pydantic
import pytest

from actors import ActorSystem, Entity, InvalidArguments, applies, query, register_type, signal
from actors._entity import build_spec
from persistence import Codec, SqliteStore

pytestmark = pytest.mark.anyio


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


class Item(pydantic.BaseModel):
    sku: str
    price: Decimal
    tags: list[str] = []


class Money:
    """A user type the codec does not know: taught with ``register_type``."""

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount = amount
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (other.amount, other.currency)

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))

    def __repr__(self) -> str:
        return f"Money({self.amount!r}, {self.currency!r})"


def _decode_money(d: Any) -> Money:
    if not isinstance(d, list) or len(d) != 2 or not all(isinstance(x, str) for x in d):
        raise ValueError(f"a Money is [amount, currency], got {d!r}")
    return Money(Decimal(d[0]), d[1])


register_type(Money, encode=lambda m: [str(m.amount), m.currency], decode=_decode_money)


@attrs.frozen
class Recorded:
    amount: Decimal
    ref: uuid.UUID
    wait: dt.timedelta
    day: dt.date
    at: dt.datetime
    color: Color
    size: Size
    item: Item
    money: Money


@attrs.define
class Ledger(Entity):
    snapshot_every = 0
    last: Recorded | None = None
    total: Decimal = Decimal("0.00")
    refs: tuple[uuid.UUID, ...] = ()
    waited: dt.timedelta = dt.timedelta(0)
    days: list[dt.date] = attrs.field(factory=list)
    seen: dict[str, Color] = attrs.field(factory=dict)

    @signal
    def record(
        self,
        amount: Decimal,
        ref: uuid.UUID,
        wait: dt.timedelta,
        day: dt.date,
        at: dt.datetime,
        color: Color,
        size: Size,
        item: Item,
        money: Money,
    ) -> Recorded:
        event = Recorded(amount, ref, wait, day, at, color, size, item, money)
        self.emit(event)
        return event

    @applies
    def _recorded(self, e: Recorded) -> None:
        self.last = e
        self.total += e.amount
        self.refs = (*self.refs, e.ref)
        self.waited += e.wait
        self.days = [*self.days, e.day]
        self.seen = {**self.seen, e.item.sku: e.color}

    @query
    def state(self) -> tuple[Recorded | None, Decimal, tuple[uuid.UUID, ...], dt.timedelta, list[dt.date]]:
        return self.last, self.total, self.refs, self.waited, self.days

    @query
    def colors(self) -> dict[str, Color]:
        return self.seen


@attrs.define
class SnapLedger(Ledger):
    snapshot_every = 1


def sample(n: int = 1) -> Recorded:
    return Recorded(
        Decimal("1.10") * n,
        uuid.UUID(int=n),
        dt.timedelta(days=30, microseconds=n),
        dt.date(2026, 2, n),
        dt.datetime(2026, 2, n, 12, 30, 0, 123456, tzinfo=dt.UTC),
        Color.BLUE,
        Size.LARGE,
        Item(sku=f"sku-{n}", price=Decimal("19.90"), tags=["a"]),
        Money(Decimal("0.10"), "EUR"),
    )


def args(r: Recorded) -> tuple[object, ...]:
    return attrs.astuple(r, recurse=False)


def exact(value: object) -> str:
    """A comparison key that tells Decimal("1.1") from Decimal("1.10") and types apart."""
    return f"{type(value).__qualname__}:{value!r}"


def sql(path: Path, query_text: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(query_text).fetchall()


async def test_arguments_results_events_and_snapshots_round_trip_exactly(tmp_path: Path) -> None:
    path = tmp_path / "types.db"
    one, two = sample(1), sample(2)
    async with ActorSystem(SqliteStore(path), [Ledger, SnapLedger]) as system:
        for cls in (Ledger, SnapLedger):
            ref = system.ref(cls, "l")
            # a result, and the handler ran on the decoded arguments of a tell
            assert exact(await ref.ask(cls.record, *args(one))) == exact(one)
            await ref.tell(cls.record, *args(two))
            # a keyed ask: its result is stored, and a repeat returns the stored one
            keyed = ref.options(key="k-1")
            first = await keyed.ask(cls.record, *args(one))
            again = await keyed.ask(cls.record, *args(one))
            assert exact(first) == exact(again) == exact(one)
            assert (await ref.query(cls.state))[1] == Decimal("4.40")
    # the stored JSON holds strings, never floats, for Decimal; ISO text for the rest
    (data,) = sql(path, "SELECT data FROM events WHERE entity_type = 'Ledger' AND seq = 1")[0:1]
    stored = json.loads(data[0])
    assert stored["amount"] == "1.10"
    assert stored["ref"] == "00000000-0000-0000-0000-000000000001"
    assert stored["wait"] == "P30DT0.000001S"
    assert stored["day"] == "2026-02-01"
    assert stored["item"] == {"sku": "sku-1", "price": "19.90", "tags": ["a"]}
    assert stored["money"] == ["0.10", "EUR"]
    snaps = sql(path, "SELECT state FROM snapshots WHERE entity_type = 'SnapLedger' ORDER BY seq DESC")
    assert json.loads(snaps[0][0])["total"] == "4.40"
    # reopened: Ledger replays its events, SnapLedger loads its snapshot
    want_days = [dt.date(2026, 2, 1), dt.date(2026, 2, 2), dt.date(2026, 2, 1)]
    async with ActorSystem(SqliteStore(path), [Ledger, SnapLedger]) as system:
        for cls in (Ledger, SnapLedger):
            last, total, refs, waited, days = await system.ref(cls, "l").query(cls.state)
            assert exact(last) == exact(one)
            assert exact(total) == exact(Decimal("4.40"))
            assert refs == (uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=1))
            assert exact(waited) == exact(dt.timedelta(days=90, microseconds=4))
            assert days == want_days
            assert all(type(d) is dt.date for d in days)
            assert await system.ref(cls, "l").query(cls.colors) == {"sku-1": Color.BLUE, "sku-2": Color.BLUE}


@pytest.mark.parametrize(
    ("position", "bad"),
    [
        (0, 1.1),  # a float for a Decimal: digits would be lost
        (0, "1.10"),
        (1, "00000000-0000-0000-0000-000000000001"),
        (2, 30.0),
        (3, dt.datetime(2026, 2, 1, tzinfo=dt.UTC)),  # a datetime is not a date
        (4, dt.date(2026, 2, 1)),
        (5, "blue"),
        (6, 2),
        (7, {"sku": "x", "price": "1"}),
        (8, (Decimal(1), "EUR")),
    ],
)
async def test_the_argument_checker_refuses_the_wrong_type(position: int, bad: object) -> None:
    from persistence import MemoryStore

    good = list(args(sample()))
    good[position] = bad
    async with ActorSystem(MemoryStore(), [Ledger]) as system:
        ref = system.ref(Ledger, "l")
        with pytest.raises(InvalidArguments, match="argument"):
            await ref.ask(Ledger.record, *good)
        assert (await ref.query(Ledger.state))[0] is None  # nothing changed


ZERO_UUID = uuid.UUID(int=0)


def test_value_types_count_as_immutable_state() -> None:
    @attrs.define
    class Values(Entity):
        amount: Decimal = Decimal(0)
        ref_id: uuid.UUID = ZERO_UUID
        wait: dt.timedelta = dt.timedelta(0)
        day: dt.date = dt.date(2026, 1, 1)
        color: Color = Color.RED
        pair: tuple[Decimal, uuid.UUID] | None = None

    assert build_spec(Values, Codec()).shallow_copy
    assert not build_spec(Ledger, Codec()).shallow_copy  # a list and a pydantic model are not


@pytest.mark.parametrize(
    ("tp", "raw"),
    [
        (Decimal, 1.1),
        (Decimal, "one"),
        (Decimal, " 1"),
        (Decimal, "1_000"),
        (Decimal, True),
        (uuid.UUID, 7),
        (uuid.UUID, "not-a-uuid"),
        (dt.timedelta, 30),
        (dt.timedelta, "P"),
        (dt.timedelta, "PT"),
        (dt.timedelta, "P1Y"),
        (dt.timedelta, "P1.5D"),
        (dt.timedelta, "P1DT"),
        (dt.timedelta, "p1d"),
        (dt.timedelta, "P1000000000D"),
        (dt.timedelta, "PT99999999999H"),
        (Item, {"sku": 1}),
        (Money, ["1"]),
    ],
)
def test_bad_stored_values_are_serialization_errors(tp: type, raw: object) -> None:
    from persistence.errors import SerializationError

    with pytest.raises(SerializationError):
        Codec().loads(json.dumps(raw), tp)


def test_decimals_keep_every_digit_and_special_values() -> None:
    codec = Codec()
    for text in ["0.10", "-0", "1E+3", "123456789012345678901234567890.000000001", "NaN", "-Infinity"]:
        value = Decimal(text)
        encoded = codec.dumps(value, Decimal)
        assert encoded == json.dumps(str(value))
        assert str(codec.loads(encoded, Decimal)) == str(value)
    assert codec.loads("12", Decimal) == Decimal(12)  # a JSON integer is exact too


def test_a_registered_type_wins_for_subclasses_and_replaces_on_re_registration() -> None:
    class Cents(int):
        pass

    register_type(Cents, encode=lambda c: f"{int(c)}c", decode=lambda s: Cents(int(s[:-1])))
    codec = Codec()
    assert codec.dumps(Cents(5), Cents) == '"5c"'
    assert codec.loads('"5c"', Cents) == 5
    register_type(Cents, encode=lambda c: [int(c)], decode=lambda d: Cents(d[0]))  # replaces
    assert Codec().dumps(Cents(5), Cents) == "[5]"

    class Euros(Money):  # a subclass of a registered type is stored the same way
        pass

    assert Codec().dumps(Euros(Decimal("2.50"), "EUR"), Euros) == '["2.50","EUR"]'
    with pytest.raises(TypeError):
        register_type("Cents", encode=str, decode=str)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        register_type(Cents, encode="str", decode=str)  # type: ignore[arg-type]


def test_pydantic_is_not_imported_by_the_package() -> None:
    code = (
        "import sys; sys.modules['pydantic'] = None\n"  # importing it would fail
        "import datetime as dt, decimal\n"
        "import actors, persistence\n"
        "from persistence import Codec\n"
        "c = Codec()\n"
        "print(c.dumps([decimal.Decimal('1.5'), dt.timedelta(hours=1)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '["1.5","PT1H"]'
