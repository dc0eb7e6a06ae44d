"""Issue 11: the shape of the runtime.

- supervision is a pure decision (``Supervisor.decide``), driven here without a system;
- errors carry their data (``DeadlockError.cycle``, ``CorruptRecord`` fields,
  ``HandlerFailed.handler/attempts``, ``IdempotencyConflict.key``);
- the public surface is pinned: ``__all__`` of both packages and ActorSystem's names;
- the observer is called at the points it names, and one that raises changes nothing;
- ``wait_idle`` wakes every concurrent waiter; ``statistics()`` counts the new things;
- small pieces: no class in ``actors/`` is longer than about 300 lines, and every
  module of ``actors/`` has its place in the layers contract.
"""

from __future__ import annotations

import ast
import datetime as dt
import logging
import tomllib
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import actors
import persistence
from actors import (
    ActorSystem,
    CorruptRecord,
    DeadlockError,
    Entity,
    HandlerFailed,
    IdempotencyConflict,
    InvalidArguments,
    NonDeterminismError,
    SupervisorPolicy,
    applies,
    query,
    signal,
)
from actors._supervisor import DeadLetter, Retry, Stop, Supervisor
from actors._work import Work
from actors.observe import NO_OBSERVER, InvocationInfo, Observer, Outcome
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore
from tests.models import Account

# ---------------------------------------------------------------- supervision, pure

POLICY = SupervisorPolicy(
    max_attempts=3,
    initial_backoff=dt.timedelta(seconds=1),
    backoff_coefficient=2,
    max_restarts=4,
    within=dt.timedelta(seconds=60),
)


def test_a_crash_is_retried_with_backoff_until_out_of_attempts() -> None:
    sup, crashes = Supervisor(POLICY), []
    assert sup.decide(RuntimeError("x"), 1, crashes, now=100.0) == Retry(1.0)
    assert sup.decide(RuntimeError("x"), 2, crashes, now=101.0) == Retry(2.0)
    assert sup.decide(RuntimeError("x"), 3, crashes, now=103.0) == DeadLetter(code_bug=False)
    assert crashes == [100.0, 101.0, 103.0]


def test_a_bug_in_the_code_is_dead_lettered_at_once_and_counts_no_restart() -> None:
    sup, crashes = Supervisor(POLICY), []
    for error in (NonDeterminismError("n"), DeadlockError("d"), InvalidArguments("i")):
        assert sup.decide(error, 1, crashes, now=5.0) == DeadLetter(code_bug=True)
    assert crashes == []


def test_too_many_crashes_within_the_window_stop_the_actor() -> None:
    sup, crashes = Supervisor(POLICY), []
    for i in range(4):
        assert isinstance(sup.decide(RuntimeError(), 1, crashes, now=float(i)), Retry)
    assert sup.decide(RuntimeError(), 1, crashes, now=4.0) == Stop(5)


def test_crashes_older_than_the_window_are_forgotten() -> None:
    sup, crashes = Supervisor(POLICY), [0.0, 1.0, 2.0, 3.0]
    assert isinstance(sup.decide(RuntimeError(), 1, crashes, now=61.5), Retry)
    assert crashes == [2.0, 3.0, 61.5]


# ---------------------------------------------------------------- errors carry data


@attrs.define
class Ping(Entity):
    n: int = 0

    @signal
    async def ping(self, other: str) -> int:
        return int(await self.ref(Ping, other).ask(Ping.ping, self.id))

    @signal
    def boom(self) -> int:
        raise RuntimeError("boom")

    @signal
    async def ask_back(self, other: str) -> str:
        return str(await self.ref(Ping, other).ask(Ping.back, self.id))

    @signal
    async def back(self, caller: str) -> str:
        try:
            await self.ref(Ping, caller).ask(Ping.boom)  # the caller waits on us: a cycle
        except DeadlockError as e:
            return repr(e.cycle)
        return "no cycle"


@pytest.mark.anyio
async def test_deadlock_error_names_the_cycle() -> None:
    async with ActorSystem(MemoryStore(), [Ping], passivate_after=None) as system:
        got = await system.ref(Ping, "a").ask(Ping.ask_back, "b")
        assert got == repr((("Ping", "b"), ("Ping", "a"), ("Ping", "b")))


