"""Routing: which actor serves an entity, activation on demand, passivation, recovery
of the inbox and delivery of the outbox. Implements the kernel's ``Router``. Internal."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Callable, Collection, Sequence
from typing import Any

import anyio

from actors import _outcome as outcome
from actors import _replay
from actors._actor import Actor
from actors._envelope import Envelope, closed_error
from actors._ids import conflict_error, is_keyed
from actors._kernel import Kernel
from actors._loop import Loop
from actors._spec import IMMUTABLE_VALUES, EntitySpec
from actors.errors import DeadlineExceeded, StoreError, SystemClosed
from persistence.store import Accept, Accepted, Duplicate, SignalRecord, TakeOutbox

_INBOX_CHUNK = 1000


async def within(aw: Any, timeout: float | None) -> Any:
    """``await aw``, raising DeadlineExceeded after ``timeout`` seconds (None: no limit)."""
    if timeout is None:
        return await aw
    try:
        with anyio.fail_after(timeout):
            return await aw
    except TimeoutError:
        raise DeadlineExceeded(f"no answer within {timeout:g}s") from None


class Directory:
    """The actors in memory, by entity; routes signals to them.

    No ``__slots__``: tests replace ``deliver_outbox`` on an instance to lose messages.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.actors: dict[tuple[str, str], Actor] = {}
        self.loop = Loop(kernel)
        """Runs every actor of the system (drain loop, commit, parking, supervision)."""
        self._activated = anyio.Event()
        self.marks = self.loop.marks
        """Mark reads of asks waiting for another member's answer, one store read per turn."""

    def actor(self, spec: EntitySpec, entity_id: str) -> Actor:
        """The actor of an entity, created (not yet loaded) if it is not in memory."""
        key = (spec.name, entity_id)
        actor = self.actors.get(key)
        if actor is None:
            actor = Actor(self.kernel, spec, entity_id, self.loop)
            self.actors[key] = actor
            if not self._activated.is_set():
                self._activated.set()
        return actor

    def deliver(self, spec: EntitySpec, entity_id: str, env: Envelope) -> None:
        """Put ``env`` in the mailbox of the entity's actor (another member's entity: in
        the stored inbox, and its answer read from the store when committed)."""
        if self.kernel.shards.owns(spec.name, entity_id):
            self.actor(spec, entity_id).deliver(env)
        else:
            self.kernel.tasks.spawn(lambda: self.remote(env))

    async def remote(self, env: Envelope) -> None:
        """Run ``env`` on the member that owns its entity: accept it into the stored inbox
        (waking that member), then answer ``env.reply`` with the committed outcome.

        The signal's id must keep a processed mark (a keyed or started id)."""
        s, reply = env.signal, env.reply
        try:
            result = await self.kernel.committer.submit(
                Accept(s, check_duplicate=True), self.route_accepted(s)
            )
            if isinstance(result, Duplicate) and result.fingerprint != s.fingerprint:
                raise conflict_error(s)
            if isinstance(result, Duplicate) and result.mark is not None:
                text = result.mark.outcome
            else:
                text = await self.await_outcome(s.entity_type, s.entity_id, s.signal_id)
            value = outcome.decode(
                self.kernel.codec, text, env.handler.returns, where=f"the outcome of {s.signal_id}"
            )
        except Exception as e:
            if reply is not None:
                reply.fail(e)
            return
        if reply is not None:
            reply.set(value)

    async def await_outcome(self, entity_type: str, entity_id: str, signal_id: str) -> str:
        """Wait for a signal's outcome: committed here (at once), or read from its
        processed mark when another member commits it (woken by that member, and polled)."""
        kernel = self.kernel
        loop = asyncio.get_running_loop()
        got: asyncio.Future[str] = loop.create_future()
        nudged = anyio.Event()

        def seen(text: str) -> None:
            if not got.done():
                got.set_result(text)

        def poke() -> None:
            nudged.set()

        unwatch = kernel.outcomes.watch(signal_id, seen)
        off = kernel.outcomes.on_poke(signal_id, poke)
        try:
            # a store that wakes (the owner publishes the outcome) is read again when woken,
            # and now and then in case a wake-up was lost; one that cannot wake is polled
            wakes = bool(getattr(kernel.store, "wakes", True))
            delay, ceiling = (0.1, 1.0) if wakes else (0.005, 0.1)
            while True:
                try:
                    mark = await self.marks.read((entity_type, entity_id, signal_id))
                except StoreError as e:  # the store is down: the outcome will still come
                    kernel.log.warning("reading the outcome of %s failed: %s", signal_id, e)
                    mark = None
                if mark is not None:
                    return mark.outcome
                if got.done():
                    return got.result()
                with anyio.move_on_after(delay):
                    await nudged.wait()
                if got.done():
                    return got.result()
                nudged = anyio.Event()
                delay = min(delay * 2, ceiling)
        finally:
            unwatch()
            off()

    def move_pending(self, actor: Actor) -> None:
        """The actor's shard moves away: what waits in its mailbox goes to the new owner.

        A keyed ask is re-sent through the stored inbox (its answer comes back from
        there); an unkeyed ask fails with ``SystemClosed(accepted=False)``, which the
        caller here sends again to the new owner; an inbox signal stays in the inbox.
        """
        while actor.mailbox:
            env = actor.mailbox.popleft()
            if env.reply is None or env.from_inbox:
                continue
            if env.keyed:
                self.kernel.tasks.spawn(lambda env=env: self.remote(env))  # type: ignore[misc]
            else:
                env.reply.fail(closed_error(env))
        actor.held.clear()
        actor.inbox_ids.clear()

    def route_stored(self, s: SignalRecord, *, recovered: bool = False) -> int:
        """Deliver an inbox signal to its actor (once: a signal already routed here is
        not routed again); 0 if nobody here runs it (another member's: it is woken)."""
        kernel = self.kernel
        if not kernel.shards.owns(s.entity_type, s.entity_id):
            kernel.shards.wake_inbox(kernel.shards.shard(s.entity_type, s.entity_id))
            return 0
        spec = self.kernel.registry.specs.get(s.entity_type)
        h = spec.signals.get(s.handler) if spec is not None else None
        if spec is None or h is None:
            self.kernel.log.warning(
                "inbox signal %s for %s/%s.%s names an unknown entity type or handler; left in place",
                s.signal_id,
                s.entity_type,
                s.entity_id,
                s.handler,
                extra={"entity_type": s.entity_type, "entity_id": s.entity_id, "signal_id": s.signal_id},
            )
            return 0
        actor = self.actor(spec, s.entity_id)
        if not actor.route_once(s.signal_id):
            return 0
        actor.deliver(
            Envelope(
                h,
                s,
                values=None,
                keyed=is_keyed(s.signal_id),
                reply=None,
                from_inbox=True,
                recovered=recovered,
            )
        )
        return 1

    def route_accepted(self, s: SignalRecord) -> Callable[[object], None]:
        """A committer ``after`` hook routing ``s`` to its actor once it is in the inbox."""
        tasks, own = self.kernel.tasks, self.kernel.shards
        # alone on its store a system owns everything: nothing to compare (the tell path)
        before = (
            {own.shard(s.entity_type, s.entity_id): own.epoch(s.entity_type, s.entity_id)}
            if own.clustered
            else None
        )

        def route(result: object) -> None:
            # "starting" too: outbox messages recovered at start may be accepted before it ends
            if isinstance(result, Accepted) and tasks.live:
                if before is None or own.same_epoch(s, before):
                    self.route_stored(s)
                else:  # its shard moved while it was accepted: whoever owns it reads it
                    own.wake_inbox(own.shard(s.entity_type, s.entity_id))

        return route

    def deliver_outbox(self, ids: Sequence[int], signals: Sequence[SignalRecord]) -> None:
        """Move committed outbox messages to their targets' inboxes (at least once)."""
        for oid, s in zip(ids, signals, strict=True):
            self.kernel.committer.submit_nowait(TakeOutbox(oid, Accept(s)), self.route_accepted(s))

    async def query(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        timeout: float | None,
    ) -> Any:
        """Run a ``@query`` on the committed state; never waits behind a running handler."""
        tasks = self.kernel.tasks
        if not tasks.live:  # a handler recovered while the system starts may query
            raise SystemClosed(f"the actor system is {tasks.state}, not running")
        h = spec.resolve(handler, "query")
        values = h.bind(args, kwargs)
        if not self.kernel.shards.owns(spec.name, entity_id):  # another member's: its stored state
            state, _seq, _snap = await within(_replay.load(self.kernel, spec, entity_id), timeout)
            return h.call_query(state, values)
        actor = self.actor(spec, entity_id)
        if actor.view is None:
            await within(actor.ensure_active(), timeout)
        view = actor.view
        assert view is not None
        result = h.call_query(view, values)
        return result if type(result) in IMMUTABLE_VALUES else copy.deepcopy(result)

    # ------------------------------------------------------------ recovery
    async def recover(
        self, only: tuple[str, str] | None = None, *, shards: Collection[int] | None = None
    ) -> int:
        """Route pending inbox signals (of one entity, of some shards, or all) to their actors."""
        after = 0
        count = 0
        store = self.kernel.store
        own = self.kernel.shards
        before = dict(own.epochs)  # a shard that moves meanwhile is read again by its next claim
        while True:
            if shards is None:
                entries = await store.read_inbox(after=after, limit=_INBOX_CHUNK)
            else:
                entries = await store.read_inbox(after=after, limit=_INBOX_CHUNK, shards=shards)
            for entry in entries:
                after = entry.position
                s = entry.signal
                if (only is None or (s.entity_type, s.entity_id) == only) and own.same_epoch(s, before):
                    count += self.route_stored(s, recovered=True)
            if len(entries) < _INBOX_CHUNK:
                break
        if count:
            self.kernel.log.info("recovered %d pending signals from the inbox", count)
        return count

    async def recover_outbox(self, *, shards: Collection[int] | None = None) -> None:
        """Deliver every outbox message left by the last run (of senders in ``shards``)."""
        after = 0
        store = self.kernel.store
        while True:
            if shards is None:
                entries = await store.read_outbox(after=after, limit=_INBOX_CHUNK)
            else:
                entries = await store.read_outbox(after=after, limit=_INBOX_CHUNK, shards=shards)
            for e in entries:
                after = e.id
                self.kernel.route.deliver_outbox([e.id], [e.signal])
            if len(entries) < _INBOX_CHUNK:
                return

    # ------------------------------------------------------------ passivation
    async def sweep(self, after: dt.timedelta) -> None:
        """Passivate actors idle for ``after``, forever (a task of the system)."""
        clock = self.kernel.clock
        while True:
            if not self.actors:
                self._activated = anyio.Event()
                await self._activated.wait()
            idle = [a.last_active for a in self.actors.values() if a.idle]
            wake = (dt.datetime.fromtimestamp(min(idle), dt.UTC) if idle else clock.now()) + after
            # not parked(): the sweeper is no unit of busy work, so it has none to give back
            await clock.sleep_until(wake)
            self.passivate_idle(older_than=after)

    def passivate_idle(self, *, older_than: dt.timedelta = dt.timedelta(0)) -> int:
        """Drop idle actors not used for ``older_than``; returns how many were dropped."""
        cutoff = (self.kernel.clock.now() - older_than).timestamp()
        drop = [
            k
            for k, a in self.actors.items()
            if a.idle and a.stopped_until is None and a.last_active <= cutoff
        ]
        for k in drop:
            del self.actors[k]
        return len(drop)
