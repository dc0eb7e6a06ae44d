"""Plain messages of active actors run without a task (``actors._pump``); everything
else is handed to the drain task, which goes on from exactly where the pump stopped.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import itertools
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anyio
import attrs
import pytest

from actors import (
    ActorSystem,
    Entity,
    HandlerFailed,
    Rejected,
    StoreError,
    SupervisorPolicy,
    applies,
    query,
    signal,
)
from actors._envelope import Envelope
from actors._pump import BURST
from actors._tasks import Tasks
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore
from persistence.faults import FaultyStore, commits_for
from persistence.store import Accept, Commit, Write, WriteResult
from tests.models import Account

pytestmark = pytest.mark.anyio

POLICY = SupervisorPolicy(initial_backoff=dt.timedelta(seconds=1), max_backoff=dt.timedelta(seconds=8))


def count_drains(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The drain tasks started from now on (by the name of their coroutine)."""
    started: list[str] = []
    real = Tasks.spawn_drain

    def spawn_drain(self: Tasks, coro: Coroutine[Any, Any, None]) -> Any:
        started.append(coro.__qualname__)
        return real(self, coro)

    monkeypatch.setattr(Tasks, "spawn_drain", spawn_drain)
    return started


@attrs.frozen
class Noted:
    what: str


@attrs.define
class Ledger(Entity):
    """Notes what it was asked, in order; ``flaky`` fails while its budget lasts."""

    notes: tuple[str, ...] = ()
    failures: ClassVar[dict[str, int]] = {}

    @signal
    def note(self, what: str) -> int:
        self.emit(Noted(what))
        return len(self.notes)

    @signal
    def flaky(self, what: str) -> int:
        left = Ledger.failures.get(what, 0)
        if left:
            Ledger.failures[what] = left - 1
            self.emit(Noted("half-done"))  # applied, then rolled back with the crash
            raise RuntimeError(f"{what} failed ({left} left)")
        self.emit(Noted(what))
        return len(self.notes)

    @signal
    def refuse(self, what: str) -> int:
        raise Rejected(f"no {what}")

    @signal
    async def later(self, what: str) -> int:
        await anyio.lowlevel.checkpoint()
        self.emit(Noted(what))
        return len(self.notes)

    @applies
    def _noted(self, event: Noted) -> None:
        self.notes = (*self.notes, event.what)

    @query
    def get_notes(self) -> tuple[str, ...]:
        return self.notes


async def test_plain_messages_of_active_actors_run_without_a_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ActorSystem(SqliteStore(tmp_path / "a.db"), entities=[Account]) as system:
        refs = [system.ref(Account, f"a{i}") for i in range(10)]
        for r in refs:
            await r.query(Account.get_balance)  # loaded
        drains = count_drains(monkeypatch)
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(refs[i % 10].ask, Account.deposit, 1)
        assert drains == []
        assert [await r.query(Account.get_balance) for r in refs] == [20] * 10
        first = await refs[0].options(key="k1").ask(Account.deposit, 1)  # its mark looked up first
        assert await refs[0].options(key="k1").ask(Account.deposit, 1) == first  # a repeat
        assert drains == []  # keyed asks too: the mark read calls the pump back
        await refs[0].options(key="t1").tell(Account.deposit, 1)  # from the inbox, keyed: here too
        assert await refs[0].ask(Account.deposit, 1) == first + 2  # runs after the tell
        await refs[0].options(key="t1").tell(Account.deposit, 1)  # a repeat: refused when accepted
        assert await refs[0].ask(Account.deposit, 1) == first + 3
        assert drains == []
    async with SqliteStore(tmp_path / "a.db") as again:  # durable: every deposit on disk
        assert len(await again.read_events("Account", "a3", after=0, limit=100)) == 20


