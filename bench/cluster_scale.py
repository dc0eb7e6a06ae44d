"""Throughput with 1, 2 and 4 members on one shared store, and what a cross-member ask costs.

``python -m bench.cluster_scale [--store postgres,sqlite] [--members 1,2,4] [--seconds 5]
[--reps 3] [--inflight 256] [--lat 2000] [--dsn D] [--json F]``

For each store and member count N the parent makes a fresh database (PostgreSQL: a
new database on an embedded server, or on ``--dsn``'s server; SQLite: a new file
opened with ``shared=True``), starts N member processes (``--node`` mode of this
module, each an ``ActorSystem`` with ``member_name=node-i``) and opens a client
(``serve=False``) itself. It waits until the placement is settled: every shard owned
by the live member the rendezvous hash ranks first, and the shard map unchanged for
a second. Each member then takes the first ``--accounts`` (1,000) accounts of the
pool ``acc-0 .. acc-(3000 N - 1)`` whose shard it owns, and activates them; the
union of the members' accounts is the *pool* of the unrouted windows.

Then, for ``--reps`` rounds, two windows of ``--seconds`` each, all members at once
(the parent sends every member one start time on stdin; each waits for it, runs,
drains its calls and answers a line on stdout):

- **routed**: each member asks ``Account.deposit`` (a durable ask: the answer comes
  after the event is committed) of random accounts *it owns*, ``--inflight`` calls
  outstanding: the throughput a load balancer that routes by shard gets;
- **unrouted**: the same, to random accounts of the pool, wherever they live
  (about (N-1)/N of the asks cross members: accepted into the stored inbox here,
  run by the owner, answered from its committed outcome).

Reported per N: total asks completed inside the windows per second (median of the
rounds), the ratio to N=1, each member's CPU seconds per window second and the
machine's busy cores (``/proc/stat``) during the windows. After the windows the
deposits stored on every account must add up to the asks answered (a check, not a
timing).

With 2 members (or the smallest N >= 2 given) it also measures latency: member
node-0 asks, one at a time and interleaved, an account it owns and an account
node-1 owns (``--lat`` asks each, after 50 warm-up asks), and the parent's client
(which owns nothing) asks an account; p50 and p99 of each.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from actors import ActorSystem
from actors._cluster import placement
from bench.common import percentile
from bench.models import Account
from persistence import PostgresStore, SqliteStore, Store

ROOT = Path(__file__).resolve().parents[1]
ENTITIES = [Account]
WARMUP = 50
"""Asks not counted at the start of a latency run (at most as many as it counts)."""


def shared_store(location: str) -> Store:
    """The shared store at ``location``: a ``postgresql://`` DSN or a SQLite path."""
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresStore(location, max_connections=8)
    return SqliteStore(location, shared=True)


def account(i: int) -> str:
    return f"acc-{i}"


def _lat_ms(ns: list[int]) -> dict[str, float]:
    ns = sorted(ns)
    return {
        "p50_ms": round(percentile(ns, 50) / 1e6, 3),
        "p99_ms": round(percentile(ns, 99) / 1e6, 3),
        "mean_ms": round(statistics.fmean(ns) / 1e6, 3),
    }


# ---------------------------------------------------------------- a member process


