"""Crash torture: a bank under SIGKILL, restarted again and again on one SQLite file.

``python -m bench.torture --kills N [--seed S] [--db PATH]``

The parent sets up accounts in a fresh database, then runs N generations of a
child process (``python -m bench.torture --child ...``). Each child opens the
system on the same database (recovery resumes whatever was pending: it re-sends
nothing itself), reports ``ready``, then tells new transfers (idempotency key =
transfer id) from a few concurrent senders, appending each transfer id to an
append-only ack file (write + fsync) only after its ``tell`` returned. The
parent kills it with SIGKILL after a random (seeded) delay. After the last kill
a final clean generation, in the parent, waits until everything has settled
(every transfer finished and audited, inbox, outbox and journal empty, the
recurring ticker still ticking), then the database is checked with plain
sqlite3:

- money is conserved and no balance ever went negative (running balance per
  account over its event log; the entities' own answers agree with the log);
- every acknowledged transfer was applied exactly once: completed (one debit,
  one credit), compensated (one debit, one refund) or refused (nothing moved);
  no transfer, acknowledged or not, was applied twice or left half-done;
- every finished transfer was booked in a ledger exactly once (an outbox tell);
- every audit timer fired exactly once, no timer fired after it was cancelled,
  no recurring tick fired twice and the recurring timer survived; no dead letters.

The transfers also run a flaky activity (retried, journaled) and one in ten
crashes once per process mid-saga (the supervisor re-runs it from its journal);
one sender uses keyed asks, whose answers are checked against the log, and
senders now and then repeat a tell they sent before.

The exit code is 1 on any violation. The last line is a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import random
import signal as signals
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import attrs

from actors import ActorSystem, Entity, Rejected, RetryPolicy, applies, event_type, query, signal
from persistence import SqliteStore

INITIAL = 1_000
"""Each account's opening balance."""
NORMAL_ACCOUNTS = tuple(f"acct-{i}" for i in range(6))
FROZEN_ACCOUNTS = ("frozen-0", "frozen-1")
"""Frozen accounts pay out but refuse credits (they take refunds): transfers to them are compensated."""
ACCOUNTS = NORMAL_ACCOUNTS + FROZEN_ACCOUNTS
TICK = dt.timedelta(milliseconds=100)

# ---------------------------------------------------------------- entities


class AccountFrozen(Rejected):
    """The destination account refuses credits."""


class InsufficientFunds(Rejected):
    """No overdraft."""


@event_type("torture.opened")
@attrs.frozen
class Opened:
    initial: int
    frozen: bool


@event_type("torture.deposited")
@attrs.frozen
class Deposited:
    amount: int
    ref: str
    kind: str
    """``credit`` or ``refund``."""


@event_type("torture.withdrawn")
@attrs.frozen
class Withdrawn:
    amount: int
    ref: str


@attrs.define
class Account(Entity):
    entity_name = "TortureAccount"
    snapshot_every: ClassVar[int] = 7
    opened: bool = False
    frozen: bool = False
    balance: int = 0

    @signal
    def open(self, initial: int, frozen: bool) -> int:
        if not self.opened:
            self.emit(Opened(initial, frozen))
        return self.balance

    @signal
    def deposit(self, amount: int, ref: str, kind: str) -> int:
        if amount <= 0:
            raise Rejected("amount must be positive")
        if self.frozen and kind != "refund":
            raise AccountFrozen(f"{self.id} is frozen")
        self.emit(Deposited(amount, ref, kind))
        return self.balance

    @signal
    def withdraw(self, amount: int, ref: str) -> int:
        if amount <= 0:
            raise Rejected("amount must be positive")
        if amount > self.balance:
            raise InsufficientFunds(f"{self.id}: balance {self.balance} < {amount}")
        self.emit(Withdrawn(amount, ref))
        return self.balance

    @query
    def get_balance(self) -> int:
        return self.balance

    @applies
    def _opened(self, e: Opened) -> None:
        self.opened, self.frozen, self.balance = True, e.frozen, e.initial

    @applies
    def _deposited(self, e: Deposited) -> None:
        self.balance += e.amount

    @applies
    def _withdrawn(self, e: Withdrawn) -> None:
        self.balance -= e.amount


