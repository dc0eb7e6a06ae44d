"""Model-based tests: random call sequences against a plain-Python model of the accounts.

A hypothesis ``RuleBasedStateMachine`` drives a real ``ActorSystem`` (on a
``MemoryStore``, a ``SqliteStore`` in a temporary file or, in a run of its own, a
``PostgresStore`` on a fresh database; on a clock that jumps)
through random sequences of tells, asks (with and without idempotency keys,
repeated and conflicting keys), batches of tells, crashing handlers (retried,
dead-lettered, requeued), restarts (the system closed and a new one opened on the
same store), restarts while a crashed signal waits for its retry, and
passivations. The entities are the same account under four snapshot policies
(``snapshot_every`` 0, 1, 3, 100). The model is a dict of balances, the first
outcome of every key and the list of dead letters; every call's outcome must be
what the model says, and after every step each balance (through a query) and the
dead letters must match it.

The async system is driven from the synchronous state machine through an anyio
blocking portal; the system runs as a context manager inside the portal.
"""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anyio
import attrs
import hypothesis.strategies as st
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from actors import (
    ActorsError,
    ActorSystem,
    Entity,
    HandlerFailed,
    IdempotencyConflict,
    Rejected,
    SupervisorPolicy,
    applies,
    query,
    signal,
)
from persistence import MemoryStore, PostgresStore, SqliteStore, Store
from tests._stores import PgServer

PG: list[PgServer] = []
"""The session's PostgreSQL server, put here by the ``postgres_server`` fixture for the
PostgreSQL run (the state machine is not a pytest test and cannot ask for fixtures)."""
RUNS: dict[int, int] = {}
"""Runs of each ``flaky`` call so far (by its nonce), over every system of the process."""
NONCES = itertools.count(1)
MAX_ATTEMPTS = 2
STEP_DEADLINE = 20.0
"""Seconds one call may take before the step fails (a hang is a failure, not a stuck run)."""
T = TypeVar("T")


class Overdrawn(Rejected):
    """A withdrawal beyond the balance (a subclass: it must come back as itself)."""


@attrs.frozen
class Credited:
    amount: int


@attrs.frozen
class Debited:
    amount: int


class ModelAccount(Entity):
    """The account under test; subclasses set the snapshot policy."""

    balance: int

    @signal
    def deposit(self, amount: int) -> int:
        if amount <= 0:
            raise Rejected("amount must be positive")
        self.emit(Credited(amount))
        return self.balance

    @signal
    def withdraw(self, amount: int) -> int:
        if amount <= 0:
            raise Rejected("amount must be positive")
        self.emit(Debited(amount))  # applied at once: the refusal below must undo it
        if self.balance < 0:
            raise Overdrawn("insufficient funds")
        return self.balance

    @signal
    def flaky(self, amount: int, fail_times: int, nonce: int) -> int:
        """Deposit, but crash (after emitting) on the first ``fail_times`` runs of this call."""
        self.emit(Credited(amount))
        RUNS[nonce] = RUNS.get(nonce, 0) + 1
        if RUNS[nonce] <= fail_times:
            raise RuntimeError(f"simulated crash {RUNS[nonce]} of {fail_times} (nonce {nonce})")
        return self.balance

    @query
    def get_balance(self) -> int:
        return self.balance

    @applies
    def _credited(self, e: Credited) -> None:
        self.balance += e.amount

    @applies
    def _debited(self, e: Debited) -> None:
        self.balance -= e.amount


@attrs.define
class Snap0(ModelAccount):
    balance: int = 0
    snapshot_every: ClassVar[int] = 0


@attrs.define
class Snap1(ModelAccount):
    balance: int = 0
    snapshot_every: ClassVar[int] = 1


@attrs.define
class Snap3(ModelAccount):
    balance: int = 0
    snapshot_every: ClassVar[int] = 3


@attrs.define
class Snap100(ModelAccount):
    balance: int = 0
    snapshot_every: ClassVar[int] = 100


