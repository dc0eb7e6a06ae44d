"""Runs one case in a process of its own: ``python -m bench.child CASE_JSON OUT_JSON``.

A fresh process per case keeps peak RSS per case honest (``ru_maxrss`` never goes
down) and keeps peers' global state (threads, registries) away from each other.
The result file holds the runs, their medians and the peak RSS, or why the case
was skipped or failed.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import time
import traceback
from typing import Any

from bench.common import Metrics, Skip, median_metrics, peak_rss_mb


def run_case(fn_path: str, params: dict[str, Any], reps: int) -> dict[str, Any]:
    """Run ``fn_path`` ``reps`` times; the result record of the case."""
    module, _, name = fn_path.partition(":")
    start = time.perf_counter()
    try:
        fn = getattr(importlib.import_module(module), name)
        runs: list[Metrics] = []
        for _ in range(reps):
            gc.collect()
            runs.append(fn(params))
    except Skip as e:
        return {"status": "skipped", "note": str(e)}
    except Exception as e:
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        return {"status": "failed", "note": f"{type(e).__name__}: {e}"[:500], "traceback": tb}
    return {
        "status": "ok",
        "runs": runs,
        "median": median_metrics(runs),
        "peak_rss_mb": peak_rss_mb(),
        "wall_s": time.perf_counter() - start,
    }


def main(argv: list[str]) -> int:
    """Entry point: read the case, run it, write the result."""
    case = json.loads(argv[0])
    result = run_case(case["fn"], case["params"], int(case["reps"]))
    with open(argv[1], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
