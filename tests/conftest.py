"""Shared fixtures: the anyio backend (asyncio: aiosqlite needs it) and stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from persistence import MemoryStore, SqliteStore, Store


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "sqlite"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A function giving the same store again (a reopen simulates a restart)."""
    if request.param == "memory":
        mem = MemoryStore()

        def memory() -> Store:
            return mem

        yield memory
    else:

        def sqlite() -> Store:
            return SqliteStore(tmp_path / "test.db")

        yield sqlite
