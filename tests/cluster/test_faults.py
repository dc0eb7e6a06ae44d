"""The partition/fault suite, short form: member processes on one shared store are
SIGKILLed, SIGSTOPped past their lease (zombies resumed right after the takeover),
SIGTERMed and restarted, and the database restarted, while a client runs transfer
sagas and tells; then money is conserved, every acknowledged call applied once, no
log has a gap. The negative control runs the same members with the fence off
(``set_fence`` disabled): every stop catches its victim in the middle of a slow
handler, and the zombie's commits after the takeover apply signals twice, which the
checks must find. The store-level controls are in
``tests/persistence/test_postgres_shared.py`` and ``test_sqlite_shared.py``.

``bench/cluster_faults.py`` does the work; the long run is
``python -m bench.cluster_faults --faults 200`` (README: Reliability).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cluster_faults import run
from tests._stores import PgServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _quiet(line: str) -> None:
    return None


async def test_sqlite_members_survive_kills_stops_and_restarts(tmp_path: Path) -> None:
    report = await run(str(tmp_path / "bank.db"), members=3, faults=6, ttl=2.0, seed=7, log=_quiet)
    assert report.violations == []
    assert sum(len(t) for t in report.faults.values()) == 6
    assert report.transfers > 50
    assert report.completed + report.refused == report.transfers
    assert report.nonces > 100


async def test_postgres_members_survive_kills_stops_restarts_and_a_database_restart(
    pg_dsn: str, pg_server: PgServer
) -> None:
    kinds = ("kill", "stop", "term", "db") if pg_server.embedded is not None else ("kill", "stop", "term")
    report = await run(
        pg_dsn, members=3, faults=7, ttl=2.0, seed=3, kinds=kinds, db=pg_server.embedded, log=_quiet
    )
    assert report.violations == []
    assert sum(len(t) for t in report.faults.values()) == 7
    assert report.transfers > 50
    assert report.completed + report.refused == report.transfers


async def test_without_the_fence_a_resumed_zombie_applies_signals_twice(tmp_path: Path) -> None:
    """The negative control, end to end. Whether one resumed zombie applies a signal
    twice depends on how its commit and its next lease renewal interleave with the new
    owner's work, which no harness here can force; measured under load, a run of 4
    stops found none about one time in three (and none of 9 on an idle machine), so
    this one makes 10 (the store-level controls in ``tests/persistence`` are the
    deterministic ones)."""
    report = await run(
        str(tmp_path / "bank.db"),
        members=3,
        faults=10,
        ttl=2.0,
        seed=2,
        fence=False,
        kinds=("stop",),
        log=_quiet,
    )
    doubled = [v for v in report.violations if "applied" in v and "times" in v]
    assert doubled, report.violations