@pytest.mark.anyio
async def test_handler_failed_names_handler_and_attempts() -> None:
    policy = SupervisorPolicy(max_attempts=2, initial_backoff=dt.timedelta(milliseconds=1))
    async with ActorSystem(MemoryStore(), [Ping], supervision=policy, passivate_after=None) as system:
        with pytest.raises(HandlerFailed) as info:
            await system.ref(Ping, "a").ask(Ping.boom)
        assert (info.value.handler, info.value.attempts) == ("Ping.boom", 2)


@pytest.mark.anyio
async def test_idempotency_conflict_carries_the_callers_key() -> None:
    async with ActorSystem(MemoryStore(), [Account], passivate_after=None) as system:
        ref = system.ref(Account, "a").options(key="k:1/é")
        await ref.ask(Account.deposit, 5)
        with pytest.raises(IdempotencyConflict) as info:
            await ref.ask(Account.deposit, 6)
        assert info.value.key == "k:1/é"
        with pytest.raises(IdempotencyConflict) as told:
            await ref.tell(Account.deposit, 7)
        assert told.value.key == "k:1/é"


@pytest.mark.anyio
async def test_corrupt_record_names_entity_and_seq(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "c.db"
    async with ActorSystem(SqliteStore(db), [Account], passivate_after=None) as system:
        for _ in range(3):
            await system.ref(Account, "a").ask(Account.deposit, 1)
    con = sqlite3.connect(db)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    table = next(t for t in tables if "event" in t)
    cols = [r[1] for r in con.execute(f"pragma table_info({table})")]
    payload = next(c for c in ("data", "payload", "body", "event") if c in cols)
    con.execute(f"update {table} set {payload} = 'not json' where seq = 2")
    con.commit()
    con.close()
    async with ActorSystem(SqliteStore(db), [Account], passivate_after=None) as system:
        with pytest.raises(CorruptRecord) as info:
            await system.ref(Account, "a").query(Account.get_balance)
        assert (info.value.entity_type, info.value.entity_id, info.value.seq) == ("Account", "a", 2)


# ---------------------------------------------------------------- the public surface

ACTORS_ALL = {
    "Cancelled", "InvocationHandle",  # issue 12: workflows
    "ActivityContext", "ActivityFailed", "ActorSystem", "ActorsError", "Clock", "CompensationFailed",
    "CorruptRecord", "DeadlineExceeded", "DeadlockError", "DefinitionError", "Entity", "EntityRef",
    "HandlerFailed", "IdempotencyConflict", "InvalidArguments", "NonDeterminismError", "NotOurDatabase",
    "PayloadTooLarge", "Rejected", "RetryPolicy", "SerializationError", "StoreError", "StoreLocked",
    "SupervisorPolicy", "SystemClock", "SystemClosed", "SystemStatistics", "UnknownEntity",
    "UnknownHandler", "applies", "event_type", "query", "register_type", "signal",
    # the store's errors (issue 13) and retention (issue 15), importable from actors too
    "CommitUnknown", "DatabaseNotFound", "InvalidWrite", "StoreFull", "StoreReadOnly", "StoreTimeout",
    "StoreUnavailable", "Retention", "Overloaded",
    "Member", "ShardLost",  # issue 14: several members
    "SignalTaken",  # issue 16: an inbox signal processed already (a commit whose answer was lost)
}  # fmt: skip

ACTOR_SYSTEM_PUBLIC = {
    "handle",  # issue 12: workflows
    "members", "member_id",  # issue 14: several members
    "aclose", "clock", "codec", "dead_letters", "is_active", "passivate_idle", "recover_entity",
    "ref", "resource", "retry_dead_letter", "running", "statistics", "store", "supervision", "wait_idle",
}  # fmt: skip
"""ActorSystem's public names: each is documented in the README's API section."""


def test_actors_all_is_pinned() -> None:
    assert set(actors.__all__) == ACTORS_ALL


def test_persistence_all_is_pinned() -> None:
    assert sorted(persistence.__all__) == sorted([
        "Codec", "CommitUnknown", "CorruptRecord", "InvalidWrite", "MemoryStore", "NotOurDatabase",
        "PostgresStore", "SqliteStore", "Store", "StoreError", "StoreFull", "StoreLocked", "StoreReadOnly",
        "ShardLost", "SharedStore", "StoreTimeout", "StoreUnavailable", "event_type", "SignalTaken",
    ])  # fmt: skip


def test_actor_system_public_names_are_the_documented_ones() -> None:
    public = {n for n in dir(ActorSystem) if not n.startswith("_")}
    assert public == ACTOR_SYSTEM_PUBLIC
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [n for n in sorted(public) if f"`{n}" not in readme and f".{n}" not in readme]
    assert missing == []


def test_internal_modules_are_private() -> None:
    package = Path(actors.__file__).parent
    public = sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("_"))
    assert public == ["cli", "errors", "inspect", "observe", "otel", "pytest_plugin", "testing"]


