"""The shortcuts of the per-message path give exactly what the general path gives.

Arguments of handlers whose parameters are all ``int`` are written without the JSON
encoder, an ``int`` result's outcome text too, events whose fields are all ``int``,
``str``, ``float`` or ``bool`` without cattrs, and a handler without parameters is
bound without ``inspect``: the stored texts (and the fingerprints made from them,
which tell a repeat from a reused key) must not change by a byte. An entity whose
fields are all immutable keeps its committed field values, not a copy, while a change
is being committed: queries and a rollback must see exactly the committed state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import enum
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import (
    ActorSystem,
    Entity,
    EntityRef,
    IdempotencyConflict,
    InvalidArguments,
    SerializationError,
    applies,
    query,
    signal,
)
from actors import _outcome as outcome
from actors._actor import Actor
from actors._entity import build_spec
from actors._spec import HandlerSpec
from persistence import MemoryStore, SqliteStore
from persistence import codec as codec_module
from persistence.codec import Codec, json_text
from persistence.errors import PayloadTooLarge, StoreError
from persistence.store import Commit, Write, WriteResult

pytestmark = pytest.mark.anyio

CODEC = Codec()


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Moved:
    x: int
    y: int
    z: int


@attrs.define
class Point(Entity):
    x: int = 0
    y: int = 0
    z: int = 0

    @signal
    def move(self, x: int, y: int, z: int) -> int:
        self.emit(Moved(x, y, z))
        return self.x + self.y + self.z

    @signal
    def nudge(self, dx: int) -> int:
        self.emit(Moved(self.x + dx, self.y, self.z))
        return self.x

    @applies
    def _moved(self, e: Moved) -> None:
        self.x, self.y, self.z = e.x, e.y, e.z

    @query
    def where(self) -> tuple[int, int, int]:
        return (self.x, self.y, self.z)


@attrs.frozen
class Mixed:
    name: str
    price: float
    paid: bool
    count: int


@attrs.frozen
class Partly:
    count: int
    made: str = attrs.field(init=False, default="x")  # cattrs leaves it out


@attrs.frozen
class Dated:
    count: int
    at: dt.datetime


SPEC = build_spec(Point, CODEC)
for _cls in (Mixed, Partly, Dated):
    CODEC.register_event(_cls)


def spec(name: str) -> HandlerSpec:
    return SPEC.signals[name]


ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),  # orjson's limit, both sides
    st.integers(min_value=-(2**64) - 2, max_value=-(2**63) + 2),
    st.integers(min_value=10**300, max_value=10**301),  # past 64 bits: the standard encoder's
    st.sampled_from([Level.LOW, Level.HIGH]),  # an int subclass: the checker takes it
)


@given(x=ints, y=ints, z=ints)
def test_int_arguments_are_the_encoders_text(x: int, y: int, z: int) -> None:
    move, nudge = spec("move"), spec("nudge")
    values = move.bind((x, y), {"z": z})
    assert move.encode(CODEC, values) == json_text({"x": x, "y": y, "z": z})
    one = nudge.bind((x,), {})
    assert nudge.encode(CODEC, one) == json_text({"dx": x})
    assert move.fingerprint(move.encode(CODEC, values)) == move.fingerprint(json_text(values))


@given(v=ints)
def test_an_int_result_is_the_encoders_text(v: int) -> None:
    text = outcome.encode_ok(CODEC, v, int, "result of Point.nudge")
    assert text == '{"ok":' + json_text(v) + "}"
    assert outcome.decode(CODEC, text, int, where="here") == v
    assert outcome.encode_ok(CODEC, True, bool, "r") == '{"ok":true}'  # a bool is no int here


def test_an_int_past_the_digit_limit_is_a_serialization_error() -> None:
    huge = 10**5000
    with pytest.raises(SerializationError, match=r"Point\.nudge: cannot encode arguments"):
        spec("nudge").encode(CODEC, {"dx": huge})


def test_a_handler_without_parameters_binds_without_inspect() -> None:
    where = SPEC.queries["where"]
    assert where.bind((), {}) == {}
    with pytest.raises(InvalidArguments, match="too many positional arguments"):
        where.bind((1,), {})
    with pytest.raises(InvalidArguments, match="unexpected keyword argument"):
        where.bind((), {"x": 1})


async def test_int_arguments_through_a_system_store_and_repeat_as_before(tmp_path: Path) -> None:
    async with ActorSystem(SqliteStore(tmp_path / "p.db"), entities=[Point]) as system:
        p = system.ref(Point, "p")
        assert await p.ask(Point.move, 1, 2, z=3) == 6
        assert await p.options(key="k").ask(Point.nudge, Level.HIGH) == 3
        assert await p.options(key="k").ask(Point.nudge, 2) == 3  # a repeat: same text
        with pytest.raises(IdempotencyConflict):
            await p.options(key="k").ask(Point.nudge, 5)
        with pytest.raises(SerializationError):  # refused before anything is written
            await p.ask(Point.nudge, 10**5000)
        assert await p.query(Point.where) == (3, 2, 3)
    async with ActorSystem(SqliteStore(tmp_path / "p.db"), entities=[Point]) as system:
        assert await system.ref(Point, "p").query(Point.where) == (3, 2, 3)  # replayed


anything = st.one_of(
    ints,
    st.booleans(),
    st.none(),
    st.floats(),  # NaN and infinities are refused, tiny ones spelled as Python does
    st.text(),  # lone surrogates have no UTF-8 form
    st.lists(st.integers(), max_size=3),
    st.just(decimal.Decimal("1.5")),
    st.just(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
    st.integers(min_value=10**4300, max_value=10**4301),  # past the digit limit
)


def _general(codec: Codec, event: object) -> str | tuple[type[BaseException], str]:
    """What the cattrs path writes for ``event`` (or the error it raises)."""
    name = codec_module.event_info(type(event)).name
    try:
        return codec.dumps(event, type(event), what=f"event {name}")
    except Exception as e:
        return type(e), str(e)


def _fast(codec: Codec, event: object) -> str | tuple[type[BaseException], str]:
    try:
        return codec.encode_event(event).data
    except Exception as e:
        return type(e), str(e)


@given(x=anything, y=anything, z=anything)
def test_int_events_are_the_encoders_text_whatever_their_fields_hold(x: int, y: int, z: int) -> None:
    assert CODEC._coding[Moved].int_heads is not None
    event = Moved(x, y, z)
    assert _fast(CODEC, event) == _general(CODEC, event)


@given(name=anything, price=anything, paid=anything, count=anything)
def test_plain_events_are_the_encoders_text_whatever_their_fields_hold(
    name: str, price: float, paid: bool, count: int
) -> None:
    assert CODEC._coding[Mixed].plain == ("name", "price", "paid", "count")
    event = Mixed(name, price, paid, count)
    assert _fast(CODEC, event) == _general(CODEC, event)


def test_events_cattrs_writes_otherwise_take_its_path() -> None:
    assert CODEC._coding[Partly].plain is None  # a field not set by __init__
    assert CODEC.encode_event(Partly(3)).data == '{"count":3}'
    assert CODEC._coding[Dated].plain is None  # a field of another type
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert CODEC.encode_event(Dated(3, at)).data == _general(CODEC, Dated(3, at))


def test_an_int_event_over_the_size_limit_is_refused_as_on_the_general_path() -> None:
    small = Codec(max_payload=64)
    small.register_event(Moved)
    event = Moved(10**80, 1, 2)
    with pytest.raises(PayloadTooLarge, match=r"event .*Moved is 99 bytes encoded, over the limit of 64"):
        small.encode_event(event)
    assert _fast(small, event) == _general(small, event)


def test_a_registered_type_for_int_turns_the_shortcut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    custom = codec_module._Custom(int, lambda v: f"int:{v}", lambda d: int(d[4:]))
    monkeypatch.setitem(codec_module._CUSTOM, int, custom)
    codec = Codec()
    codec.register_event(Moved)
    assert codec._coding[Moved].plain is None
    assert codec.encode_event(Moved(1, 2, 3)).data == '{"x":"int:1","y":"int:2","z":"int:3"}'


class HeldCommit(MemoryStore):
    """Once armed, holds the next batch with a commit until ``let_go`` (failing it if
    ``fail`` is set)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.fail = False
        self.held = anyio.Event()
        self.let_go = anyio.Event()

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        if self.armed and any(isinstance(w, Commit) for w in batch):
            self.armed = False
            self.held.set()
            await self.let_go.wait()
            if self.fail:
                raise StoreError("the disk said no")
        return await super().write(batch)


