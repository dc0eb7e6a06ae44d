"""Profile W1 (durable ask): ``python -m bench.profile``.

    python -m bench.profile --inflight 512 --ops 50000            # pyinstrument
    python -m bench.profile --tool py-spy --inflight 512 --ops 100000

pyinstrument (in the ``bench`` extra) writes the full call tree (text and HTML) to
``bench/results/``; py-spy (``pip install py-spy``) samples from outside the process,
so it slows the run far less and also sees the aiosqlite thread. Both print the
functions of ``actors/`` and ``persistence/`` that take the most time, inclusive
(the function and what it calls) and self (its own lines), as a share of the
main thread's samples, and where the self time goes by package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.ours import _w1

RESULTS = Path(__file__).resolve().parent / "results"


def _key(frame: Any) -> tuple[str, str]:
    path = (frame.file_path or "").replace("\\", "/")
    for pkg in ("/actors/", "/persistence/", "/bench/"):
        if pkg in path and "site-packages" not in path:
            path = pkg.strip("/") + "/" + path.rsplit(pkg, 1)[1]
            break
    else:
        if "site-packages/" in path:
            path = path.rsplit("site-packages/", 1)[1]
        elif "/lib/python" in path:
            path = "stdlib/" + path.rsplit("/", 1)[-1]
    return path, frame.function or "?"


def aggregate(root: Any) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    """Inclusive and self seconds per (file, function) over the whole tree."""
    incl: dict[tuple[str, str], float] = defaultdict(float)
    self_t: dict[tuple[str, str], float] = defaultdict(float)

    def walk(frame: Any, on_stack: frozenset[tuple[str, str]]) -> None:
        if frame.is_synthetic:  # [self] / [await] leaves: counted in their parent
            return
        k = _key(frame)
        if k not in on_stack:  # count recursion once
            incl[k] += frame.time
        self_t[k] += frame.total_self_time
        for child in frame.children:
            walk(child, on_stack | {k})

    walk(root, frozenset())
    return incl, self_t


def report(root: Any, top: int = 25) -> str:
    """The hot spots in actors/ and persistence/, and the runtime buckets, as text."""
    total = root.time
    incl, self_t = aggregate(root)
    ours = [k for k in incl if k[0].startswith(("actors/", "persistence/"))]
    lines = [f"profiled {total:.2f} s of wall time (sampling, async_mode=disabled)", ""]
    lines.append("inclusive time in actors/ and persistence/ (function and its callees):")
    for k in sorted(ours, key=lambda k: -incl[k])[:top]:
        lines.append(f"  {100 * incl[k] / total:5.1f}%  {k[0]}:{k[1]}")
    lines.append("")
    lines.append("self time (own lines only), all code:")
    for k in sorted(self_t, key=lambda k: -self_t[k])[:top]:
        lines.append(f"  {100 * self_t[k] / total:5.1f}%  {k[0]}:{k[1]}")
    buckets: dict[str, float] = defaultdict(float)
    for k, v in self_t.items():
        f = k[0]
        if f.startswith("actors/"):
            buckets["actors/ (own lines)"] += v
        elif f.startswith("persistence/"):
            buckets["persistence/ (own lines)"] += v
        elif f.startswith(("anyio/",)):
            buckets["anyio"] += v
        elif f.startswith("aiosqlite/"):
            buckets["aiosqlite"] += v
        elif f.startswith(("cattrs/", "attr/", "attrs/")):
            buckets["cattrs/attrs"] += v
        elif f.startswith("stdlib/"):
            buckets[f"stdlib {f.split('/', 1)[1]}"] += v
        else:
            buckets[f.split("/", 1)[0]] += v
    lines.append("")
    lines.append("self time by package / stdlib module:")
    for name, v in sorted(buckets.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * v / total:5.1f}%  {name}")
    return "\n".join(lines) + "\n"


_LOC = re.compile(r" \(([^:()]*):\d+\)$")


def _short(frame: str) -> str:
    """``Actor._drain (actors/mailbox.py:142)`` -> ``actors/mailbox.py:Actor._drain``."""
    m = _LOC.search(frame)
    if not m:
        return frame
    path = m.group(1)
    return f"{path}:{frame[: m.start()]}"


def pyspy_report(raw: Path, top: int = 25) -> str:
    """Summarise py-spy's ``--format raw`` (collapsed stacks) output."""
    incl: Counter[str] = Counter()
    self_t: Counter[str] = Counter()
    main_n = other_n = 0
    other_self: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        thread, *frames = stack.split(";")
        names = [_short(f) for f in frames]
        if "MainThread" not in thread:
            other_n += n
            if names:
                other_self[names[-1]] += n
            continue
        main_n += n
        for name in set(names):
            incl[name] += n
        if names:
            self_t[names[-1]] += n
    lines = [
        f"py-spy samples: main thread {main_n}, other threads {other_n} (idle not sampled)",
        "",
        "main thread, inclusive, actors/ and persistence/:",
    ]
    for k, v in incl.most_common():
        if k.startswith(("actors/", "persistence/")):
            lines.append(f"  {100 * v / main_n:5.1f}%  {k}")
            if len(lines) > top + 3:
                break
    lines += ["", "main thread, self (own lines), all code:"]
    lines += [f"  {100 * v / main_n:5.1f}%  {k}" for k, v in self_t.most_common(top)]
    lines += ["", "other threads (aiosqlite), self, as share of all samples:"]
    total = main_n + other_n
    lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in other_self.most_common(5)]
    return "\n".join(lines) + "\n"


