"""Faults against several members on one shared store: SIGKILL, SIGSTOP past the lease
(a zombie that resumes right after the takeover), SIGTERM and restart, a database
restart; then the checks.

``python -m bench.cluster_faults [--store postgres|sqlite] [--members 3] [--faults 200]
[--ttl 2] [--seed 1] [--no-fence] [--json FILE]``

The parent starts ``--members`` member processes (``--node`` mode of this module,
each an ``ActorSystem`` on the shared store with ``member_name=node-N``) and opens
a client (``serve=False``) itself. Once every shard has an owner it opens ten
accounts and runs, all through the client, until the faults are done:

- **transfers**: keyed ``Transfer.start`` sagas (journaled asks between accounts
  that live on different members), each acknowledged once ``start`` returned; one
  in ten to an account never opened, whose credit is refused, so the saga's
  compensation refunds the debit;
- **tallies**: unkeyed ``tell`` of a unique nonce to four fast ``Tally`` entities;
- **slow tallies**: the same to two ``Slow`` entities whose handler holds the
  event loop for 0.3 s, so a member is nearly always mid-handler when it is hit;
- **alarms**: an unkeyed ``tell`` of ``Alarm.arm`` to four ``Alarm`` entities, each
  scheduling a durable timer 0.05-2.5 s out whose ``ring`` is an event guarded by
  nothing (a timer fired twice leaves two), so timers fall due while their owner is
  down, stopped or handing its shards over;
- **gates**: keyed ``Gate.request`` workflows started with a handle, each parked in
  ``wait_until`` for an ``approve`` with a deadline of 0.3-3 s (a durable timer); the
  client approves about half of them and cancels a fifth after a random delay, so
  approvals, cancellations and deadlines land on members that took the parked
  workflow over;
- **nests**: keyed ``Nest.collect`` parent workflows that start two ``Leaf`` children
  (entities of their own, often on another member; each a durable sleep of 0.05-0.8
  s, then one event) and await their results, so a child's outcome crosses members
  and a parent parked on it moves with its shard;
- **jobs**: keyed ``Job.mint`` workflows that call an activity returning a new token
  on every call, record it, sleep durably (a checkpoint) and record it again, so a
  re-run after a takeover must take the token from the journal.

Faults, one after another, on a seeded random member: ``kill`` (SIGKILL, wait until
the others own its shards, restart it), ``stop`` (SIGSTOP the owner of a
tally, wait until the others own its shards, then SIGCONT at once: a zombie whose
handler finishes, and whose queued signals run, right after the takeover), ``term`` (SIGTERM: it hands its
shards off and exits; restart it) and, on the embedded PostgreSQL, ``db`` (the
server stopped and started again) and ``dbstall`` (every server process stopped
with SIGSTOP for one and a half leases, then resumed: no member can renew its lease
or write meanwhile, and each finds the others' leases expired when it can) and
``cut`` (a partition: the member's relay to the server, :class:`Proxy`, holds every
packet both ways with the connections open until the others own its shards, then
delivers what it held, late; the member runs on meanwhile). The
time from each fault until every shard has a live owner again is its failover time.

After the last fault every member runs, every acknowledged transfer's result is
awaited, every acknowledged nonce must show up, and the store is read:

- every acknowledged transfer finished once: completed (one debit, one credit) or
  refused; no transfer debited, credited or refunded twice; money is conserved;
- every acknowledged nonce was applied exactly once, no nonce twice;
- every acknowledged alarm was armed once and rang once, none rang without being armed;
- every acknowledged gate finished once: one opening, one closing, at most one
  approval, its outcome ``approved`` exactly when an approval comes before the
  closing, and its handle's result is that outcome (``cancelled`` only for a gate
  the client cancelled);
- every acknowledged parent workflow recorded its total once, equal to its
  children's results and to its handle's answer, and each child worked once;
- every acknowledged job recorded one token before its checkpoint and the same after
  it, and its handle answered that token;
- every entity's log runs 1..n without a gap; the inbox is empty; no timer is left
  (each alarm's rang and each gate's deadline fired or was cancelled); no dead letters.

``--no-fence`` is the negative control: the members never fence their commits
(``set_fence`` does nothing), and the zombies then apply signals twice.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
from anyio.streams.buffered import BufferedByteReceiveStream

from actors import ActorsError, ActorSystem, Cancelled, Entity, applies, event_type, query
from actors import signal as on_signal
from examples.bank.model import Account, Transfer
from persistence import PostgresStore, SqliteStore, Store
from persistence.pg_embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[1]
ACCOUNTS = tuple(f"acc-{i}" for i in range(10))
GHOSTS = tuple(f"ghost-{i}" for i in range(3))
"""Accounts never opened: a transfer to one is debited, its credit refused, and the
saga's compensation refunds the debit (the compensation path, under the faults)."""
OPENING = 1_000
TALLIES = tuple(f"tally-{i}" for i in range(4))
SLOWS = ("slow-0", "slow-1")
SLOW_HANDLER = 0.3
"""Seconds a slow tally's handler holds its member's event loop."""


@event_type("cluster_faults.Noted")
@attrs.frozen
class Noted:
    nonce: str


@attrs.define
class Tally(Entity):
    """Counts nonces (one event each)."""

    seen: int = 0

    @on_signal
    def note(self, nonce: str) -> None:
        self.emit(Noted(nonce))

    @query
    def count(self) -> int:
        return self.seen

    @applies
    def _noted(self, e: Noted) -> None:
        self.seen += 1


@attrs.define
class Slow(Entity):
    """Counts nonces, slowly: the handler blocks its member for a moment."""

    seen: int = 0

    @on_signal
    def note(self, nonce: str) -> None:
        time.sleep(SLOW_HANDLER)  # a CPU-bound handler: the member is busy in it
        self.emit(Noted(nonce))

    @query
    def count(self) -> int:
        return self.seen

    @applies
    def _noted(self, e: Noted) -> None:
        self.seen += 1


ALARMS = tuple(f"alarm-{i}" for i in range(4))


@event_type("cluster_faults.Armed")
@attrs.frozen
class Armed:
    nonce: str


