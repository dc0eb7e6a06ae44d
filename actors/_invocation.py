"""The invocation: one run of a signal handler, and what ``self.emit``, ``self.now()``,
``self.run`` and the other context calls act on. Internal.

An :class:`Invocation` implements the entity model's ``HandlerContext`` (the calls
of ``self``) and a ref's ``Caller`` (a ref made with ``self.ref``: its ``tell`` goes
to the outbox, its ``ask`` is journaled). It collects the events (already applied
to the entity), the timer changes, the outbox and the journal steps; the actor
commits them with the processed mark in one transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from actors import _checkpoints as checkpoints
from actors import _scheduling as scheduling
from actors._activities import NEVER_CANCELLED, CancelFlag, run_activity
from actors._clock import from_timestamp
from actors._entity import Entity, SagaScope
from actors._envelope import Envelope
from actors._journal import CANCEL_STEP, StepJournal
from actors._kernel import Kernel
from actors._outcalls import Outcalls
from actors._policies import RetryPolicy
from actors._ref import EntityRef
from actors._saga import Saga, gather
from actors._spec import EntitySpec, Kept
from actors.errors import DefinitionError, NonDeterminismError
from actors.observe import InvocationInfo, Outcome
from persistence.store import JournalEntry, NewEvent, SignalRecord, TimerRecord

T = TypeVar("T")
E = TypeVar("E", bound=Entity)


class Host(Protocol):
    """What an invocation needs of the actor that runs it (implemented by ``Actor``)."""

    kernel: Kernel
    spec: EntitySpec
    id: str
    backup: Entity | Kept | None
    seq: int

    def before_first_emit(self) -> None:
        """Keep a copy of the committed state before the first change."""
        ...

    async def state_at(self, seq: int) -> Entity:
        """The entity as it was after event ``seq``."""
        ...

    async def checkpoint(self, inv: Invocation, entries: list[JournalEntry]) -> None:
        """Commit the invocation's effects so far with ``entries``, in one transaction."""
        ...

    async def park(
        self,
        inv: Invocation,
        predicate: Callable[[], object] | None,
        deadline: float | None,
        deadline_value: object,
        watch: str | None,
    ) -> Any:
        """Park until resumed; returns the wake value (or raises Cancelled)."""
        ...


_NO_TIMERS: dict[str, TimerRecord] = {}
_NO_KEYS: set[str] = set()
_NO_SIGNALS: list[SignalRecord] = []
_NO_ENTRIES: list[JournalEntry] = []
"""Shared, always empty: an invocation's timers, cancelled keys, outbox and journal
entries until it has one (most handlers only emit events). Only the methods of
:class:`Invocation` add to them, and they replace a shared one first: fewer objects
made per message, and fewer for Python's cyclic collector to look at."""


