"""The actor: one entity's mailbox and the loop that handles it. Internal.

An actor exists while its entity is active. Its mailbox is a deque; a drain task
is started when the first message arrives and ends when the mailbox is empty, so
an idle actor costs no task. Handling one signal runs in named phases: activate
(snapshot + tail replay, ``actors._replay``), handle (run the handler, roll back on
failure), commit (events, mark, timers and outbox in one write) and finish (answer
the caller). A crash goes to the supervisor's decision (``actors._supervision``).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio

from actors import _outcome as outcome
from actors import _replay
from actors._activities import CancelFlag
from actors._clock import from_timestamp
from actors._entity import Entity
from actors._envelope import Envelope, closed_error
from actors._ids import conflict_error, parse_start_id, safe_repr
from actors._invocation import Invocation
from actors._kernel import Kernel
from actors._spec import IMMUTABLE_VALUES, READ_ONLY, EntitySpec
from actors._supervision import Step, failure_of, write_dead_letter
from actors._supervisor import DeadLetter, Retry, Stop
from actors.errors import (
    ActorsError,
    Cancelled,
    CorruptRecord,
    DefinitionError,
    HandlerFailed,
    Rejected,
    StoreError,
)
from actors.observe import Outcome
from persistence.store import Commit, Committed, Journal, JournalEntry, Write


def _cancelled_by(scope: anyio.CancelScope | None, error: BaseException) -> bool:
    """Whether ``error`` is the runtime's own cancellation (not a handler's helper task's)."""
    if not isinstance(error, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return (scope is not None and scope.cancel_called) or (task is not None and task.cancelling() > 0)


class Actor:
    """One active entity: its state, its mailbox and its supervision record."""

    __slots__ = (
        "_activating",
        "_scope",
        "asking",
        "backup",
        "crashes",
        "entity",
        "held",
        "id",
        "kernel",
        "last_active",
        "mailbox",
        "resumable",
        "running",
        "runs",
        "seq",
        "snap_seq",
        "spec",
        "stopped_until",
        "telling",
        "view",
    )

    def __init__(self, kernel: Kernel, spec: EntitySpec, entity_id: str) -> None:
        self.kernel = kernel
        self.spec = spec
        self.id = entity_id
        self.mailbox: deque[Envelope] = deque()
        self.running = False
        self.entity: Entity | None = None
        self.view: Entity | None = None
        """The committed state, which queries read."""
        self.seq = 0
        self.snap_seq = 0
        self.backup: Entity | None = None
        self.last_active = kernel.clock.now()
        self.crashes: list[float] = []  # monotonic seconds; a list, not a deque: 56 bytes when empty
        self.stopped_until: dt.datetime | None = None
        self.held: list[Envelope] = []
        """Inbox signals that came while stopped; delivered in order when it resumes."""
        self._activating: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self.asking: dict[str, str] = {}
        """Keyed asks not yet handled (they are not in the inbox): id -> fingerprint."""
        self.telling: dict[str, str] = {}
        """Keyed tells from being accepted until handled: id -> fingerprint."""
        self.runs: set[Run] = set()
        """Invocations of async handlers in progress (running or parked)."""
        self.resumable: deque[Run] = deque()
        """Parked invocations whose wait is over, resumed before the next message."""

    def __repr__(self) -> str:
        return f"<Actor {self.spec.name}/{self.id}>"

    def _extra(self, env: Envelope, attempt: int | None = None) -> dict[str, object]:
        extra: dict[str, object] = {
            "entity_type": self.spec.name,
            "entity_id": self.id,
            "signal_id": env.signal.signal_id,
        }
        if attempt is not None:
            extra["attempt"] = attempt
        return extra

    @property
    def idle(self) -> bool:
        """No message queued or running and not activating: safe to passivate."""
        return (
            not self.running
            and not self.mailbox
            and self._activating is None
            and not self.telling
            and not self.runs
        )

    # ------------------------------------------------------------ mailbox
    def deliver(self, env: Envelope) -> None:
        """Put a signal in the mailbox; starts the drain task if none runs."""
        kernel = self.kernel
        if kernel.tasks.closing:
            if env.reply is not None:  # an inbox signal stays there and runs after the next start
                env.reply.fail(closed_error(env))
            return
        if self.stopped_until is not None:
            if env.reply is not None:
                env.reply.fail(self._stopped_error())
            if env.from_inbox:  # it stays in the inbox (for a restart) and resumes with the actor
                self.held.append(env)
            return
        if env.keyed and not env.from_inbox:
            self.asking.setdefault(env.signal.signal_id, env.signal.fingerprint)
        self.mailbox.append(env)
        self._kick()

    def _kick(self) -> None:
        if not self.running:
            self.running = True
            # one unit of busy work per running drain, not per queued signal: signals queued
            # behind a handler parked on the clock are not runnable (VirtualClock.advance)
            self.kernel.work.inc()
            self.kernel.tasks.spawn_drain(self._drain())

    async def _drain(self) -> None:
        try:
            with anyio.CancelScope() as scope:  # cancelled by pause(): the system is closing
                self._scope = scope
                while True:
                    if self.resumable:  # a parked invocation whose wait is over goes first
                        await self._resume(self.resumable.popleft())
                        continue
                    if not self.mailbox:
                        break
                    env = self.mailbox.popleft()
                    if env.handler.is_async:  # may park: runs in a task of its own
                        await self._start_run(env)
                        continue
                    try:
                        await self._handle(env)
                    except anyio.get_cancelled_exc_class():
                        self._rollback()
                        self.deactivate()
                        if env.reply is not None:
                            env.reply.fail(closed_error(env))
                        raise
                    except Exception as e:  # a bug in the runtime: keep the system alive, say so
                        self._internal_error(env, e)
                    finally:
                        self._handled(env)
        finally:
            self._scope = None
            self.running = False
            self.last_active = self.kernel.clock.now()
            self.kernel.work.dec()

    def _internal_error(self, env: Envelope, e: Exception) -> None:
        self.kernel.log.exception(
            "%r: internal error handling %s", self, env.signal.handler, extra=self._extra(env)
        )
        self.deactivate()
        if env.reply is not None:
            env.reply.fail(e)

    def _handled(self, env: Envelope) -> None:
        # by the caller's kind: a journaled ask is in the inbox too by now
        (self.asking if env.reply is not None else self.telling).pop(env.signal.signal_id, None)

    def pause(self) -> None:
        """Stop the running handler at its current await (the system is closing).

        A pause, not an end: nothing of the running segment is committed (a commit
        already under way finishes and is answered truthfully), and the invocation
        resumes from the inbox and its journal after the next start. Parked
        invocations are dropped from memory: they resume from their journal.
        """
        if self._scope is not None:
            self._scope.cancel()
        for run in list(self.runs):
            if run.scope is not None:
                run.scope.cancel()
            else:
                run.cancel_pending = True

    # ------------------------------------------------------------ invocations that may park
    async def _start_run(self, env: Envelope) -> None:
        """Run an async handler in a task of its own; wait until it parks or ends."""
        kernel = self.kernel
        if not kernel.tasks.live:
            if env.reply is not None:
                env.reply.fail(closed_error(env))
            self._handled(env)
            return
        run = Run(env)
        self.runs.add(run)
        kernel.tasks.spawn_drain(self._run_task(run))
        await run.segment

    async def _run_task(self, run: Run) -> None:
        env = run.env
        sid = env.signal.signal_id
        outcomes = self.kernel.outcomes
        outcomes.cancellers[sid] = lambda reason: self._cancel_run(run, reason)
        early = outcomes.requested.pop(sid, None)
        if early is not None:
            run.flag.request(early)
        try:
            with anyio.CancelScope() as scope:
                run.scope = scope
                if run.cancel_pending:
                    scope.cancel()
                try:
                    await self._handle(env, run)
                except anyio.get_cancelled_exc_class():
                    if env.reply is not None:
                        env.reply.fail(closed_error(env))
                    raise
                except Exception as e:  # a bug in the runtime: keep the system alive, say so
                    self._internal_error(env, e)
        finally:
            self._handled(env)
            run.end()
            self.runs.discard(run)
            if outcomes.cancellers.get(sid) is not None:
                del outcomes.cancellers[sid]
            if not run.segment.done():
                run.segment.set_result(None)

    def _cancel_run(self, run: Run, reason: str) -> None:
        run.flag.request(reason)
        if run.parked:
            run.flag.delivered = True
            self._wake(run, None, run.flag.error())

    def _wake(self, run: Run, value: object, error: BaseException | None = None) -> None:
        """A parked invocation's wait is over (predicate, deadline, child, cancel)."""
        if not run.parked or run.woken:
            return
        run.woken = True
        run.value, run.error = value, error
        if not run.holding:
            self.resumable.append(run)
            self._kick()

    async def _resume(self, run: Run) -> None:
        if not run.parked or run.go is None:
            return
        run.segment = asyncio.get_running_loop().create_future()
        run.holding = True
        try:
            await self.ensure_active()
        except StoreError as e:
            run.value, run.error = None, e
        run.go.set_result(None)
        await run.segment

    def _adopt(self, inv: Invocation) -> None:
        """Make ``inv``'s object the live entity, with the committed state."""
        obj = inv.target
        live = self.entity
        assert obj is not None
        assert live is not None
        if obj is not live:
            src = self.spec.clone(live)
            for name in self.spec.field_names:
                object.__setattr__(obj, name, getattr(src, name))
            self.entity = self.view = obj
        self.backup = None
        object.__setattr__(obj, "_actors_ctx", inv)
        if not self.spec.shallow_copy:
            self.before_first_emit()

    def _check_parked(self) -> None:
        """After a commit: wake the parked invocations whose predicate now holds."""
        live = self.entity
        if live is None:
            return
        for run in list(self.runs):
            if not run.parked or run.woken or run.predicate is None:
                continue
            self._evaluate(run, live)

    def _evaluate(self, run: Run, live: Entity) -> None:
        inv = run.inv
        assert inv is not None
        assert inv.target is not None
        assert run.predicate is not None
        obj = inv.target
        if obj is not live:
            for name in self.spec.field_names:
                object.__setattr__(obj, name, getattr(live, name))
        before = getattr(obj, "_actors_ctx", None)
        object.__setattr__(obj, "_actors_ctx", READ_ONLY)
        try:
            holds = bool(run.predicate())
        except Exception as e:
            self._wake(run, None, e)
            return
        finally:
            object.__setattr__(obj, "_actors_ctx", before)
        if holds:
            self._wake(run, True)

    # ------------------------------------------------------------ the invocation's side (Host)
    async def state_at(self, seq: int) -> Entity:
        """The entity as it was after event ``seq`` (a scratch copy)."""
        entity: Entity = await _replay.load_at(self.kernel, self.spec, self.id, seq)
        return entity

    async def checkpoint(self, inv: Invocation, entries: list[JournalEntry]) -> None:
        """Commit what ``inv`` did so far (events, timers, outbox) with ``entries`` of its
        journal, in one transaction; its signal stays in the inbox, unmarked."""
        kernel, env = self.kernel, inv.env
        s = env.signal
        writes: list[Write] = []
        commit = Commit(
            s.entity_type,
            s.entity_id,
            s,
            "",
            self.seq + 1,
            tuple(inv.events),
            recorded_at=kernel.clock.now().timestamp(),
            set_timers=tuple(inv.timers.values()),
            cancel_timers=tuple(inv.cancels),
            outbox=tuple(inv.outbox),
            has_journal=False,
            mark=False,
            from_inbox=False,
        )
        writes.append(commit)
        for i, e in enumerate(entries):
            writes.append(Journal(e, s if i == 0 and not env.from_inbox else None))
        with anyio.CancelScope(shield=True):
            results = await kernel.committer.submit_group(writes)
        env.from_inbox = True
        inv.journal.has_journal = True
        done = results[0]
        self.seq += len(inv.events)
        self.backup = None
        self.view = self.entity
        if inv.timers or inv.cancels:
            kernel.timers.on_commit(self.spec.name, self.id, inv.timers.values(), inv.cancels)
        if inv.outbox and isinstance(done, Committed):
            kernel.route.deliver_outbox(done.outbox_ids, list(inv.outbox))
        inv.drop_effects()
        self._maybe_snapshot()
        self._check_parked()

    async def park(
        self,
        inv: Invocation,
        predicate: Callable[[], object] | None,
        deadline: float | None,
        deadline_value: object,
        watch: str | None,
    ) -> Any:
        """Park ``inv`` until its wait is over; the entity serves others meanwhile."""
        run = inv.runner
        assert run is not None
        loop = asyncio.get_running_loop()
        run.parked, run.woken, run.value, run.error = True, False, None, None
        run.predicate = predicate
        run.go = loop.create_future()
        kernel = self.kernel
        try:
            if run.flag.active:
                run.flag.delivered = True
                self._wake(run, None, run.flag.error())
            if watch is not None:
                run.unwatch = kernel.outcomes.watch(watch, lambda text: self._wake(run, text))
                etype, eid = parse_start_id(watch)
                mark = await kernel.store.read_mark(etype, eid, watch)
                if mark is not None:
                    self._wake(run, mark.outcome)
            if deadline is not None and not run.woken:
                if kernel.clock.now() >= from_timestamp(deadline):
                    self._wake(run, deadline_value)
                else:
                    run.timer = kernel.tasks.spawn_task(self._deadline(run, deadline, deadline_value))
            if predicate is not None and not run.woken and self.entity is not None:
                self._evaluate(run, self.entity)
            if not run.woken:  # let the entity go on: the drain takes its next message
                run.holding = False
                run.segment.set_result(None)
                await run.go
            # resumed: the only running writer of the entity again
            if (run.error is None and self.entity is not None) or (
                run.error is not None and self.entity is not None and inv.target is not None
            ):
                self._adopt(inv)
        finally:
            run.unpark()
        if run.error is not None:
            raise run.error
        return run.value

    async def _deadline(self, run: Run, deadline: float, value: object) -> None:
        await self.kernel.clock.sleep_until(from_timestamp(deadline))
        self._wake(run, value)

    def _maybe_snapshot(self) -> None:
        every = self.spec.snapshot_every
        entity = self.entity
        due = every and self.seq - self.snap_seq >= every and entity is not None
        if due and _replay.take_snapshot(self.kernel, self.spec, self.id, entity, self.seq):
            self.snap_seq = self.seq

    def fail_pending(self) -> None:
        """Fail every queued ask with SystemClosed (the system is closing)."""
        while self.mailbox:
            env = self.mailbox.popleft()
            if env.reply is not None:
                env.reply.fail(closed_error(env))

    # ------------------------------------------------------------ phase: activate
    async def ensure_active(self) -> Entity:
        """Load the entity (snapshot + tail of the log) unless it is loaded."""
        while self.entity is None:
            if self._activating is not None:
                await self._activating.wait()
                continue
            self._activating = anyio.Event()
            try:
                self.entity, self.seq, self.snap_seq = await _replay.load(self.kernel, self.spec, self.id)
                self.view = self.entity
            finally:
                self._activating.set()
                self._activating = None
        return self.entity

    def deactivate(self) -> None:
        """Drop the in-memory state; the next message rebuilds it from the store."""
        self.entity = self.view = self.backup = None

    def before_first_emit(self) -> None:
        """Keep a copy of the committed state: queries read it, a failure restores it."""
        assert self.entity is not None
        self.backup = self.spec.clone(self.entity)
        self.view = self.backup

    def _rollback(self) -> None:
        if self.backup is not None:
            self.entity = self.view = self.backup
            self.backup = None

    # ------------------------------------------------------------ one signal, attempt by attempt
    async def _handle(self, env: Envelope, run: Run | None = None) -> None:
        store_failures = 0
        attempt = runs = 1
        checked = not env.keyed  # a keyed signal may be a repeat: look for its mark first
        while True:
            try:
                await self.ensure_active()
                if not checked:
                    if self._tell_conflict(env) or await self._answer_repeat(env):
                        return
                    checked = True
                step = await self._handle_one(env, attempt, runs, run)
            except StoreError as e:
                if not env.from_inbox or isinstance(e, CorruptRecord):
                    self.kernel.log.error(
                        "%r cannot handle %s: %s", self, env.signal.handler, e, extra=self._extra(env, runs)
                    )
                    if env.reply is not None:
                        env.reply.fail(e)
                    return
                step = Step.STORE_FAILED
            if step is Step.DONE or self.stopped_until is not None:
                return
            runs += 1
            if step is Step.RETRY:
                attempt += 1
                continue
            store_failures += 1
            delay = self.kernel.supervision.backoff(store_failures)
            self.kernel.log.warning(
                "%r: store failed while handling %s; retry %d in %.3fs",
                self,
                env.signal.handler,
                store_failures,
                delay.total_seconds(),
                extra=self._extra(env, runs),
            )
            async with self.kernel.work.parked():
                await self.kernel.clock.sleep(delay.total_seconds())

    def _tell_conflict(self, env: Envelope) -> bool:
        """A keyed ask whose key a tell with other arguments is using: refuse the ask."""
        told = None if env.from_inbox else self.telling.get(env.signal.signal_id)
        if told is None or told == env.signal.fingerprint:
            return False
        if env.reply is not None:
            env.reply.fail(conflict_error(env.signal))
        return True

    async def _answer_repeat(self, env: Envelope) -> bool:
        s = env.signal
        mark = await self.kernel.store.read_mark(s.entity_type, s.entity_id, s.signal_id)
        if mark is None:
            return False
        if env.from_inbox:  # a repeat that reached the inbox (tell vs. a running ask): take it out
            await self._drop_repeat(env, mark.outcome, mark.fingerprint != s.fingerprint)
        if env.reply is not None:
            if mark.fingerprint != s.fingerprint:
                env.reply.fail(conflict_error(s))
            else:
                where = f"the processed mark of signal {s.signal_id!r} of {s.entity_type}/{s.entity_id}"
                try:
                    env.reply.set(
                        outcome.decode(self.kernel.codec, mark.outcome, env.handler.returns, where=where)
                    )
                except Exception as e:
                    env.reply.fail(e)
        return True

    async def _drop_repeat(self, env: Envelope, first_outcome: str, conflict: bool) -> None:
        s, kernel = env.signal, self.kernel
        if conflict:
            kernel.log.warning(
                "dropping inbox signal %s of %r: %s",
                s.signal_id,
                self,
                conflict_error(s),
                extra=self._extra(env),
            )
        drop = Commit(
            s.entity_type,
            s.entity_id,
            s,
            first_outcome,
            self.seq + 1,
            recorded_at=kernel.clock.now().timestamp(),
            mark=False,
            from_inbox=True,
        )
        try:
            with anyio.CancelScope(shield=True):
                await kernel.committer.submit(drop)
        except StoreError as e:  # it stays in the inbox and is answered by its mark next time
            kernel.log.warning(
                "could not drop repeated signal %s of %r: %s", s.signal_id, self, e, extra=self._extra(env)
            )

    # ------------------------------------------------------------ phase: handle one run
    async def _handle_one(self, env: Envelope, attempt: int, runs: int, run: Run | None = None) -> Step:
        """One run of the handler, then its commit (or the supervisor's decision).

        The handler runs on arguments decoded from what was stored (unless they are
        immutable values), so neither its caller nor an earlier attempt can change
        them; its result is encoded (checked and sized, as a repeat would return it)
        and handed out as a copy, so no caller holds a piece of the live state.
        """
        entity = await self.ensure_active()
        inv = Invocation(self, env, runs)
        if run is not None:
            inv.runner = run
            run.inv = inv
            inv.cancel_flag = run.flag
            if runs > 1 or env.recovered:  # it may have run (and parked) before: replay its segments
                scratch = await inv.prepare_rerun()
                if scratch is not None:
                    entity = scratch
        inv.target = entity
        scope = run.scope if run is not None else self._scope
        obs = self.kernel.observer
        if obs.active:
            inv.token = obs.invocation_started(inv.info)
        h = env.handler
        spec = self.spec
        codec = self.kernel.codec
        if not spec.shallow_copy and self.backup is None and inv.replay is None:
            self.before_first_emit()  # in-place edits of mutable fields become detectable
        object.__setattr__(entity, "_actors_ctx", inv)
        try:
            values = (
                env.values
                if env.values is not None and h.immutable_args
                else h.decode(codec, env.signal.args)
            )
            result = h.call(entity, values)
            if h.is_async:
                result = await result
            inv.check_finished()
            if not spec.shallow_copy:
                self._check_state(inv, entity)
            text = outcome.encode_ok(codec, result, h.returns, f"{spec.name}.{h.name}")
            if type(result) not in IMMUTABLE_VALUES:
                result = copy.deepcopy(result)
        except Rejected as r:
            if self.kernel.tasks.closing:
                return self._paused(env, inv)
            if inv.replay is not None and inv.replay.replaying:  # refused inside committed segments
                return await self._crashed(
                    env, inv, inv._nondeterminism("it is rejected in a replayed segment"), attempt
                )
            if not getattr(r, "commit", False):
                self._rollback()
                inv.drop_effects()
            return await self._commit(env, inv, outcome.encode_error("rejected", r), r, None)
        except Cancelled as c:
            if self.kernel.tasks.closing:
                return self._paused(env, inv)
            if inv.replay is not None and inv.replay.replaying:
                return await self._crashed(
                    env, inv, inv._nondeterminism("it is cancelled in a replayed segment"), attempt
                )
            return await self._commit(env, inv, outcome.encode_cancelled(c), c, None)
        except Exception as e:
            if self.kernel.tasks.closing:
                return self._paused(env, inv)
            if isinstance(e, StoreError) and not isinstance(e, CorruptRecord):
                # the store failed under a journaled step: the world's fault, not the handler's;
                # not counted as a crash: retried from the inbox until the store recovers
                self._rollback()
                self.deactivate()
                self._ended(inv, "crashed", e)
                raise
            return await self._crashed(env, inv, e, attempt)
        except BaseException as e:
            if _cancelled_by(scope, e):
                self._rollback()
                self.deactivate()
                self._ended(inv, "paused", None)
                raise
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                self._rollback()
                self.deactivate()
                self._ended(inv, "crashed", e)
                if env.reply is not None:
                    env.reply.fail(
                        HandlerFailed(
                            f"{spec.name}/{self.id}.{h.name} raised {safe_repr(e)}",
                            handler=f"{spec.name}.{h.name}",
                            attempts=attempt,
                        )
                    )
                raise
            # any other BaseException (a custom one, a helper task's cancellation) is a crash
            return await self._crashed(env, inv, e, attempt)
        finally:
            object.__setattr__(entity, "_actors_ctx", None)
        return await self._commit(env, inv, text, None, result)

    def _ended(self, inv: Invocation, how: Outcome, error: BaseException | None) -> None:
        obs = self.kernel.observer
        if obs.active:
            obs.invocation_ended(inv.token, how, error)

    def _paused(self, env: Envelope, inv: Invocation) -> Step:
        """The system closed under a running handler: keep nothing, answer truthfully."""
        self._rollback()
        self.deactivate()
        self._ended(inv, "paused", None)
        if env.reply is not None:
            env.reply.fail(closed_error(env))
        return Step.DONE

    def _check_state(self, inv: Invocation, entity: Entity) -> None:
        """Refuse a handler that changed fields other than through its events."""
        assert self.backup is not None
        spec = self.spec
        expected = spec.clone(self.backup)
        for event in inv.applied:
            spec.appliers[type(event)](expected, event)
        changed = [f for f in spec.field_names if not _same(getattr(expected, f), getattr(entity, f))]
        if changed:
            raise DefinitionError(
                f"{spec.name}.{inv.env.handler.name} changed {', '.join(changed)} without an event: "
                "fields change only in @applies methods (emit an event)"
            )

    # ------------------------------------------------------------ phase: commit, then finish
    async def _commit(
        self, env: Envelope, inv: Invocation, text: str, rejected: ActorsError | None, result: object
    ) -> Step:
        kernel = self.kernel
        s = env.signal
        done: object = None
        if env.keyed or env.from_inbox or inv.dirty:
            commit = Commit(
                s.entity_type,
                s.entity_id,
                s,
                text,
                self.seq + 1,
                tuple(inv.events),
                recorded_at=kernel.clock.now().timestamp(),
                set_timers=tuple(inv.timers.values()),
                cancel_timers=tuple(inv.cancels),
                outbox=tuple(inv.outbox),
                has_journal=inv.has_journal,
                mark=env.keyed,
                from_inbox=env.from_inbox,
            )
            try:
                with anyio.CancelScope(shield=True):  # a commit under way is finished and answered
                    done = await kernel.committer.submit(commit)
            except StoreError as e:
                self._rollback()
                self.deactivate()  # rebuild from what is really stored
                self._ended(inv, "crashed", e)
                if env.from_inbox:
                    return Step.STORE_FAILED  # not acknowledged; safe in the inbox: run it again
                if env.reply is not None:
                    env.reply.fail(e)
                return Step.DONE
        self._finish(env, inv, done, rejected, result)
        if env.keyed:
            kernel.outcomes.notify(s.signal_id, text)
        self._check_parked()
        return Step.DONE

    def _finish(
        self, env: Envelope, inv: Invocation, done: object, rejected: ActorsError | None, result: object
    ) -> None:
        kernel = self.kernel
        self.seq += len(inv.events)
        self.backup = None
        self.view = self.entity
        if inv.timers or inv.cancels:
            kernel.timers.on_commit(self.spec.name, self.id, inv.timers.values(), inv.cancels)
        if inv.outbox and isinstance(done, Committed):
            kernel.route.deliver_outbox(done.outbox_ids, inv.outbox)
        if kernel.observer.active:
            self._ended(inv, "rejected" if rejected is not None else "ok", rejected)
        if env.reply is not None:
            if rejected is not None:
                env.reply.fail(rejected)
            else:
                env.reply.set(result)
        self._maybe_snapshot()

    # ------------------------------------------------------------ supervision
    async def _crashed(self, env: Envelope, inv: Invocation, error: BaseException, attempt: int) -> Step:
        """Carry out the supervisor's decision on a crashed run (the one place that asks it)."""
        kernel = self.kernel
        self._rollback()
        self.deactivate()
        decision = kernel.supervisor.decide(error, attempt, self.crashes, kernel.clock.monotonic())
        if isinstance(decision, Stop):
            self._ended(inv, "crashed", error)
            self._stop(env, decision.crashes)
            return Step.DONE
        if isinstance(decision, DeadLetter):
            self._ended(inv, "dead_lettered", error)
            failure = failure_of(env, self.id, error, attempt, decision.code_bug)
            if kernel.observer.active:
                kernel.observer.dead_lettered(inv.info, error)
            kernel.dead_letters += 1
            return await write_dead_letter(kernel, env, failure, error, attempt, self.seq)
        assert isinstance(decision, Retry)
        self._ended(inv, "crashed", error)
        kernel.retries += 1
        if kernel.observer.active:
            kernel.observer.retry_scheduled(inv.info, decision.delay, error)
        kernel.log.warning(
            "%s/%s.%s crashed (attempt %d of %d): %s; retrying in %.3fs",
            self.spec.name,
            self.id,
            env.handler.name,
            attempt,
            kernel.supervision.max_attempts,
            safe_repr(error, 500),
            decision.delay,
            extra=self._extra(env, attempt),
        )
        async with kernel.work.parked():
            await kernel.clock.sleep(decision.delay)
        return Step.RETRY

    def _stop(self, env: Envelope, crashes: int) -> None:
        kernel, policy = self.kernel, self.kernel.supervision
        self.stopped_until = kernel.clock.now() + policy.within  # for people: when it resumes
        kernel.log.error(
            "%s/%s stopped: %d crashes within %s exceed its restart intensity (max %d); "
            "its asks fail, its inbox keeps its signals, it resumes at %s",
            self.spec.name,
            self.id,
            crashes,
            policy.within,
            policy.max_restarts,
            self.stopped_until.isoformat(),
            extra=self._extra(env),
        )
        queued = [env, *self.mailbox]
        self.mailbox.clear()
        for e in queued:
            self.deliver(e)  # stopped now: asks fail, inbox signals are held
        kernel.tasks.spawn(self._resume_later)

    def _stopped_error(self) -> HandlerFailed:
        return HandlerFailed(
            f"{self.spec.name}/{self.id} is stopped by its restart intensity until "
            f"{self.stopped_until.isoformat() if self.stopped_until else '?'}"
        )

    async def _resume_later(self) -> None:
        kernel = self.kernel
        assert self.stopped_until is not None
        # a task of its own, not counted busy while it waits (so not parked()); busy while it resumes
        await kernel.clock.sleep(kernel.supervision.within.total_seconds())
        kernel.work.inc()
        try:
            self.stopped_until = None
            self.crashes.clear()
            kernel.log.info("%s/%s resumes after its cool-down", self.spec.name, self.id)
            # the held signals, not a re-read of the inbox: a tell accepted during such a
            # read would be routed twice (live and from the read)
            held, self.held = self.held, []
            for env in held:
                self.deliver(env)
        finally:
            kernel.work.dec()


def _same(a: object, b: object) -> bool:
    return a is b or a == b


class Run:
    """An invocation of an async handler in a task of its own: it may park (wait,
    sleep, a child's result) while its actor goes on with other messages."""

    __slots__ = (
        "cancel_pending",
        "env",
        "error",
        "flag",
        "go",
        "holding",
        "inv",
        "parked",
        "predicate",
        "scope",
        "segment",
        "timer",
        "unwatch",
        "value",
        "woken",
    )

    def __init__(self, env: Envelope) -> None:
        self.env = env
        self.inv: Invocation | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancel_pending = False
        self.segment: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the running segment ends (parked or finished): the drain waits on it."""
        self.holding = True
        """Whether it runs as the entity's writer now (the drain waits for it)."""
        self.parked = False
        self.woken = False
        self.value: object = None
        self.error: BaseException | None = None
        self.go: asyncio.Future[None] | None = None
        self.predicate: Callable[[], object] | None = None
        self.timer: asyncio.Task[Any] | None = None
        self.unwatch: Callable[[], None] | None = None
        self.flag = CancelFlag()

    def unpark(self) -> None:
        """Forget the wait (its deadline task, its watch)."""
        self.parked = False
        self.holding = True
        self.go = None
        self.predicate = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.unwatch is not None:
            self.unwatch()
            self.unwatch = None

    def end(self) -> None:
        """The invocation ended (or was paused)."""
        self.unpark()
