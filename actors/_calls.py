"""Calls from outside the system: ``tell``, ``ask`` and ``query`` of a ref made with
``ActorSystem.ref``. Implements the model's ``Caller``. Internal."""

from __future__ import annotations

from typing import Any

from actors import _outcome as outcome
from actors._actor import Actor
from actors._directory import Directory, within
from actors._envelope import Envelope, Reply
from actors._ids import conflict_error, generated_id, keyed_id, parse_start_id, start_id
from actors._journal import request_cancel
from actors._kernel import Kernel
from actors._ref import InvocationHandle
from actors._spec import EntitySpec, HandlerSpec
from actors.errors import Overloaded, ShardLost, SystemClosed
from persistence.store import Accept, Accepted, Duplicate, SignalRecord


class Calls:
    """The outside caller: builds each call's record and hands it to the committer or an actor."""

    __slots__ = ("directory", "kernel", "max_mailbox")

    def __init__(self, kernel: Kernel, directory: Directory, *, max_mailbox: int | None = None) -> None:
        self.kernel = kernel
        self.directory = directory
        self.max_mailbox = max_mailbox
        """Signals an entity may have queued in memory before outside calls are refused."""

    def _check_room(self, spec: EntitySpec, entity_id: str) -> Actor | None:
        """Back-pressure: refuse an outside call to a flooded entity before anything is
        written. Returns the entity's actor if it is in memory.

        Only calls from outside are refused; what is already durable (the inbox, timers,
        the outbox, journaled calls) is always delivered.
        """
        actor = self.directory.actors.get((spec.name, entity_id))
        limit = self.max_mailbox
        if limit is None:
            return actor
        queued = len(actor.mailbox) if actor is not None else 0
        if queued >= limit:
            raise Overloaded(
                f"{spec.name}/{entity_id} has {queued} signals queued (max_mailbox={limit}): "
                "nothing was written; send it again later",
                entity_type=spec.name,
                entity_id=entity_id,
                queued=queued,
                limit=limit,
            )
        return actor

    def _check_running(self) -> None:
        tasks = self.kernel.tasks
        if not tasks.running:
            raise SystemClosed(f"the actor system is {tasks.state}, not running")

    def _signal(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        signal_id: str | None = None,
    ) -> tuple[HandlerSpec, dict[str, object], SignalRecord]:
        kernel = self.kernel
        if not kernel.tasks.running:
            self._check_running()  # raises, naming the state
        obs = kernel.observer
        if signal_id is None:
            signal_id = keyed_id(key) if key is not None else generated_id()
        return spec.build_signal(  # positional: the path every outside call takes
            kernel.codec,
            entity_id,
            handler,
            args,
            kwargs,
            signal_id,
            kernel.wall(),
            key is not None or signal_id.startswith("s:"),
            obs.carry() if obs.active else None,
        )

    async def start(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
    ) -> InvocationHandle[Any]:
        """Accept a signal durably, like ``tell``; returns a handle on its invocation."""
        unique = ("k", key) if key is not None else ("g", generated_id())
        sid = start_id(spec.name, entity_id, *unique)
        h = await self._tell(spec, entity_id, handler, args, kwargs, None, timeout, sid)
        return InvocationHandle(self, sid, h.returns)

    def handle(self, handle_id: str) -> InvocationHandle[Any]:
        """Rebuild a handle from its id."""
        parse_start_id(handle_id)
        return InvocationHandle(self, handle_id)

    async def handle_result(self, handle_id: str, returns: object, timeout: float | None) -> Any:
        """Wait for a started invocation's outcome (its processed mark)."""
        etype, eid = parse_start_id(handle_id)
        text = await within(self.directory.await_outcome(etype, eid, handle_id), timeout)
        return outcome.decode(self.kernel.codec, text, returns, where=f"the outcome of {handle_id}")

    async def handle_cancel(self, handle_id: str, reason: str) -> None:
        """Request a started invocation's cancellation, durably."""
        self._check_running()
        etype, eid = parse_start_id(handle_id)
        await request_cancel(self.kernel, handle_id, etype, eid, reason)
        own = self.kernel.shards
        if not own.owns(etype, eid):
            own.send("cancel", handle_id)  # reach it on the member that runs it

    async def tell(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
    ) -> None:
        """Accept a signal durably; it is routed to its actor by the committer."""
        await self._tell(spec, entity_id, handler, args, kwargs, key, timeout, None)

    async def _tell(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
        signal_id: str | None,
    ) -> HandlerSpec:
        self._check_room(spec, entity_id)
        h, values, rec = self._signal(spec, entity_id, handler, args, kwargs, key, signal_id)
        sid, fp = rec.signal_id, rec.fingerprint
        keyed = key is not None or signal_id is not None
        directory, tasks, own = self.directory, self.kernel.tasks, self.kernel.shards
        local = own.owns(spec.name, entity_id)
        actor = directory.actor(spec, entity_id) if keyed and local else None
        fresh = False
        if actor is not None:  # a keyed call of the same key may be under way: compare
            asked, told = actor.asking.get(sid), actor.telling.get(sid)
            if (asked is not None and asked != fp) or (told is not None and told != fp):
                raise conflict_error(rec)
            fresh = told is None
            actor.telling.setdefault(sid, fp)
        routed = False

        def route(result: object) -> None:
            nonlocal routed
            if not isinstance(result, Accepted) or not tasks.running:
                return
            if not own.owns(spec.name, entity_id):  # another member's entity: wake it
                own.wake_inbox(own.shard(spec.name, entity_id))
                return
            target = directory.actor(spec, entity_id)
            if not target.route_once(sid):
                return
            routed = True
            shared = values if h.immutable_args else None  # else the handler decodes its own copy
            env = Envelope(h, rec, values=shared, keyed=keyed, reply=None, from_inbox=True)
            target.deliver(env)

        try:
            result = await within(
                self.kernel.committer.submit(Accept(rec, check_duplicate=keyed), route), timeout
            )
        finally:
            if actor is not None and fresh and not routed:
                actor.telling.pop(sid, None)
        if isinstance(result, Duplicate) and result.fingerprint != fp:
            raise conflict_error(rec)
        return h

    async def ask(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
    ) -> Any:
        """Deliver a signal to its actor and wait for the answer (after its commit).

        Another member's entity is asked through the stored inbox, and so is one whose
        shard moved away while the ask waited here (nothing of it was written then)."""
        own = self.kernel.shards
        if own.clustered and not own.owns(spec.name, entity_id):
            return await self._remote_ask(spec, entity_id, handler, args, kwargs, key, timeout)
        try:  # one coroutine less per ask than a helper's: the wait is here
            # put the ask in its actor's mailbox here (inline: the path every ask takes;
            # _check_room and _signal, for the ask's case)
            kernel = self.kernel
            actor = self.directory.actors.get((spec.name, entity_id))
            limit = self.max_mailbox
            if limit is not None and actor is not None and len(actor.mailbox) >= limit:
                self._check_room(spec, entity_id)  # raises: it is full
            if not kernel.tasks.running:
                self._check_running()  # raises, naming the state
            obs = kernel.observer
            h, values, rec = spec.build_signal(
                kernel.codec,
                entity_id,
                handler,
                args,
                kwargs,
                keyed_id(key) if key is not None else generated_id(),
                kernel.wall(),
                key is not None,
                obs.carry() if obs.active else None,
            )
            reply = Reply(loop=kernel.tasks.loop)  # (without a loop: a system call per ask)
            # immutable values are shared with the handler; else it decodes its own copy
            env = Envelope(h, rec, values if h.immutable_args else None, key is not None, reply, False)
            if actor is None:  # made only now: a refused call leaves nothing behind
                actor = self.directory.actor(spec, entity_id)
            actor.deliver(env)
            work = kernel.work
            if not work.track_asks:
                if timeout is None:
                    return await reply
                return await within(reply.wait(), timeout)
            with work.outside_ask(reply.future, f"ask {spec.name}.{h.name} to {spec.name}/{entity_id}"):
                return await within(reply.wait(), timeout)
        except (SystemClosed, ShardLost) as e:
            moved = not own.owns(spec.name, entity_id)
            if not moved or not self.kernel.tasks.running or (isinstance(e, SystemClosed) and e.accepted):
                raise
        return await self._remote_ask(spec, entity_id, handler, args, kwargs, key, timeout)

    async def _remote_ask(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None,
    ) -> Any:
        """Ask another member's entity: accepted into its inbox, answered from its mark."""
        sid = None if key is not None else start_id(spec.name, entity_id, "g", generated_id())
        h, _values, rec = self._signal(spec, entity_id, handler, args, kwargs, key, sid)
        env = Envelope(
            h, rec, values=None, keyed=True, reply=Reply(loop=self.kernel.tasks.loop), from_inbox=False
        )
        await within(self.directory.remote(env), timeout)
        assert env.reply is not None
        return env.reply.future.result()

    async def query(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        timeout: float | None,
    ) -> Any:
        """Run a ``@query`` on the committed state."""
        self._check_running()
        return await self.directory.query(spec, entity_id, handler, args, kwargs, timeout)
