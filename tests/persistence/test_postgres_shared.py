"""PostgresStore as a SharedStore: schema 4, membership by the database's clock, claims
that never wait, the fence inside the commit transaction, wake-ups, shard-filtered reads.

The fencing tests run a real member process (``pg_member_child.py``), pause it with
SIGSTOP past its lease (or it pauses itself inside a transaction, holding row locks),
take its shards over from this process and let it go on as a zombie: with the fence no
row of its may be committed after the takeover; the negative control (the child never
calls ``set_fence``) must show such rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from persistence import InvalidWrite, PostgresStore, StoreError
from persistence import testing as contract
from persistence.errors import ShardLost
from persistence.postgres import MIGRATIONS, SCHEMA_VERSION
from persistence.store import (
    Accept,
    Accepted,
    Commit,
    Committed,
    NewEvent,
    SharedStore,
    SignalRecord,
    TimerRecord,
    shard_of,
)
from tests._stores import sql_at

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 16


def sig(signal_id: str, entity_id: str = "alice", entity_type: str = "Account") -> SignalRecord:
    return SignalRecord(entity_type, entity_id, signal_id, "deposit", "{}", f"fp-{signal_id}", 1.0)


def commit(entity_id: str, seq: int, data: str = "{}", **kw: object) -> Commit:
    return Commit(
        "Account",
        entity_id,
        sig(f"c-{entity_id}-{seq}", entity_id),
        "{}",
        seq,
        (NewEvent("T", 1, data),),
        1.0,
        mark=False,
        from_inbox=False,
        **kw,  # type: ignore[arg-type]
    )


def entity_in(shard: int, *, avoid: tuple[str, ...] = ()) -> str:
    """An entity id of ``Account`` in ``shard`` (of ``SHARDS``)."""
    for n in range(100_000):
        e = f"e{n}"
        if shard_of("Account", e, SHARDS) == shard and e not in avoid:
            return e
    raise AssertionError("no entity found")


@asynccontextmanager
async def admin(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def store_at(dsn: str, **kw: object) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(dsn, shards=SHARDS, idle_in_transaction_timeout=1.0, **kw) as s:  # type: ignore[arg-type]
        yield s


async def eventually(check: object, timeout: float = 10.0, what: str = "condition") -> None:
    """Wait (polling, under a deadline) until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()  # type: ignore[operator]
        if hasattr(result, "__await__"):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.01)


async def wait_for_lock_wait(conn: asyncpg.Connection, pid: int) -> None:
    async def waiting() -> bool:
        return bool(
            await conn.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid)
        )

    await eventually(waiting, what=f"backend {pid} to wait on a lock")


def spawn(argv: list[str], **kw: Any) -> subprocess.Popen[str]:
    """Start a child process (from sync code: Popen does not block for long)."""
    return subprocess.Popen(argv, **kw)


# ---------------------------------------------------------------- schema


async def test_a_new_database_has_its_shard_count_and_every_shard_free(pg_dsn: str) -> None:
    async with PostgresStore(pg_dsn) as store:
        assert isinstance(store, SharedStore)
        assert store.shard_count == 256
        smap = await store.shard_map()
        assert [(r.shard, r.owner, r.epoch) for r in smap] == [(n, None, 0) for n in range(256)]
    async with PostgresStore(pg_dsn, shards=256) as again:  # the same count: fine
        assert again.shard_count == 256
    with pytest.raises(StoreError, match=r"has 256 shards.*shards=16"):
        async with PostgresStore(pg_dsn, shards=16):
            pass


