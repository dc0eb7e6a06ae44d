"""The Store contract as a reusable pytest suite: subclass :class:`StoreContract`.

Every test states what a store must do in terms of the protocol alone, so any store
(ours or a third party's) proves itself by subclassing :class:`StoreContract` in a
test module and giving the ``make_store`` fixture::

    class TestMyStore(StoreContract):
        @pytest.fixture
        def make_store(self, tmp_path):
            return lambda: MyStore(tmp_path / "db")

``make_store`` returns a factory that gives the *same* store again on each call (a
reopen simulates a restart). Positions, outbox ids and dead-letter ids are opaque:
the suite checks only their order, never their values. Needs pytest and anyio's
pytest plugin (``-p anyio``) with an ``anyio_backend`` fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import anyio
import pytest

from persistence.errors import ActorsError, InvalidWrite, ShardLost, SignalTaken, StoreError
from persistence.store import (
    Accept,
    Accepted,
    Commit,
    Committed,
    DeadLetter,
    Duplicate,
    FireTimer,
    InboxEntry,
    Journal,
    JournalEntry,
    NewEvent,
    OutboxEntry,
    ProcessedMark,
    Prune,
    Pruned,
    ReadsMarks,
    Requeue,
    SaveSnapshot,
    ShardRecord,
    SharedStore,
    SignalRecord,
    SnapshotRecord,
    Store,
    StoredEvent,
    TakeOutbox,
    TimerRecord,
    Write,
    replace,
    shard_of,
)

StoreFactory = Callable[[], Store]
"""Gives the same store on each call (closed; the suite opens it)."""

T = "Account"
"""The entity type most tests use."""
ENTITIES = [(T, "alice"), (T, "bob"), ("Other", "alice")]
SIGNAL_IDS = ["s1", "s2", "s3", "s4", "s5", "t1", "m1", "m2"]
BIG = 10_000


# ---------------------------------------------------------------- helpers


def sig(
    signal_id: str,
    entity_id: str = "alice",
    *,
    entity_type: str = T,
    handler: str = "deposit",
    args: str = '{"amount":1}',
    fingerprint: str | None = None,
    at: float = 100.0,
    trace: str | None = None,
) -> SignalRecord:
    return SignalRecord(
        entity_type=entity_type,
        entity_id=entity_id,
        signal_id=signal_id,
        handler=handler,
        args=args,
        fingerprint=fingerprint if fingerprint is not None else f"fp-{signal_id}-{args}",
        accepted_at=at,
        trace=trace,
    )


def traceparent(n: int) -> str:
    """A distinct W3C ``traceparent`` (the stores keep it as opaque text)."""
    return f"00-{n:032x}-{n:016x}-01"


def ev(n: int) -> NewEvent:
    return NewEvent("bank.Deposited", 1, f'{{"amount":{n}}}')


def commit(s: SignalRecord, first_seq: int = 1, *events: NewEvent, **kw: object) -> Commit:
    """A Commit of signal ``s`` on its own entity (keyword fields passed through); it
    takes ``s`` from the inbox (``from_inbox``) only when asked to: most tests commit
    signals they never accepted, which a store refuses to take (``SignalTaken``)."""
    kw.setdefault("from_inbox", False)
    return Commit(
        entity_type=s.entity_type,
        entity_id=s.entity_id,
        signal=s,
        outcome=kw.pop("outcome", '{"ok":null}'),  # type: ignore[arg-type]
        first_seq=first_seq,
        events=events,
        recorded_at=kw.pop("recorded_at", 200.0),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def timer(key: str, due: float, entity_id: str = "alice", **kw: object) -> TimerRecord:
    return TimerRecord(T, entity_id, key, "expire", f'{{"key":"{key}"}}', due, **kw)  # type: ignore[arg-type]


def snap(seq: int, entity_id: str = "alice", schema: str = "v1") -> SnapshotRecord:
    return SnapshotRecord(T, entity_id, seq, schema, f'{{"balance":{seq}}}', 300.0 + seq)


def step(invocation_id: str, n: int, result: str = '{"ok":1}', entity_id: str = "alice") -> JournalEntry:
    return JournalEntry(T, entity_id, invocation_id, n, "activity", "charge", result, 400.0 + n)


async def inbox(store: Store) -> list[SignalRecord]:
    return [e.signal for e in await store.read_inbox(after=0, limit=BIG)]


async def dump(store: Store) -> dict[str, object]:
    """Everything the read methods show for the entities and ids the tests use."""
    out: dict[str, object] = {
        "inbox": await store.read_inbox(after=0, limit=BIG),
        "dead": await store.read_dead_letters(limit=BIG),
        "timers": await store.read_timers(limit=BIG),
        "outbox": await store.read_outbox(after=0, limit=BIG),
    }
    for et, eid in ENTITIES:
        out[f"events {et}/{eid}"] = await store.read_events(et, eid, after=0, limit=BIG)
        out[f"last {et}/{eid}"] = await store.last_seq(et, eid)
        out[f"snapshots {et}/{eid}"] = await store.read_snapshots(et, eid)
        for sid in SIGNAL_IDS:
            out[f"mark {et}/{eid}/{sid}"] = await store.read_mark(et, eid, sid)
            out[f"journal {et}/{eid}/{sid}"] = await store.read_journal(et, eid, sid)
    return out


async def populate(store: Store) -> None:
    """Put something in every table."""
    s1, s2, s3 = sig("s1"), sig("s2", trace=traceparent(2)), sig("s3", "bob", trace=traceparent(3))
    await store.write([Accept(s1), Accept(s2), Accept(s3)])
    await store.write(
        [
            commit(
                s1,
                1,
                ev(1),
                ev(2),
                set_timers=(timer("t1", 50.0, trace=traceparent(4)), timer("t2", 60.0, every=5.0)),
                outbox=(sig("m1", "bob", trace=traceparent(5)),),
                from_inbox=True,
            ),
            commit(s3, 1, ev(3), dead_letter=("boom", "Traceback...", 3), from_inbox=True),
            SaveSnapshot(snap(2)),
            Journal(step("s2", 0), inbox=s2),
        ]
    )


async def assert_unchanged(store: Store, before: dict[str, object]) -> None:
    after = await dump(store)
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}


class StoreContract:
    """The contract every Store must meet; subclass it and give a ``make_store`` fixture."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    @pytest.fixture
    def make_store(self) -> StoreFactory:
        """Override: a factory giving the same (closed) store on each call."""
        raise NotImplementedError("a StoreContract subclass must define the make_store fixture")

    @pytest.fixture
    async def store(self, make_store: StoreFactory) -> AsyncIterator[Store]:
        """The store, open for the test."""
        async with make_store() as s:
            yield s

    # ---------------------------------------------------------------- lifecycle

    async def test_a_new_store_is_empty(self, store: Store) -> None:
        assert await store.read_inbox(after=0, limit=BIG) == []
        assert await store.read_dead_letters(limit=BIG) == []
        assert await store.read_timers(limit=BIG) == []
        assert await store.read_outbox(after=0, limit=BIG) == []
        assert await store.read_events(T, "alice", after=0, limit=BIG) == []
        assert await store.last_seq(T, "alice") == 0
        assert await store.read_snapshots(T, "alice") == []
        assert await store.read_mark(T, "alice", "s1") is None
        assert await store.read_journal(T, "alice", "s1") == []

    async def test_store_satisfies_the_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)

    async def test_empty_batch_returns_no_results(self, store: Store) -> None:
        assert await store.write([]) == []
        assert await store.read_inbox(after=0, limit=BIG) == []

    async def test_a_closed_store_refuses_reads_and_writes(self, make_store: StoreFactory) -> None:
        s = make_store()
        with pytest.raises(StoreError):
            await s.write([Accept(sig("s1"))])
        with pytest.raises(StoreError):
            await s.read_inbox(after=0, limit=10)
        async with s:
            pass
        with pytest.raises(StoreError):
            await s.write([Accept(sig("s1"))])
        with pytest.raises(StoreError):
            await s.last_seq(T, "alice")

    async def test_opening_an_open_store_again_fails(self, store: Store) -> None:
        with pytest.raises(StoreError, match="already open"):
            await store.__aenter__()
        assert await store.write([Accept(sig("s1"))]) == [Accepted()]

    async def test_data_survives_close_and_reopen(self, make_store: StoreFactory) -> None:
        async with make_store() as s:
            await populate(s)
            before = await dump(s)
        async with make_store() as s:
            await assert_unchanged(s, before)
            # and the reopened store carries on where it was
            assert await s.write([commit(sig("s4"), 3, ev(4))]) == [Committed()]
            assert await s.last_seq(T, "alice") == 3
        async with make_store() as s:
            assert [e.seq for e in await s.read_events(T, "alice", after=0, limit=BIG)] == [1, 2, 3]

    async def test_populate_fills_every_table(self, store: Store) -> None:
        """Guards the atomicity and reopen tests: they compare something, not nothing."""
        await populate(store)
        d = await dump(store)
        for key in ("inbox", "dead", "timers", "outbox"):
            assert d[key], key
        assert d[f"events {T}/alice"]
        assert d[f"snapshots {T}/alice"]
        assert d[f"mark {T}/alice/s1"] is not None
        assert d[f"journal {T}/alice/s2"]

    # ---------------------------------------------------------------- trace context

    async def test_accept_keeps_the_trace_of_each_signal(self, store: Store) -> None:
        s1, s2 = sig("s1", trace=traceparent(1)), sig("s2")
        await store.write([Accept(s1), Accept(s2)])
        assert [s.trace for s in await inbox(store)] == [traceparent(1), None]
        assert await inbox(store) == [s1, s2]

    async def test_the_trace_is_not_part_of_a_signals_identity(self, store: Store) -> None:
        s = sig("s1", trace=traceparent(1))
        await store.write([Accept(s)])
        again = replace(s, trace=traceparent(2))
        assert await store.write([Accept(again)]) == [Duplicate(s.fingerprint, None)]
        assert await inbox(store) == [s]  # the first one's trace stays

    async def test_the_outbox_keeps_the_trace(self, store: Store) -> None:
        m1, m2 = sig("m1", "bob", trace=traceparent(1)), sig("m2", "bob")
        [result] = await store.write([commit(sig("s1"), outbox=(m1, m2))])
        assert isinstance(result, Committed)
        outbox = await store.read_outbox(after=0, limit=BIG)
        assert [(e.signal.signal_id, e.signal.trace) for e in outbox] == [
            ("m1", traceparent(1)),
            ("m2", None),
        ]
        # and delivery carries it to the target's inbox
        assert await store.write([TakeOutbox(result.outbox_ids[0], Accept(m1))]) == [Accepted()]
        assert [s.trace for s in await inbox(store)] == [traceparent(1)]

    async def test_a_journal_inbox_signal_keeps_the_trace(self, store: Store) -> None:
        s = sig("s1", trace=traceparent(7))
        await store.write([Journal(step("s1", 0), inbox=s)])
        assert [x.trace for x in await inbox(store)] == [traceparent(7)]

    async def test_a_dead_letter_keeps_the_trace_and_requeue_returns_it(self, store: Store) -> None:
        s1, s2 = sig("s1", trace=traceparent(1)), sig("s2", "bob")
        await store.write([Accept(s1), Accept(s2)])
        await store.write(
            [
                commit(s1, dead_letter=("boom", "tb", 3), from_inbox=True),
                commit(s2, dead_letter=("x", "tb", 1), from_inbox=True),
            ]
        )
        dead = await store.read_dead_letters(limit=BIG)
        assert [d.signal.trace for d in dead] == [traceparent(1), None]
        assert [d.signal for d in dead] == [s1, s2]
        await store.write([Requeue(dead[0].id)])
        assert await inbox(store) == [s1]

    async def test_timers_keep_the_trace_and_fire_without_it_in_their_identity(self, store: Store) -> None:
        t, plain = timer("t1", 50.0, trace=traceparent(1)), timer("t2", 60.0)
        await store.write([commit(sig("s1"), set_timers=(t, plain))])
        assert await store.read_timers(limit=BIG) == [t, plain]
        # replacing a timer replaces its trace too
        t2 = timer("t1", 55.0, trace=traceparent(2))
        await store.write([commit(sig("s2"), set_timers=(t2,))])
        assert await store.read_timers(limit=BIG) == [t2, plain]
        fired = sig("t1", handler="expire", at=55.0, trace=t2.trace)
        assert await store.write([FireTimer(t2, fired)]) == [Accepted()]
        assert await inbox(store) == [fired]
        # a fire matches the stored timer whatever trace the record it names carries
        fired2 = sig("t2", handler="expire", at=60.0)
        other_trace = replace(plain, trace=traceparent(9))
        assert await store.write([FireTimer(other_trace, fired2)]) == [Accepted()]
        assert await store.read_timers(limit=BIG) == []

    # ---------------------------------------------------------------- Accept

    async def test_accept_puts_signals_in_the_inbox_in_order(self, store: Store) -> None:
        s1, s2, s3 = sig("s1"), sig("s2", "bob"), sig("s3")
        assert await store.write([Accept(s1), Accept(s2)]) == [Accepted(), Accepted()]
        assert await store.write([Accept(s3)]) == [Accepted()]
        entries = await store.read_inbox(after=0, limit=BIG)
        assert [e.signal for e in entries] == [s1, s2, s3]
        positions = [e.position for e in entries]
        assert positions == sorted(positions)
        assert len(set(positions)) == 3

    async def test_accept_of_a_pending_id_is_a_duplicate(self, store: Store) -> None:
        first = sig("s1", args='{"amount":1}')
        again = sig("s1", args='{"amount":2}', at=150.0)
        assert await store.write([Accept(first)]) == [Accepted()]
        assert await store.write([Accept(again)]) == [Duplicate(first.fingerprint, None)]
        assert await inbox(store) == [first]

    async def test_accept_of_a_processed_id_is_a_duplicate_with_its_mark(self, store: Store) -> None:
        s = sig("s1")
        await store.write([Accept(s)])
        await store.write([commit(s, 1, ev(1), outcome='{"ok":5}', recorded_at=250.0, from_inbox=True)])
        result = await store.write([Accept(sig("s1", args='{"amount":9}'))])
        assert result == [Duplicate(s.fingerprint, ProcessedMark("s1", s.fingerprint, '{"ok":5}', 250.0))]
        assert await inbox(store) == []

    async def test_accept_twice_in_one_batch_is_a_duplicate(self, store: Store) -> None:
        s = sig("s1")
        result = await store.write([Accept(s), Accept(sig("s1", args="{}"))])
        assert result == [Accepted(), Duplicate(s.fingerprint, None)]
        assert await inbox(store) == [s]

    async def test_accept_after_commit_in_one_batch_sees_the_mark(self, store: Store) -> None:
        s = sig("s1")
        await store.write([Accept(s)])
        result = await store.write([commit(s, 1, recorded_at=7.0, from_inbox=True), Accept(s)])
        assert result == [
            Committed(),
            Duplicate(s.fingerprint, ProcessedMark("s1", s.fingerprint, '{"ok":null}', 7.0)),
        ]
        assert await inbox(store) == []

    async def test_signal_ids_are_scoped_to_their_entity(self, store: Store) -> None:
        a, b, c = sig("s1"), sig("s1", "bob"), sig("s1", entity_type="Other")
        assert await store.write([Accept(a), Accept(b), Accept(c)]) == [Accepted()] * 3
        assert await inbox(store) == [a, b, c]

    async def test_accept_without_check_skips_the_processed_lookup(self, store: Store) -> None:
        """check_duplicate=False trusts the caller: a processed id is not looked up."""
        s = sig("s1")
        await store.write([commit(s, from_inbox=False)])
        assert await store.write([Accept(s, check_duplicate=False)]) == [Accepted()]
        assert await inbox(store) == [s]

    async def test_accept_without_check_of_a_pending_id_fails_and_keeps_nothing(self, store: Store) -> None:
        """The inbox stays unique on (type, id, signal id) even when the lookup is skipped."""
        s = sig("s1")
        await store.write([Accept(s)])
        before = await dump(store)
        with pytest.raises(StoreError):
            await store.write([Accept(sig("s2")), Accept(sig("s1", args="{}"), check_duplicate=False)])
        await assert_unchanged(store, before)
        with pytest.raises(StoreError):
            await store.write(
                [Accept(sig("s3"), check_duplicate=False), Accept(sig("s3"), check_duplicate=False)]
            )
        await assert_unchanged(store, before)

    # ---------------------------------------------------------------- Commit

    async def test_commit_appends_events_marks_and_takes_from_the_inbox(self, store: Store) -> None:
        s, other = sig("s1"), sig("s2")
        await store.write([Accept(s), Accept(other)])
        result = await store.write(
            [commit(s, 1, ev(1), ev(2), outcome='{"ok":3}', recorded_at=210.0, from_inbox=True)]
        )
        assert result == [Committed(())]
        assert await store.read_events(T, "alice", after=0, limit=BIG) == [
            StoredEvent(1, "bank.Deposited", 1, '{"amount":1}', 210.0),
            StoredEvent(2, "bank.Deposited", 1, '{"amount":2}', 210.0),
        ]
        assert await store.last_seq(T, "alice") == 2
        assert await store.read_mark(T, "alice", "s1") == ProcessedMark(
            "s1", s.fingerprint, '{"ok":3}', 210.0
        )
        assert await inbox(store) == [other]
        # nothing leaked onto other entities
        assert await store.last_seq(T, "bob") == 0
        assert await store.read_mark(T, "bob", "s1") is None

    async def test_commit_continues_the_log(self, store: Store) -> None:
        await store.write([commit(sig("s1"), 1, ev(1), ev(2))])
        await store.write([commit(sig("s2"), 3, ev(3)), commit(sig("s3"), 4, ev(4), ev(5))])
        events = await store.read_events(T, "alice", after=0, limit=BIG)
        assert [(e.seq, e.data) for e in events] == [(i, f'{{"amount":{i}}}') for i in range(1, 6)]
        assert await store.last_seq(T, "alice") == 5

    async def test_commit_without_events_keeps_the_log(self, store: Store) -> None:
        await store.write([commit(sig("s1"), 1, ev(1))])
        assert await store.write([commit(sig("s2"), 2, outcome='{"rejected":1}')]) == [Committed()]
        assert await store.last_seq(T, "alice") == 1
        mark = await store.read_mark(T, "alice", "s2")
        assert mark is not None
        assert mark.outcome == '{"rejected":1}'

    @pytest.mark.parametrize("first_seq", [1, 2, 4, 0])
    async def test_commit_at_a_wrong_sequence_fails_and_keeps_nothing(
        self, store: Store, first_seq: int
    ) -> None:
        """The log is contiguous from 1: overlapping or leaving a gap is a conflict."""
        await store.write([commit(sig("s1"), 1, ev(1), ev(2))])
        before = await dump(store)
        with pytest.raises(StoreError):
            await store.write([commit(sig("s2"), first_seq, ev(9))])
        await assert_unchanged(store, before)

    async def test_log_is_unique_per_type_id_and_seq(self, store: Store) -> None:
        """The same seq on other entities is fine; twice on one entity, even in one batch, is not."""
        result = await store.write(
            [
                commit(sig("s1"), 1, ev(1)),
                commit(sig("s1", "bob"), 1, ev(2)),
                commit(sig("s1", entity_type="Other"), 1, ev(3)),
            ]
        )
        assert result == [Committed()] * 3
        for (et, eid), n in zip(ENTITIES, [1, 2, 3], strict=True):
            assert [(e.seq, e.data) for e in await store.read_events(et, eid, after=0, limit=BIG)] == [
                (1, f'{{"amount":{n}}}')
            ]
        before = await dump(store)
        with pytest.raises(StoreError):
            await store.write([commit(sig("s2"), 2, ev(4)), commit(sig("s3"), 2, ev(5))])
        await assert_unchanged(store, before)

    async def test_commit_of_an_already_processed_signal_fails(self, store: Store) -> None:
        s = sig("s1")
        await store.write([commit(s, 1, ev(1))])
        before = await dump(store)
        with pytest.raises(StoreError):
            await store.write([commit(s, 2, ev(2))])
        await assert_unchanged(store, before)
        with pytest.raises(StoreError):
            await store.write([commit(sig("s2"), 2), commit(sig("s2"), 2)])
        await assert_unchanged(store, before)

    async def test_read_marks_reads_many_marks_at_once(self, store: Store) -> None:
        if not hasattr(store, "read_marks"):
            pytest.skip("this store reads one mark at a time (read_marks is optional)")
        reads: ReadsMarks = store  # type: ignore[assignment]
        done = [sig(f"s{i}", f"e{i % 7}") for i in range(350)]  # more than one chunk of 300
        await store.write([commit(s, i // 7 + 1, ev(i)) for i, s in enumerate(done)])
        await store.write([commit(sig("open", "e1"), 51, ev(0), mark=False)])  # no mark
        keys = [(T, s.entity_id, s.signal_id) for s in done]
        missing = [(T, "e1", "open"), (T, "nobody", "s1"), ("Other", "e0", "s0"), (T, "e0", "s1")]
        got = await reads.read_marks([*keys, *missing, keys[0]])  # a key twice: one entry
        assert set(got) == set(keys)
        for s in done:
            mark = got[(T, s.entity_id, s.signal_id)]
            assert mark == await store.read_mark(T, s.entity_id, s.signal_id)
            assert mark is not None
            assert mark.fingerprint == s.fingerprint
        assert await reads.read_marks([]) == {}
        now = getattr(store, "read_marks_now", None)
        if now is not None:  # at once, where the store can: the same answer, or None
            for chunk in (keys[:300], [*missing, keys[5]], []):
                got_now = now(chunk)
                assert got_now is None or got_now == {k: got[k] for k in chunk if k in got}
        for bad in ("abc", [("a", "b")], [("a", "b", 3)], [["a", "b", "c"]], None):
            with pytest.raises(TypeError, match="read_marks keys"):
                await reads.read_marks(bad)  # type: ignore[arg-type]
        for odd in ("\ud800", "a\x00b"):  # text a store may not take: no mark, or a StoreError
            with contextlib.suppress(StoreError):
                assert await reads.read_marks([(T, "alice", odd)]) == {}

    async def test_commit_without_mark_leaves_the_id_reusable(self, store: Store) -> None:
        s = sig("s1")
        await store.write([Accept(s)])
        assert await store.write([commit(s, 1, ev(1), mark=False, from_inbox=True)]) == [Committed()]
        assert await store.read_mark(T, "alice", "s1") is None
        assert await inbox(store) == []
        assert await store.last_seq(T, "alice") == 1
        assert await store.write([Accept(s)]) == [Accepted()]
        # and a second unmarked commit of the same id is allowed
        assert await store.write([commit(s, 2, ev(2), mark=False, from_inbox=True)]) == [Committed()]
        assert await inbox(store) == []

    async def test_commit_not_from_inbox_leaves_the_inbox(self, store: Store) -> None:
        s = sig("s1")
        await store.write([Accept(s)])
        await store.write([commit(s, 1, ev(1), from_inbox=False)])
        assert await inbox(store) == [s]
        assert await store.read_mark(T, "alice", "s1") is not None

    async def test_commit_of_a_signal_never_in_the_inbox_is_refused(self, store: Store) -> None:
        """A commit that takes its signal from the inbox (``from_inbox``) proves there
        that the signal was not applied yet: one that is not there is refused, and the
        whole batch with it."""
        other = sig("s2", "bob")
        await store.write([Accept(other)])
        before = await dump(store)
        with pytest.raises(SignalTaken) as info:
            await store.write([commit(sig("s1"), 1, ev(1), mark=False, from_inbox=True)])
        assert info.value.signals == {(T, "alice", "s1")}
        with pytest.raises(SignalTaken):
            await store.write(
                [
                    commit(other, 1, ev(1), from_inbox=True),
                    commit(sig("s1"), 1, ev(1), mark=False, from_inbox=True),
                ]
            )
        await assert_unchanged(store, before)
        assert await store.write([commit(sig("s1"), 1, ev(1), mark=False, from_inbox=False)]) == [Committed()]

    async def test_an_unkeyed_signal_taken_twice_is_applied_once(self, store: Store) -> None:
        """Without a processed mark (an unkeyed signal), the inbox row alone stops a
        second run of the signal (an earlier commit landed though its answer was lost,
        or two members ran it) from appending its events again."""
        s = sig("s1")
        await store.write([Accept(s)])
        with pytest.raises(SignalTaken):  # twice in one batch: neither is written
            await store.write(
                [
                    commit(s, 1, ev(1), mark=False, from_inbox=True),
                    commit(s, 2, ev(1), mark=False, from_inbox=True),
                ]
            )
        assert await store.last_seq(T, "alice") == 0
        assert await inbox(store) == [s]
        assert await store.write([commit(s, 1, ev(1), mark=False, from_inbox=True)]) == [Committed()]
        before = await dump(store)
        with pytest.raises(SignalTaken) as info:
            await store.write([commit(s, 2, ev(1), mark=False, from_inbox=True)])
        assert info.value.signals == {(T, "alice", "s1")}
        with pytest.raises(SignalTaken):  # in a batch of several kinds of write too
            await store.write([Accept(sig("s9")), commit(s, 2, ev(1), mark=False, from_inbox=True)])
        await assert_unchanged(store, before)
        assert [e.seq for e in await store.read_events(T, "alice", after=0, limit=BIG)] == [1]

    async def test_commit_with_dead_letter_records_it(self, store: Store) -> None:
        s1, s2 = sig("s1"), sig("s2", "bob")
        await store.write([Accept(s1), Accept(s2)])
        await store.write(
            [
                commit(
                    s1,
                    dead_letter=("ValueError: boom", "Traceback (...)", 3),
                    recorded_at=220.0,
                    from_inbox=True,
                )
            ]
        )
        await store.write(
            [commit(s2, dead_letter=("KeyError", "tb2", 5), recorded_at=221.0, from_inbox=True)]
        )
        dead = await store.read_dead_letters(limit=BIG)
        assert [(d.signal, d.error, d.traceback, d.attempts, d.failed_at) for d in dead] == [
            (s1, "ValueError: boom", "Traceback (...)", 3, 220.0),
            (s2, "KeyError", "tb2", 5, 221.0),
        ]
        assert dead[0].id < dead[1].id
        assert await store.read_dead_letters(limit=1) == dead[:1]
        assert await inbox(store) == []
        assert await store.read_mark(T, "alice", "s1") == ProcessedMark(
            "s1", s1.fingerprint, '{"ok":null}', 220.0
        )

    async def test_commit_sets_and_cancels_timers(self, store: Store) -> None:
        a, b = timer("a", 30.0), timer("b", 10.0, every=2.5)
        bob = timer("a", 20.0, "bob")
        await store.write([commit(sig("s1"), set_timers=(a, b)), commit(sig("s1", "bob"), set_timers=(bob,))])
        assert await store.read_timers(limit=BIG) == [b, bob, a]
        # same key replaces; cancel removes only this entity's key
        a2 = timer("a", 40.0)
        await store.write([commit(sig("s2"), set_timers=(a2,), cancel_timers=("b", "missing"))])
        assert await store.read_timers(limit=BIG) == [bob, a2]
        await store.write([commit(sig("s3"), cancel_timers=("a",))])
        assert await store.read_timers(limit=BIG) == [bob]

    async def test_commit_set_then_cancel_of_one_key_cancels(self, store: Store) -> None:
        await store.write([commit(sig("s1"), set_timers=(timer("a", 5.0),), cancel_timers=("a",))])
        assert await store.read_timers(limit=BIG) == []

    async def test_read_timers_orders_filters_and_limits(self, store: Store) -> None:
        ts = [timer("c", 3.0), timer("a", 1.0), timer("b", 2.0), timer("z", 2.0, "bob")]
        await store.write(
            [commit(sig("s1"), set_timers=tuple(ts[:3])), commit(sig("s1", "bob"), set_timers=ts[3:])]
        )
        assert [t.key for t in await store.read_timers(limit=BIG)] == ["a", "b", "z", "c"]
        assert [t.key for t in await store.read_timers(limit=2)] == ["a", "b"]
        assert [t.key for t in await store.read_timers(limit=BIG, after_due=1.0)] == ["b", "z", "c"]
        assert [t.key for t in await store.read_timers(limit=BIG, after_due=3.0)] == []
        negative = timer("n", -1e9)
        await store.write([commit(sig("s2"), set_timers=(negative,))])
        assert (await store.read_timers(limit=1)) == [negative]

    async def test_commit_outbox_gets_ids_in_order(self, store: Store) -> None:
        m1, m2, m3 = sig("m1", "bob"), sig("m2", "bob", handler="credit"), sig("m1", entity_type="Other")
        r1 = await store.write([commit(sig("s1"), outbox=(m1, m2))])
        r2 = await store.write([commit(sig("s2"), outbox=(m3,))])
        assert isinstance(r1[0], Committed)
        assert isinstance(r2[0], Committed)
        ids = r1[0].outbox_ids + r2[0].outbox_ids
        assert len(ids) == 3
        assert list(ids) == sorted(set(ids))
        assert await store.read_outbox(after=0, limit=BIG) == [
            OutboxEntry(ids[0], m1),
            OutboxEntry(ids[1], m2),
            OutboxEntry(ids[2], m3),
        ]
        assert await store.read_outbox(after=ids[0], limit=BIG) == [
            OutboxEntry(ids[1], m2),
            OutboxEntry(ids[2], m3),
        ]
        assert await store.read_outbox(after=0, limit=1) == [OutboxEntry(ids[0], m1)]

    async def test_commit_has_journal_drops_that_invocation_only(self, store: Store) -> None:
        s1 = sig("s1")
        await store.write([Journal(step("s1", 0)), Journal(step("s1", 1)), Journal(step("s2", 0))])
        await store.write([commit(s1, has_journal=False)])
        assert len(await store.read_journal(T, "alice", "s1")) == 2
        await store.write([commit(sig("s1", "bob"), has_journal=True)])  # same id, other entity
        assert len(await store.read_journal(T, "alice", "s1")) == 2
        await store.write([commit(sig("s3"), has_journal=True)])  # no journal: fine
        await store.write([commit(sig("s1"), mark=False, has_journal=True)])
        assert await store.read_journal(T, "alice", "s1") == []
        assert await store.read_journal(T, "alice", "s2") == [step("s2", 0)]

    # ---------------------------------------------------------------- SaveSnapshot

    async def test_snapshots_keep_the_newest(self, store: Store) -> None:
        for seq in (10, 20, 30):
            assert await store.write([SaveSnapshot(snap(seq))]) == [None]
        assert await store.read_snapshots(T, "alice") == [snap(30), snap(20)]
        await store.write([SaveSnapshot(snap(40), keep=3)])
        assert await store.read_snapshots(T, "alice") == [snap(40), snap(30), snap(20)]
        await store.write([SaveSnapshot(snap(50), keep=1)])
        assert await store.read_snapshots(T, "alice") == [snap(50)]

    async def test_snapshot_keep_below_one_keeps_one(self, store: Store) -> None:
        await store.write([SaveSnapshot(snap(1)), SaveSnapshot(snap(2), keep=0)])
        assert await store.read_snapshots(T, "alice") == [snap(2)]

    async def test_snapshot_at_the_same_seq_replaces(self, store: Store) -> None:
        await store.write([SaveSnapshot(snap(10)), SaveSnapshot(snap(20))])
        await store.write([SaveSnapshot(snap(20, schema="v2"))])
        assert await store.read_snapshots(T, "alice") == [snap(20, schema="v2"), snap(10)]

    async def test_an_older_snapshot_does_not_push_out_newer_ones(self, store: Store) -> None:
        await store.write([SaveSnapshot(snap(20)), SaveSnapshot(snap(30))])
        await store.write([SaveSnapshot(snap(5))])
        assert await store.read_snapshots(T, "alice") == [snap(30), snap(20)]

    async def test_snapshots_are_per_entity(self, store: Store) -> None:
        await store.write(
            [SaveSnapshot(snap(1)), SaveSnapshot(snap(2, "bob")), SaveSnapshot(snap(3), keep=1)]
        )
        assert await store.read_snapshots(T, "alice") == [snap(3)]
        assert await store.read_snapshots(T, "bob") == [snap(2, "bob")]
        assert await store.read_snapshots("Other", "alice") == []

    # ---------------------------------------------------------------- Requeue

    async def test_requeue_moves_a_dead_letter_back_to_the_inbox(self, store: Store) -> None:
        s, later = sig("s1"), sig("s2")
        await store.write([Accept(s)])
        await store.write([commit(s, dead_letter=("boom", "tb", 3), from_inbox=True)])
        await store.write([Accept(later)])
        [dead] = await store.read_dead_letters(limit=BIG)
        assert await store.write([Requeue(dead.id)]) == [None]
        assert await store.read_dead_letters(limit=BIG) == []
        assert await store.read_mark(T, "alice", "s1") is None
        assert await inbox(store) == [later, s]  # at the back of the queue
        # it is pending again: a repeat is a duplicate without a mark
        assert await store.write([Accept(s)]) == [Duplicate(s.fingerprint, None)]
        # and it can be processed again
        assert await store.write([commit(s, 1, ev(1), from_inbox=True)]) == [Committed()]
        assert await inbox(store) == [later]

    async def test_requeue_of_an_unknown_id_fails_and_keeps_nothing(self, store: Store) -> None:
        await store.write([commit(sig("s1"), dead_letter=("boom", "tb", 3))])
        [dead] = await store.read_dead_letters(limit=BIG)
        before = await dump(store)
        with pytest.raises(StoreError, match="dead letter"):
            await store.write([Accept(sig("s2")), Requeue(dead.id + 1000)])
        await assert_unchanged(store, before)
        await store.write([Requeue(dead.id)])
        with pytest.raises(StoreError):
            await store.write([Requeue(dead.id)])

    # ---------------------------------------------------------------- Journal

    async def test_journal_records_steps_in_order(self, store: Store) -> None:
        assert await store.write([Journal(step("s1", 2)), Journal(step("s1", 0))]) == [None, None]
        await store.write([Journal(step("s1", 1)), Journal(step("s1", 0, "bob", entity_id="bob"))])
        assert await store.read_journal(T, "alice", "s1") == [step("s1", 0), step("s1", 1), step("s1", 2)]
        assert await store.read_journal(T, "bob", "s1") == [step("s1", 0, "bob", entity_id="bob")]
        assert await store.read_journal(T, "alice", "s2") == []
        assert await inbox(store) == []

    async def test_journal_same_step_replaces(self, store: Store) -> None:
        await store.write([Journal(step("s1", 0, '{"ok":1}'))])
        await store.write([Journal(step("s1", 0, '{"ok":2}'))])
        assert await store.read_journal(T, "alice", "s1") == [step("s1", 0, '{"ok":2}')]

    async def test_journal_with_inbox_makes_the_invocation_resumable(self, store: Store) -> None:
        s = sig("s1")
        assert await store.write([Journal(step("s1", 0), inbox=s)]) == [None]
        assert await inbox(store) == [s]
        # a second step with the same inbox signal does not queue it twice
        await store.write([Journal(step("s1", 1), inbox=s)])
        assert await inbox(store) == [s]
        assert len(await store.read_journal(T, "alice", "s1")) == 2

    # ---------------------------------------------------------------- FireTimer

    async def test_fire_timer_queues_its_signal_and_drops_it(self, store: Store) -> None:
        t, other = timer("t1", 50.0), timer("t2", 60.0)
        await store.write([commit(sig("s1"), set_timers=(t, other))])
        fired = sig("t1", handler="expire", at=50.0)
        assert await store.write([FireTimer(t, fired)]) == [Accepted()]
        assert await inbox(store) == [fired]
        assert await store.read_timers(limit=BIG) == [other]

    async def test_fire_timer_with_next_due_reschedules(self, store: Store) -> None:
        t = timer("t1", 50.0, every=10.0)
        await store.write([commit(sig("s1"), set_timers=(t,))])
        fired = sig("t1@50", handler="expire", at=50.0)
        assert await store.write([FireTimer(t, fired, next_due=60.0)]) == [Accepted()]
        assert await inbox(store) == [fired]
        assert await store.read_timers(limit=BIG) == [replace(t, due_at=60.0)]
        # the stale record no longer matches: firing it again does nothing
        stale = FireTimer(t, sig("t1@50b", handler="expire"), next_due=70.0)
        assert await store.write([stale]) == [None]
        assert await inbox(store) == [fired]
        assert await store.read_timers(limit=BIG) == [replace(t, due_at=60.0)]

    async def test_fire_of_a_replaced_timer_is_a_no_op(self, store: Store) -> None:
        t = timer("t1", 50.0)
        replaced = timer("t1", 80.0)
        await store.write([commit(sig("s1"), set_timers=(t,))])
        await store.write([commit(sig("s2"), set_timers=(replaced,))])
        assert await store.write([FireTimer(t, sig("t1", handler="expire"))]) == [None]
        assert await inbox(store) == []
        assert await store.read_timers(limit=BIG) == [replaced]
        # same due time, other arguments: also replaced
        other_args = replace(replaced, args='{"key":"changed"}')
        await store.write([commit(sig("s3"), set_timers=(other_args,))])
        assert await store.write([FireTimer(replaced, sig("t1", handler="expire"))]) == [None]
        assert await inbox(store) == []
        assert await store.read_timers(limit=BIG) == [other_args]

    async def test_fire_of_a_cancelled_timer_is_a_no_op(self, store: Store) -> None:
        t = timer("t1", 50.0)
        await store.write([commit(sig("s1"), set_timers=(t,))])
        await store.write([commit(sig("s2"), cancel_timers=("t1",))])
        assert await store.write([FireTimer(t, sig("t1", handler="expire"))]) == [None]
        assert await inbox(store) == []
        assert await store.read_timers(limit=BIG) == []

    async def test_fire_timer_whose_signal_is_pending_does_not_queue_it_twice(self, store: Store) -> None:
        t = timer("t1", 50.0)
        fired = sig("t1", handler="expire")
        await store.write([Accept(fired), commit(sig("s1"), set_timers=(t,))])
        assert await store.write([FireTimer(t, fired)]) == [Duplicate(fired.fingerprint, None)]
        assert await inbox(store) == [fired]
        assert await store.read_timers(limit=BIG) == []

    # ---------------------------------------------------------------- TakeOutbox

    async def test_take_outbox_delivers_and_drops_the_message(self, store: Store) -> None:
        m1, m2 = sig("m1", "bob"), sig("m2", "bob")
        [result] = await store.write([commit(sig("s1"), outbox=(m1, m2))])
        assert isinstance(result, Committed)
        id1, id2 = result.outbox_ids
        assert await store.write([TakeOutbox(id1, Accept(m1))]) == [Accepted()]
        assert await store.read_outbox(after=0, limit=BIG) == [OutboxEntry(id2, m2)]
        assert await inbox(store) == [m1]

    async def test_take_outbox_of_a_known_signal_reports_the_duplicate(self, store: Store) -> None:
        m1, m2 = sig("m1", "bob"), sig("m2", "bob")
        [result] = await store.write([commit(sig("s1"), outbox=(m1, m2))])
        assert isinstance(result, Committed)
        id1, id2 = result.outbox_ids
        await store.write([Accept(m1), commit(m2, recorded_at=9.0)])
        results = await store.write([TakeOutbox(id1, Accept(m1)), TakeOutbox(id2, Accept(m2))])
        assert results == [
            Duplicate(m1.fingerprint, None),
            Duplicate(m2.fingerprint, ProcessedMark("m2", m2.fingerprint, '{"ok":null}', 9.0)),
        ]
        assert await store.read_outbox(after=0, limit=BIG) == []
        assert await inbox(store) == [m1]

    async def test_take_outbox_twice_accepts_once(self, store: Store) -> None:
        m1 = sig("m1", "bob")
        [result] = await store.write([commit(sig("s1"), outbox=(m1,))])
        assert isinstance(result, Committed)
        [oid] = result.outbox_ids
        assert await store.write([TakeOutbox(oid, Accept(m1)), TakeOutbox(oid, Accept(m1))]) == [
            Accepted(),
            Duplicate(m1.fingerprint, None),
        ]
        assert await inbox(store) == [m1]

    # ---------------------------------------------------------------- Prune

    async def _processed(self, store: Store, *times: float) -> list[SignalRecord]:
        """Signals s1, s2... accepted and processed (marked) at ``times``."""
        signals = [sig(f"s{n}") for n in range(1, len(times) + 1)]
        await store.write([Accept(s) for s in signals])
        await store.write(
            [commit(s, recorded_at=t, from_inbox=True) for s, t in zip(signals, times, strict=True)]
        )
        return signals

    async def _dead(self, store: Store, *times: float) -> list[int]:
        """Dead letters (of signals d1, d2... of bob) failed at ``times``; their ids."""
        for n, t in enumerate(times, 1):
            await store.write([commit(sig(f"d{n}", "bob"), dead_letter=("boom", "tb", 3), recorded_at=t)])
        return [d.id for d in await store.read_dead_letters(limit=BIG)]

    async def test_prune_marks_by_age(self, store: Store) -> None:
        _, s2, _ = await self._processed(store, 100.0, 200.0, 300.0)
        assert await store.write([Prune(marks_before=200.0)]) == [Pruned(marks=1)]
        assert await store.read_mark(T, "alice", "s1") is None
        # the cutoff is strict: a mark made exactly at it is kept
        assert await store.read_mark(T, "alice", "s2") == ProcessedMark(
            "s2", s2.fingerprint, '{"ok":null}', 200.0
        )
        assert await store.write([Prune(marks_before=300.5)]) == [Pruned(marks=2)]
        for sid in ("s2", "s3"):
            assert await store.read_mark(T, "alice", sid) is None

    async def test_prune_marks_leaves_other_tables(self, store: Store) -> None:
        await populate(store)
        before = await dump(store)
        assert await store.write([Prune(marks_before=1e12)]) == [Pruned(marks=2)]
        after = await dump(store)
        gone = {k for k in before if before[k] != after[k]}
        assert gone == {f"mark {T}/alice/s1", f"mark {T}/bob/s3"}
        assert after[f"journal {T}/alice/s2"]  # s2 is pending: its journal stays

    async def test_prune_dead_letters_by_age(self, store: Store) -> None:
        ids = await self._dead(store, 10.0, 20.0, 30.0)
        assert await store.write([Prune(dead_letters_before=20.0)]) == [Pruned(dead_letters=1)]
        assert [d.id for d in await store.read_dead_letters(limit=BIG)] == ids[1:]
        assert await store.write([Prune(dead_letters_before=31.0)]) == [Pruned(dead_letters=2)]
        assert await store.read_dead_letters(limit=BIG) == []

    async def test_prune_dead_letters_by_count_keeps_the_newest(self, store: Store) -> None:
        ids = await self._dead(store, 40.0, 30.0, 20.0, 10.0)  # newest by order made, not by time
        assert await store.write([Prune(keep_dead_letters=2)]) == [Pruned(dead_letters=2)]
        assert [d.id for d in await store.read_dead_letters(limit=BIG)] == ids[2:]
        assert await store.write([Prune(keep_dead_letters=2)]) == [Pruned()]
        assert await store.write([Prune(keep_dead_letters=5)]) == [Pruned()]
        assert await store.write([Prune(keep_dead_letters=0)]) == [Pruned(dead_letters=2)]
        assert await store.read_dead_letters(limit=BIG) == []

    async def test_prune_by_age_and_count_removes_either(self, store: Store) -> None:
        ids = await self._dead(store, 10.0, 20.0, 30.0, 40.0)
        # age alone takes two, count alone one: together the union (two)
        assert await store.write([Prune(dead_letters_before=25.0, keep_dead_letters=3)]) == [
            Pruned(dead_letters=2)
        ]
        assert [d.id for d in await store.read_dead_letters(limit=BIG)] == ids[2:]
        # now count takes more than age
        assert await store.write([Prune(dead_letters_before=35.0, keep_dead_letters=0)]) == [
            Pruned(dead_letters=2)
        ]
        assert await store.read_dead_letters(limit=BIG) == []

    async def test_prune_every_kind_at_once_counts_each(self, store: Store) -> None:
        await self._processed(store, 100.0, 200.0)
        await self._dead(store, 10.0, 20.0, 30.0)  # three more marks (bob's), at 10, 20, 30
        await store.write([Journal(step("gone", 0)), Journal(step("gone", 1))])  # orphans, at 400, 401
        got = await store.write([Prune(marks_before=150.0, dead_letters_before=15.0, keep_dead_letters=1)])
        assert got == [Pruned(marks=4, dead_letters=2, journals=0)]
        got = await store.write([Prune(marks_before=401.0)])
        assert got == [Pruned(marks=1, dead_letters=0, journals=1)]
        assert await store.read_journal(T, "alice", "gone") == [step("gone", 1)]

    async def test_prune_with_nothing_to_prune(self, store: Store) -> None:
        assert await store.write(
            [Prune(marks_before=1e12, dead_letters_before=1e12, keep_dead_letters=0)]
        ) == [Pruned()]
        await populate(store)
        before = await dump(store)
        assert await store.write([Prune()]) == [Pruned()]  # nothing asked
        assert await store.write([Prune(marks_before=1.0, dead_letters_before=1.0, keep_dead_letters=9)]) == [
            Pruned()
        ]
        await assert_unchanged(store, before)

    async def test_prune_keeps_the_mark_of_a_signal_still_in_the_inbox(self, store: Store) -> None:
        s = sig("s1")
        await store.write([Accept(s)])
        await store.write([commit(s, from_inbox=False, recorded_at=10.0)])  # marked, still queued
        assert await store.write([Prune(marks_before=1e12)]) == [Pruned()]
        assert await store.read_mark(T, "alice", "s1") is not None
        assert await inbox(store) == [s]
        assert await store.write([Accept(s)]) == [
            Duplicate(s.fingerprint, ProcessedMark("s1", s.fingerprint, '{"ok":null}', 10.0))
        ]

    async def test_a_repeat_of_a_pruned_key_is_accepted_as_new(self, store: Store) -> None:
        [s] = await self._processed(store, 100.0)
        assert await store.write([Accept(s)]) == [
            Duplicate(s.fingerprint, ProcessedMark("s1", s.fingerprint, '{"ok":null}', 100.0))
        ]
        assert await store.write([Prune(marks_before=101.0)]) == [Pruned(marks=1)]
        assert await store.write([Accept(s)]) == [Accepted()]
        assert await inbox(store) == [s]
        assert await store.write([commit(s, recorded_at=500.0, from_inbox=True)]) == [Committed()]
        assert await store.read_mark(T, "alice", "s1") == ProcessedMark(
            "s1", s.fingerprint, '{"ok":null}', 500.0
        )

    async def test_prune_drops_orphaned_journals_only(self, store: Store) -> None:
        pending = sig("s2")
        await store.write(
            [
                Journal(step("s1", 0)),  # no inbox row: orphaned (at 400)
                Journal(step("s1", 0, entity_id="bob")),  # another entity's orphan
                Journal(step("s2", 0), inbox=pending),  # pending: resumable
                Journal(step("s2", 1)),
            ]
        )
        assert await store.write([Prune(marks_before=400.0)]) == [Pruned()]  # strict cutoff
        assert await store.write([Prune(marks_before=1e12)]) == [Pruned(journals=2)]
        assert await store.read_journal(T, "alice", "s1") == []
        assert await store.read_journal(T, "bob", "s1") == []
        assert await store.read_journal(T, "alice", "s2") == [step("s2", 0), step("s2", 1)]
        # a journal under the same invocation id of another entity does not protect it
        await store.write([Journal(step("s2", 0, entity_id="bob"))])
        assert await store.write([Prune(marks_before=1e12)]) == [Pruned(journals=1)]
        assert len(await store.read_journal(T, "alice", "s2")) == 2

    async def test_prune_sees_the_earlier_items_of_its_batch(self, store: Store) -> None:
        s, t = sig("s1"), sig("s2")
        results = await store.write(
            [
                Accept(s),
                commit(s, recorded_at=5.0, from_inbox=True),
                Accept(t),
                commit(t, from_inbox=False, recorded_at=5.0),
                Prune(marks_before=6.0),
                Accept(s),
            ]
        )
        assert results[4:] == [Pruned(marks=1), Accepted()]
        assert await inbox(store) == [t, s]

    async def test_a_failing_batch_undoes_its_prune(self, store: Store) -> None:
        await populate(store)
        await store.write([Journal(step("s5", 0))])  # an orphan
        before = await dump(store)
        with pytest.raises(StoreError):
            await store.write(
                [Prune(marks_before=1e12, dead_letters_before=1e12, keep_dead_letters=0), Requeue(424242)]
            )
        await assert_unchanged(store, before)
        assert await store.write([Prune(marks_before=1e12, keep_dead_letters=0)]) == [
            Pruned(marks=2, dead_letters=1, journals=1)
        ]

    async def test_pruned_rows_stay_gone_after_a_reopen(self, make_store: StoreFactory) -> None:
        async with make_store() as s:
            await populate(s)
            await s.write([Prune(marks_before=1e12, keep_dead_letters=0)])
            before = await dump(s)
        async with make_store() as s:
            await assert_unchanged(s, before)
            assert before[f"mark {T}/alice/s1"] is None
            assert before["dead"] == []

    async def test_prune_with_a_limit_takes_the_oldest_first(self, store: Store) -> None:
        await self._processed(store, 300.0, 100.0, 200.0)  # s1, s2, s3
        ids = await self._dead(store, 10.0, 20.0, 30.0)  # and bob's marks d1, d2, d3 at those times
        await store.write([Journal(step("gone", n)) for n in range(3)])  # orphans at 400, 401, 402
        every = Prune(marks_before=1e12, dead_letters_before=1e12, limit=2)
        assert await store.write([every]) == [Pruned(marks=2, dead_letters=2, journals=2)]
        marked = [
            sid
            for eid, sid in [
                ("alice", "s1"),
                ("alice", "s2"),
                ("alice", "s3"),
                ("bob", "d1"),
                ("bob", "d2"),
                ("bob", "d3"),
            ]
            if await store.read_mark(T, eid, sid) is not None
        ]
        assert marked == ["s1", "s2", "s3", "d3"]  # d1 and d2 were the oldest
        assert [d.id for d in await store.read_dead_letters(limit=BIG)] == ids[2:]
        assert await store.read_journal(T, "alice", "gone") == [step("gone", 2)]
        # repeating drains the rest, a limit at a time
        assert await store.write([every]) == [Pruned(marks=2, dead_letters=1, journals=1)]
        assert await store.write([every]) == [Pruned(marks=2)]
        assert await store.write([every]) == [Pruned()]
        assert await store.read_mark(T, "alice", "s1") is None

    async def test_prune_by_count_with_a_limit(self, store: Store) -> None:
        ids = await self._dead(store, 10.0, 20.0, 30.0, 40.0)
        assert await store.write([Prune(keep_dead_letters=1, limit=2)]) == [Pruned(dead_letters=2)]
        assert [d.id for d in await store.read_dead_letters(limit=BIG)] == ids[2:]

    @pytest.mark.parametrize(
        "kw",
        [
            {"marks_before": "yesterday"},
            {"marks_before": True},
            {"marks_before": float("nan")},
            {"marks_before": float("inf")},
            {"dead_letters_before": float("-inf")},
            {"dead_letters_before": b"1"},
            {"keep_dead_letters": -1},
            {"keep_dead_letters": 1.0},
            {"keep_dead_letters": False},
            {"keep_dead_letters": "10"},
            {"keep_dead_letters": 2**63},
            {"limit": 0},
            {"limit": -5},
            {"limit": 2.5},
        ],
    )
    async def test_prune_refuses_bad_arguments(self, store: Store, kw: dict[str, object]) -> None:
        await populate(store)
        before = await dump(store)
        with pytest.raises(InvalidWrite, match=next(iter(kw))) as info:
            Prune(**kw)  # type: ignore[arg-type]
        assert isinstance(info.value, ActorsError)
        assert isinstance(info.value, ValueError)
        await assert_unchanged(store, before)

    # ---------------------------------------------------------------- reads

    async def test_read_events_pages_by_after_and_limit(self, store: Store) -> None:
        await store.write([commit(sig("s1"), 1, *(ev(i) for i in range(1, 8)))])
        assert [e.seq for e in await store.read_events(T, "alice", after=0, limit=3)] == [1, 2, 3]
        assert [e.seq for e in await store.read_events(T, "alice", after=3, limit=3)] == [4, 5, 6]
        assert [e.seq for e in await store.read_events(T, "alice", after=6, limit=3)] == [7]
        assert await store.read_events(T, "alice", after=7, limit=3) == []
        assert await store.read_events(T, "alice", after=0, limit=0) == []
        assert await store.read_events(T, "bob", after=0, limit=3) == []

    async def test_read_inbox_pages_by_position(self, store: Store) -> None:
        signals = [sig(f"s{i}", "alice" if i % 2 else "bob") for i in range(1, 6)]
        await store.write([Accept(s) for s in signals])
        first = await store.read_inbox(after=0, limit=2)
        assert [e.signal for e in first] == signals[:2]
        rest = await store.read_inbox(after=first[-1].position, limit=BIG)
        assert [e.signal for e in rest] == signals[2:]
        assert await store.read_inbox(after=rest[-1].position, limit=BIG) == []
        assert all(isinstance(e, InboxEntry) for e in first + rest)

    async def test_read_mark_is_per_entity(self, store: Store) -> None:
        s = sig("s1", "bob")
        await store.write([commit(s, recorded_at=5.0)])
        assert await store.read_mark(T, "bob", "s1") == ProcessedMark("s1", s.fingerprint, '{"ok":null}', 5.0)
        assert await store.read_mark(T, "alice", "s1") is None
        assert await store.read_mark("Other", "bob", "s1") is None
        assert await store.read_mark(T, "bob", "s2") is None

    async def test_read_dead_letters_returns_whole_records(self, store: Store) -> None:
        s = sig("s1")
        await store.write([commit(s, dead_letter=("err", "tb", 2), recorded_at=3.5)])
        [d] = await store.read_dead_letters(limit=BIG)
        assert d == DeadLetter(d.id, s, "err", "tb", 2, 3.5)

    # ---------------------------------------------------------------- batches

    async def test_a_batch_of_every_kind_returns_one_result_per_item(self, store: Store) -> None:
        await store.write([commit(sig("s1"), dead_letter=("e", "tb", 1), set_timers=(timer("t1", 5.0),))])
        [dead] = await store.read_dead_letters(limit=BIG)
        m = sig("m1", "bob")
        [c] = await store.write([commit(sig("s2"), outbox=(m,))])
        assert isinstance(c, Committed)
        results = await store.write(
            [
                Accept(sig("s3")),
                commit(sig("s4"), 1, ev(1), outbox=(sig("m2", "bob"),)),
                SaveSnapshot(snap(1)),
                Requeue(dead.id),
                Journal(step("s5", 0)),
                FireTimer(timer("t1", 5.0), sig("t1", handler="expire")),
                TakeOutbox(c.outbox_ids[0], Accept(m)),
                Accept(sig("s3")),
            ]
        )
        assert len(results) == 8
        assert results[0] == Accepted()
        assert isinstance(results[1], Committed)
        assert len(results[1].outbox_ids) == 1
        assert results[2:5] == [None, None, None]
        assert results[5:] == [Accepted(), Accepted(), Duplicate(sig("s3").fingerprint, None)]
        assert [s.signal_id for s in await inbox(store)] == ["s3", "s1", "t1", "m1"]

    async def test_a_failing_batch_leaves_nothing(self, store: Store) -> None:
        """A Commit conflicting at the end undoes every earlier item of the batch."""
        await populate(store)
        [dead] = await store.read_dead_letters(limit=BIG)
        [out] = await store.read_outbox(after=0, limit=BIG)
        timers = await store.read_timers(limit=BIG)
        before = await dump(store)
        batch: list[Write] = [
            Accept(sig("s4")),
            Accept(sig("s5", "bob"), check_duplicate=False),
            commit(
                sig("s2"),
                3,
                ev(3),
                set_timers=(timer("t3", 1.0),),
                cancel_timers=("t1",),
                outbox=(sig("m2", "bob"),),
                has_journal=True,
                dead_letter=("x", "y", 1),
                from_inbox=True,
            ),
            SaveSnapshot(snap(3), keep=1),
            Requeue(dead.id),
            Journal(step("s4", 0), inbox=sig("s4", "bob")),
            FireTimer(timers[1], sig("t1", handler="expire"), next_due=99.0),
            TakeOutbox(out.id, Accept(out.signal)),
            commit(sig("s1", "bob"), 2, ev(5)),
            commit(sig("s3"), 3, ev(4)),  # alice's log ends at 3 now: conflict
        ]
        with pytest.raises(StoreError):
            await store.write(batch)
        await assert_unchanged(store, before)
        # the store is still usable, and the same batch minus the culprit goes through
        results = await store.write(batch[:-1])
        assert len(results) == len(batch) - 1
        assert await store.last_seq(T, "alice") == 3
        assert await store.last_seq(T, "bob") == 2
        assert [d.signal.signal_id for d in await store.read_dead_letters(limit=BIG)] == ["s2"]

    async def test_positions_keep_growing_after_a_failed_batch(self, store: Store) -> None:
        await store.write([Accept(sig("s1"))])
        with pytest.raises(StoreError):
            await store.write([Accept(sig("s2")), Requeue(424242)])
        await store.write([Accept(sig("s3"))])
        entries = await store.read_inbox(after=0, limit=BIG)
        assert [e.signal.signal_id for e in entries] == ["s1", "s3"]
        assert entries[0].position < entries[1].position

    async def test_concurrent_writes_are_all_applied(self, store: Store) -> None:
        """Writers in several tasks at once each get their own transaction."""
        n = 20

        async def one(i: int) -> None:
            s = sig(f"c{i}", f"e{i}")
            assert await store.write([Accept(s)]) == [Accepted()]
            assert await store.write([commit(s, 1, ev(i), ev(i + 1), from_inbox=True)]) == [Committed()]

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        for i in range(n):
            assert await store.last_seq(T, f"e{i}") == 2
            assert await store.read_mark(T, f"e{i}", f"c{i}") is not None
        assert await store.read_inbox(after=0, limit=BIG) == []


# ---------------------------------------------------------------- several members

SharedFactory = Callable[[], "SharedStore"]
"""Gives a new, closed connection to the same shared store on each call."""

SHARED_SHARDS = 16
"""The shard count the shared suite's factories must give their store."""


def in_shard(shard: int, count: int = SHARED_SHARDS, *, entity_type: str = T, start: int = 0) -> str:
    """An entity id of ``entity_type`` whose shard is ``shard`` (searched from ``start``)."""
    n = start
    while shard_of(entity_type, f"e{n}", count) != shard:
        n += 1
    return f"e{n}"


async def until(check: Callable[[], Awaitable[bool]], what: str, deadline: float = 10.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``deadline`` seconds."""
    with anyio.move_on_after(deadline):
        while not await check():  # noqa: ASYNC110 - polls another connection's view: no event to wait on
            await anyio.sleep(0.02)
        return
    raise AssertionError(f"not within {deadline:g} s: {what}")


class SharedStoreContract:
    """The contract of a store several members share (``SharedStore``): membership,
    claims with epochs, the fence and shard-filtered reads.

    Subclass it and give a ``make_shared`` fixture returning a factory of *new
    connections* to one store with :data:`SHARED_SHARDS` shards; set ``wakes = False``
    for a store whose ``subscribe`` never calls (members poll it).
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]
    wakes: ClassVar[bool] = True

    @pytest.fixture
    def make_shared(self) -> SharedFactory:
        """Override: a factory of new (closed) connections to one shared store."""
        raise NotImplementedError("a SharedStoreContract subclass must define make_shared")

    async def test_a_new_store_has_free_shards_at_epoch_zero(self, make_shared: SharedFactory) -> None:
        async with make_shared() as a:
            assert isinstance(a, SharedStore)
            assert a.shard_count == SHARED_SHARDS
            assert await a.shard_map() == [ShardRecord(i, None, 0) for i in range(SHARED_SHARDS)]
            assert await a.members() == []

    async def test_join_heartbeat_and_members(self, make_shared: SharedFactory) -> None:
        async with make_shared() as a, make_shared() as b:
            await a.join("m-a", "alpha", serves=True, ttl=10.0)
            await b.join("m-b", "beta", serves=False, ttl=5.0)
            assert await a.heartbeat("m-a") is True
            assert await b.heartbeat("nobody") is False
            ms = {m.member_id: m for m in await b.members()}
            assert set(ms) == {"m-a", "m-b"}
            assert (ms["m-a"].name, ms["m-a"].serves, ms["m-a"].status, ms["m-a"].ttl) == (
                "alpha",
                True,
                "alive",
                10.0,
            )
            assert (ms["m-b"].serves, ms["m-b"].ttl) == (False, 5.0)
            assert all(0.0 <= m.seen_ago < 5.0 for m in ms.values())
            assert ms["m-a"].heartbeat_at >= ms["m-a"].joined_at
            with pytest.raises(StoreError):
                await b.join("m-a", "again", serves=True, ttl=10.0)  # ids are never reused

    async def test_claim_takes_free_shards_once_with_a_new_epoch(self, make_shared: SharedFactory) -> None:
        async with make_shared() as a, make_shared() as b:
            await a.join("m-a", "a", serves=True, ttl=10.0)
            await b.join("m-b", "b", serves=True, ttl=10.0)
            assert await a.claim("m-a", [0, 1, 2]) == {0: 1, 1: 1, 2: 1}
            assert await b.claim("m-b", [1, 2, 3]) == {3: 1}  # 1 and 2 belong to a live member
            assert await a.claim("m-a", [0]) == {}  # already its own: nothing new
            owners = {r.shard: (r.owner, r.epoch) for r in await b.shard_map()}
            assert owners[0] == ("m-a", 1)
            assert owners[3] == ("m-b", 1)
            assert owners[4] == (None, 0)
            assert await a.claim("m-a", [SHARED_SHARDS, -1]) == {}  # no such shards

    async def test_release_frees_a_shard_with_a_new_epoch_only_at_the_held_epoch(
        self, make_shared: SharedFactory
    ) -> None:
        async with make_shared() as a, make_shared() as b:
            await a.join("m-a", "a", serves=True, ttl=10.0)
            await b.join("m-b", "b", serves=True, ttl=10.0)
            await a.claim("m-a", [0, 1])
            await a.release("m-a", {0: 1, 1: 7})  # 1 is not held at epoch 7: left alone
            owners = {r.shard: (r.owner, r.epoch) for r in await a.shard_map()}
            assert owners[0] == (None, 2)
            assert owners[1] == ("m-a", 1)
            await b.release("m-b", {1: 1})  # not b's: left alone
            assert {r.shard: r.owner for r in await a.shard_map()}[1] == "m-a"
            assert await b.claim("m-b", [0, 1]) == {0: 3}

    async def test_leave_releases_everything_and_ends_the_lease(self, make_shared: SharedFactory) -> None:
        async with make_shared() as a, make_shared() as b:
            await a.join("m-a", "a", serves=True, ttl=10.0)
            await b.join("m-b", "b", serves=True, ttl=10.0)
            await a.claim("m-a", range(SHARED_SHARDS))
            await a.leave("m-a")
            assert await a.heartbeat("m-a") is False
            assert await a.claim("m-a", [0]) == {}
            assert {m.member_id: m.status for m in await b.members()}["m-a"] == "left"
            taken = await b.claim("m-b", range(SHARED_SHARDS))
            assert taken == dict.fromkeys(range(SHARED_SHARDS), 3)  # claimed 1, released 2, claimed 3

    async def test_a_member_without_heartbeat_past_its_ttl_is_declared_dead(
        self, make_shared: SharedFactory
    ) -> None:
        async with make_shared() as a, make_shared() as b:
            await a.join("m-a", "a", serves=True, ttl=0.3)
            await b.join("m-b", "b", serves=True, ttl=10.0)
            await a.claim("m-a", [0, 1])
            taken: dict[int, int] = {}

            async def took() -> bool:
                taken.update(await b.claim("m-b", [0, 1]))
                return len(taken) == 2

            await until(took, "b takes over a's shards after a's lease expired")
            assert taken == {0: 2, 1: 2}
            assert await a.heartbeat("m-a") is False  # declared dead: it must stop
            assert {m.member_id: m.status for m in await b.members()}["m-a"] == "dead"

    async def test_heartbeats_keep_a_lease(self, make_shared: SharedFactory) -> None:
        async with make_shared() as a, make_shared() as b:
            await a.join("m-a", "a", serves=True, ttl=0.5)
            await b.join("m-b", "b", serves=True, ttl=10.0)
            await a.claim("m-a", [0])
            for _ in range(8):  # 0.8 s: past the ttl, but renewed all along
                assert await a.heartbeat("m-a") is True
                assert await b.claim("m-b", [0]) == {}
                await anyio.sleep(0.1)

    async def test_the_fence_refuses_a_member_that_lost_its_shard(self, make_shared: SharedFactory) -> None:
        async with make_shared() as a, make_shared() as b:
            await a.join("m-a", "a", serves=True, ttl=10.0)
            await b.join("m-b", "b", serves=True, ttl=10.0)
            epochs = await a.claim("m-a", [0, 1])
            a.set_fence("m-a", epochs)
            e0, e1 = in_shard(0), in_shard(1)
            s0, s1 = sig("s1", e0), sig("s2", e1)
            await a.write([Accept(s0), Accept(s1)])
            await a.write([commit(s0, 1, ev(1), from_inbox=True)])  # owned: written
            assert await b.last_seq(T, e0) == 1
            await a.release("m-a", {0: epochs[0]})
            assert await b.claim("m-b", [0]) == {0: 3}
            before = await dump(b)
            inbox_before = await b.read_inbox(after=0, limit=BIG)
            with pytest.raises(ShardLost) as lost:  # a batch touching the lost shard: nothing of it
                await a.write(
                    [
                        Accept(sig("s3", e1)),
                        commit(s1, 1, ev(2), from_inbox=True),
                        commit(sig("s4", e0), 2, ev(3)),
                    ]
                )
            assert lost.value.shards == frozenset({0})
            assert await b.read_inbox(after=0, limit=BIG) == inbox_before
            assert await b.last_seq(T, e0) == 1
            assert await b.last_seq(T, e1) == 0
            await assert_unchanged(b, before)
            with pytest.raises(ShardLost):  # it left the fence: refused again
                await a.write([Journal(step("s5", 0, entity_id=e0))])
            await a.write([commit(s1, 1, ev(2), from_inbox=True)])  # shard 1 is still a's
            assert await b.last_seq(T, e1) == 1

    async def test_the_fence_refuses_after_a_takeover_by_expiry(self, make_shared: SharedFactory) -> None:
        async with make_shared() as a, make_shared() as b:
            await a.join("m-a", "a", serves=True, ttl=0.3)
            await b.join("m-b", "b", serves=True, ttl=10.0)
            a.set_fence("m-a", await a.claim("m-a", [2]))
            e2 = in_shard(2)
            s = sig("s1", e2)
            await a.write([Accept(s)])

            async def took() -> bool:
                return bool(await b.claim("m-b", [2]))

            await until(took, "b takes shard 2")
            b.set_fence("m-b", {2: 2})
            for w in (
                commit(s, 1, ev(1), from_inbox=True),
                SaveSnapshot(snap(1, e2)),
                FireTimer(timer("t", 1.0, e2), sig("t1", e2), None),
            ):
                with pytest.raises(ShardLost):  # every fenced kind of write
                    await a.write([w])
            assert await b.last_seq(T, e2) == 0
            await b.write([commit(s, 1, ev(1), from_inbox=True)])
            assert await a.last_seq(T, e2) == 1

    async def test_a_fence_without_a_shard_refuses_fenced_writes_but_accepts_signals(
        self, make_shared: SharedFactory
    ) -> None:
        async with make_shared() as a, make_shared() as client:
            await a.join("m-a", "a", serves=True, ttl=10.0)
            await client.join("m-c", "client", serves=False, ttl=10.0)
            a.set_fence("m-a", await a.claim("m-a", range(SHARED_SHARDS)))
            client.set_fence("m-c", {})
            e = in_shard(5)
            s = sig("s1", e)
            assert await client.write([Accept(s)]) == [Accepted()]  # anyone may accept
            with pytest.raises(ShardLost):
                await client.write([commit(s, 1, ev(1), from_inbox=True)])
            await a.write([commit(s, 1, ev(1), from_inbox=True)])
            assert await client.last_seq(T, e) == 1

    async def test_reads_filter_by_shard(self, make_shared: SharedFactory) -> None:
        async with make_shared() as a:
            e3, e4 = in_shard(3), in_shard(4)
            s3, s4 = sig("s1", e3), sig("s2", e4)
            await a.write([Accept(s3), Accept(s4), Accept(sig("s3", e3))])
            await a.write(
                [commit(s3, 1, set_timers=(timer("t", 5.0, e3),), outbox=(sig("m1", e4),), from_inbox=True)]
            )
            await a.write([commit(s4, 1, set_timers=(timer("u", 4.0, e4),), from_inbox=True)])
            assert [e.signal.signal_id for e in await a.read_inbox(after=0, limit=BIG, shards={3})] == ["s3"]
            assert await a.read_inbox(after=0, limit=BIG, shards={4}) == []
            assert len(await a.read_inbox(after=0, limit=BIG, shards=None)) == 1
            assert [t.key for t in await a.read_timers(limit=BIG, shards={3})] == ["t"]
            assert [t.key for t in await a.read_timers(limit=BIG, shards=[3, 4])] == ["u", "t"]
            assert await a.read_timers(limit=BIG, shards=set()) == []
            # the outbox goes with its sender's shard (e3 sent to e4)
            assert [o.signal.signal_id for o in await a.read_outbox(after=0, limit=BIG, shards={3})] == ["m1"]
            assert await a.read_outbox(after=0, limit=BIG, shards={4}) == []

    async def test_publish_wakes_the_subscribers_of_every_connection(
        self, make_shared: SharedFactory
    ) -> None:
        async with make_shared() as a, make_shared() as b:
            got: list[tuple[str, str]] = []
            b.subscribe(lambda topic, item: got.append((topic, item)))
            await a.publish("inbox", ["3", "4"])
            await a.publish("outcome", ["s:x"])
            await a.publish("shards", ["m-1"])
            await a.publish("cancel", ["i:x"])
            if not self.wakes:
                return  # a polling store: publishing is harmless, nobody is called

            async def woke() -> bool:
                want = {("inbox", "3"), ("inbox", "4"), ("outcome", "s:x")}
                return want | {("shards", "m-1"), ("cancel", "i:x")} <= set(got)

            await until(woke, "b hears what a published")