@contextlib.asynccontextmanager
async def _point_at_1_2_3() -> AsyncIterator[tuple[HeldCommit, EntityRef[Point], Actor]]:
    """A system on a ``HeldCommit`` store, its point moved to (1, 2, 3): (store, ref, actor)."""
    store = HeldCommit()
    async with ActorSystem(store, entities=[Point]) as system:
        p = system.ref(Point, "p")
        await p.ask(Point.move, 1, 2, 3)
        yield store, p, system._directory.actors[("Point", "p")]


@pytest.mark.parametrize("fail", [False, True])
async def test_while_a_commit_is_held_queries_read_the_kept_values(fail: bool) -> None:
    async with _point_at_1_2_3() as (store, p, actor):
        got: list[object] = []

        async def move() -> None:
            try:
                got.append(await p.ask(Point.move, 7, 8, 9))
            except StoreError as e:
                got.append(e)

        store.armed, store.fail = True, fail
        async with anyio.create_task_group() as tg:
            try:
                tg.start_soon(move)
                with anyio.fail_after(5):
                    await store.held.wait()
                assert actor.backup == (1, 2, 3)  # the values, no copy made
                assert actor.entity is not None
                assert actor.entity.x == 7  # type: ignore[attr-defined]  # the uncommitted change
                if not fail:  # (a failure then restores the kept values themselves)
                    assert await p.query(Point.where) == (1, 2, 3)  # made into a copy for it
                    assert await p.query(Point.where) == (1, 2, 3)
            finally:
                store.let_go.set()
        if fail:
            assert isinstance(got[0], StoreError)
            assert await p.query(Point.where) == (1, 2, 3)  # rolled back
            assert await p.ask(Point.nudge, 1) == 2
            assert await p.query(Point.where) == (2, 2, 3)
        else:
            assert got == [24]
            assert await p.query(Point.where) == (7, 8, 9)


