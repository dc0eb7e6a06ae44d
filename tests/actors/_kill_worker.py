"""Child process of test_kill_timers_activities: runs a system on the real clock until SIGKILLed.

``python _kill_worker.py timers DB`` (DB: a SQLite path or a PostgreSQL DSN): schedules
three timers, prints ``scheduled``.
``python _kill_worker.py activity DB COUNTER``: tells ``Job.process``; its first
activity appends a line to COUNTER, its second prints ``in-second`` and blocks.
Either way the child then waits to be killed. The parent imports this module
for the same entity classes (with ``SECOND_BLOCKS = False``) to recover the store.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import anyio
import attrs

from actors import ActorSystem, Entity, applies, event_type, query, signal

SECOND_BLOCKS = True
"""Whether the second activity blocks forever (in the child) or answers (in the parent)."""

TIMERS = (("t1", 700), ("t2", 850), ("t3", 1000))
"""Timer keys and their delays in milliseconds."""


@event_type("killtest.rang")
@attrs.frozen
class Rang:
    name: str
    due: str


@event_type("killtest.finished")
@attrs.frozen
class Finished:
    result: str


@attrs.define
class Sched(Entity):
    entity_name = "KillSched"
    rings: tuple[tuple[str, str], ...] = ()

    @signal
    def arm(self) -> None:
        for name, ms in TIMERS:
            self.schedule(Sched.ring, name, after=dt.timedelta(milliseconds=ms), key=name)

    @signal
    def ring(self, name: str) -> None:
        self.emit(Rang(name, self.now().isoformat()))

    @applies
    def _rang(self, e: Rang) -> None:
        self.rings = (*self.rings, (e.name, e.due))

    @query
    def get_rings(self) -> tuple[tuple[str, str], ...]:
        return self.rings


def first(counter: str) -> str:
    """The side effect to count: one line per call."""
    with open(counter, "a") as f:
        f.write("called\n")
    return "first-result"


async def second(previous: str) -> str:
    if SECOND_BLOCKS:
        print("in-second", flush=True)  # after the first activity's journal commit
        await anyio.sleep_forever()
    return f"second({previous})"


@attrs.define
class Job(Entity):
    entity_name = "KillJob"
    result: str | None = None

    @signal
    async def process(self, counter: str) -> str:
        a = await self.run(first, counter)
        b = await self.run(second, a)
        self.emit(Finished(f"{a}+{b}"))
        return b

    @applies
    def _finished(self, e: Finished) -> None:
        self.result = e.result

    @query
    def get_result(self) -> str | None:
        return self.result


async def child(mode: str, db: str, counter: str | None) -> None:
    from tests._stores import store_at  # importable once __main__ put the repository on sys.path

    async with ActorSystem(store_at(db), entities=[Sched, Job]) as system:
        if mode == "timers":
            await system.ref(Sched, "s").ask(Sched.arm)
            print("scheduled", flush=True)
        else:
            assert counter is not None
            await system.ref(Job, "j").options(key="job-1").tell(Job.process, counter)
            print("told", flush=True)
        await anyio.sleep_forever()  # until SIGKILL


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.actors import _kill_worker as worker  # the same classes the parent uses

    anyio.run(worker.child, sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
