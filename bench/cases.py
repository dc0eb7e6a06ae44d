"""The plan: every case of every workload, with its sizes per mode, rows and targets.

A *case* is one configuration (workload, system, parameters) run ``reps`` times in
its own child process; its *rows* are what the table shows of it. A peer's row
names the row of ours it is compared with (same workload, same metric).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

Mode = Literal["full", "quick", "smoke"]

WORKLOADS: dict[str, str] = {
    "W1": "durable ask (deposits)",
    "W2": "durable tell, until all applied",
    "W3": "latency at a fixed offered load",
    "W4": "activation of one big entity",
    "W5": "recovery after SIGKILL",
    "W6": "memory (peak RSS of a child)",
    "W7": "queries on active entities",
    "W8": "start-up with many stored timers",
    "W9": "keyed asks over a long history of keys and dead letters",
    "W10": "fan-out: a parent workflow awaits its children while it serves",
}


@dataclass(frozen=True)
class Target:
    """A goal for one of our figures: ``>=`` or ``<=`` a value."""

    op: Literal[">=", "<="]
    value: float

    def met(self, x: float) -> bool:
        """Whether figure ``x`` meets the goal."""
        return x >= self.value if self.op == ">=" else x <= self.value


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric of a case."""

    label: str
    metric: str
    unit: str
    latency: str | None = None
    """Prefix of p50_ms/p99_ms/p999_ms in the metrics to show beside it ('' for plain)."""
    target: Target | None = None
    compare: tuple[str, str] | None = None
    """(case id, metric) of our figure this peer row is compared with."""


@dataclass(frozen=True)
class Case:
    """One configuration of one workload on one system."""

    id: str
    workload: str
    system: str
    fn: str
    """``module:function`` running one repetition: ``(params) -> metrics``."""
    params: dict[str, Any]
    rows: tuple[Row, ...]
    reps: int = 3
    timeout: float = 1800.0
    note: str = ""
    extra: tuple[str, ...] = field(default=())
    """Further metrics to print in the note column, as ``name`` keys."""
    rss_metric: str | None = None
    """The metric holding the peak RSS to show (when the case measures a grandchild)."""
    pair: str | None = None
    """For a case on PostgreSQL: the id of the same case on SQLite (the side-by-side table)."""

    @property
    def on_postgres(self) -> bool:
        """Whether the case needs the PostgreSQL server."""
        return self.params.get("store") == "postgres"


def _sz(mode: Mode, full: int, quick: int, smoke: int) -> int:
    return {"full": full, "quick": quick, "smoke": smoke}[mode]