class Invocation:
    """The context of one run of a signal handler."""

    __slots__ = (
        "_calls",
        "_journal",
        "_now",
        "_rng",
        "actor",
        "applied",
        "applying",
        "attempt",
        "cancel_flag",
        "cancels",
        "env",
        "events",
        "kernel",
        "outbox",
        "parks",
        "patches",
        "pending_journal",
        "replay",
        "runner",
        "segment_from",
        "signal",
        "target",
        "timers",
        "token",
    )

    def __init__(self, actor: Host, env: Envelope, attempt: int) -> None:
        self.actor = actor
        self.kernel = actor.kernel
        self.env = env
        self.signal: SignalRecord = env.signal
        self.attempt = attempt
        self.events: tuple[NewEvent, ...] = ()  # a tuple: the commit takes it as it is
        self.applied: tuple[object, ...] = ()
        """The event objects of ``events``, kept to check a mutable state against."""
        self.applying = False
        """An ``@applies`` method is running: field writes are allowed."""
        self.timers: dict[str, TimerRecord] = _NO_TIMERS  # set_timer
        self.cancels: set[str] = _NO_KEYS  # cancel_timer
        self._journal: StepJournal | None = None  # made on the first step: most runs have none
        self.outbox: list[SignalRecord] = _NO_SIGNALS  # add_outbox
        self.parks = 0
        self.token: object = None
        """What the observer returned when this run started."""
        self.runner: Any = None
        """The actor's record of this invocation's task (async handlers), for parking."""
        self.cancel_flag = CancelFlag() if env.handler.is_async else NEVER_CANCELLED
        self.replay: checkpoints.Replay | None = None
        self.pending_journal: list[JournalEntry] = _NO_ENTRIES
        """Journal entries committed with the next checkpoint (``journal_later``)."""
        self.segment_from = actor.seq
        """The entity's seq when the running segment began."""
        self.target: Entity | None = None  # the object the handler runs on
        self.patches = 0
        self._now: dt.datetime | None = None
        self._rng: random.Random | None = None
        self._calls: Outcalls | None = None

    def set_timer(self, key: str, rec: TimerRecord) -> None:
        """Set (or replace) the entity's timer ``key`` with this run's commit."""
        if self.timers is _NO_TIMERS:
            self.timers = {}
        self.cancels.discard(key)  # harmless on the shared empty set
        self.timers[key] = rec

    def cancel_timer(self, key: str) -> None:
        """Cancel the entity's timer ``key`` with this run's commit."""
        self.timers.pop(key, None)
        if self.cancels is _NO_KEYS:
            self.cancels = set()
        self.cancels.add(key)

    def add_outbox(self, rec: SignalRecord) -> None:
        """A signal to another entity, sent with this run's commit."""
        if self.outbox is _NO_SIGNALS:
            self.outbox = []
        self.outbox.append(rec)

    def journal_later(self, entry: JournalEntry) -> None:
        """A journal entry committed with the next checkpoint."""
        if self.pending_journal is _NO_ENTRIES:
            self.pending_journal = []
        self.pending_journal.append(entry)

    @property
    def info(self) -> InvocationInfo:
        """This run, for the observer and for log records."""
        s = self.signal
        return InvocationInfo(s.entity_type, s.entity_id, s.signal_id, s.handler, self.attempt, s.trace)

    @property
    def now(self) -> dt.datetime:
        """The invocation's time: when its signal was accepted (a timer's: its due time)."""
        if self._now is None:
            self._now = from_timestamp(self.signal.accepted_at)
        return self._now

    @property
    def rng(self) -> random.Random:
        """A generator seeded from the signal id."""
        if self._rng is None:
            self._rng = random.Random(f"{self.signal.entity_id}/{self.signal.signal_id}")
        return self._rng

    @property
    def journal(self) -> StepJournal:
        """The journal of this run's steps."""
        if self._journal is None:
            self._journal = StepJournal(self.kernel, self.env, self.attempt)
        return self._journal

    @property
    def has_journal(self) -> bool:
        """Whether this invocation has (or may have) journal entries in the store."""
        j = self._journal
        return j.has_journal if j is not None else self.attempt > 1

    @property
    def calls(self) -> Outcalls:
        """This invocation's calls to other entities (made on the first ``self.ref``)."""
        if self._calls is None:
            self._calls = Outcalls(self)
        return self._calls

    @property
    def dirty(self) -> bool:
        """Whether committing this invocation writes more than the processed mark."""
        return bool(self.events or self.timers or self.cancels or self.has_journal or self.outbox)

    def drop_effects(self) -> None:
        """Forget events, timers and outbox messages (the handler refused)."""
        self.events = ()
        self.applied = ()
        self.timers.clear()
        self.cancels.clear()
        self.outbox.clear()

    @contextlib.asynccontextmanager
    async def parked(self) -> AsyncIterator[None]:
        """Count this invocation as waiting (not busy) while any of its branches waits."""
        self.parks += 1
        if self.parks == 1:
            self.kernel.work.dec()
        try:
            yield
        finally:
            self.parks -= 1
            if self.parks == 0:
                self.kernel.work.inc()

    def step_started(self, kind: str, name: str, attempt: int) -> object:
        """Tell the observer a journaled step starts; returns its token."""
        obs = self.kernel.observer
        return obs.step_started(self.token, kind, name, attempt) if obs.active else None

    def step_ended(self, step: object, outcome: Outcome, error: BaseException | None) -> None:
        """Tell the observer a journaled step ended."""
        obs = self.kernel.observer
        if obs.active:
            obs.step_ended(step, outcome, error)

    # ------------------------------------------------------------ the context calls
    def emit(self, entity: Entity, event: object) -> None:
        """Encode ``event``, apply it to ``entity`` and keep it for the commit."""
        actor = self.actor
        applier = actor.spec.appliers.get(type(event))
        if applier is None:
            raise DefinitionError(f"{actor.spec.name} has no @applies method for {type(event).__qualname__}")
        new = self.kernel.codec.encode_event(event)
        rp = self.replay
        if rp is not None and rp.replaying:  # a committed segment: check, apply to the scratch copy
            if not rp.expected or rp.expected[0].type_name != new.type_name:
                got = rp.expected[0].type_name if rp.expected else "no more events"
                raise self.nondeterminism(f"it emits {new.type_name} where the log holds {got}")
            rp.expected.pop(0)
            self.applying = True
            try:
                applier(entity, event)
            finally:
                self.applying = False
            return
        if actor.backup is None:
            actor.before_first_emit()
        self.applying = True
        try:
            applier(entity, event)
        finally:
            self.applying = False
        self.events += (new,)
        if not actor.spec.shallow_copy:  # else nothing checks them (Loop._check_state)
            self.applied = (*self.applied, event)

    def resource(self, kind: type[T]) -> T:
        """The system's resource of type ``kind``."""
        return self.kernel.registry.resource(kind)

    def ref(self, entity: type[E] | str, entity_id: str) -> EntityRef[E]:
        """A ref bound to this invocation (tell through the outbox, journaled ask)."""
        registry = self.kernel.registry
        spec = registry.spec_of(entity)
        registry.check_id(entity_id)
        return EntityRef(self.calls, self.kernel.route, spec, entity_id)

    def saga(self, retry: RetryPolicy | None) -> SagaScope:
        """A compensation scope of this invocation."""
        return Saga(self, retry)

    def gather(
        self, steps: tuple[Awaitable[Any], ...], limit: int | None, return_exceptions: bool
    ) -> Coroutine[Any, Any, list[Any]]:
        """Journaled steps run concurrently (see ``Entity.gather``)."""
        self.assert_async("self.gather(...)")
        return gather(self, steps, limit=limit, return_exceptions=return_exceptions)

    def run(
        self,
        fn: Callable[..., Any],
        args: tuple[object, ...],
        retry: RetryPolicy | None,
        timeout: dt.timedelta | None,
        heartbeat_timeout: dt.timedelta | None,
    ) -> Coroutine[Any, Any, Any]:
        """A journaled activity step (see ``Entity.run``)."""
        self.assert_async("self.run(...)")
        return run_activity(self, fn, args, retry=retry, timeout=timeout, heartbeat_timeout=heartbeat_timeout)

    def assert_async(self, call: str) -> None:
        """Refuse a call that must be awaited from a plain ``def`` handler (it could not be)."""
        h = self.env.handler
        if not h.is_async:
            raise DefinitionError(
                f"{h.entity}.{h.name} is a plain def: {call} must be awaited, so the handler "
                "must be an async def"
            )

    # ------------------------------------------------------------ calls carried by collaborators
    # functions of the invocation (its first argument), bound here as its methods
    schedule = scheduling.schedule
    cancel = scheduling.cancel
    wait_until = checkpoints.wait_until
    sleep = checkpoints.sleep
    patched = checkpoints.patched
    prepare_rerun = checkpoints.prepare_rerun

    # ------------------------------------------------------------ journal
    def reserve_step(self) -> int:
        """Number the next journaled step (see ``StepJournal.reserve_step``)."""
        return self.journal.reserve_step()

    async def recorded(self, step: int, kind: str, name: str) -> JournalEntry | None:
        """What the journal holds for ``step`` (NonDeterminismError if another step)."""
        entry = await self.journal.recorded(step, kind, name)
        self.take_cancel()
        if entry is None:
            if self.replay is not None and self.replay.replaying:
                raise self.nondeterminism(f"step {step} ({kind} {name!r}) is not in its journal")
            if kind != "wait":
                self.cancel_flag.deliver()
        return entry

    async def journal_write(self, step: int, kind: str, name: str, result: str) -> None:
        """Record a step durably now; the first one also puts a direct ask in the inbox."""
        await self.journal.write(step, kind, name, result)

    def check_open(self) -> None:
        """Raise SystemClosed when the system is closing (see ``StepJournal.check_open``)."""
        self.journal.check_open()

    def take_cancel(self) -> None:
        """Take a journaled cancellation request into the cancel flag."""
        c = self.journal.entries.get(CANCEL_STEP)
        if c is not None and self.cancel_flag.reason is None:
            self.cancel_flag.reason = str(json.loads(c.result).get("reason", ""))

    def nondeterminism(self, what: str) -> NonDeterminismError:
        """The error of a re-run that differs from its journal."""
        s = self.signal
        return NonDeterminismError(
            f"re-run of {s.entity_type}/{s.entity_id}.{s.handler} (invocation {s.signal_id}) "
            f"differs from its journal: {what}"
        )

    def entry(self, step: int, kind: str, name: str, result: str) -> JournalEntry:
        """A journal entry of this invocation."""
        s = self.signal
        return JournalEntry(
            s.entity_type,
            s.entity_id,
            s.signal_id,
            step,
            kind,
            name,
            result,
            self.kernel.clock.now().timestamp(),
        )

    # ------------------------------------------------------------ workflows (actors._checkpoints)
    def check_finished(self) -> None:
        """NonDeterminismError if the handler ended inside its committed segments."""
        rp = self.replay
        if rp is not None and rp.replaying:
            raise self.nondeterminism("it ends before a wait its journal holds")

    async def commit_checkpoint(self, entries: list[JournalEntry]) -> None:
        """Commit the running segment with ``entries`` (the actor's ``checkpoint``)."""
        await self.actor.checkpoint(self, entries)

    async def park(
        self,
        predicate: Callable[[], object] | None,
        deadline: float | None,
        deadline_value: object,
        watch: str | None,
    ) -> Any:
        """Park until the wait is over (the actor's ``park``); returns the wake value."""
        return await self.actor.park(self, predicate, deadline, deadline_value, watch)