@event_type("torture.requested")
@attrs.frozen
class Requested:
    source: str
    destination: str
    amount: int


@event_type("torture.finished")
@attrs.frozen
class Finished:
    outcome: str
    """``completed``, ``compensated`` (debited, then refunded) or ``refused`` (nothing moved)."""


@event_type("torture.audited")
@attrs.frozen
class Audited:
    at: float


CRASHED: set[str] = set()
"""Transfers whose handler this process already crashed once on purpose."""


async def risk_check(transfer_id: str) -> str:
    """An activity on a flaky network: fails about a third of its calls (retried)."""
    await anyio.lowlevel.checkpoint()
    if random.random() < 0.3:
        raise ConnectionError(f"risk service unreachable for {transfer_id}")
    return "ok"


RISK_RETRY = RetryPolicy(initial_interval=dt.timedelta(milliseconds=5), maximum_attempts=40)


@event_type("torture.expired")
@attrs.frozen
class Expired:
    pass


EXPIRY = dt.timedelta(seconds=60)


@attrs.define
class Transfer(Entity):
    """One transfer: a saga of journaled asks, plus an audit timer that fires once.

    Half run a flaky activity first (retried, journaled); one transfer in ten crashes
    once per process right after its debit (a bug that goes away): the supervisor
    re-runs it and the re-run must take the debit from the journal. When done, it
    books itself in a ledger through the outbox. It also schedules an ``expire``
    timer a minute out, which its audit cancels.
    """

    entity_name = "TortureTransfer"
    snapshot_every: ClassVar[int] = 2
    status: str = "new"
    audits: int = 0

    @signal
    async def start(self, source: str, destination: str, amount: int) -> str:
        if self.status != "new":
            return self.status
        self.emit(Requested(source, destination, amount))
        delay = dt.timedelta(milliseconds=self.random().randint(50, 300))
        self.schedule(Transfer.audit, after=delay, key="audit")
        self.schedule(Transfer.expire, after=EXPIRY, key="expire")  # the audit cancels it
        if zlib.crc32(self.id.encode()) % 2:  # half of them: the others' first step is the debit
            await self.run(risk_check, self.id, retry=RISK_RETRY)
        src, dst = self.ref(Account, source), self.ref(Account, destination)
        debited = False
        try:
            async with self.saga() as saga:
                await src.options(key=f"{self.id}/debit").ask(Account.withdraw, amount, self.id)
                debited = True
                if zlib.crc32(self.id.encode()) % 10 == 0 and self.id not in CRASHED:
                    CRASHED.add(self.id)
                    raise RuntimeError(f"injected crash in {self.id}")  # not Rejected: no compensation
                refund = src.options(key=f"{self.id}/refund")
                saga.compensate(refund.ask, Account.deposit, amount, self.id, "refund")
                await dst.options(key=f"{self.id}/credit").ask(Account.deposit, amount, self.id, "credit")
        except Rejected:
            self.emit(Finished("compensated" if debited else "refused"))
        else:
            self.emit(Finished("completed"))
        # through the outbox: sent once this invocation commits, at least once, deduplicated
        ledger = self.ref(Ledger, f"ledger-{zlib.crc32(self.id.encode()) % 3}")
        await ledger.tell(Ledger.book, self.id, self.status)
        return self.status

    @signal
    def audit(self) -> None:
        # emitted on every delivery, guarded by nothing: a double firing shows as two events
        self.emit(Audited(self.now().timestamp()))
        self.cancel("expire")

    @signal
    def expire(self) -> None:
        # fires only if the audit did not cancel it first (possible when both fell due while down)
        self.emit(Expired())

    @query
    def get_status(self) -> str:
        return self.status

    @applies
    def _requested(self, e: Requested) -> None:
        self.status = "running"

    @applies
    def _finished(self, e: Finished) -> None:
        self.status = e.outcome

    @applies
    def _audited(self, e: Audited) -> None:
        self.audits += 1

    @applies
    def _expired(self, e: Expired) -> None:
        pass


@event_type("torture.booked")
@attrs.frozen
class Booked:
    transfer: str
    outcome: str