async def test_a_version_3_database_migrates_and_its_rows_get_their_shards(pg_dsn: str) -> None:
    async with admin(pg_dsn) as conn:
        for v in (1, 2, 3):
            for stmt in MIGRATIONS[v]:
                await conn.execute(stmt)
        await conn.execute(
            "INSERT INTO actors_meta VALUES ('application', 'durable-actors'), ('schema_version', '3')"
        )
        cols = "entity_type, entity_id, signal_id, handler, args, fingerprint, accepted_at"
        for n in range(30):
            await conn.execute(
                f"INSERT INTO inbox ({cols}) VALUES ('Account', $1, 's', 'h', '{{}}', 'f', 1)", f"a{n}"
            )
            await conn.execute(
                f"INSERT INTO outbox ({cols}) VALUES ('Cart', $1, 's', 'h', '{{}}', 'f', 1)", f"c{n}"
            )
            await conn.execute(
                "INSERT INTO timers (entity_type, entity_id, key, handler, args, due_at) "
                "VALUES ('Order', $1, 'k', 'h', '{}', 5)",
                f"o{n}",
            )
    async with PostgresStore(pg_dsn, shards=SHARDS) as store:
        assert store.shard_count == SHARDS
        for table, etype in (("inbox", "Account"), ("outbox", "Cart"), ("timers", "Order")):
            rows = sql_at(pg_dsn, f"SELECT entity_id, shard FROM {table}")
            assert len(rows) == 30
            assert {r[1] for r in rows} != {None}
            assert all(r[1] == shard_of(etype, str(r[0]), SHARDS) for r in rows), table
        one = shard_of("Account", "a0", SHARDS)
        assert "a0" in [e.signal.entity_id for e in await store.read_inbox(after=0, limit=100, shards=[one])]
        # and on to the last version: a commit in one statement leaves its writer's token
        assert await store.write([commit("a0", 1)]) == [Committed()]
        assert sql_at(pg_dsn, "SELECT count(*) FROM write_marks") == [(1,)]
    assert sql_at(pg_dsn, "SELECT value FROM actors_meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    assert sql_at(pg_dsn, "SELECT count(*), max(epoch) FROM shards WHERE owner IS NULL") == [(SHARDS, 0)]
    assert sql_at(pg_dsn, "SELECT count(*) FROM inbox WHERE shard IS NULL") == [(0,)]


# ---------------------------------------------------------------- membership


async def test_join_heartbeat_claim_release_leave(pg_dsn: str) -> None:
    async with store_at(pg_dsn) as a, store_at(pg_dsn) as b:
        await a.join("A", "member a", serves=True, ttl=30)
        await b.join("B", "member b", serves=True, ttl=30)
        await b.join("C", "a client", serves=False, ttl=30)
        with pytest.raises(StoreError, match=r"never reused|already joined"):
            await a.join("A", "again", serves=True, ttl=30)
        assert await a.heartbeat("A") is True
        got = await a.claim("A", range(8))
        assert got == {s: 1 for s in range(8)}
        assert await b.claim("B", range(16)) == {s: 1 for s in range(8, 16)}  # A's are not free
        assert await b.claim("B", range(16)) == {}
        await a.release("A", {0: 1, 1: 99})  # 1 is not at epoch 99: left alone
        assert await b.claim("B", [0, 1]) == {0: 3}
        await a.leave("A")
        assert await a.heartbeat("A") is False
        assert await a.claim("A", range(16)) == {}  # not alive: nothing
        assert await b.claim("B", range(16)) == {s: 3 for s in range(1, 8)}
        smap = {r.shard: (r.owner, r.epoch) for r in await b.shard_map()}
        assert smap == {
            0: ("B", 3),
            **{s: ("B", 3) for s in range(1, 8)},
            **{s: ("B", 1) for s in range(8, 16)},
        }
        members = {m.member_id: m for m in await b.members()}
        assert [m.member_id for m in await b.members()][-1] == "A"  # alive first
        assert (members["A"].status, members["B"].status, members["C"].serves) == ("left", "alive", False)
        db_now = float(sql_at(pg_dsn, "SELECT extract(epoch FROM clock_timestamp())::float8")[0][0])  # type: ignore[arg-type]
        assert abs(members["B"].heartbeat_at - db_now) < 5
        assert 0 <= members["B"].seen_ago < 5
        assert members["B"].ttl == 30


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("join", ("", "n")),
        ("claim", ("A", ["3"])),
        ("claim", ("A", [True])),
        ("claim", ("A", "12")),
        ("release", ("A", {3: -1})),
        ("release", ("A", [3])),
        ("publish", ("nope", ["1"])),
        ("publish", ("inbox", "1")),
        ("publish", ("inbox", [1])),
    ],
)
async def test_bad_membership_input_is_invalid_write_and_changes_nothing(
    pg_dsn: str, call: str, args: tuple[object, ...]
) -> None:
    async with store_at(pg_dsn) as a:
        await a.join("A", "a", serves=True, ttl=30)
        kw = {"serves": True, "ttl": 30} if call == "join" else {}
        with pytest.raises(InvalidWrite):
            await getattr(a, call)(*args, **kw)
        assert [(r.owner, r.epoch) for r in await a.shard_map()] == [(None, 0)] * SHARDS
        for bad in ({3: True}, {99: 1}):
            with pytest.raises(InvalidWrite):
                a.set_fence("A", bad)
        with pytest.raises(InvalidWrite, match="ttl"):
            await a.join("Z", "z", serves=True, ttl=0)


