"""Smoke test of ``python -m bench``: tiny sizes, checks the JSON's shape, never timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import latency_metrics, median_metrics, percentile

ROOT = Path(__file__).resolve().parent.parent


def test_percentiles_and_medians() -> None:
    values = list(range(1, 1001))
    assert percentile(values, 50) == 500
    assert percentile(values, 99) == 990
    assert percentile(values, 99.9) == 999
    lat = latency_metrics([1_000_000] * 10)
    assert lat == {"p50_ms": 1.0, "p99_ms": 1.0, "p999_ms": 1.0}
    assert median_metrics([{"a": 1.0}, {"a": 5.0}, {"a": 2.0, "b": 4.0}]) == {"a": 2.0, "b": 4.0}


@pytest.mark.slow
def test_bench_smoke_writes_json(tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "latest.json", tmp_path / "latest.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "W1/ours/NORMAL/c64",
            "W1/ours-pg/c64",
            "W7",
            "--smoke",
            "--reps",
            "1",
            "--json",
            str(out_json),
            "--markdown",
            str(out_md),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out_json.read_text())
    assert set(doc) >= {"meta", "cases", "rows"}
    assert {"command", "mode", "reps", "commit", "python"} <= set(doc["meta"])
    assert doc["meta"]["mode"] == "smoke"
    ids = ["W1/ours/NORMAL/c64", "W7/ours", "W1/ours-pg/c64", "W7/ours-pg"]
    assert [c["id"] for c in doc["cases"]] == ids  # both stores in one run
    for case in doc["cases"]:
        result = case["result"]
        assert result["status"] == "ok", result
        assert len(result["runs"]) == 1
        assert result["peak_rss_mb"] > 0
        assert result["median"]["ops_per_s"] > 0
        for k in ("p50_ms", "p99_ms", "p999_ms"):
            assert result["median"][k] > 0
    by_id = {c["id"]: c["result"]["median"] for c in doc["cases"]}
    for store in ("W1/ours/NORMAL/c64", "W1/ours-pg/c64"):
        assert by_id[store]["mean_batch"] >= 1
    for store in ("W7/ours", "W7/ours-pg"):
        assert by_id[store]["ops_per_s_c64"] > 0
    rows = doc["rows"]
    assert len(rows) == 6
    for row in rows:
        assert {"workload", "case", "system", "label", "metric", "unit", "value"} <= set(row)
        assert row["status"] == "ok"
        assert row["value"] > 0
    md = out_md.read_text()
    assert "## W1" in md
    assert "## Ours on SQLite and on PostgreSQL, side by side" in md
    assert "## W7" in md


@pytest.mark.slow
def test_bench_ab_runs_each_commit_from_its_own_snapshot() -> None:
    """``python -m bench.ab`` exports the commits and runs W1 for each, in turn."""
    args = ["HEAD", "HEAD", "--rounds", "2", "--ops", "300", "--inflight", "8"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rounds = [line for line in lines if line.startswith("round ")]
    assert len(rounds) == 4  # two rounds of two commits, in turn
    names = [r.split()[2].rstrip(":") for r in rounds]
    assert names[:2] == names[2:]  # the same order each round
    assert names[1] == names[0] + "#2"  # one commit given twice: two snapshots
    medians = [line for line in lines if ": median " in line]
    assert len(medians) == 2
    assert "(1.000x the first)" in medians[0]
    assert all(" asks/s" in line and "µs CPU/ask" in line for line in rounds + medians)


def test_bench_ab_refuses_what_is_not_a_commit() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ab", "--", "--output=/tmp/x", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "'--output=/tmp/x' is not a commit" in proc.stderr
    assert "round " not in proc.stdout