MAX_CLASS_LINES = 320
"""Issue 11: no class over about 300 lines (measured from ``class`` to its last line)."""


def _class_lengths(root: Path) -> dict[str, int]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                out[f"{path.relative_to(root.parent)}:{node.name}"] = node.end_lineno - node.lineno + 1
    return out


def test_no_class_in_actors_is_over_about_300_lines() -> None:
    lengths = _class_lengths(Path(actors.__file__).parent)
    assert "actors/_actor.py:Actor" in lengths  # it measures what it should
    assert "actors/_invocation.py:Invocation" in lengths
    too_long = {name: n for name, n in lengths.items() if n > MAX_CLASS_LINES}
    assert too_long == {}


def test_the_class_length_check_can_fail(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_CLASS_LINES))
    (pkg / "big.py").write_text(f"class Big:\n{body}\n")
    assert _class_lengths(pkg) == {"pkg/big.py:Big": MAX_CLASS_LINES + 1}


def test_every_actors_module_is_in_the_layers_contract() -> None:
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    (contract,) = [
        c for c in config["tool"]["importlinter"]["contracts"] if c.get("containers") == ["actors"]
    ]
    listed = {m.strip() for layer in contract["layers"] for m in layer.split(":")}
    package = Path(actors.__file__).parent
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    assert modules - listed == set()
    assert listed - modules == set()


# ---------------------------------------------------------------- the observer


