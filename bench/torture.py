"""Crash torture: a bank under SIGKILL, restarted again and again on one SQLite file.

``python -m bench.torture --kills N [--seed S] [--db PATH] [--faults all|none|A,B] [--json FILE]``

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

Beside the transfers a workflow sender starts approval workflows (``ApprovalFlow``:
hold a grant, park in ``wait_until`` for an ``approve`` signal with a 1.5 s
deadline, spend the grant; timed out or cancelled, the saga releases it), approves
some, cancels some through their handles and leaves the rest to time out, all under
the same kills. Checked: every started workflow ended exactly once (approved, timed
out or cancelled, as the sender's calls allow: an acknowledged cancel is never
approved), nothing was applied twice, and each grant ended once: spent when
approved, released (the compensation ran) when timed out or cancelled.
``parked_at_kills`` counts the workflows a kill left parked.

The transfers also run a flaky activity (retried, journaled) and one in ten
crashes once per process mid-saga (the supervisor re-runs it from its journal);
one sender uses keyed asks, whose answers are checked against the log, and
senders now and then repeat a tell they sent before.

The final settling generation runs on the real clock, so its shutdown may leave a
signal a timer just added (the contract: accepted signals stay in the inbox). So a
last, quiescing generation runs on a clock frozen at its start: it recovers what
was left, fires only what was due by then, and closes once inbox, outbox and
journal are empty and no timer is due, read in one transaction (``at_rest``); no
firing can follow, so the check reads a store at rest.

Then the fault classes (``--faults``, default all), each in a child process of
its own on a fresh database, under a watchdog (a hang is reported, with the step
it hung in):

- ``hostile``: ids and keys with '/', ':', '@', unicode, at the length limits and
  shaped like internal ids (``transfer t-1/debit``, ``t:x@1.0``); forwards from
  senders whose id + key texts coincide; a caller's key equal to a saga step's key;
  a timer re-armed for the same key and instant; lone surrogates and NULs (typed
  error, and no bystander in the same batch hurt); an argument list mutated after
  ``tell`` returned. Every acknowledged call applied exactly once.
- ``shutdown``: ``aclose()`` with tells and asks (keyed and not) in flight, six
  times; then a restart. Each caller's answer is recorded: acknowledged means
  applied exactly once (an ask's answer matches the log), ``SystemClosed`` means
  not applied, and every caller gets an answer.
- ``shutdown-parked``: ``aclose()`` while a handler is parked in an activity whose
  ``finally`` asks another entity: it must return, and not run the cleanup.
- ``failed-writes``: a ``FaultyStore`` fails 35% of the batches holding a timer
  firing or an outbox delivery and 8% of the others; callers retry keyed calls.
  Once the faults stop, without a restart, every timer fires, every outbox message
  arrives and the recurring ticker ticks; nothing acknowledged is lost or doubled.
- ``base-exceptions``: handlers raising a BaseException subclass or awaiting a
  cancelled helper: the ask is answered, no trace is kept, the entity serves on.

Each violation names its class, invariant, entity, and what was expected and
seen. The exit code is 1 on any violation; ``--json`` writes the results (command,
kills, violations, durations).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import random
import shutil
import signal as signals
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import attrs

from actors import (
    ActorSystem,
    Cancelled,
    Entity,
    HandlerFailed,
    IdempotencyConflict,
    InvalidArguments,
    Rejected,
    RetryPolicy,
    StoreError,
    SystemClosed,
    applies,
    event_type,
    query,
    signal,
)
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


# ---------------------------------------------------------------- fault-class entities


@event_type("torture.noted")
@attrs.frozen
class Noted:
    tag: str
    """A JSON list naming the call that caused it (unique per call)."""


@event_type("torture.reminded")
@attrs.frozen
class Reminded:
    tag: str


class Abort(BaseException):
    """A BaseException that is not an Exception, as KeyboardInterrupt or a cancellation."""


FINALLY_RAN: list[str] = []
"""Tags whose handler's ``finally`` block ran in this process (for the shutdown check)."""


async def slow_activity(tag: str) -> str:
    """An activity that outlives any shutdown."""
    await anyio.sleep(3600)
    return tag


@attrs.define
class Vault(Entity):
    """The entity of the fault classes: every call notes its unique tag once.

    ``put`` notes a tag; ``forward`` also sends a tag to a sink through the outbox and
    through a journaled ask; ``later`` schedules a one-shot reminder; ``loop`` re-arms a
    timer of the same key and due time from the timer's own handler; ``boom`` notes its
    tag, then raises a BaseException or awaits a cancelled helper task; ``stall`` parks in
    a long activity whose ``finally`` asks another vault.
    """

    entity_name = "TortureVault"
    snapshot_every: ClassVar[int] = 4
    count: int = 0
    looped: int = 0

    @signal
    def put(self, tag: str) -> int:
        self.emit(Noted(tag))
        return self.count

    @signal
    def keep(self, items: list[str]) -> None:
        self.emit(Noted(json.dumps(["kept", items])))

    @signal
    async def forward(self, tag: str, sink: str) -> int:
        target = self.ref(Vault, sink)
        await target.tell(Vault.put, json.dumps(["tell", self.id, tag]))
        await target.ask(Vault.put, json.dumps(["ask", self.id, tag]))
        self.emit(Noted(tag))
        return self.count

    @signal
    def later(self, tag: str, key: str) -> int:
        self.emit(Noted(tag))
        self.schedule(Vault.remind, tag, after=dt.timedelta(milliseconds=20), key=key)
        return self.count

    @signal
    def remind(self, tag: str) -> None:
        self.emit(Reminded(tag))

    @signal
    def loop(self, times: int, key: str) -> None:
        self.emit(Noted(json.dumps(["loop", self.id, self.looped])))
        if self.looped < times:  # re-armed for "now": same key, same due time as this firing
            self.schedule(Vault.loop, times, key, after=dt.timedelta(0), key=key)

    @signal
    async def boom(self, tag: str, how: str) -> int:
        self.emit(Noted(tag))  # must be rolled back: the handler does not end normally
        if how == "base":
            raise Abort(f"abort in {tag}")
        helper = asyncio.ensure_future(asyncio.sleep(3600))
        helper.cancel()
        await helper  # CancelledError, though nobody cancelled this handler
        return self.count

    @signal
    async def stall(self, tag: str, other: str) -> int:
        try:
            await self.run(slow_activity, tag)
        finally:
            FINALLY_RAN.append(tag)
            await self.ref(Vault, other).ask(Vault.put, json.dumps(["finally", self.id, tag]))
        self.emit(Noted(tag))
        return self.count

    @query
    def get_count(self) -> int:
        return self.count

    @applies
    def _noted(self, e: Noted) -> None:
        self.count += 1
        if e.tag.startswith('["loop"'):
            self.looped += 1

    @applies
    def _reminded(self, e: Reminded) -> None:
        pass