class _Node:
    """The member side: answers one JSON command per stdin line with one JSON line."""

    def __init__(self, system: ActorSystem, inflight: int, per_member: int) -> None:
        self.system = system
        self.inflight = inflight
        self.per_member = per_member
        self.own: list[str] = []
        self.pool: list[str] = []
        self.answered = 0
        """Asks answered in every window so far (inside and after the window)."""

    def owns(self, entity_id: str) -> bool:
        return self.system._kernel.shards.owns("Account", entity_id)

    async def prepare(self, candidates: int) -> dict[str, Any]:
        mine = (a for a in map(account, range(candidates)) if self.owns(a))
        self.own = [a for _, a in zip(range(self.per_member), mine, strict=False)]
        for a in self.own:  # activate them here (their owner)
            await self.system.ref(Account, a).query(Account.get_balance)
        return {"own": self.own, "shards": len(self.system._kernel.shards.epochs)}

    async def run(self, mode: str, start: float, seconds: float, profile: str | None) -> dict[str, Any]:
        targets = self.own if mode == "routed" else self.pool
        refs = [self.system.ref(Account, a) for a in targets]
        away = [not self.owns(a) for a in targets]
        rng = random.Random(os.getpid())
        shards_before = dict(self.system._kernel.shards.epochs)
        st0 = self.system.statistics()
        counted = 0
        total = 0
        remote = 0
        lat: list[int] = []
        await anyio.sleep(max(0.0, start - time.time()))
        t0 = time.perf_counter()
        end = t0 + seconds
        cpu0 = time.process_time()
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()

        async def worker() -> None:
            nonlocal counted, total, remote
            while time.perf_counter() < end:
                i = rng.randrange(len(refs))
                ref = refs[i]
                remote += away[i]
                s = time.perf_counter_ns()
                await ref.ask(Account.deposit, 1)
                done = time.perf_counter_ns()
                total += 1
                if done <= end * 1e9:
                    counted += 1
                    lat.append(done - s)

        async with anyio.create_task_group() as tg:
            for _ in range(self.inflight):
                tg.start_soon(worker)
            await anyio.sleep(max(0.0, end - time.perf_counter()))
            cpu = time.process_time() - cpu0
            if prof is not None:
                prof.disable()
                prof.dump_stats(profile)  # type: ignore[arg-type]
        self.answered += total
        st = self.system.statistics()
        return {
            "asks": counted,
            "secs": seconds,
            "total": total,
            "remote": remote,
            "cpu_s": cpu,
            "moved": dict(self.system._kernel.shards.epochs) != shards_before,
            "mean_batch": (st.commit_writes - st0.commit_writes)
            / max(st.commit_batches - st0.commit_batches, 1),
            **_lat_ms(lat or [0]),
        }

    async def latency(self, n: int) -> dict[str, Any]:
        """Interleaved sequential asks: an account owned here, one owned elsewhere."""
        local = self.system.ref(Account, self.own[0])
        other = next(a for a in self.pool if not self.owns(a))
        remote = self.system.ref(Account, other)
        lat: dict[str, list[int]] = {"local": [], "remote": []}
        warmup = min(WARMUP, n)
        for i in range(warmup + n):
            for name, ref in (("local", local), ("remote", remote)):
                s = time.perf_counter_ns()
                await ref.ask(Account.deposit, 1)
                if i >= warmup:
                    lat[name].append(time.perf_counter_ns() - s)
        self.answered += 2 * (warmup + n)
        return {name: _lat_ms(v) for name, v in lat.items()}


