"""Parked invocations: an async handler that waits (``wait_until``, ``sleep``, a
child's result) lets its actor go on with other messages, and resumes as the
entity's only writer when its predicate holds, its deadline passes or it is
cancelled. Internal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from actors._actor import Actor
from actors._clock import from_timestamp
from actors._entity import Entity
from actors._ids import parse_start_id
from actors._invocation import Invocation
from actors._journal import CANCEL_STEP, cancel_reason
from actors._kernel import Kernel
from actors._run import Run
from actors._spec import READ_ONLY
from actors.errors import StoreError


class Parking:
    """Parks, wakes and resumes the invocations of every actor of one system."""

    __slots__ = ("kernel",)

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def park(
        self,
        actor: Actor,
        inv: Invocation,
        predicate: Callable[[], object] | None,
        deadline: float | None,
        deadline_value: object,
        watch: str | None,
    ) -> Any:
        """Park ``inv`` until its wait is over; the entity serves others meanwhile."""
        run = inv.runner
        assert run is not None
        loop = self.kernel.tasks.loop
        run.parked, run.woken, run.value, run.error = True, False, None, None
        run.predicate = predicate
        run.go = loop.create_future()
        kernel = self.kernel
        try:
            if run.flag.active:
                run.flag.delivered = True
                self.wake(actor, run, None, run.flag.error())
            if watch is not None:
                run.unwatch = kernel.outcomes.watch(watch, lambda text: self.wake(actor, run, text))
                etype, eid = parse_start_id(watch)
                mark = await kernel.store.read_mark(etype, eid, watch)
                if mark is not None:
                    self.wake(actor, run, mark.outcome)
            if kernel.shards.clustered and not run.woken:
                self._watch_store(actor, run, watch)
            if deadline is not None and not run.woken:
                if kernel.clock.now() >= from_timestamp(deadline):
                    self.wake(actor, run, deadline_value)
                else:
                    run.timer = kernel.tasks.spawn_task(self._deadline(actor, run, deadline, deadline_value))
            if predicate is not None and not run.woken and actor.entity is not None:
                self.evaluate(actor, run, actor.entity)
            if not run.woken:  # let the entity go on: the drain takes its next message
                run.holding = False
                if not run.segment.done():  # a drain paused meanwhile cancelled its wait on it
                    run.segment.set_result(None)
                await run.go  # a pause cancels this run's scope too: it ends here
            # resumed: the only running writer of the entity again
            if (run.error is None and actor.entity is not None) or (
                run.error is not None and actor.entity is not None and inv.target is not None
            ):
                actor.adopt(inv)
            if predicate is not None and run.error is None and run.value is deadline_value:
                # the deadline woke it; a signal committed before it resumed may have made
                # the condition true: the condition wins (the handler never sees "timed
                # out" with its condition holding)
                live = actor.entity
                if live is not None and _holds(actor, run, live):
                    run.value = True
        finally:
            run.unpark()
        if run.error is not None:
            raise run.error
        return run.value

    async def _deadline(self, actor: Actor, run: Run, deadline: float, value: object) -> None:
        await self.kernel.clock.sleep_until(from_timestamp(deadline))
        self.wake(actor, run, value)

    def cancel(self, actor: Actor, run: Run, reason: str) -> None:
        """A cancellation request for ``run``: a parked one wakes with ``Cancelled``."""
        run.flag.request(reason)
        if run.parked:
            run.flag.delivered = True
            self.wake(actor, run, None, run.flag.error())

    def _watch_store(self, actor: Actor, run: Run, watch: str | None) -> None:
        """On a shared store, what a parked invocation waits for may happen on another
        member: a child's outcome committed there, a cancellation recorded by a client.
        Read them from the store when a member says so, and now and then anyway."""
        kernel = self.kernel
        nudged = anyio.Event()
        off = kernel.outcomes.on_poke(watch, nudged.set) if watch is not None else (lambda: None)
        wakes = bool(getattr(kernel.store, "wakes", True))

        async def poll() -> None:
            nonlocal nudged
            s = run.env.signal
            delay = 0.01
            while run.parked and not run.woken:
                with anyio.move_on_after(delay):
                    await nudged.wait()
                nudged = anyio.Event()
                delay = min(delay * 2, 1.0)
                try:
                    if watch is not None:
                        etype, eid = parse_start_id(watch)
                        mark = await kernel.store.read_mark(etype, eid, watch)
                        if mark is not None:
                            self.wake(actor, run, mark.outcome)
                            return
                    if not wakes and not run.flag.active:  # no wake-up for a cancel: look for one
                        for e in await kernel.store.read_journal(s.entity_type, s.entity_id, s.signal_id):
                            if e.step == CANCEL_STEP:
                                kernel.outcomes.cancel(s.signal_id, cancel_reason(e.result))
                except StoreError as e:  # the store is down: read again later
                    kernel.log.warning("%r: reading what a parked invocation waits for failed: %s", actor, e)

        task = kernel.tasks.spawn_task(poll())
        before = run.unwatch

        def unwatch() -> None:
            if before is not None:
                before()
            off()
            if task is not None:
                task.cancel()

        run.unwatch = unwatch

    def wake(self, actor: Actor, run: Run, value: object, error: BaseException | None = None) -> None:
        """A parked invocation's wait is over (predicate, deadline, child, cancel)."""
        if not run.parked or run.woken:
            return
        run.woken = True
        run.value, run.error = value, error
        if not run.holding:
            actor.add_resumable(run)
            actor.kick()

    async def resume(self, actor: Actor, run: Run) -> None:
        """Let a woken invocation run its next segment; wait until it parks or ends."""
        if not run.parked or run.go is None:
            return
        run.segment = self.kernel.tasks.loop.create_future()
        run.holding = True
        try:
            await actor.ensure_active()
        except StoreError as e:
            run.value, run.error = None, e
        go = run.go
        if go is None or go.done():  # a pause cancelled the run meanwhile: it ends on its own
            return
        go.set_result(None)
        await run.segment

    def check(self, actor: Actor) -> None:
        """After a commit: wake the parked invocations whose predicate now holds."""
        live = actor.entity
        if live is None or not actor.runs:  # most actors have nothing parked
            return
        for run in list(actor.runs):
            if not run.parked or run.woken or run.predicate is None:
                continue
            self.evaluate(actor, run, live)

    def evaluate(self, actor: Actor, run: Run, live: Entity) -> None:
        """Wake ``run`` if its predicate holds on ``live`` (read-only)."""
        try:
            holds = _holds(actor, run, live)
        except Exception as e:
            self.wake(actor, run, None, e)
            return
        if holds:
            self.wake(actor, run, True)


def _holds(actor: Actor, run: Run, live: Entity) -> bool:
    """Whether ``run``'s predicate holds on ``live``, read through the invocation's own
    object (its fields set from ``live``), which nothing may change meanwhile."""
    inv = run.inv
    assert inv is not None
    assert inv.target is not None
    assert run.predicate is not None
    obj = inv.target
    if obj is not live:
        for name in actor.spec.field_names:
            object.__setattr__(obj, name, getattr(live, name))
    before = getattr(obj, "_actors_ctx", None)
    object.__setattr__(obj, "_actors_ctx", READ_ONLY)
    try:
        return bool(run.predicate())
    finally:
        object.__setattr__(obj, "_actors_ctx", before)
