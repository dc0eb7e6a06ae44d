"""Entities talking to entities: outbox tells, journaled asks, ask-cycle detection.

Inside a handler ``self.ref(Other, id)`` is bound to the invocation: its ``tell``
goes to the outbox (stored with the commit, delivered after it, at least once,
deduplicated by the receiver) and its ``ask`` is journaled (a re-run gets the
recorded answer, the callee sees the call once). An ask that would close a cycle
of waiting entities raises ``DeadlockError`` instead of hanging.

Time is a ``VirtualClock``: ``clock.settle()`` waits until outbox deliveries and
the handlers they start are done, and supervisor backoffs pass in ``advance``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from actors import (
    ActorSystem,
    DeadlockError,
    Entity,
    HandlerFailed,
    InvalidArguments,
    Rejected,
    SupervisorPolicy,
    applies,
    query,
    signal,
)
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore, Store
from persistence.store import Commit, SignalRecord, TimerRecord, replace
from tests.actors import _saga_worker as worker
from tests.actors.support import Outcome, StoreFactory, event_count
from tests.models import InsufficientFunds

pytestmark = pytest.mark.anyio

SECOND = dt.timedelta(seconds=1)


# ---------------------------------------------------------------- entities


@attrs.frozen
class Noted:
    text: str


@attrs.frozen
class Sent:
    text: str


@attrs.frozen
class Moved:
    amount: int


@attrs.frozen
class Answered:
    answer: str


class Refused(Rejected):
    """The box's own refusal."""


@attrs.define
class Probe:
    """What the tests observe of (and control in) the handlers below."""

    calls: dict[str, int] = attrs.field(factory=dict)
    """Handler runs per ``Type/id.handler``."""
    answers: list[str] = attrs.field(factory=list)
    """What the caller's handler got from its ask, one entry per run."""
    crashes_left: int = 0
    """The sender / caller crash after their call while this is not 0 (negative: always)."""
    reached: anyio.Event = attrs.field(factory=anyio.Event)
    gate: anyio.Event = attrs.field(factory=anyio.Event)

    def count(self, key: str) -> None:
        self.calls[key] = self.calls.get(key, 0) + 1

    def crash(self, what: str) -> None:
        if self.crashes_left != 0:
            self.crashes_left -= 1
            raise RuntimeError(f"crash after {what}")


