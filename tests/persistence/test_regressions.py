"""Regressions found by the crash torture harness (bench/torture.py) in the SQLite store."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from persistence import SqliteStore
from persistence.store import Accept, SignalRecord

pytestmark = pytest.mark.anyio


async def test_the_duplicate_check_of_a_batch_searches_the_index_not_the_whole_table(
    tmp_path: Path,
) -> None:
    """A batch of keyed accepts looked its keys up with ``(a, b, c) IN (VALUES ...)``: with
    more than one key SQLite scanned all of ``processed`` and ``inbox``, so every group
    commit got slower as history grew (the 500-kill torture run slowed down by half)."""
    db = tmp_path / "plans.db"
    seen: list[str] = []
    async with SqliteStore(db) as store:
        conn = store._w._conn  # type: ignore[union-attr]  # the writer's sqlite3 connection
        conn.set_trace_callback(seen.append)
        batch = [Accept(SignalRecord("T", f"e{i % 3}", f"k:{i}", "h", "{}", "fp", 0.0)) for i in range(6)]
        results = await store.write(batch)
        conn.set_trace_callback(None)
    assert len(results) == 6
    lookups = [
        s for s in seen if re.match(r"\s*(SELECT|WITH)\b", s, re.I) and re.search(r"processed|inbox", s)
    ]
    assert lookups, seen
    check = sqlite3.connect(db)
    try:
        for sql in lookups:
            plan = [row[3] for row in check.execute("EXPLAIN QUERY PLAN " + sql)]
            scans = [p for p in plan if re.match(r"SCAN (processed|inbox)\b", p)]
            assert not scans, f"{sql[:200]}\n{plan}"
    finally:
        check.close()