async def node(location: str, ttl: float, name: str, inflight: int, per_member: int) -> None:
    async with ActorSystem(
        shared_store(location),
        ENTITIES,
        lease_ttl=dt.timedelta(seconds=ttl),
        member_name=name,
        passivate_after=None,
    ) as system:
        me = _Node(system, inflight, per_member)
        print(json.dumps({"ready": system.member_id}), flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "quit":
                out: dict[str, Any] = {"answered": me.answered}
            elif op == "prepare":
                out = await me.prepare(int(cmd["candidates"]))
            elif op == "pool":
                me.pool = list(cmd["pool"])
                out = {"pool": len(me.pool)}
            elif op == "run":
                out = await me.run(
                    cmd["mode"], float(cmd["start"]), float(cmd["seconds"]), cmd.get("profile")
                )
            elif op == "latency":
                out = await me.latency(int(cmd["n"]))
            else:
                out = {"error": f"unknown op {op!r}"}
            print(json.dumps(out), flush=True)
            if op == "quit":
                return


# ---------------------------------------------------------------- the parent


class Member:
    """A member process the parent starts and talks to."""

    def __init__(self, index: int, location: str, ttl: float, inflight: int, per_member: int) -> None:
        self.name = f"node-{index}"
        self.cmd = [sys.executable, "-m", "bench.cluster_scale", "--node", location, "--ttl", str(ttl)]
        self.cmd += ["--name", self.name, "--inflight", str(inflight), "--accounts", str(per_member)]
        self.proc: anyio.abc.Process | None = None
        self.out: BufferedByteReceiveStream | None = None
        self.member_id = ""

    async def start(self) -> None:
        self.proc = await anyio.open_process(self.cmd, cwd=ROOT, stderr=None)
        assert self.proc.stdout is not None
        self.out = BufferedByteReceiveStream(self.proc.stdout)
        self.member_id = (await self.receive(60))["ready"]

    async def receive(self, deadline: float) -> dict[str, Any]:
        assert self.out is not None
        with anyio.fail_after(deadline):
            line = await self.out.receive_until(b"\n", 1 << 20)
        return json.loads(line)  # type: ignore[no-any-return]

    async def ask(self, deadline: float = 120, **cmd: Any) -> dict[str, Any]:
        await self.send(**cmd)
        return await self.receive(deadline)

    async def send(self, **cmd: Any) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        await self.proc.stdin.send((json.dumps(cmd) + "\n").encode())

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await self.ask(30, op="quit")
            with anyio.fail_after(30):
                await self.proc.wait()
        except Exception:
            self.proc.kill()
            await self.proc.wait()


def _server_cpu(data_dir: Path | None) -> float:
    """CPU seconds used so far by the embedded PostgreSQL server (its postmaster and
    live backends; -1 if unknown)."""
    if data_dir is None:
        return -1.0
    try:
        root = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdecimal():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(d.name) == root or int(fields[1]) == root:  # fields[1]: the parent pid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [float(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)
    return sum(parts) - idle, sum(parts)


async def _settled(client: ActorSystem, n: int, ttl: float, deadline: float = 120) -> float:
    """Wait until the N members own exactly their placement and nothing moved for 1 s."""
    count = client._kernel.shards.count
    t0 = time.monotonic()
    last: dict[int, str] | None = None
    stable_since = 0.0
    with anyio.fail_after(deadline):
        while True:
            ms = [m for m in await client.members() if m.serves and m.status == "alive" and m.seen_ago <= ttl]
            owner = {s: m.member_id for m in ms for s in m.shards}
            live = [m.member_id for m in ms]
            ok = (
                len(ms) == n
                and len(owner) == count
                and all(placement(live, s) == o for s, o in owner.items())
            )
            now = time.monotonic()
            if ok and owner == last:
                if now - stable_since >= 1.0:
                    return now - t0
            else:
                stable_since = now
            last = owner if ok else None
            await anyio.sleep(0.1)


async def _client_latency(client: ActorSystem, entity_id: str, n: int) -> dict[str, float]:
    ref = client.ref(Account, entity_id)
    lat: list[int] = []
    warmup = min(WARMUP, n)
    for i in range(warmup + n):
        s = time.perf_counter_ns()
        await ref.ask(Account.deposit, 1)
        if i >= warmup:
            lat.append(time.perf_counter_ns() - s)
    return _lat_ms(lat)


async def _all(
    members: list[Member], call: Callable[[Member], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{} for _ in members]

    async def one(i: int, m: Member) -> None:
        out[i] = await call(m)

    async with anyio.create_task_group() as tg:
        for i, m in enumerate(members):
            tg.start_soon(one, i, m)
    return out


class Group:
    """N member processes on one fresh database, and a client of it in the parent."""

    def __init__(
        self, location: str, n: int, *, inflight: int, per_member: int, ttl: float, server_dir: Path | None
    ) -> None:
        self.location, self.n, self.ttl, self.per_member = location, n, ttl, per_member
        self.server_dir = server_dir
        self.members = [Member(i, location, ttl, inflight, per_member) for i in range(n)]
        self.result: dict[str, Any] = {"members": n, "windows": {"routed": [], "unrouted": []}}
        self.client: ActorSystem | None = None
        self.client_added = 0
        self.pool: list[str] = []

    @property
    def candidates(self) -> int:
        """Accounts among which each member finds its ``per_member`` own ones."""
        return 3 * self.per_member * self.n

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the members, wait for a settled placement, activate each member's accounts."""
        stack.push_async_callback(self.close)
        async with anyio.create_task_group() as tg:
            for m in self.members:
                tg.start_soon(m.start)
        self.client = await stack.enter_async_context(
            ActorSystem(
                shared_store(self.location), ENTITIES, serve=False, lease_ttl=dt.timedelta(seconds=self.ttl)
            )
        )
        self.result["settle_s"] = round(await _settled(self.client, self.n, self.ttl), 2)
        prepared = await _all(self.members, lambda m: m.ask(op="prepare", candidates=self.candidates))
        self.pool = [a for p in prepared for a in p["own"]]
        await _all(self.members, lambda m: m.ask(op="pool", pool=self.pool))
        self.result["own"] = [len(p["own"]) for p in prepared]
        self.result["shards"] = [p["shards"] for p in prepared]
        if min(self.result["own"]) < self.per_member:
            raise RuntimeError(f"a member owns too few accounts of the pool: {self.result['own']}")

    async def window(self, mode: str, seconds: float, profile: Path | None) -> dict[str, Any]:
        """One window of ``mode`` on every member at once."""
        start = time.time() + 0.3
        busy0 = _cpu_busy()
        server0 = _server_cpu(self.server_dir)
        outs = await _all(
            self.members,
            lambda m: m.ask(
                op="run",
                mode=mode,
                start=start,
                seconds=seconds,
                profile=str(profile / f"N{self.n}-{mode}-{m.name}.prof") if profile else None,
                deadline=seconds + 120,
            ),
        )
        busy1 = _cpu_busy()
        server1 = _server_cpu(self.server_dir)
        asks = sum(o["asks"] for o in outs)
        w = {
            "asks_per_s": asks / seconds,
            "per_member": [round(o["asks"] / seconds) for o in outs],
            "member_cpu": [round(o["cpu_s"] / seconds, 2) for o in outs],
            "asks_per_cpu_s": round(asks / max(sum(o["cpu_s"] for o in outs), 1e-9)),
            "machine_busy_cores": round(
                (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1) * (os.cpu_count() or 1), 2
            ),
            "server_cpu": round((server1 - server0) / seconds, 2) if server0 >= 0 and server1 >= 0 else None,
            "remote_share": round(sum(o["remote"] for o in outs) / max(sum(o["total"] for o in outs), 1), 3),
            "p50_ms": statistics.median(o["p50_ms"] for o in outs),
            "p99_ms": max(o["p99_ms"] for o in outs),
            "mean_batch": [round(o["mean_batch"], 1) for o in outs],
            "moved": any(o["moved"] for o in outs),
        }
        self.result["windows"][mode].append(w)
        return w

    async def latency(self, n: int) -> None:
        """Sequential asks from node-0 (local and remote) and from the client."""
        assert self.client is not None
        lat = await self.members[0].ask(op="latency", n=n, deadline=900)
        lat["client"] = await _client_latency(self.client, self.pool[-1], n)
        self.client_added += min(WARMUP, n) + n
        self.result["latency"] = lat

    async def finish(self) -> None:
        """Stop the members; check that the deposits stored add up to the asks answered."""
        assert self.client is not None
        finals = await _all(self.members, lambda m: m.ask(op="quit"))
        answered = sum(f["answered"] for f in finals) + self.client_added
        stored = 0
        for a in self.pool:
            stored += await self.client.ref(Account, a).query(Account.get_deposits)
        self.result["answered"] = answered
        self.result["stored_deposits"] = stored
        for mode, ws in self.result["windows"].items():
            self.result[mode] = statistics.median(w["asks_per_s"] for w in ws)
        if stored != answered:
            raise AssertionError(f"N={self.n}: {stored} deposits stored, {answered} asks answered")

    async def close(self) -> None:
        for m in self.members:
            with contextlib.suppress(Exception):
                await m.close()


async def measure(
    locations: dict[int, str],
    *,
    seconds: float,
    reps: int,
    inflight: int,
    per_member: int,
    ttl: float,
    lat: int,
    profile_dir: Path | None = None,
    server_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Every member count at once, each on its own database; windows interleaved.

    Each round runs, for each N in turn, a routed and an unrouted window while the
    other groups idle, so a change in the machine's load hits every N alike.
    """
    groups = [
        Group(loc, n, inflight=inflight, per_member=per_member, ttl=ttl, server_dir=server_dir)
        for n, loc in locations.items()
    ]
    async with contextlib.AsyncExitStack() as stack:
        for g in groups:
            await g.start(stack)
            log(f"  N={g.n}: settled in {g.result['settle_s']} s, accounts per member {g.result['own']}")
        for rep in range(reps):
            for g in groups:
                for mode in ("routed", "unrouted"):
                    w = await g.window(mode, seconds, profile_dir if rep == 0 else None)
                    log(
                        f"  round {rep + 1} N={g.n} {mode}: {w['asks_per_s']:,.0f} asks/s "
                        f"(members {w['per_member']}, cpu {w['member_cpu']}, server {w['server_cpu']}, "
                        f"machine {w['machine_busy_cores']} cores busy)"
                    )
        lat_n = min((g.n for g in groups if g.n >= 2), default=0)
        for g in groups:
            if lat and g.n == lat_n:
                await g.latency(lat)
                log(f"  N={g.n} latency: {g.result['latency']}")
        for g in groups:
            await g.finish()
    return [g.result for g in groups]


# ---------------------------------------------------------------- locations


@contextlib.contextmanager
def _postgres_server(dsn: str | None) -> Any:
    if dsn:
        yield dsn, None
        return
    from persistence.pg_embedded import EmbeddedPostgres

    with EmbeddedPostgres() as server:
        yield server.dsn(), server.data_dir


def _with_db(dsn: str, name: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(dsn)._replace(path="/" + name))


async def _pg_admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_location(store: str, admin: str | None, folder: Path, n: int) -> Any:
    """A fresh database for one member count."""
    if store == "sqlite":
        yield str(folder / f"scale-{n}.db")
        return
    assert admin is not None
    name = f"bench_scale_{os.getpid()}_{n}"
    anyio.run(_pg_admin, admin, f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(admin, name)
    finally:
        with contextlib.suppress(Exception):
            anyio.run(_pg_admin, admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(a: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    counts = [int(x) for x in a.members.split(",")]
    stores = [s for s in a.store.split(",") if s]
    doc: dict[str, Any] = {
        "meta": {
            "command": "python -m bench.cluster_scale " + " ".join(sys.argv[1:]),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "loadavg_before": os.getloadavg(),
            "seconds": a.seconds,
            "reps": a.reps,
            "inflight": a.inflight,
            "accounts_per_member": a.accounts,
            "ttl": a.ttl,
        },
        "stores": {},
    }
    for store in stores:
        with contextlib.ExitStack() as stack:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
            admin, server_dir = (
                stack.enter_context(_postgres_server(a.dsn)) if store == "postgres" else (None, None)
            )
            locations = {n: stack.enter_context(fresh_location(store, admin, folder, n)) for n in counts}
            prof = None
            if a.profile:
                prof = Path(a.profile) / store
                prof.mkdir(parents=True, exist_ok=True)
            log(f"{store}: {', '.join(map(str, counts))} member(s), each on its own database")
            rows = anyio.run(
                functools.partial(
                    measure,
                    locations,
                    seconds=a.seconds,
                    reps=a.reps,
                    inflight=a.inflight,
                    per_member=a.accounts,
                    ttl=a.ttl,
                    lat=a.lat,
                    profile_dir=prof,
                    server_dir=server_dir,
                    log=log,
                )
            )
        base = rows[0] if rows and rows[0]["members"] == 1 else None
        for r in rows:
            for mode in ("routed", "unrouted"):
                r[f"{mode}_ratio"] = round(r[mode] / base["routed"], 2) if base else None
        doc["stores"][store] = rows
    doc["meta"]["loadavg_after"] = os.getloadavg()
    return doc


def table(doc: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    out = []
    for store, rows in doc["stores"].items():
        out.append(f"**{store}**\n")
        out.append(
            "| members | routed asks/s | x N=1 | unrouted asks/s | x N=1 "
            "| member CPU (cores) | asks per member CPU-second | server CPU (cores) | machine busy (cores) |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            mid = sorted(r["windows"]["routed"], key=lambda w: w["asks_per_s"])[
                len(r["windows"]["routed"]) // 2
            ]
            out.append(
                f"| {r['members']} | {r['routed']:,.0f} | {r['routed_ratio']} | {r['unrouted']:,.0f} | "
                f"{r['unrouted_ratio']} | {sum(mid['member_cpu']):.2f} | {mid['asks_per_cpu_s']:,} "
                f"| {'-' if mid['server_cpu'] is None else mid['server_cpu']} | {mid['machine_busy_cores']} |"
            )
        for r in rows:
            if "latency" in r:
                out.append("")
                out.append(f"Sequential asks, {r['members']} members ({store}):\n")
                out.append("| from | to | p50 ms | p99 ms | mean ms |")
                out.append("|---|---|---|---|---|")
                names = {
                    "local": ("member A", "an entity A owns"),
                    "remote": ("member A", "an entity B owns"),
                    "client": ("a client", "any entity"),
                }
                for k, (frm, to) in names.items():
                    v = r["latency"][k]
                    out.append(f"| {frm} | {to} | {v['p50_ms']} | {v['p99_ms']} | {v['mean_ms']} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--node", help=argparse.SUPPRESS)
    p.add_argument("--name", default="node", help=argparse.SUPPRESS)
    p.add_argument("--store", default="postgres,sqlite", help="postgres, sqlite or both (comma-separated)")
    p.add_argument(
        "--dsn", default=os.environ.get("ACTORS_POSTGRES_DSN"), help="an admin DSN (default: embedded)"
    )
    p.add_argument("--members", default="1,2,4", help="member counts, comma-separated")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per window")
    p.add_argument("--reps", type=int, default=3, help="windows per mode (the median is reported)")
    p.add_argument("--inflight", type=int, default=256, help="asks outstanding per member")
    p.add_argument("--accounts", type=int, default=1000, help="accounts per member")
    p.add_argument("--ttl", type=float, default=10.0, help="lease_ttl of the members, seconds")
    p.add_argument("--lat", type=int, default=2000, help="sequential asks per latency series (0: none)")
    p.add_argument("--profile", help="a folder: cProfile each member in the first window of each mode")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if a.node:
        anyio.run(node, a.node, a.ttl, a.name, a.inflight, a.accounts)
        return 0
    doc = run(a)
    print(table(doc))
    if a.json:
        a.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    from bench.cluster_scale import main as _main  # the module, not a second __main__ copy

    raise SystemExit(_main())