TYPES: list[type[ModelAccount]] = [Snap0, Snap1, Snap3, Snap100]
IDS = ("a", "b")
ENTITY = st.tuples(st.sampled_from(TYPES), st.sampled_from(IDS))
KEY = st.one_of(st.none(), st.sampled_from(("k0", "k1", "k2")))
AMOUNT = st.integers(-1, 30)

Ent = tuple[type[ModelAccount], str]
Call = tuple[str, tuple[int, ...]]
"""(handler name, arguments)."""
Outcome = tuple[Any, ...]
"""("ok", balance) | ("rejected", class name) | ("failed",) | ("conflict",) | ("accepted",)."""


def outcome_of(error: BaseException) -> Outcome:
    if isinstance(error, IdempotencyConflict):
        return ("conflict",)
    if isinstance(error, Rejected):
        return ("rejected", type(error).__name__)
    if isinstance(error, HandlerFailed):
        return ("failed",)
    raise error


class JumpingClock:
    """A clock whose time jumps to whatever is waited for, at once: retry backoffs take no time.

    While ``held``, a wait blocks instead (until its system closes), so a test can
    stop a system while a crashed signal waits for its retry.
    """

    def __init__(self) -> None:
        self._now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        self.held = False
        self.waiting = 0

    def now(self) -> dt.datetime:
        return self._now

    async def sleep_until(self, when: dt.datetime) -> None:
        if self.held:
            self.waiting += 1
            try:
                await anyio.sleep_forever()
            finally:
                self.waiting -= 1
        self._now = max(self._now, when)  # no checkpoint: the waiter goes on in the same step

    def monotonic(self) -> float:
        return self._now.timestamp()

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + dt.timedelta(seconds=seconds))


class Model:
    """What the system should do: balances, first outcomes of keys, dead letters."""

    def __init__(self) -> None:
        self.balance: dict[Ent, int] = {}
        self.keys: dict[Ent, dict[str, tuple[Call, Outcome]]] = {}
        self.dead: list[tuple[Ent, Call, str | None]] = []

    def run(self, ent: Ent, call: Call, budgets: tuple[int, ...] = (MAX_ATTEMPTS,)) -> Outcome:
        """Run ``call`` on ``ent``; ``budgets``: attempts in each system it meets (restarts)."""
        name, args = call
        bal = self.balance.get(ent, 0)
        if name in ("deposit", "withdraw"):
            (amount,) = args
            if amount <= 0:
                return ("rejected", "Rejected")
            if name == "withdraw" and amount > bal:
                return ("rejected", "Overdrawn")
            self.balance[ent] = bal + (amount if name == "deposit" else -amount)
            return ("ok", self.balance[ent])
        amount, fail_times, nonce = args
        for budget in budgets:
            for _ in range(budget):
                RUNS_MODEL[nonce] = RUNS_MODEL.get(nonce, 0) + 1
                if RUNS_MODEL[nonce] > fail_times:
                    self.balance[ent] = bal + amount
                    return ("ok", self.balance[ent])
        return ("failed",)

    def call(
        self, kind: str, ent: Ent, key: str | None, call: Call, budgets: tuple[int, ...] = (MAX_ATTEMPTS,)
    ) -> Outcome:
        """The outcome of a tell or an ask (a tell answers ``accepted`` or ``conflict``)."""
        keys = self.keys.setdefault(ent, {})
        if key is not None and key in keys:
            first_call, first = keys[key]
            if first_call != call:
                return ("conflict",)
            return ("accepted",) if kind == "tell" else first
        result = self.run(ent, call, budgets)
        if key is not None:
            keys[key] = (call, result)
        if result == ("failed",):
            self.dead.append((ent, call, key))
        return ("accepted",) if kind == "tell" else result

    def requeue(self, index: int) -> None:
        """A dead letter put back in the inbox: it runs again in this system."""
        ent, call, key = self.dead.pop(index)
        result = self.run(ent, call)
        if key is not None:
            self.keys[ent][key] = (call, result)
        if result == ("failed",):
            self.dead.append((ent, call, key))