@attrs.define
class Ledger(Entity):
    """Where finished transfers are booked (by outbox tells): each exactly once."""

    entity_name = "TortureLedger"
    snapshot_every: ClassVar[int] = 5
    entries: int = 0

    @signal
    def book(self, transfer: str, outcome: str) -> None:
        self.emit(Booked(transfer, outcome))  # unguarded: a duplicate delivery shows

    @applies
    def _booked(self, e: Booked) -> None:
        self.entries += 1


@event_type("torture.ticked")
@attrs.frozen
class Ticked:
    due: float


@event_type("torture.ticker_started")
@attrs.frozen
class TickerStarted:
    pass


@attrs.define
class Ticker(Entity):
    """A recurring timer: every firing records its due time, which must never repeat."""

    entity_name = "TortureTicker"
    snapshot_every: ClassVar[int] = 10
    started: bool = False
    ticks: int = 0

    @signal
    def start(self) -> None:
        if not self.started:
            self.emit(TickerStarted())
            self.schedule(Ticker.tick, every=TICK, key="tick")

    @signal
    def tick(self) -> None:
        self.emit(Ticked(self.now().timestamp()))

    @applies
    def _started(self, e: TickerStarted) -> None:
        self.started = True

    @applies
    def _ticked(self, e: Ticked) -> None:
        self.ticks += 1


ENTITIES: list[type[Entity]] = [Account, Transfer, Ledger, Ticker]


def system_on(db: Path) -> ActorSystem:
    """The system every generation runs (small passivation delay: actors come and go)."""
    return ActorSystem(SqliteStore(db), entities=ENTITIES, passivate_after=dt.timedelta(milliseconds=300))


# ---------------------------------------------------------------- the child


def plan(seed: int, gen: int) -> Iterator[tuple[str, str, str, int]]:
    """The transfers generation ``gen`` sends: (id, source, destination, amount)."""
    rng = random.Random(f"{seed}/{gen}")
    for i in itertools.count():
        src, dst = rng.sample(ACCOUNTS, 2)
        yield f"t{gen}-{i}", src, dst, rng.randint(1, 120)


async def child(db: Path, acks: Path, gen: int, seed: int, senders: int) -> None:
    """Send transfers until killed; each sender waits for every other one it sent to finish."""
    todo = plan(seed, gen)
    async with system_on(db) as system:
        print("ready", flush=True)
        fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:

            async def sender(n: int) -> None:
                rng = random.Random(f"{seed}/{gen}/{n}")
                done: list[tuple[str, str, str, int]] = []
                for sent, (tid, src, dst, amount) in enumerate(todo):
                    ref = system.ref(Transfer, tid).options(key=tid)
                    if n == 0:  # a keyed ask: acknowledged with the answer it returned
                        answer = await ref.ask(Transfer.start, src, dst, amount)
                        line = f"{tid} {src} {dst} {amount} {answer}\n"
                    else:
                        await ref.tell(Transfer.start, src, dst, amount)
                        line = f"{tid} {src} {dst} {amount}\n"
                    os.write(fd, line.encode())
                    os.fsync(fd)
                    done.append((tid, src, dst, amount))
                    if rng.random() < 0.1:  # a duplicate of one sent before: must change nothing
                        again, a_src, a_dst, a_amount = rng.choice(done)
                        twice = system.ref(Transfer, again).options(key=again)
                        await twice.tell(Transfer.start, a_src, a_dst, a_amount)
                    if (sent + n) % 2:  # bound the backlog: wait for this one to finish
                        while await ref.query(Transfer.get_status) in ("new", "running"):  # noqa: ASYNC110
                            await anyio.sleep(0.005)  # a poll: part of the workload

            async with anyio.create_task_group() as tg:
                for n in range(senders):
                    tg.start_soon(sender, n)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- the parent


async def setup(db: Path) -> None:
    async with system_on(db) as system:
        for a in ACCOUNTS:
            await (
                system.ref(Account, a)
                .options(key=f"open/{a}")
                .ask(Account.open, INITIAL, a in FROZEN_ACCOUNTS)
            )
        await system.ref(Ticker, "ticker").options(key="start").ask(Ticker.start)