def plan(mode: Mode) -> list[Case]:
    """Every case, sized for ``mode``: full (the issue's sizes), quick (CI) or smoke."""
    cases: list[Case] = []
    add = cases.append
    quick = mode != "full"
    reps = 3

    # ------------------------------------------------------------ W1 durable ask
    accounts = _sz(mode, 1000, 1000, 100)
    for sync in ("NORMAL", "FULL"):
        for inflight in (1, 64, 512):
            if sync == "FULL" and inflight == 64 and mode != "full":
                continue
            if sync == "FULL" and inflight == 1:
                ops = _sz(mode, 20_000, 500, 200)
            elif inflight == 1:
                ops = _sz(mode, 100_000, 800, 200)
            else:
                ops = _sz(mode, 100_000, 5000, 1000)
            target = None
            if sync == "NORMAL" and inflight == 512:
                target = Target(">=", 30_000)
            elif sync == "NORMAL" and inflight == 1:
                target = Target(">=", 4_000)
            add(
                Case(
                    f"W1/ours/{sync}/c{inflight}",
                    "W1",
                    "ours",
                    "bench.ours:w1_ask",
                    {
                        "accounts": accounts,
                        "ops": ops,
                        "inflight": inflight,
                        "synchronous": sync,
                    },
                    (
                        Row(
                            f"{inflight} in flight, synchronous={sync}, n={ops:,}",
                            "ops_per_s",
                            "asks/s",
                            latency="",
                            target=target,
                        ),
                    ),
                    reps=reps,
                    extra=("mean_batch",),
                )
            )
    ours_w1 = "W1/ours/NORMAL/c{}"
    variants = (  # the same W1 run with one thing changed: (id suffix, system, label, params)
        ("uvloop", "ours on uvloop", "uvloop", {"loop": "uvloop"}),  # issue 16
        # issue 16: the cyclic GC's share, as an app that makes no cyclic garbage may tune it
        ("gc50k", "ours, gc.set_threshold(50_000)", "gen-0 threshold 50,000", {"gc_threshold": 50_000}),
        # issue 16: the writer thread waits for the GIL up to a switch interval (5 ms) after
        # each SQLite step while the loop runs Python; an app may shorten the interval
        ("swi", "ours, sys.setswitchinterval(0.0002)", "switch interval 0.2 ms", {"switch_interval": 0.0002}),
        # issue 16: the objects of start-up out of every full collection, as an app may do
        ("gcfreeze", "ours, gc.freeze() after start-up", "gc.freeze() after start-up", {"gc_freeze": True}),
        # issue 16: the three app settings above together (each documented in the README)
        (
            "tuned",
            "ours, app-tuned (uvloop, switch interval 0.2 ms, gen-0 50,000)",
            "uvloop + switch interval 0.2 ms + gen-0 threshold 50,000",
            {"loop": "uvloop", "switch_interval": 0.0002, "gc_threshold": 50_000},
        ),
        # issue 15: the cost of telemetry
        ("otel", "ours with OpenTelemetry (SDK, spans batched)", "with telemetry", {"observer": "otel"}),
        # issue 16: every ask with its own idempotency key (checked for a repeat first)
        ("keyed", "ours, every ask keyed", "each with an idempotency key", {"keyed": True}),
    )
    for suffix, system, label, extra in variants:
        for inflight in (1, 512):
            ops = _sz(mode, 100_000, 5000, 1000) if inflight > 1 else _sz(mode, 100_000, 800, 200)
            params = {"accounts": accounts, "ops": ops, "inflight": inflight, "synchronous": "NORMAL"}
            add(
                Case(
                    f"W1/ours-{suffix}/c{inflight}",
                    "W1",
                    system,
                    "bench.ours:w1_ask",
                    {**params, **extra},
                    (
                        Row(
                            f"{inflight} in flight, {label}, n={ops:,}",
                            "ops_per_s",
                            "asks/s",
                            latency="",
                            compare=(ours_w1.format(inflight), "ops_per_s"),
                        ),
                    ),
                    reps=reps,
                )
            )
    for inflight in (1, 64, 512):
        ops = _sz(mode, 100_000, 20_000, 2000)
        add(
            Case(
                f"W1/asyncio/c{inflight}",
                "W1",
                "asyncio queue-per-actor (no disk)",
                "bench.peers:asyncio_ask",
                {"accounts": accounts, "ops": ops, "inflight": inflight},
                (
                    Row(
                        f"{inflight} in flight, n={ops:,}",
                        "ops_per_s",
                        "asks/s",
                        latency="",
                        compare=(ours_w1.format(inflight), "ops_per_s"),
                    ),
                ),
                reps=reps,
            )
        )
    for inflight in (1, 64, 512):
        ops = _sz(mode, 100_000, 5000, 1000)
        add(
            Case(
                f"W1/pykka/c{inflight}",
                "W1",
                "pykka ThreadingActor (no disk)",
                "bench.peers:pykka_ask",
                {"accounts": accounts, "ops": ops, "inflight": inflight},
                (
                    Row(
                        f"{inflight} in flight, n={ops:,}",
                        "ops_per_s",
                        "asks/s",
                        latency="",
                        compare=(ours_w1.format(inflight), "ops_per_s"),
                    ),
                ),
                reps=reps,
            )
        )
    for threads, inflight, cache in ((1, 1, False), (8, 64, False), (1, 512, True)):
        ops = _sz(mode, 100_000 if threads == 1 else 50_000, 500 if not cache else 2000, 200)
        add(
            Case(
                f"W1/eventsourcing/t{threads}{'-cache' if cache else ''}",
                "W1",
                "eventsourcing (SQLite)",
                "bench.peers:eventsourcing_deposit",
                {"accounts": accounts, "ops": ops, "threads": threads, "cache": cache},
                (
                    Row(
                        f"{threads} thread{'s' if threads > 1 else ''}"
                        f"{', aggregate cache on' if cache else ''}, n={ops:,}",
                        "ops_per_s",
                        "deposits/s",
                        latency="",
                        compare=(ours_w1.format(inflight), "ops_per_s"),
                    ),
                ),
                reps=reps,
            )
        )
    dbos_cases = ((1, 1, False), (16, 64, False), (1, 1, True))
    for threads, inflight, bare in dbos_cases if mode == "full" else dbos_cases[:1]:
        ops = _sz(mode, 2000, 60, 20)
        kind = "bare transaction" if bare else "workflow + transaction step"
        add(
            Case(
                f"W1/dbos/t{threads}{'-bare' if bare else ''}",
                "W1",
                "DBOS Transact (SQLite)",
                "bench.peers:dbos_deposit",
                {"accounts": accounts, "ops": ops, "threads": threads, "bare": bare},
                (
                    Row(
                        f"{kind}, {threads} thread{'s' if threads > 1 else ''}, n={ops:,}",
                        "ops_per_s",
                        "deposits/s",
                        latency="",
                        compare=(ours_w1.format(inflight), "ops_per_s"),
                    ),
                ),
                reps=reps,
            )
        )
    floors = (
        ("NORMAL", 1, False, 1),
        ("NORMAL", 1, True, 1),
        ("NORMAL", 1000, True, 512),
        ("FULL", 1, False, 1),
    )
    for sync, per_txn, explicit, inflight in floors:
        if per_txn == 1:
            rows = _sz(mode, 20_000, 1000 if sync == "FULL" else 2000, 500)
            how = "BEGIN/INSERT/COMMIT" if explicit else "autocommit INSERT"
        else:
            rows = _sz(mode, 200_000, 50_000, 5000)
            how = f"{per_txn:,} rows/txn"
        add(
            Case(
                f"W1/aiosqlite/{sync}/{per_txn}{'x' if explicit and per_txn == 1 else ''}",
                "W1",
                "raw aiosqlite insert",
                "bench.peers:aiosqlite_insert",
                {"rows": rows, "per_txn": per_txn, "synchronous": sync, "explicit": explicit},
                (
                    Row(
                        f"{how}, synchronous={sync}, n={rows:,}",
                        "ops_per_s",
                        "rows/s",
                        latency="" if per_txn == 1 else None,
                        compare=(f"W1/ours/{sync}/c{inflight}", "ops_per_s"),
                    ),
                ),
                reps=reps,
            )
        )

    for per_txn, inflight in ((1, 1), (1000, 512)):  # the issue-16 floors: stdlib sqlite3
        rows = _sz(mode, 20_000, 2000, 500) if per_txn == 1 else _sz(mode, 200_000, 50_000, 5000)
        add(
            Case(
                f"W1/sqlite3/NORMAL/{per_txn}",
                "W1",
                "raw stdlib sqlite3 insert",
                "bench.peers:sqlite3_insert",
                {"rows": rows, "per_txn": per_txn, "synchronous": "NORMAL"},
                (
                    Row(
                        f"{per_txn:,} row{'s' if per_txn > 1 else ''}/txn (BEGIN IMMEDIATE), "
                        f"synchronous=NORMAL, n={rows:,}",
                        "ops_per_s",
                        "rows/s",
                        latency="" if per_txn == 1 else None,
                        compare=(f"W1/ours/NORMAL/c{inflight}", "ops_per_s"),
                    ),
                ),
                reps=reps,
            )
        )

    # ------------------------------------------------------------ W2 durable tell
    for inflight in (64, 512) if mode == "full" else (512,):
        ops = _sz(mode, 100_000, 5000, 1000)
        add(
            Case(
                f"W2/ours/c{inflight}",
                "W2",
                "ours",
                "bench.ours:w2_tell",
                {"accounts": accounts, "ops": ops, "inflight": inflight},
                (
                    Row(
                        f"{inflight} tells in flight, until applied, n={ops:,} (latency: tell accepted)",
                        "ops_per_s",
                        "tells/s",
                        latency="",
                    ),
                ),
                reps=reps,
                extra=("accept_per_s",),
            )
        )

    # ------------------------------------------------------------ W3 fixed offered load
    for rate in (2000, 10_000):
        secs = 5.0 if not quick else (0.5 if mode == "quick" else 0.3)
        add(
            Case(
                f"W3/ours/r{rate}",
                "W3",
                "ours",
                "bench.ours:w3_latency",
                {"accounts": accounts, "rate": rate, "seconds": secs},
                (
                    Row(
                        f"offered {rate:,}/s for {secs:g}s (latency from scheduled send)",
                        "p99_ms",
                        "ms p99",
                        latency="",
                        target=Target("<=", 3.0) if rate == 2000 else None,
                    ),
                    Row(
                        f"offered {rate:,}/s: achieved throughput",
                        "ops_per_s",
                        "asks/s",
                        latency="svc_",
                    ),
                ),
                reps=reps,
            )
        )

    # ------------------------------------------------------------ W4 activation
    sizes = {
        "full": (10_000, 100_000, 1_000_000),
        "quick": (10_000, 30_000),
        "smoke": (2000,),
    }[mode]
    for events in sizes:
        big = events == max(sizes)
        add(
            Case(
                f"W4/ours/{events}",
                "W4",
                "ours",
                "bench.ours:w4_activation",
                {"events": events},
                (
                    Row(
                        f"{events:,} events, with snapshot: first query",
                        "snap_first_query_ms",
                        "ms",
                        target=Target("<=", 5.0) if big and mode == "full" else None,
                    ),
                    Row(
                        f"{events:,} events, no snapshot: first query (full replay)",
                        "nosnap_first_query_ms",
                        "ms",
                    ),
                    Row(
                        f"{events:,} events, no snapshot: replay rate",
                        "replay_events_per_s",
                        "events/s",
                        target=Target(">=", 300_000) if big and mode == "full" else None,
                    ),
                ),
                reps=reps,
                extra=("snap_open_ms", "build_events_per_s"),
                note="activation = fresh ActorSystem on the file (open time in note), one query",
            )
        )
        if mode != "full" and events != min(sizes):
            continue  # eventsourcing builds big logs slowly: one size is enough outside full
        add(
            Case(
                f"W4/eventsourcing/{events}",
                "W4",
                "eventsourcing (SQLite)",
                "bench.peers:eventsourcing_activation",
                {"events": events},
                (
                    Row(
                        f"{events:,} events, with snapshot: first get",
                        "snap_first_query_ms",
                        "ms",
                        compare=(f"W4/ours/{events}", "snap_first_query_ms"),
                    ),
                    Row(
                        f"{events:,} events, no snapshot: first get (full replay)",
                        "nosnap_first_query_ms",
                        "ms",
                        compare=(f"W4/ours/{events}", "nosnap_first_query_ms"),
                    ),
                    Row(
                        f"{events:,} events, no snapshot: replay rate",
                        "replay_events_per_s",
                        "events/s",
                        compare=(f"W4/ours/{events}", "replay_events_per_s"),
                    ),
                ),
                reps=reps,
            )
        )

    # ------------------------------------------------------------ W5 recovery
    entities = _sz(mode, 10_000, 2000, 300)
    add(
        Case(
            "W5/ours",
            "W5",
            "ours",
            "bench.ours:w5_recovery",
            {"entities": entities},
            (
                Row(
                    f"{entities:,} pending signals over {entities:,} entities: restart until applied",
                    "recovery_s",
                    "s",
                    target=Target("<=", 2.0) if mode == "full" else None,
                ),
            ),
            reps=reps,
            extra=("pending", "open_s"),
        )
    )

    # ------------------------------------------------------------ W6 memory
    active = _sz(mode, 100_000, 3000, 1000)
    touched = _sz(mode, 1_000_000, 3000, 2000)
    add(
        Case(
            "W6/ours/active",
            "W6",
            "ours",
            "bench.ours:w6_memory",
            {"mode": "active", "entities": active},
            (
                Row(
                    f"{active:,} active entities (one deposit each), peak RSS",
                    "rss_mb",
                    "MB",
                    target=Target("<=", 250) if mode == "full" else None,
                ),
            ),
            reps=reps,
            extra=("baseline_rss_mb", "active_at_end"),
            rss_metric="rss_mb",
        )
    )
    add(
        Case(
            "W6/ours/touched",
            "W6",
            "ours",
            "bench.ours:w6_memory",
            {"mode": "touched", "entities": touched},
            (
                Row(
                    f"{touched:,} entities touched (one deposit each), passivation on, peak RSS",
                    "rss_mb",
                    "MB",
                    target=Target("<=", 300) if mode == "full" else None,
                ),
            ),
            reps=reps,
            extra=("baseline_rss_mb", "active_max"),
            rss_metric="rss_mb",
        )
    )

    # ------------------------------------------------------------ W7 queries
    ops = _sz(mode, 200_000, 10_000, 2000)
    add(
        Case(
            "W7/ours",
            "W7",
            "ours",
            "bench.ours:w7_queries",
            {"accounts": accounts, "ops": ops},
            (
                Row(f"1 in flight over {accounts:,} active accounts", "ops_per_s", "queries/s", latency=""),
                Row("64 in flight", "ops_per_s_c64", "queries/s"),
            ),
            reps=reps,
        )
    )
    # ------------------------------------------------------------ W8 timers at start
    timers = _sz(mode, 1_000_000, 100_000, 2000)
    add(
        Case(
            "W8/ours",
            "W8",
            "ours (SQLite)",
            "bench.ours:w8_timers",
            {"timers": timers},
            (
                Row(f"start with {timers:,} stored timers", "start_ms", "ms", latency=""),
                Row("memory the start added", "rss_added_mb", "MB"),
                Row("timers held in memory", "in_memory", "timers"),
            ),
            reps=reps,
        )
    )
    # ------------------------------------------------------------ W9 keyed asks, long history
    for history in (0, _sz(mode, 10_000_000, 200_000, 2000)):
        ops = _sz(mode, 100_000, 5000, 1000)
        add(
            Case(
                f"W9/ours/h{history}",
                "W9",
                "ours (SQLite)",
                "bench.ours:w9_keyed_history",
                {"history": history, "ops": ops, "accounts": accounts},
                (Row(f"512 in flight, keyed, over {history:,} old keys", "ops_per_s", "asks/s"),),
                reps=reps,
            )
        )
    # ------------------------------------------------------------ W10 fan-out of children
    for children in sorted({_sz(mode, 1000, 1000, 200), _sz(mode, 10_000, 1000, 200)}):
        add(
            Case(
                f"W10/ours/c{children}",
                "W10",
                "ours (SQLite)",
                "bench.ours:w10_fan_out",
                {"children": children},
                (
                    Row(f"start {children:,} children, await all results", "wall_s", "s"),
                    Row("children per second", "children_per_s", "children/s"),
                    Row("worst ping+query while it waits", "served_max_ms", "ms"),
                    Row("memory the fan-out added", "rss_added_mb", "MB"),
                ),
                reps=reps,
                extra=("served",),
            )
        )
    cases += _postgres_twins(cases, mode)
    return cases