@event_type("cluster_faults.Rang")
@attrs.frozen
class Rang:
    nonce: str


@attrs.define
class Alarm(Entity):
    """Durable timers: each ``arm`` schedules one ``ring`` (a timer keyed by its nonce);
    ``ring`` emits whatever it is given, so a timer fired twice shows as two events."""

    armed: int = 0

    @on_signal
    def arm(self, nonce: str, millis: int) -> None:
        self.emit(Armed(nonce))
        self.schedule(Alarm.ring, nonce, after=dt.timedelta(milliseconds=millis), key=nonce)

    @on_signal
    def ring(self, nonce: str) -> None:
        self.emit(Rang(nonce))

    @applies
    def _armed(self, e: Armed) -> None:
        self.armed += 1

    @applies
    def _rang(self, e: Rang) -> None:
        self.armed -= 1


@event_type("cluster_faults.GateOpened")
@attrs.frozen
class GateOpened:
    wait_ms: int


@event_type("cluster_faults.GateApproved")
@attrs.frozen
class GateApproved:
    pass


@event_type("cluster_faults.GateClosed")
@attrs.frozen
class GateClosed:
    outcome: str


@attrs.define
class Gate(Entity):
    """A workflow parked on the world: open, wait for ``approve`` until a deadline (a
    durable timer), close with the outcome. Its log is the check: one opening, one
    closing, ``approved`` exactly when an approval came first."""

    approved: bool = False
    outcome: str | None = None

    @on_signal
    async def request(self, wait_ms: int) -> str:
        if self.outcome is not None:
            return self.outcome
        self.emit(GateOpened(wait_ms))
        try:
            ok = await self.wait_until(lambda: self.approved, timeout=dt.timedelta(milliseconds=wait_ms))
        except Cancelled:
            self.emit(GateClosed("cancelled"))  # kept with the outcome
            raise
        self.emit(GateClosed("approved" if ok else "timed out"))
        return "approved" if ok else "timed out"

    @on_signal
    def approve(self) -> None:
        if not self.approved and self.outcome is None:
            self.emit(GateApproved())

    @applies
    def _opened(self, e: GateOpened) -> None:
        pass

    @applies
    def _approved(self, e: GateApproved) -> None:
        self.approved = True

    @applies
    def _closed(self, e: GateClosed) -> None:
        self.outcome = e.outcome


NEST_CHILDREN = 2


@event_type("cluster_faults.Worked")
@attrs.frozen
class Worked:
    n: int


@event_type("cluster_faults.NestDone")
@attrs.frozen
class NestDone:
    total: int


@attrs.define
class Leaf(Entity):
    """A child workflow: a durable sleep, then one event; its result is ``n * n + 1``."""

    worked: int = 0

    @on_signal
    async def work(self, n: int, millis: int) -> int:
        await self.sleep(dt.timedelta(milliseconds=millis))
        self.emit(Worked(n))
        return n * n + 1

    @applies
    def _worked(self, e: Worked) -> None:
        self.worked += 1


@attrs.define
class Nest(Entity):
    """A parent workflow: starts its children (entities of their own, often on another
    member), awaits their results (checkpoints) and records the total once."""

    total: int | None = None

    @on_signal
    async def collect(self, millis: int) -> int:
        if self.total is not None:
            return self.total
        kids = [
            await self.ref(Leaf, f"{self.id}-{i}").start(Leaf.work, i, millis) for i in range(NEST_CHILDREN)
        ]
        total = 0
        for h in kids:
            total += await h.result()
        self.emit(NestDone(total))
        return total

    @applies
    def _done(self, e: NestDone) -> None:
        self.total = e.total


async def mint_token(job: str) -> str:
    """An activity whose every call returns another token: a re-run that called it
    again instead of reading its journaled result would show two tokens."""
    return f"{job}:{uuid.uuid4().hex}"


@event_type("cluster_faults.Minted")
@attrs.frozen
class Minted:
    token: str


@event_type("cluster_faults.Kept")
@attrs.frozen
class Kept:
    token: str


@attrs.define
class Job(Entity):
    """An activity, then a checkpoint, then the activity's result used again: the
    segment before the checkpoint records the token, the one after it too, and a
    re-run on another member must take the token from the journal."""

    token: str | None = None

    @on_signal
    async def mint(self, millis: int) -> str:
        if self.token is not None:
            return self.token
        token = await self.run(mint_token, self.id)
        self.emit(Minted(token))
        await self.sleep(dt.timedelta(milliseconds=millis))
        self.emit(Kept(token))
        return token

    @applies
    def _minted(self, e: Minted) -> None:
        self.token = e.token

    @applies
    def _kept(self, e: Kept) -> None:
        pass


ENTITIES: list[type[Entity]] = [Account, Transfer, Tally, Slow, Alarm, Gate, Leaf, Nest, Job]


def shared_store(location: str) -> Store:
    """The shared store at ``location``: a ``postgresql://`` DSN or a SQLite path."""
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresStore(location)
    return SqliteStore(location, shared=True)  # type: ignore[call-arg]


# ---------------------------------------------------------------- a member process