def _rows(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def in_flight(db: Path) -> int:
    """Signals, journaled steps and outbox messages a kill left behind (unfinished work)."""
    return sum(_rows(db, f"SELECT count(*) FROM {t}")[0][0] for t in ("inbox", "outbox", "journal"))


def settled(db: Path, since: float) -> tuple[bool, str]:
    """Whether everything has come to rest; else what is still moving."""
    pending = {
        table: _rows(db, f"SELECT count(*) FROM {table}")[0][0] for table in ("inbox", "outbox", "journal")
    }
    pending["timers"] = _rows(db, "SELECT count(*) FROM timers WHERE entity_type != 'TortureTicker'")[0][0]
    kinds = Counter(
        r[0]
        for r in _rows(
            db,
            "SELECT type_name FROM events WHERE entity_type = 'TortureTransfer' "
            "AND type_name IN ('torture.requested', 'torture.finished', 'torture.audited')",
        )
    )
    booked = _rows(db, "SELECT count(*) FROM events WHERE type_name = 'torture.booked'")[0][0]
    pending["unbooked"] = kinds["torture.finished"] - booked
    pending["unfinished"] = kinds["torture.requested"] - kinds["torture.finished"]
    pending["unaudited"] = kinds["torture.requested"] - kinds["torture.audited"]
    ticks_since = _rows(
        db,
        "SELECT count(*) FROM events WHERE entity_type = 'TortureTicker' AND type_name = 'torture.ticked' "
        "AND json_extract(data, '$.due') >= ?",
        (since,),
    )[0][0]
    pending["no_tick_yet"] = int(ticks_since == 0)
    busy = {k: v for k, v in pending.items() if v}
    return not busy, ", ".join(f"{k}={v}" for k, v in busy.items())


async def final_generation(db: Path, deadline: float) -> dict[str, int]:
    """Run a clean generation until everything settles; the accounts' own balances."""
    async with system_on(db) as system:
        since = time.time()
        what = ""
        with anyio.move_on_after(deadline) as scope:
            while True:
                ok, what = await anyio.to_thread.run_sync(settled, db, since)
                if ok:
                    break
                await anyio.sleep(0.05)  # a poll under a deadline: the state is in the store
        if scope.cancelled_caught:
            raise SystemExit(f"torture: the final generation did not settle within {deadline:g}s: {what}")
        return {a: await system.ref(Account, a).query(Account.get_balance) for a in ACCOUNTS}


class FrozenClock:
    """A clock stopped at one instant: what was due by then fires, nothing later ever does.

    The quiescing generation runs on it, so the recurring ticker cannot add a signal
    between the check that everything is at rest and the shutdown.
    """

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def now(self) -> dt.datetime:
        """The frozen instant."""
        return self.at

    async def sleep_until(self, when: dt.datetime) -> None:
        """Return at once for a time already reached; otherwise wait until cancelled."""
        if when <= self.at:
            await anyio.lowlevel.checkpoint()
            return
        await anyio.sleep_forever()


def at_rest(db: Path, frozen: dt.datetime) -> tuple[bool, str]:
    """Whether the store holds no work a system on a clock frozen at ``frozen`` would still do.

    One read transaction sees inbox, outbox, journal and timers together. With all
    three tables empty and no timer due by ``frozen`` (the timer service's own test:
    due datetime <= now), nothing can add a row again: signals come from calls
    (none), the outbox (empty) and timers (none due, and the clock never moves).
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        with conn:
            conn.execute("BEGIN")
            left = {
                t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("inbox", "outbox", "journal")
            }
            dues = [r[0] for r in conn.execute("SELECT due_at FROM timers")]
    finally:
        conn.close()
    left["due_timers"] = sum(dt.datetime.fromtimestamp(d, dt.UTC) <= frozen for d in dues)
    busy = {k: v for k, v in left.items() if v}
    return not busy, ", ".join(f"{k}={v}" for k, v in busy.items())


async def quiesce(db: Path, deadline: float) -> None:
    """Restart once more on a frozen clock and wait until nothing is left to do, then close.

    A clean shutdown leaves accepted signals in the inbox (the contract: they run on
    the next start), and a recurring timer can fire at any moment before it: so the
    final check cannot run right after the settling generation. This generation
    recovers what that one left, fires only timers already due, and closes once the
    store is at rest (``at_rest``), which no later firing can undo.
    """
    frozen = dt.datetime.now(dt.UTC)
    async with ActorSystem(
        SqliteStore(db), entities=ENTITIES, clock=FrozenClock(frozen), passivate_after=None
    ):
        what = ""
        with anyio.move_on_after(deadline) as scope:
            while True:
                ok, what = await anyio.to_thread.run_sync(at_rest, db, frozen)
                if ok:
                    break
                await anyio.sleep(0.02)  # a poll under a deadline: the state is in the store
        if scope.cancelled_caught:
            raise SystemExit(
                f"torture: the quiescing generation did not come to rest within {deadline:g}s: {what}"
            )


Ack = tuple[str, str, int, str | None]
"""(source, destination, amount, the answer of an ask or None for a tell)."""


def read_acks(path: Path) -> dict[str, Ack]:
    """Acknowledged transfers; a torn last line (killed mid-write) was never acknowledged."""
    out: dict[str, Ack] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        tid, src, dst, amount, *answer = line.split()
        out[tid] = (src, dst, int(amount), answer[0] if answer else None)
    return out


@attrs.define
class Report:
    violations: list[str] = attrs.field(factory=list)
    stats: dict[str, int] = attrs.field(factory=dict)

    def bad(self, text: str) -> None:
        self.violations.append(text)


def check(db: Path, acks: dict[str, Ack], live: dict[str, int]) -> Report:
    """Check the database against the invariants (see the module docstring)."""
    rep = Report()
    rows = _rows(db, "SELECT entity_type, entity_id, seq, type_name, data FROM events ORDER BY 1, 2, 3")
    balances: dict[str, int] = {}
    minimum: dict[str, int] = {}
    debits: Counter[str] = Counter()
    credits: Counter[str] = Counter()
    refunds: Counter[str] = Counter()
    requested: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    finished: dict[str, list[str]] = defaultdict(list)
    audits: Counter[str] = Counter()
    audited_at: dict[str, int] = {}
    expired_at: dict[str, int] = {}
    booked: dict[str, list[str]] = defaultdict(list)
    ticks: Counter[float] = Counter()
    last_seq: dict[tuple[str, str], int] = {}
    for etype, eid, seq, tname, data in rows:
        if seq != last_seq.get((etype, eid), 0) + 1:
            rep.bad(f"event log of {etype}/{eid} jumps to seq {seq}")
        last_seq[(etype, eid)] = seq
        d = json.loads(data)
        if etype == "TortureAccount":
            if tname == "torture.opened":
                if eid in balances:
                    rep.bad(f"{eid} opened twice")
                balances[eid] = d["initial"]
            elif tname == "torture.deposited":
                balances[eid] = balances.get(eid, 0) + d["amount"]
                (refunds if d["kind"] == "refund" else credits)[d["ref"]] += 1
            elif tname == "torture.withdrawn":
                balances[eid] = balances.get(eid, 0) - d["amount"]
                debits[d["ref"]] += 1
            minimum[eid] = min(minimum.get(eid, 0), balances.get(eid, 0))
        elif etype == "TortureTransfer":
            if tname == "torture.requested":
                requested[eid].append((d["source"], d["destination"], d["amount"]))
            elif tname == "torture.finished":
                finished[eid].append(d["outcome"])
            elif tname == "torture.audited":
                audits[eid] += 1
                audited_at.setdefault(eid, seq)
            elif tname == "torture.expired":
                expired_at[eid] = seq
        elif etype == "TortureLedger" and tname == "torture.booked":
            booked[d["transfer"]].append(d["outcome"])
        elif etype == "TortureTicker" and tname == "torture.ticked":
            ticks[d["due"]] += 1

    # money
    total = sum(balances.values())
    if total != INITIAL * len(ACCOUNTS):
        rep.bad(f"money not conserved: balances sum to {total}, expected {INITIAL * len(ACCOUNTS)}")
    for a, low in minimum.items():
        if low < 0:
            rep.bad(f"{a} went negative (down to {low})")
    if set(balances) != set(ACCOUNTS):
        rep.bad(f"accounts in the log: {sorted(balances)}")
    for a, b in live.items():
        if balances.get(a) != b:
            rep.bad(f"{a}: the entity answers balance {b}, its event log gives {balances.get(a)}")

    # transfers
    for tid in acks:
        if tid not in requested:
            rep.bad(f"acknowledged transfer {tid} was never applied")
    outcomes: Counter[str] = Counter()
    for tid, reqs in requested.items():
        if len(reqs) != 1:
            rep.bad(f"transfer {tid} requested {len(reqs)} times")
        if tid in acks and reqs[0] != acks[tid][:3]:
            rep.bad(f"transfer {tid} ran as {reqs[0]}, was acknowledged as {acks[tid][:3]}")
        fin = finished.get(tid, [])
        if len(fin) != 1:
            rep.bad(f"transfer {tid} finished {len(fin)} times: {fin}")
            continue
        outcome = fin[0]
        outcomes[outcome] += 1
        answer = acks.get(tid, (None, None, None, None))[3]
        if answer is not None and answer != outcome:
            rep.bad(f"transfer {tid}: its ask answered {answer!r}, the log says {outcome!r}")
        moved = (debits[tid], credits[tid], refunds[tid])
        expected = {"completed": (1, 1, 0), "compensated": (1, 0, 1), "refused": (0, 0, 0)}[outcome]
        if moved != expected:
            rep.bad(
                f"transfer {tid} {outcome} with (debits, credits, refunds) = {moved}, expected {expected}"
            )
        if audits[tid] != 1:
            rep.bad(f"transfer {tid}: audit timer fired {audits[tid]} times")
        if booked.get(tid) != [outcome]:
            rep.bad(f"transfer {tid} {outcome}, booked in the ledger as {booked.get(tid)}")
        if tid in expired_at and expired_at[tid] > audited_at.get(tid, 0):
            rep.bad(f"transfer {tid}: its expire timer fired after the audit cancelled it")
    for tid in set(debits) | set(credits) | set(refunds):
        if tid not in requested:
            rep.bad(f"money moved for {tid}, which was never requested")
    for tid in set(audits) - set(requested):
        rep.bad(f"audit of {tid}, which was never requested")
    for tid in set(booked) - set(requested):
        rep.bad(f"ledger booking of {tid}, which was never requested")

    # timers and leftovers
    for due, n in ticks.items():
        if n > 1:
            rep.bad(f"the recurring tick due at {due} fired {n} times")
    if not ticks:
        rep.bad("the recurring ticker never fired")
    if _rows(db, "SELECT count(*) FROM timers WHERE entity_type = 'TortureTicker'")[0][0] != 1:
        rep.bad("the recurring ticker's timer is gone")
    for row in _rows(db, "SELECT entity_type, entity_id, handler, error FROM dead_letters"):
        rep.bad(f"dead letter: {row[0]}/{row[1]}.{row[2]}: {row[3][:300]}")
    for table in ("inbox", "outbox", "journal"):
        n = _rows(db, f"SELECT count(*) FROM {table}")[0][0]
        if n:
            rep.bad(f"{n} rows left in {table}")
    rep.stats = {
        "acked": len(acks),
        "transfers": len(requested),
        "completed": outcomes["completed"],
        "compensated": outcomes["compensated"],
        "refused": outcomes["refused"],
        "timers_fired": sum(audits.values()),
        "expired": len(expired_at),
        "booked": sum(len(b) for b in booked.values()),
        "ticks": sum(ticks.values()),
    }
    return rep


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_generation(
    args: argparse.Namespace, db: Path, acks: Path, log: Path, gen: int, rng: random.Random
) -> str | None:
    """Start a child, kill it at a random moment; a violation text if it misbehaved."""
    cmd = [
        sys.executable,
        "-m",
        "bench.torture",
        "--child",
        "--db",
        str(db),
        "--gen",
        str(gen),
        "--seed",
        str(args.seed),
        "--senders",
        str(args.senders),
    ]
    early = rng.random() < args.early
    delay = rng.uniform(0, args.max_delay)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with log.open("ab") as err:
        err.write(f"--- generation {gen} (early={early}, delay={delay:.3f}s)\n".encode())
        err.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=root)
    try:
        assert proc.stdout is not None
        if early:  # somewhere in start-up: imports, opening the store, recovery
            time.sleep(delay / 2)
        else:
            deadline = time.monotonic() + 60
            line = b""
            while line != b"ready\n":
                line = proc.stdout.readline()
                if not line:
                    proc.wait(5)
                    return (
                        f"generation {gen}: child exited with {proc.returncode} before ready:\n{_tail(log)}"
                    )
                if time.monotonic() > deadline:
                    return f"generation {gen}: child not ready within 60s"
            time.sleep(delay)
        if proc.poll() is not None:
            return f"generation {gen}: child exited by itself with {proc.returncode}:\n{_tail(log)}"
        proc.send_signal(signals.SIGKILL)
        proc.wait(30)
        if proc.returncode != -signals.SIGKILL:
            return f"generation {gen}: child ended with {proc.returncode} before the kill:\n{_tail(log)}"
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def parent(args: argparse.Namespace) -> int:
    started = time.monotonic()
    logging.getLogger("actors").setLevel(logging.ERROR)  # the injected crashes' retries are expected
    tmp = None
    if args.db:
        db = Path(args.db).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        if db.exists() and not args.overwrite:
            print(f"torture: {db} exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
    else:
        tmp = tempfile.mkdtemp(prefix="torture-")
        db = Path(tmp) / "torture.db"
    acks, log = Path(f"{db}.acks"), Path(f"{db}.log")
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), acks, log):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    rng = random.Random(args.seed)
    anyio.run(setup, db)
    violations: list[str] = []
    interrupted = 0
    for gen in range(args.kills):
        problem = run_generation(args, db, acks, log, gen, rng)
        if problem:
            violations.append(problem)
            break
        interrupted += in_flight(db) > 0
        if args.verbose and gen % 50 == 49:
            print(f"torture: {gen + 1} kills, {len(read_acks(acks))} acked", flush=True)
    live: dict[str, int] = {}
    try:
        live = anyio.run(final_generation, db, args.settle)
        anyio.run(quiesce, db, args.settle)
    except SystemExit as e:
        violations.append(str(e))
    rep = check(db, read_acks(acks), live)
    violations += rep.violations
    elapsed = time.monotonic() - started
    for v in violations[:30]:
        print(f"VIOLATION: {v}")
    if len(violations) > 30:
        print(f"... and {len(violations) - 30} more violations")
    s = rep.stats
    print(
        f"torture: kills={args.kills} (mid-work {interrupted}) seed={args.seed} acked={s['acked']} "
        f"transfers={s['transfers']} "
        f"completed={s['completed']} compensated={s['compensated']} refused={s['refused']} "
        f"timers_fired={s['timers_fired']} expired={s['expired']} booked={s['booked']} ticks={s['ticks']} "
        f"elapsed={elapsed:.1f}s "
        f"violations={len(violations)} {'OK' if not violations else 'FAILED'}",
        flush=True,
    )
    if tmp is not None and not violations and not args.keep:
        for p in Path(tmp).iterdir():
            p.unlink()
        os.rmdir(tmp)
    elif violations:
        print(f"torture: database kept at {db}", flush=True)
    return 1 if violations else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.torture", description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20, help="child generations killed with SIGKILL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--db", help="database path (default: a temporary folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --db")
    p.add_argument("--keep", action="store_true", help="keep the temporary database")
    p.add_argument("--senders", type=int, default=4, help="concurrent senders in each child")
    p.add_argument("--max-delay", type=float, default=0.5, help="longest wait before a kill (s)")
    p.add_argument("--early", type=float, default=0.1, help="share of kills during start-up")
    p.add_argument("--settle", type=float, default=120.0, help="deadline of the final generation (s)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gen", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        db = Path(args.db)
        anyio.run(child, db, Path(f"{db}.acks"), args.gen, args.seed, args.senders)
        return 0
    if args.kills < 0:
        p.error("--kills must be >= 0")
    return parent(args)


if __name__ == "__main__":
    from bench import torture  # one copy of the classes (rejections are stored by module name)

    sys.exit(torture.main())
