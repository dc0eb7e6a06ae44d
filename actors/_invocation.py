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
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar

import anyio

from actors import _outcome as outcome
from actors._activities import run_activity
from actors._clock import MAX_DUE, from_timestamp
from actors._entity import Entity, SagaScope
from actors._envelope import Envelope, Reply
from actors._ids import check_text, derived_id, internal_key_id
from actors._journal import StepJournal
from actors._kernel import Kernel
from actors._policies import RetryPolicy
from actors._ref import EntityRef
from actors._saga import Saga, gather
from actors._spec import EntitySpec
from actors.errors import DeadlineExceeded, DefinitionError, InvalidArguments, Rejected
from actors.observe import InvocationInfo, Outcome
from persistence.store import JournalEntry, NewEvent, SignalRecord, TimerRecord

T = TypeVar("T")
E = TypeVar("E", bound=Entity)

MAX_TIMER_KEY = 256
AUTO_TIMER_PREFIX = "auto:"
"""Keys of timers scheduled without a key; a handler's own keys may not start so."""


class Host(Protocol):
    """What an invocation needs of the actor that runs it (implemented by ``Actor``)."""

    kernel: Kernel
    spec: EntitySpec
    id: str
    backup: Entity | None

    def before_first_emit(self) -> None:
        """Keep a copy of the committed state before the first change."""
        ...


