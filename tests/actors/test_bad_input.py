"""Guarantee 11: bad input gets a clear, typed error and changes nothing.

Every failing call runs against a system holding one account with 100 in it (one
event); after the error the account, its event log and the inbox are unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from actors import (
    ActorsError,
    ActorSystem,
    DefinitionError,
    Entity,
    InvalidArguments,
    PayloadTooLarge,
    SerializationError,
    StoreLocked,
    SupervisorPolicy,
    SystemClosed,
    UnknownEntity,
    UnknownHandler,
    applies,
    query,
    signal,
)
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore
from tests.actors.support import StoreFactory, event_count
from tests.models import Account, Deposited

pytestmark = pytest.mark.anyio


@attrs.frozen
class Put:
    item: str


@attrs.define
class Box(Entity):
    """Handlers with argument types the account lacks."""

    items: tuple[str, ...] = ()

    @signal
    def put(self, item: str, *, note: str = "") -> int:
        self.emit(Put(item))
        return len(self.items)

    @signal
    def put_any(self, value: object) -> int:
        return 0

    @signal
    def put_float(self, x: float) -> int:
        return 0

    @signal
    def put_list(self, xs: list[int]) -> int:
        return 0

    @applies
    def _put(self, event: Put) -> None:
        self.items = (*self.items, event.item)

    @query
    def count(self) -> int:
        return len(self.items)


class Unregistered(Entity):
    pass


@pytest.fixture
async def system(store_factory: StoreFactory) -> AsyncIterator[ActorSystem]:
    async with ActorSystem(store_factory(), [Account, Box], max_payload=1024) as system:
        await system.ref(Account, "a").ask(Account.deposit, 100)
        yield system


async def assert_unchanged(system: ActorSystem) -> None:
    assert await system.ref(Account, "a").query(Account.get_balance) == 100
    assert await event_count(system, "Account", "a") == 1
    assert await event_count(system, "Box", "b") == 0
    assert await system.store.read_inbox(after=0, limit=10) == []
    assert await system.dead_letters() == []


Call = Callable[[ActorSystem], Awaitable[object]]


def acct(system: ActorSystem) -> Any:
    return system.ref(Account, "a")


def box(system: ActorSystem) -> Any:
    return system.ref(Box, "b")


async def _ref(system: ActorSystem, entity: Any, entity_id: Any) -> object:
    return system.ref(entity, entity_id)


async def _options(system: ActorSystem, **options: Any) -> object:
    return acct(system).options(**options)


class _Unhashable:
    """A callable no dict can look up (``__eq__`` without ``__hash__``)."""

    def __call__(self) -> None: ...

    def __eq__(self, other: object) -> bool:
        return False


CASES: list[tuple[str, Call, type[ActorsError]]] = [
    # unknown entity type
    ("entity class", lambda s: _ref(s, Unregistered, "a"), UnknownEntity),
    ("entity name", lambda s: _ref(s, "Unregistered", "a"), UnknownEntity),
    ("not an entity", lambda s: _ref(s, int, "a"), UnknownEntity),
    # unknown handler
    ("ask unknown name", lambda s: acct(s).ask("nope", 1), UnknownHandler),
    ("tell unknown name", lambda s: acct(s).tell("nope", 1), UnknownHandler),
    ("query unknown name", lambda s: acct(s).query("nope"), UnknownHandler),
    ("ask a query name", lambda s: acct(s).ask("get_balance"), UnknownHandler),
    ("tell a query", lambda s: acct(s).tell(Account.get_balance), UnknownHandler),
    ("query a signal name", lambda s: acct(s).query("deposit", 1), UnknownHandler),
    ("query a signal", lambda s: acct(s).query(Account.deposit, 1), UnknownHandler),
    ("ask __init__", lambda s: acct(s).ask("__init__"), UnknownHandler),
    ("ask an applier name", lambda s: acct(s).ask("_deposited", Deposited(1)), UnknownHandler),
    ("ask an applier", lambda s: acct(s).ask(Account._deposited, Deposited(1)), UnknownHandler),
    ("ask emit", lambda s: acct(s).ask("emit", Deposited(1)), UnknownHandler),
    ("ask a builtin", lambda s: acct(s).ask(print), UnknownHandler),
    ("another entity's signal", lambda s: acct(s).ask(Box.put, "x"), UnknownHandler),
    ("name not a str", lambda s: acct(s).ask(42), UnknownHandler),
    ("an unhashable callable", lambda s: acct(s).ask(_Unhashable()), UnknownHandler),
    ("tell an unhashable callable", lambda s: acct(s).tell(_Unhashable()), UnknownHandler),
    ("query an unhashable callable", lambda s: acct(s).query(_Unhashable()), UnknownHandler),
    # arguments
    ("missing", lambda s: acct(s).ask(Account.deposit), InvalidArguments),
    ("extra", lambda s: acct(s).ask(Account.deposit, 1, 2), InvalidArguments),
    ("extra keyword", lambda s: acct(s).ask(Account.deposit, 1, extra=2), InvalidArguments),
    ("twice", lambda s: acct(s).ask(Account.deposit, 1, amount=1), InvalidArguments),
    ("str for int", lambda s: acct(s).ask(Account.deposit, "10"), InvalidArguments),
    ("float for int", lambda s: acct(s).ask(Account.deposit, 1.5), InvalidArguments),
    ("bool for int", lambda s: acct(s).ask(Account.deposit, True), InvalidArguments),
    ("None for int", lambda s: acct(s).ask(Account.deposit, None), InvalidArguments),
    ("tell str for int", lambda s: acct(s).tell(Account.deposit, "10"), InvalidArguments),
    ("tell missing", lambda s: acct(s).tell("deposit"), InvalidArguments),
    ("keyword-only as positional", lambda s: box(s).ask(Box.put, "x", "note"), InvalidArguments),
    ("list of str for list[int]", lambda s: box(s).ask(Box.put_list, ["a"]), InvalidArguments),
    ("query with an argument", lambda s: acct(s).query(Account.get_balance, 1), InvalidArguments),
    # serialization and size
    ("an object", lambda s: box(s).ask(Box.put_any, object()), SerializationError),
    ("NaN", lambda s: box(s).tell(Box.put_float, float("nan")), SerializationError),
    ("infinity", lambda s: box(s).ask(Box.put_float, float("inf")), SerializationError),
    ("big str", lambda s: box(s).ask(Box.put, "x" * 2000), PayloadTooLarge),
    ("big str told", lambda s: box(s).tell(Box.put, "x" * 2000), PayloadTooLarge),
    ("big int", lambda s: acct(s).ask(Account.deposit, 10**1500), PayloadTooLarge),
    ("big multibyte", lambda s: box(s).ask(Box.put, "é" * 600), PayloadTooLarge),
    # entity ids
    ("empty id", lambda s: _ref(s, Account, ""), InvalidArguments),
    ("huge id", lambda s: _ref(s, Account, "a" * 10_000), InvalidArguments),
    ("int id", lambda s: _ref(s, Account, 1), InvalidArguments),
    ("None id", lambda s: _ref(s, Account, None), InvalidArguments),
    ("NUL in id", lambda s: _ref(s, Account, "a\x00b"), InvalidArguments),
    # options
    ("empty key", lambda s: _options(s, key=""), InvalidArguments),
    ("huge key", lambda s: _options(s, key="k" * 10_000), InvalidArguments),
    ("int key", lambda s: _options(s, key=17), InvalidArguments),
    ("negative timeout", lambda s: _options(s, timeout=-1), InvalidArguments),
    ("zero timeout", lambda s: _options(s, timeout=0), InvalidArguments),
    ("negative timedelta", lambda s: _options(s, timeout=dt.timedelta(seconds=-1)), InvalidArguments),
    ("str timeout", lambda s: _options(s, timeout="soon"), InvalidArguments),
    ("bool timeout", lambda s: _options(s, timeout=True), InvalidArguments),
    ("dead letter id", lambda s: s.retry_dead_letter(12345), InvalidArguments),
    ("dead letter limit", lambda s: s.dead_letters(limit=0), InvalidArguments),
]


@pytest.mark.parametrize(("call", "error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_calls_raise_and_change_nothing(
    system: ActorSystem, call: Call, error: type[ActorsError]
) -> None:
    with pytest.raises(error) as info:
        await call(system)
    assert type(info.value) is error
    assert str(info.value)  # says what is wrong
    await assert_unchanged(system)
    assert await system.ref(Account, "a").ask(Account.deposit, 1) == 101  # still serving


async def test_errors_name_the_alternatives(system: ActorSystem) -> None:
    with pytest.raises(UnknownHandler, match=r"it is a @query"):
        await acct(system).ask("get_balance")
    with pytest.raises(UnknownHandler, match=r"deposit, withdraw"):
        await acct(system).ask("nope")
    with pytest.raises(UnknownEntity, match=r"Account, Box"):
        system.ref("Nope", "a")
    with pytest.raises(InvalidArguments, match=r"'amount' must be int"):
        await acct(system).ask(Account.deposit, "10")
    with pytest.raises(PayloadTooLarge, match=r"over the limit of 1024 bytes"):
        await box(system).ask(Box.put, "x" * 2000)


@pytest.mark.parametrize("call", ["tell", "ask", "query"])
async def test_calls_after_close_raise_system_closed(store_factory: StoreFactory, call: str) -> None:
    async with ActorSystem(store_factory(), [Account]) as system:
        ref = system.ref(Account, "a")
        await ref.ask(Account.deposit, 100)
    handler = Account.get_balance if call == "query" else Account.deposit
    args = () if call == "query" else (1,)
    with pytest.raises(SystemClosed):
        await getattr(ref, call)(handler, *args)
    async with ActorSystem(store_factory(), [Account]) as system:
        assert await system.ref(Account, "a").query(Account.get_balance) == 100


async def test_a_locked_sqlite_store_raises_store_locked(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    async with ActorSystem(SqliteStore(path), [Account]) as owner:
        await owner.ref(Account, "a").ask(Account.deposit, 100)
        second = ActorSystem(SqliteStore(path), [Account])
        with pytest.raises(StoreLocked, match=r"in use by another running system") as info:
            async with second:
                pass
        assert info.value.owner.get("pid") is not None
        assert not second.running
        assert await owner.ref(Account, "a").ask(Account.deposit, 1) == 101  # the owner goes on
    async with ActorSystem(SqliteStore(path), [Account]) as system:  # free once the owner closed
        assert await system.ref(Account, "a").query(Account.get_balance) == 101


# ---------------------------------------------------------------- entity definitions


def not_attrs() -> type:
    class NotAttrs(Entity):
        balance = 0

    return NotAttrs


def no_default() -> type:
    @attrs.define
    class NoDefault(Entity):
        balance: int

    return NoDefault


def applier_without_annotation() -> type:
    @attrs.define
    class Bare(Entity):
        @applies
        def _deposited(self, event) -> None:  # type: ignore[no-untyped-def]
            pass

    return Bare


def two_appliers() -> type:
    @attrs.define
    class Twice(Entity):
        @applies
        def _one(self, event: Deposited) -> None:
            pass

        @applies
        def _two(self, event: Deposited) -> None:
            pass

    return Twice


def async_applier() -> type:
    @attrs.define
    class AsyncApplier(Entity):
        @applies
        async def _deposited(self, event: Deposited) -> None:
            pass

    return AsyncApplier


def applier_of_a_non_attrs_type() -> type:
    @attrs.define
    class IntEvent(Entity):
        @applies
        def _int(self, event: int) -> None:
            pass

    return IntEvent


def unannotated_signal_argument() -> type:
    @attrs.define
    class Unannotated(Entity):
        @signal
        def deposit(self, amount) -> None:  # type: ignore[no-untyped-def]
            pass

    return Unannotated


def star_args() -> type:
    @attrs.define
    class StarArgs(Entity):
        @signal
        def deposit(self, *amounts: int) -> None:
            pass

    return StarArgs


def star_kwargs() -> type:
    @attrs.define
    class StarKwargs(Entity):
        @signal
        def deposit(self, **amounts: int) -> None:
            pass

    return StarKwargs


def async_query() -> type:
    @attrs.define
    class AsyncQuery(Entity):
        @query
        async def get(self) -> int:
            return 0

    return AsyncQuery


def decorating_a_non_function() -> type:
    @attrs.define
    class Odd(Entity):
        deposit = signal(staticmethod(print))  # type: ignore[type-var]

    return Odd


def marked_twice() -> type:
    @attrs.define
    class Twice(Entity):
        @signal
        @query
        def get(self) -> int:
            return 0

    return Twice


def negative_snapshot_every() -> type:
    @attrs.define
    class Negative(Entity):
        snapshot_every = -1

    return Negative


def not_an_entity() -> type:
    @attrs.define
    class Plain:
        balance: int = 0

    return Plain


DEFINITIONS = [
    not_attrs,
    no_default,
    applier_without_annotation,
    two_appliers,
    async_applier,
    applier_of_a_non_attrs_type,
    unannotated_signal_argument,
    star_args,
    star_kwargs,
    async_query,
    decorating_a_non_function,
    marked_twice,
    negative_snapshot_every,
    not_an_entity,
]


@pytest.mark.parametrize("define", DEFINITIONS, ids=[d.__name__ for d in DEFINITIONS])
def test_entity_classes_that_break_the_rules_are_definition_errors(define: Callable[[], type]) -> None:
    with pytest.raises(DefinitionError) as info:
        ActorSystem(MemoryStore(), [define()])
    assert str(info.value)


def test_two_entity_types_with_one_name_are_a_definition_error() -> None:
    @attrs.define
    class Other(Entity):
        entity_name = "Account"

    with pytest.raises(DefinitionError, match="set entity_name"):
        ActorSystem(MemoryStore(), [Account, Other])


# ---------------------------------------------------------------- constructors

SYSTEM_ARGS: list[tuple[str, dict[str, Any]]] = [
    ("store not a store", {"store": object()}),
    ("store a path", {"store": "bank.db"}),
    ("store the class", {"store": MemoryStore}),
    ("entities a str", {"entities": "Account"}),
    ("entities a class", {"entities": Account}),
    ("entities empty", {"entities": []}),
    ("passivate_after negative", {"passivate_after": dt.timedelta(seconds=-1)}),
    ("passivate_after zero", {"passivate_after": dt.timedelta(0)}),
    ("passivate_after seconds", {"passivate_after": 300}),
    ("clock not a clock", {"clock": object()}),
    ("clock the class", {"clock": VirtualClock}),
    ("supervision a dict", {"supervision": {"max_attempts": 3}}),
    ("max_payload tiny", {"max_payload": 10}),
    ("max_payload a str", {"max_payload": "big"}),
    ("max_payload bool", {"max_payload": True}),
    ("max_batch zero", {"max_batch": 0}),
    ("max_id_length zero", {"max_id_length": 0}),
]


@pytest.mark.parametrize("kwargs", [a[1] for a in SYSTEM_ARGS], ids=[a[0] for a in SYSTEM_ARGS])
def test_bad_system_arguments_are_invalid_arguments(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"store": MemoryStore(), "entities": [Account], **kwargs}
    with pytest.raises(InvalidArguments):
        ActorSystem(**args)


POLICY_ARGS: list[tuple[str, dict[str, Any]]] = [
    ("max_attempts zero", {"max_attempts": 0}),
    ("max_attempts a str", {"max_attempts": "3"}),
    ("initial_backoff zero", {"initial_backoff": dt.timedelta(0)}),
    ("initial_backoff seconds", {"initial_backoff": 1}),
    ("backoff_coefficient below one", {"backoff_coefficient": 0.5}),
    ("backoff_coefficient bool", {"backoff_coefficient": True}),
    ("backoff_coefficient NaN", {"backoff_coefficient": float("nan")}),
    ("max_backoff negative", {"max_backoff": dt.timedelta(seconds=-1)}),
    ("max_restarts zero", {"max_restarts": 0}),
    ("within zero", {"within": dt.timedelta(0)}),
]


@pytest.mark.parametrize("kwargs", [a[1] for a in POLICY_ARGS], ids=[a[0] for a in POLICY_ARGS])
def test_bad_supervisor_policies_are_invalid_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArguments):
        SupervisorPolicy(**kwargs)