async def test_an_inbox_signal_found_processed_is_taken_out_by_a_drain_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keyed inbox signal whose mark the pump finds (a repeat that reached the inbox,
    as a tell racing an ask of its key can) is not run: a drain task takes it out of
    the inbox (a write) and the actor goes on."""
    async with ActorSystem(SqliteStore(tmp_path / "a.db"), entities=[Account]) as system:
        a = system.ref(Account, "a")
        await a.options(key="k").tell(Account.deposit, 5)
        assert await a.ask(Account.deposit, 1) == 6
        calls = system._calls  # the same signal record again, as its sender made it
        h, _values, rec = calls._signal(
            calls.kernel.registry.spec_of(Account), "a", Account.deposit, (5,), {}, "k"
        )
        await system.store.write([Accept(rec, check_duplicate=False)])  # back in the inbox
        assert [e.signal.signal_id for e in await system.store.read_inbox(after=0, limit=10)] == ["k:k"]
        drains = count_drains(monkeypatch)
        actor = calls.directory.actors[("Account", "a")]
        actor.deliver(Envelope(h, rec, None, True, None, True))  # as the inbox routes it
        assert await a.ask(Account.deposit, 1) == 7  # runs after it: 5 was not applied again
        assert drains == ["Loop.drain"]
        assert await system.store.read_inbox(after=0, limit=10) == []  # taken out
        fresh = calls._signal(calls.kernel.registry.spec_of(Account), "a", Account.deposit, (2,), {}, "n")
        await system.store.write([Accept(fresh[2], check_duplicate=True)])
        actor.deliver(Envelope(fresh[0], fresh[2], None, True, None, True))
        assert await a.ask(Account.deposit, 1) == 10  # a new one runs in the pump
        assert drains == ["Loop.drain"]
        assert await system.store.read_inbox(after=0, limit=10) == []


async def test_a_message_the_pump_cannot_run_keeps_its_place_in_the_mailbox() -> None:
    async with ActorSystem(MemoryStore(), entities=[Ledger]) as system:
        ref = system.ref(Ledger, "l")
        await ref.ask(Ledger.note, "start")
        calls = [
            (Ledger.note, "a", None),
            (Ledger.note, "b", "key-b"),  # keyed: to the drain task
            (Ledger.note, "c", None),
            (Ledger.later, "d", None),  # async: to the drain task
            (Ledger.note, "e", None),
        ]
        async with anyio.create_task_group() as tg:
            for handler, what, key in calls:  # delivered in this order, one mailbox
                tg.start_soon(lambda h=handler, w=what, k=key: (ref.options(key=k) if k else ref).ask(h, w))
        assert await ref.query(Ledger.get_notes) == ("start", "a", "b", "c", "d", "e")


async def test_a_crash_in_the_pump_is_the_supervisors_with_every_attempt_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = VirtualClock()
    async with ActorSystem(MemoryStore(), entities=[Ledger], clock=clock, supervision=POLICY) as system:
        ref = system.ref(Ledger, "l")
        await ref.ask(Ledger.note, "start")
        monkeypatch.setitem(Ledger.failures, "twice", 2)
        drains = count_drains(monkeypatch)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ask, Ledger.flaky, "twice")
            await clock.advance(dt.timedelta(seconds=10))  # backoff 1 s, then 2 s
        assert drains == ["Loop.drain"]  # the crash went to a drain task
        assert await ref.query(Ledger.get_notes) == ("start", "twice")  # the half-done rolled back
        monkeypatch.setitem(Ledger.failures, "always", 99)
        async with anyio.create_task_group() as tg:

            async def fails() -> None:
                with pytest.raises(HandlerFailed) as info:
                    await ref.ask(Ledger.flaky, "always")
                assert info.value.attempts == POLICY.max_attempts

            tg.start_soon(fails)
            await clock.advance(dt.timedelta(seconds=60))
        with pytest.raises(Rejected, match="no thanks"):  # a refusal: committed as the outcome
            await ref.ask(Ledger.refuse, "thanks")
        assert await ref.ask(Ledger.note, "end") == 3
        assert Ledger.failures["always"] == 99 - POLICY.max_attempts


async def test_a_pumped_commit_that_fails_runs_again_from_the_inbox_and_is_applied_once() -> None:
    clock = VirtualClock()
    store = FaultyStore(MemoryStore())
    async with ActorSystem(store, [Account], clock=clock, supervision=POLICY) as system:
        a = system.ref(Account, "a")
        assert await a.ask(Account.deposit, 1) == 1  # loaded: the next messages are pumped
        store.fail("write", "io", times=2, when=commits_for("a"))
        await a.tell(Account.deposit, 7)
        await clock.advance(dt.timedelta(0))
        assert store.failures == 1
        assert await a.query(Account.get_balance) == 1
        await clock.advance(dt.timedelta(seconds=3.5))  # backoff 1 s, then 2 s
        assert store.failures == 2
        assert await a.query(Account.get_balance) == 8
        assert await store.read_inbox(after=0, limit=10) == []
        assert [e.data for e in await store.read_events("Account", "a", after=0, limit=10)] == [
            '{"amount":1}',
            '{"amount":7}',
        ]


async def test_an_ask_whose_pumped_commit_fails_gets_the_error_and_the_actor_goes_on() -> None:
    store = FaultyStore(MemoryStore())
    async with ActorSystem(store, [Account]) as system:
        a = system.ref(Account, "a")
        assert await a.ask(Account.deposit, 1) == 1
        store.fail("write", "full", when=commits_for("a"))
        with pytest.raises(StoreError, match="full"):
            await a.ask(Account.deposit, 5)
        assert await a.query(Account.get_balance) == 1  # nothing of it kept
        assert await a.ask(Account.deposit, 2) == 3  # reloaded from the store: it goes on
        assert len(await store.read_events("Account", "a", after=0, limit=10)) == 2


async def test_closing_answers_a_pumped_ask_whose_commit_is_under_way(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db", inline_writes=0)
    release = anyio.Event()
    writing = anyio.Event()
    real_write = store.write

    async def slow_write(batch: Any) -> Any:
        if any(getattr(w, "entity_id", None) == "slow" for w in batch):
            writing.set()
            await release.wait()
        return await real_write(batch)

    store.write = slow_write  # type: ignore[method-assign]
    system = ActorSystem(store, entities=[Account])
    answers: list[object] = []
    async with system:
        ref = system.ref(Account, "slow")
        await ref.query(Account.get_balance)
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                answers.append(await ref.ask(Account.deposit, 4))

            tg.start_soon(ask)
            await writing.wait()  # the commit is under way
            tg.start_soon(system.aclose)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert 4 in answers  # the real answer, after the write
    async with SqliteStore(tmp_path / "a.db") as again:
        assert [e.data for e in await again.read_events("Account", "slow", after=0, limit=10)] == [
            '{"amount":4}'
        ]


async def test_one_actors_long_mailbox_lets_the_event_loop_turn() -> None:
    """With nothing else running every commit is written at once, so nothing would
    ever wait: after ``BURST`` messages the rest goes on in the next turn."""
    async with ActorSystem(MemoryStore(), entities=[Account]) as system:
        ref = system.ref(Account, "a")
        await ref.ask(Account.deposit, 1)
        actor = system._directory.actors[("Account", "a")]
        seen: list[int] = []
        async with anyio.create_task_group() as tg:
            for _ in range(3 * BURST):
                tg.start_soon(ref.ask, Account.deposit, 1)
            await anyio.lowlevel.checkpoint()  # every ask is in the mailbox now
            while actor.running:
                assert actor.view is not None
                seen.append(actor.view.balance)  # type: ignore[attr-defined]
                await anyio.lowlevel.checkpoint()
        assert await ref.query(Account.get_balance) == 1 + 3 * BURST
        assert any(1 < b < 1 + 3 * BURST for b in seen), seen  # seen half-way: the loop turned
        # at most a burst per turn (plus the message whose commit called the actor back)
        assert max(b2 - b1 for b1, b2 in itertools.pairwise(seen)) <= BURST + 1, seen


_TAG: contextvars.ContextVar[str | None] = contextvars.ContextVar("_TAG", default=None)


@attrs.define
class Tagger(Entity):
    """Sets a context variable while it runs: the next message must not see it."""

    n: int = 0

    @signal
    def tag(self, tag: str) -> str:
        before = _TAG.get()
        _TAG.set(tag)
        self.emit(Noted(tag))
        return before or ""

    @applies
    def _noted(self, event: Noted) -> None:
        self.n += 1


async def test_what_a_handler_sets_in_its_context_stays_with_its_message() -> None:
    """The pump runs messages in callbacks, some from the committer's task: each in a
    context of its own, so one handler's context variables reach no other."""
    async with ActorSystem(MemoryStore(), entities=[Tagger]) as system:
        refs = [system.ref(Tagger, f"t{i}") for i in range(20)]
        for r in refs:
            assert await r.ask(Tagger.tag, "first") == ""
        seen: list[str] = []

        async def ask(i: int) -> None:
            seen.append(await refs[i % 20].ask(Tagger.tag, f"m{i}"))

        async with anyio.create_task_group() as tg:
            for i in range(400):
                tg.start_soon(ask, i)
        assert seen == [""] * 400
        assert _TAG.get() is None


