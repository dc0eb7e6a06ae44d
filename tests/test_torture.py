"""The crash torture harness, short version: 20 SIGKILLs of a busy bank, then the checks.

``bench/torture.py`` does the work (see its docstring); this runs it as CI does
and checks it reports no violation. The long run is ``python -m bench.torture
--kills 500``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(
    r"^torture: kills=20 \(mid-work (\d+)\) seed=1 acked=(\d+) transfers=(\d+) completed=(\d+) "
    r"compensated=(\d+) refused=(\d+) timers_fired=(\d+) expired=(\d+) booked=(\d+) ticks=(\d+) "
    r"elapsed=[\d.]+s violations=0 OK$",
    re.MULTILINE,
)


def test_twenty_sigkills_lose_nothing_and_apply_everything_once(tmp_path: Path) -> None:
    db = tmp_path / "torture.db"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.torture", "--kills", "20", "--seed", "1", "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-5000:]}"
    m = SUMMARY.search(proc.stdout)
    assert m is not None, proc.stdout
    mid_work, acked, transfers, completed, compensated, refused, audits, _expired, booked, ticks = map(
        int, m.groups()
    )
    assert mid_work >= 10  # the kills did land in the middle of work
    assert acked > 100
    assert transfers >= acked
    assert completed + compensated + refused == transfers
    assert completed
    assert compensated
    assert audits == transfers
    assert booked == transfers
    assert ticks > 0


def test_the_checks_catch_a_transfer_applied_twice(tmp_path: Path) -> None:
    """The harness can fail: a forged second debit in the log is reported."""
    import sqlite3

    from bench import torture

    db = tmp_path / "t.db"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.torture", "--kills", "1", "--seed", "2", "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    acks = torture.read_acks(Path(f"{db}.acks"))
    assert not torture.check(db, acks, {}).violations
    conn = sqlite3.connect(db)
    with conn:
        row = conn.execute(
            "SELECT entity_id, max(seq), data FROM events WHERE type_name = 'torture.withdrawn' "
            "GROUP BY entity_id LIMIT 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO events VALUES ('TortureAccount', ?, ?, 'torture.withdrawn', 1, ?, 0)",
            (row[0], 10**9, row[2]),
        )
    conn.close()
    found = "\n".join(torture.check(db, acks, {}).violations)
    assert "money not conserved" in found
    assert "(debits, credits, refunds) = (2," in found
