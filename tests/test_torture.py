"""The crash torture harness, short version: 20 SIGKILLs of a busy bank, then the checks.

``bench/torture.py`` does the work (see its docstring); this runs it as CI does
and checks it reports no violation. The long run is ``python -m bench.torture
--kills 1000``. Each fault class (hostile ids and keys, shutdown mid-load, a shutdown
with a parked handler, failed internal writes, BaseExceptions from handlers) runs as
a test of its own (issue 10).
"""

from __future__ import annotations

import json
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
    r"workflows=(\d+) approved=(\d+) timed_out=(\d+) cancelled=(\d+) parked_at_kills=(\d+) "
    r"elapsed=[\d.]+s violations=0 OK$",
    re.MULTILINE,
)


def test_twenty_sigkills_lose_nothing_and_apply_everything_once(tmp_path: Path) -> None:
    db = tmp_path / "torture.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.torture",
            "--kills",
            "20",
            "--seed",
            "1",
            "--faults",
            "none",
            "--db",
            str(db),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-5000:]}"
    m = SUMMARY.search(proc.stdout)
    assert m is not None, proc.stdout
    (
        mid_work,
        acked,
        transfers,
        completed,
        compensated,
        refused,
        audits,
        _expired,
        booked,
        ticks,
        workflows,
        approved,
        timed_out,
        cancelled,
        parked_at_kills,
    ) = map(int, m.groups())
    assert mid_work >= 10  # the kills did land in the middle of work
    assert acked > 100
    assert transfers >= acked
    assert completed + compensated + refused == transfers
    assert completed
    assert compensated
    assert audits == transfers
    assert booked == transfers
    assert ticks > 0
    # parked and cancelled workflows under the same kills: each ended exactly once
    assert workflows >= 10
    assert approved + timed_out + cancelled == workflows
    assert approved
    assert timed_out
    assert cancelled
    assert parked_at_kills > 0  # kills did land while workflows were parked


def test_the_checks_catch_a_transfer_applied_twice(tmp_path: Path) -> None:
    """The harness can fail: a forged second debit in the log is reported."""
    import sqlite3

    from bench import torture

    db = tmp_path / "t.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.torture",
            "--kills",
            "1",
            "--seed",
            "2",
            "--faults",
            "none",
            "--db",
            str(db),
        ],
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

    # and a workflow's grant released twice, and one ended twice, are reported
    ack_path = Path(f"{db}.acks")
    assert not [v for v in torture.check(db, acks, {}, ack_path).violations if "workflow" in v]
    conn = sqlite3.connect(db)
    with conn:
        wid, outcome = conn.execute(
            "SELECT entity_id, json_extract(data, '$.outcome') FROM events "
            "WHERE type_name = 'torture.wf_ended' LIMIT 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO events VALUES ('TortureGrants', 'grants', ?, 'torture.grant_released', 1, ?, 0)",
            (10**9, json.dumps({"workflow": wid})),
        )
    found = "\n".join(torture.check(db, acks, {}, ack_path).violations)
    assert f"workflow {wid} {outcome} with grant (held, spent, released) = (1, " in found
    with conn:
        conn.execute(
            "INSERT INTO events VALUES ('TortureApproval', ?, ?, 'torture.wf_ended', 1, ?, 0)",
            (wid, 10**9, json.dumps({"outcome": outcome})),
        )
    conn.close()
    found = "\n".join(torture.check(db, acks, {}, ack_path).violations)
    assert f"workflow {wid} ended 2 times" in found


def test_the_final_check_runs_on_a_store_at_rest(tmp_path: Path) -> None:
    """The quiescing generation leaves nothing a timer could add to after the check (issue 10, item 23)."""
    import datetime as dt

    import anyio

    from bench import torture

    db = tmp_path / "q.db"
    anyio.run(torture.setup, db)  # the ticker is armed: it fires every 100 ms on a running clock
    anyio.run(torture.quiesce, db, 30.0)
    long_ago = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # timers aside: inbox, outbox and journal are empty
    ok, left = torture.at_rest(db, long_ago)
    assert ok, left
    assert torture._rows(db, "SELECT count(*) FROM timers WHERE entity_type = 'TortureTicker'")[0][0] == 1


FAULT_CLASSES = {
    "hostile": "issue 10 items 2, 3, 4, 10: derived ids, forged step keys, timer re-arm, surrogates",
    "shutdown": "issue 10 item 6: what aclose() answers is what happened",
    "shutdown-parked": "issue 10 item 6: aclose() returns with a parked handler whose finally asks",
    "failed-writes": "issue 10 item 5: failed timer-firing and outbox writes are retried at once",
    "base-exceptions": "issue 10 item 7: BaseExceptions are answered and rolled back",
}


@pytest.mark.parametrize("fault", list(FAULT_CLASSES))
def test_a_fault_class_finds_no_violation(fault: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.torture",
            "--kills",
            "0",
            "--faults",
            fault,
            "--seed",
            "1",
            "--db",
            str(tmp_path / "f.db"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(rf"^faults: class={re.escape(fault)} (.*) violations=(\d+) (OK|FAILED)$", proc.stdout, re.M)
    assert m is not None, proc.stdout + proc.stderr[-3000:]
    assert "hung" not in m.group(1), proc.stdout
    assert m.group(2) == "0", proc.stdout


def test_a_fault_class_reports_which_invariant_and_entity(tmp_path: Path) -> None:
    """The fault-class checks can fail, and say what broke: a forged double note is reported."""
    from bench import torture

    f = torture.Findings("demo")
    f.bad("every acknowledged call applied exactly once", "vault-1", 1, 2)
    f.bad_many("nothing applied twice", ["a", "b", "c", "d"], 1, 2)
    assert f.violations[0] == {
        "fault": "demo",
        "invariant": "every acknowledged call applied exactly once",
        "entity": "vault-1",
        "expected": "1",
        "seen": "2",
    }
    assert f.violations[1]["entity"] == "4x: a, b, c (+1 more)"
