"""ActorSystem: the facade. Configuration, lifecycle, refs and administration.

The system owns a kernel (store, codec, clock, group committer, timers), a
directory of the actors in memory (routing, recovery, passivation) and the outside
caller. Entering it opens the store and recovers: every signal still in the inbox
is routed to its actor before the first new call is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import attrs

from actors._calls import Calls
from actors._clock import Clock, SystemClock
from actors._cluster import Cluster, Member, list_members
from actors._directory import Directory
from actors._entity import Entity
from actors._kernel import Kernel
from actors._observing import SafeObserver
from actors._policies import Retention, SupervisorPolicy, check_int
from actors._ref import EntityRef, InvocationHandle
from actors._registry import Registry
from actors._retention import run_retention
from actors.errors import InvalidArguments, SystemClosed
from actors.observe import NO_OBSERVER, Observer
from persistence.codec import Codec
from persistence.store import DeadLetter, Requeue, SharedStore, Store

E = TypeVar("E", bound=Entity)
T = TypeVar("T")


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
    inbox_depth: int = 0
    """Signals queued in the mailboxes of the actors in memory (not yet running)."""
    running_handlers: int = 0
    """Actors whose drain loop is running a handler now."""
    dead_letters: int = 0
    """Signals dead-lettered since start."""
    retries: int = 0
    """Crashed handler runs retried since start."""
    timers_pending: int = 0
    """Durable timers scheduled and not yet fired."""


def _check_config(
    store: object,
    entities: object,
    passivate_after: object,
    clock: object,
    supervision: object,
    observer: object,
    resources: object,
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
    if isinstance(observer, type) or not isinstance(observer, Observer):
        raise InvalidArguments(f"observer must implement actors.observe.Observer, got {observer!r:.80}")
    if resources is not None and (
        not isinstance(resources, Mapping)
        or not all(isinstance(k, type) and isinstance(v, k) for k, v in resources.items())
    ):
        raise InvalidArguments(f"resources must map types to instances of them, got {resources!r:.100}")


def _check_cluster(store: object, serve: object, lease_ttl: object, member_name: object) -> bool:
    """Check the cluster arguments; returns whether the store is shared."""
    shared = isinstance(store, SharedStore) and bool(getattr(store, "shared", False))
    if not isinstance(serve, bool):
        raise InvalidArguments(f"serve must be True or False, got {serve!r:.40}")
    if not serve and not shared:
        raise InvalidArguments(
            "serve=False makes a client of a shared store (PostgresStore, "
            f"SqliteStore(path, shared=True)); {store!r:.60} is not shared"
        )
    if not isinstance(lease_ttl, dt.timedelta) or not dt.timedelta(seconds=0.5) <= lease_ttl <= dt.timedelta(
        hours=1
    ):
        raise InvalidArguments(f"lease_ttl must be a timedelta from 0.5 s to 1 hour, got {lease_ttl!r:.60}")
    if member_name is not None and (
        not isinstance(member_name, str)
        or not 0 < len(member_name) <= 200
        or "\0" in member_name
        or not member_name.isprintable()
        or any("\ud800" <= c <= "\udfff" for c in member_name)
    ):
        raise InvalidArguments(
            "member_name must be 1..200 printable characters (no NUL, no lone surrogate), "
            f"got {member_name!r:.60}"
        )
    return shared


class ActorSystem:
    """Runs entities as durable actors on a store. Use as ``async with``.

    ``entities`` lists the entity classes this system runs. ``passivate_after``
    (default 5 minutes; ``None`` never) drops idle actors from memory; they are
    rebuilt on their next message. ``clock`` (default the wall clock) drives
    backoff, passivation and timers; tests pass ``actors.testing.VirtualClock``.
    ``max_payload`` bounds any encoded arguments, event, result or snapshot.
    ``resources`` maps types to objects handlers reach with ``self.resource(T)``
    (clients of the outside world, for activities). ``observer`` receives the
    runtime's observations (``actors.observe``). ``recover=False`` starts without
    resuming the inbox, due timers and the outbox (for tools that make one call and
    exit, like the ``actors`` command): that pending work waits for a system that does.
    ``max_mailbox`` (default 10,000; ``None`` unbounded) is back-pressure: an outside
    ``tell``/``ask``/``start`` to an entity with that many signals queued in memory is
    refused with ``Overloaded`` before anything is written (durable work already
    accepted is always delivered). ``retention`` (an ``actors.Retention``) prunes old processed marks and dead
    letters periodically; without it they are kept forever.

    On a shared store (``PostgresStore``, ``SqliteStore(path, shared=True)``) the
    system is a **member**: it owns a share of the entities (shards) and any number
    of members and clients may run at once; every call reaches its entity wherever
    it runs. ``serve=False`` makes it a **client** that owns nothing (a web worker,
    a script). ``lease_ttl`` is how long a member that stops heartbeating keeps its
    shards before the others take them over; ``member_name`` names it for people
    (``members()``, ``actors members``).
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
        max_mailbox: int | None = 10_000,
        resources: Mapping[type, object] | None = None,
        observer: Observer = NO_OBSERVER,
        recover: bool = True,
        retention: Retention | None = None,
        serve: bool = True,
        lease_ttl: dt.timedelta = dt.timedelta(seconds=10),
        member_name: str | None = None,
    ) -> None:
        _check_config(store, entities, passivate_after, clock, supervision, observer, resources)
        shared = _check_cluster(store, serve, lease_ttl, member_name)
        check_int("max_batch", max_batch, 1)
        check_int("max_id_length", max_id_length, 1)
        try:
            codec = Codec(max_payload=max_payload)
        except ValueError as e:
            raise InvalidArguments(str(e)) from None
        log = logging.getLogger("actors")
        registry = Registry(entities, codec, resources=resources or {}, max_id_length=max_id_length)
        self._kernel = kernel = Kernel(
            store,
            codec,
            clock if clock is not None else SystemClock(),
            registry,
            supervision=supervision or SupervisorPolicy(),
            observer=SafeObserver(observer, log),
            log=log,
            max_batch=max_batch,
        )
        self._directory = Directory(kernel)
        kernel.router = self._directory
        if max_mailbox is not None:
            check_int("max_mailbox", max_mailbox, 1)
        self._calls = Calls(kernel, self._directory, max_mailbox=max_mailbox)
        if retention is not None and not isinstance(retention, Retention):
            raise InvalidArguments(f"retention must be an actors.Retention or None, got {retention!r:.80}")
        self._retention = retention
        self._recover_at_start = bool(recover)
        self._cluster = (
            Cluster(
                kernel,
                self._directory,
                store,  # type: ignore[arg-type]
                serve=serve,
                lease_ttl=lease_ttl.total_seconds(),
                name=member_name,
            )
            if shared
            else None
        )
        self._passivate_after = passivate_after
        self._stack: contextlib.AsyncExitStack | None = None

    # ------------------------------------------------------------ configuration
    @property
    def store(self) -> Store:
        """The store this system runs on."""
        return self._kernel.store

    @property
    def clock(self) -> Clock:
        """The clock that drives backoff, passivation and timers."""
        return self._kernel.clock

    @property
    def supervision(self) -> SupervisorPolicy:
        """The supervisor policy for crashing handlers."""
        return self._kernel.supervision

    @property
    def codec(self) -> Codec:
        """The codec encoding arguments, events, results and snapshots."""
        return self._kernel.codec

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        tasks = self._kernel.tasks
        if tasks.state != "new":
            raise SystemClosed(f"an ActorSystem can be entered once (it is {tasks.state})")
        tasks.state = "starting"
        kernel, directory = self._kernel, self._directory
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(kernel.store)
            tasks.start(kernel.committer.run)
            attach = getattr(kernel.clock, "attach", None)
            if attach is not None:
                attach(self)
                stack.callback(kernel.clock.detach, self)  # type: ignore[attr-defined]
            cluster = self._cluster
            if cluster is not None:  # a member recovers the shards it claims, as it claims them
                await cluster.start()
                await kernel.timers.load()
            elif self._recover_at_start:
                await directory.recover()
                await directory.recover_outbox()
                await kernel.timers.load()
            tasks.start(kernel.timers.run)
            after = self._passivate_after
            if after is not None:
                tasks.start(lambda: directory.sweep(after))
            policy = self._retention
            if policy is not None:
                tasks.start(lambda: run_retention(kernel.committer, kernel.clock, policy, kernel.log))
        except BaseException:
            tasks.state = "closed"
            with anyio.CancelScope(shield=True):
                await tasks.stop([*tasks.drains, *tasks.tasks])
                await stack.aclose()
            raise
        self._stack = stack
        tasks.state = "running"
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
        tasks = self._kernel.tasks
        if tasks.state != "running":
            return
        tasks.state = "closing"
        assert self._stack is not None
        actors = self._directory.actors
        try:
            with anyio.CancelScope(shield=True):
                for actor in list(actors.values()):
                    actor.fail_pending()
                    actor.pause()
                drains = list(tasks.drains)
                if drains:
                    await asyncio.gather(*drains, return_exceptions=True)
                await self._kernel.committer.close()
                if self._cluster is not None:  # hand every shard off now: no one waits for a lease
                    await self._cluster.leave()
                await tasks.stop(list(tasks.tasks))
                await self._stack.aclose()
        finally:
            tasks.state = "closed"
            actors.clear()

    async def members(self) -> list[Member]:
        """The members and clients of this system's shared store, with the shards each
        owns and its last heartbeat (by the database's clock); alive ones first.
        On an exclusive store: InvalidArguments (there is one owner)."""
        self._check_running()
        if self._cluster is None:
            raise InvalidArguments(f"{self.store!r:.60} is not shared: it has one owner and no members")
        return await list_members(self._cluster.store, self._cluster.member_id)

    @property
    def member_id(self) -> str | None:
        """This system's id in the membership of a shared store (None on an exclusive one)."""
        return self._cluster.member_id if self._cluster is not None else None

    @property
    def running(self) -> bool:
        """Whether the system takes calls."""
        return self._kernel.tasks.running

    def _check_running(self) -> None:
        tasks = self._kernel.tasks
        if not tasks.running:
            raise SystemClosed(f"the actor system is {tasks.state}, not running")

    # ------------------------------------------------------------ refs
    def ref(self, entity: type[E] | str, entity_id: str) -> EntityRef[E]:
        """A ref to entity ``entity_id`` of a registered type (class or its name)."""
        registry = self._kernel.registry
        spec = registry.spec_of(entity)
        registry.check_id(entity_id)
        return EntityRef(self._calls, self, spec, entity_id)

    def handle(self, handle_id: str) -> InvocationHandle[Any]:
        """Rebuild the handle of a started invocation from its id (``handle.id``), also in
        another system on the same store or after a restart."""
        return self._calls.handle(handle_id)

    def resource(self, kind: type[T]) -> T:
        """The resource registered for ``kind`` (or a subclass of it); InvalidArguments if none."""
        return self._kernel.registry.resource(kind)

    # ------------------------------------------------------------ recovery and passivation
    async def recover_entity(self, entity: type[Entity] | str, entity_id: str) -> int:
        """Route one entity's pending inbox signals to it (with ``recover=False``: a tool
        that calls one entity first lets that entity's earlier signals run, in order)."""
        self._check_running()
        name = self._kernel.registry.spec_of(entity).name
        return await self._directory.recover(only=(name, entity_id))

    def passivate_idle(self, *, older_than: dt.timedelta = dt.timedelta(0)) -> int:
        """Drop idle actors not used for ``older_than``; returns how many were dropped."""
        return self._directory.passivate_idle(older_than=older_than)

    def is_active(self, entity: type[Entity] | str, entity_id: str) -> bool:
        """Whether the entity is in memory now."""
        return (self._kernel.registry.spec_of(entity).name, entity_id) in self._directory.actors

    # ------------------------------------------------------------ dead letters
    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """Signals whose handlers kept crashing, oldest first."""
        self._check_running()
        check_int("limit", limit, 1)
        return await self._kernel.store.read_dead_letters(limit=limit)

    async def retry_dead_letter(self, dead_letter_id: int) -> None:
        """Put a dead letter back in its entity's inbox and deliver it again."""
        self._check_running()
        if not isinstance(dead_letter_id, int) or isinstance(dead_letter_id, bool):
            raise InvalidArguments(f"dead_letter_id must be an int, got {dead_letter_id!r}")
        store = self._kernel.store
        found = [d for d in await store.read_dead_letters(limit=1_000_000) if d.id == dead_letter_id]
        if not found:
            raise InvalidArguments(f"no dead letter with id {dead_letter_id}")
        signal = found[0].signal
        directory = self._directory

        def route(_: object) -> None:
            directory.route_stored(signal, recovered=True)

        await self._kernel.committer.submit(Requeue(dead_letter_id), route)

    # ------------------------------------------------------------ introspection
    def statistics(self) -> SystemStatistics:
        """Counters of the running system."""
        k = self._kernel
        c = k.committer
        actors = self._directory.actors.values()
        return SystemStatistics(
            len(self._directory.actors),
            c.batches,
            c.writes,
            c.pending,
            inbox_depth=sum(len(a.mailbox) for a in actors),
            running_handlers=sum(1 for a in actors if a.running),
            dead_letters=k.dead_letters,
            retries=k.retries,
            timers_pending=len(k.timers),
        )

    async def wait_idle(self) -> None:
        """Wait until no message, write or handler is in progress (for tests and tools)."""
        await self._kernel.work.wait_idle()