def make_entities(probe: Probe) -> dict[str, type[Entity]]:
    """Fresh entity classes reporting to ``probe``."""

    @attrs.define
    class Box(Entity):
        """Receives notes; counts every run of ``note``."""

        notes: tuple[str, ...] = ()

        @signal
        def note(self, text: str) -> int:
            probe.count(f"Box/{self.id}.note")
            if text.startswith("refuse"):
                raise Refused(f"box {self.id} refuses {text!r}")
            self.emit(Noted(text))
            return len(self.notes)

        @signal
        def wipe(self) -> None:
            """A handler without a result (``-> None``)."""
            probe.count(f"Box/{self.id}.wipe")
            self.emit(Noted(""))

        @query
        def get_notes(self) -> tuple[str, ...]:
            return self.notes

        @applies
        def _noted(self, e: Noted) -> None:
            self.notes = (*self.notes, e.text)

    @attrs.define
    class Sender(Entity):
        """Tells boxes through its outbox."""

        sent: tuple[str, ...] = ()

        @signal
        async def send(self, to: str, texts: tuple[str, ...], mode: str) -> int:
            probe.count(f"Sender/{self.id}.send")
            for text in texts:
                await self.ref(Box, to).tell(Box.note, text)
                self.emit(Sent(text))
            if mode == "reject":
                raise Rejected("the sender changed its mind")
            if mode == "crash":
                probe.crash("telling")
            if mode == "hold":
                probe.reached.set()
                await probe.gate.wait()
            return len(self.sent)

        @query
        def get_sent(self) -> tuple[str, ...]:
            return self.sent

        @applies
        def _sent(self, e: Sent) -> None:
            self.sent = (*self.sent, e.text)

    @attrs.define
    class Vault(Entity):
        """An account whose handlers count their runs (the callee of asks)."""

        balance: int = 0

        @signal
        def deposit(self, amount: int) -> int:
            probe.count(f"Vault/{self.id}.deposit")
            self.emit(Moved(amount))
            return self.balance

        @signal
        def withdraw(self, amount: int) -> int:
            probe.count(f"Vault/{self.id}.withdraw")
            if amount > self.balance:
                raise InsufficientFunds(f"{self.id} has {self.balance}, not {amount}")
            self.emit(Moved(-amount))
            return self.balance

        @query
        def get_balance(self) -> int:
            return self.balance

        @applies
        def _moved(self, e: Moved) -> None:
            self.balance += e.amount

    @attrs.define
    class Caller(Entity):
        """Asks a vault from its handler, then maybe crashes or waits."""

        answers: tuple[str, ...] = ()

        @signal
        async def withdraw_from(self, vault: str, amount: int) -> str:
            probe.count(f"Caller/{self.id}.withdraw_from")
            try:
                left = await self.ref(Vault, vault).ask(Vault.withdraw, amount)
                answer = f"left {left}"
            except Rejected as r:
                answer = f"{type(r).__name__}: {r.message}"
            probe.answers.append(answer)
            probe.reached.set()
            probe.crash("asking")
            await probe.gate.wait()
            self.emit(Answered(answer))
            return answer

        @signal
        def barrier(self) -> tuple[str, ...]:
            return self.answers

        @applies
        def _answered(self, e: Answered) -> None:
            self.answers = (*self.answers, e.answer)

    @attrs.define
    class Node(Entity):
        """Relays an ask along a chain of node ids."""

        @signal
        async def relay(self, chain: tuple[str, ...]) -> str:
            probe.count(f"Node/{self.id}.relay")
            if not chain:
                return self.id
            rest = await self.ref(Node, chain[0]).ask(Node.relay, chain[1:])
            return f"{self.id}>{rest}"

        @signal
        async def fan(self, a: str, b: str, then: str) -> list[str]:
            """Ask two nodes at once; each relays to ``then``."""
            results = await self.gather(
                self.ref(Node, a).ask(Node.relay, (then,)),
                self.ref(Node, b).ask(Node.relay, (then,)),
            )
            return list(results)

        @signal
        async def wipe_box(self, box: str) -> str:
            result = await self.ref(Box, box).ask(Box.wipe)
            probe.crash("wiping")
            return repr(result)

        @signal
        async def ask_self(self) -> str:
            try:
                await self.ref(Node, self.id).ask(Node.relay, ())
            except InvalidArguments as e:
                return f"InvalidArguments: {e}"
            return "no error"

    return {c.__name__: c for c in (Box, Sender, Vault, Caller, Node)}


# ---------------------------------------------------------------- helpers


def system_of(store: Store, probe: Probe, clock: VirtualClock, **kw: Any) -> ActorSystem:
    return ActorSystem(store, list(make_entities(probe).values()), clock=clock, **kw)


async def drive(clock: VirtualClock, call: Callable[[], Awaitable[Any]], *, most: int = 120) -> Outcome:
    """Run ``call`` in the background, advancing the virtual clock until it is done."""
    out = Outcome()
    async with anyio.create_task_group() as tg:
        tg.start_soon(out.capture, call)
        for _ in range(most):
            await clock.advance(SECOND)
            if out.done.is_set():
                break
        else:
            tg.cancel_scope.cancel()
            pytest.fail(f"the call did not finish within {most} virtual seconds")
    return out


async def outbox_of(store: Store) -> list[SignalRecord]:
    return [e.signal for e in await store.read_outbox(after=0, limit=1000)]


async def inbox_of(store: Store, entity_type: str) -> list[SignalRecord]:
    return [
        e.signal for e in await store.read_inbox(after=0, limit=1000) if e.signal.entity_type == entity_type
    ]


# ---------------------------------------------------------------- outbox tell