# ---------------------------------------------------------------- parked and cancelled workflows

WF_DEADLINE = dt.timedelta(seconds=1.5)
"""How long a workflow waits for its approval before it times out (real clock)."""


@event_type("torture.grant_held")
@attrs.frozen
class GrantHeld:
    workflow: str
    amount: int


@event_type("torture.grant_released")
@attrs.frozen
class GrantReleased:
    workflow: str


@event_type("torture.grant_spent")
@attrs.frozen
class GrantSpent:
    workflow: str


@attrs.define
class Grants(Entity):
    """What workflows hold while they wait: each hold ends spent or released, once.

    The handlers are idempotent by workflow id (a journaled ask re-sent after a crash
    changes nothing), so a second hold, spend or release in the log is a real double."""

    entity_name = "TortureGrants"
    snapshot_every: ClassVar[int] = 20
    open: dict[str, int] = attrs.field(factory=dict)
    closed: set[str] = attrs.field(factory=set)

    @signal
    def hold(self, workflow: str, amount: int) -> None:
        if workflow not in self.open and workflow not in self.closed:
            self.emit(GrantHeld(workflow, amount))

    @signal
    def release(self, workflow: str) -> None:
        if workflow in self.open:
            self.emit(GrantReleased(workflow))

    @signal
    def spend(self, workflow: str) -> None:
        if workflow in self.open:
            self.emit(GrantSpent(workflow))

    @applies
    def _held(self, e: GrantHeld) -> None:
        self.open = {**self.open, e.workflow: e.amount}

    @applies
    def _released(self, e: GrantReleased) -> None:
        self.open = {k: v for k, v in self.open.items() if k != e.workflow}
        self.closed = self.closed | {e.workflow}

    @applies
    def _spent(self, e: GrantSpent) -> None:
        self.open = {k: v for k, v in self.open.items() if k != e.workflow}
        self.closed = self.closed | {e.workflow}


@event_type("torture.wf_started")
@attrs.frozen
class WfStarted:
    amount: int


@event_type("torture.wf_approved")
@attrs.frozen
class WfApproved:
    pass


@event_type("torture.wf_ended")
@attrs.frozen
class WfEnded:
    outcome: str


@attrs.define
class ApprovalFlow(Entity):
    """A workflow parked on a human: hold a grant, wait for ``approve`` with a deadline,
    then spend it; timed out or cancelled, the saga releases it."""

    entity_name = "TortureApproval"
    amount: int = 0
    approved: bool = False
    outcome: str | None = None

    @signal
    async def request(self, amount: int) -> str:
        self.emit(WfStarted(amount))
        grants = self.ref(Grants, "grants")
        try:  # a cancel reaches the next durable await: the hold's ask, the wait or the spend
            async with self.saga() as saga:
                saga.compensate(grants.ask, Grants.release, self.id)
                await grants.ask(Grants.hold, self.id, amount)
                approved = await self.wait_until(lambda: self.approved, timeout=WF_DEADLINE)
                if not approved:
                    self.emit(WfEnded("timed out"))
                    raise Rejected("no approval in time", commit=True)
                await grants.ask(Grants.spend, self.id)
                self.emit(WfEnded("approved"))
        except Cancelled:
            self.emit(WfEnded("cancelled"))  # after the compensations; kept with the outcome
            raise
        return "approved"

    @signal
    def approve(self) -> None:
        if not self.approved and self.outcome is None:
            self.emit(WfApproved())

    @query
    def get_outcome(self) -> str | None:
        return self.outcome

    @applies
    def _started(self, e: WfStarted) -> None:
        self.amount = e.amount

    @applies
    def _approved(self, e: WfApproved) -> None:
        self.approved = True

    @applies
    def _ended(self, e: WfEnded) -> None:
        self.outcome = e.outcome


