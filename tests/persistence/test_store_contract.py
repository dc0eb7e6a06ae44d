"""The Store contract (``persistence.testing``) run against every store we ship."""

from __future__ import annotations

from pathlib import Path

import pytest

from persistence import MemoryStore, PostgresStore, SqliteStore
from persistence.testing import SHARED_SHARDS, SharedFactory, SharedStoreContract, StoreContract, StoreFactory


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def make_store(self) -> StoreFactory:
        mem = MemoryStore()
        return lambda: mem


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> StoreFactory:
        return lambda: SqliteStore(tmp_path / "store.db")


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def make_store(self, pg_dsn: str) -> StoreFactory:
        return lambda: PostgresStore(pg_dsn)


class TestSharedMemoryStore(SharedStoreContract):
    @pytest.fixture
    def make_shared(self) -> SharedFactory:
        mem = MemoryStore(shards=SHARED_SHARDS)
        return mem.connect


class TestSharedSqliteStore(SharedStoreContract):
    wakes = False  # SQLite cannot wake other processes: members poll

    @pytest.fixture
    def make_shared(self, tmp_path: Path) -> SharedFactory:
        return lambda: SqliteStore(tmp_path / "shared.db", shared=True, shards=SHARED_SHARDS)


class TestSharedPostgresStore(SharedStoreContract):
    @pytest.fixture
    def make_shared(self, pg_dsn: str) -> SharedFactory:
        return lambda: PostgresStore(pg_dsn, shards=SHARED_SHARDS)
