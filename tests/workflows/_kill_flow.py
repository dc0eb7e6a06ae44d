"""Child process of test_kill_workflows: runs a workflow on the real clock until SIGKILLed.

``python _kill_flow.py wait DB COUNTER``: starts ``Flow.request(50)`` (it runs an activity
that appends a line to COUNTER, then waits for a decision), then ``bump(500)`` changes
the field its pre-wait branch read; prints the handle id once the bump is committed.
``python _kill_flow.py sleep DB``: recovers the store, ``decide("ann")``; prints
``sleeping`` once the workflow is in its durable sleep. Either way it then waits to be
killed. The parent imports this module for the entity class.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import anyio
import attrs

from actors import ActorSystem, Entity, applies, event_type, query, signal

SLEEP = dt.timedelta(milliseconds=1500)


@event_type("killflow.asked")
@attrs.frozen
class Asked:
    amount: int


@event_type("killflow.decided")
@attrs.frozen
class Decided:
    by: str


@event_type("killflow.logged")
@attrs.frozen
class Logged:
    text: str


def count(path: str) -> None:
    with Path(path).open("a") as f:
        f.write("called\n")


@attrs.define
class Flow(Entity):
    entity_name = "KillFlow"
    amount: int = 0
    decision: str | None = None
    log: tuple[str, ...] = ()

    @signal
    async def request(self, amount: int, counter: str) -> str:
        self.emit(Asked(amount))
        branch = "big" if self.amount > 100 else "small"
        await self.run(count, counter)
        self.emit(Logged(f"pre-wait {branch}"))
        await self.wait_until(lambda: self.decision is not None)
        self.emit(Logged(f"post-wait {branch}"))
        await self.sleep(SLEEP)
        self.emit(Logged("woke"))
        return f"{branch}:{self.decision}"

    @signal
    def bump(self, amount: int) -> None:
        self.emit(Asked(amount))

    @signal
    def decide(self, by: str) -> None:
        self.emit(Decided(by))

    @query
    def state(self) -> tuple[int, str | None, tuple[str, ...]]:
        return self.amount, self.decision, self.log

    @applies
    def _asked(self, e: Asked) -> None:
        self.amount = e.amount

    @applies
    def _decided(self, e: Decided) -> None:
        self.decision = e.by

    @applies
    def _logged(self, e: Logged) -> None:
        self.log = (*self.log, e.text)


@attrs.define
class Kid(Entity):
    """A child: runs an activity (counted), then waits for ``go`` before it answers."""

    entity_name = "KillKid"
    go: bool = False

    @signal
    async def work(self, n: int, counter: str) -> int:
        await self.run(count, counter)
        await self.wait_until(lambda: self.go)
        return n * n

    @signal
    def release(self) -> None:
        self.emit(Decided("go"))

    @applies
    def _decided(self, e: Decided) -> None:
        self.go = True


@attrs.define
class Parent(Entity):
    """Starts three kids and awaits their results (each await is a checkpoint)."""

    entity_name = "KillParent"
    log: tuple[str, ...] = ()

    @signal
    async def fan(self, counter: str) -> int:
        handles = [await self.ref(Kid, f"k{i}").start(Kid.work, i + 1, counter) for i in range(3)]
        self.emit(Logged("started"))
        total = 0
        for h in handles:
            total += await h.result()
        self.emit(Logged(f"total {total}"))
        return total

    @query
    def state(self) -> tuple[str, ...]:
        return self.log

    @applies
    def _logged(self, e: Logged) -> None:
        self.log = (*self.log, e.text)


async def main() -> None:
    from tests._stores import store_at

    stage, db = sys.argv[1], sys.argv[2]
    async with ActorSystem(store_at(db), [Flow, Kid, Parent]) as system:
        ref = system.ref(Flow, "f")
        if stage == "children":
            handle = await system.ref(Parent, "p").start(Parent.fan, sys.argv[3])
            await system.wait_idle()  # the kids ran their activity and wait; the parent awaits k0
            print(handle.id, flush=True)
        elif stage == "children2":
            await system.wait_idle()  # recovered: the kids re-ran to their waits, the parent awaits
            await system.ref(Kid, "k0").tell(Kid.release)
            await system.wait_idle()  # k0 answered; the parent took it and awaits k1
            print("awaiting k1", flush=True)
        elif stage == "wait":
            handle = await ref.start(Flow.request, 50, sys.argv[3])
            await system.wait_idle()  # parked in its wait
            assert (await ref.query(Flow.state))[2] == ("pre-wait small",)
            await ref.tell(Flow.bump, 500)
            await system.wait_idle()
            assert (await ref.query(Flow.state))[0] == 500
            print(handle.id, flush=True)
        else:
            await system.wait_idle()  # the recovered workflow re-ran and parked again
            await ref.tell(Flow.decide, "ann")
            await system.wait_idle()  # resumed, then parked in its sleep
            assert "post-wait small" in (await ref.query(Flow.state))[2]
            print("sleeping", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main)