async def test_one_turn_runs_at_most_a_slice_of_actors_then_the_committer_takes_theirs() -> None:
    """300 actors kicked in one turn: the first 256 run, then the committer takes their
    commits (a store with a thread of its own writes them while the rest run)."""
    from actors._pump import SLICE

    n = SLICE + 44
    store = Batches()
    store.go.set()
    sizes = store.sizes
    async with ActorSystem(store, entities=[Account]) as system:
        refs = [system.ref(Account, f"a{i}") for i in range(n)]
        for r in refs:
            await r.query(Account.get_balance)  # loaded: their asks take the pump
        sizes.clear()
        async with anyio.create_task_group() as tg:
            for r in refs:
                tg.start_soon(r.ask, Account.deposit, 1)
        assert sizes == [SLICE, n - SLICE]  # one batch of all of them without the slice
        assert [await r.query(Account.get_balance) for r in refs] == [1] * n


class SlowMarks(MemoryStore):
    """Mark reads that wait for ``go`` (never at once), or fail while ``broken``."""

    def __init__(self) -> None:
        super().__init__()
        self.go = anyio.Event()
        self.reading = anyio.Event()
        self.broken = False

    def read_marks_now(self, keys: object) -> None:  # type: ignore[override]
        return None  # always the gathered read, which waits

    async def read_marks(self, keys: Any) -> Any:
        self.reading.set()
        await self.go.wait()
        if self.broken:
            raise StoreError("the disk said no")
        return await super().read_marks(keys)

    async def read_mark(self, entity_type: str, entity_id: str, signal_id: str) -> Any:
        if self.broken:
            raise StoreError("the disk said no")
        return await super().read_mark(entity_type, entity_id, signal_id)