async def test_a_lease_runs_out_by_the_database_clock(pg_dsn: str) -> None:
    async with store_at(pg_dsn) as a, store_at(pg_dsn) as b:
        await a.join("A", "a", serves=True, ttl=0.5)
        await b.join("B", "b", serves=True, ttl=30)
        assert await a.claim("A", range(4)) == {0: 1, 1: 1, 2: 1, 3: 1}
        start = time.monotonic()
        assert await b.claim("B", range(4)) == {}  # A is alive (and its process is)
        got: dict[int, int] = {}

        async def taken() -> bool:
            got.update(await b.claim("B", range(4)))
            return len(got) == 4

        await eventually(taken, what="A's lease to run out")
        assert time.monotonic() - start >= 0.4
        assert got == {0: 2, 1: 2, 2: 2, 3: 2}
        assert await a.heartbeat("A") is False  # declared dead: it must stop
        assert {m.member_id: m.status for m in await b.members()} == {"A": "dead", "B": "alive"}


async def test_a_member_whose_process_is_gone_is_declared_dead_at_once(pg_dsn: str) -> None:
    """ttl 60 s, but its session (and advisory lock) is gone: a claim takes over in far less."""
    async with store_at(pg_dsn):
        pass  # creates the database with SHARDS shards
    child = spawn(
        [
            sys.executable,
            "-c",
            (
                "import anyio, sys\n"
                "from persistence import PostgresStore\n"
                "async def main():\n"
                "    async with PostgresStore(sys.argv[1]) as s:\n"
                "        await s.join('K', 'k', serves=True, ttl=60)\n"
                "        print(await s.claim('K', range(s.shard_count)), flush=True)\n"
                "        await anyio.sleep(600)\n"
                "anyio.run(main)\n"
            ),
            pg_dsn,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        line = await anyio.to_thread.run_sync(child.stdout.readline)
        assert line.startswith("{0: 1"), line
        async with store_at(pg_dsn) as b:
            await b.join("B", "b", serves=True, ttl=30)
            assert await b.claim("B", range(SHARDS)) == {}
            child.send_signal(signal.SIGKILL)
            start = time.monotonic()
            got: dict[int, int] = {}

            async def taken() -> bool:
                got.update(await b.claim("B", range(SHARDS)))
                return len(got) == SHARDS

            await eventually(taken, timeout=10, what="the killed member's shards")
            assert time.monotonic() - start < 10
            assert {m.member_id: m.status for m in await b.members()}["K"] == "dead"
            # a store closed without leave: the same
            async with store_at(pg_dsn) as c:
                await c.join("C", "c", serves=True, ttl=60)
                await b.release("B", {0: got[0]})
                assert await c.claim("C", [0]) == {0: got[0] + 2}
            await eventually(lambda: b.claim("B", [0]), timeout=10, what="C's shard after it closed")
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


# ---------------------------------------------------------------- the fence


async def test_a_fenced_write_after_the_shard_was_lost_is_refused_and_writes_nothing(pg_dsn: str) -> None:
    async with store_at(pg_dsn) as a, store_at(pg_dsn) as b:
        await a.join("A", "a", serves=True, ttl=0.3)
        await b.join("B", "b", serves=True, ttl=30)
        epochs = await a.claim("A", range(SHARDS))
        a.set_fence("A", epochs)
        x, y = entity_in(3), entity_in(4)
        assert await a.write([commit(x, 1)]) == [Committed()]
        got: dict[int, int] = {}

        async def taken() -> bool:
            got.update(await b.claim("B", [3]))
            return bool(got)

        await eventually(taken, what="A's lease to run out")
        with pytest.raises(ShardLost) as info:
            await a.write([Accept(sig("acc", "bob")), commit(y, 1), commit(x, 2)])
        assert info.value.shards == {3}
        assert await a.read_events("Account", x, after=0, limit=10) != []
        assert len(await a.read_events("Account", x, after=0, limit=10)) == 1
        assert await a.read_events("Account", y, after=0, limit=10) == []
        assert await a.read_inbox(after=0, limit=10) == []
        # the shard left the fence: refused before the database is asked, the others still work
        with pytest.raises(ShardLost, match="does not own"):
            await a.write([commit(x, 2)])
        assert await a.write([commit(y, 1)]) == [Committed()]
        assert await a.write([Accept(sig("acc", "bob"))]) == [Accepted()]  # accepting is not fenced
        b.set_fence("B", got)
        assert await b.write([commit(x, 2)]) == [Committed()]


async def test_a_write_to_a_shard_outside_the_fence_is_refused_before_the_database(pg_dsn: str) -> None:
    async with store_at(pg_dsn) as a:
        await a.join("A", "a", serves=True, ttl=30)
        a.set_fence("A", await a.claim("A", [1]))
        with pytest.raises(ShardLost) as info:
            await a.write([commit(entity_in(1), 1), commit(entity_in(2), 1)])
        assert info.value.shards == {2}
        assert sql_at(pg_dsn, "SELECT count(*) FROM events") == [(0,)]
        assert await a.write([commit(entity_in(1), 1)]) == [Committed()]


async def test_a_claim_committed_while_a_fenced_write_waits_refuses_the_write(pg_dsn: str) -> None:
    """Claim first: its UPDATE holds the shard row; the fence's FOR SHARE waits, then
    re-reads the new owner and refuses."""
    async with store_at(pg_dsn) as a, store_at(pg_dsn) as b, admin(pg_dsn) as claimer, admin(pg_dsn) as watch:
        await a.join("A", "a", serves=True, ttl=30)
        await b.join("B", "b", serves=True, ttl=30)
        a.set_fence("A", await a.claim("A", [5]))
        x = entity_in(5)
        assert await a.write([commit(x, 1)]) == [Committed()]
        tx = claimer.transaction()
        await tx.start()
        await claimer.execute("UPDATE shards SET owner = 'B', epoch = epoch + 1 WHERE shard = 5")
        outcome: list[object] = []

        async def write() -> None:
            try:
                outcome.append(await a.write([commit(x, 2)]))
            except ShardLost as e:
                outcome.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            assert a._w is not None
            await wait_for_lock_wait(watch, a._w.get_server_pid())
            await tx.commit()
        assert isinstance(outcome[0], ShardLost)
        assert outcome[0].shards == {5}
        assert len(await a.read_events("Account", x, after=0, limit=10)) == 1


async def test_a_fenced_write_in_flight_makes_a_claim_skip_the_shard_not_wait(pg_dsn: str) -> None:
    """Write first: its FOR SHARE holds the row until COMMIT; a claim skips it at once
    (SKIP LOCKED), the write commits, and the next claim takes the shard."""
    async with store_at(pg_dsn) as a, store_at(pg_dsn) as b, admin(pg_dsn) as locker, admin(pg_dsn) as watch:
        await a.join("A", "a", serves=True, ttl=0.3)
        await b.join("B", "b", serves=True, ttl=30)
        a.set_fence("A", await a.claim("A", [5, 6]))
        x = entity_in(5)

        async def a_expired() -> bool:
            return any(m.member_id == "A" and m.seen_ago > 0.35 for m in await b.members())

        await eventually(a_expired, what="A's lease to run out")
        tx = locker.transaction()
        await tx.start()
        # the write waits on this uncommitted row of its own key: a lock it meets while
        # writing rows, after its fence has read and locked the shard rows
        await locker.execute("INSERT INTO events VALUES ('Account', $1, 1, 'x', 1, '{}', 0)", x)
        outcome: list[object] = []

        async def write() -> None:
            outcome.append(await a.write([commit(x, 1)]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            assert a._w is not None
            await wait_for_lock_wait(watch, a._w.get_server_pid())  # past the fence, holding row 5
            start = time.monotonic()
            assert await b.claim("B", [5, 6]) == {6: 2}  # 5 is skipped, never waited for
            assert time.monotonic() - start < 1.0
            await tx.rollback()
        assert outcome == [[Committed()]]
        assert await b.claim("B", [5]) == {5: 2}
        with pytest.raises(ShardLost):
            await a.write([commit(x, 2)])
        assert len(await a.read_events("Account", x, after=0, limit=10)) == 1


async def test_a_new_fence_epoch_makes_the_writer_read_the_log_again(pg_dsn: str) -> None:
    """A writes e at 1, loses the shard, B appends 2, A claims it back: A's cached last
    sequence (1) is stale, so a new epoch must drop it, and A appends at 3."""
    async with store_at(pg_dsn) as a, store_at(pg_dsn) as b:
        await a.join("A", "a", serves=True, ttl=30)
        await b.join("B", "b", serves=True, ttl=30)
        e = entity_in(7)
        first = await a.claim("A", [7])
        a.set_fence("A", first)
        assert await a.write([commit(e, 1)]) == [Committed()]
        await a.release("A", first)
        second = await b.claim("B", [7])
        b.set_fence("B", second)
        assert await b.write([commit(e, 2)]) == [Committed()]
        await b.release("B", second)
        third = await a.claim("A", [7])
        assert third == {7: 5}
        a.set_fence("A", third)
        assert await a.write([commit(e, 3)]) == [Committed()]
        assert [ev.seq for ev in await a.read_events("Account", e, after=0, limit=10)] == [1, 2, 3]


# ---------------------------------------------------------------- a real zombie


class Child:
    """A member process (pg_member_child.py) and the lines it printed."""

    def __init__(self, dsn: str, member: str, mode: str, ttl: float, stop_after: int | None = None) -> None:
        argv = [sys.executable, "-m", "tests.persistence.pg_member_child", dsn, member, mode, str(ttl)]
        if stop_after is not None:
            argv.append(str(stop_after))
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n") and line.strip():  # a kill may cut the last line short
                self.lines.append(line.strip())

    def count(self, word: str) -> int:
        return sum(1 for line in list(self.lines) if line.split()[0] == word)

    def stopped(self) -> bool:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for c in made:
        with_cont = c.proc.poll() is None
        if with_cont:
            os.kill(c.proc.pid, signal.SIGCONT)
        c.stop()


def rows_of(dsn: str, member: str) -> set[tuple[str, int, int]]:
    """The member's committed rows: (entity, seq, batch number)."""
    return {
        (str(r[0]), int(r[1]), int(r[2]))  # type: ignore[call-overload]
        for r in sql_at(
            dsn,
            "SELECT entity_id, seq, (data::jsonb->>'n')::int FROM events "
            f"WHERE data::jsonb->>'member' = '{member}'",
        )
    }


async def take_everything(b: PostgresStore) -> dict[int, int]:
    """Claim every shard from ``b`` (member B); no claim may block on a paused member's locks."""
    got: dict[int, int] = {}

    async def taken() -> bool:
        start = time.monotonic()
        got.update(await b.claim("B", [s for s in range(SHARDS) if s not in got]))
        assert time.monotonic() - start < 1.5, "a claim waited on a locked row"
        return len(got) == SHARDS

    await eventually(taken, timeout=15, what="the takeover of every shard")
    return got


async def zombie_run(dsn: str, children: list[Child], mode: str, *, stop_in_tx: bool) -> tuple[int, Child]:
    """A child owns every shard and commits; it is paused past its lease (by SIGSTOP, or
    stopping itself inside a transaction), B takes over, the child resumes as a zombie.
    Returns the number of the child's rows committed after the takeover, and the child."""
    async with store_at(dsn) as b:
        await b.join("B", "b", serves=True, ttl=30)
        child = Child(dsn, "Z", mode, 0.5, stop_after=5 if stop_in_tx else None)
        children.append(child)
        await eventually(lambda: child.count("ack") >= 5, what="the child's first acks")
        if not stop_in_tx:
            os.kill(child.proc.pid, signal.SIGSTOP)
        await eventually(child.stopped, what="the child to stop")
        got = await take_everything(b)
        assert set(got) == set(range(SHARDS))
        assert {m.member_id: m.status for m in await b.members()}["Z"] == "dead"
        before = rows_of(dsn, "Z")
        outcomes_before = len(child.lines)
        os.kill(child.proc.pid, signal.SIGCONT)
        # the zombie tries at least 5 more batches (fenced: each one refused)
        if mode == "fenced":
            await eventually(lambda: child.count("lost") >= 5, what="the zombie's refused attempts")
        else:
            await eventually(lambda: len(child.lines) - outcomes_before >= 5, what="the zombie's attempts")
        child.stop()
        after = rows_of(dsn, "Z")
        assert before <= after
        # every acknowledged batch is durable (all 8 rows); a batch is all or nothing
        acked = {int(line.split()[1]) for line in child.lines if line.startswith("ack")}
        batches = [n for _, _, n in after]
        assert acked <= set(batches)
        assert all(batches.count(n) == 8 for n in set(batches))
        return len(after - before), child


async def test_a_zombie_paused_past_its_lease_commits_nothing_after_the_takeover(
    pg_dsn: str, children: list[Child]
) -> None:
    violations, _ = await zombie_run(pg_dsn, children, "fenced", stop_in_tx=False)
    assert violations == 0


async def test_a_member_paused_inside_a_transaction_blocks_no_claim_and_commits_nothing_after(
    pg_dsn: str, children: list[Child]
) -> None:
    """It holds FOR SHARE on shard rows while stopped: claims skip them (never wait) until
    the server ends its idle transaction; the batch it was in is refused when it resumes."""
    violations, child = await zombie_run(pg_dsn, children, "fenced", stop_in_tx=True)
    assert violations == 0
    assert "stopping" in child.lines


@pytest.mark.parametrize("stop_in_tx", [False, True])
async def test_negative_control_without_the_fence_the_zombie_commits_after_the_takeover(
    pg_dsn: str, children: list[Child], stop_in_tx: bool
) -> None:
    violations, _ = await zombie_run(pg_dsn, children, "unfenced", stop_in_tx=stop_in_tx)
    assert violations > 0


# ---------------------------------------------------------------- wake-ups


async def test_publish_reaches_every_subscriber_and_a_lost_listener_says_star(pg_dsn: str) -> None:
    async with store_at(pg_dsn) as a, store_at(pg_dsn) as b, admin(pg_dsn) as killer:
        seen_a: list[tuple[str, str]] = []
        seen_b: list[tuple[str, str]] = []
        a.subscribe(lambda t, i: seen_a.append((t, i)))
        b.subscribe(lambda t, i: seen_b.append((t, i)))
        with anyio.fail_after(10):
            await a._listening.wait()
            await b._listening.wait()
        await a.publish("inbox", ["3", "7"])
        await b.publish("outcome", ["sig-1"])
        want = [("inbox", "3"), ("inbox", "7"), ("outcome", "sig-1")]
        for seen in (seen_a, seen_b):  # this store included
            await eventually(lambda s=seen: sorted(s) == want, what="the wake-ups")
        # many items: several payloads under 8,000 bytes, nothing lost; a huge item is "*"
        many = [f"signal-{n:05d}" for n in range(2000)]
        await a.publish("outcome", [*many, "x" * 9000])
        await eventually(lambda: len(seen_b) == 3 + 2001, what="the large publish")
        assert seen_b[3:] == [("outcome", i) for i in many] + [("outcome", "*")]
        # kill B's listener session: B reconnects by itself and says "*" for each topic
        assert b._listener is not None
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", b._listener.get_server_pid())
        await eventually(lambda: len(seen_b) == 3 + 2001 + 4, what="the stars after a lost listener")
        assert sorted(seen_b[-4:]) == [("cancel", "*"), ("inbox", "*"), ("outcome", "*"), ("shards", "*")]
        assert b.reconnects == 1
        await a.publish("shards", ["moved"])
        await eventually(lambda: seen_b[-1] == ("shards", "moved"), what="a wake-up after the reconnect")
        await eventually(lambda: ("shards", "moved") in seen_a, what="a's own wake-up")
        # nothing is published inside a write: the writer connection never notifies
        await a.write([Accept(sig("s1"))])
    assert a._listener is None  # closed cleanly
    assert a._listen_task is None


# ---------------------------------------------------------------- shard-filtered reads


async def test_reads_by_shard(pg_dsn: str) -> None:
    async with store_at(pg_dsn) as store:
        ents = [entity_in(s) for s in range(4)]
        await store.write([Accept(sig(f"s{n}", e)) for n, e in enumerate(ents)])
        timers = [TimerRecord("Account", e, "k", "tick", "{}", 10.0 + n) for n, e in enumerate(ents)]
        outbox = (sig("to-other", entity_in(9)),)  # the target is in shard 9, the sender in 2
        await store.write([commit(ents[2], 1, set_timers=tuple(timers[2:3]), outbox=outbox)])
        await store.write(
            [commit(e, 1, set_timers=(t,)) for e, t in zip(ents, timers, strict=True) if e != ents[2]]
        )
        inbox = await store.read_inbox(after=0, limit=10, shards=[1, 3])
        assert [e.signal.entity_id for e in inbox] == [ents[1], ents[3]]
        assert len(await store.read_inbox(after=0, limit=10)) == 4
        assert await store.read_inbox(after=0, limit=10, shards=[]) == []
        assert await store.read_inbox(after=inbox[0].position, limit=10, shards=[1, 3]) == inbox[1:]
        assert [t.entity_id for t in await store.read_timers(limit=10, shards=[0, 2])] == [ents[0], ents[2]]
        assert [t.entity_id for t in await store.read_timers(limit=10, after_due=10.5, shards=[0, 2])] == [
            ents[2]
        ]
        assert len(await store.read_timers(limit=10)) == 4
        assert [o.signal.entity_id for o in await store.read_outbox(after=0, limit=10, shards=[2])] == [
            entity_in(9)
        ]
        assert await store.read_outbox(after=0, limit=10, shards=[9]) == []
        with pytest.raises(InvalidWrite):
            await store.read_inbox(after=0, limit=10, shards=["1"])  # type: ignore[list-item]
        assert await store.read_inbox(after=0, limit=10, shards=[SHARDS, -1]) == []  # no such shards
        plan = sql_at(
            pg_dsn,
            "EXPLAIN SELECT position FROM inbox WHERE shard = ANY('{1,3}') AND position > 0 "
            "ORDER BY position LIMIT 10",
        )
        assert plan  # the statement plans (the index keeps it cheap on a large inbox)
        indexes = {str(r[0]) for r in sql_at(pg_dsn, "SELECT indexname FROM pg_indexes")}
        assert {"inbox_by_shard", "timers_by_shard", "outbox_by_shard"} <= indexes


async def test_a_stale_remembered_log_end_is_checked_against_the_database(pg_dsn: str) -> None:
    # regression: a commit whose outcome the writer never learned (CommitUnknown after a
    # server restart) left its remembered log end behind the database; every later commit
    # of that entity was refused as a "sequence conflict", forever
    s1, s2, s3 = (contract.sig(f"s{i}", "x") for i in (1, 2, 3))
    async with PostgresStore(pg_dsn) as a, PostgresStore(pg_dsn) as b:
        await a.write([Accept(s1), Accept(s2), Accept(s3)])
        await a.write([contract.commit(s1, 1, contract.ev(1))])  # a remembers: the log ends at 1
        await b.write([contract.commit(s2, 2, contract.ev(2))])  # written without a knowing
        await a.write([contract.commit(s3, 3, contract.ev(3))])  # appends after what the database has
        assert [e.seq for e in await a.read_events("Account", "x", after=0, limit=10)] == [1, 2, 3]
        with pytest.raises(StoreError, match="sequence conflict"):  # a real conflict still is one
            await a.write([contract.commit(s3, 3, contract.ev(4))])
