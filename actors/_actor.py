"""The actor: one active entity's state, its mailbox and its supervision record. Internal.

An actor exists while its entity is active. Its mailbox is a deque; a drain task
is started when the first message arrives and ends when the mailbox is empty, so
an idle actor costs no task. The actor holds the state and its small operations
(activate, roll back, adopt a resumed invocation's object); what runs on it is one
:class:`Runtime` per system, declared here and implemented above (``actors._loop``):
the drain loop in named phases, the commit of an invocation (``actors._committing``),
parked invocations (``actors._parking``), keyed repeats (``actors._repeats``) and
stop/resume by restart intensity (``actors._restarts``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from actors import _replay
from actors._entity import Entity
from actors._envelope import Envelope, closed_error
from actors._invocation import Invocation
from actors._kernel import Kernel
from actors._run import Run
from actors._spec import EntitySpec, Kept
from actors.errors import HandlerFailed
from actors.observe import Outcome
from persistence.store import JournalEntry


class Runtime(Protocol):
    """What an actor needs from the layer above: the loop that drains its mailbox and
    the invocation's commit and park (implemented once per system by ``actors._loop``)."""

    def start(self, actor: Actor) -> None:
        """Start handling the actor's mailbox (and resumed invocations) until it is
        empty: in a drain task (``Actor.task``), or in callbacks while its messages allow."""
        ...

    async def checkpoint(self, actor: Actor, inv: Invocation, entries: list[JournalEntry]) -> None:
        """Commit what ``inv`` did so far with ``entries`` of its journal."""
        ...

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
        ...


_NO_ENVELOPES: deque[Envelope] = deque()
_NO_RUNS: deque[Run] = deque()
_NO_RUN_SET: set[Run] = set()
_NO_IDS: set[str] = set()
"""Shared, always empty: an actor's containers until it needs one of its own. Most
active entities hold no message, run and inbox signal most of the time, and an
empty deque costs ~630 bytes, an empty set ~220: a hundred thousand active entities
would carry ~250 MB of them. Only the methods below add to a container, and they
replace a shared one first; reading, popping, discarding and clearing a shared one
are harmless."""