class Batches(SlowMarks):
    """Records the commits of each batch written (``sizes``) and the keys of each mark
    read (``reads``, which waits for ``go``)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.reads: list[int] = []

    async def read_marks(self, keys: Any) -> Any:
        self.reads.append(len(keys))
        return await super().read_marks(keys)

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        commits = sum(isinstance(w, Commit) for w in batch)
        if commits:
            self.sizes.append(commits)
        return await super().write(batch)


async def test_keyed_asks_answered_by_one_mark_read_go_on_in_slices() -> None:
    """One gathered read answers the keys of more actors than a slice: they go on in
    slices (the committer takes the first one's commits while the rest run), not in one
    wave (one batch of all, written while nothing runs)."""
    from actors._pump import SLICE

    n = SLICE + 44
    store = Batches()
    sizes, reads = store.sizes, store.reads
    async with ActorSystem(store, entities=[Account]) as system:
        refs = [system.ref(Account, f"a{i}") for i in range(n)]
        for r in refs:
            await r.query(Account.get_balance)  # loaded: their asks take the pump
        async with anyio.create_task_group() as tg:
            for i, r in enumerate(refs):
                tg.start_soon(lambda r=r, i=i: r.options(key=f"k{i}").ask(Account.deposit, 1))
            await store.reading.wait()
            await anyio.wait_all_tasks_blocked()  # every key is asked for now
            store.go.set()
        assert reads == [n]  # one read for all of them
        assert sizes == [SLICE, n - SLICE]  # one batch of all of them without the slices
        assert [await r.query(Account.get_balance) for r in refs] == [1] * n


async def test_keyed_asks_run_in_the_pump_after_their_mark_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyed ask's mark is read first (here the read waits), then it runs without a
    drain task; a repeat is answered from its mark, a reused key with other arguments
    refused, a failed read fails only its caller."""
    from actors import IdempotencyConflict

    store = SlowMarks()
    store.go.set()
    async with ActorSystem(store, entities=[Account]) as system:
        ref = system.ref(Account, "a")
        await ref.query(Account.get_balance)  # loaded
        drains = count_drains(monkeypatch)
        assert await ref.options(key="k1").ask(Account.deposit, 5) == 5
        assert await ref.options(key="k1").ask(Account.deposit, 5) == 5  # a repeat: not run again
        with pytest.raises(IdempotencyConflict):
            await ref.options(key="k1").ask(Account.deposit, 6)
        store.broken = True
        with pytest.raises(StoreError, match="disk said no"):
            await ref.options(key="k2").ask(Account.deposit, 1)
        store.broken = False
        assert await ref.options(key="k2").ask(Account.deposit, 1) == 6  # the actor goes on
        assert drains == []
        assert await ref.query(Account.get_balance) == 6


async def test_a_close_during_a_keyed_asks_mark_read_tells_its_caller() -> None:
    from actors import SystemClosed

    store = SlowMarks()
    system = ActorSystem(store, entities=[Account])
    async with system:
        ref = system.ref(Account, "a")
        await ref.query(Account.get_balance)
        got: list[BaseException] = []

        async def ask() -> None:
            try:
                await ref.options(key="k1").ask(Account.deposit, 5)
            except SystemClosed as e:
                got.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            with anyio.fail_after(5):
                await store.reading.wait()  # the read waits: the ask is at the mailbox's head
                await system.aclose()  # does not wait for the read
        assert len(got) == 1
        assert got[0].accepted is False  # nothing of it was written
    assert store._d.events == {}
