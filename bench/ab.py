"""A/B of W1 across commits, the way the README's per-commit tables are measured.

    python -m bench.ab 79f415b HEAD [--rounds 3] [--ops 30000] [--inflight 512] [--keyed]

Each commit is exported with ``git archive`` into a directory of its own (nothing of
the working tree), and the rounds run every commit in turn, one process per run,
with this interpreter and the snapshot first on ``PYTHONPATH``: the machine's speed
drifts by 10-30% within minutes here, so only runs close in time compare. A run is
``bench.ours._w1`` (1,000 accounts, SQLite ``NORMAL``, a fresh database) and also
reports the event loop thread's CPU per ask (``time.thread_time()`` over the asks).
Prints each run as it ends, then the median of each commit and its ratio to the
first commit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_RUN = """
import asyncio, json, sys, time
import bench.ours as ours
p = json.loads(sys.argv[1])
closed_loop, cpu = ours._closed_loop, []

async def timed(*args):
    start = time.thread_time()
    try:
        return await closed_loop(*args)
    finally:
        cpu.append(time.thread_time() - start)

ours._closed_loop = timed
r = asyncio.run(ours._w1(p))
print(json.dumps({"ops_per_s": r["ops_per_s"], "cpu_us": cpu[0] / p["ops"] * 1e6}))
"""


def snapshot(commit: str, into: Path) -> Path:
    """``commit``'s tree exported into a new directory under ``into`` (named by its short
    hash, with ``#2``... when a commit is given twice)."""
    found = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "rev-parse",
            "--short",
            "--verify",
            "--end-of-options",
            f"{commit}^{{commit}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:  # an option-like or unknown name is never passed on as an option
        raise SystemExit(f"bench.ab: {commit!r} is not a commit of {ROOT}")
    sha = found.stdout.strip()
    where, n = into / sha, 1
    while where.exists():
        n += 1
        where = into / f"{sha}#{n}"
    where.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def run_once(where: Path, params: dict[str, object]) -> dict[str, float]:
    """One W1 run of the code in ``where``: asks/s and the loop thread's µs of CPU per ask."""
    out = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(params)],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(where)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the A/B; prints every run, then the medians."""
    ap = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("commits", nargs="+", help="commits to compare (the first is the baseline)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ops", type=int, default=30_000)
    ap.add_argument("--inflight", type=int, default=512)
    ap.add_argument("--keyed", action="store_true", help="every ask with an idempotency key of its own")
    args = ap.parse_args(argv)
    params: dict[str, object] = {
        "accounts": 1000,
        "ops": args.ops,
        "inflight": args.inflight,
        "synchronous": "NORMAL",
    }
    if args.keyed:
        params["keyed"] = True
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        snaps = [snapshot(c, Path(tmp)) for c in args.commits]
        for r in range(args.rounds):
            for where in snaps:
                got = run_once(where, params)
                runs.setdefault(where.name, []).append(got)
                rate, cpu = got["ops_per_s"], got["cpu_us"]
                print(f"round {r + 1} {where.name}: {rate:,.0f} asks/s, {cpu:.1f} µs CPU/ask", flush=True)
    base = None
    for name, rs in runs.items():
        rate = statistics.median(x["ops_per_s"] for x in rs)
        cpu = statistics.median(x["cpu_us"] for x in rs)
        base = base or rate
        print(f"{name}: median {rate:,.0f} asks/s ({rate / base:.3f}x the first), {cpu:.1f} µs CPU/ask")
    return 0


if __name__ == "__main__":
    sys.exit(main())
