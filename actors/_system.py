"""ActorSystem: lifecycle, the entity registry, refs, routing and activation.

The system owns a task group (every actor drain task, the group committer, the
passivation sweeper), a codec and a store. Entering it opens the store and
recovers: every signal still in the inbox is routed to its actor before the first
new call is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import attrs

from actors.commit import GroupCommitter
from actors.entity import IMMUTABLE_VALUES, Entity, EntitySpec, HandlerSpec, Kind, build_spec
from actors.errors import (
    DeadlineExceeded,
    DeadlockError,
    DefinitionError,
    IdempotencyConflict,
    InvalidArguments,
    SystemClosed,
    UnknownEntity,
    UnknownHandler,
)
from actors.ids import check_text, generated_id, is_keyed, keyed_id
from actors.mailbox import Actor, Envelope, Reply, _conflict_text
from actors.ref import EntityRef
from actors.supervisor import SupervisorPolicy
from actors.timers import Clock, SystemClock, TimerService
from persistence.codec import Codec, short_repr
from persistence.store import (
    Accept,
    Accepted,
    DeadLetter,
    Duplicate,
    Requeue,
    SignalRecord,
    Store,
    TakeOutbox,
)

E = TypeVar("E", bound=Entity)
T = TypeVar("T")

_INBOX_CHUNK = 1000


@attrs.frozen
class SystemStatistics:
    """A snapshot of the system's counters."""

    active_actors: int
    """Actors in memory (activated and not passivated)."""
    commit_batches: int
    """Store transactions written by the group committer."""
    commit_writes: int
    """Writes carried by those transactions (writes / batches = mean batch size)."""
    pending_writes: int
    """Writes waiting for the next transaction."""