class _Done:
    """An awaitable that is already done (the outbox ``tell`` of a bound ref)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # makes this a generator function: awaiting it returns None at once


_DONE = _Done()


class Invocation:
    """The context of one run of a signal handler."""

    __slots__ = (
        "_journal",
        "_now",
        "_rng",
        "actor",
        "applied",
        "applying",
        "attempt",
        "cancels",
        "env",
        "events",
        "kernel",
        "outbox",
        "parks",
        "signal",
        "timers",
        "token",
    )

    def __init__(self, actor: Host, env: Envelope, attempt: int) -> None:
        self.actor = actor
        self.kernel = actor.kernel
        self.env = env
        self.signal: SignalRecord = env.signal
        self.attempt = attempt
        self.events: list[NewEvent] = []
        self.applied: list[object] = []
        """The event objects of ``events`` (to check the state against them)."""
        self.applying = False
        """An ``@applies`` method is running: field writes are allowed."""
        self.timers: dict[str, TimerRecord] = {}
        self.cancels: set[str] = set()
        self._journal: StepJournal | None = None  # made on the first step: most runs have none
        self.outbox: list[SignalRecord] = []
        self.parks = 0
        self.token: object = None
        """What the observer returned when this run started."""
        self._now: dt.datetime | None = None
        self._rng: random.Random | None = None

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
    def dirty(self) -> bool:
        """Whether committing this invocation writes more than the processed mark."""
        return bool(self.events or self.timers or self.cancels or self.has_journal or self.outbox)

    def drop_effects(self) -> None:
        """Forget events, timers and outbox messages (the handler refused)."""
        self.events.clear()
        self.applied.clear()
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
        if actor.backup is None:
            actor.before_first_emit()
        self.applying = True
        try:
            applier(entity, event)
        finally:
            self.applying = False
        self.events.append(new)
        self.applied.append(event)

    def resource(self, kind: type[T]) -> T:
        """The system's resource of type ``kind``."""
        return self.kernel.registry.resource(kind)

    def ref(self, entity: type[E] | str, entity_id: str) -> EntityRef[E]:
        """A ref bound to this invocation (tell through the outbox, journaled ask)."""
        registry = self.kernel.registry
        spec = registry.spec_of(entity)
        registry.check_id(entity_id)
        return EntityRef(self, self.kernel.route, spec, entity_id)

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

    # ------------------------------------------------------------ timers
    def schedule(
        self,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        *,
        after: dt.timedelta | None,
        at: dt.datetime | None,
        every: dt.timedelta | None,
        key: str | None,
    ) -> str:
        """Schedule a signal to this entity; committed with the invocation. Returns the key."""
        actor = self.actor
        h = actor.spec.resolve(handler, "signal")
        given = [n for n, v in (("after", after), ("at", at)) if v is not None]
        if len(given) > 1:
            raise InvalidArguments("schedule() takes after= or at=, not both")
        if not given and every is None:
            raise InvalidArguments("schedule() needs after=timedelta, at=datetime or every=timedelta")
        for name, v in (("after", after), ("every", every)):
            if v is not None and (not isinstance(v, dt.timedelta) or v < dt.timedelta(0)):
                raise InvalidArguments(f"{name} must be a timedelta >= 0, got {v!r}")
        if every is not None and every <= dt.timedelta(0):
            raise InvalidArguments(f"every must be a positive timedelta, got {every!r}")
        if at is not None and (not isinstance(at, dt.datetime) or at.tzinfo is None):
            raise InvalidArguments(f"at must be a timezone-aware datetime, got {at!r}")
        if key is not None:
            _check_timer_key(key)
        values = h.bind(args, kwargs)
        text = h.encode(self.kernel.codec, values)
        try:
            due = at if at is not None else self.now + (after if after is not None else every)  # type: ignore[operator]
            due_ts = due.timestamp()
            ok = from_timestamp(due_ts) <= MAX_DUE
        except (OverflowError, ValueError, OSError):
            ok = False
        if not ok:
            raise InvalidArguments(f"timer due time is out of range (latest: {MAX_DUE.isoformat()})")
        if key is None:
            key = AUTO_TIMER_PREFIX + derived_id(
                "", self.signal.signal_id, len(self.timers) + len(self.cancels)
            )
        rec = TimerRecord(
            actor.spec.name,
            actor.id,
            key,
            h.name,
            text,
            due_ts,
            every.total_seconds() if every is not None else None,
            self.kernel.observer.carry(),  # the firing carries the context that set it
        )
        self.cancels.discard(key)
        self.timers[key] = rec
        return key

    def cancel(self, key: str) -> None:
        """Cancel the timer ``key`` of this entity (no error if there is none)."""
        _check_timer_key(key)
        self.timers.pop(key, None)
        self.cancels.add(key)

    # ------------------------------------------------------------ journal
    def reserve_step(self) -> int:
        """Number the next journaled step (see ``StepJournal.reserve_step``)."""
        return self.journal.reserve_step()

    async def recorded(self, step: int, kind: str, name: str) -> JournalEntry | None:
        """What the journal holds for ``step`` (NonDeterminismError if another step)."""
        return await self.journal.recorded(step, kind, name)

    async def journal_write(self, step: int, kind: str, name: str, result: str) -> None:
        """Record a step durably now; the first one also puts a direct ask in the inbox."""
        await self.journal.write(step, kind, name, result)

    def check_open(self) -> None:
        """Raise SystemClosed when the system is closing (see ``StepJournal.check_open``)."""
        self.journal.check_open()

    # ------------------------------------------------------------ other entities
    def _key_id(self, key: str) -> str:
        s = self.signal
        return internal_key_id(s.entity_type, s.entity_id, key)

    def tell(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None = None,
    ) -> Awaitable[None]:
        """Queue a signal in the outbox; sent after (and only if) this invocation commits."""
        s = self.signal
        if key is not None:
            sid = self._key_id(key)
        else:
            sid = derived_id("o", s.entity_type, s.entity_id, s.signal_id, len(self.outbox))
        _h, _values, rec = spec.build_signal(
            self.kernel.codec,
            entity_id,
            handler,
            args,
            kwargs,
            signal_id=sid,
            accepted_at=self.now.timestamp(),
            keyed=True,
            trace=self.kernel.observer.carry(),
        )
        self.outbox.append(rec)
        return _DONE

    def ask(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """A journaled ask to another entity (see ``EntityRef.ask``); must be awaited."""
        self.assert_async(f"self.ref(...).ask({getattr(handler, '__name__', handler)!s:.60})")
        return self._ask(spec, entity_id, handler, args, kwargs, key, timeout)

    def query(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        timeout: float | None,
    ) -> Coroutine[Any, Any, Any]:
        """A query of another entity's committed state (not journaled)."""
        return self.kernel.route.query(spec, entity_id, handler, args, kwargs, timeout)

    async def _ask(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None = None,
    ) -> Any:
        """A journaled ask to another entity (see ``EntityRef.ask``).

        ``timeout`` (wall seconds) bounds the wait; past it ``DeadlineExceeded`` is
        raised, and journaled, so a re-run takes the same branch.
        """
        step = self.reserve_step()
        kernel = self.kernel
        s = self.signal
        if key is not None:
            sid = self._key_id(key)
        else:
            sid = derived_id("a", s.entity_type, s.entity_id, s.signal_id, step)
        h, values, rec = spec.build_signal(
            kernel.codec,
            entity_id,
            handler,
            args,
            kwargs,
            signal_id=sid,
            accepted_at=kernel.clock.now().timestamp(),
            keyed=True,
            trace=kernel.observer.carry(),
        )
        name = f"{spec.name}/{entity_id}.{h.name}"
        entry = await self.recorded(step, "ask", name)
        if entry is not None:
            return outcome.decode(kernel.codec, entry.result, h.returns)
        me = (self.actor.spec.name, self.actor.id)
        target = (spec.name, entity_id)
        if target == me:
            raise InvalidArguments(
                f"{me[0]}/{me[1]} asks itself ({h.name}): it would wait for its own mailbox; "
                "use self.ref(...).tell or call the logic directly"
            )
        kernel.waits.check_cycle(me, target)
        reply = Reply()
        kernel.route.deliver(
            spec, entity_id, Envelope(h, rec, values=values, keyed=True, reply=reply, from_inbox=False)
        )
        token = self.step_started("ask", name, 1)
        try:
            with kernel.waits.waiting(me, target):
                async with self.parked():
                    if timeout is None:
                        value = await reply.wait()
                    else:
                        with anyio.move_on_after(timeout) as waited:
                            value = await reply.wait()
                        if waited.cancelled_caught:
                            raise DeadlineExceeded(f"{name}: no answer within {timeout:g}s")
        except DeadlineExceeded as d:
            self.step_ended(token, "failed", d)
            await self.journal_write(step, "ask", name, outcome.encode_error("deadline", d))
            raise
        except Rejected as r:
            self.step_ended(token, "rejected", r)
            await self.journal_write(step, "ask", name, outcome.encode_error("rejected", r))
            raise
        except BaseException as e:
            self.step_ended(token, "failed", e)
            raise
        self.step_ended(token, "ok", None)
        stored = outcome.encode_ok(kernel.codec, value, h.returns, f"answer of {name}")
        await self.journal_write(step, "ask", name, stored)
        return outcome.decode(kernel.codec, stored, h.returns)


def _check_timer_key(key: object) -> None:
    text = check_text(key, "timer key", max_length=MAX_TIMER_KEY)
    if text.startswith(AUTO_TIMER_PREFIX):
        raise InvalidArguments(
            f"timer keys starting with {AUTO_TIMER_PREFIX!r} are reserved, got {key!r:.80}"
        )