def _pyspy(args: argparse.Namespace) -> int:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"pyspy-w1-c{args.inflight}.txt"
    cmd = [
        exe, "record", "-r", "250", "--threads", "--format", "raw", "-o", str(raw), "--",
        sys.executable, "-m", "bench.profile", "--tool", "none",
        "--inflight", str(args.inflight), "--ops", str(args.ops),
        "--accounts", str(args.accounts), "--synchronous", args.synchronous,
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = str(RESULTS.parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if not raw.exists():
        print(f"py-spy failed: {out.stderr.strip()[-1000:]}", file=sys.stderr)
        return 1
    text = out.stdout.strip() + "\n" + pyspy_report(raw)
    (RESULTS / f"pyspy-w1-c{args.inflight}.summary.txt").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run W1 once under a profiler and report."""
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    ap.add_argument("--inflight", type=int, default=512)
    ap.add_argument("--ops", type=int, default=50_000)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--synchronous", default="NORMAL")
    ap.add_argument("--interval", type=float, default=0.0005)
    ap.add_argument("--tool", choices=("pyinstrument", "py-spy", "none"), default="pyinstrument")
    args = ap.parse_args(argv)
    params = {
        "accounts": args.accounts,
        "ops": args.ops,
        "inflight": args.inflight,
        "synchronous": args.synchronous,
    }
    if args.tool == "py-spy":
        return _pyspy(args)
    if args.tool == "none":  # the profiled child of py-spy
        metrics = asyncio.run(_w1(params))
        print(f"W1 {json.dumps(params)}: {metrics['ops_per_s']:,.0f} asks/s under py-spy")
        return 0
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    prof = Profiler(interval=args.interval, async_mode="disabled")
    prof.start()
    metrics = asyncio.run(_w1(params))
    prof.stop()
    session = prof.last_session
    assert session is not None
    root = session.root_frame()
    assert root is not None
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"profile-w1-c{args.inflight}"
    stem.with_suffix(".txt").write_text(prof.output_text(unicode=False, show_all=False))
    stem.with_suffix(".html").write_text(prof.output_html())
    text = f"W1 {params}: {metrics['ops_per_s']:,.0f} asks/s under the profiler\n" + report(root)
    stem.with_suffix(".summary.txt").write_text(text)
    print(text)
    print(f"full tree: {stem}.txt / .html", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
