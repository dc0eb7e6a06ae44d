"""actors.inspect / persistence.inspect: reads of a live store, state at every sequence, errors."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from actors import InvalidArguments, NotOurDatabase, StoreError, UnknownEntity
from actors.inspect import Inspection, to_json
from persistence import SqliteStore
from persistence.inspect import DatabaseNotFound, Inspector, SqliteInspector, is_dsn
from tests.ops.model import DEAD, EXPECTED, LONG, TIMER, WORKER, Ledger, running


def expected_state(entity_id: str, at: int) -> dict[str, object]:
    """The ledger's state after its first ``at`` events, from what populate sent."""
    want = EXPECTED[entity_id]
    owner = want.get("owner")
    events: list[tuple[str, str]] = ([("claim", str(owner))] if owner else []) + [
        ("note", str(n)) for n in want["notes"]
    ]
    state: dict[str, object] = {"entries": [], "count": 0, "owner": ""}
    for kind, value in events[:at]:
        if kind == "claim":
            state["owner"] = value
        else:
            state["entries"] = [*state["entries"], value]  # type: ignore[misc]
            state["count"] = int(state["count"]) + 1  # type: ignore[call-overload]
    return state


async def check_everything(path: Path | str) -> None:
    async with Inspection(path, entities=[Ledger]) as ins:
        assert isinstance(ins.inspector, Inspector)
        assert await ins.entity_types() == ["Ledger"]
        listed = {e.entity_id: e.last_seq for e in await ins.entities("Ledger")}
        assert listed["long"] == len(LONG)
        # state at every sequence, from the initial state or a snapshot, equals the reference
        used = set()
        for at in range(len(LONG) + 1):
            st = await ins.state("Ledger", "long", at=at)
            assert (st.seq, st.last_seq, st.decoded) == (at, len(LONG), True)
            assert st.state == expected_state("long", at), at
            assert st.replayed == at - (st.snapshot_seq or 0)
            used.add(st.snapshot_seq)
        assert {6, 9} <= used  # the kept snapshots were used where they apply
        now = await ins.state("Ledger", "long")
        assert (now.seq, now.snapshot_seq, now.replayed) == (10, 9, 1)
        # history
        history = await ins.history("Ledger", "long")
        assert [e.seq for e in history] == list(range(1, 11))
        assert [e.data for e in history] == [{"text": t} for t in LONG]
        assert {e.type for e in history} == {"ops.noted"}
        assert all(e.recorded_at.tzinfo is not None for e in history)
        assert [e.seq for e in await ins.history("Ledger", "long", after=7, limit=2)] == [8, 9]
        # filter on state fields
        bobs = await ins.entities("Ledger", where={"owner": "bob"})
        assert sorted(e.entity_id for e in bobs) == sorted(
            k for k, v in EXPECTED.items() if v.get("owner") == "bob"
        )
        assert all(e.state is not None and e.state["owner"] == "bob" for e in bobs)
        assert [e.entity_id for e in await ins.entities("Ledger", where={"count": 10})] == ["long"]
        # queues
        [timer] = await ins.timers()
        assert (timer.entity_id, timer.key, timer.handler, timer.args) == (
            *TIMER,
            "note",
            {"text": "reminder"},
        )
        [dead] = await ins.dead_letters()
        assert (dead.entity_id, dead.handler, dead.args) == (DEAD[0], DEAD[1], {"why": DEAD[2]})
        assert DEAD[2] in dead.error
        assert "RuntimeError" in dead.traceback
        [inv] = await ins.invocations()
        assert (inv.entity_id, inv.handler, inv.args, inv.status) == (
            WORKER[0],
            "work",
            {"label": WORKER[1]},
            "in_flight",
        )
        assert [(s.step, s.kind, s.result) for s in inv.steps] == [
            (1, "activity", {"ok": f"stamped {WORKER[1]}"})
        ]
        inbox = await ins.inbox()
        assert [(i.entity_id, i.handler) for i in inbox] == [(WORKER[0], "work"), (WORKER[0], "note")]
        assert inbox[0].signal_id == inv.invocation_id
        assert await ins.outbox() == []
        members = await ins.members()
        if not is_dsn(path):
            assert (members.clustered, members.members) == (False, ())
        else:  # a system on PostgreSQL is always a member of its shared store
            [me] = members.members
            assert (me.status, me.serves, me.shards, me.owns) == ("alive", True, 256, "0-255")
            assert 0 <= me.seen_ago < 30
            assert me.heartbeat_at.tzinfo is not None