ENTITIES: list[type[Entity]] = [Account, Transfer, Ledger, Ticker, Vault, Grants, ApprovalFlow]


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

            wfd = os.open(f"{acks}.wf", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

            def wf_ack(line: str) -> None:
                os.write(wfd, f"{line}\n".encode())
                os.fsync(wfd)

            async def workflows() -> None:
                """Start approval workflows; approve some, cancel some, leave the rest to time out.
                An intent line is written before each call, an ack line after it returned."""
                rng = random.Random(f"{seed}/{gen}/wf")
                for i in itertools.count():
                    wid = f"w{gen}-{i}"
                    ref = system.ref(ApprovalFlow, wid)
                    choice = rng.choice(("approve", "approve", "cancel", "cancel", "wait"))
                    wf_ack(f"{wid} intent-{choice}")
                    handle = await ref.options(key=wid).start(ApprovalFlow.request, rng.randint(1, 50))
                    wf_ack(f"{wid} started")
                    await anyio.sleep(rng.uniform(0, 0.2))  # often parked by now, not always
                    if choice == "approve":
                        await ref.options(key=f"{wid}/approve").tell(ApprovalFlow.approve)
                        wf_ack(f"{wid} approved")
                    elif choice == "cancel":
                        await handle.cancel("sender changed its mind")
                        wf_ack(f"{wid} cancelled")

            try:
                async with anyio.create_task_group() as tg:
                    for n in range(senders):
                        tg.start_soon(sender, n)
                    tg.start_soon(workflows)
            finally:
                os.close(wfd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- fault classes
#
# Each class runs in its own child process (``--scenario NAME``) on a fresh
# database, so a hang (a shutdown that never returns) is seen as one, by a
# deadline, and does not stop the other classes. A child prints one JSON line per
# violation (class, invariant, entity, expected, seen) and a last ``done`` line
# with its counters.

SCENARIO_DEADLINE = 60.0
"""Seconds a fault-class child may take before it is killed and reported as hung."""
ANSWER_DEADLINE = 5.0
"""Seconds a call or a shutdown may take before it counts as hanging."""


PHASE = ["start"]
"""What the fault-class child is doing now (named by the watchdog if it hangs)."""


def phase(text: str) -> None:
    """Name the step a fault class is in."""
    PHASE[0] = text


@attrs.define
class Findings:
    """The violations one fault class found, and what it did."""

    fault: str
    violations: list[dict[str, str]] = attrs.field(factory=list)
    counts: Counter[str] = attrs.field(factory=Counter)

    def bad(self, invariant: str, entity: str, expected: object, seen: object) -> None:
        """Record a violation of ``invariant`` at ``entity``."""
        v = {
            "fault": self.fault,
            "invariant": invariant,
            "entity": entity,
            "expected": str(expected)[:300],
            "seen": str(seen)[:300],
        }
        self.violations.append(v)
        print(json.dumps(v), flush=True)

    def bad_many(self, invariant: str, entities: list[str], expected: object, seen: object) -> None:
        """One violation for the same failure at several entities (counted, first few named)."""
        if entities:
            shown = ", ".join(entities[:3]) + (f" (+{len(entities) - 3} more)" if len(entities) > 3 else "")
            self.bad(invariant, f"{len(entities)}x: {shown}", expected, seen)

    async def guard(self, invariant: str, coro: Any) -> None:
        """Run one check; its crash is a violation of its invariant, not the end of the class."""
        try:
            await coro
        except Exception as e:
            self.bad(invariant, "-", "the check runs to its end", f"{type(e).__name__}: {e}")


def vault_notes(db: Path) -> dict[str, list[tuple[str, int]]]:
    """Every noted tag -> the (vault, seq) of each time it was noted."""
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for eid, seq, data in _rows(
        db, "SELECT entity_id, seq, data FROM events WHERE type_name = 'torture.noted' ORDER BY 1, 2"
    ):
        out[json.loads(data)["tag"]].append((eid, seq))
    return out


def vault_reminders(db: Path) -> Counter[str]:
    """How many times each reminder tag fired."""
    return Counter(
        json.loads(d)["tag"]
        for (d,) in _rows(db, "SELECT data FROM events WHERE type_name = 'torture.reminded'")
    )


async def until(cond: Any, deadline: float, step: float = 0.02) -> bool:
    """Poll ``cond()`` (a store read) until true or the deadline; whether it became true."""
    with anyio.move_on_after(deadline):
        while True:
            if await anyio.to_thread.run_sync(cond):
                return True
            await anyio.sleep(step)  # a poll under a deadline: the state is in the store
    return False


async def quiet(db: Path, deadline: float, store: Any = None) -> str:
    """Open a system on a frozen clock, let it finish what the store holds, close; '' or what is left."""
    frozen = dt.datetime.now(dt.UTC)
    last = [""]

    def rest() -> bool:
        ok, last[0] = at_rest(db, frozen)
        return ok

    async with ActorSystem(
        store if store is not None else SqliteStore(db),
        entities=ENTITIES,
        clock=FrozenClock(frozen),
        passivate_after=None,
    ):
        ok = await until(rest, deadline)
    return "" if ok else last[0]


def tag_of(*parts: object) -> str:
    """An unambiguous tag for one call."""
    return json.dumps(list(parts))


HOSTILE_IDS = [
    "plain",
    "x",
    "x/k:q",
    "a:b",
    "a@b",
    "t:x@1.0",
    "transfer t-1/debit",
    "o:TortureVault/x/k:q/0",
    "ünï-cødé ☃ 𝄞 中文",
    "\u200b\u202e",
    "'; DROP TABLE events; --",
    "%s%n{0}",
    "L" * 256,
]
HOSTILE_KEYS = [
    "z",
    "q/k:z",
    "transfer t-1/debit",
    "t:x@1.0",
    "k:z",
    "g:0000000000000000",
    "a:TortureVault/x/k:q/0",
    "ünï-cødé ☃ 𝄞",
    "K" * 256,
]
BAD_IDS = ["", "\x00", "a\x00b", "\ud800", "a\udfffb", "L" * 257]
BAD_KEYS = ["", "\ud800", "k\udc00", "K" * 257]


async def scenario_hostile(db: Path, seed: int) -> Findings:
    """Ids and keys with '/', ':', '@', unicode, at the length limits, or shaped like internal ids."""
    f = Findings("hostile-ids")
    rng = random.Random(seed)
    told: dict[str, int] = {}  # tag -> how many times it must be noted
    sink = "sink ☃/k:"

    async with system_on(db) as system:

        async def keyed_puts() -> None:
            for eid in HOSTILE_IDS:
                for key in HOSTILE_KEYS:
                    tag = tag_of("put", eid, key)
                    ref = system.ref(Vault, eid).options(key=key)
                    await ref.tell(Vault.put, tag)
                    told[tag] = 1
                    f.counts["keyed_tells"] += 1
                    if rng.random() < 0.3:  # a repeat: must be answered as one, applied never
                        await ref.tell(Vault.put, tag)
                        f.counts["repeats"] += 1
                    with contextlib.suppress(IdempotencyConflict):  # the same key, other args: refused
                        await ref.tell(Vault.put, tag + "?")
                        f.bad(
                            "a reused key with other arguments is refused",
                            eid,
                            "IdempotencyConflict",
                            "accepted",
                        )

        async def forwards() -> None:
            # derived ids: every (sender, key) pair gets its own outbox message and journaled ask,
            # including the pair the issue names: sender x with key q/k:z and sender x/k:q with key z
            pairs = [(e, "fwd/" + k) for e in HOSTILE_IDS for k in ("z", "q/k:z", "t:x@1.0")]
            pairs += [("x", "a/k:b"), ("x/k:a", "b")]  # sender/k:key is the same text for both
            for eid, key in pairs:
                tag = tag_of("fwd", eid, key)
                try:
                    with anyio.fail_after(ANSWER_DEADLINE * 4):
                        await system.ref(Vault, eid).options(key=key).ask(Vault.forward, tag, sink)
                except Exception as e:
                    f.bad(
                        "every forward is applied: ids derived from different senders and keys differ",
                        f"{eid!r} key {key!r}",
                        "its outbox tell and journaled ask delivered",
                        repr(e),
                    )
                    continue
                told[tag] = 1
                told[json.dumps(["tell", eid, tag])] = 1
                told[json.dumps(["ask", eid, tag])] = 1
                f.counts["forwards"] += 1

        async def shared_arguments() -> None:
            # what a handler runs on is what the call encoded, not the caller's object afterwards
            items = ["as told"]
            await system.ref(Vault, "lists").tell(Vault.keep, items)
            items.append("changed by the caller after tell returned")
            await system.ref(Vault, "lists").ask(Vault.put, tag_of("lists", "after"))
            told[tag_of("lists", "after")] = 1
            kept = [t for t in vault_notes(db) if t.startswith('["kept"')]
            if kept != [json.dumps(["kept", ["as told"]])]:
                f.bad("a handler runs on the arguments as encoded at the call", "lists", '["as told"]', kept)

        async def bad_input() -> None:
            # refused with a typed error, and nobody else in the same batch is hurt
            for bad in BAD_IDS:
                good = [tag_of("bystander-id", repr(bad), i) for i in range(20)]
                results: dict[str, BaseException | None] = {}

                async def put(eid: str, tag: str, results: dict[str, BaseException | None] = results) -> None:
                    try:
                        r = system.ref(Vault, eid)
                        await r.tell(Vault.put, tag)
                        results[tag] = None
                    except Exception as e:
                        results[tag] = e

                async with anyio.create_task_group() as tg:
                    for i, t in enumerate(good):
                        tg.start_soon(put, f"bystander-{i}", t)
                    tg.start_soon(put, bad, tag_of("bad-id", repr(bad)))
                hurt = [t for t in good if results[t] is not None]
                for t in good:
                    if results[t] is None:
                        told[t] = 1
                f.bad_many(
                    "one bad id in a batch does not fail the others' calls (bad id: " + repr(bad) + ")",
                    hurt,
                    "ok",
                    repr(results[hurt[0]]) if hurt else "",
                )
                err = results[tag_of("bad-id", repr(bad))]
                if not isinstance(err, InvalidArguments):
                    f.bad("a bad entity id gets InvalidArguments", repr(bad), "InvalidArguments", repr(err))
                    if err is None:
                        told[tag_of("bad-id", repr(bad))] = 1  # it was taken: it must then count once
            for bad in BAD_KEYS:
                good = [tag_of("bystander-key", repr(bad), i) for i in range(20)]
                results = {}

                async def put_keyed(
                    eid: str, tag: str, key: str, results: dict[str, BaseException | None] = results
                ) -> None:
                    try:
                        r = system.ref(Vault, eid)
                        await r.options(key=key).tell(Vault.put, tag)
                        results[tag] = None
                    except Exception as e:
                        results[tag] = e

                async with anyio.create_task_group() as tg:
                    for i, t in enumerate(good):
                        tg.start_soon(put_keyed, f"bystander-{i}", t, f"by/{i}/{len(bad)}/{bad.isascii()}")
                    tg.start_soon(put_keyed, "victim", tag_of("bad-key", repr(bad)), bad)
                hurt = [t for t in good if results[t] is not None]
                for t in good:
                    if results[t] is None:
                        told[t] = 1
                f.bad_many(
                    "one bad key in a batch does not fail the others' calls (bad key: " + repr(bad) + ")",
                    hurt,
                    "ok",
                    repr(results[hurt[0]]) if hurt else "",
                )
                err = results[tag_of("bad-key", repr(bad))]
                if not isinstance(err, InvalidArguments):
                    f.bad("a bad key gets InvalidArguments", repr(bad), "InvalidArguments", repr(err))
                    if err is None:
                        told[tag_of("bad-key", repr(bad))] = 1

        async def forged_step_key() -> None:
            # a caller's key equal to the key a saga uses for its own step must not stand in for it
            for a, initial in (("hk-src", 100), ("hk-dst", 100)):
                await system.ref(Account, a).options(key=f"open/{a}").ask(Account.open, initial, False)
            await system.ref(Account, "hk-src").options(key="ht-1/debit").ask(Account.withdraw, 40, "ht-1")
            await system.ref(Transfer, "ht-1").options(key="ht-1").ask(Transfer.start, "hk-src", "hk-dst", 40)
            src = await system.ref(Account, "hk-src").query(Account.get_balance)
            dst = await system.ref(Account, "hk-dst").query(Account.get_balance)
            if (src, dst) != (20, 140):
                f.bad(
                    "a caller's key cannot forge a saga's internal step (cash 40 out, then transfer 40)",
                    "hk-src/hk-dst",
                    "balances (20, 140), total 160",
                    f"balances ({src}, {dst}), total {src + dst}",
                )

        async def rearmed_timer() -> None:
            # a timer re-armed from its own handler with the same key and due time keeps looping
            times = 5
            await system.ref(Vault, "looper").tell(Vault.loop, times, "t:x@1.0")
            # the told run and its re-arms: ``times`` runs in all (each emits before it checks)
            ok = await until(
                lambda: sum(1 for t in vault_notes(db) if t.startswith('["loop", "looper"')) >= times, 5.0
            )
            n = sum(1 for t in vault_notes(db) if t.startswith('["loop", "looper"'))
            if not ok or n != times:
                f.bad("a timer re-armed for the same key and due time fires again", "looper", times, n)
            f.counts["loop_firings"] = n

        await f.guard("hostile keyed tells", keyed_puts())
        await f.guard("hostile forwards", forwards())
        await f.guard("shared arguments", shared_arguments())
        await f.guard("bad ids and keys", bad_input())
        await f.guard("forged internal step key", forged_step_key())
        await f.guard("re-armed timer", rearmed_timer())
    left = await quiet(db, 20.0)
    if left:
        f.bad("work comes to rest", "-", "empty inbox, outbox, journal", left)
    notes = vault_notes(db)
    for tag, n in told.items():
        if len(notes.get(tag, [])) != n:
            f.bad("every acknowledged call applied exactly once", tag, n, len(notes.get(tag, [])))
    for tag, where in notes.items():
        if tag not in told and not tag.startswith('["loop"') and len(where) > 1:
            f.bad("nothing applied twice", tag, "at most 1", len(where))
    return f


async def scenario_shutdown(db: Path, seed: int) -> Findings:
    """aclose() while tells and asks are in flight, again and again; what each caller was told holds.

    The callers are plain tasks (not in a task group of ours), so ``aclose()`` runs in the
    task and cancel scope that entered the system, as ``async with`` would.
    """
    f = Findings("shutdown-mid-load")
    rng = random.Random(seed)
    told: dict[str, tuple[str, str, object]] = {}  # tag -> (call kind, what the caller was told, answer)
    vaults = [f"v{i}" for i in range(6)]
    for rnd in range(6):
        system = system_on(db)
        phase(f"round {rnd}: start")
        await system.__aenter__()

        async def caller(n: int, system: ActorSystem = system, rnd: int = rnd) -> None:
            for i in itertools.count():
                kind = ("tell", "ask", "ktell", "kask")[(n + i) % 4]
                tag = tag_of("sd", rnd, n, i)
                ref = system.ref(Vault, vaults[rng.randrange(len(vaults))])
                if kind.startswith("k"):
                    ref = ref.options(key=tag)
                told[tag] = (kind, "pending", None)
                try:
                    if kind.endswith("ask"):
                        answer: object = await ref.ask(Vault.put, tag)
                    else:
                        answer = await ref.tell(Vault.put, tag)
                    told[tag] = (kind, "ok", answer)
                except SystemClosed:
                    told[tag] = (kind, "closed", None)
                    return
                except Exception as e:
                    told[tag] = (kind, f"error {type(e).__name__}", None)
                    return

        tasks = [asyncio.ensure_future(caller(n)) for n in range(24)]
        await anyio.sleep(rng.uniform(0.05, 0.3))  # the load runs a while: then the shutdown
        phase(f"round {rnd}: aclose() with calls in flight")
        await system.aclose()
        phase(f"round {rnd}: callers' answers after aclose()")
        _done, pending = await asyncio.wait(tasks, timeout=ANSWER_DEADLINE)
        for t in pending:
            t.cancel()
        if pending:
            f.bad(
                "every caller gets an answer at shutdown",
                f"round {rnd}",
                "all answered",
                f"{len(pending)} hang",
            )
        f.counts["rounds"] += 1
    phase("restart and settle")
    left = await quiet(db, 20.0)
    if left:
        f.bad("work comes to rest after the restart", "-", "empty inbox, outbox, journal", left)
    notes = vault_notes(db)
    wrong: dict[tuple[str, str, object, object], list[str]] = defaultdict(list)
    for tag, (kind, what, answer) in told.items():
        where = notes.get(tag, [])
        f.counts[what.split()[0]] += 1
        if what == "ok" and len(where) != 1:
            wrong[("an acknowledged call is applied exactly once", kind, 1, len(where))].append(tag)
        elif what == "ok" and kind.endswith("ask") and where and where[0][1] != answer:
            wrong[("an ask's answer is what was committed", kind, "seq of its event", "another")].append(tag)
        elif what == "closed" and where:
            invariant = "a call told SystemClosed is not applied (its caller may retry it)"
            wrong[(invariant, kind, 0, len(where))].append(tag)
        elif what == "pending":
            wrong[("every call gets an answer at shutdown", kind, "an answer", "none")].append(tag)
        elif len(where) > 1:
            wrong[("nothing applied twice", kind, "at most 1", len(where))].append(tag)
    for (invariant, kind, expected, seen), tags in wrong.items():
        f.bad_many(f"{invariant} [{kind}]", tags, f"applied {expected}", f"applied {seen}")
    return f


async def scenario_shutdown_parked(db: Path, seed: int) -> Findings:
    """aclose() while a handler is parked in an activity whose ``finally`` asks another entity."""
    f = Findings("shutdown-parked")
    tag = tag_of("stall", seed)
    system = system_on(db)
    await system.__aenter__()
    await system.ref(Vault, "staller").options(key=tag).tell(Vault.stall, tag, "bystander")
    await anyio.sleep(0.3)  # let the handler reach its activity (nothing to poll: it is in memory)
    phase("aclose() with a handler parked in an activity whose finally asks another entity")
    with anyio.move_on_after(30) as waited:
        await system.aclose()
    if waited.cancelled_caught:
        f.bad("aclose() returns while a handler is parked", "staller", "returned", "hung for 30 s")
        return f
    # A pause, not an end. Python runs a cancelled coroutine's ``finally`` (a suspended
    # coroutine cannot be dropped without it), so the promise is that it takes no effect:
    # its ask is refused (SystemClosed), nothing of the invocation is kept, and the
    # invocation is still in the inbox to resume after the next start.
    cleanup = [t for t in vault_notes(db) if t.startswith('["finally"')]
    if cleanup:
        f.bad("a paused handler's cleanup takes no effect", "bystander", "no cleanup note", cleanup)
    pending = _rows(db, "SELECT count(*) FROM inbox WHERE entity_id = 'staller'")[0][0]
    if pending != 1:
        f.bad("a paused invocation stays in the inbox to resume", "staller", 1, pending)
    f.counts["finally_ran_harmlessly"] = len(FINALLY_RAN)
    return f


def sender_of(tag: str) -> str:
    """The vault a failed-writes caller sent ``tag`` to."""
    _, n, i = json.loads(tag)
    return f"w{(int(n) * 7 + int(i)) % 5}"


def ticked_since(db: Path, since: float) -> bool:
    """Whether the ticker recorded a tick due at or after ``since``."""
    return bool(
        _rows(
            db,
            "SELECT count(*) FROM events WHERE entity_type = 'TortureTicker' "
            "AND json_extract(data, '$.due') >= ?",
            (since,),
        )[0][0]
    )


def _fault_when(rng: random.Random, internal: float, other: float) -> Any:
    from persistence.store import FireTimer, TakeOutbox

    def when(args: tuple[Any, ...]) -> bool:
        batch = args[0]
        if any(isinstance(w, (FireTimer, TakeOutbox)) for w in batch):
            return rng.random() < internal
        return rng.random() < other

    return when


async def scenario_store_faults(db: Path, seed: int) -> Findings:
    """A share of writes fail (timer firings and outbox deliveries most): nothing lost, nothing twice."""
    from persistence.faults import FaultyStore

    f = Findings("failed-writes")
    rng = random.Random(seed)
    store = FaultyStore(SqliteStore(db))
    told: dict[str, str] = {}
    reminders: set[str] = set()
    forwards: set[str] = set()
    async with ActorSystem(
        store, entities=ENTITIES, passivate_after=dt.timedelta(milliseconds=300)
    ) as system:
        await system.ref(Ticker, "ticker").options(key="start").ask(Ticker.start)
        store.fail("write", "io", times=-1, when=_fault_when(rng, 0.35, 0.08))

        async def caller(n: int) -> None:
            for i in range(25):
                kind = ("put", "later", "forward", "uput")[(n + i) % 4]
                tag = tag_of("fw", n, i)
                ref = system.ref(Vault, sender_of(tag))
                while True:  # a keyed call is retried with its key until it is acknowledged
                    try:
                        with anyio.fail_after(ANSWER_DEADLINE):
                            if kind == "put":
                                await ref.options(key=tag).ask(Vault.put, tag)
                            elif kind == "later":
                                await ref.options(key=tag).tell(Vault.later, tag, "r/" + tag)
                                reminders.add(tag)
                            elif kind == "forward":
                                await ref.options(key=tag).ask(Vault.forward, tag, "w-sink")
                                forwards.add(tag)
                            else:  # unkeyed: a failure means not accepted, and it is not retried
                                try:
                                    await ref.tell(Vault.put, tag)
                                except StoreError:
                                    told[tag] = "failed"
                                    break
                        told[tag] = "ok"
                        break
                    except HandlerFailed:
                        # the handler's own journal write failed on every attempt: dead-lettered,
                        # so its invocation must have left nothing (its journaled ask stays done)
                        told[tag] = "dead-lettered"
                        break
                    except StoreError:
                        f.counts["store_errors_seen"] += 1
                        await anyio.sleep(0.005)  # a client's back-off before its keyed retry
                    except TimeoutError:
                        f.bad("every call gets an answer while writes fail", tag, kind, "no answer")
                        told[tag] = "hung"
                        break

        phase("callers under failing writes")
        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(caller, n)
        f.counts["injected_failures"] = store.failures
        store.clear()
        cleared = time.time()

        # no restart: the timers and the outbox must get through on their own
        def delivered() -> bool:
            notes, rem = vault_notes(db), vault_reminders(db)
            return (
                all(json.dumps(["tell", sender_of(t), t]) in notes for t in forwards)
                and all(rem[t] for t in reminders)
                and ticked_since(db, cleared)
            )

        phase("waiting for timers and outbox after the faults (no restart)")
        if not await until(delivered, 10.0):
            notes, rem = vault_notes(db), vault_reminders(db)
            f.bad_many(
                "a timer whose firing failed to commit fires without a restart",
                sorted(t for t in reminders if not rem[t]),
                "fired within 10s of the faults' end",
                "not fired",
            )
            f.bad_many(
                "an outbox message whose delivery failed is delivered without a restart",
                sorted(t for t in forwards if json.dumps(["tell", sender_of(t), t]) not in notes),
                "delivered within 10s of the faults' end",
                "not delivered",
            )
            if not ticked_since(db, cleared):
                f.bad(
                    "the recurring ticker ticks again once writes succeed", "ticker", "a tick", "none in 10s"
                )
    left = await quiet(db, 20.0)
    if left:
        f.bad("work comes to rest after a restart", "-", "empty inbox, outbox, journal", left)
    notes, rem = vault_notes(db), vault_reminders(db)
    for tag, what in told.items():
        n = len(notes.get(tag, []))
        if what == "ok" and n != 1:
            f.bad("an acknowledged call is applied exactly once", tag, 1, n)
        if what == "failed" and n != 0:
            f.bad("a tell that failed with StoreError was not accepted", tag, 0, n)
        if what == "dead-lettered" and n != 0:
            f.bad("a dead-lettered call left no event", tag, 0, n)
        f.counts[what] += 1
    for tag in reminders:
        if rem[tag] != 1:
            f.bad("every timer fires exactly once", tag, 1, rem[tag])
    for tag, where in notes.items():
        if len(where) > 1:
            f.bad("nothing applied twice", tag, 1, len(where))
    ticks = Counter(
        json.loads(d)["due"]
        for (d,) in _rows(db, "SELECT data FROM events WHERE type_name = 'torture.ticked'")
    )
    for due, n in ticks.items():
        if n > 1:
            f.bad("no recurring tick fires twice", f"ticker@{due}", 1, n)
    return f


async def scenario_base_exceptions(db: Path, seed: int) -> Findings:
    """Handlers that raise a BaseException or await a cancelled helper: answered, rolled back."""
    f = Findings("base-exceptions")
    told: dict[str, str] = {}
    async with system_on(db) as system:
        for i, how in enumerate(("base", "cancelled", "base", "cancelled")):
            phase(f"boom {i} ({how})")
            eid = f"fragile-{i}"
            tag = tag_of("boom", how, i)
            before = await system.ref(Vault, eid).ask(Vault.put, tag_of("before", i))
            ref = system.ref(Vault, eid).options(key=tag) if i >= 2 else system.ref(Vault, eid)
            try:
                with anyio.fail_after(ANSWER_DEADLINE):
                    await ref.ask(Vault.boom, tag, how)
                told[tag] = "ok"
            except TimeoutError:
                told[tag] = "hung"
                f.bad(
                    "an ask whose handler raises a BaseException gets an answer",
                    eid,
                    f"an answer ({how})",
                    "none",
                )
            except Exception as e:
                told[tag] = f"error {type(e).__name__}"
            f.counts[told[tag].split()[0]] += 1
            try:
                with anyio.fail_after(ANSWER_DEADLINE):
                    seen = await system.ref(Vault, eid).query(Vault.get_count)
                if seen != before:
                    f.bad("a handler that did not end normally leaves no trace in memory", eid, before, seen)
                with anyio.fail_after(ANSWER_DEADLINE):
                    after = await system.ref(Vault, eid).ask(Vault.put, tag_of("after", i))
                if after != before + 1:
                    f.bad("the entity keeps serving, from its committed state", eid, before + 1, after)
            except TimeoutError:
                f.bad("the entity keeps serving after a BaseException", eid, "an answer", "none")
        phase("aclose() after handlers raised BaseExceptions")
        await system.aclose()
    phase("restart and settle")
    left = await quiet(db, 20.0)
    if left:
        f.bad("work comes to rest after a restart", "-", "empty inbox, outbox, journal", left)
    notes = vault_notes(db)
    for tag in told:
        if notes.get(tag):
            f.bad("a handler that raised leaves no event", tag, 0, len(notes[tag]))
    return f


SCENARIOS = {
    "hostile": scenario_hostile,
    "shutdown": scenario_shutdown,
    "shutdown-parked": scenario_shutdown_parked,
    "failed-writes": scenario_store_faults,
    "base-exceptions": scenario_base_exceptions,
}
"""The fault classes, by the name ``--faults`` takes."""


WATCHDOG = {"shutdown-parked": 10.0}
"""Seconds before a fault-class child reports itself hung (default: two thirds of the deadline)."""


def scenario_child(name: str, db: Path, seed: int) -> int:
    """Run one fault class here; its violations as JSON lines, then ``done {counts}``."""
    logging.getLogger("actors").setLevel(logging.CRITICAL)

    def hung() -> None:  # a hang (a shutdown shielded from cancellation) cannot be timed out in-loop
        v = {
            "fault": name,
            "invariant": "every step finishes (no hang)",
            "entity": "-",
            "expected": f"done within {limit:g}s",
            "seen": f"hung in: {PHASE[0]}",
        }
        print(json.dumps(v), flush=True)
        print("done " + json.dumps({"hung": 1}), flush=True)
        os._exit(0)

    limit = WATCHDOG.get(name, SCENARIO_DEADLINE * 2 / 3)
    dog = threading.Timer(limit, hung)
    dog.daemon = True
    dog.start()
    f = anyio.run(SCENARIOS[name], db, seed)
    dog.cancel()
    print("done " + json.dumps(dict(f.counts)), flush=True)
    return 0


def run_scenario(name: str, workdir: Path, seed: int) -> tuple[list[dict[str, str]], dict[str, int], float]:
    """Run a fault class in a child under a deadline: (violations, counts, seconds)."""
    db = workdir / f"{name}.db"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "bench.torture", "--scenario", name, "--db", str(db), "--seed", str(seed)]
    started = time.monotonic()
    violations: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=root, timeout=SCENARIO_DEADLINE
        )
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = "", None
    for line in out.splitlines():
        if line.startswith("{"):
            violations.append(json.loads(line))
        elif line.startswith("done "):
            counts = json.loads(line[5:])
    if rc is None:
        violations.append(
            {
                "fault": name,
                "invariant": "the class finishes",
                "entity": "-",
                "expected": f"done within {SCENARIO_DEADLINE:g}s",
                "seen": "hung (killed)",
            }
        )
    elif rc != 0 or not counts:
        violations.append(
            {
                "fault": name,
                "invariant": "the class finishes",
                "entity": "-",
                "expected": "exit 0",
                "seen": f"exit {rc}: {err[-600:]}",
            }
        )
    return violations, counts, time.monotonic() - started


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


