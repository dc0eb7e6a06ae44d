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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar

import anyio

from actors import _outcome as outcome
from actors._activities import CancelFlag, run_activity
from actors._clock import MAX_DUE, from_timestamp
from actors._entity import Entity, SagaScope
from actors._envelope import Envelope, Reply
from actors._ids import check_text, derived_id, digest, internal_key_id, parse_start_id, start_id
from actors._journal import CANCEL_STEP, StepJournal, request_cancel
from actors._kernel import Kernel
from actors._policies import RetryPolicy
from actors._ref import EntityRef, InvocationHandle
from actors._saga import Saga, gather
from actors._spec import EntitySpec
from actors.errors import DeadlineExceeded, DefinitionError, InvalidArguments, NonDeterminismError, Rejected
from actors.observe import InvocationInfo, Outcome
from persistence.store import JournalEntry, NewEvent, SignalRecord, StoredEvent, TimerRecord

T = TypeVar("T")
E = TypeVar("E", bound=Entity)

MAX_TIMER_KEY = 256
PATCH_STEP = -1000
"""Journal steps of ``patched`` answers count down from here (apart from the step numbers)."""
AUTO_TIMER_PREFIX = "auto:"
"""Keys of timers scheduled without a key; a handler's own keys may not start so."""


class Host(Protocol):
    """What an invocation needs of the actor that runs it (implemented by ``Actor``)."""

    kernel: Kernel
    spec: EntitySpec
    id: str
    backup: Entity | None
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


