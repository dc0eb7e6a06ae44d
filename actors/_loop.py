"""The actor loop: drains an actor's mailbox and handles each signal in named
phases: activate (``Actor.ensure_active``), handle one run (here), commit and
finish (``actors._committing``); a crash goes to ``actors._restarts``, a keyed
repeat to ``actors._repeats``, a parking invocation to ``actors._parking``.
One :class:`Loop` per system implements the actor's ``Runtime``. Internal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio

from actors import _outcome as outcome
from actors._actor import Actor
from actors._committing import Committing
from actors._envelope import Envelope, closed_error
from actors._ids import safe_repr
from actors._invocation import Invocation
from actors._kernel import Kernel
from actors._marks import MarkReads
from actors._parking import Parking
from actors._pump import First, Pump, arguments, internal_error, returned
from actors._repeats import Repeats
from actors._restarts import Restarts
from actors._run import Run
from actors._supervision import Step
from actors.errors import Cancelled, CorruptRecord, HandlerFailed, Rejected, SignalTaken, StoreError
from persistence.store import JournalEntry


def _cancelled_by(scope: anyio.CancelScope | None, error: BaseException) -> bool:
    """Whether ``error`` is the runtime's own cancellation (not a handler's helper task's)."""
    if not isinstance(error, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return (scope is not None and scope.cancel_called) or (task is not None and task.cancelling() > 0)


class Loop:
    """Runs the actors of one system: their drain loops and the phases of one signal."""

    __slots__ = ("commits", "kernel", "marks", "parking", "pump", "repeats", "restarts")

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.parking = Parking(kernel)
        self.commits = Committing(kernel, self.parking)
        self.marks = MarkReads(kernel)
        """Processed-mark reads of one turn of the event loop, in one store read."""
        self.repeats = Repeats(kernel, self.marks)
        self.restarts = Restarts(kernel)
        self.pump = Pump(kernel, self.commits, self.drain, self.repeats)

    def start(self, actor: Actor) -> None:
        """Start handling the actor's mailbox: without a task while its messages allow
        (``actors._pump``), else in a drain task."""
        if not (actor.mailbox and self.pump.start(actor)):
            actor.task = self.kernel.tasks.spawn_drain(self.drain(actor))

    # ------------------------------------------------------------ the actor's Runtime
    async def checkpoint(self, actor: Actor, inv: Invocation, entries: list[JournalEntry]) -> None:
        """Commit what ``inv`` did so far with ``entries`` of its journal."""
        await self.commits.checkpoint(actor, inv, entries)

    async def park(
        self,
        actor: Actor,
        inv: Invocation,
        predicate: Callable[[], object] | None,
        deadline: float | None,
        deadline_value: object,
        watch: str | None,
    ) -> Any:
        """Park ``inv`` until its wait is over; returns the wake value."""
        return await self.parking.park(actor, inv, predicate, deadline, deadline_value, watch)

    async def drain(self, actor: Actor, first: tuple[Envelope, First] | None = None) -> None:
        """Handle the actor's mailbox (resumed invocations first) until it is empty;
        ``first``: a message the pump hands over, to go on with from where it stopped.

        ``Actor.pause`` cancels this task natively when the system closes; a commit under
        way holds the pause until it is written and answered (``Actor.hold``).
        """
        try:
            while True:  # the containers are read each turn: a first append replaces them
                start: First | None = None
                if first is not None:
                    (env, start), first = first, None
                elif actor.resumable:  # a parked invocation whose wait is over goes first
                    await self.parking.resume(actor, actor.resumable.popleft())
                    continue
                elif not actor.mailbox:
                    break
                else:
                    env = actor.mailbox.popleft()
                    if env.handler.is_async:  # may park: runs in a task of its own
                        await self._start_run(actor, env)
                        continue
                try:
                    await self.handle(actor, env, first=start)
                except anyio.get_cancelled_exc_class():
                    actor.rollback()
                    actor.deactivate()
                    if env.reply is not None:
                        env.reply.fail(closed_error(env))
                    raise
                except Exception as e:  # a bug in the runtime: keep the system alive, say so
                    internal_error(self.kernel, actor, env, e)
                finally:
                    actor.handled(env)
        finally:
            actor.drained()
            actor.task = None
            actor.running = False
            actor.last_active = self.kernel.wall()
            self.kernel.work.dec()

    # ------------------------------------------------------------ invocations that may park
    async def _start_run(self, actor: Actor, env: Envelope) -> None:
        """Run an async handler in a task of its own; wait until it parks or ends."""
        kernel = self.kernel
        if not kernel.tasks.live:
            if env.reply is not None:
                env.reply.fail(closed_error(env))
            actor.handled(env)
            return
        run = Run(env)
        actor.add_run(run)
        run.task = kernel.tasks.spawn_drain(self._run_task(actor, run))
        await run.segment

    async def _run_task(self, actor: Actor, run: Run) -> None:
        env = run.env
        sid = env.signal.signal_id
        outcomes = self.kernel.outcomes
        parking = self.parking
        outcomes.cancellers[sid] = lambda reason: parking.cancel(actor, run, reason)
        early = outcomes.requested.pop(sid, None)
        if early is not None:
            run.flag.request(early)
        try:
            with anyio.CancelScope() as scope:
                run.scope = scope
                if run.cancel_pending:
                    scope.cancel()
                try:
                    await self.handle(actor, env, run)
                except anyio.get_cancelled_exc_class():
                    if env.reply is not None:
                        env.reply.fail(closed_error(env))
                    raise
                except Exception as e:  # a bug in the runtime: keep the system alive, say so
                    internal_error(self.kernel, actor, env, e)
        finally:
            actor.handled(env)
            run.end()
            actor.runs.discard(run)
            if outcomes.cancellers.get(sid) is not None:
                del outcomes.cancellers[sid]
            if not run.segment.done():
                run.segment.set_result(None)

    # ------------------------------------------------------------ one signal, attempt by attempt
    async def handle(
        self, actor: Actor, env: Envelope, run: Run | None = None, *, first: First | None = None
    ) -> None:
        """Handle one signal, attempt by attempt (a keyed one is first checked for a
        repeat); ``first``: how its first attempt ended in the pump."""
        store_failures = 0
        attempt = runs = 1
        checked = not env.keyed  # a keyed signal may be a repeat: look for its mark first
        taken = False
        while True:
            try:
                if first is not None:
                    started, first = first, None
                    if isinstance(started, Step):
                        step = started
                    else:
                        step = await self.failed(actor, env, *started, 1)
                    checked = True
                else:
                    await actor.ensure_active()
                    if not checked:
                        if self.repeats.tell_conflict(actor, env) or await self.repeats.answer(actor, env):
                            return
                        checked = True
                    step = await self.handle_one(actor, env, attempt, runs, run)
            except StoreError as e:
                if not env.from_inbox or isinstance(e, CorruptRecord):
                    self.kernel.log.error(
                        "%r cannot handle %s: %s", actor, env.signal.handler, e, extra=actor.extra(env, runs)
                    )
                    if env.reply is not None:
                        env.reply.fail(e)
                    return
                step = Step.STORE_FAILED
            if step is Step.DONE or actor.stopped_until is not None:
                return
            if step is Step.TAKEN:  # processed already: its mark answers it
                if taken:  # looked again and found no mark (pruned since): nothing more to do
                    if env.reply is not None:
                        env.reply.fail(SignalTaken(f"{env.signal.signal_id!r} was processed already"))
                    return
                taken, checked = True, False
                runs += 1
                continue
            if step is Step.STORE_FAILED and not self.kernel.shards.owns(actor.spec.name, actor.id):
                return  # its shard moved to another member: that one runs it from the inbox
            runs += 1
            if step is Step.RETRY:
                attempt += 1
                continue
            # a store failure: the commit may have landed all the same (its answer lost), so
            # a keyed signal looks for its mark again before it runs again
            checked = not env.keyed
            store_failures += 1
            delay = self.kernel.supervision.backoff(store_failures)
            self.kernel.log.warning(
                "%r: store failed while handling %s; retry %d in %.3fs",
                actor,
                env.signal.handler,
                store_failures,
                delay.total_seconds(),
                extra=actor.extra(env, runs),
            )
            async with self.kernel.work.parked():
                await self.kernel.clock.sleep(delay.total_seconds())

    async def handle_one(
        self, actor: Actor, env: Envelope, attempt: int, runs: int, run: Run | None = None
    ) -> Step:
        """One run of the handler, then its commit (or the supervisor's decision).

        The handler runs on arguments decoded from what was stored (unless they are
        immutable values), so neither its caller nor an earlier attempt can change
        them; its result is encoded (checked and sized, as a repeat would return it)
        and handed out as a copy, so no caller holds a piece of the live state.
        """
        entity = await actor.ensure_active()
        inv = Invocation(actor, env, runs)
        if run is not None:
            inv.runner = run
            run.inv = inv
            inv.cancel_flag = run.flag
            if runs > 1 or env.recovered:  # it may have run (and parked) before: replay its segments
                scratch = await inv.prepare_rerun()
                if scratch is not None:
                    entity = scratch
        inv.target = entity
        scope = run.scope if run is not None else None  # a drain is cancelled natively
        obs = self.kernel.observer
        if obs.active:
            inv.token = obs.invocation_started(inv.info)
        h = env.handler
        spec = actor.spec
        if not spec.shallow_copy and actor.backup is None and inv.replay is None:
            actor.before_first_emit()  # in-place edits of mutable fields become detectable
        object.__setattr__(entity, "_actors_ctx", inv)
        try:
            result = h.call(entity, arguments(self.kernel, env))
            if h.is_async:
                result = await result
            text, result = returned(self.kernel, actor, inv, result)
        except BaseException as e:
            return await self.failed(actor, env, inv, e, attempt, scope)
        finally:
            object.__setattr__(entity, "_actors_ctx", None)
        return await self.commits.commit(actor, env, inv, text, None, result)

    async def failed(
        self,
        actor: Actor,
        env: Envelope,
        inv: Invocation,
        e: BaseException,
        attempt: int,
        scope: anyio.CancelScope | None = None,
    ) -> Step:
        """The handler of ``inv`` raised ``e``: a rejection or cancellation is committed as
        its outcome, the runtime's own cancellation pauses it (raised again), anything
        else is a crash for the supervisor (``Step.RETRY``: it runs again)."""
        replaying = inv.replay is not None and inv.replay.replaying
        if isinstance(e, Rejected | Cancelled):
            if self.kernel.tasks.closing:
                return self._paused(actor, env, inv)
            if replaying:  # refused or cancelled inside committed segments
                how = "rejected" if isinstance(e, Rejected) else "cancelled"
                error = inv.nondeterminism(f"it is {how} in a replayed segment")
                return await self.restarts.crashed(actor, env, inv, error, attempt)
            if isinstance(e, Cancelled):
                return await self.commits.commit(actor, env, inv, outcome.encode_cancelled(e), e, None)
            if not getattr(e, "commit", False):
                actor.rollback()
                inv.drop_effects()
            return await self.commits.commit(actor, env, inv, outcome.encode_error("rejected", e), e, None)
        if isinstance(e, Exception):
            if self.kernel.tasks.closing:
                return self._paused(actor, env, inv)
            if isinstance(e, StoreError) and not isinstance(e, CorruptRecord):
                # the store failed under a journaled step: the world's fault, not the handler's;
                # not counted as a crash: retried from the inbox until the store recovers
                actor.rollback()
                actor.deactivate()
                actor.ended(inv, "crashed", e)
                raise e
            return await self.restarts.crashed(actor, env, inv, e, attempt)
        if _cancelled_by(scope, e):
            actor.rollback()
            actor.deactivate()
            actor.ended(inv, "paused", None)
            raise e
        if isinstance(e, KeyboardInterrupt | SystemExit):
            actor.rollback()
            actor.deactivate()
            actor.ended(inv, "crashed", e)
            if env.reply is not None:
                name = f"{actor.spec.name}.{env.handler.name}"
                env.reply.fail(
                    HandlerFailed(f"{actor.spec.name}/{actor.id}.{env.handler.name} raised {safe_repr(e)}",
                                  handler=name, attempts=attempt)
                )  # fmt: skip
            raise e
        # any other BaseException (a custom one, a helper task's cancellation) is a crash
        return await self.restarts.crashed(actor, env, inv, e, attempt)

    def _paused(self, actor: Actor, env: Envelope, inv: Invocation) -> Step:
        """The system closed under a running handler: keep nothing, answer truthfully."""
        actor.rollback()
        actor.deactivate()
        actor.ended(inv, "paused", None)
        if env.reply is not None:
            env.reply.fail(closed_error(env))
        return Step.DONE
