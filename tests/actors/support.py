"""Test entities and helpers shared by the runtime tests (not a test module).

``make_counter(probe)`` builds a fresh entity class whose handlers report to a
:class:`Probe` the test holds: a gate they wait on, when each attempt ran (on the
injected clock), how many handlers run at once. Building a class per test keeps
the side channel local to the test: no module-level state to reset.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs

from actors import ActorSystem, Entity, Rejected, applies, query, signal
from actors._clock import Clock
from persistence import SqliteStore, Store

StoreFactory = Callable[[], Store]


@attrs.frozen
class Added:
    amount: int


@attrs.frozen
class Entered:
    tag: str


@attrs.frozen
class Exited:
    tag: str


@attrs.define
class Probe:
    """What the test controls and observes of a counter's handlers."""

    clock: Clock | None = None
    gate: anyio.Event = attrs.field(factory=anyio.Event)
    """``hold`` waits on it after emitting."""
    emitted: anyio.Event = attrs.field(factory=anyio.Event)
    """Set by ``hold`` once it has emitted."""
    crashes_left: int = 0
    """``flaky`` raises while this is not 0 (counting down; negative: always)."""
    attempts: list[dt.datetime] = attrs.field(factory=list)
    """Clock time of every ``flaky`` run."""
    running: int = 0
    most_running: int = 0


class NotNow(Rejected):
    """The counter's refusal (a Rejected subclass)."""


def make_counter(probe: Probe, *, name: str = "Counter", every: int = 100) -> type[Entity]:
    """A new counter entity class reporting to ``probe``."""

    @attrs.define
    class Counter(Entity):
        total: int = 0
        order: tuple[str, ...] = ()
        inside: bool = False
        overlaps: int = 0
        entity_name = name
        snapshot_every = every

        @signal
        def add(self, amount: int) -> int:
            self.emit(Added(amount))
            return self.total

        @signal
        async def step(self, tag: str) -> int:
            probe.running += 1
            probe.most_running = max(probe.most_running, probe.running)
            try:
                self.emit(Entered(tag))
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
                self.emit(Exited(tag))
            finally:
                probe.running -= 1
            return len(self.order)

        @signal
        async def hold(self, amount: int) -> int:
            self.emit(Added(amount))
            probe.emitted.set()
            await probe.gate.wait()
            if amount < 0:
                raise NotNow(f"not now: {amount}")
            return self.total

        @signal
        def flaky(self, amount: int) -> int:
            if probe.clock is not None:
                probe.attempts.append(probe.clock.now())
            self.emit(Added(amount))
            if probe.crashes_left != 0:
                probe.crashes_left -= 1
                raise RuntimeError(f"flaky crash on {amount}")
            return self.total

        @signal
        def refuse(self, amount: int) -> int:
            self.emit(Added(amount))
            raise NotNow(f"not now: {amount}")

        @signal
        def barrier(self) -> int:
            return self.total

        @query
        def get_total(self) -> int:
            return self.total

        @query
        def get_order(self) -> tuple[str, ...]:
            return self.order

        @query
        def get_overlaps(self) -> int:
            return self.overlaps

        @applies
        def _added(self, event: Added) -> None:
            self.total += event.amount

        @applies
        def _entered(self, event: Entered) -> None:
            if self.inside:
                self.overlaps += 1
            self.inside = True
            self.order = (*self.order, event.tag)

        @applies
        def _exited(self, event: Exited) -> None:
            self.inside = False

    return Counter


# ---------------------------------------------------------------- helpers


def db_path(store: Store) -> Path | None:
    """The file of a SqliteStore, None for other stores."""
    return store.path if isinstance(store, SqliteStore) else None


def sql(path: Path, query_text: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one statement on the database file with the plain sqlite3 module."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(query_text, params).fetchall()
        db.commit()
        return rows


async def event_count(system: ActorSystem, entity: str, entity_id: str) -> int:
    """How many events the store holds for one entity."""
    return await system.store.last_seq(entity, entity_id)


class Outcome:
    """The result or error of a call run in the background."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: object = None
        self.error: BaseException | None = None

    async def capture(self, fn: Callable[[], Any]) -> None:
        try:
            self.value = await fn()
        except Exception as e:
            self.error = e
        finally:
            self.done.set()
