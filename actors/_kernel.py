"""The kernel: the services every actor and invocation of one system shares, and the
:class:`Router` protocol through which they reach the routing layer above. Internal.

Layers below routing never import it: what they need from it (deliver a signal to
its entity's actor, route a signal once accepted, deliver committed outbox
messages, answer a query) is this protocol, which ``actors._directory`` implements.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from actors._clock import Clock, wall_clock
from actors._commit import After, GroupCommitter
from actors._envelope import Envelope
from actors._observing import SafeObserver
from actors._policies import SupervisorPolicy
from actors._registry import Registry
from actors._shards import Ownership
from actors._spec import EntitySpec
from actors._supervisor import Supervisor
from actors._tasks import Tasks
from actors._timers import TimerService
from actors._waits import WaitGraph
from actors._work import Work
from persistence.codec import Codec
from persistence.store import SignalRecord, Store


class Router(Protocol):
    """What the layers below need from routing (implemented by ``Directory``)."""

    def deliver(self, spec: EntitySpec, entity_id: str, env: Envelope) -> None:
        """Put ``env`` in the mailbox of the entity's actor (made if not in memory)."""
        ...

    def route_accepted(self, s: SignalRecord) -> After:
        """A committer ``after`` hook routing ``s`` to its actor once it is in the inbox."""
        ...

    def deliver_outbox(self, ids: Sequence[int], signals: Sequence[SignalRecord]) -> None:
        """Move committed outbox messages to their targets' inboxes (at least once)."""
        ...

    def query(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        timeout: float | None,
    ) -> Coroutine[Any, Any, Any]:
        """Run a query on an entity's committed state."""
        ...


class Outcomes:
    """Invocations' outcomes as they commit, for handles waiting in this process, and
    the live invocations a cancellation can reach."""

    __slots__ = ("_pokes", "_waiters", "cancellers", "publish", "requested")

    def __init__(self) -> None:
        self._waiters: dict[str, list[Callable[[str], None]]] = {}
        self._pokes: dict[str, list[Callable[[], None]]] = {}
        self.publish: Callable[[str], None] | None = None
        """Set by the cluster: tell other members an outcome was committed here."""
        self.cancellers: dict[str, Callable[[str], None]] = {}
        """Invocations in memory by signal id -> request their cancellation."""
        self.requested: dict[str, str] = {}
        """Cancellations requested here of invocations not running yet: id -> reason."""

    def cancel(self, signal_id: str, reason: str) -> None:
        """Reach the invocation ``signal_id`` in memory (or when it starts here)."""
        fn = self.cancellers.get(signal_id)
        if fn is not None:
            fn(reason)
        else:
            self.requested[signal_id] = reason

    def watch(self, signal_id: str, fn: Callable[[str], None]) -> Callable[[], None]:
        """Call ``fn(outcome)`` when ``signal_id`` commits its outcome; returns the unwatch."""
        self._waiters.setdefault(signal_id, []).append(fn)

        def unwatch() -> None:
            fns = self._waiters.get(signal_id)
            if fns is not None and fn in fns:
                fns.remove(fn)
                if not fns:
                    del self._waiters[signal_id]

        return unwatch

    def notify(self, signal_id: str, outcome: str, *, remote: bool = False) -> None:
        """An invocation's outcome was committed; ``remote``: its signal came from the
        stored inbox, so a caller on another member may wait for it (wake them)."""
        self.requested.pop(signal_id, None)
        for fn in self._waiters.pop(signal_id, ()):
            fn(outcome)
        if remote and self.publish is not None:
            self.publish(signal_id)

    def on_poke(self, signal_id: str, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` when another member says ``signal_id``'s outcome may be stored
        (then read it); returns the unregister."""
        self._pokes.setdefault(signal_id, []).append(fn)

        def off() -> None:
            fns = self._pokes.get(signal_id)
            if fns is not None and fn in fns:
                fns.remove(fn)
                if not fns:
                    del self._pokes[signal_id]

        return off

    def poke(self, signal_id: str) -> None:
        """Another member committed ``signal_id``'s outcome (``*``: maybe any)."""
        if signal_id == "*":
            for fns in list(self._pokes.values()):
                for fn in list(fns):
                    fn()
            return
        for fn in list(self._pokes.get(signal_id, ())):
            fn()


class Kernel:
    """The shared services of one system (built by ``ActorSystem``)."""

    __slots__ = (
        "clock",
        "codec",
        "committer",
        "dead_letters",
        "log",
        "observer",
        "outcomes",
        "registry",
        "retries",
        "router",
        "shards",
        "store",
        "supervision",
        "supervisor",
        "tasks",
        "timers",
        "waits",
        "wall",
        "work",
    )

    def __init__(
        self,
        store: Store,
        codec: Codec,
        clock: Clock,
        registry: Registry,
        *,
        supervision: SupervisorPolicy,
        observer: SafeObserver,
        log: logging.Logger,
        max_batch: int,
    ) -> None:
        self.store = store
        self.codec = codec
        self.clock = clock
        self.wall: Callable[[], float] = wall_clock(clock)
        """``clock.now().timestamp()``; on the real clock ``time.time`` itself (the
        per-message path reads it three times)."""
        self.registry = registry
        self.supervision = supervision
        self.supervisor = Supervisor(supervision)
        self.dead_letters = 0
        """Signals dead-lettered since start."""
        self.retries = 0
        """Crashed handler runs retried since start."""
        self.observer = observer
        self.log = log
        self.work = Work()
        self.shards = Ownership()
        self.tasks = Tasks(log)
        self.waits = WaitGraph()
        self.committer = GroupCommitter(
            store,
            max_batch=max_batch,
            clock=clock,
            policy=supervision,
            work=self.work,
            tasks=self.tasks,
            log=log,
            observer=observer,
            shards=self.shards,
        )
        self.timers = TimerService(
            store,
            clock,
            self.committer,
            runs_type=registry.runs_type,
            route=self._route_accepted,
            log=log,
            observer=observer,
            work=self.work,
            shards=self.shards,
        )
        self.outcomes = Outcomes()
        self.router: Router | None = None
        """Set by the routing layer once it exists."""

    def _route_accepted(self, s: SignalRecord) -> After:
        assert self.router is not None
        return self.router.route_accepted(s)

    @property
    def route(self) -> Router:
        """The routing layer."""
        assert self.router is not None
        return self.router