async def node(location: str, ttl: float, name: str, fence: bool) -> None:
    if os.environ.get("CLUSTER_FAULTS_DEBUG"):
        logging.basicConfig(format=f"{name} %(asctime)s %(message)s")
        logging.getLogger("actors").setLevel(logging.DEBUG)
    if os.environ.get("CLUSTER_FAULTS_DEBUG"):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _print_tasks, name)
    store = shared_store(location)
    if not fence:  # the negative control: nothing is ever fenced
        store.set_fence = lambda member_id, epochs: None  # type: ignore[attr-defined]
    stop = anyio.Event()
    async with ActorSystem(
        store, ENTITIES, lease_ttl=anyio_seconds(ttl), member_name=name, passivate_after=None
    ) as system:
        print("ready", system.member_id, flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:

                async def on_term() -> None:
                    async for _ in signals:
                        stop.set()
                        return

                tg.start_soon(on_term)
                await stop.wait()
                tg.cancel_scope.cancel()
    with contextlib.suppress(OSError):  # the parent may have stopped reading
        print("left", flush=True)


def _print_tasks(name: str) -> None:
    for task in asyncio.all_tasks():
        print(f"--- {name} task {task.get_name()}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


def anyio_seconds(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


# ---------------------------------------------------------------- the parent


class Proxy:
    """A TCP relay between one member and the database server that the run can cut.
    Cut, it forwards nothing either way but keeps every connection open and accepts
    new ones (a partition: no reset, the packets held); healed, it delivers what it
    held, late: a statement sent before the cut reaches the server after the
    member's shards have moved."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._open = anyio.Event()
        self._open.set()

    def cut(self) -> None:
        self._open = anyio.Event()

    def heal(self) -> None:
        self._open.set()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started()
            await listener.serve(self._relay)

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", self.target_port)
            except OSError:
                return
            async with upstream, anyio.create_task_group() as tg:
                tg.start_soon(self._pump, client, upstream, tg.cancel_scope)
                tg.start_soon(self._pump, upstream, client, tg.cancel_scope)

    async def _pump(
        self, src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream, scope: anyio.CancelScope
    ) -> None:
        try:
            async for data in src:
                await self._open.wait()  # the current one: a cut replaces it
                await dst.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            scope.cancel()  # one side ended: so does the other

    def dsn(self, dsn: str) -> str:
        """``dsn`` with this relay's port."""
        parts = urllib.parse.urlsplit(dsn)
        netloc = f"{parts.username}@127.0.0.1:{self.port}" if parts.username else f"127.0.0.1:{self.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@attrs.define
class Node:
    """A member process the parent runs and hurts."""

    index: int
    location: str
    ttl: float
    fence: bool
    proxy: Proxy | None = None
    """Its relay to the database server (PostgreSQL runs with ``cut`` faults)."""
    proc: anyio.abc.Process | None = None
    stdout: BufferedByteReceiveStream | None = None
    stopped: bool = False

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    async def start(self) -> None:
        cmd = [sys.executable, "-m", "bench.cluster_faults", "--node", self.location, "--ttl", str(self.ttl)]
        cmd += ["--name", self.name] + ([] if self.fence else ["--no-fence"])
        self.proc = await anyio.open_process(cmd, cwd=ROOT, stderr=None)
        assert self.proc.stdout is not None
        self.stdout = BufferedByteReceiveStream(self.proc.stdout)
        with anyio.fail_after(60):
            while True:
                line = (await self.stdout.receive_until(b"\n", 1 << 16)).decode()
                if line.startswith("ready"):
                    return

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.stopped = sig == signal.SIGSTOP

    async def wait_exit(self, deadline: float = 30.0) -> int | None:
        assert self.proc is not None
        with anyio.fail_after(deadline):
            return await self.proc.wait()

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.stopped:
            self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            await self.wait_exit(30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@attrs.define
class Report:
    """What a run did and found."""

    store: str
    fence: bool
    faults: dict[str, list[float]] = attrs.field(factory=dict)
    """Fault kind -> failover seconds of each."""
    transfers: int = 0
    completed: int = 0
    refused: int = 0
    refunded: int = 0
    """Transfers debited, refused at the credit and refunded by the saga's compensation."""
    nonces: int = 0
    alarms: int = 0
    gates: int = 0
    gates_approved: int = 0
    gates_cancelled: int = 0
    nests: int = 0
    jobs: int = 0
    cancels: int = 0
    unacked_calls: int = 0
    pending_at_check: int = 0
    """Accepted signals still in the inbox once every acknowledged call had finished
    (calls the client saw fail that were accepted all the same, and their legs): the
    balance checks wait for them."""
    violations: list[str] = attrs.field(factory=list)
    elapsed: float = 0.0

    def summary(self) -> str:
        parts = []
        for kind, times in sorted(self.faults.items()):
            if times:
                med, top = statistics.median(times), max(times)
                parts.append(f"{kind}={len(times)} (failover median {med:.2f}s max {top:.2f}s)")
        state = "OK" if not self.violations else f"VIOLATIONS={len(self.violations)}"
        return (
            f"cluster-faults: store={self.store} fence={'on' if self.fence else 'off'} "
            f"faults={sum(len(t) for t in self.faults.values())} {' '.join(parts)} "
            f"transfers={self.transfers} completed={self.completed} refused={self.refused} "
            f"refunded={self.refunded} "
            f"nonces={self.nonces} alarms={self.alarms} gates={self.gates} "
            f"(approved {self.gates_approved}, cancelled {self.gates_cancelled}) "
            f"nests={self.nests} jobs={self.jobs} cancels={self.cancels} "
            f"unacked={self.unacked_calls} pending={self.pending_at_check} "
            f"elapsed={self.elapsed:.1f}s "
            f"violations={len(self.violations)} {state}"
        )


async def live_owners(client: ActorSystem, ttl: float) -> dict[int, str]:
    """shard -> name of its owner, counting only members alive by their lease."""
    out: dict[int, str] = {}
    for m in await client.members():
        if m.status == "alive" and m.seen_ago <= ttl:
            for s in m.shards:
                out[s] = m.name
    return out


async def until(check: Callable[[], Awaitable[bool]], what: str, deadline: float) -> float:
    """Poll ``check`` every 20 ms; seconds it took, or TimeoutError naming ``what``."""
    t0 = time.monotonic()
    with anyio.move_on_after(deadline):
        while not await check():  # noqa: ASYNC110 - polls what other processes did
            await anyio.sleep(0.02)
        return time.monotonic() - t0
    raise TimeoutError(f"not within {deadline:g}s: {what}")


async def covered(client: ActorSystem, ttl: float, count: int, without: str | None = None) -> bool:
    owners = await live_owners(client, ttl)
    return len(owners) == count and (without is None or without not in owners.values())


async def describe(client: ActorSystem) -> str:
    """Who owns how many shards, for a report of a failover that did not happen."""
    rows = [
        f"{m.name}:{m.member_id[:8]}:{m.status}:seen {m.seen_ago:.1f}s:{len(m.shards)} shards"
        for m in await client.members()
        if m.serves and (m.status == "alive" or m.shards)
    ]
    return "; ".join(rows)


async def run(
    location: str,
    *,
    members: int = 3,
    faults: int = 10,
    ttl: float = 2.0,
    seed: int = 1,
    fence: bool = True,
    kinds: tuple[str, ...] = ("kill", "stop", "term"),
    db: EmbeddedPostgres | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """Run the load and ``faults`` faults; return what the checks found."""
    rng = random.Random(seed)
    report = Report("postgres" if location.startswith("postgres") else "sqlite", fence)
    started = time.monotonic()
    nodes = [Node(i, location, ttl, fence) for i in range(members)]
    async with anyio.create_task_group() as relays:
        if "cut" in kinds:  # each member reaches the server through a relay of its own
            port = urllib.parse.urlsplit(location).port
            assert port is not None, "cut faults need a PostgreSQL DSN with a port"
            for n in nodes:
                n.proxy = Proxy(port)
                await relays.start(n.proxy.serve)
                n.location = n.proxy.dsn(location)
        try:
            await _run_nodes(location, nodes, report, faults, ttl, rng, fence, kinds, db, log)
        finally:
            relays.cancel_scope.cancel()
    report.elapsed = time.monotonic() - started
    return report


async def _run_nodes(
    location: str,
    nodes: list[Node],
    report: Report,
    faults: int,
    ttl: float,
    rng: random.Random,
    fence: bool,
    kinds: tuple[str, ...],
    db: EmbeddedPostgres | None,
    log: Callable[[str], None],
) -> None:
    try:
        for n in nodes:
            await n.start()
        async with ActorSystem(
            shared_store(location), ENTITIES, serve=False, lease_ttl=anyio_seconds(ttl)
        ) as client:
            count = client._kernel.shards.count
            await until(lambda: covered(client, ttl, count), "every shard has an owner", 60)
            for a in ACCOUNTS:
                await client.ref(Account, a).options(key=f"open-{a}").ask(Account.open, a)
                await client.ref(Account, a).options(key=f"fund-{a}").ask(Account.deposit, OPENING)
            state = _Load(client, rng)
            async with anyio.create_task_group() as tg:
                tg.start_soon(state.send_transfers)
                tg.start_soon(state.tallies)
                tg.start_soon(state.slow_tallies)
                tg.start_soon(state.alarms)
                tg.start_soon(state.gates)
                tg.start_soon(state.nests)
                tg.start_soon(state.jobs)
                for i in range(faults):
                    kind = rng.choice(kinds)
                    try:
                        took = await _fault(kind, nodes, client, ttl, count, rng, db, state.note_slow)
                    except _StalledWrite as stalled:
                        kind, took = "stop-in-write", stalled.took
                    except TimeoutError as e:
                        if not fence:  # the control: unfenced members may wedge; check what they did
                            report.violations.append(f"no failover within 60 s at fault {i + 1} ({kind})")
                            break
                        if os.environ.get("CLUSTER_FAULTS_DEBUG"):
                            await _dump_stacks(nodes)
                        raise TimeoutError(
                            f"{e} (fault {i + 1}, {kind}); members: {await describe(client)}"
                        ) from e
                    report.faults.setdefault(kind, []).append(took)
                    log(f"{time.strftime('%H:%M:%S')} fault {i + 1}/{faults}: {kind} failover {took:.2f}s")
                    await anyio.sleep(rng.uniform(0.2, 0.8))
                tg.cancel_scope.cancel()
            await _settle(client, state, report, ttl, count)
    finally:
        for n in nodes:
            with contextlib.suppress(Exception):
                await n.close()


class _Load:
    """The client's calls, and which of them were acknowledged."""

    def __init__(self, client: ActorSystem, rng: random.Random) -> None:
        self.client = client
        self.rng = random.Random(rng.random())
        self.transfers: dict[str, tuple[str, str, int]] = {}
        self.handles: dict[str, str] = {}
        self.nonces: dict[str, str] = {}
        """Acknowledged nonce -> the entity it was told to."""
        self.arms: dict[str, str] = {}
        """Acknowledged alarm nonce -> the alarm it was told to."""
        self.gate_handles: dict[str, str] = {}
        self.nest_handles: dict[str, str] = {}
        self.job_handles: dict[str, str] = {}
        self.cancels: set[str] = set()
        """Gates whose cancellation the client asked for (acknowledged or not)."""
        """Acknowledged parent workflow -> its handle's id."""
        """Acknowledged gate -> its handle's id."""
        self.unacked = 0
        self.slow_extra = 0

    async def send_transfers(self) -> None:
        n = 0
        while True:
            n += 1
            tid = f"t{n}"
            src, dst = self.rng.sample(ACCOUNTS, 2)
            if self.rng.random() < 0.1:
                dst = self.rng.choice(GHOSTS)
            amount = self.rng.randint(1, 20)
            try:
                h = (
                    await self.client.ref(Transfer, tid)
                    .options(key=tid)
                    .start(Transfer.start, src, dst, amount)
                )
            except ActorsError:
                self.unacked += 1
                await anyio.sleep(0.05)
                continue
            self.transfers[tid] = (src, dst, amount)
            self.handles[tid] = h.id
            await anyio.sleep(0.04)  # about 25 sagas a second: busy, not overloaded

    async def _tell(self, kind: type[Entity], names: tuple[str, ...], prefix: str, pause: float) -> None:
        n = 0
        while True:
            n += 1
            nonce = f"{prefix}{n}"
            target = self.rng.choice(names)
            try:
                await self.client.ref(kind, target).tell(kind.note, nonce)  # type: ignore[attr-defined]
            except ActorsError:
                self.unacked += 1
                await anyio.sleep(0.05)
                continue
            self.nonces[nonce] = target
            await anyio.sleep(pause)

    async def note_slow(self, name: str) -> bool:
        """Tell a slow entity one more nonce now; whether it was acknowledged."""
        self.slow_extra += 1
        nonce = f"x{self.slow_extra}"
        try:
            await self.client.ref(Slow, name).tell(Slow.note, nonce)
        except ActorsError:
            self.unacked += 1
            return False
        self.nonces[nonce] = name
        return True

    async def alarms(self) -> None:
        n = 0
        while True:
            n += 1
            nonce, target = f"a{n}", self.rng.choice(ALARMS)
            try:
                await self.client.ref(Alarm, target).tell(Alarm.arm, nonce, self.rng.randint(50, 2500))
            except ActorsError:
                self.unacked += 1
                await anyio.sleep(0.05)
                continue
            self.arms[nonce] = target
            await anyio.sleep(0.05)

    async def gates(self) -> None:
        async with anyio.create_task_group() as tg:

            def start(gid: str) -> Awaitable[Any]:
                return (
                    self.client.ref(Gate, gid)
                    .options(key=gid)
                    .start(Gate.request, self.rng.randint(300, 3000))
                )

            def approve_maybe(gid: str) -> None:
                roll = self.rng.random()
                if roll < 0.5:
                    tg.start_soon(self._approve, gid, self.rng.uniform(0.0, 3.0))
                elif roll < 0.7:
                    tg.start_soon(self._cancel, gid, self.rng.uniform(0.0, 3.0))

            await self._start_each("g", start, self.gate_handles, 0.1, approve_maybe)

    async def nests(self) -> None:
        def start(nid: str) -> Awaitable[Any]:
            return self.client.ref(Nest, nid).options(key=nid).start(Nest.collect, self.rng.randint(50, 800))

        await self._start_each("p", start, self.nest_handles, 0.2)

    async def jobs(self) -> None:
        def start(jid: str) -> Awaitable[Any]:
            return self.client.ref(Job, jid).options(key=jid).start(Job.mint, self.rng.randint(50, 1500))

        await self._start_each("j", start, self.job_handles, 0.2)

    async def _cancel(self, gid: str, delay: float) -> None:
        await anyio.sleep(delay)
        self.cancels.add(gid)  # before the call: a cancel the client saw fail may be recorded
        with contextlib.suppress(ActorsError):
            await self.client.handle(self.gate_handles[gid]).cancel("the harness")

    async def _start_each(
        self,
        prefix: str,
        start: Callable[[str], Awaitable[Any]],
        handles: dict[str, str],
        pause: float,
        then: Callable[[str], None] | None = None,
    ) -> None:
        """Start keyed workflows ``prefix1``, ``prefix2``... one after another, keeping
        each acknowledged one's handle; a start that fails is counted, not retried."""
        n = 0
        while True:
            n += 1
            wid = f"{prefix}{n}"
            try:
                h = await start(wid)
            except ActorsError:
                self.unacked += 1
                await anyio.sleep(0.05)
                continue
            handles[wid] = h.id
            if then is not None:
                then(wid)
            await anyio.sleep(pause)

    async def _approve(self, gid: str, delay: float) -> None:
        await anyio.sleep(delay)
        try:  # keyed: a repeat is answered once; an approval after the deadline changes nothing
            await self.client.ref(Gate, gid).options(key=f"{gid}/approve").tell(Gate.approve)
        except ActorsError:
            self.unacked += 1

    async def tallies(self) -> None:
        await self._tell(Tally, TALLIES, "n", 0.01)

    async def slow_tallies(self) -> None:
        await self._tell(Slow, SLOWS, "s", 1.0)  # 0.3 s of a member per second: busy, not swamped


async def _owner_of(client: ActorSystem, ttl: float, entity: type[Entity], entity_id: str) -> str | None:
    shard = client._kernel.shards.shard(entity.__name__, entity_id)
    return (await live_owners(client, ttl)).get(shard)


async def _fault(
    kind: str,
    nodes: list[Node],
    client: ActorSystem,
    ttl: float,
    count: int,
    rng: random.Random,
    db: EmbeddedPostgres | None,
    note_slow: Callable[[str], Awaitable[bool]],
) -> float:
    """Inflict one fault; return seconds until every shard has a live owner again."""
    if kind == "db":
        assert db is not None
        t0 = time.monotonic()
        await anyio.to_thread.run_sync(lambda: db.stop(keep_data=True))
        await anyio.to_thread.run_sync(db.start)
        await until(lambda: _quiet(client, ttl, count), "members back after the restart", 60)
        return time.monotonic() - t0
    if kind == "dbstall":  # the server frozen past the lease (a stalled disk, a VM paused)
        assert db is not None
        pids = _server_pids(db)
        t0 = time.monotonic()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        try:
            await anyio.sleep(ttl * 1.5)
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        await until(lambda: _quiet(client, ttl, count), "members back after the stall", 60)
        return time.monotonic() - t0
    if kind == "cut":  # a member cut off from the database (not from its work), past its lease
        victim = rng.choice(nodes)
        if victim.proxy is None:
            raise ValueError("cut faults need the members' relays (PostgreSQL)")
        t0 = time.monotonic()
        victim.proxy.cut()
        try:
            await until(lambda: covered(client, ttl, count, victim.name), f"{victim.name}'s shards taken", 60)
            return time.monotonic() - t0
        finally:
            victim.proxy.heal()  # at once: what it sent meanwhile reaches the server late
    if kind == "stop":  # the owner of a tally: nearly always mid-handler, with more queued
        # the owner of a slow entity, stopped in the middle of its handler: a signal
        # just told to it takes 0.3 s of its member once picked up
        name = rng.choice(SLOWS)
        owner = await _owner_of(client, ttl, Slow, name)
        victim = next((n for n in nodes if n.name == owner), rng.choice(nodes))
        if owner is not None and await note_slow(name):
            await anyio.sleep(0.15)
    else:
        victim = rng.choice(nodes)
    t0 = time.monotonic()
    if kind == "kill":
        victim.send(signal.SIGKILL)
        await victim.wait_exit()
        await until(lambda: covered(client, ttl, count, victim.name), f"{victim.name}'s shards taken", 60)
        took = time.monotonic() - t0
        await victim.start()
        return took
    if kind == "term":
        victim.send(signal.SIGTERM)
        await victim.wait_exit()
        await until(lambda: covered(client, ttl, count, victim.name), f"{victim.name}'s shards taken", 60)
        took = time.monotonic() - t0
        await victim.start()
        return took
    if kind == "stop":
        victim.send(signal.SIGSTOP)
        sqlite = not victim.location.startswith(("postgresql://", "postgres://"))
        locked = False

        async def taken() -> bool:
            nonlocal locked
            if await covered(client, ttl, count, victim.name):
                return True
            locked = sqlite and await _writes_stalled(client, ttl, victim.name)
            return locked

        await until(taken, f"{victim.name}'s shards taken", 60)
        if locked:
            # SQLite: the victim stopped inside a write transaction and holds the database's
            # write lock (no server can end it): nobody writes, heartbeats included, until it
            # resumes. Resume it; the members then sort out who is alive and who owns what
            # (its transaction began under its fence, and nobody could claim its shards since).
            victim.send(signal.SIGCONT)
            await until(lambda: _quiet(client, ttl, count), "members back after the stalled write", 60)
            raise _StalledWrite(time.monotonic() - t0)
        took = time.monotonic() - t0
        victim.send(signal.SIGCONT)  # at once: its handler ends right after the takeover
        return took
    raise ValueError(f"unknown fault {kind!r}")


def _server_pids(db: EmbeddedPostgres) -> list[int]:
    """The embedded server's processes: its postmaster (first line of
    ``postmaster.pid``) and every process whose parent it is (backends, writers)."""
    assert db.data_dir is not None
    main = int((db.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    pids = [main]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == main:  # the field after the state is the parent's pid
                pids.append(int(stat.parent.name))
    return pids


async def _dump_stacks(nodes: list[Node]) -> None:
    """Make every running member print its asyncio tasks' stacks (SIGUSR1, see
    :func:`node`), for a failover that did not happen."""
    for n in nodes:
        if n.proc is not None and n.proc.returncode is None and not n.stopped:
            n.send(signal.SIGUSR1)
    await anyio.sleep(1)  # let them print before the run stops them


class _StalledWrite(Exception):
    """A stop fault on SQLite that caught its victim holding the write lock."""

    def __init__(self, took: float) -> None:
        super().__init__(f"the victim held the write lock; members back after {took:.2f}s")
        self.took = took


async def _writes_stalled(client: ActorSystem, ttl: float, victim: str) -> bool:
    """Whether no member but ``victim`` has heartbeated for two leases (the victim holds
    SQLite's write lock)."""
    others = [m for m in await client.members() if m.serves and m.status == "alive" and m.name != victim]
    return bool(others) and all(m.seen_ago > 2 * ttl for m in others)


async def _quiet(client: ActorSystem, ttl: float, count: int) -> bool:
    try:
        return await covered(client, ttl, count)
    except ActorsError:
        return False


async def _settle(client: ActorSystem, load: _Load, report: Report, ttl: float, count: int) -> None:
    """Wait for everything acknowledged to finish, then check the store."""
    try:
        await until(lambda: _quiet(client, ttl, count), "every shard owned after the faults", 60)
    except TimeoutError:
        if report.fence:
            raise
        report.violations.append("shards left without an owner after the faults")  # the control may wedge
    v = report.violations
    report.transfers = len(load.transfers)
    report.unacked_calls = load.unacked
    report.nonces = len(load.nonces)
    deadline = time.monotonic() + (60 if report.fence else 15)  # for all: a wedged run must end too
    for tid, hid in load.handles.items():
        try:
            view = await client.handle(hid).result(timeout=max(deadline - time.monotonic(), 0.05))
        except ActorsError as e:
            v.append(f"transfer {tid} acknowledged but not finished: {e!r}")
            continue
        status = view["status"] if isinstance(view, dict) else getattr(view, "status", None)
        if status == "completed":
            report.completed += 1
        else:
            report.refused += 1

    report.alarms = len(load.arms)
    report.gates = len(load.gate_handles)
    report.jobs = len(load.job_handles)
    report.cancels = len(load.cancels)
    report.nests = len(load.nest_handles)
    answers = await _results(client, load.gate_handles, "gate", deadline, v)
    job_answers = await _results(client, load.job_handles, "job", deadline, v)
    nest_answers = await _results(client, load.nest_handles, "parent workflow", deadline, v)

    async def all_noted() -> bool:
        noted = await _noted(client.store)
        _armed, rang = await _alarms(client.store)
        return all(noted[n] >= 1 for n in load.nonces) and all(rang[n] >= 1 for n in load.arms)

    with contextlib.suppress(TimeoutError):  # the checks below name what is missing
        await until(all_noted, "every acknowledged nonce applied", max(deadline - time.monotonic(), 5))

    async def inbox_empty() -> bool:
        return not await client.store.read_inbox(after=0, limit=1)

    report.pending_at_check = len(await client.store.read_inbox(after=0, limit=10_000))

    # A call the client saw fail may have been accepted all the same (its commit's answer
    # was lost: CommitUnknown, a timeout): such a transfer runs unwatched, maybe after a
    # retry's backoff, and a balance read while its credit is still in the inbox differs
    # from the log read just after. Every accepted signal is processed first (the
    # inbox check below names what stayed).
    with contextlib.suppress(TimeoutError):
        await until(inbox_empty, "every accepted signal processed", max(deadline - time.monotonic(), 5))
    noted = await _noted(client.store)
    for nonce, target in load.nonces.items():
        if noted[nonce] == 0:
            v.append(f"nonce {nonce} acknowledged (to {target}) but never applied")
    v.extend(applied_twice(noted))
    armed, rang = await _alarms(client.store)
    v.extend(alarm_violations(load.arms, armed, rang))
    for gid in load.gate_handles:
        events = await client.store.read_events("Gate", gid, after=0, limit=1_000)
        _check_seqs(v, "Gate", gid, events)
        kinds = [e.type_name.rsplit(".", 1)[-1] for e in events]
        v.extend(gate_violations(gid, kinds, events, answers.get(gid), gid in load.cancels))
        if answers.get(gid) == "approved":
            report.gates_approved += 1
        elif answers.get(gid) == "cancelled":
            report.gates_cancelled += 1
    total = 0
    moves: dict[str, list[tuple[str, str]]] = {}
    legs: dict[str, list[tuple[str, str, int]]] = collections.defaultdict(list)
    for a in ACCOUNTS:
        answered = await client.ref(Account, a).query(Account.get_balance)
        total += answered
        events = await client.store.read_events("Account", a, after=0, limit=1_000_000)
        _check_seqs(v, "Account", a, events)
        moves[a] = []
        from_log = 0
        for e in events:
            kind = e.type_name.rsplit(".", 1)[-1]
            if kind in ("Withdrawn", "Deposited"):
                data = json.loads(e.data)
                from_log += data["amount"] if kind == "Deposited" else -data["amount"]
                ref = data.get("reference", "")
                if ref.startswith("transfer "):
                    moves[a].append((kind, ref))
                    legs[ref.split()[1]].append(
                        (kind if not ref.endswith("reversed") else "Refunded", a, data["amount"])
                    )
        if from_log != answered:
            v.append(f"{a}: balance {answered} differs from its log's {from_log} (a bad snapshot?)")
            v.extend(await _snapshot_report(client.store, a, events))
        for (kind, ref), n in collections.Counter(moves[a]).items():
            if n > 1:
                v.append(f"{a}: {kind} {ref!r} applied {n} times")
    for tid, parts in legs.items():
        kinds = sorted(k for k, _a, _n in parts)
        if kinds not in (["Deposited", "Withdrawn"], ["Refunded", "Withdrawn"], ["Withdrawn"]):
            v.append(f"transfer {tid}: legs {parts} do not balance")
        elif tid in load.transfers:
            src, dst, amount = load.transfers[tid]
            if kinds == ["Deposited", "Withdrawn"] and sorted(parts) != sorted(
                [("Withdrawn", src, amount), ("Deposited", dst, amount)]
            ):
                v.append(f"transfer {tid}: legs {parts} are not {amount} from {src} to {dst}")
    for ghost in GHOSTS:
        landed = await client.store.read_events("Account", ghost, after=0, limit=10)
        if landed:
            v.append(f"{ghost} was never opened but has {len(landed)} events")
    refunded = sum(
        1 for parts in legs.values() if sorted(k for k, _a, _n in parts) == ["Refunded", "Withdrawn"]
    )
    to_ghosts = [t for t, (_s, d, _n) in load.transfers.items() if d in GHOSTS and t in legs]
    report.refunded = refunded
    for tid in to_ghosts:
        if sorted(k for k, _a, _n in legs[tid]) != ["Refunded", "Withdrawn"]:
            v.append(f"transfer {tid} to a ghost account: legs {legs[tid]}, not a debit and its refund")
    if total != OPENING * len(ACCOUNTS):
        v.append(f"money not conserved: {total} != {OPENING * len(ACCOUNTS)}")
    for nid in load.nest_handles:
        v.extend(await nest_violations(client.store, nid, nest_answers.get(nid)))
    for jid in load.job_handles:
        v.extend(await job_violations(client.store, jid, job_answers.get(jid)))
    for name in (*TALLIES, *SLOWS, *ALARMS):
        et = "Slow" if name in SLOWS else "Alarm" if name in ALARMS else "Tally"
        _check_seqs(v, et, name, await client.store.read_events(et, name, after=0, limit=1_000_000))
    pending = await client.store.read_inbox(after=0, limit=10)
    if pending:
        v.append(f"{len(pending)}+ signals left in the inbox, e.g. {pending[0].signal.handler}")
    timers = await client.store.read_timers(limit=10)
    if timers:
        t = timers[0]
        v.append(f"{len(timers)}+ timers left, e.g. {t.entity_type}/{t.entity_id} {t.key}")
    dead = await client.store.read_dead_letters(limit=10)
    if dead:
        v.append(f"{len(dead)} dead letters, e.g. {dead[0].error[:120]}")


async def _snapshot_report(store: Store, account: str, events: list[Any]) -> list[str]:
    """What each stored snapshot of ``account`` holds against the log folded up to its seq
    (balance, entries, the references of its last entries), so that a balance read that
    differs from the log names the snapshot, and the events it misses or has twice."""
    out = []
    for snap in await store.read_snapshots("Account", account):
        state = json.loads(snap.state)
        balance, refs = 0, []
        for e in events[: snap.seq]:
            kind = e.type_name.rsplit(".", 1)[-1]
            data = json.loads(e.data)
            if kind in ("Deposited", "Withdrawn"):
                balance += data["amount"] if kind == "Deposited" else -data["amount"]
            if kind in ("Deposited", "Withdrawn", "AccountOpened"):
                refs.append(f"{e.seq}:{kind[0]}{data.get('amount', '')} {data.get('reference', 'open')}")
        held = [str(r.get("reference", "")) for r in state.get("recent", [])]
        logged = [r.split(" ", 1)[1] for r in refs[-len(held) :]] if held else []
        out.append(
            f"  {account} snapshot at seq {snap.seq}: balance {state.get('balance')} entries "
            f"{state.get('entries')}; the log to seq {snap.seq}: balance {balance} entries {len(refs)}"
            + ("" if held == logged else f"; its last entries {held[-6:]} against the log's {refs[-6:]}")
        )
    return out


def applied_twice(noted: collections.Counter[str]) -> list[str]:
    """A violation for each nonce whose event is in the tallies' logs more than once."""
    return [f"nonce {nonce} applied {n} times" for nonce, n in sorted(noted.items()) if n > 1]


async def _results(
    client: ActorSystem, handles: dict[str, str], what: str, deadline: float, v: list[str]
) -> dict[str, object]:
    """Each acknowledged workflow's answer (``"cancelled"`` for one that raised
    ``Cancelled``); one not finished by ``deadline`` is a violation."""
    out: dict[str, object] = {}
    for wid, hid in handles.items():
        try:
            out[wid] = await client.handle(hid).result(timeout=max(deadline - time.monotonic(), 0.05))
        except Cancelled:
            out[wid] = "cancelled"
        except ActorsError as e:
            v.append(f"{what} {wid} acknowledged but not finished: {e!r}")
    return out


def alarm_violations(
    acked: dict[str, str], armed: collections.Counter[str], rang: collections.Counter[str]
) -> list[str]:
    """A violation for each acknowledged alarm not armed once and rung once, and each
    alarm armed or rung twice or rung without being armed."""
    out = []
    for nonce in sorted(set(acked) | set(armed) | set(rang)):
        a, r = armed[nonce], rang[nonce]
        if (nonce in acked and (a, r) != (1, 1)) or a > 1 or r > a:
            where = f" (to {acked[nonce]})" if nonce in acked else ""
            out.append(f"alarm {nonce}{where} armed {a} times, rang {r} times")
    return out


def gate_violations(
    gid: str, kinds: list[str], events: list[Any], answer: object, cancel_sent: bool
) -> list[str]:
    """What is wrong with one acknowledged gate's log (``kinds``, the short event type
    names in order) and its handle's answer (``cancelled`` only if a cancel was sent;
    a cancel wins over an approval committed after it)."""
    count = collections.Counter(kinds)
    if count["GateOpened"] != 1 or count["GateClosed"] != 1 or count["GateApproved"] > 1:
        return [f"gate {gid}: log {kinds} is not one opening, one closing, at most one approval"]
    closed = kinds.index("GateClosed")
    outcome = json.loads(events[closed].data)["outcome"]
    first = "approved" if "GateApproved" in kinds[:closed] else "timed out"
    out = []
    if outcome == "cancelled":
        if not cancel_sent:
            out.append(f"gate {gid}: closed 'cancelled' though no cancel was sent")
    elif outcome != first:
        out.append(f"gate {gid}: closed {outcome!r} with log {kinds}")
    if answer is not None and answer != outcome:
        out.append(f"gate {gid}: its handle answered {answer!r}, its log says {outcome!r}")
    return out


async def nest_violations(store: Store, nid: str, answer: object) -> list[str]:
    """What is wrong with one acknowledged parent workflow: its total recorded once and
    equal to its children's results, each child's work done once, its handle's answer
    the same total."""
    out: list[str] = []
    expected = sum(i * i + 1 for i in range(NEST_CHILDREN))
    events = await store.read_events("Nest", nid, after=0, limit=100)
    _check_seqs(out, "Nest", nid, events)
    totals = [json.loads(e.data)["total"] for e in events]
    if totals != [expected]:
        out.append(f"parent workflow {nid}: totals {totals} recorded, not [{expected}]")
    if answer is not None and answer != expected:
        out.append(f"parent workflow {nid}: its handle answered {answer!r}, not {expected}")
    for i in range(NEST_CHILDREN):
        kid = await store.read_events("Leaf", f"{nid}-{i}", after=0, limit=100)
        _check_seqs(out, "Leaf", f"{nid}-{i}", kid)
        if len(kid) != 1:
            out.append(f"child {nid}-{i} worked {len(kid)} times")
    return out


async def job_violations(store: Store, jid: str, answer: object) -> list[str]:
    """What is wrong with one acknowledged job: its token recorded once before its
    checkpoint and once after, the same both times and the same as its handle's answer
    (an activity called again on a re-run would give another token)."""
    out: list[str] = []
    events = await store.read_events("Job", jid, after=0, limit=100)
    _check_seqs(out, "Job", jid, events)
    got = [(e.type_name.rsplit(".", 1)[-1], json.loads(e.data)["token"]) for e in events]
    kinds = [k for k, _t in got]
    tokens = {t for _k, t in got}
    if kinds != ["Minted", "Kept"] or len(tokens) != 1:
        out.append(f"job {jid}: log {got} is not one token minted and kept")
    elif answer is not None and answer not in tokens:
        out.append(f"job {jid}: its handle answered {answer!r}, its log holds {tokens}")
    return out


async def _alarms(store: Store) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Nonce -> times armed, and times rung, read from the alarms' logs."""
    armed: collections.Counter[str] = collections.Counter()
    rang: collections.Counter[str] = collections.Counter()
    for name in ALARMS:
        for e in await store.read_events("Alarm", name, after=0, limit=1_000_000):
            kind = e.type_name.rsplit(".", 1)[-1]
            (armed if kind == "Armed" else rang)[json.loads(e.data)["nonce"]] += 1
    return armed, rang


def _check_seqs(v: list[str], et: str, eid: str, events: list[Any]) -> None:
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(seqs) + 1)):
        v.append(f"{et}/{eid}: log seqs are not 1..{len(seqs)}")


async def _noted(store: Store) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for et, names in (("Tally", TALLIES), ("Slow", SLOWS)):
        for name in names:
            for e in await store.read_events(et, name, after=0, limit=1_000_000):
                out[json.loads(e.data)["nonce"]] += 1
    return out


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--node", help=argparse.SUPPRESS)
    p.add_argument("--name", default="node", help=argparse.SUPPRESS)
    p.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument("--dsn", default=os.environ.get("ACTORS_POSTGRES_DSN"))
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--faults", type=int, default=20)
    p.add_argument("--ttl", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-fence", action="store_true")
    p.add_argument("--kinds", default="")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if a.node:
        anyio.run(node, a.node, a.ttl, a.name, not a.no_fence)
        return 0
    kinds = tuple(k for k in a.kinds.split(",") if k) or (
        ("kill", "stop", "term", "db", "dbstall", "cut")
        if a.store == "postgres" and not a.dsn
        else ("kill", "stop", "term")
    )
    with contextlib.ExitStack() as stack:
        server = None
        if a.store == "postgres":
            if a.dsn:
                location = a.dsn
            else:
                server = stack.enter_context(EmbeddedPostgres())
                location = server.dsn()
        else:
            location = str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "bank.db")
        report = anyio.run(
            lambda: run(
                location,
                members=a.members,
                faults=a.faults,
                ttl=a.ttl,
                seed=a.seed,
                fence=not a.no_fence,
                kinds=kinds,
                db=server,
            )
        )
    for line in report.violations[:30]:
        print("violation:", line)
    print(report.summary())
    if a.json:
        a.json.write_text(json.dumps(attrs.asdict(report), indent=2))
    return 0 if not report.violations else 1


if __name__ == "__main__":
    from bench.cluster_faults import main as _main  # the module, not a second __main__ copy

    raise SystemExit(_main())