async def test_a_tell_from_a_handler_is_delivered_after_its_commit(store_factory: StoreFactory) -> None:
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        sender = system.ref("Sender", "s")
        box = system.ref("Box", "b")
        await sender.tell("send", "b", ("hello",), "hold")
        with anyio.fail_after(5):
            await probe.reached.wait()
        # the handler told the box, but has not committed: nothing is sent, stored or applied
        assert await outbox_of(system.store) == []
        assert await inbox_of(system.store, "Box") == []
        assert await box.query("get_notes") == ()
        assert "Box/b.note" not in probe.calls
        probe.gate.set()
        await clock.settle()
        assert await box.query("get_notes") == ("hello",)
        assert await sender.query("get_sent") == ("hello",)
        assert probe.calls["Box/b.note"] == 1
        assert await outbox_of(system.store) == []


async def test_tells_from_one_handler_arrive_in_order(store_factory: StoreFactory) -> None:
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        texts = tuple(f"n{i}" for i in range(8))
        assert await system.ref("Sender", "s").ask("send", "b", texts, "") == 8
        await clock.settle()
        assert await system.ref("Box", "b").query("get_notes") == texts


async def test_a_rejected_handler_sends_nothing(store_factory: StoreFactory) -> None:
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        with pytest.raises(Rejected, match="changed its mind"):
            await system.ref("Sender", "s").ask("send", "b", ("x", "y"), "reject")
        await clock.advance(dt.timedelta(minutes=1))
        assert await system.ref("Box", "b").query("get_notes") == ()
        assert "Box/b.note" not in probe.calls
        assert await system.ref("Sender", "s").query("get_sent") == ()
        assert await outbox_of(system.store) == []
        assert await inbox_of(system.store, "Box") == []


async def test_a_crashing_handler_sends_nothing(store_factory: StoreFactory) -> None:
    probe, clock = Probe(crashes_left=-1), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        out = await drive(clock, lambda: system.ref("Sender", "s").ask("send", "b", ("x",), "crash"))
        assert isinstance(out.error, HandlerFailed)
        assert probe.calls["Sender/s.send"] == system.supervision.max_attempts
        await clock.advance(dt.timedelta(minutes=1))
        assert "Box/b.note" not in probe.calls
        assert await system.ref("Box", "b").query("get_notes") == ()
        assert await outbox_of(system.store) == []
        assert len(await system.dead_letters()) == 1


async def test_only_the_attempt_that_commits_sends(store_factory: StoreFactory) -> None:
    """The first attempt told, then crashed: its message is dropped; the retry's is sent once."""
    probe, clock = Probe(crashes_left=1), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        out = await drive(clock, lambda: system.ref("Sender", "s").ask("send", "b", ("once",), "crash"))
        assert out.error is None
        assert probe.calls["Sender/s.send"] == 2
        await clock.settle()
        assert await system.ref("Box", "b").query("get_notes") == ("once",)
        assert probe.calls["Box/b.note"] == 1


async def test_an_undelivered_outbox_message_is_delivered_after_a_restart(
    store_factory: StoreFactory,
) -> None:
    """The system stops between the commit and the delivery: the message waits in the outbox."""
    probe, clock = Probe(), VirtualClock()
    held: list[SignalRecord] = []
    async with system_of(store_factory(), probe, clock) as system:

        def lost(ids: object, signals: list[SignalRecord]) -> None:
            held.extend(signals)  # the process "dies" right after the commit

        system._directory.deliver_outbox = lost  # type: ignore[method-assign]
        assert await system.ref("Sender", "s").ask("send", "b", ("late", "later"), "") == 2
        await clock.settle()
        assert [s.handler for s in held] == ["note", "note"]
        assert await outbox_of(system.store) == held
        assert await system.ref("Box", "b").query("get_notes") == ()

    async with system_of(store_factory(), probe, clock) as system:
        await clock.settle()
        assert await system.ref("Box", "b").query("get_notes") == ("late", "later")
        assert await outbox_of(system.store) == []
        assert probe.calls["Box/b.note"] == 2
        assert probe.calls["Sender/s.send"] == 1


class SlowStartStore(MemoryStore):
    """A store whose timer read at start takes a while (a cold disk): the delivery of the
    recovered outbox, written meanwhile, commits before the system has finished starting."""

    async def read_timers(self, *, limit: int, after_due: float = float("-inf")) -> list[TimerRecord]:
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        return await super().read_timers(limit=limit, after_due=after_due)


