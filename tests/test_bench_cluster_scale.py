"""Smoke test of ``python -m bench.cluster_scale``: tiny sizes on SQLite, checks what it
reports (numbers, not timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_cluster_scale_reports_numbers(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    cmd = [sys.executable, "-m", "bench.cluster_scale", "--store", "sqlite", "--members", "1,2"]
    cmd += ["--seconds", "1", "--reps", "1", "--lat", "20", "--accounts", "100", "--inflight", "16"]
    cmd += ["--ttl", "3", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-8000:]
    doc = json.loads(out.read_text())
    assert {"command", "date", "cores", "seconds"} <= set(doc["meta"])
    rows = doc["stores"]["sqlite"]
    assert [r["members"] for r in rows] == [1, 2]
    for r in rows:
        assert r["routed"] > 0
        assert r["unrouted"] > 0
        assert r["routed_ratio"] is not None
        assert r["unrouted_ratio"] is not None
        # every ask answered is a deposit stored (the benchmark checks it too)
        assert r["stored_deposits"] == r["answered"] > 0
        assert len(r["own"]) == r["members"]
        assert r["own"] == [100] * r["members"]  # each member found its share
        for w in r["windows"]["routed"]:
            assert w["remote_share"] == 0.0  # routed: every ask to an entity this member owns
            assert not w["moved"]
    one, two = rows
    assert one["routed_ratio"] == 1.0
    assert one["windows"]["unrouted"][0]["remote_share"] == 0.0  # one member owns everything
    assert 0.2 < two["windows"]["unrouted"][0]["remote_share"] < 0.8  # about half cross members
    assert sum(two["shards"]) == 256  # the two members split every shard
    lat = two["latency"]
    assert set(lat) == {"local", "remote", "client"}
    for v in lat.values():
        assert 0 < v["p50_ms"] <= v["p99_ms"]
    assert "| members | routed asks/s |" in proc.stdout
