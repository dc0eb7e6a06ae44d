"""The actor: one entity's mailbox and the loop that handles it.

An actor exists while its entity is active. Its mailbox is a deque; a drain task
is started when the first message arrives and ends when the mailbox is empty, so
an idle actor costs no task. The loop is split into activation (snapshot + tail
replay), handling (run the handler, roll back on failure), and commit.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from actors import outcome
from actors.context import Invocation
from actors.entity import IMMUTABLE_VALUES, Entity, EntitySpec, HandlerSpec
from actors.errors import (
    ActorsError,
    CompensationFailed,
    CorruptRecord,
    DeadlockError,
    DefinitionError,
    HandlerFailed,
    IdempotencyConflict,
    InvalidArguments,
    NonDeterminismError,
    PayloadTooLarge,
    Rejected,
    SerializationError,
    StoreError,
    SystemClosed,
    UnknownEntity,
    UnknownHandler,
)
from actors.ids import safe_repr, safe_text
from persistence.store import Commit, Committed, SaveSnapshot, SignalRecord, SnapshotRecord

if TYPE_CHECKING:
    from actors.system import ActorSystem

_REPLAY_CHUNK = 2000
_DONE, _CRASHED, _STORE = object(), object(), object()

CODE_BUGS: tuple[type[BaseException], ...] = (
    DefinitionError,
    SerializationError,
    PayloadTooLarge,
    InvalidArguments,
    UnknownEntity,
    UnknownHandler,
    DeadlockError,
    NonDeterminismError,
    CompensationFailed,
)
"""Failures that are the code's, not the world's: the same input fails the same way,
so they are dead-lettered at once, not retried, and do not count as restarts."""


def _cancelled_by(scope: anyio.CancelScope | None, error: BaseException) -> bool:
    """Whether ``error`` is the runtime's own cancellation (not a handler's helper task's)."""
    if not isinstance(error, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return (scope is not None and scope.cancel_called) or (task is not None and task.cancelling() > 0)


class Reply:
    """A one-shot slot for the answer to an ask.

    A plain asyncio future: the runtime runs on asyncio only (aiosqlite needs it),
    and one is much cheaper than an ``anyio.Event`` on this per-message path.
    """

    __slots__ = ("_fut",)

    def __init__(self) -> None:
        self._fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def set(self, value: object) -> None:
        """Answer with a value."""
        if not self._fut.done():
            self._fut.set_result(value)

    def fail(self, error: BaseException) -> None:
        """Answer with an error."""
        if not self._fut.done():
            self._fut.set_exception(error)
            self._fut.exception()  # retrieved: no "never retrieved" log if the caller left

    @property
    def future(self) -> asyncio.Future[Any]:
        """The answer as a future (await it directly to save a coroutine)."""
        return self._fut

    async def wait(self) -> Any:
        """The answer: the value, or the error raised."""
        return await self._fut


class Envelope:
    """A signal on its way through the mailbox."""

    __slots__ = ("from_inbox", "handler", "keyed", "reply", "signal", "values")

    def __init__(
        self,
        handler: HandlerSpec,
        signal: SignalRecord,
        *,
        values: dict[str, object] | None,
        keyed: bool,
        reply: Reply | None,
        from_inbox: bool,
    ) -> None:
        self.from_inbox = from_inbox
        """The signal is in the inbox (a tell, a timer, a recovered or journaled ask)."""
        self.handler = handler
        self.signal = signal
        self.values = values
        self.keyed = keyed
        self.reply = reply


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
        "last_active",
        "mailbox",
        "running",
        "seq",
        "snap_seq",
        "spec",
        "stopped_until",
        "system",
        "telling",
        "view",
    )

    def __init__(self, system: ActorSystem, spec: EntitySpec, entity_id: str) -> None:
        self.system = system
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
        self.last_active = system.clock.now()
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

    def __repr__(self) -> str:
        return f"<Actor {self.spec.name}/{self.id}>"

    @property
    def idle(self) -> bool:
        """No message queued or running and not activating: safe to passivate."""
        return not self.running and not self.mailbox and self._activating is None and not self.telling

    # ------------------------------------------------------------ mailbox
    def deliver(self, env: Envelope) -> None:
        """Put a signal in the mailbox; starts the drain task if none runs."""
        if self.system.closing:
            if env.reply is not None:  # an inbox signal stays there and runs after the next start
                env.reply.fail(_closed(env))
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
        if not self.running:
            self.running = True
            # one unit of busy work per running drain, not per queued signal: signals queued
            # behind a handler parked on the clock are not runnable (VirtualClock.advance)
            self.system.busy_inc()
            self.system.spawn_drain(self._drain())

    async def _drain(self) -> None:
        try:
            with anyio.CancelScope() as scope:  # cancelled by pause(): the system is closing
                self._scope = scope
                while self.mailbox:
                    env = self.mailbox.popleft()
                    try:
                        await self._handle(env)
                    except anyio.get_cancelled_exc_class():
                        self._rollback()
                        self.deactivate()
                        if env.reply is not None:
                            env.reply.fail(_closed(env))
                        raise
                    except Exception as e:  # a bug in the runtime: keep the system alive, say so
                        self.system.log.exception("%r: internal error handling %s", self, env.signal.handler)
                        self.deactivate()
                        if env.reply is not None:
                            env.reply.fail(e)
                    finally:
                        # by the caller's kind: a journaled ask is in the inbox too by now
                        (self.asking if env.reply is not None else self.telling).pop(
                            env.signal.signal_id, None
                        )
        finally:
            self._scope = None
            self.running = False
            self.last_active = self.system.clock.now()
            self.system.busy_dec()

    def pause(self) -> None:
        """Stop the running handler at its current await (the system is closing).

        A pause, not an end: nothing of the running segment is committed (a commit
        already under way finishes and is answered truthfully), and the invocation
        resumes from the inbox and its journal after the next start.
        """
        if self._scope is not None:
            self._scope.cancel()

    def fail_pending(self) -> None:
        """Fail every queued ask with SystemClosed (the system is closing)."""
        while self.mailbox:
            env = self.mailbox.popleft()
            if env.reply is not None:
                env.reply.fail(_closed(env))

    # ------------------------------------------------------------ activation
    async def ensure_active(self) -> Entity:
        """Load the entity (snapshot + tail of the log) unless it is loaded."""
        while self.entity is None:
            if self._activating is not None:
                await self._activating.wait()
                continue
            self._activating = anyio.Event()
            try:
                self.entity = await self._load()
                self.view = self.entity
            finally:
                self._activating.set()
                self._activating = None
        return self.entity

    async def _load(self) -> Entity:
        store, codec, spec = self.system.store, self.system.codec, self.spec
        entity: Entity | None = None
        seq = 0
        for snap in await store.read_snapshots(spec.name, self.id):
            entity = self._from_snapshot(snap)
            if entity is not None:
                seq = snap.seq
                break
        if entity is None:
            entity = spec.new(self.id)
        self.snap_seq = seq
        where = f"{spec.name}/{self.id}"
        while True:
            events = await store.read_events(spec.name, self.id, after=seq, limit=_REPLAY_CHUNK)
            for stored in events:
                if stored.seq != seq + 1:
                    raise CorruptRecord(f"event log of {where} jumps from {seq} to {stored.seq}")
                event = codec.decode_event(where, stored)
                spec.appliers[type(event)](entity, event)
                seq = stored.seq
            if len(events) < _REPLAY_CHUNK:
                break
        self.seq = seq
        return entity

    def _from_snapshot(self, snap: SnapshotRecord) -> Entity | None:
        spec = self.spec
        where = f"snapshot at seq {snap.seq} of {spec.name}/{self.id}"
        if snap.schema != spec.schema:
            self.system.log.warning("skipping %s: taken with another state schema", where)
            return None
        try:
            entity = self.system.codec.loads_state(snap.state, spec.cls)
        except SerializationError as e:
            self.system.log.warning("skipping unreadable %s: %s", where, e)
            return None
        object.__setattr__(entity, "_actors_id", self.id)
        object.__setattr__(entity, "_actors_ctx", None)
        return entity

    def deactivate(self) -> None:
        """Drop the in-memory state; the next message rebuilds it from the store."""
        self.entity = self.view = self.backup = None

    # ------------------------------------------------------------ handling
    def before_first_emit(self) -> None:
        """Keep a copy of the committed state: queries read it, a failure restores it."""
        assert self.entity is not None
        self.backup = self.spec.clone(self.entity)
        self.view = self.backup

    def _rollback(self) -> None:
        if self.backup is not None:
            self.entity = self.view = self.backup
            self.backup = None

    async def _handle(self, env: Envelope) -> None:
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
                step = await self._attempt(env, attempt, runs)
            except StoreError as e:
                if not env.from_inbox or isinstance(e, CorruptRecord):
                    self.system.log.error("%r cannot handle %s: %s", self, env.signal.handler, e)
                    if env.reply is not None:
                        env.reply.fail(e)
                    return
                step = _STORE
            if step is _DONE or self.stopped_until is not None:
                return
            runs += 1
            if step is _CRASHED:
                attempt += 1
                continue
            # the store failed; the signal is safe in the inbox: back off, then run it again
            store_failures += 1
            delay = self.system.supervision.backoff(store_failures)
            self.system.log.warning(
                "%r: store failed while handling %s; retry %d in %.3fs",
                self,
                env.signal.handler,
                store_failures,
                delay.total_seconds(),
            )
            async with self.system.parked():
                await self.system.clock.sleep(delay.total_seconds())

    def _tell_conflict(self, env: Envelope) -> bool:
        """A keyed ask whose key a tell with other arguments is using: refuse the ask."""
        told = None if env.from_inbox else self.telling.get(env.signal.signal_id)
        if told is None or told == env.signal.fingerprint:
            return False
        if env.reply is not None:
            env.reply.fail(IdempotencyConflict(_conflict_text(env.signal)))
        return True

    async def _answer_repeat(self, env: Envelope) -> bool:
        s = env.signal
        mark = await self.system.store.read_mark(s.entity_type, s.entity_id, s.signal_id)
        if mark is None:
            return False
        if env.from_inbox:  # a repeat that reached the inbox (tell vs. a running ask): take it out
            await self._drop_repeat(env, mark.outcome, mark.fingerprint != s.fingerprint)
        if env.reply is not None:
            if mark.fingerprint != s.fingerprint:
                env.reply.fail(IdempotencyConflict(_conflict_text(s)))
            else:
                where = f"the processed mark of signal {s.signal_id!r} of {s.entity_type}/{s.entity_id}"
                try:
                    env.reply.set(
                        outcome.decode(self.system.codec, mark.outcome, env.handler.returns, where=where)
                    )
                except Exception as e:
                    env.reply.fail(e)
        return True

    async def _drop_repeat(self, env: Envelope, first_outcome: str, conflict: bool) -> None:
        s, system = env.signal, self.system
        if conflict:
            system.log.warning("dropping inbox signal %s of %r: %s", s.signal_id, self, _conflict_text(s))
        drop = Commit(
            s.entity_type,
            s.entity_id,
            s,
            first_outcome,
            self.seq + 1,
            recorded_at=system.clock.now().timestamp(),
            mark=False,
            from_inbox=True,
        )
        try:
            with anyio.CancelScope(shield=True):
                await system.committer.submit(drop)
        except StoreError as e:  # it stays in the inbox and is answered by its mark next time
            system.log.warning("could not drop repeated signal %s of %r: %s", s.signal_id, self, e)

    async def _attempt(self, env: Envelope, attempt: int, runs: int) -> object:
        """One run of the handler: _DONE, _CRASHED (retry it) or _STORE (store failed).

        The handler runs on arguments decoded from what was stored (unless they are
        immutable values), so neither its caller nor an earlier attempt can change
        them; its result is encoded (checked and sized, as a repeat would return it)
        and handed out as a copy, so no caller holds a piece of the live state.
        """
        entity = await self.ensure_active()
        inv = Invocation(self, env, runs)
        h = env.handler
        spec = self.spec
        codec = self.system.codec
        if not spec.shallow_copy and self.backup is None:
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
            if not spec.shallow_copy:
                self._check_state(inv, entity)
            text = outcome.encode_ok(codec, result, h.returns, f"{spec.name}.{h.name}")
            if type(result) not in IMMUTABLE_VALUES:
                result = copy.deepcopy(result)
        except Rejected as r:
            if self.system.closing:
                return self._paused(env)
            self._rollback()
            inv.drop_effects()
            return await self._commit(env, inv, outcome.encode_error("rejected", r), r, None)
        except Exception as e:
            if self.system.closing:
                return self._paused(env)
            return await self._crashed(env, inv, e, attempt)
        except BaseException as e:
            if _cancelled_by(self._scope, e):
                self._rollback()
                self.deactivate()
                raise
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                self._rollback()
                self.deactivate()
                if env.reply is not None:
                    env.reply.fail(HandlerFailed(f"{spec.name}/{self.id}.{h.name} raised {safe_repr(e)}"))
                raise
            # any other BaseException (a custom one, a helper task's cancellation) is a crash
            return await self._crashed(env, inv, e, attempt)
        finally:
            object.__setattr__(entity, "_actors_ctx", None)
        return await self._commit(env, inv, text, None, result)

    def _paused(self, env: Envelope) -> object:
        """The system closed under a running handler: keep nothing, answer truthfully."""
        self._rollback()
        self.deactivate()
        if env.reply is not None:
            env.reply.fail(_closed(env))
        return _DONE

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

    async def _commit(
        self, env: Envelope, inv: Invocation, text: str, rejected: Rejected | None, result: object
    ) -> object:
        system = self.system
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
                recorded_at=system.clock.now().timestamp(),
                set_timers=tuple(inv.timers.values()),
                cancel_timers=tuple(inv.cancels),
                outbox=tuple(inv.outbox),
                has_journal=inv.has_journal,
                mark=env.keyed,
                from_inbox=env.from_inbox,
            )
            try:
                with anyio.CancelScope(shield=True):  # a commit under way is finished and answered
                    done = await system.committer.submit(commit)
            except StoreError as e:
                self._rollback()
                self.deactivate()  # rebuild from what is really stored
                if env.from_inbox:
                    return _STORE  # not acknowledged; safe in the inbox: run it again
                if env.reply is not None:
                    env.reply.fail(e)
                return _DONE
        self.seq += len(inv.events)
        self.backup = None
        self.view = self.entity
        if inv.timers or inv.cancels:
            system.timers.on_commit(self.spec.name, self.id, inv.timers.values(), inv.cancels)
        if inv.outbox and isinstance(done, Committed):
            system.deliver_outbox(done.outbox_ids, inv.outbox)
        if env.reply is not None:
            if rejected is not None:
                env.reply.fail(rejected)
            else:
                env.reply.set(result)
        self._maybe_snapshot()
        return _DONE

    def _maybe_snapshot(self) -> None:
        every = self.spec.snapshot_every
        if not every or self.seq - self.snap_seq < every or self.entity is None:
            return
        system = self.system
        try:
            state = system.codec.dumps(self.entity, self.spec.cls, what="snapshot")
        except ActorsError as e:
            system.log.warning("no snapshot of %r: %s", self, e)
            return
        snap = SnapshotRecord(
            self.spec.name,
            self.id,
            self.seq,
            self.spec.schema,
            state,
            system.clock.now().timestamp(),
        )
        self.snap_seq = self.seq
        system.committer.submit_nowait(SaveSnapshot(snap))

    # ------------------------------------------------------------ supervision
    async def _crashed(self, env: Envelope, inv: Invocation, error: BaseException, attempt: int) -> object:
        system, policy = self.system, self.system.supervision
        self._rollback()
        self.deactivate()
        if isinstance(error, CODE_BUGS):
            # a bug in the code fails the same way every time: no retry, no restart counted
            return await self._dead_letter(env, error, attempt, code_bug=True)
        now = system.clock.monotonic()
        self.crashes.append(now)
        window = policy.within.total_seconds()
        while self.crashes and self.crashes[0] <= now - window:
            del self.crashes[0]
        where = f"{self.spec.name}/{self.id}.{env.handler.name}"
        if len(self.crashes) > policy.max_restarts:
            self._stop(env, len(self.crashes))
            return _DONE
        if attempt >= policy.max_attempts:
            return await self._dead_letter(env, error, attempt)
        delay = policy.backoff(attempt)
        system.log.warning(
            "%s crashed (attempt %d of %d): %s; retrying in %.3fs",
            where,
            attempt,
            policy.max_attempts,
            safe_repr(error, 500),
            delay.total_seconds(),
        )
        async with system.parked():
            await system.clock.sleep(delay.total_seconds())
        return _CRASHED

    async def _dead_letter(
        self, env: Envelope, error: BaseException, attempts: int, *, code_bug: bool = False
    ) -> object:
        system = self.system
        s = env.signal
        where = f"{self.spec.name}/{self.id}.{env.handler.name}"
        try:
            tb = "".join(traceback.format_exception(error))
        except BaseException as e:  # a user's exception may break even this
            tb = f"(no traceback: formatting it failed with {type(e).__name__})"
        what = "failed with a bug in the code (not retried)" if code_bug else f"failed {attempts} times"
        failure = HandlerFailed(f"{where} {what}, dead-lettered: {safe_repr(error, 500)}")
        failure.__cause__ = error
        system.log.error("%s; signal %s moved to dead letters", failure, s.signal_id)
        commit = Commit(
            s.entity_type,
            s.entity_id,
            s,
            outcome.encode_error("failed", failure),
            self.seq + 1,
            (),
            recorded_at=system.clock.now().timestamp(),
            dead_letter=(safe_repr(error, 2000), safe_text(tb[-20000:], 20000), attempts),
            has_journal=True,
            mark=True,
            from_inbox=env.from_inbox,
        )
        try:
            with anyio.CancelScope(shield=True):
                await system.committer.submit(commit)
        except StoreError as e:
            if env.from_inbox:
                return _STORE
            if env.reply is not None:
                env.reply.fail(e)
            return _DONE
        if env.reply is not None:
            env.reply.fail(failure)
        return _DONE

    def _stop(self, env: Envelope, crashes: int) -> None:
        system, policy = self.system, self.system.supervision
        self.stopped_until = system.clock.now() + policy.within  # for people: when it resumes
        system.log.error(
            "%s/%s stopped: %d crashes within %s exceed its restart intensity (max %d); "
            "its asks fail, its inbox keeps its signals, it resumes at %s",
            self.spec.name,
            self.id,
            crashes,
            policy.within,
            policy.max_restarts,
            self.stopped_until.isoformat(),
        )
        queued = [env, *self.mailbox]
        self.mailbox.clear()
        for e in queued:
            self.deliver(e)  # stopped now: asks fail, inbox signals are held
        system.spawn(self._resume_later)

    def _stopped_error(self) -> HandlerFailed:
        return HandlerFailed(
            f"{self.spec.name}/{self.id} is stopped by its restart intensity until "
            f"{self.stopped_until.isoformat() if self.stopped_until else '?'}"
        )

    async def _resume_later(self) -> None:
        system = self.system
        assert self.stopped_until is not None
        # a task of its own, not counted busy while it waits (so not parked()); busy while it resumes
        await system.clock.sleep(system.supervision.within.total_seconds())
        system.busy_inc()
        try:
            self.stopped_until = None
            self.crashes.clear()
            system.log.info("%s/%s resumes after its cool-down", self.spec.name, self.id)
            # the held signals, not a re-read of the inbox: a tell accepted during such a
            # read would be routed twice (live and from the read)
            held, self.held = self.held, []
            for env in held:
                self.deliver(env)
        finally:
            system.busy_dec()


def _conflict_text(s: SignalRecord) -> str:
    return (
        f"idempotency key {s.signal_id!r} of {s.entity_type}/{s.entity_id} was already used "
        f"with other arguments or another handler (now: {s.handler})"
    )


def _closed(env: Envelope) -> SystemClosed:
    if env.from_inbox:
        return SystemClosed(
            "the actor system closed while this call ran: it is durably accepted and runs to its "
            "end after the next start (send it again only with the same key)",
            accepted=True,
        )
    return SystemClosed("the actor system closed before this call was done: nothing of it was kept")


def _same(a: object, b: object) -> bool:
    return a is b or a == b