async def test_an_outbox_message_delivered_while_the_system_starts_is_handled() -> None:
    probe, clock = Probe(), VirtualClock()
    store = SlowStartStore()
    async with system_of(store, probe, clock) as system:
        system._directory.deliver_outbox = lambda ids, signals: None  # type: ignore[method-assign]
        await system.ref("Sender", "s").ask("send", "b", ("early",), "")
    async with system_of(store, probe, clock) as system:
        await clock.settle()
        assert await outbox_of(store) == []
        assert await inbox_of(store, "Box") == []  # not left behind in the inbox
        assert await system.ref("Box", "b").query("get_notes") == ("early",)


async def test_a_redelivered_outbox_message_takes_effect_once(store_factory: StoreFactory) -> None:
    """At least once: the same message in the outbox again (a crash between the receiver's
    accept and the outbox cleanup, as a store without one transaction for both would leave)
    is recognised by its id and not applied twice."""
    probe, clock = Probe(), VirtualClock()
    sent: list[SignalRecord] = []
    async with system_of(store_factory(), probe, clock) as system:
        original = system._directory.deliver_outbox

        def spy(ids: Any, signals: Any) -> None:
            sent.extend(signals)
            original(ids, signals)

        system._directory.deliver_outbox = spy  # type: ignore[method-assign]
        await system.ref("Sender", "s").ask("send", "b", ("once",), "")
        await clock.settle()
        assert await system.ref("Box", "b").query("get_notes") == ("once",)
    assert len(sent) == 1
    assert sent[0].signal_id.startswith('o:["Sender","s",')

    # put the very same message in the outbox again, straight into the store
    store = store_factory()
    async with store:
        other = replace(sent[0], entity_type="Sender", entity_id="s2", signal_id="g:fake", handler="send")
        sends = Commit("Sender", "s2", other, '{"ok":0}', 1, outbox=(sent[0],), mark=False, from_inbox=False)
        await store.write([sends])
        assert await outbox_of(store) == [sent[0]]

    async with system_of(store_factory(), probe, clock) as system:
        await clock.settle()
        assert await outbox_of(system.store) == []
        assert await system.ref("Box", "b").query("get_notes") == ("once",)
        assert probe.calls["Box/b.note"] == 1


@pytest.mark.slow
async def test_an_outbox_message_survives_a_kill_between_commit_and_delivery(tmp_path: Path) -> None:
    """kill -9 right after the sender's commit, before delivery: the receiver gets it on restart."""
    db = tmp_path / "outbox.db"
    await worker.open_accounts(db, {"alice": 100, "bob": 0})
    async with await worker.spawn(db, "outbox") as proc:
        await worker.kill_at(proc, "outbox-committed")
    async with SqliteStore(db) as store:
        [pending] = await outbox_of(store)
        assert (pending.entity_id, pending.handler) == ("bob", "credit")
        assert await worker.ledger(store, "alice") == [("Debited", "pay-1")]
        assert await worker.ledger(store, "bob") == []
    async with worker.reopen(db) as system:
        assert await system.ref(worker.Account, "bob").query(worker.Account.get_balance) == 30
        assert await system.ref(worker.Account, "alice").query(worker.Account.get_balance) == 70
        assert await outbox_of(system.store) == []
        assert await worker.ledger(system.store, "bob") == [("Credited", "pay-1")]
        assert await worker.ledger(system.store, "alice") == [("Debited", "pay-1")]


# ---------------------------------------------------------------- journaled ask


async def test_an_ask_from_a_handler_returns_the_answer(store_factory: StoreFactory) -> None:
    probe, clock = Probe(), VirtualClock()
    probe.gate.set()
    async with system_of(store_factory(), probe, clock) as system:
        await system.ref("Vault", "v").ask("deposit", 100)
        assert await system.ref("Caller", "c").ask("withdraw_from", "v", 30) == "left 70"
        assert await system.ref("Vault", "v").query("get_balance") == 70
        assert await system.ref("Caller", "c").ask("barrier") == ("left 70",)