class Actor:
    """One active entity: its state, its mailbox and its supervision record."""

    __slots__ = (
        "activating",
        "asking",
        "backup",
        "checked",
        "committing",
        "crashes",
        "entity",
        "held",
        "id",
        "inbox_ids",
        "incarnation",
        "kernel",
        "last_active",
        "mailbox",
        "pause_pending",
        "resumable",
        "running",
        "runs",
        "runtime",
        "seq",
        "snap_seq",
        "spec",
        "stopped_until",
        "task",
        "telling",
    )

    def __init__(self, kernel: Kernel, spec: EntitySpec, entity_id: str, runtime: Runtime) -> None:
        self.kernel = kernel
        self.spec = spec
        self.id = entity_id
        self.runtime = runtime
        self.mailbox: deque[Envelope] = _NO_ENVELOPES  # shared and empty until the first signal
        self.running = False
        self.entity: Entity | None = None
        self.seq = self.snap_seq = 0
        self.incarnation = 0
        """Bumped whenever the state is dropped: a commit recorded before is not counted on
        a state rebuilt since (``Committing.written``)."""
        self.backup: Entity | Kept | None = None
        """The committed state while the entity has uncommitted changes: a copy, or the
        field values when all are immutable (a query or a rollback makes them a copy)."""
        self.last_active = kernel.wall()
        """When it last finished work (Unix seconds on the system's clock; passivation)."""
        self.crashes: list[float] = []  # monotonic seconds; a list, not a deque: 56 bytes when empty
        self.stopped_until: dt.datetime | None = None
        self.held: list[Envelope] = []
        """Inbox signals that came while stopped; delivered in order when it resumes."""
        self.activating: anyio.Event | None = None
        self.task: asyncio.Task[None] | None = None
        """The drain task while one runs (pause() cancels it)."""
        self.committing = 0
        self.checked: object = None
        """The keyed envelope at the head of the mailbox whose mark the pump read and found
        none of (it runs next; a drain task checks for itself)."""
        """Commits of this actor under way: a pause waits for them (cheaper than a shield)."""
        self.pause_pending = False
        """The drain's cancel scope while it runs (cancelled by ``pause``)."""
        self.asking: dict[str, str] = {}
        """Keyed asks not yet handled (they are not in the inbox): id -> fingerprint."""
        self.telling: dict[str, str] = {}
        """Keyed tells from being accepted until handled: id -> fingerprint."""
        self.inbox_ids: set[str] = _NO_IDS
        """Ids of inbox signals routed here and not yet handled (routed once; ``route_once``)."""
        self.runs: set[Run] = _NO_RUN_SET
        """Invocations of async handlers in progress (running or parked; ``add_run``)."""
        self.resumable: deque[Run] = _NO_RUNS
        """Parked invocations whose wait is over, resumed before the next message
        (``add_resumable``)."""

    def __repr__(self) -> str:
        return f"<Actor {self.spec.name}/{self.id}>"

    def extra(self, env: Envelope, attempt: int | None = None) -> dict[str, object]:
        """The fields of a log record about ``env`` on this actor."""
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
            and self.activating is None
            and not self.telling
            and not self.runs
        )

    # ------------------------------------------------------------ mailbox
    def deliver(self, env: Envelope) -> None:
        """Put a signal in the mailbox; starts handling it if nothing runs (``kick``)."""
        kernel = self.kernel
        if kernel.tasks.closing:
            if env.reply is not None:  # an inbox signal stays there and runs after the next start
                env.reply.fail(closed_error(env))
            return
        if self.stopped_until is not None:
            if env.reply is not None:
                env.reply.fail(self.stopped_error())
            if env.from_inbox:  # it stays in the inbox (for a restart) and resumes with the actor
                self.held.append(env)
            return
        if env.keyed and not env.from_inbox:
            self.asking.setdefault(env.signal.signal_id, env.signal.fingerprint)
        if self.mailbox is _NO_ENVELOPES:  # a deque of its own from the first signal
            self.mailbox = deque()
        self.mailbox.append(env)
        if not self.running:
            self.running = True
            self.kernel.work.busy += 1  # kick() inline: every signal comes here
            self.runtime.start(self)

    def drained(self) -> None:
        """The drain task ends: empty containers are given back (memory)."""
        if not self.mailbox:
            self.mailbox = _NO_ENVELOPES
        if not self.resumable:
            self.resumable = _NO_RUNS
        if not self.runs:
            self.runs = _NO_RUN_SET
        if not self.inbox_ids:
            self.inbox_ids = _NO_IDS

    def route_once(self, signal_id: str) -> bool:
        """Note an inbox signal as routed here; False if it already was."""
        if signal_id in self.inbox_ids:
            return False
        if self.inbox_ids is _NO_IDS:
            self.inbox_ids = set()
        self.inbox_ids.add(signal_id)
        return True

    def add_run(self, run: Run) -> None:
        """An invocation of an async handler starts."""
        if self.runs is _NO_RUN_SET:
            self.runs = set()
        self.runs.add(run)

    def add_resumable(self, run: Run) -> None:
        """A parked invocation's wait is over: it runs before the next message."""
        if self.resumable is _NO_RUNS:
            self.resumable = deque()
        self.resumable.append(run)

    def kick(self) -> None:
        """Start handling the mailbox unless that runs already (the pump or a drain task:
        ``Runtime.start``)."""
        if not self.running:
            self.running = True
            # one unit of busy work per running drain, not per queued signal: signals queued
            # behind a handler parked on the clock are not runnable (VirtualClock.advance)
            self.kernel.work.busy += 1  # Work.inc inline
            self.runtime.start(self)

    def handled(self, env: Envelope) -> None:
        """``env`` is handled: forget its key (asks and tells in flight)."""
        # by the caller's kind: a journaled ask is in the inbox too by now
        sid = env.signal.signal_id
        (self.asking if env.reply is not None else self.telling).pop(sid, None)
        if env.from_inbox:
            self.inbox_ids.discard(sid)
            own = self.kernel.shards
            if own.clustered:
                own.recent[sid] = own.poll_gen

    def stopped_error(self) -> HandlerFailed:
        """What an ask to a stopped actor fails with."""
        return HandlerFailed(
            f"{self.spec.name}/{self.id} is stopped by its restart intensity until "
            f"{self.stopped_until.isoformat() if self.stopped_until else '?'}"
        )

    def pause(self) -> None:
        """Stop the running handler at its current await (the system is closing).

        A pause, not an end: nothing of the running segment is committed (a commit
        already under way finishes and is answered truthfully), and the invocation
        resumes from the inbox and its journal after the next start. Parked
        invocations are dropped from memory: they resume from their journal.
        """
        if self.committing:  # a commit under way is finished and answered first
            self.pause_pending = True
            return
        # the drain is cancelled natively (no cancel scope per drain burst: they cost on the
        # path every message takes); the commits it must finish hold the pause (hold())
        if self.task is not None and not self.task.done():
            self.task.cancel()
        for run in list(self.runs):
            if run.scope is not None:
                run.scope.cancel()
            else:
                run.cancel_pending = True

    def hold(self) -> None:
        """A write that must finish and be answered is under way: a pause waits for it."""
        self.committing += 1

    def release(self) -> None:
        """That write finished: a pause that waited takes effect (at the next await)."""
        self.committing -= 1
        if not self.committing and self.pause_pending:
            self.pause_pending = False
            self.pause()

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
            if self.activating is not None:
                await self.activating.wait()
                continue
            self.activating = anyio.Event()
            try:
                self.entity, self.seq, self.snap_seq = await _replay.load(self.kernel, self.spec, self.id)
            finally:
                self.activating.set()
                self.activating = None
        return self.entity

    @property
    def view(self) -> Entity | None:
        """The committed state, which queries read (None: not loaded)."""
        b = self.backup
        if b is None:
            return self.entity
        if isinstance(b, tuple):
            b = self.backup = self.spec.restore(b, self.id)
        return b

    def deactivate(self) -> None:
        """Drop the in-memory state; the next message rebuilds it from the store."""
        self.entity = self.backup = None
        self.incarnation += 1

    def before_first_emit(self) -> None:
        """Keep the committed state: queries read it, a failure restores it."""
        entity = self.entity
        assert entity is not None
        spec = self.spec
        self.backup = spec.values(entity) if spec.shallow_copy else spec.clone(entity)

    def rollback(self) -> None:
        """Back to the committed state (a handler failed or was paused)."""
        b = self.backup
        if b is not None:
            self.entity = self.spec.restore(b, self.id) if isinstance(b, tuple) else b
            self.backup = None

    def maybe_snapshot(self) -> None:
        """Take a snapshot when ``snapshot_every`` events passed since the last one."""
        every = self.spec.snapshot_every
        entity = self.entity
        due = every and self.seq - self.snap_seq >= every and entity is not None
        if due and _replay.take_snapshot(self.kernel, self.spec, self.id, entity, self.seq):
            self.snap_seq = self.seq

    def adopt(self, inv: Invocation) -> None:
        """Make ``inv``'s object the live entity, with the committed state."""
        obj = inv.target
        live = self.entity
        assert obj is not None
        assert live is not None
        if obj is not live:
            src = self.spec.clone(live)
            for name in self.spec.field_names:
                object.__setattr__(obj, name, getattr(src, name))
            self.entity = obj
        self.backup = None
        object.__setattr__(obj, "_actors_ctx", inv)
        if not self.spec.shallow_copy:
            self.before_first_emit()

    def ended(self, inv: Invocation, how: Outcome, error: BaseException | None) -> None:
        """Tell the observer ``inv`` ended."""
        obs = self.kernel.observer
        if obs.active:
            obs.invocation_ended(inv.token, how, error)

    # ------------------------------------------------------------ the invocation's side (Host)
    async def state_at(self, seq: int) -> Entity:
        """The entity as it was after event ``seq`` (a scratch copy)."""
        entity: Entity = await _replay.load_at(self.kernel, self.spec, self.id, seq)
        return entity

    async def checkpoint(self, inv: Invocation, entries: list[JournalEntry]) -> None:
        """Commit what ``inv`` did so far (events, timers, outbox) with ``entries`` of its
        journal, in one transaction; its signal stays in the inbox, unmarked."""
        await self.runtime.checkpoint(self, inv, entries)

    async def park(
        self,
        inv: Invocation,
        predicate: Callable[[], object] | None,
        deadline: float | None,
        deadline_value: object,
        watch: str | None,
    ) -> Any:
        """Park ``inv`` until its wait is over; the entity serves others meanwhile."""
        return await self.runtime.park(self, inv, predicate, deadline, deadline_value, watch)