RUNS_MODEL: dict[int, int] = {}
"""The model's own count of runs per nonce (kept apart from the handler's)."""


class AccountsMachine(RuleBasedStateMachine):
    """The real system and the model, step by step."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.portal_cm = start_blocking_portal("asyncio")
        self.portal: BlockingPortal = self.portal_cm.__enter__()
        self.clock = JumpingClock()
        self.tmp: str | None = None
        self.memory: MemoryStore | None = None
        self.pg: tuple[str, str] | None = None
        """(database, dsn) of the PostgreSQL run's database for this example."""
        self.system: ActorSystem | None = None
        self.system_cm: AbstractContextManager[ActorSystem] | None = None
        self.restarts = 0

    # ------------------------------------------------------------ plumbing
    def call(self, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run ``fn(*args)`` in the system's event loop; a hang fails the step (deadline)."""

        async def bounded() -> T:
            with anyio.fail_after(STEP_DEADLINE):
                return await fn(*args)

        return self.portal.call(bounded)

    def new_store(self) -> Store:
        if self.memory is not None:
            return self.memory
        if self.pg is not None:
            return PostgresStore(self.pg[1])
        assert self.tmp is not None
        return SqliteStore(Path(self.tmp) / "model.db")

    def open(self) -> None:
        system = ActorSystem(
            self.new_store(),
            entities=TYPES,
            passivate_after=None,
            clock=self.clock,
            supervision=SupervisorPolicy(max_attempts=MAX_ATTEMPTS, max_restarts=10_000),
        )
        self.system_cm = self.portal.wrap_async_context_manager(system)
        self.system = self.system_cm.__enter__()
        self.flush()  # recovery runs what the inbox holds

    def close(self) -> None:
        if self.system_cm is not None:
            self.system_cm.__exit__(None, None, None)
        self.system = self.system_cm = None

    def flush(self) -> None:
        """Wait until nothing runs (retry backoffs pass at once on the jumping clock)."""
        assert self.system is not None
        self.call(self.system.wait_idle)

    def ref(self, ent: Ent, key: str | None = None) -> Any:
        assert self.system is not None
        return self.system.ref(ent[0], ent[1]).options(key=key)

    def make_call(self, ent: Ent, key: str | None, repeat: bool, name: str, amount: int) -> Call:
        """A new call, or (``repeat``) the call this key was first used with on ``ent``."""
        known = self.model.keys.get(ent, {})
        if repeat and key is not None and key in known:
            return known[key][0]
        return (name, (amount,))

    def tell(self, ent: Ent, key: str | None, call: Call) -> Outcome:
        try:
            self.call(lambda: self.ref(ent, key).tell(call[0], *call[1]))
        except ActorsError as e:
            return outcome_of(e)
        return ("accepted",)

    def ask(self, ent: Ent, key: str | None, call: Call) -> Outcome:
        try:
            return ("ok", self.call(lambda: self.ref(ent, key).ask(call[0], *call[1])))
        except ActorsError as e:
            return outcome_of(e)

    # ------------------------------------------------------------ rules
    @initialize(kind=st.sampled_from(["memory", "sqlite"]))
    def start(self, kind: str) -> None:
        if kind == "memory":
            self.memory = MemoryStore()
        else:
            self.tmp = tempfile.mkdtemp(prefix="model-")
        self.open()

    @rule(
        ent=ENTITY,
        key=KEY,
        repeat=st.booleans(),
        name=st.sampled_from(["deposit", "withdraw"]),
        amount=AMOUNT,
    )
    def do_ask(self, ent: Ent, key: str | None, repeat: bool, name: str, amount: int) -> None:
        call = self.make_call(ent, key, repeat, name, amount)
        expected = self.model.call("ask", ent, key, call)
        assert self.ask(ent, key, call) == expected, (ent, key, call)

    @rule(
        ent=ENTITY,
        key=KEY,
        repeat=st.booleans(),
        name=st.sampled_from(["deposit", "withdraw"]),
        amount=AMOUNT,
    )
    def do_tell(self, ent: Ent, key: str | None, repeat: bool, name: str, amount: int) -> None:
        call = self.make_call(ent, key, repeat, name, amount)
        expected = self.model.call("tell", ent, key, call)
        assert self.tell(ent, key, call) == expected, (ent, key, call)
        self.flush()

    @rule(
        calls=st.lists(
            st.tuples(ENTITY, KEY, st.booleans(), st.sampled_from(["deposit", "withdraw"]), AMOUNT),
            min_size=2,
            max_size=6,
        )
    )
    def tell_batch(self, calls: list[tuple[Ent, str | None, bool, str, int]]) -> None:
        """Several tells accepted before any runs: they queue, then run in acceptance order."""
        for ent, key, repeat, name, amount in calls:
            call = self.make_call(ent, key, repeat, name, amount)
            expected = self.model.call("tell", ent, key, call)
            assert self.tell(ent, key, call) == expected, (ent, key, call)
        self.flush()

    @rule(
        groups=st.lists(
            st.tuples(
                ENTITY,
                st.sampled_from(("k0", "k1", "k2")),
                st.sampled_from(["deposit", "withdraw"]),
                AMOUNT,
                st.lists(st.sampled_from(["tell", "ask"]), min_size=1, max_size=3),
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda g: g[0],
        )
    )
    def concurrent_repeats(self, groups: list[tuple[Ent, str, str, int, list[str]]]) -> None:
        """At once: on each of several entities, the same keyed call sent 1-3 times by tell or ask.

        Whatever the interleaving, each call applies once, every ask answers its first
        outcome and every tell is accepted (different entities do not interact).
        """
        plan: list[tuple[str, Ent, str, Call, Outcome]] = []
        for ent, key, name, amount, kinds in groups:
            call = self.make_call(ent, key, True, name, amount)  # a known key keeps its call
            first = self.model.call("ask", ent, key, call)
            for kind in kinds:
                plan.append((kind, ent, key, call, ("accepted",) if kind == "tell" else first))

        async def all_at_once() -> list[Outcome]:
            results: list[Outcome] = [("missing",)] * len(plan)

            async def one(i: int, kind: str, ent: Ent, key: str, call: Call) -> None:
                ref = self.ref(ent, key)
                try:
                    if kind == "tell":
                        await ref.tell(call[0], *call[1])
                        results[i] = ("accepted",)
                    else:
                        results[i] = ("ok", await ref.ask(call[0], *call[1]))
                except ActorsError as e:
                    results[i] = outcome_of(e)

            async with anyio.create_task_group() as tg:
                for i, (kind, ent, key, call, _) in enumerate(plan):
                    tg.start_soon(one, i, kind, ent, key, call)
            return results

        got = self.call(all_at_once)
        assert got == [p[4] for p in plan], plan
        self.flush()

    @rule(
        ent=ENTITY,
        key=KEY,
        repeat=st.booleans(),
        amount=st.integers(1, 30),
        fail_times=st.sampled_from([0, 1, 2, 3]),
        ask=st.booleans(),
    )
    def crashing(
        self, ent: Ent, key: str | None, repeat: bool, amount: int, fail_times: int, ask: bool
    ) -> None:
        """A handler that crashes (after emitting) ``fail_times`` times: retried, maybe dead-lettered."""
        call = self.make_call(ent, key, repeat, "flaky", amount)
        if call[0] != "flaky" or len(call[1]) != 3:
            call = ("flaky", (amount, fail_times, next(NONCES)))
        if ask:
            expected = self.model.call("ask", ent, key, call)
            assert self.ask(ent, key, call) == expected, (ent, key, call)
        else:
            expected = self.model.call("tell", ent, key, call)
            assert self.tell(ent, key, call) == expected, (ent, key, call)
            self.flush()

    @rule(ent=ENTITY, key=KEY, amount=st.integers(1, 30), fail_times=st.sampled_from([1, 2, 3]))
    def restart_while_a_retry_waits(self, ent: Ent, key: str | None, amount: int, fail_times: int) -> None:
        """A tell crashes once, then the system stops during its backoff: recovery runs it again."""
        call: Call = ("flaky", (amount, fail_times, next(NONCES)))
        if key is not None and key in self.model.keys.get(ent, {}):
            key = None  # a fresh signal: the point is the retry across the restart
        before = self.model.balance.get(ent, 0)
        expected = self.model.call("tell", ent, key, call, budgets=(1, MAX_ATTEMPTS))
        self.clock.held = True  # the first attempt crashes; its retry then waits on the clock
        try:
            assert self.tell(ent, key, call) == expected
            self.flush()
            assert self.clock.waiting == (1 if expected != ("conflict",) else 0)
            assert self.call(lambda: self.ref(ent).query("get_balance")) == before  # rolled back
            self.close()
        finally:
            self.clock.held = False
        self.restarts += 1
        self.open()

    @rule()
    def restart(self) -> None:
        self.close()
        self.restarts += 1
        self.open()

    @rule()
    def passivate(self) -> None:
        assert self.system is not None
        self.system.passivate_idle()
        for cls in TYPES:
            for i in IDS:
                assert not self.system.is_active(cls, i)

    @precondition(lambda self: bool(self.model.dead))
    @rule(data=st.data())
    def requeue_dead_letter(self, data: st.DataObject) -> None:
        assert self.system is not None
        index = data.draw(st.integers(0, len(self.model.dead) - 1))
        letters = self.call(self.system.dead_letters)
        self.model.requeue(index)
        self.call(self.system.retry_dead_letter, letters[index].id)
        self.flush()

    # ------------------------------------------------------------ invariants
    @invariant()
    def balances_match(self) -> None:
        if self.system is None:
            return
        for cls in TYPES:
            for i in IDS:
                actual = self.call(lambda c=cls, i=i: self.ref((c, i)).query(c.get_balance))
                assert actual == self.model.balance.get((cls, i), 0), (cls.__name__, i)

    @invariant()
    def dead_letters_match(self) -> None:
        if self.system is None:
            return
        letters = self.call(self.system.dead_letters)
        got = [(d.signal.entity_type, d.signal.entity_id, d.signal.handler) for d in letters]
        want = [(ent[0].__name__, ent[1], call[0]) for ent, call, _ in self.model.dead]
        assert got == want

    @invariant()
    def nothing_left_pending(self) -> None:
        if self.system is None:
            return
        assert self.call(lambda: self.system.store.read_inbox(after=0, limit=10)) == []  # type: ignore[union-attr]

    def teardown(self) -> None:
        try:
            self.close()
        finally:
            self.portal_cm.__exit__(None, None, None)
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
            if self.pg is not None:
                PG[0].drop_database(self.pg[0])


class PostgresAccountsMachine(AccountsMachine):
    """The same machine on a PostgresStore (a new database per example)."""

    @initialize()
    def start(self) -> None:  # type: ignore[override]
        self.pg = PG[0].create_database()
        self.open()


AccountsMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestAccountsModel = AccountsMachine.TestCase
PostgresAccountsMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestAccountsModelOnPostgres = PostgresAccountsMachine.TestCase


@pytest.fixture(autouse=True)
def postgres_server(request: pytest.FixtureRequest) -> None:
    """Hands the session's server to the PostgreSQL run (only that run starts it)."""
    if request.cls is TestAccountsModelOnPostgres and not PG:
        PG.append(request.getfixturevalue("pg_server"))
