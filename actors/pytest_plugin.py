"""pytest plugin: fixtures to test entities on a virtual clock and a temporary store.

Installed with the package and registered by the ``pytest11`` entry point, so a
project that depends on this package gets the fixtures with nothing to import:

- ``virtual_clock``: a :class:`~actors.testing.VirtualClock` with
  ``auto_advance=True`` (an ``ask`` whose activity backs off returns at once;
  ``await virtual_clock.advance(timedelta(days=30))`` fires 30 days of timers).
- ``actor_system_factory``: ``async with actor_system_factory(entities=[...])
  as system:`` runs an :class:`~actors.ActorSystem` on the test's temporary
  store (``store="sqlite"``, the default, or ``"memory"``) with the
  ``virtual_clock`` unless ``clock=`` says otherwise. Calling it again in the same
  test reopens the same store, which is how a restart is tested.

Tests are async: mark them ``@pytest.mark.anyio`` (anyio's own pytest plugin runs
them; the runtime needs the asyncio backend, anyio's default).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from actors._clock import Clock
from actors._entity import Entity
from actors._system import ActorSystem
from actors.errors import InvalidArguments
from actors.testing import VirtualClock
from persistence import MemoryStore, SqliteStore, Store

StoreKind = Literal["sqlite", "memory"]


class ActorSystemFactory:
    """Makes ``ActorSystem``s for one test: its clock, and its stores in a temporary folder.

    Each kind of store is created once per test and reused by later calls, so a
    second ``async with factory(...)`` after the first closed sees its data (a
    restart). Two systems must not run on one store at once (``StoreLocked``).
    """

    def __init__(self, folder: Path, clock: Clock) -> None:
        self.folder = folder
        self.clock = clock
        self._memory: MemoryStore | None = None

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file of ``store="sqlite"`` (to inspect it with ``sqlite3``)."""
        return self.folder / "actors.db"

    def store(self, kind: StoreKind | Store = "sqlite") -> Store:
        """The test's store of ``kind`` ("sqlite" or "memory"), or ``kind`` itself if a Store."""
        if isinstance(kind, Store) and not isinstance(kind, type):
            return kind
        if kind == "sqlite":
            return SqliteStore(self.sqlite_path)
        if kind == "memory":
            if self._memory is None:
                self._memory = MemoryStore()
            return self._memory
        raise InvalidArguments(f'store must be "sqlite", "memory" or a Store, got {kind!r:.80}')

    def __call__(
        self,
        *,
        entities: Sequence[type[Entity]],
        store: StoreKind | Store = "sqlite",
        clock: Clock | None = None,
        passivate_after: dt.timedelta | None = dt.timedelta(minutes=5),
        **options: Any,
    ) -> ActorSystem:
        """A new (not yet entered) system; use it as ``async with``.

        ``options`` go to :class:`~actors.ActorSystem` (``resources=``,
        ``supervision=``, ``max_payload=`` ...).
        """
        return ActorSystem(
            self.store(store),
            entities,
            clock=clock if clock is not None else self.clock,
            passivate_after=passivate_after,
            **options,
        )


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A ``VirtualClock(auto_advance=True)`` starting at 2026-01-01T00:00 UTC."""
    return VirtualClock(auto_advance=True)


@pytest.fixture
def actor_system_factory(tmp_path: Path, virtual_clock: VirtualClock) -> ActorSystemFactory:
    """``async with actor_system_factory(entities=[...], store="sqlite") as system:``."""
    return ActorSystemFactory(tmp_path, virtual_clock)