@pytest.mark.parametrize("keyed", [False, True])
async def test_a_commit_that_lands_after_its_actor_was_rebuilt_is_not_counted_on_the_rebuilt_state(
    keyed: bool,
) -> None:
    """The state is dropped while a commit is in flight (what a parked run of the entity
    does when the store fails under it) and a query rebuilds it from the store before
    the commit lands: that state lacks the commit's events, so the commit must not be
    counted on it (the sequence would pass the state, and the next snapshot would store
    a state missing them). The actor is rebuilt again, from the store holding it."""
    async with _point_at_1_2_3() as (store, p, actor):
        got: list[object] = []

        async def move() -> None:
            ref = p.options(key="k") if keyed else p
            got.append(await ref.ask(Point.move, 7, 8, 9))

        store.armed = True
        async with anyio.create_task_group() as tg:
            try:
                tg.start_soon(move)
                with anyio.fail_after(5):
                    await store.held.wait()
                actor.rollback()
                actor.deactivate()
                assert await p.query(Point.where) == (1, 2, 3)  # rebuilt: the commit is not stored yet
                assert actor.seq == 1
            finally:
                store.let_go.set()
        assert got == [24]
        assert await store.last_seq("Point", "p") == 2
        assert await p.query(Point.where) == (7, 8, 9)  # as the log says
        assert actor.seq == 2  # rebuilt from the store: never 2 over (1, 2, 3)
        assert await p.ask(Point.nudge, 1) == 8
        assert await p.query(Point.where) == (8, 8, 9)
        assert actor.seq == 3


def test_int_arguments_and_results_over_the_size_limit_are_refused() -> None:
    small = Codec(max_payload=64)
    values = spec("move").bind((10**20, 10**20, 10**20), {})
    with pytest.raises(PayloadTooLarge, match=r"arguments of Point\.move is 79 bytes"):
        spec("move").encode(small, values)
    assert len(spec("move").encode(small, spec("move").bind((1, 2, 3), {}))) < 64
    with pytest.raises(PayloadTooLarge, match=r"result of Point\.nudge is 78 bytes"):
        outcome.encode_ok(small, 10**70, int, "result of Point.nudge")


@attrs.define
class Empty(Entity):
    @signal
    def poke(self) -> None:
        return None


@attrs.define
class One(Entity):
    n: tuple[int, ...] = ()

    @signal
    def poke(self) -> None:
        return None


@pytest.mark.parametrize("cls", [Empty, One, Point])
def test_kept_values_make_an_equal_instance_for_any_number_of_fields(cls: type[Entity]) -> None:
    spec = build_spec(cls, CODEC)
    assert spec.shallow_copy
    e = spec.new("e-1")
    for name, v in zip(spec.field_names, [(1, 2), 5, 6], strict=False):
        object.__setattr__(e, name, v)
    kept = spec.values(e)
    assert kept == tuple(getattr(e, n) for n in spec.field_names)
    back = spec.restore(kept, "e-1")
    assert type(back) is cls
    assert back is not e
    assert back.id == "e-1"
    assert all(getattr(back, n) == getattr(e, n) for n in spec.field_names)
    assert back._actors_ctx is None  # type: ignore[attr-defined]


@attrs.frozen
class Größe:
    äöüäöüäöüäöüäöüäöüäöüäöüäö: int  # non-ASCII name: more bytes than characters


def test_an_int_event_is_sized_in_bytes_not_characters() -> None:
    small = Codec(max_payload=64)
    small.register_event(Größe)
    event = Größe(1234567890123)
    text = '{"äöüäöüäöüäöüäöüäöüäöüäöüäö":1234567890123}'
    assert len(text) <= 64 < len(text.encode())
    with pytest.raises(PayloadTooLarge, match=r"Größe is 70 bytes encoded, over the limit of 64"):
        small.encode_event(event)
    assert _fast(small, event) == _general(small, event)
