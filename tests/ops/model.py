"""The entity the ops tests inspect, and a scenario that fills a store with every kind of record.

``populate`` leaves: a ledger with a long history and snapshots, entities with
owners (for ``--where``), a pending timer, a dead letter, an in-flight invocation
with one journaled step (its second activity blocks on a :class:`Gate`) and a
signal queued behind it in the inbox. :data:`EXPECTED` says what went in, so
tests compute what they should read back rather than hard-coding it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import attrs

from actors import ActorSystem, Entity, HandlerFailed, SupervisorPolicy, applies, event_type, signal
from persistence import PostgresStore, SqliteStore
from persistence.inspect import inspector_for, is_dsn


@event_type("ops.noted")
@attrs.frozen
class Noted:
    text: str


@event_type("ops.claimed")
@attrs.frozen
class Claimed:
    owner: str


class Gate:
    """Holds the second activity of ``Ledger.work`` until opened."""

    def __init__(self) -> None:
        self.opened = anyio.Event()

    async def wait(self) -> str:
        await self.opened.wait()
        return "opened"


class Fuse:
    """``Ledger.explode`` crashes while armed (so a retried dead letter can succeed)."""

    def __init__(self) -> None:
        self.armed = True


async def stamp(label: str) -> str:
    """The first activity of ``Ledger.work``: its result is journaled."""
    return f"stamped {label}"


@attrs.define
class Ledger(Entity):
    """Entries in order (so a wrong replay order shows), a count and an owner."""

    snapshot_every = 3
    entries: tuple[str, ...] = ()
    count: int = 0
    owner: str = ""

    @signal
    def note(self, text: str) -> int:
        self.emit(Noted(text))
        return self.count

    @signal
    def claim(self, owner: str) -> None:
        self.emit(Claimed(owner))

    @signal
    def remind_later(self) -> str:
        return self.schedule(Ledger.note, "reminder", after=dt.timedelta(hours=1), key="remind")

    @signal
    def explode(self, why: str) -> None:
        if self.resource(Fuse).armed:
            raise RuntimeError(why)
        self.emit(Noted(why))

    @signal
    async def work(self, label: str) -> str:
        first = await self.run(stamp, label)
        second = await self.run(self.resource(Gate).wait)
        self.emit(Noted(f"{first}/{second}"))
        return second

    @applies
    def _noted(self, e: Noted) -> None:
        self.entries = (*self.entries, e.text)
        self.count += 1

    @applies
    def _claimed(self, e: Claimed) -> None:
        self.owner = e.owner


LONG = [f"entry-{i}" for i in range(1, 11)]
"""The notes of ledger ``long``, in order."""

EXPECTED = {
    "long": {"notes": LONG},
    "owned-1": {"owner": "bob", "notes": ["x"]},
    "owned-2": {"owner": "alice", "notes": []},
    "owned-3": {"owner": "bob", "notes": []},
}
"""What ``populate`` writes per ledger id."""
TIMER = ("owned-1", "remind")
DEAD = ("owned-2", "explode", "kaput")
WORKER = ("worker", "job-7", "queued behind")
POLICY = SupervisorPolicy(max_attempts=1)


def system(path: Path | str, gate: Gate) -> ActorSystem:
    """The system every ops test runs: the ledger, no retries, the gate as a resource.
    ``path`` is a SQLite file or a ``postgresql://`` DSN."""
    store = PostgresStore(path) if is_dsn(path) else SqliteStore(path)
    return ActorSystem(store, [Ledger], supervision=POLICY, resources={Gate: gate, Fuse: Fuse()})


@asynccontextmanager
async def running(path: Path | str) -> AsyncIterator[ActorSystem]:
    """A populated system on ``path`` (a file or a DSN), in this process; the gate opens
    on the way out."""
    gate = Gate()
    async with system(path, gate) as s:
        await populate(s, path)
        try:
            yield s
        finally:
            gate.opened.set()
            await s.wait_idle()


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, deadline: float = 10.0) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``deadline`` seconds."""
    try:
        with anyio.fail_after(deadline):
            while not await check():  # noqa: ASYNC110 (polls a file another process writes)
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"still waiting after {deadline}s for {what}") from None


async def populate(s: ActorSystem, path: Path | str) -> None:
    """Fill the running system's store with the records described in the module docstring."""
    for entity_id, want in EXPECTED.items():
        r = s.ref(Ledger, entity_id)
        if "owner" in want:
            await r.ask(Ledger.claim, want["owner"])
        for text in want["notes"]:
            await r.ask(Ledger.note, text)
    await s.ref(Ledger, TIMER[0]).ask(Ledger.remind_later)
    try:
        await s.ref(Ledger, DEAD[0]).ask(Ledger.explode, DEAD[2])
    except HandlerFailed:
        pass
    else:
        raise AssertionError("explode should have been dead-lettered")
    w = s.ref(Ledger, WORKER[0])
    await w.tell(Ledger.work, WORKER[1])
    await w.tell(Ledger.note, WORKER[2])

    async def settled() -> bool:
        async with inspector_for(path) as ins:
            journal = await ins.read_journals()
            snaps = await ins.read_snapshots("Ledger", "long")
        return len(journal) == 1 and bool(snaps) and snaps[0].seq == 9

    await wait_for(settled, "the worker's first step journaled and the long ledger's snapshot at 9")