async def test_a_rerun_after_a_crash_gets_the_recorded_answer(store_factory: StoreFactory) -> None:
    probe, clock = Probe(crashes_left=1), VirtualClock()
    probe.gate.set()
    async with system_of(store_factory(), probe, clock) as system:
        await system.ref("Vault", "v").ask("deposit", 100)
        out = await drive(clock, lambda: system.ref("Caller", "c").ask("withdraw_from", "v", 30))
        assert out.error is None
        assert out.value == "left 70"
        assert probe.calls["Caller/c.withdraw_from"] == 2  # crashed once, retried
        assert probe.answers == ["left 70", "left 70"]  # not "left 40": the answer was replayed
        assert probe.calls["Vault/v.withdraw"] == 1  # the callee saw the call once
        assert await event_count(system, "Vault", "v") == 2  # the deposit and one withdrawal
        assert await system.ref("Vault", "v").query("get_balance") == 70


async def test_a_rejection_from_the_callee_arrives_as_its_own_subclass_also_on_replay(
    store_factory: StoreFactory,
) -> None:
    probe, clock = Probe(crashes_left=1), VirtualClock()
    probe.gate.set()
    async with system_of(store_factory(), probe, clock) as system:
        await system.ref("Vault", "v").ask("deposit", 10)
        out = await drive(clock, lambda: system.ref("Caller", "c").ask("withdraw_from", "v", 30))
        assert out.error is None
        expected = "InsufficientFunds: v has 10, not 30"
        assert out.value == expected
        assert probe.answers == [expected, expected]
        assert probe.calls["Vault/v.withdraw"] == 1
        assert await system.ref("Vault", "v").query("get_balance") == 10


async def test_an_ask_rejection_reaches_an_outside_caller_unchanged(store_factory: StoreFactory) -> None:
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        with pytest.raises(Refused, match="refuses 'refuse-me'"):
            await system.ref("Box", "b").ask("note", "refuse-me")


async def test_an_ask_is_replayed_after_a_restart(store_factory: StoreFactory) -> None:
    """The caller's handler stops (system closed) after its ask was answered; on restart its
    signal resumes from the inbox and gets the recorded answer; the callee is not asked again."""
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        await system.ref("Vault", "v").ask("deposit", 100)
        await system.ref("Caller", "c").tell("withdraw_from", "v", 30)
        with anyio.fail_after(5):
            await probe.reached.wait()
        assert await system.ref("Vault", "v").query("get_balance") == 70
        # the answer is journaled under the caller's signal, which waits in the inbox
        [signal_id] = [s.signal_id for s in await inbox_of(system.store, "Caller")]
        journal = await system.store.read_journal("Caller", "c", signal_id)
        assert [(e.step, e.kind, e.name, e.result) for e in journal] == [
            (1, "ask", "Vault/v.withdraw", '{"ok":70}')
        ]
        # leaving the block stops the system with the caller's handler still waiting
    probe.gate.set()
    async with system_of(store_factory(), probe, clock) as system:
        assert await system.ref("Caller", "c").ask("barrier") == ("left 70",)
        assert probe.answers == ["left 70", "left 70"]
        assert probe.calls["Vault/v.withdraw"] == 1
        assert await system.ref("Vault", "v").query("get_balance") == 70
        assert await event_count(system, "Vault", "v") == 2


async def test_an_ask_of_a_handler_without_result_is_journaled_and_replayed(
    store_factory: StoreFactory,
) -> None:
    probe, clock = Probe(crashes_left=1), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        out = await drive(clock, lambda: system.ref("Node", "n").ask("wipe_box", "b"))
        assert out.error is None
        assert out.value == "None"
        assert probe.calls["Box/b.wipe"] == 1
        # an outside keyed repeat returns the recorded None as well
        box = system.ref("Box", "b").options(key="wipe-1")
        assert await box.ask("wipe") is None
        assert await box.ask("wipe") is None
        assert probe.calls["Box/b.wipe"] == 2
        assert await system.ref("Box", "b").query("get_notes") == ("", "")


# ---------------------------------------------------------------- deadlocks