@attrs.define
class Recording:
    """A test double of actors.observe.Observer: records every call."""

    calls: list[tuple[Any, ...]] = attrs.field(factory=list)
    fail: bool = False

    def _note(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail:
            raise RuntimeError("observer bug")

    def carry(self) -> str | None:
        self._note("carry")
        return "trace-1"

    def invocation_started(self, info: InvocationInfo) -> object:
        self._note("started", info)
        return ("tok", info.handler, info.attempt)

    def invocation_ended(self, token: object, outcome: Outcome, error: BaseException | None) -> None:
        self._note("ended", token, outcome, type(error).__name__ if error else None)

    def step_started(self, token: object, kind: str, name: str, attempt: int) -> object:
        self._note("step_started", token, kind, name, attempt)
        return (kind, name, attempt)

    def step_ended(self, step: object, outcome: Outcome, error: BaseException | None) -> None:
        self._note("step_ended", step, outcome)

    def retry_scheduled(self, info: InvocationInfo, delay: float, error: BaseException) -> None:
        self._note("retry", info.handler, info.attempt, delay)

    def dead_lettered(self, info: InvocationInfo, error: BaseException) -> None:
        self._note("dead", info.handler, type(error).__name__)

    def committed(self, writes: int, seconds: float, failed: bool) -> None:
        self._note("committed", writes, seconds >= 0, failed)

    def timer_fired(self, entity_type: str, entity_id: str, key: str, lag: float) -> None:
        self._note("timer", entity_type, entity_id, key, lag)


def fetch(x: int) -> int:
    return x * 2


@attrs.define
class Flow(Entity):
    total: int = 0

    @signal
    async def go(self, x: int) -> int:
        got = int(await self.run(fetch, x))
        self.emit(Added(got))
        return got

    @signal
    def later(self) -> None:
        self.schedule(Flow.tick, after=dt.timedelta(seconds=5), key="t")

    @signal
    def tick(self) -> None:
        self.emit(Added(1))

    @signal
    def crash(self) -> None:
        raise RuntimeError("crash")

    @applies
    def _added(self, event: Added) -> None:
        self.total += event.n

    @query
    def get(self) -> int:
        return self.total


@attrs.frozen
class Added:
    n: int


async def _scenario(observer: Observer) -> tuple[int, int, list[Any]]:
    clock = VirtualClock(auto_advance=True)
    policy = SupervisorPolicy(max_attempts=2, initial_backoff=dt.timedelta(seconds=1))
    system = ActorSystem(
        MemoryStore(), [Flow], clock=clock, supervision=policy, observer=observer, passivate_after=None
    )
    async with system:
        ref = system.ref(Flow, "f")
        assert await ref.ask(Flow.go, 3) == 6
        await ref.ask(Flow.later)
        await clock.advance(dt.timedelta(seconds=6))
        with pytest.raises(HandlerFailed):
            await ref.ask(Flow.crash)
        stats = system.statistics()
        dead = await system.dead_letters()
        return await ref.query(Flow.get), stats.retries, [stats.dead_letters, len(dead)]


@pytest.mark.anyio
async def test_the_observer_sees_invocations_steps_retries_dead_letters_commits_and_timers() -> None:
    rec = Recording()
    total, retries, dead = await _scenario(rec)
    assert (total, retries, dead) == (7, 1, [1, 1])
    kinds = [c[0] for c in rec.calls]
    started = [c[1] for c in rec.calls if c[0] == "started"]
    assert [i.handler for i in started] == ["go", "later", "tick", "crash", "crash"]
    assert all(i.trace == "trace-1" for i in started)  # every signal carried carry()'s context
    ended = [c[1:3] for c in rec.calls if c[0] == "ended"]
    assert ended == [
        (("tok", "go", 1), "ok"),
        (("tok", "later", 1), "ok"),
        (("tok", "tick", 1), "ok"),
        (("tok", "crash", 1), "crashed"),
        (("tok", "crash", 2), "dead_lettered"),
    ]
    steps = [c for c in rec.calls if c[0].startswith("step")]
    assert steps[0][1:] == (("tok", "go", 1), "activity", f"{fetch.__qualname__}", 1)
    assert steps[1][1:] == (("activity", fetch.__qualname__, 1), "ok")
    assert ("retry", "crash", 1, 1.0) in rec.calls
    assert ("dead", "crash", "RuntimeError") in rec.calls
    assert [c for c in rec.calls if c[0] == "timer"] == [("timer", "Flow", "f", "t", 0.0)]
    assert "committed" in kinds
    assert all(c[3] is False for c in rec.calls if c[0] == "committed")


@pytest.mark.anyio
async def test_an_observer_that_raises_changes_nothing_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    baseline = await _scenario(NO_OBSERVER)
    rec = Recording(fail=True)
    with caplog.at_level(logging.ERROR, logger="actors"):
        got = await _scenario(rec)
    assert got == baseline
    assert len(rec.calls) > 10  # it was called throughout
    assert len([r for r in caplog.records if "observer failed" in r.getMessage()]) == 1


def test_a_bad_observer_is_refused() -> None:
    with pytest.raises(InvalidArguments, match="observer"):
        ActorSystem(MemoryStore(), [Account], observer=object())  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_log_lines_about_an_entity_carry_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    policy = SupervisorPolicy(max_attempts=2, initial_backoff=dt.timedelta(milliseconds=1))
    with caplog.at_level(logging.WARNING, logger="actors"):
        async with ActorSystem(MemoryStore(), [Ping], supervision=policy, passivate_after=None) as system:
            with pytest.raises(HandlerFailed):
                await system.ref(Ping, "a").ask(Ping.boom)
    about = [r for r in caplog.records if "boom" in r.getMessage() or "crashed" in r.getMessage()]
    assert about
    for r in about:
        assert (r.entity_type, r.entity_id) == ("Ping", "a")  # type: ignore[attr-defined]
        assert r.signal_id.startswith("g:")  # type: ignore[attr-defined]
        assert r.attempt in (1, 2)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- idle bookkeeping


@pytest.mark.anyio
async def test_wait_idle_wakes_every_concurrent_waiter() -> None:
    work = Work()
    work.inc()
    woke: list[int] = []

    async def waiter(i: int) -> None:
        await work.wait_idle()
        woke.append(i)

    with anyio.fail_after(5):  # a waiter that misses its wake-up hangs the group: fail, not hang
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(waiter, i)
            await anyio.wait_all_tasks_blocked()
            assert woke == []
            work.dec()
    assert sorted(woke) == [0, 1, 2]


@pytest.mark.anyio
async def test_statistics_count_inbox_depth_and_timers() -> None:
    clock = VirtualClock()
    async with ActorSystem(MemoryStore(), [Flow], clock=clock, passivate_after=None) as system:
        ref = system.ref(Flow, "f")
        await ref.ask(Flow.later)
        s = system.statistics()
        assert (s.timers_pending, s.inbox_depth, s.running_handlers, s.dead_letters) == (1, 0, 0, 0)
        await clock.advance(dt.timedelta(seconds=6))
        assert system.statistics().timers_pending == 0