@pytest.mark.anyio
async def test_reads_beside_a_system_in_this_process(store_location: str) -> None:
    db = store_location
    async with running(db) as system:
        await check_everything(db)
        # the system still owns and writes its store while and after we read
        await system.ref(Ledger, "long").ask(Ledger.note, "after inspection")
        async with Inspection(db, entities=[Ledger]) as ins:
            st = await ins.state("Ledger", "long")
        assert st.state is not None
        assert st.state["count"] == len(LONG) + 1


@pytest.mark.anyio
async def test_reads_beside_a_system_in_another_process(held_db: Path) -> None:
    await check_everything(held_db)
    with pytest.raises(StoreError, match="in use by another running system"):
        async with SqliteStore(held_db):
            pass  # the child still holds it: inspection took nothing away


@pytest.mark.anyio
async def test_raw_view_without_the_class(held_db: Path) -> None:
    async with Inspection(held_db) as ins:
        st = await ins.state("Ledger", "long", at=8)
        assert not st.decoded
        assert st.snapshot_seq == 6
        assert st.state == expected_state("long", 6)  # the snapshot as stored
        assert [e.seq for e in st.pending] == [7, 8]
        assert [e.data for e in st.pending] == [{"text": t} for t in LONG[6:8]]
        before = await ins.state("Ledger", "long", at=2)
        assert (before.state, before.snapshot_seq, [e.seq for e in before.pending]) == (None, None, [1, 2])
        assert to_json(before)["pending"][0]["recorded_at"].endswith("+00:00")
        with pytest.raises(InvalidArguments, match="needs its class"):
            await ins.entities("Ledger", where={"owner": "bob"})


@pytest.mark.anyio
async def test_progress_is_reported_on_replay(held_db: Path) -> None:
    seen: list[tuple[int, int]] = []
    async with Inspection(held_db, entities=[Ledger]) as ins:
        await ins.state("Ledger", "long", at=5, progress=lambda done, total: seen.append((done, total)))
    assert seen
    assert seen[-1] == (5, 5)


@pytest.mark.anyio
async def test_bad_requests_are_typed_errors(held_db: Path) -> None:
    async with Inspection(held_db, entities=[Ledger]) as ins:
        with pytest.raises(InvalidArguments, match="has 10 events"):
            await ins.state("Ledger", "long", at=11)
        with pytest.raises(InvalidArguments, match="sequence number"):
            await ins.state("Ledger", "long", at=-1)
        with pytest.raises(UnknownEntity, match="no entity Ledger/nobody"):
            await ins.state("Ledger", "nobody")
        with pytest.raises(UnknownEntity, match="no entity type 'Ledgr'"):
            await ins.history("Ledgr", "long")
        with pytest.raises(InvalidArguments, match="no field colour"):
            await ins.entities("Ledger", where={"colour": "red"})
        with pytest.raises(InvalidArguments, match="needs an entity type"):
            await ins.entities(where={"owner": "bob"})
        for read in (ins.inbox, ins.outbox, ins.dead_letters, ins.timers, ins.invocations, ins.entities):
            with pytest.raises(InvalidArguments, match="limit must be an int >= 1"):
                await read(limit=0)
    with pytest.raises(InvalidArguments, match="database path, a postgresql:// DSN or an Inspector"):
        Inspection(42)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_missing_file_is_an_error_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    with pytest.raises(DatabaseNotFound, match="no database at"):
        async with SqliteInspector(missing):
            pass
    with pytest.raises(FileNotFoundError):  # also a builtin-compatible error
        async with Inspection(missing):
            pass
    assert os.listdir(tmp_path) == []
    with pytest.raises(StoreError, match="is a directory"):
        async with SqliteInspector(tmp_path):
            pass


@pytest.mark.anyio
async def test_other_files_are_refused_unchanged(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n")
    with pytest.raises(NotOurDatabase):
        async with SqliteInspector(text):
            pass
    assert text.read_text() == "hello, not a database\n"
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(NotOurDatabase, match="not a durable-actors database"):
        async with SqliteInspector(other):
            pass
    assert other.read_bytes() == before
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(NotOurDatabase):
        async with SqliteInspector(empty):
            pass
    assert empty.stat().st_size == 0


@pytest.mark.anyio
async def test_no_lock_taken_on_a_closed_store(tmp_path: Path) -> None:
    db = tmp_path / "closed.db"
    async with SqliteStore(db):
        pass
    os.remove(f"{db}.lock")
    async with SqliteInspector(db) as ins:
        assert await ins.entity_types() == []
        assert not Path(f"{db}.lock").exists()  # noqa: ASYNC240 (a test, a local file)
        # while the inspector is open, a system can still take the store
        async with SqliteStore(db):
            pass
