"""Several systems on one shared store: membership, shard ownership, handoff and
failover, and the wake-ups between members. Internal.

A system on a shared store is a **member** (it owns shards) or, with
``serve=False``, a **client** (it owns none). Each member heartbeats its row of the
membership table; every ``lease_ttl / 5`` it also *balances*: the shards whose
rendezvous hash ranks it first among the live serving members are its target; it
claims those that are free or whose owner is dead (each claim raises the shard's
epoch), and hands off (at most :data:`MOVES` per round) owned shards whose target is
another live member. A member that stops heartbeating is declared dead by the
database's clock once its lease is over, and the others claim its shards. Leaving
hands everything off at once.

Safety never rests on timing: the store fences every commit with the epochs this
member holds (``SharedStore.set_fence``), so a member paused past its lease or cut
off commits nothing after it resumes; the committer reports such a refusal
(``ShardLost``) and the member gives the shard up here.

Taking a shard over resumes it as after a crash: its inbox is routed to actors,
its outbox delivered, its timers read. Signals accepted by other members wake the
owner (``publish("inbox", shard)``); it also polls its shards' inbox, because a
wake-up can be lost and SQLite has none.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Collection
from typing import Any

import anyio
import attrs

from actors._directory import Directory
from actors._ids import parse_start_id
from actors._journal import CANCEL_STEP, cancel_reason
from actors._kernel import Kernel
from actors.errors import StoreError
from persistence.store import MemberRecord, SharedStore

MOVES = 32
"""Shards a member hands off per balancing round at most (no rebalancing storms)."""

POLL_LIMIT = 1000
"""Inbox rows one poll reads (the oldest pending of the owned shards)."""


@attrs.frozen
class Member:
    """A member (or client) of a shared store, as ``ActorSystem.members()`` shows it."""

    member_id: str
    name: str
    serves: bool
    """False for a client (``serve=False``): it owns no shards."""
    status: str
    """``alive``, ``left`` or ``dead``."""
    heartbeat_at: dt.datetime
    """Its last heartbeat (the database's clock), UTC."""
    seen_ago: float
    """Seconds since that heartbeat, by the database's clock."""
    lease_ttl: float
    """Its lease in seconds."""
    shards: tuple[int, ...]
    """The shards it owns now."""
    me: bool
    """Whether this is the system asking."""


def _rank(member_id: str, shard: int) -> bytes:
    return hashlib.blake2b(f"{member_id}\0{shard}".encode(), digest_size=8).digest()


def placement(members: Collection[str], shard: int) -> str:
    """The member a shard belongs on: the highest rendezvous hash (stable as members
    come and go: only the shards of a member that joins or leaves move)."""
    return max(members, key=lambda m: _rank(m, shard))


class Cluster:
    """This system's membership of a shared store (see the module docstring)."""

    def __init__(
        self,
        kernel: Kernel,
        directory: Directory,
        store: SharedStore,
        *,
        serve: bool,
        lease_ttl: float,
        name: str | None,
    ) -> None:
        self.kernel = kernel
        self.directory = directory
        self.store = store
        self.serve = serve
        self.ttl = lease_ttl
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.member_id = ""
        self.beat = lease_ttl / 5
        self.poll = 1.0 if store.wakes else 0.05
        self._poll_wake = anyio.Event()
        self._balance_wake = anyio.Event()
        self.publisher = Publisher(store, kernel.log)
        self._balancing = anyio.Lock()
        self._unrecovered: set[int] = set()
        """Shards claimed whose inbox and outbox were not read yet."""
        self._recover_wake = anyio.Event()
        self.joined = False

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Join, claim this member's share, and start heartbeating, balancing and polling."""
        kernel, store = self.kernel, self.store
        own = kernel.shards
        own.clustered = True
        own.count = store.shard_count
        own.wake_inbox = self._wake_inbox
        own.send = self._send
        own.lose = self._lost
        kernel.outcomes.publish = self._outcome
        store.subscribe(self._heard)
        await self._join()
        if self.serve:
            await self.balance()
            await self._recover()  # started: what it took at once is resumed
        tasks = kernel.tasks
        tasks.start(self._heartbeats)
        tasks.start(self.publisher.run)
        if self.serve:
            tasks.start(self._balancer)
            tasks.start(self._recoverer)
            tasks.start(self._poller)

    async def _join(self) -> None:
        self.joined = False
        self.member_id = f"m-{uuid.uuid4().hex}"  # a failed join may have joined: never reuse
        self.kernel.shards.member_id = self.member_id
        self.store.set_fence(self.member_id, {})
        await self.store.join(self.member_id, self.name, serves=self.serve, ttl=self.ttl)
        self.joined = True

    async def leave(self) -> None:
        """Hand off every shard at once (the actors are already paused and the
        committer drained): the other members take them without waiting for a lease."""
        own = self.kernel.shards
        self.store.set_fence(self.member_id, {})
        own.epochs.clear()
        if not self.joined:
            return
        self.joined = False
        try:
            await self.store.leave(self.member_id)
            await self.store.publish("shards", [self.member_id])
        except StoreError as e:  # the lease ends by itself: the others take over then
            self.kernel.log.warning("leaving the cluster failed (%s); the lease will expire", e)

    # ------------------------------------------------------------ heartbeats and balance
    async def _heartbeats(self) -> None:
        while True:
            await anyio.sleep(self.beat)
            try:
                if not self.joined:  # a join that failed (the store was down): again
                    await self._join()
                    self._balance_wake.set()
                    continue
                alive = await self.store.heartbeat(self.member_id)
                if not alive:  # declared dead (paused or cut off past the lease): start over
                    self.kernel.log.warning(
                        "member %s was declared dead: giving up its %d shards and joining again",
                        self.member_id,
                        len(self.kernel.shards.epochs),
                    )
                    self.joined = False
                    await self.give_up(frozenset(self.kernel.shards.epochs), release=False)
                    await self._join()
                    self._balance_wake.set()
            except StoreError as e:
                self.kernel.log.warning("heartbeat failed: %s", e)

    async def _balancer(self) -> None:
        while True:
            with anyio.move_on_after(self.beat):
                await self._balance_wake.wait()
            self._balance_wake = anyio.Event()
            try:
                await self.balance()
            except StoreError as e:
                self.kernel.log.warning("balancing shards failed: %s", e)

    async def balance(self) -> None:
        """Claim this member's free target shards; hand off a few that belong elsewhere."""
        async with self._balancing:
            if self.kernel.tasks.closing or not self.joined:
                return
            steps = _Steps()
            store, own, me = self.store, self.kernel.shards, self.member_id
            await store.claim(me, ())  # declares dead the members whose lease is over
            steps.done("expire")
            live = [m.member_id for m in await store.members() if _live(m)]
            steps.done("members")
            if me not in live:
                return
            await self._reconcile()
            steps.done("reconcile")
            targets = {s for s in range(own.count) if placement(live, s) == me}
            want = targets - own.epochs.keys()
            got = await store.claim(me, want) if want else {}
            steps.done("claim")
            self.kernel.log.debug(
                "balance %s: %d live, %d targets, %d owned, %d wanted, %d claimed",
                me,
                len(live),
                len(targets),
                len(own.epochs),
                len(want),
                len(got),
            )
            if got:
                await self._adopt(got)
                steps.done("adopt")
            away = sorted(own.epochs.keys() - targets)[:MOVES]
            if away:
                await self._give_up(frozenset(away), release=True)
                steps.done("hand off")
            if steps.total > self.ttl / 2:  # a slow round delays takeovers: say where it went
                self.kernel.log.warning("balancing round of %s took %s", me, steps)

    async def _reconcile(self) -> None:
        """Make what this member believes it owns agree with the shard table: a claim or
        a release whose answer was lost (the store failed mid-call) leaves them apart,
        and then nobody would take those shards. Shards it holds that the table gives
        to another (or at another epoch) are given up; shards the table gives to it
        that it does not know of are released, so their rightful member claims them."""
        own, me = self.kernel.shards, self.member_id
        table = {r.shard: r for r in await self.store.shard_map()}
        stale = frozenset(
            s for s, e in own.epochs.items() if (r := table.get(s)) is None or r.owner != me or r.epoch != e
        )
        if stale:
            self.kernel.log.warning(
                "member %s no longer owns shards %s: giving them up", me, sorted(stale)[:10]
            )
            for s in stale:
                del own.epochs[s]
            await self._give_up(stale, release=False)
        unknown = {s: r.epoch for s, r in table.items() if r.owner == me and s not in own.epochs}
        if unknown:
            self.kernel.log.warning(
                "member %s owns shards %s it did not know of: releasing them", me, sorted(unknown)[:10]
            )
            await self.store.release(me, unknown)

    async def _adopt(self, got: dict[int, int]) -> None:
        """Shards just claimed: fence them and resume their work as after a crash."""
        own = self.kernel.shards
        own.epochs.update(got)
        self.store.set_fence(self.member_id, own.epochs)
        self.kernel.log.info("member %s took %d shards", self.member_id, len(got))
        self.kernel.timers.reload()
        self._unrecovered.update(got)
        self._recover_wake.set()

    async def _recoverer(self) -> None:
        """Resume the shards taken over, outside the balancing rounds: a backlog of
        thousands of signals takes a while to route (their actors activate and read
        the store), and the next round must not wait for it to claim more shards."""
        while True:
            with anyio.move_on_after(self.beat):
                await self._recover_wake.wait()
            self._recover_wake = anyio.Event()
            try:
                await self._recover()
            except StoreError as e:  # what is left is read again next time
                self.kernel.log.warning("resuming shards taken over failed: %s", e)

    async def _recover(self) -> None:
        """Route the inbox and deliver the outbox of shards taken over (a shard given up
        meanwhile routes nothing more here: its actors are refused by ``owns``)."""
        own = self.kernel.shards
        shards = frozenset(s for s in self._unrecovered if s in own.epochs)
        self._unrecovered.intersection_update(own.epochs)
        if shards:
            await self.directory.recover(shards=shards)
            await self.directory.recover_outbox(shards=shards)
        self._unrecovered.difference_update(shards)

    def _lost(self, shards: Collection[int]) -> None:
        """The store refused a commit: these shards are someone else's now."""
        own = self.kernel.shards
        lost = frozenset(s for s in shards if s in own.epochs)
        for s in lost:  # at once: nothing more is routed to them here
            del own.epochs[s]
        if lost:
            self.kernel.log.warning(
                "member %s lost shards %s to another member", self.member_id, sorted(lost)[:10]
            )
            self.kernel.tasks.spawn(lambda: self.give_up(lost, release=False))

    async def give_up(self, shards: frozenset[int], *, release: bool) -> None:
        """:meth:`_give_up` from outside a balancing round: it waits for the round, so
        no round claims and resumes a shard while its actors are still being stopped
        (the resumed actor would be dropped with them and run on, unseen)."""
        async with self._balancing:
            await self._give_up(shards, release=release)

    async def _give_up(self, shards: frozenset[int], *, release: bool) -> None:
        """Stop running these shards here: pause their actors (a commit under way
        finishes), drop them and their timers, then (a handoff) release the shards.
        The caller holds the balancing lock."""
        if not shards:
            return
        kernel, own = self.kernel, self.kernel.shards
        epochs = {s: own.epochs.pop(s) for s in shards if s in own.epochs}
        moving = [
            (key, a) for key, a in list(self.directory.actors.items()) if own.shard(key[0], key[1]) in shards
        ]
        waits: list[Any] = []
        for _key, actor in moving:
            self.directory.move_pending(actor)
            actor.pause()
            if actor.task is not None:
                waits.append(actor.task)
            waits.extend(r.task for r in actor.runs if r.task is not None)
        if waits:  # bounded: a drain stuck on a dead connection must not stop balancing
            # asyncio.wait, not gather under a cancel scope: when the deadline cancelled a
            # gather whose tasks then ended normally (a run's own scope takes its cancel),
            # the CancelledError left the scope and killed this task (the balancer) silently
            await asyncio.wait(waits, timeout=self.ttl)
        for key, actor in moving:
            if self.directory.actors.get(key) is actor:
                del self.directory.actors[key]
        kernel.timers.forget(shards)
        kernel.timers.reload()
        self.store.set_fence(self.member_id, own.epochs)
        if release and epochs:
            await self.store.release(self.member_id, epochs)
            self._send("shards", self.member_id)
            self.kernel.log.info("member %s handed off %d shards", self.member_id, len(epochs))

    # ------------------------------------------------------------ the inbox of owned shards
    async def _poller(self) -> None:
        own = self.kernel.shards
        while True:
            with anyio.move_on_after(self.poll):
                await self._poll_wake.wait()
            self._poll_wake = anyio.Event()
            if not own.epochs:
                continue
            own.poll_gen += 1
            gen = own.poll_gen
            before = dict(own.epochs)  # rows of a shard that moved during the read are stale
            try:
                rows = await self.store.read_inbox(after=0, limit=POLL_LIMIT, shards=frozenset(before))
            except StoreError as e:
                self.kernel.log.warning("reading the inbox failed: %s", e)
                continue
            routed = 0
            for entry in rows:
                s = entry.signal
                if s.signal_id not in own.recent and own.same_epoch(s, before):
                    routed += self.directory.route_stored(s, recovered=True)
            own.recent = {k: v for k, v in own.recent.items() if v >= gen}
            if len(rows) >= POLL_LIMIT and routed:
                self._poll_wake.set()  # more may wait behind these: read again soon

    # ------------------------------------------------------------ wake-ups
    def _wake_inbox(self, shard: int) -> None:
        self._send("inbox", str(shard))

    def _outcome(self, signal_id: str) -> None:
        self._send("outcome", signal_id)

    def _send(self, topic: str, item: str) -> None:
        self.publisher.send(topic, item)

    def _heard(self, topic: str, item: str) -> None:
        own = self.kernel.shards
        if topic == "inbox":
            if item == "*" or (item.isdecimal() and len(item) <= 9 and int(item) in own.epochs):
                self._poll_wake.set()
        elif topic == "outcome":
            self.kernel.outcomes.poke(item)
        elif topic == "shards":
            if item != self.member_id:
                self._balance_wake.set()
        elif topic == "cancel" and item != "*":
            self.kernel.tasks.spawn(lambda: reach_cancel(self.kernel, item))

    # ------------------------------------------------------------ what people see


async def reach_cancel(kernel: Kernel, handle_id: str) -> None:
    """Another member recorded a cancellation of an invocation that may run here."""
    try:
        etype, eid = parse_start_id(handle_id)
    except Exception:  # a wake-up names no valid handle: ignore it
        return
    if not kernel.shards.owns(etype, eid):
        return
    try:
        entries = await kernel.store.read_journal(etype, eid, handle_id)
    except StoreError as failed:  # the invocation reads its journal when it runs again
        kernel.log.warning("reading the cancel of %s failed: %s", handle_id, failed)
        return
    for e in entries:
        if e.step == CANCEL_STEP:
            kernel.outcomes.cancel(handle_id, cancel_reason(e.result))


async def list_members(store: SharedStore, me: str) -> list[Member]:
    """Every member row with the shards it owns now (``me``: the asking member's id)."""
    rows = await store.members()
    owners: dict[str, list[int]] = {}
    for r in await store.shard_map():
        if r.owner is not None:
            owners.setdefault(r.owner, []).append(r.shard)
    return [
        Member(
            m.member_id,
            m.name,
            m.serves,
            m.status,
            dt.datetime.fromtimestamp(m.heartbeat_at, dt.UTC),
            m.seen_ago,
            m.ttl,
            tuple(owners.get(m.member_id, ())),
            m.member_id == me,
        )
        for m in rows
    ]


class Publisher:
    """Wakes other members: items to publish are gathered per topic and sent by one
    task after (never inside) the commits that made them, best effort."""

    def __init__(self, store: SharedStore, log: logging.Logger) -> None:
        self.store = store
        self.log = log
        self._wake = anyio.Event()
        self._outgoing: dict[str, set[str]] = {
            "inbox": set(),
            "outcome": set(),
            "shards": set(),
            "cancel": set(),
        }

    def send(self, topic: str, item: str) -> None:
        """Publish ``item`` on ``topic`` soon."""
        self._outgoing[topic].add(item)
        self._wake.set()

    async def run(self) -> None:
        """Publish what was sent, forever (a task of the system)."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            for topic, items in self._outgoing.items():
                if items:
                    self._outgoing[topic] = set()
                    try:
                        await self.store.publish(topic, sorted(items))
                    except StoreError as e:  # best effort: members poll as well
                        self.log.warning("waking other members failed: %s", e)


class _Steps:
    """Seconds each step of a balancing round took (for a warning when it was slow)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.steps: list[tuple[str, float]] = []

    def done(self, step: str) -> None:
        now = time.monotonic()
        self.steps.append((step, now - self.last))
        self.last = now

    @property
    def total(self) -> float:
        return self.last - self.start

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {t:.2f}" for name, t in self.steps)
        return f"{self.total:.2f} s ({parts})"


def _live(m: MemberRecord) -> bool:
    return m.status == "alive" and m.serves and m.seen_ago <= m.ttl