class ActorSystem:
    """Runs entities as durable actors on a store. Use as ``async with``.

    ``entities`` lists the entity classes this system runs. ``passivate_after``
    (default 5 minutes; ``None`` never) drops idle actors from memory; they are
    rebuilt on their next message. ``clock`` (default the wall clock) drives
    backoff, passivation and timers; tests pass ``actors.testing.VirtualClock``.
    ``max_payload`` bounds any encoded arguments, event, result or snapshot.
    ``resources`` maps types to objects handlers reach with ``self.resource(T)``
    (clients of the outside world, for activities). ``recover=False`` starts without
    resuming the inbox, due timers and the outbox (for tools that make one call and
    exit, like the ``actors`` command): that pending work waits for a system that does.
    """

    def __init__(
        self,
        store: Store,
        entities: Sequence[type[Entity]],
        *,
        passivate_after: dt.timedelta | None = dt.timedelta(minutes=5),
        clock: Clock | None = None,
        supervision: SupervisorPolicy | None = None,
        max_payload: int = 2 * 1024 * 1024,
        max_batch: int = 2000,
        max_id_length: int = 256,
        resources: Mapping[type, object] | None = None,
        recover: bool = True,
    ) -> None:
        if isinstance(store, type) or not isinstance(store, Store):  # a class passes the Protocol check
            raise InvalidArguments(f"store must implement persistence.Store, got {store!r:.80}")
        if isinstance(entities, (str, bytes)) or not isinstance(entities, Sequence):
            raise InvalidArguments(f"entities must be a list of Entity classes, got {entities!r:.80}")
        if passivate_after is not None and (
            not isinstance(passivate_after, dt.timedelta) or passivate_after <= dt.timedelta(0)
        ):
            raise InvalidArguments(
                f"passivate_after must be a positive timedelta or None, got {passivate_after!r}"
            )
        if clock is not None and (isinstance(clock, type) or not isinstance(clock, Clock)):
            raise InvalidArguments(f"clock must implement actors.Clock, got {clock!r:.80}")
        if supervision is not None and not isinstance(supervision, SupervisorPolicy):
            raise InvalidArguments(f"supervision must be a SupervisorPolicy, got {supervision!r:.80}")
        for name, v, low in (("max_batch", max_batch, 1), ("max_id_length", max_id_length, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise InvalidArguments(f"{name} must be an int >= {low}, got {v!r}")
        try:
            self.codec = Codec(max_payload=max_payload)
        except ValueError as e:
            raise InvalidArguments(str(e)) from None
        if resources is not None and (
            not isinstance(resources, Mapping)
            or not all(isinstance(k, type) and isinstance(v, k) for k, v in resources.items())
        ):
            raise InvalidArguments(f"resources must map types to instances of them, got {resources!r:.100}")
        self._resources: dict[type, object] = dict(resources or {})
        self._recover_at_start = bool(recover)
        self.store = store
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.supervision = supervision or SupervisorPolicy()
        self.passivate_after = passivate_after
        self.max_id_length = max_id_length
        self.log = logging.getLogger("actors")
        self._specs: dict[str, EntitySpec] = {}
        self._by_cls: dict[type, EntitySpec] = {}
        self._by_fn: dict[Any, HandlerSpec] = {}
        for cls in entities:
            self._register(cls)
        if not self._specs:
            raise InvalidArguments("entities is empty: name at least one Entity class")
        self.committer = GroupCommitter(self, store, max_batch=max_batch)
        self.timers = TimerService(self)
        self._actors: dict[tuple[str, str], Actor] = {}
        self._state = "new"
        self._tasks: set[asyncio.Task[Any]] = set()
        """The system's own tasks (committer, timers, sweeper, retries): cancelled and awaited
        on close. Plain tasks, not a task group entered at start, so ``aclose()`` works from
        any cancel scope of its caller."""
        self._stack: contextlib.AsyncExitStack | None = None
        self._busy = 0
        self._idle: anyio.Event | None = None
        self._activated = anyio.Event()
        self._waits: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        self._drains: set[asyncio.Task[None]] = set()

    def _register(self, cls: type[Entity]) -> None:
        spec = build_spec(cls, self.codec)
        if spec.name in self._specs:
            raise DefinitionError(
                f"two entity classes are named {spec.name!r}: set entity_name on one of them"
            )
        self._specs[spec.name] = spec
        self._by_cls[cls] = spec
        for h in (*spec.signals.values(), *spec.queries.values()):
            self._by_fn[(spec.name, h.fn)] = h  # per entity: subclasses share inherited handlers

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise SystemClosed(f"an ActorSystem can be entered once (it is {self._state})")
        self._state = "starting"
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(self.store)
            self._start(self.committer.run)
            attach = getattr(self.clock, "attach", None)
            if attach is not None:
                attach(self)
                stack.callback(self.clock.detach, self)  # type: ignore[attr-defined]
            if self._recover_at_start:
                await self._recover()
                await self._recover_outbox()
                await self.timers.load()
            self._start(self.timers.run)
            if self.passivate_after is not None:
                self._start(self._sweep)
        except BaseException:
            self._state = "closed"
            with anyio.CancelScope(shield=True):
                await self._stop_tasks([*self._drains, *self._tasks])
                await stack.aclose()
            raise
        self._stack = stack
        self._state = "running"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop, answering every caller truthfully; never hangs on a handler.

        New calls get ``SystemClosed(accepted=False)``. Queued asks that had not
        started get the same (nothing of them was written). Running handlers are
        paused at their current await: a commit already under way finishes and its
        caller gets the real answer; otherwise nothing of the running segment is kept,
        and an ask gets ``SystemClosed`` whose ``accepted`` says whether the call is in
        the inbox (it then runs to its end after the next start). Context calls made
        while closing (a ``finally`` that asks) raise ``SystemClosed`` at once. Then
        every queued write is written and the store is closed.
        """
        if self._state != "running":
            return
        self._state = "closing"
        assert self._stack is not None
        try:
            with anyio.CancelScope(shield=True):
                for actor in list(self._actors.values()):
                    actor.fail_pending()
                    actor.pause()
                drains = list(self._drains)
                if drains:
                    await asyncio.gather(*drains, return_exceptions=True)
                await self.committer.close()
                await self._stop_tasks(list(self._tasks))
                await self._stack.aclose()
        finally:
            self._state = "closed"
            self._actors.clear()

    async def _stop_tasks(self, tasks: list[asyncio.Task[Any]]) -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _check_running(self) -> None:
        if self._state != "running":
            raise SystemClosed(f"the actor system is {self._state}, not running")

    @property
    def running(self) -> bool:
        """Whether the system takes calls."""
        return self._state == "running"

    @property
    def closing(self) -> bool:
        """Whether the system is closing or closed (handlers are being paused)."""
        return self._state in ("closing", "closed")

    def runs_type(self, name: str) -> bool:
        """Whether this system runs the entity type stored as ``name``."""
        return name in self._specs

    # ------------------------------------------------------------ task and busy tracking
    def spawn_drain(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start an actor's drain loop.

        Drains are the one per-message-burst task, so they are created on the loop
        directly (an anyio task-group spawn costs several times more); the system
        still owns them: it keeps them in a set and cancels and awaits them on close.
        """
        if self._state not in ("starting", "running"):
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Start a task owned by the system (cancelled and awaited when it closes)."""
        if self._state not in ("starting", "running"):
            return
        self._start(fn)

    def _start(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        task = asyncio.get_running_loop().create_task(fn())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.critical("a task of the actor system died", exc_info=task.exception())

    def busy_inc(self) -> None:
        """Count one unit of runnable work (a queued message, a pending write)."""
        self._busy += 1

    def busy_dec(self) -> None:
        """Uncount one unit of work; wakes ``wait_idle`` at zero."""
        self._busy -= 1
        if self._busy <= 0 and self._idle is not None:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def parked(self) -> AsyncIterator[None]:
        """Mark the current work as waiting on the clock (not busy) inside the block."""
        self.busy_dec()
        try:
            yield
        finally:
            self.busy_inc()

    async def wait_idle(self) -> None:
        """Wait until no message, write or handler is in progress (for virtual clocks)."""
        while self._busy > 0:
            self._idle = anyio.Event()
            await self._idle.wait()
        self._idle = None

    @property
    def busy(self) -> int:
        """Units of runnable work in progress."""
        return self._busy

    # ------------------------------------------------------------ registry and refs
    def spec_of(self, entity: type[Entity] | str) -> EntitySpec:
        """The spec of a registered entity class or name; UnknownEntity otherwise."""
        spec = self._specs.get(entity) if isinstance(entity, str) else self._by_cls.get(entity)
        if spec is None:
            name = entity if isinstance(entity, str) else getattr(entity, "__qualname__", repr(entity))
            raise UnknownEntity(
                f"unknown entity type {name!r:.100}; this system runs: {', '.join(sorted(self._specs))}"
            )
        return spec

    def ref(self, entity: type[E] | str, entity_id: str) -> EntityRef[E]:
        """A ref to entity ``entity_id`` of a registered type (class or its name)."""
        spec = self.spec_of(entity)
        self.check_id(entity_id)
        return EntityRef(self, spec, entity_id)

    def resource(self, kind: type[T]) -> T:
        """The resource registered for ``kind`` (or a subclass of it); InvalidArguments if none."""
        found = self._resources.get(kind)
        if found is None:
            found = next((v for k, v in self._resources.items() if issubclass(k, kind)), None)
        if found is None:
            have = ", ".join(sorted(k.__qualname__ for k in self._resources)) or "none"
            raise InvalidArguments(
                f"no resource of type {kind!r:.80} was given to the system (it has: {have})"
            )
        return found  # type: ignore[return-value]

    def check_id(self, entity_id: object) -> None:
        """Raise InvalidArguments unless ``entity_id`` is a usable entity id."""
        check_text(entity_id, "entity id", max_length=self.max_id_length)

    def actor(self, spec: EntitySpec, entity_id: str) -> Actor:
        """The actor of an entity, created (not yet loaded) if it is not in memory."""
        key = (spec.name, entity_id)
        actor = self._actors.get(key)
        if actor is None:
            actor = Actor(self, spec, entity_id)
            self._actors[key] = actor
            if not self._activated.is_set():
                self._activated.set()
        return actor

    def resolve(self, spec: EntitySpec, handler: object, kind: Kind) -> HandlerSpec:
        """The handler of ``spec`` given as function or name; UnknownHandler otherwise."""
        if isinstance(handler, str):
            table = spec.signals if kind == "signal" else spec.queries
            h = table.get(handler)
            if h is None:
                other = spec.queries if kind == "signal" else spec.signals
                hint = f" (it is a @{'query' if kind == 'signal' else 'signal'})" if handler in other else ""
                raise UnknownHandler(
                    f"{spec.name} has no @{kind} named {short_repr(handler, 100)}{hint}; "
                    f"it has: {', '.join(sorted(table)) or 'none'}"
                )
            return h
        h = self._by_fn.get((spec.name, handler)) if callable(handler) else None
        if h is None:
            raise UnknownHandler(f"{short_repr(handler, 100)} is not a handler of {spec.name}")
        if h.kind != kind:
            raise UnknownHandler(f"{spec.name}.{h.name} is a @{h.kind}, not a @{kind}")
        return h

    def build_signal(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        *,
        signal_id: str,
        accepted_at: float,
    ) -> tuple[HandlerSpec, dict[str, object], SignalRecord]:
        """Resolve, bind, check and encode a signal call into its record.

        Only ids that can repeat get a fingerprint (it tells a reused key from a repeat);
        a generated id never repeats, so it is spared the digest.
        """
        h = self.resolve(spec, handler, "signal")
        values = h.bind(args, kwargs)
        text = h.encode(self.codec, values)
        fp = h.fingerprint(text) if is_keyed(signal_id) else ""
        return h, values, SignalRecord(spec.name, entity_id, signal_id, h.name, text, fp, accepted_at)

    def _signal(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
    ) -> tuple[HandlerSpec, dict[str, object], SignalRecord]:
        self._check_running()
        sid = keyed_id(key) if key is not None else generated_id()
        return self.build_signal(
            spec, entity_id, handler, args, kwargs, signal_id=sid, accepted_at=self.clock.now().timestamp()
        )

    # ------------------------------------------------------------ entity-to-entity
    def check_cycle(self, source: tuple[str, str], target: tuple[str, str]) -> None:
        """Raise DeadlockError if ``target`` already waits (transitively) on ``source``."""
        path = self._path(target, source, set())
        if path is not None:
            names = " -> ".join(f"{t}/{i}" for t, i in [source, *path])
            raise DeadlockError(f"ask cycle: {names}; every entity in it would wait forever")

    def _path(
        self, at: tuple[str, str], goal: tuple[str, str], seen: set[tuple[str, str]]
    ) -> list[tuple[str, str]] | None:
        if at == goal:
            return [at]
        if at in seen:
            return None
        seen.add(at)
        for nxt in self._waits.get(at, {}):
            rest = self._path(nxt, goal, seen)
            if rest is not None:
                return [at, *rest]
        return None

    @contextlib.contextmanager
    def waiting(self, source: tuple[str, str], target: tuple[str, str]) -> Iterator[None]:
        """Record that ``source``'s handler waits on ``target`` (for cycle detection)."""
        edges = self._waits.setdefault(source, {})
        edges[target] = edges.get(target, 0) + 1
        try:
            yield
        finally:
            edges[target] -= 1
            if not edges[target]:
                del edges[target]
            if not edges:
                del self._waits[source]

    def deliver_outbox(self, ids: Sequence[int], signals: Sequence[SignalRecord]) -> None:
        """Move committed outbox messages to their targets' inboxes (at least once)."""
        for oid, s in zip(ids, signals, strict=True):
            self.committer.submit_nowait(TakeOutbox(oid, Accept(s)), self.route_accepted(s))

    async def _recover_outbox(self) -> None:
        after = 0
        while True:
            entries = await self.store.read_outbox(after=after, limit=_INBOX_CHUNK)
            for e in entries:
                after = e.id
                self.deliver_outbox([e.id], [e.signal])
            if len(entries) < _INBOX_CHUNK:
                return

    # ------------------------------------------------------------ calls
    async def _tell(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
    ) -> None:
        h, values, rec = self._signal(spec, entity_id, handler, args, kwargs, key)
        sid, fp = rec.signal_id, rec.fingerprint
        actor = self.actor(spec, entity_id) if key is not None else None
        fresh = False
        if actor is not None:  # a keyed call of the same key may be under way: compare
            asked, told = actor.asking.get(sid), actor.telling.get(sid)
            if (asked is not None and asked != fp) or (told is not None and told != fp):
                raise IdempotencyConflict(_conflict_text(rec))
            fresh = told is None
            actor.telling.setdefault(sid, fp)
        routed = False

        def route(result: object) -> None:
            nonlocal routed
            if isinstance(result, Accepted) and self._state == "running":
                routed = True
                shared = values if h.immutable_args else None  # else the handler decodes its own copy
                env = Envelope(h, rec, values=shared, keyed=key is not None, reply=None, from_inbox=True)
                self.actor(spec, entity_id).deliver(env)

        try:
            result = await self._deadline(
                self.committer.submit(Accept(rec, check_duplicate=key is not None), route), timeout
            )
        finally:
            if actor is not None and fresh and not routed:
                actor.telling.pop(sid, None)
        if isinstance(result, Duplicate) and result.fingerprint != fp:
            raise IdempotencyConflict(_conflict_text(rec))

    async def _ask(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
    ) -> Any:
        h, values, rec = self._signal(spec, entity_id, handler, args, kwargs, key)
        reply = Reply()
        shared = values if h.immutable_args else None  # else the handler decodes its own copy
        env = Envelope(h, rec, values=shared, keyed=key is not None, reply=reply, from_inbox=False)
        self.actor(spec, entity_id).deliver(env)
        if timeout is None:
            return await reply.future
        return await self._deadline(reply.wait(), timeout)

    async def _query(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        timeout: float | None,
    ) -> Any:
        self._check_running()
        h = self.resolve(spec, handler, "query")
        values = h.bind(args, kwargs)
        actor = self.actor(spec, entity_id)
        if actor.view is None:
            await self._deadline(actor.ensure_active(), timeout)
        view = actor.view
        assert view is not None
        result = h.call_query(view, values)
        return result if type(result) in IMMUTABLE_VALUES else copy.deepcopy(result)

    async def _deadline(self, aw: Awaitable[T], timeout: float | None) -> T:
        if timeout is None:
            return await aw
        try:
            with anyio.fail_after(timeout):
                return await aw
        except TimeoutError:
            raise DeadlineExceeded(f"no answer within {timeout:g}s") from None

    # ------------------------------------------------------------ recovery and passivation
    async def recover_entity(self, entity: type[Entity] | str, entity_id: str) -> int:
        """Route one entity's pending inbox signals to it (with ``recover=False``: a tool
        that calls one entity first lets that entity's earlier signals run, in order)."""
        self._check_running()
        return await self._recover(only=(self.spec_of(entity).name, entity_id))

    async def _recover(self, only: tuple[str, str] | None = None) -> int:
        after = 0
        count = 0
        while True:
            entries = await self.store.read_inbox(after=after, limit=_INBOX_CHUNK)
            for entry in entries:
                after = entry.position
                s = entry.signal
                if only is None or (s.entity_type, s.entity_id) == only:
                    count += self._route_stored(s)
            if len(entries) < _INBOX_CHUNK:
                break
        if count:
            self.log.info("recovered %d pending signals from the inbox", count)
        return count

    def _route_stored(self, s: SignalRecord) -> int:
        spec = self._specs.get(s.entity_type)
        h = spec.signals.get(s.handler) if spec is not None else None
        if spec is None or h is None:
            self.log.warning(
                "inbox signal %s for %s/%s.%s names an unknown entity type or handler; left in place",
                s.signal_id,
                s.entity_type,
                s.entity_id,
                s.handler,
            )
            return 0
        self.actor(spec, s.entity_id).deliver(
            Envelope(h, s, values=None, keyed=is_keyed(s.signal_id), reply=None, from_inbox=True)
        )
        return 1

    def route_accepted(self, s: SignalRecord) -> Callable[[object], None]:
        """A committer ``after`` hook routing ``s`` to its actor once it is in the inbox."""

        def route(result: object) -> None:
            # "starting" too: outbox messages recovered at start may be accepted before it ends
            if isinstance(result, Accepted) and self._state in ("starting", "running"):
                self._route_stored(s)

        return route

    async def _sweep(self) -> None:
        assert self.passivate_after is not None
        after = self.passivate_after
        while True:
            if not self._actors:
                self._activated = anyio.Event()
                await self._activated.wait()
            idle = [a.last_active for a in self._actors.values() if a.idle]
            wake = (min(idle) if idle else self.clock.now()) + after
            # not parked(): the sweeper is no unit of busy work, so it has none to give back
            await self.clock.sleep_until(wake)
            self.passivate_idle(older_than=after)

    def passivate_idle(self, *, older_than: dt.timedelta = dt.timedelta(0)) -> int:
        """Drop idle actors not used for ``older_than``; returns how many were dropped."""
        now = self.clock.now()
        drop = [
            k
            for k, a in self._actors.items()
            if a.idle and a.stopped_until is None and a.last_active + older_than <= now
        ]
        for k in drop:
            del self._actors[k]
        return len(drop)

    def is_active(self, entity: type[Entity] | str, entity_id: str) -> bool:
        """Whether the entity is in memory now."""
        return (self.spec_of(entity).name, entity_id) in self._actors

    # ------------------------------------------------------------ dead letters
    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """Signals whose handlers kept crashing, oldest first."""
        self._check_running()
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidArguments(f"limit must be an int >= 1, got {limit!r}")
        return await self.store.read_dead_letters(limit=limit)

    async def retry_dead_letter(self, dead_letter_id: int) -> None:
        """Put a dead letter back in its entity's inbox and deliver it again."""
        self._check_running()
        if not isinstance(dead_letter_id, int) or isinstance(dead_letter_id, bool):
            raise InvalidArguments(f"dead_letter_id must be an int, got {dead_letter_id!r}")
        found = [d for d in await self.store.read_dead_letters(limit=1_000_000) if d.id == dead_letter_id]
        if not found:
            raise InvalidArguments(f"no dead letter with id {dead_letter_id}")
        signal = found[0].signal

        def route(_: object) -> None:
            self._route_stored(signal)

        await self.committer.submit(Requeue(dead_letter_id), route)

    # ------------------------------------------------------------ introspection
    def statistics(self) -> SystemStatistics:
        """Counters of the running system."""
        c = self.committer
        return SystemStatistics(len(self._actors), c.batches, c.writes, c.pending)