class _Replay:
    """A re-run's replay of its committed segments on a scratch copy of the entity."""

    __slots__ = ("expected", "replaying")

    def __init__(self, expected: list[StoredEvent]) -> None:
        self.replaying = True
        """Still inside committed segments (effects are checked, not kept)."""
        self.expected = expected
        """The stored events of the segment being replayed, not yet matched."""


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
        self.runner: Any = None
        """The actor's record of this invocation's task (async handlers), for parking."""
        self.cancel_flag = CancelFlag()
        self.replay: _Replay | None = None
        self.pending_journal: list[JournalEntry] = []
        """Journal entries committed with the next checkpoint (none if it never parks)."""
        self.segment_from = actor.seq
        """The entity's seq when the running segment began."""
        self.target: Entity | None = None
        """The object the handler runs on."""
        self.patches = 0
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
        rp = self.replay
        if rp is not None and rp.replaying:  # a committed segment: check, apply to the scratch copy
            if not rp.expected or rp.expected[0].type_name != new.type_name:
                got = rp.expected[0].type_name if rp.expected else "no more events"
                raise self._nondeterminism(f"it emits {new.type_name} where the log holds {got}")
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
        entry = await self.journal.recorded(step, kind, name)
        self._take_cancel()
        if entry is None:
            if self.replay is not None and self.replay.replaying:
                raise self._nondeterminism(f"step {step} ({kind} {name!r}) is not in its journal")
            if kind != "wait":
                self.cancel_flag.deliver()
        return entry

    def _take_cancel(self) -> None:
        c = self.journal.entries.get(CANCEL_STEP)
        if c is not None and self.cancel_flag.reason is None:
            self.cancel_flag.reason = str(json.loads(c.result).get("reason", ""))

    def _nondeterminism(self, what: str) -> NonDeterminismError:
        s = self.signal
        return NonDeterminismError(
            f"re-run of {s.entity_type}/{s.entity_id}.{s.handler} (invocation {s.signal_id}) "
            f"differs from its journal: {what}"
        )

    def _entry(self, step: int, kind: str, name: str, result: str) -> JournalEntry:
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

    # ------------------------------------------------------------ workflows: re-run
    async def prepare_rerun(self) -> Entity | None:
        """Read the journal of an invocation that may have run before; when it holds
        committed segments, return the scratch entity its re-run starts on (the state
        its first segment saw), else None (it re-runs on the live state)."""
        j = self.journal
        await j.load(force=True)
        self._take_cancel()
        parks = self._parks()
        if not parks:
            return None
        first = parks[0][1]["park"]
        entity = await self.actor.state_at(int(first["from"]))
        self.replay = _Replay(await self._events(int(first["from"]), int(first["to"])))
        self.segment_from = int(first["from"])
        return entity

    def _parks(self) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for step, e in sorted(self.journal.entries.items()):
            if e.kind == "wait":
                data = json.loads(e.result)
                if "park" in data:
                    out.append((step, data))
        return out

    async def _events(self, after: int, upto: int) -> list[StoredEvent]:
        if upto <= after:
            return []
        a = self.actor
        return await self.kernel.store.read_events(a.spec.name, a.id, after=after, limit=upto - after)

    def _drop_replayed_effects(self) -> None:
        rp = self.replay
        assert rp is not None
        if rp.expected:
            raise self._nondeterminism(
                f"it emits fewer events than its committed segment ({rp.expected[0].type_name} and "
                f"{len(rp.expected) - 1} more are missing)"
            )
        self.drop_effects()

    async def _replay_boundary(self, step: int, data: dict[str, Any]) -> None:
        """A replayed wait that resumed: go on from the state it resumed on."""
        assert self.replay is not None
        assert self.target is not None
        self._drop_replayed_effects()
        seq = int(data["resume"]["seq"])
        fresh = await self.actor.state_at(seq)
        for name in self.actor.spec.field_names:
            object.__setattr__(self.target, name, getattr(fresh, name))
        nxt = [d for st, d in self._parks() if st > step]
        self.replay.expected = await self._events(seq, int(nxt[0]["park"]["to"])) if nxt else []
        self.segment_from = seq

    def check_finished(self) -> None:
        """NonDeterminismError if the handler ended inside its committed segments."""
        rp = self.replay
        if rp is not None and rp.replaying:
            raise self._nondeterminism("it ends before a wait its journal holds")

    # ------------------------------------------------------------ workflows: waits
    def wait_until(
        self, predicate: Callable[[], object], timeout: dt.timedelta | None
    ) -> Coroutine[Any, Any, bool]:
        """A checkpoint that parks until ``predicate`` holds (True) or ``timeout`` passes (False)."""
        self.assert_async("self.wait_until(...)")
        if not callable(predicate):
            raise InvalidArguments(f"wait_until() takes a function, got {predicate!r:.80}")
        _check_delta("timeout", timeout, optional=True)
        return self._wait_bool(predicate, timeout)

    async def _wait_bool(self, predicate: Callable[[], object], timeout: dt.timedelta | None) -> bool:
        return bool(await self._wait("wait_until", predicate, timeout, False, None))

    def sleep(self, duration: dt.timedelta) -> Coroutine[Any, Any, None]:
        """A durable sleep: a checkpoint that parks for ``duration``."""
        self.assert_async("self.sleep(...)")
        _check_delta("duration", duration, optional=False)
        return self._sleep(duration)

    async def _sleep(self, duration: dt.timedelta) -> None:
        await self._wait("sleep", None, duration, True, None)

    async def _wait(
        self,
        name: str,
        predicate: Callable[[], object] | None,
        after: dt.timedelta | None,
        deadline_value: object,
        watch: str | None,
    ) -> Any:
        """A checkpoint: commit, journal the wait, park; resume as the only writer."""
        step = self.reserve_step()
        entry = await self.recorded(step, "wait", name)
        park: dict[str, Any]
        if entry is not None:
            data = json.loads(entry.result)
            if "resume" in data:  # a committed segment ended here: replayed
                await self._replay_boundary(step, data)
                return data["resume"]["value"]
            park = data["park"]
            if self.replay is not None:  # where it was parked: the replay ends here
                self._drop_replayed_effects()
                self.replay.replaying = False
        else:
            self.cancel_flag.deliver()
            deadline = None if after is None else (self.kernel.clock.now() + after).timestamp()
            park = {"from": self.segment_from, "to": self.actor.seq + len(self.events), "deadline": deadline}
            entries = [*self.pending_journal, self._entry(step, "wait", name, json.dumps({"park": park}))]
            await self.actor.checkpoint(self, entries)
            self.pending_journal.clear()
            self.journal.entries[step] = entries[-1]
        value = await self.actor.park(self, predicate, park["deadline"], deadline_value, watch)
        self.segment_from = self.actor.seq
        resume = {"park": park, "resume": {"seq": self.actor.seq, "value": value}}
        self.pending_journal.append(self._entry(step, "wait", name, json.dumps(resume)))
        return value

    def patched(self, change_id: str) -> bool:
        """Whether this invocation runs change ``change_id``'s code (see ``Entity.patched``)."""
        check_text(change_id, "change id", max_length=MAX_TIMER_KEY)
        self.patches += 1
        step = PATCH_STEP - self.patches
        j = self.journal
        entry = j.entries.get(step)
        if entry is not None:
            if entry.name != change_id:
                raise self._nondeterminism(f"patched({change_id!r}) where the journal holds {entry.name!r}")
            return bool(json.loads(entry.result))
        # an invocation journaled before the change has steps past this point, or
        # committed segments still being replayed: it keeps its old code
        old = (self.replay is not None and self.replay.replaying) or any(
            st > j.step for st in j.entries if st > 0
        )
        answer = not old
        self.pending_journal.append(self._entry(step, "patch", change_id, json.dumps(answer)))
        return answer

    # ------------------------------------------------------------ workflows: children
    def start(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, InvocationHandle[Any]]:
        """Start a child invocation (journaled; sent with the next commit); returns its handle."""
        self.assert_async(f"self.ref(...).start({getattr(handler, '__name__', handler)!s:.60})")
        return self._start(spec, entity_id, handler, args, kwargs, key)

    async def _start(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
    ) -> InvocationHandle[Any]:
        step = self.reserve_step()
        s = self.signal
        unique = digest(s.entity_type, s.entity_id, s.signal_id, step if key is None else f"k:{key}")
        sid = start_id(spec.name, entity_id, "c", unique)
        h, _values, rec = spec.build_signal(
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
        name = f"{spec.name}/{entity_id}.{h.name}"
        entry = await self.recorded(step, "start", name)
        if entry is None:
            self.outbox.append(rec)
            self.pending_journal.append(self._entry(step, "start", name, json.dumps(sid)))
        return InvocationHandle(self, sid, h.returns)

    async def handle_result(self, handle_id: str, returns: object, timeout: float | None) -> Any:
        """A child's outcome: a checkpoint until it is committed (``timeout``: durable seconds)."""
        self.assert_async("handle.result()")
        after = None if timeout is None else dt.timedelta(seconds=timeout)
        text = await self._wait(f"result {handle_id}", None, after, None, handle_id)
        if text is None:
            raise DeadlineExceeded(f"no outcome of {handle_id} within {timeout:g}s")
        return outcome.decode(self.kernel.codec, str(text), returns, where=f"the outcome of {handle_id}")

    async def handle_cancel(self, handle_id: str, reason: str) -> None:
        """Request a child's cancellation (durably)."""
        etype, eid = parse_start_id(handle_id)
        await request_cancel(self.kernel, handle_id, etype, eid, reason)

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


def _check_delta(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, dt.timedelta) or value < dt.timedelta(0):
        raise InvalidArguments(f"{name} must be a timedelta >= 0, got {value!r:.80}")


def _check_timer_key(key: object) -> None:
    text = check_text(key, "timer key", max_length=MAX_TIMER_KEY)
    if text.startswith(AUTO_TIMER_PREFIX):
        raise InvalidArguments(
            f"timer keys starting with {AUTO_TIMER_PREFIX!r} are reserved, got {key!r:.80}"
        )