async def test_a_chain_of_asks_without_a_cycle_works(store_factory: StoreFactory) -> None:
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        assert await system.ref("Node", "a").ask("relay", ("b", "c", "d")) == "a>b>c>d"
        # a diamond is no cycle: a waits on b and c, both wait on d
        assert await system.ref("Node", "a").ask("fan", "b", "c", "d") == ["b>d", "c>d"]
        assert await system.dead_letters() == []


async def test_a_two_entity_ask_cycle_is_named_and_dead_lettered_at_once(store_factory: StoreFactory) -> None:
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        with anyio.fail_after(10):  # a silent deadlock would hang here
            out = await drive(clock, lambda: system.ref("Node", "A").ask("relay", ("B", "A")))
        assert isinstance(out.error, HandlerFailed)
        text = str(out.error)
        assert "cycle" in text
        assert "Node/A" in text
        assert "Node/B" in text
        # B's ask closed the cycle: its DeadlockError was dead-lettered on the first attempt
        assert probe.calls["Node/B.relay"] == 1
        dead = {d.signal.entity_id: d for d in await system.dead_letters()}
        assert dead["B"].attempts == 1
        assert dead["B"].error.startswith("DeadlockError(")
        assert "Node/B -> Node/A -> Node/B" in dead["B"].error
        # the nodes are free again
        assert await system.ref("Node", "B").ask("relay", ("A",)) == "B>A"


async def test_a_three_entity_ask_cycle_is_named(store_factory: StoreFactory) -> None:
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        with anyio.fail_after(10):
            out = await drive(clock, lambda: system.ref("Node", "A").ask("relay", ("B", "C", "A")))
        assert isinstance(out.error, HandlerFailed)
        text = str(out.error)
        assert "cycle" in text
        for node in ("Node/A", "Node/B", "Node/C"):
            assert node in text
        dead = {d.signal.entity_id: d for d in await system.dead_letters()}
        assert dead["C"].attempts == 1
        assert "Node/C -> Node/A -> Node/B -> Node/C" in dead["C"].error
        assert probe.calls["Node/C.relay"] == 1


async def test_a_cycle_between_two_outside_calls_is_broken(store_factory: StoreFactory) -> None:
    """A (asked from outside) asks B while B (asked from outside) asks A: one of the two
    fails naming the cycle, the other completes; neither hangs."""
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                outs = [Outcome(), Outcome()]
                tg.start_soon(outs[0].capture, lambda: system.ref("Node", "A").ask("relay", ("B",)))
                tg.start_soon(outs[1].capture, lambda: system.ref("Node", "B").ask("relay", ("A",)))
                while not all(o.done.is_set() for o in outs):
                    await clock.advance(SECOND)
        errors = [o.error for o in outs if o.error is not None]
        values = [o.value for o in outs if o.error is None]
        assert len(errors) == 1
        assert values in (["A>B"], ["B>A"])
        assert isinstance(errors[0], HandlerFailed)
        assert "cycle" in str(errors[0])
        assert "Node/A" in str(errors[0])
        assert "Node/B" in str(errors[0])


async def test_a_deadlock_error_is_not_retried(store_factory: StoreFactory) -> None:
    """Even with many attempts allowed, the handler that closed the cycle runs once."""
    probe, clock = Probe(), VirtualClock()
    policy = SupervisorPolicy(max_attempts=10)
    async with system_of(store_factory(), probe, clock, supervision=policy) as system:
        out = await drive(clock, lambda: system.ref("Node", "A").ask("relay", ("B", "A")))
        assert isinstance(out.error, HandlerFailed)
        assert probe.calls["Node/B.relay"] == 1
        assert [d.attempts for d in await system.dead_letters() if d.signal.entity_id == "B"] == [1]
        assert DeadlockError.__name__ in str(out.error)


async def test_an_ask_to_itself_raises_invalid_arguments_in_the_handler(store_factory: StoreFactory) -> None:
    probe, clock = Probe(), VirtualClock()
    async with system_of(store_factory(), probe, clock) as system:
        with anyio.fail_after(5):
            answer = await system.ref("Node", "n").ask("ask_self")
        assert answer.startswith("InvalidArguments: ")
        assert "Node/n asks itself" in answer
        assert "Node/n.relay" not in probe.calls
        assert await system.dead_letters() == []