def parked_workflows(db: Path) -> int:
    """Workflows a kill left parked at a wait (journaled with a park and no resume)."""
    rows = _rows(
        db,
        "SELECT result FROM journal WHERE entity_type = 'TortureApproval' AND kind = 'wait'",
    )
    return sum(1 for (r,) in rows if "park" in (d := json.loads(r)) and "resume" not in d)


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
    wf = Counter(
        r[0]
        for r in _rows(
            db,
            "SELECT type_name FROM events WHERE entity_type = 'TortureApproval' "
            "AND type_name IN ('torture.wf_started', 'torture.wf_ended')",
        )
    )
    pending["workflows_open"] = wf["torture.wf_started"] - wf["torture.wf_ended"]
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

    def monotonic(self) -> float:
        """Real monotonic time: retry backoffs still pass while business time stands still."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of real time (a backoff)."""
        await anyio.sleep(max(seconds, 0))


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


def read_wf_acks(path: Path) -> dict[str, set[str]]:
    """What the workflow sender wrote per workflow: ``intent-*`` before a call, and
    ``started``/``approved``/``cancelled`` after it returned (a torn last line is dropped)."""
    out: dict[str, set[str]] = defaultdict(set)
    if not path.exists():
        return out
    for line in path.read_text().splitlines(keepends=True):
        if line.endswith("\n"):
            wid, what = line.split()
            out[wid].add(what)
    return out


