"""Timers and activities across a SIGKILL (DESIGN.md guarantees 2, 7, 8 and 9).

A child process (``_kill_worker.py``, on the real clock: a virtual one cannot
cross processes) does the work up to a point and is killed with SIGKILL; the
parent reopens the same SQLite file and checks what recovery does. The parent
waits on conditions by polling a query under an ``anyio.fail_after`` deadline.
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from actors import ActorSystem
from persistence import SqliteStore
from tests.actors import _kill_worker as worker
from tests.actors.support import sql

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SCRIPT = Path(worker.__file__)


@asynccontextmanager
async def child(*args: str) -> AsyncIterator[Process]:
    async with await anyio.open_process([sys.executable, str(SCRIPT), *args]) as proc:
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def read_until(proc: Process, marker: str, *, seconds: float = 8) -> str:
    """Read the child's stdout until a line equal to ``marker``; fail with its stderr if it dies."""
    assert proc.stdout is not None
    seen = b""
    with anyio.fail_after(seconds):
        while marker.encode() + b"\n" not in seen:
            try:
                seen += await proc.stdout.receive()
            except anyio.EndOfStream:
                err = b""
                if proc.stderr is not None:
                    async for chunk in proc.stderr:
                        err += chunk
                pytest.fail(f"child exited before {marker!r}; stdout {seen!r}; stderr:\n{err.decode()}")
    return seen.decode()


async def sigkill(proc: Process) -> None:
    proc.send_signal(signal.SIGKILL)
    with anyio.fail_after(5):
        code = await proc.wait()
    assert code == -signal.SIGKILL


async def poll(check: Callable[[], Awaitable[bool]], *, seconds: float = 5) -> None:
    """Wait until ``check()`` holds, polling under a deadline (no fixed sleep)."""
    with anyio.fail_after(seconds):
        while not await check():  # noqa: ASYNC110 - a poll with a deadline, as the state is in another system
            await anyio.sleep(0.01)


async def test_timers_scheduled_before_a_sigkill_fire_once_after_recovery(tmp_path: Path) -> None:
    db = tmp_path / "timers.db"
    async with child("timers", str(db)) as proc:
        await read_until(proc, "scheduled")
        await sigkill(proc)

    # killed before any timer fell due: all three are stored, none fired
    stored = sql(db, "SELECT key, due_at FROM timers ORDER BY due_at")
    assert [k for k, _ in stored] == ["t1", "t2", "t3"]
    assert sql(db, "SELECT count(*) FROM events WHERE entity_type = 'KillSched'") == [(0,)]
    due = {k: dt.datetime.fromtimestamp(d, dt.UTC).isoformat() for k, d in stored}

    async with ActorSystem(SqliteStore(db), entities=[worker.Sched, worker.Job]) as system:
        ref = system.ref(worker.Sched, "s")

        async def all_rang() -> bool:
            return len(await ref.query(worker.Sched.get_rings)) >= 3

        await poll(all_rang)
        rings = await ref.query(worker.Sched.get_rings)
        assert rings == tuple((k, due[k]) for k in ("t1", "t2", "t3"))  # once each, in due order
        assert await system.store.read_timers(limit=10) == []
        assert await system.store.read_inbox(after=0, limit=10) == []

    # once each also on disk, and nothing is left to fire on another start
    assert sql(db, "SELECT count(*) FROM events WHERE entity_type = 'KillSched'") == [(3,)]
    assert sql(db, "SELECT count(*) FROM timers") == [(0,)]
    async with ActorSystem(SqliteStore(db), entities=[worker.Sched, worker.Job]) as system:
        assert system._kernel.timers.fired == 0
        assert len(system._kernel.timers) == 0
        assert len(await system.ref(worker.Sched, "s").query(worker.Sched.get_rings)) == 3


async def test_an_activity_completed_before_a_sigkill_is_not_called_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "activity.db"
    counter = tmp_path / "counter.txt"
    async with child("activity", str(db), str(counter)) as proc:
        out = await read_until(proc, "in-second")
        assert "told" in out
        await sigkill(proc)

    assert counter.read_text().splitlines() == ["called"]
    # the first step is journaled, the signal still in the inbox, nothing committed
    assert sql(db, "SELECT invocation_id, step, kind, name FROM journal") == [
        ("k:job-1", 1, "activity", "first")
    ]
    assert sql(db, "SELECT entity_type, signal_id, handler FROM inbox") == [("KillJob", "k:job-1", "process")]
    assert sql(db, "SELECT count(*) FROM events") == [(0,)]

    monkeypatch.setattr(worker, "SECOND_BLOCKS", False)
    async with ActorSystem(SqliteStore(db), entities=[worker.Sched, worker.Job]) as system:
        ref = system.ref(worker.Job, "j")

        async def finished() -> bool:
            return await ref.query(worker.Job.get_result) is not None

        await poll(finished)
        assert await ref.query(worker.Job.get_result) == "first-result+second(first-result)"
        # the recovered run used the recorded result of the first activity
        assert counter.read_text().splitlines() == ["called"]
        assert await system.store.read_inbox(after=0, limit=10) == []
        mark = await system.store.read_mark("KillJob", "j", "k:job-1")
        assert mark is not None
    assert sql(db, "SELECT count(*) FROM journal") == [(0,)]
    assert sql(db, "SELECT count(*) FROM events WHERE entity_type = 'KillJob'") == [(1,)]
