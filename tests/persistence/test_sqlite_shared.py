"""``SqliteStore(path, shared=True)``: several processes of one host on one file.

Open modes exclude each other both ways; membership and shard claims use SQLite's
clock; a member whose process is gone is declared dead at once (its member file is no
longer locked); the fence is checked inside the write transaction, so a zombie member
(SIGSTOPped past its lease, then resumed) commits nothing after another took over,
while the same zombie without a fence does (the negative control). Schema version 4
adds the shard columns, backfilled on upgrade.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from persistence import SqliteStore, StoreError, StoreLocked
from persistence.errors import InvalidWrite, ShardLost
from persistence.sqlite import MIGRATIONS
from persistence.store import (
    Accept,
    Commit,
    InboxEntry,
    NewEvent,
    SharedStore,
    SignalRecord,
    TimerRecord,
    shard_of,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
MEMBER = "tests.persistence._shared_member"


def sig(entity_type: str, entity_id: str, sid: str) -> SignalRecord:
    return SignalRecord(entity_type, entity_id, sid, "h", "{}", "fp", 1.0)


def commit(entity_id: str, seq: int, data: str = "{}", entity_type: str = "Z") -> Commit:
    return Commit(
        entity_type,
        entity_id,
        sig(entity_type, entity_id, f"c{seq}"),
        "{}",
        seq,
        (NewEvent("W", 1, data),),
        mark=False,
        from_inbox=False,
    )


def query(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``cond`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(0.01)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def lines(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "shared.db"


@pytest.fixture
def children() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start member processes; every one still running is killed after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", MEMBER, *args], cwd=ROOT)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)
            p.kill()
        p.wait()


def entity_in(shard: int, n: int = 256, entity_type: str = "Z") -> str:
    """An entity id of ``entity_type`` that lives in ``shard``."""
    return next(f"e{i}" for i in range(100_000) if shard_of(entity_type, f"e{i}", n) == shard)


# ---------------------------------------------------------------- open modes


async def test_a_shared_store_is_a_shared_store(db: Path) -> None:
    async with SqliteStore(db, shared=True) as store:
        assert isinstance(store, SharedStore)
        assert store.shard_count == 256
        assert [(s.shard, s.owner, s.epoch) for s in await store.shard_map()] == [
            (i, None, 0) for i in range(256)
        ]
        assert await store.members() == []


async def test_exclusive_and_shared_openers_exclude_each_other_both_ways(db: Path) -> None:
    async with SqliteStore(db):
        with pytest.raises(StoreLocked, match=r"in use by another running system.*exclusive"):
            async with SqliteStore(db, shared=True):
                pass
    async with SqliteStore(db, shared=True), SqliteStore(db, shared=True):  # any number of shared
        with pytest.raises(StoreLocked, match="shared=True") as info:
            async with SqliteStore(db):
                pass
        assert info.value.owner == {"shared": True}
    async with SqliteStore(db):  # all closed: exclusive again
        pass


async def test_a_shared_holder_in_another_process_keeps_an_exclusive_opener_out(
    db: Path, tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    out = tmp_path / "out"
    holder = children("hold", str(db), str(out), "60", "1")
    await wait_until(lambda: any(x.startswith("ready") for x in lines(out)), "the holder to join")
    with pytest.raises(StoreLocked, match="shared=True"):
        async with SqliteStore(db):
            pass
    holder.kill()
    holder.wait()
    async with SqliteStore(db):  # the kernel dropped its locks
        pass


async def test_closing_one_shared_store_leaves_the_others_of_the_process_working(db: Path) -> None:
    a = SqliteStore(db, shared=True)
    async with SqliteStore(db, shared=True) as b:
        async with a:
            await a.write([Accept(sig("T", "x", "1"))])
        await b.write([Accept(sig("T", "x", "2"))])
        assert [e.signal.signal_id for e in await b.read_inbox(after=0, limit=10)] == ["1", "2"]
        with pytest.raises(StoreLocked):  # b still holds the file shared
            async with SqliteStore(db):
                pass


async def test_opening_a_new_file_another_connection_writes_waits_for_it(db: Path) -> None:
    """SQLite refuses a switch to WAL mode at once while another connection writes (a
    second process creating the same new file): the store tries again, within
    ``busy_timeout``, instead of failing with "database is locked"."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a writer on the new file, before it is in WAL mode
    store = SqliteStore(db, shared=True, busy_timeout=30)
    opened = anyio.Event()

    async def open_it() -> None:
        async with store:
            await store.write([Accept(sig("T", "x", "1"))])
            opened.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(open_it)
            with anyio.fail_after(10):
                while store.wal_retries == 0:  # noqa: ASYNC110 (the open runs on a worker thread)
                    await anyio.sleep(0.005)
            assert not opened.is_set()
            other.execute("ROLLBACK")
            with anyio.fail_after(10):
                await opened.wait()
    finally:
        other.close()
    assert store.wal_retries >= 1
    # a writer that stays: refused after busy_timeout, as before
    other = sqlite3.connect(db.with_name("other.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            await SqliteStore(db.with_name("other.db"), shared=True, busy_timeout=0.2).__aenter__()
    finally:
        other.close()


async def test_shard_count_is_fixed_when_the_database_is_made(db: Path) -> None:
    async with SqliteStore(db, shared=True, shards=16) as store:
        assert store.shard_count == 16
        assert len(await store.shard_map()) == 16
    async with SqliteStore(db, shared=True) as store:
        assert store.shard_count == 16
    with pytest.raises(StoreError, match="has 16 shards, not the 32 asked for"):
        async with SqliteStore(db, shared=True, shards=32):
            pass
    for bad in (0, -1, True, 1.5, 4097):
        with pytest.raises(ValueError, match="shards must be"):
            SqliteStore(db, shards=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- schema 4


V3_ROWS = [
    ("inbox", "Account", "alice"),
    ("inbox", "Order", "o-17"),
    ("timers", "Account", "bob"),
    ("outbox", "Order", "o-99"),
]


def make_v3_database(db: Path) -> None:
    con = sqlite3.connect(db)
    for v in (1, 2, 3):
        con.executescript(MIGRATIONS[v])
    cols = "entity_type, entity_id, signal_id, handler, args, fingerprint, accepted_at"
    for n, (table, t, i) in enumerate(V3_ROWS):
        if table == "timers":
            con.execute("INSERT INTO timers VALUES (?, ?, 'k', 'h', '{}', 5.0, NULL, NULL)", (t, i))
        else:
            con.execute(
                f"INSERT INTO {table} ({cols}) VALUES (?, ?, ?, 'h', '{{}}', 'fp', 1.0)", (t, i, f"s{n}")
            )
    con.execute("INSERT INTO actors_meta VALUES ('application', 'durable-actors'), ('schema_version', '3')")
    con.commit()
    con.close()


@pytest.mark.parametrize("shards", [None, 16])
async def test_a_version_3_database_gets_shards_backfilled(db: Path, shards: int | None) -> None:
    make_v3_database(db)
    async with SqliteStore(db, shards=shards) as store:
        n = shards or 256
        assert store.shard_count == n
        for table, t, i in V3_ROWS:
            [(got,)] = query(db, f"SELECT shard FROM {table} WHERE entity_type = ? AND entity_id = ?", (t, i))
            assert got == shard_of(t, i, n), (table, t, i)
        mine = shard_of("Order", "o-17", n)
        assert [e.signal.entity_id for e in await store.read_inbox(after=0, limit=10, shards=[mine])] == [
            "o-17"
        ]
        assert [(s.owner, s.epoch) for s in await store.shard_map()] == [(None, 0)] * n
    assert query(
        db, "SELECT value FROM actors_meta WHERE key IN ('schema_version', 'shard_count') ORDER BY key"
    ) == [
        ("4",),
        (str(n),),
    ]
    indexes = {r[0] for r in query(db, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"inbox_by_shard", "timers_by_shard", "outbox_by_shard"} <= indexes


def test_shard_filtered_reads_use_the_shard_indexes(db: Path, tmp_path: Path) -> None:
    anyio.run(_open_close, db)
    plans = {
        "inbox_by_shard": "SELECT position FROM inbox WHERE shard IN (SELECT value FROM json_each('[1,2]')) "
        "AND position > 0 ORDER BY position LIMIT 10",
        "timers_by_shard": "SELECT key FROM timers WHERE shard IN (SELECT value FROM json_each('[1,2]')) "
        "AND due_at > 0 ORDER BY due_at LIMIT 10",
        "outbox_by_shard": "SELECT id FROM outbox WHERE shard IN (SELECT value FROM json_each('[1,2]')) "
        "AND id > 0 ORDER BY id LIMIT 10",
    }
    for index, sql in plans.items():
        detail = " ".join(str(r[-1]) for r in query(db, f"EXPLAIN QUERY PLAN {sql}"))
        assert index in detail, detail


async def _open_close(db: Path) -> None:
    async with SqliteStore(db):
        pass


async def test_reads_filter_by_shard_and_the_outbox_by_its_sender(db: Path) -> None:
    n = 8
    a, b = entity_in(1, n, "A"), entity_in(2, n, "A")
    async with SqliteStore(db, shards=n) as store:
        await store.write([Accept(sig("A", a, "1")), Accept(sig("A", b, "2")), Accept(sig("A", a, "3"))])
        timer = TimerRecord("A", b, "t", "h", "{}", 10.0)
        out = sig("A", b, "m")  # sent by a, to b
        await store.write(
            [
                Commit("A", a, sig("A", a, "1"), "{}", 1, outbox=(out,)),
                Commit("A", b, sig("A", b, "2"), "{}", 1, set_timers=(timer,)),
            ]
        )

        def ids(entries: list[InboxEntry]) -> list[str]:
            return [e.signal.signal_id for e in entries]

        assert ids(await store.read_inbox(after=0, limit=10, shards=[1])) == ["3"]
        assert ids(await store.read_inbox(after=0, limit=10, shards=[2])) == []
        assert ids(await store.read_inbox(after=0, limit=10, shards=None)) == ["3"]
        await store.write([Accept(sig("A", b, "4"))])
        assert ids(await store.read_inbox(after=0, limit=10, shards={1, 2})) == ["3", "4"]
        assert ids(await store.read_inbox(after=0, limit=10, shards=[])) == []
        assert await store.read_timers(limit=10, shards=[2]) == [timer]
        assert await store.read_timers(limit=10, shards=[1]) == []
        assert [o.signal for o in await store.read_outbox(after=0, limit=10, shards=[1])] == [out]
        assert await store.read_outbox(after=0, limit=10, shards=[2]) == []
        with pytest.raises(InvalidWrite, match="shards must be ints"):
            await store.read_inbox(after=0, limit=10, shards=["1"])  # type: ignore[list-item]


# ---------------------------------------------------------------- membership


async def test_membership_uses_the_database_clock_and_leases_expire(db: Path) -> None:
    async with SqliteStore(db, shared=True) as s1, SqliteStore(db, shared=True) as s2:
        await s1.join("m1", "one", serves=True, ttl=0.5)
        await s2.join("m2", "two", serves=True, ttl=30)
        assert await s1.claim("m1", [0, 1]) == {0: 1, 1: 1}
        assert await s2.claim("m2", [0, 1, 2]) == {2: 1}  # m1 is alive: only the free one
        [(db_now,)] = query(db, "SELECT (julianday('now') - 2440587.5) * 86400.0")
        members = {m.member_id: m for m in await s2.members()}
        assert abs(members["m1"].heartbeat_at - float(db_now)) < 5  # type: ignore[arg-type]
        assert (members["m1"].status, members["m1"].serves, members["m1"].ttl) == ("alive", True, 0.5)

        async def m1_seen_ago() -> float:
            return {m.member_id: m for m in await s2.members()}["m1"].seen_ago

        deadline = time.monotonic() + 10
        while await m1_seen_ago() <= 0.5:  # the lease runs out on SQLite's clock
            assert time.monotonic() < deadline, "m1's lease never expired"
            await anyio.sleep(0.02)
        assert await s2.heartbeat("m2")
        assert await s2.claim("m2", [0, 1]) == {0: 2, 1: 2}
        status = {m.member_id: m.status for m in await s2.members()}
        assert status == {"m1": "dead", "m2": "alive"}
        assert not await s1.heartbeat("m1")  # declared dead: it must stop
        assert await s1.claim("m1", [3]) == {}  # and takes nothing
        assert [(s.shard, s.owner, s.epoch) for s in (await s2.shard_map())[:4]] == [
            (0, "m2", 2),
            (1, "m2", 2),
            (2, "m2", 1),
            (3, None, 0),
        ]
        await s2.release("m2", {0: 2, 1: 1})  # 1 is held at epoch 2, not 1: left alone
        assert [(s.owner, s.epoch) for s in (await s2.shard_map())[:2]] == [(None, 3), ("m2", 2)]
        await s2.leave("m2")
        assert [(s.owner, s.epoch) for s in (await s2.shard_map())[:3]] == [(None, 3), (None, 3), (None, 2)]
        assert {m.member_id: m.status for m in await s2.members()} == {"m1": "dead", "m2": "left"}
        assert not await s2.heartbeat("m2")
        with pytest.raises(StoreError, match="used before"):
            await s2.join("m2", "again", serves=True, ttl=30)


async def test_membership_refuses_bad_arguments(db: Path) -> None:
    async with SqliteStore(db, shared=True, shards=4) as store:
        bad_joins: list[dict[str, object]] = [
            {"serves": 1, "ttl": 1.0},
            {"serves": True, "ttl": 0},
            {"serves": True, "ttl": float("nan")},
        ]
        for kwargs in bad_joins:
            with pytest.raises(InvalidWrite):
                await store.join("m", "n", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(InvalidWrite, match="member_id"):
            await store.join("", "n", serves=True, ttl=1.0)
        await store.join("../../etc/passwd", "n", serves=True, ttl=1.0)  # only hashed into a file name
        assert {p.parent.name for p in db.parent.rglob("*.lock") if p.parent != db.parent} == {
            "shared.db.members"
        }
        assert await store.claim("../../etc/passwd", [4, -1]) == {}  # no such shards
        bad_shards: list[list[object]] = [[True], ["0"], [1.0]]
        for wanted in bad_shards:
            with pytest.raises(InvalidWrite, match=r"shards are ints 0\.\.3"):
                await store.claim("../../etc/passwd", wanted)  # type: ignore[arg-type]
        assert [s.owner for s in await store.shard_map()] == [None] * 4


async def test_a_killed_member_is_declared_dead_at_once(
    db: Path, tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    out = tmp_path / "out"
    holder = children("hold", str(db), str(out), "60", "0", "1", "2")
    await wait_until(lambda: any(x.startswith("ready") for x in lines(out)), "the holder to join")
    assert json.loads(lines(out)[0].removeprefix("ready ")) == {"0": 1, "1": 1, "2": 1}
    async with SqliteStore(db, shared=True) as store:
        await store.join("taker", "taker", serves=True, ttl=60)
        assert await store.claim("taker", [0, 1, 2]) == {}  # the holder lives: nothing to take
        holder.kill()
        holder.wait()
        killed = time.monotonic()
        assert await store.claim("taker", [0, 1, 2]) == {0: 2, 1: 2, 2: 2}  # its lease has 60 s to run
        assert time.monotonic() - killed < 2
        assert {m.member_id: m.status for m in await store.members()} == {"holder": "dead", "taker": "alive"}
        assert listing(Path(f"{db}.members")) == [  # the dead member's file was removed
            Path(store._member_file("taker")).name
        ]


# ---------------------------------------------------------------- the fence


async def test_a_fenced_write_after_losing_the_shard_writes_nothing(db: Path) -> None:
    n = 8
    e = entity_in(3, n)
    async with SqliteStore(db, shared=True, shards=n) as s1, SqliteStore(db, shared=True, shards=n) as s2:
        await s1.join("m1", "one", serves=True, ttl=0.3)
        await s2.join("m2", "two", serves=True, ttl=30)
        epochs = await s1.claim("m1", [3])
        s1.set_fence("m1", epochs)
        await s1.write([commit(e, 1), commit(e, 2)])
        with pytest.raises(ShardLost, match=r"does not hold shard\(s\) \[5\]") as info:  # not in the fence
            await s1.write([Accept(sig("Z", "x", "a")), commit(entity_in(5, n), 1)])
        assert info.value.shards == frozenset({5})
        deadline = time.monotonic() + 10
        while not await s2.claim("m2", [3]):  # m1's lease runs out
            assert time.monotonic() < deadline
            await anyio.sleep(0.05)
        with pytest.raises(ShardLost, match=r"no longer owns shard\(s\) \[3\]") as info:
            await s1.write([Accept(sig("Z", "y", "a")), commit(e, 3)])
        assert info.value.shards == frozenset({3})
        assert await s2.read_inbox(after=0, limit=10) == []  # the unfenced Accept went with it
        assert await s2.last_seq("Z", e) == 2
        with pytest.raises(ShardLost, match="does not hold"):  # it left the fence: refused at once
            await s1.write([commit(e, 3)])
        await s1.write([Accept(sig("Z", "y", "a"))])  # unfenced writes still go through
        s2.set_fence("m2", {3: 2})
        await s2.write([commit(e, 3)])
        assert await s2.last_seq("Z", e) == 3


async def test_a_shard_taken_back_forgets_its_cached_sequences(db: Path) -> None:
    n = 4
    e = entity_in(1, n)
    async with SqliteStore(db, shared=True, shards=n) as s1, SqliteStore(db, shared=True, shards=n) as s2:
        await s1.join("m1", "one", serves=True, ttl=30)
        await s2.join("m2", "two", serves=True, ttl=30)
        s1.set_fence("m1", await s1.claim("m1", [1]))
        await s1.write([commit(e, 1)])  # s1 caches: last seq 1
        await s1.release("m1", {1: 1})
        s2.set_fence("m2", await s2.claim("m2", [1]))
        await s2.write([commit(e, 2)])
        await s2.leave("m2")
        again = await s1.claim("m1", [1])
        assert again == {1: 5}  # claimed, released, claimed, released by leaving, claimed
        s1.set_fence("m1", again)
        await s1.write([commit(e, 3)])  # a stale cache would call this a sequence conflict
        assert await s1.last_seq("Z", e) == 3


async def test_without_set_fence_nothing_is_fenced(db: Path) -> None:
    async with SqliteStore(db, shared=True, shards=4) as store:
        await store.write([commit("a", 1)])  # no member, no claim: one owner
        assert await store.last_seq("Z", "a") == 1


# ---------------------------------------------------------------- processes


def stop_outside_a_transaction(pid: int, db: Path, out: Path) -> None:
    """SIGSTOP ``pid`` at a moment it holds no write transaction (a process stopped
    inside one holds SQLite's write lock, and every other writer waits for it)."""
    probe = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        for _ in range(200):
            os.kill(pid, signal.SIGSTOP)
            try:
                probe.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                pass  # stopped inside a write: let it finish and try again
            else:
                probe.execute("ROLLBACK")
                return
            seen = len(lines(out))
            os.kill(pid, signal.SIGCONT)
            deadline = time.monotonic() + 5
            while len(lines(out)) == seen:
                assert time.monotonic() < deadline, "the member made no progress"
                time.sleep(0.001)
        raise AssertionError("never stopped outside a write transaction")
    finally:
        probe.close()


async def zombie_run(
    db: Path, tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]], fence: bool
) -> tuple[int, list[str], int]:
    """A member commits in a loop, is stopped past its lease, loses its shards to this
    process and is resumed: the number of events it committed after that takeover,
    what it reported after it was resumed, and the last seq in the log at the takeover."""
    ids = [f"z{i}" for i in range(6)]
    out = tmp_path / "out"
    ttl = 0.5
    zombie = children("zombie", str(db), str(out), str(ttl), "fence" if fence else "nofence", *ids)
    await wait_until(lambda: sum(x.startswith("ack") for x in lines(out)) >= 20, "the zombie to commit", 20)
    async with SqliteStore(db, shared=True) as store:
        stop_outside_a_transaction(zombie.pid, db, out)
        acked = max(int(x.split()[1]) for x in lines(out) if x.startswith("ack"))

        async def expired() -> bool:
            return any(m.member_id == "zombie" and m.seen_ago > ttl for m in await store.members())

        deadline = time.monotonic() + 10
        while not await expired():
            assert time.monotonic() < deadline, "the zombie's lease never expired"
            await anyio.sleep(0.02)
        await store.join("taker", "taker", serves=True, ttl=30)
        shards = sorted({shard_of("Z", i, store.shard_count) for i in ids})
        old = {s.shard: s.epoch for s in await store.shard_map() if s.shard in shards}
        taken = await store.claim("taker", shards)
        assert taken == {s: e + 1 for s, e in old.items()}  # by lease: a stopped process keeps its flocks
        at_takeover = {i: await store.last_seq("Z", i) for i in ids}
        for i in ids:  # every batch it acknowledged is there
            assert at_takeover[i] >= acked
        seen = len(lines(out))
        os.kill(zombie.pid, signal.SIGCONT)
        await wait_until(lambda: len(lines(out)) >= seen + 30, "the resumed zombie to try 30 more batches")
        zombie.kill()
        zombie.wait()
        late = 0
        for i in ids:
            for ev in await store.read_events("Z", i, after=at_takeover[i], limit=100_000):
                if json.loads(ev.data)["epoch"] == old[shard_of("Z", i, store.shard_count)]:
                    late += 1
        return late, lines(out)[seen:], min(at_takeover.values())


async def test_a_zombie_member_commits_nothing_after_a_takeover(
    db: Path, tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    late, after, last = await zombie_run(db, tmp_path, children, fence=True)
    assert late == 0
    # an ack reported after the resume is of a batch committed before the stop
    assert all(int(x.split()[1]) <= last for x in after if x.startswith("ack")), after[:5]
    assert sum(x.startswith("lost") for x in after) >= 29


async def test_negative_control_without_the_fence_the_zombie_commits_after_the_takeover(
    db: Path, tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    late, after, last = await zombie_run(db, tmp_path, children, fence=False)
    assert late > 0, "the unfenced zombie should have committed after the takeover"
    assert any(int(x.split()[1]) > last for x in after if x.startswith("ack"))


async def test_several_processes_writing_at_once_lose_nothing(
    db: Path, tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    async with SqliteStore(db, shared=True) as store:
        outs = [tmp_path / f"out{k}" for k in range(3)]
        procs = [children("writer", str(db), str(o), f"w{k}", "150") for k, o in enumerate(outs)]
        for k in range(150):  # and this process too
            await store.write([Accept(sig("W", f"here-{k}", f"here-{k}-{j}")) for j in range(10)])
        for p in procs:
            assert p.wait(timeout=60) == 0
        assert all(lines(o) == ["done"] for o in outs)
        assert len(await store.read_inbox(after=0, limit=100_000)) == 4 * 150 * 10
        for k in range(3):
            events = await store.read_events("W", f"w{k}", after=0, limit=1000)
            assert [e.seq for e in events] == list(range(1, 151))