def check_workflows(db: Path, acks: dict[str, set[str]], rep: Report) -> None:
    """Every started workflow ended exactly once, as its sender's calls allow; each grant
    it held ended once, spent if approved, released (compensated) otherwise."""
    started: Counter[str] = Counter()
    ended: dict[str, list[str]] = defaultdict(list)
    approved: Counter[str] = Counter()
    held: Counter[str] = Counter()
    spent: Counter[str] = Counter()
    released: Counter[str] = Counter()
    for eid, tname, data in _rows(
        db,
        "SELECT entity_id, type_name, data FROM events WHERE entity_type IN "
        "('TortureApproval', 'TortureGrants') ORDER BY entity_type, entity_id, seq",
    ):
        d = json.loads(data)
        if tname == "torture.wf_started":
            started[eid] += 1
        elif tname == "torture.wf_ended":
            ended[eid].append(d["outcome"])
        elif tname == "torture.wf_approved":
            approved[eid] += 1
        elif tname == "torture.grant_held":
            held[d["workflow"]] += 1
        elif tname == "torture.grant_spent":
            spent[d["workflow"]] += 1
        elif tname == "torture.grant_released":
            released[d["workflow"]] += 1
    outcomes: Counter[str] = Counter()
    for wid, what in acks.items():
        if "started" in what and not started[wid]:
            rep.bad(f"acknowledged workflow {wid} never started")
    for wid in set(started) | set(ended) | set(held):
        what = acks.get(wid, set())
        if started[wid] != 1:
            rep.bad(f"workflow {wid} started {started[wid]} times")
        if not what:
            rep.bad(f"workflow {wid} ran, but its sender never meant to start it")
        ends = ended.get(wid, [])
        if len(ends) != 1:
            rep.bad(f"workflow {wid} ended {len(ends)} times: {ends}")
            continue
        outcome = ends[0]
        outcomes[outcome] += 1
        if approved[wid] > 1:
            rep.bad(f"workflow {wid} approved {approved[wid]} times")
        if outcome == "approved" and "intent-approve" not in what:
            rep.bad(f"workflow {wid} approved, but nobody sent an approval")
        if outcome == "cancelled" and "intent-cancel" not in what:
            rep.bad(f"workflow {wid} cancelled, but nobody asked for it")
        if "cancelled" in what and outcome == "approved":
            rep.bad(f"workflow {wid}: its cancel was acknowledged, yet it was approved")
        if outcome not in ("approved", "timed out", "cancelled"):
            rep.bad(f"workflow {wid} ended as {outcome!r}")
        moved = (held[wid], spent[wid], released[wid])
        want = (1, 1, 0) if outcome == "approved" else (1, 0, 1)
        if outcome == "cancelled" and moved == (0, 0, 0):
            want = moved  # cancelled at the hold's ask, before it was sent: nothing held
        if moved != want:
            rep.bad(f"workflow {wid} {outcome} with grant (held, spent, released) = {moved}, expected {want}")
    rep.stats.update(
        {
            "workflows": len(started),
            "wf_approved": outcomes["approved"],
            "wf_timed_out": outcomes["timed out"],
            "wf_cancelled": outcomes["cancelled"],
        }
    )