def _postgres_twins(cases: list[Case], mode: Mode) -> list[Case]:
    """Our cases again on PostgresStore (W1 at SQLite's default durability only), plus
    raw asyncpg insert floors like the aiosqlite ones."""
    twins = []
    for c in cases:
        if c.system != "ours" or c.params.get("synchronous", "NORMAL") != "NORMAL":
            continue
        params = {k: v for k, v in c.params.items() if k != "synchronous"}
        rows = tuple(
            replace(r, label=r.label.replace(", synchronous=NORMAL", ""), target=None) for r in c.rows
        )
        twins.append(
            replace(
                c,
                id=c.id.replace("/ours/NORMAL/", "/ours/").replace("/ours", "/ours-pg", 1),
                system="ours (PostgreSQL)",
                params={**params, "store": "postgres"},
                rows=rows,
                pair=c.id,
            )
        )
    for per_txn, explicit in ((1, False), (1, True), (1000, True)):
        n = _sz(mode, 20_000, 2000, 500) if per_txn == 1 else _sz(mode, 200_000, 50_000, 5000)
        how = "1,000 rows/txn"
        if per_txn == 1:
            how = "BEGIN/INSERT/COMMIT" if explicit else "autocommit INSERT"
        twins.append(
            Case(
                f"W1/asyncpg/{per_txn}{'x' if explicit and per_txn == 1 else ''}",
                "W1",
                "raw asyncpg insert (PostgreSQL)",
                "bench.pg:asyncpg_insert",
                {"rows": n, "per_txn": per_txn, "explicit": explicit, "store": "postgres"},
                (
                    Row(
                        f"{how}, synchronous_commit=on, n={n:,}",
                        "ops_per_s",
                        "rows/s",
                        latency="" if per_txn == 1 else None,
                        compare=(f"W1/ours-pg/c{1 if per_txn == 1 else 512}", "ops_per_s"),
                    ),
                ),
                reps=3,
            )
        )
    return twins