@attrs.define
class Report:
    violations: list[str] = attrs.field(factory=list)
    stats: dict[str, int] = attrs.field(factory=dict)

    def bad(self, text: str) -> None:
        self.violations.append(text)


def check(db: Path, acks: dict[str, Ack], live: dict[str, int], acks_path: Path | None = None) -> Report:
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
    if acks_path is not None:
        check_workflows(db, read_wf_acks(Path(f"{acks_path}.wf")), rep)
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
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), acks, Path(f"{acks}.wf"), log):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    rng = random.Random(args.seed)
    anyio.run(setup, db)
    violations: list[str] = []
    interrupted = parked_at_kills = 0
    for gen in range(args.kills):
        problem = run_generation(args, db, acks, log, gen, rng)
        if problem:
            violations.append(problem)
            break
        interrupted += in_flight(db) > 0
        parked_at_kills += parked_workflows(db)
        if args.verbose and gen % 50 == 49:
            print(f"torture: {gen + 1} kills, {len(read_acks(acks))} acked", flush=True)
    live: dict[str, int] = {}
    try:
        live = anyio.run(final_generation, db, args.settle)
        anyio.run(quiesce, db, args.settle)
    except SystemExit as e:
        violations.append(str(e))
    rep = check(db, read_acks(acks), live, acks)
    violations += rep.violations
    kill_elapsed = time.monotonic() - started
    fault_results: dict[str, dict[str, Any]] = {}
    workdir = Path(f"{db}.faults")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    for name in args.faults:
        found, counts, secs = run_scenario(name, workdir, args.seed)
        fault_results[name] = {"violations": found, "counts": counts, "seconds": round(secs, 1)}
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
        f"workflows={s['workflows']} approved={s['wf_approved']} timed_out={s['wf_timed_out']} "
        f"cancelled={s['wf_cancelled']} parked_at_kills={parked_at_kills} "
        f"elapsed={kill_elapsed:.1f}s "
        f"violations={len(violations)} {'OK' if not violations else 'FAILED'}",
        flush=True,
    )
    fault_violations = 0
    for name, res in fault_results.items():
        found = res["violations"]
        fault_violations += len(found)
        for v in found[:15]:
            print(
                f"FAULT VIOLATION [{v['fault']}] {v['invariant']}: {v['entity']}: "
                f"expected {v['expected']}, saw {v['seen']}"
            )
        if len(found) > 15:
            print(f"... and {len(found) - 15} more in {name}")
        counts = " ".join(f"{k}={n}" for k, n in sorted(res["counts"].items()))
        print(
            f"faults: class={name} {counts} elapsed={res['seconds']}s "
            f"violations={len(found)} {'OK' if not found else 'FAILED'}",
            flush=True,
        )
    total = len(violations) + fault_violations
    print(
        f"torture total: kills={args.kills} fault_classes={len(fault_results)} violations={total} "
        f"elapsed={elapsed:.1f}s {'OK' if not total else 'FAILED'}",
        flush=True,
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "command": "python -m bench.torture " + " ".join(sys.argv[1:]),
                    "kills": args.kills,
                    "seed": args.seed,
                    "kill_loop": {
                        "violations": violations,
                        "stats": {**rep.stats, "parked_at_kills": parked_at_kills},
                        "seconds": round(kill_elapsed, 1),
                    },
                    "faults": fault_results,
                    "violations": total,
                    "seconds": round(elapsed, 1),
                    "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "cpus": os.cpu_count(),
                },
                indent=2,
                ensure_ascii=False,
            )
            + "\n"
        )
    violations += ["fault"] * fault_violations
    if tmp is not None and not violations and not args.keep:
        shutil.rmtree(tmp)
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
    p.add_argument(
        "--faults",
        default="all",
        help=f"fault classes to run after the kills: all, none, or a comma list of {', '.join(SCENARIOS)}",
    )
    p.add_argument("--json", help="also write the results (kills, violations, duration, command) here")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gen", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.scenario:
        return scenario_child(args.scenario, Path(args.db), args.seed)
    if args.faults == "all":
        args.faults = list(SCENARIOS)
    elif args.faults == "none":
        args.faults = []
    else:
        args.faults = [x.strip() for x in args.faults.split(",") if x.strip()]
        unknown = [x for x in args.faults if x not in SCENARIOS]
        if unknown:
            p.error(f"unknown fault classes {unknown}; choose from {', '.join(SCENARIOS)}")
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
