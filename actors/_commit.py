"""Group commit: many actors' writes batched into one store transaction.

Callers :meth:`GroupCommitter.submit` a write and wait; one task drains the queue,
writing everything that arrived while the previous transaction ran (adaptive
batching: the busier the system, the larger the batch). Each caller gets its own
result, or the batch's StoreError. An ``after`` callback runs in the committer,
in submission order, before the caller wakes: routing accepted signals there keeps
them in acceptance order.

Two rules keep one write's trouble its own:

- **Isolation.** A batch that fails on something other than the store's health
  (an I/O error, a full disk, a lock) may have failed on one write's own data; it
  is split in halves and each half written again, so only the offending write fails.
- **Internal writes are retried until they commit.** A write nobody waits for (a
  timer firing, an outbox delivery, a snapshot) that fails is queued again after a
  backoff on the system's clock, until it commits or the system closes (then the
  next start redoes it from what is stored).

On close, the committer writes everything queued, answering each caller truthfully,
then refuses new writes with ``SystemClosed``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from actors._clock import Clock
from actors._observing import SafeObserver
from actors._policies import SupervisorPolicy
from actors._shards import Ownership
from actors._tasks import Tasks
from actors._work import Work
from actors.errors import ShardLost, SignalTaken, StoreError, StoreLocked, SystemClosed
from persistence.store import (
    Accept,
    Commit,
    FireTimer,
    Journal,
    Prune,
    Requeue,
    SaveSnapshot,
    Store,
    TakeOutbox,
    Write,
    WriteResult,
    WritesNow,
)

After = Callable[[WriteResult], None]


class Group:
    """Writes that must go in one transaction (a workflow's checkpoint: its events and
    its journal). ``submit`` returns the list of their results."""

    __slots__ = ("writes",)

    def __init__(self, writes: Sequence[Write]) -> None:
        self.writes = tuple(sorted(writes, key=lambda w: _RANK[type(w)]))


# Commits go first, so an Accept of a key that a Commit in the same batch marks as
# processed is reported as a duplicate; inbox-adding writes keep their order.
_RANK: dict[type, int] = {
    Commit: 0,
    SaveSnapshot: 1,
    Accept: 2,
    TakeOutbox: 2,
    FireTimer: 2,
    Journal: 2,
    Requeue: 2,
    Prune: 3,
    Group: 0,
}


class Slot:
    """A write on its way: its result or error once written. Whoever waits for it
    awaits ``done`` or is called back (``then``, with the slot); a write nobody waits
    for has neither (it is retried after a failure)."""

    __slots__ = ("after", "done", "error", "result", "then", "tries", "write")

    def __init__(self, write: Write | Group, after: After | None, done: asyncio.Future[None] | None) -> None:
        self.write = write
        self.after = after
        self.done = done
        self.then: Callable[[Slot], None] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.tries = 0

    @property
    def waited(self) -> bool:
        """Someone waits for its outcome (it is not retried here)."""
        return self.done is not None or self.then is not None


def _environmental(error: BaseException) -> bool:
    """Whether a failed write failed on the store's health, not on its batch's data."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (OSError, sqlite3.OperationalError, ConnectionError, TimeoutError)):
            return True
        if isinstance(seen, StoreLocked) or (
            type(seen).__module__.startswith("asyncpg") and type(seen).__name__ in _ASYNCPG_ENVIRONMENTAL
        ):
            return True
        seen = seen.__cause__
    return False


_ASYNCPG_ENVIRONMENTAL = frozenset(
    {
        # asyncpg's, by name: the runtime does not depend on a driver
        "ConnectionDoesNotExistError",
        "InterfaceError",
        "PostgresConnectionError",
        "QueryCanceledError",
        "ReadOnlySQLTransactionError",
        "DiskFullError",
        "InsufficientResourcesError",
        "CannotConnectNowError",
        "AdminShutdownError",
        "SerializationError",
        "DeadlockDetectedError",
    }
)


def _per_slot(batch: Sequence[Slot], order: Sequence[int], got: Sequence[WriteResult]) -> list[Any]:
    """The results of a batch's flat writes (``got``, in ``order``) per slot: a
    :class:`Group`'s as the list of its writes' results."""
    results: list[Any] = []
    at = 0
    for i in order:
        w = batch[i].write
        if type(w) is Group:
            n = len(w.writes)
            results.append(list(got[at : at + n]))
            at += n
        else:
            results.append(got[at])
            at += 1
    return results


def _depth(store: Store) -> int:
    """How many batches the store takes before the first is written (its ``write_depth``;
    1 for a store without one, or with anything but a small positive int)."""
    depth = getattr(store, "write_depth", 1)
    return depth if type(depth) is int and 1 <= depth <= 8 else 1


class GroupCommitter:
    """Batches writes from many tasks into single store transactions."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int,
        clock: Clock,
        policy: SupervisorPolicy,
        work: Work,
        tasks: Tasks,
        log: logging.Logger,
        observer: SafeObserver,
        shards: Ownership | None = None,
    ) -> None:
        self._store = store
        self._shards = shards if shards is not None else Ownership()
        self._clock = clock
        self._policy = policy
        self._work = work
        self._tasks = tasks
        self._log = log
        self._observer = observer
        self._max = max_batch
        self._now = store.write_now if isinstance(store, WritesNow) else None
        """The store's write without waiting, for a commit that finds the system idle."""
        self._flushing = 0
        """Batches whose write is under way."""
        self._depth = _depth(store)
        self._batches = 0
        """Batches taken by :meth:`run` and not yet settled (at most ``_depth``)."""
        self._queue: list[Slot] = []
        self._wake = anyio.Event()
        self._woken = False  # _wake is set already: the next writes queued need not set it
        self._closing = False
        self._closed = False
        self._stopped = anyio.Event()
        self.batches = 0
        self.writes = 0
        self.retries = 0

    async def submit_group(self, writes: Sequence[Write]) -> list[WriteResult]:
        """Write ``writes`` durably in one transaction; returns their results in order."""
        group = Group(writes)
        results: list[WriteResult] = await self.submit(group)
        by_write = dict(zip(map(id, group.writes), results, strict=True))
        return [by_write[id(w)] for w in writes]

    async def submit(self, write: Write | Group, after: After | None = None) -> Any:
        """Write durably (batched with others); returns this write's own result (a
        :class:`Group`'s: the list of its writes' results)."""
        slot = self.enqueue(write, after)
        if slot.done is not None:
            await slot.done  # a cancelled caller cancels only its own future; the write still goes out
        if slot.error is not None:
            raise slot.error
        return slot.result

    def enqueue(
        self, write: Write | Group, after: After | None = None, then: Callable[[Slot], None] | None = None
    ) -> Slot:
        """:meth:`submit` without its coroutine (for the path every message takes): the
        slot, settled already if it was written at once (``done`` and ``then`` are
        None), else with a future that is done once it is, or, given ``then``, to be
        called back with it once it is (from the committer's task); then its ``error``
        or its ``result``."""
        slot = Slot(write, after, None)
        slot.then = then
        return self.enqueue_slot(slot, wait=then is None)

    def enqueue_slot(self, slot: Slot, *, wait: bool = False) -> Slot:
        """:meth:`enqueue` of a slot its writer made (a subclass may carry what its
        ``then`` needs: one object per write instead of two); ``wait``: give it a future."""
        if (
            self._now is not None
            and not self._queue
            and not self._flushing
            and not self._closing
            and len(self._tasks.drains) + self._tasks.pumping <= 1
        ):
            # one write, nothing queued or being written, no other actor running: nobody
            # to group it with, so it is written here and now if the store can (no
            # hand-over to the committer's task, one turn of the event loop less; nothing
            # is awaited, so nothing can interrupt it), in submission order all the same
            then, slot.then = slot.then, None  # settled here: its writer reads it on return
            if self._write_now(slot):
                return slot
            slot.then = then
        if wait:
            slot.done = self._tasks.loop.create_future()
        self._push(slot)
        return slot

    def submit_nowait(self, write: Write, after: After | None = None) -> None:
        """Queue a write whose outcome nobody waits for (failures are logged)."""
        self._push(Slot(write, after, None))

    def _push(self, slot: Slot) -> None:
        if self._closed:
            slot.error = SystemClosed("the actor system closed before this write")
            slot.then = None  # settled here and now: its writer reads it on return (see enqueue)
            if slot.done is not None and not slot.done.done():
                slot.done.set_result(None)
            return
        self._work.busy += 1  # Work.inc inline
        self._queue.append(slot)
        if not self._woken:  # once per wait of the committer, not once per write
            self._woken = True
            self._wake.set()

    async def run(self) -> None:
        """Drain the queue until cancelled, or until :meth:`close` and the queue is empty.

        With a store whose ``write_depth`` is 2 or more, the next batch goes to the store
        while one is being written (each in a task of its own): the store writes it as
        soon as the one before is written, beside this thread's work, instead of after
        this loop has seen the first one's end. Batches are independent: an actor's
        next commit waits for its last one, so no batch holds one that depends on a
        batch still under way."""
        try:
            if self._depth == 1:
                while True:
                    if not self._queue:
                        if self._closing:
                            return
                        self._wake, self._woken = anyio.Event(), False
                        await self._wake.wait()
                    await self.flush_once()
            async with anyio.create_task_group() as tg:
                while True:
                    if self._queue and self._batches < self._depth:
                        self._batches += 1
                        tg.start_soon(self._flush_counted, self._take())
                        continue
                    if not self._queue and not self._batches and self._closing:
                        return
                    # set by the next write queued or batch written
                    self._wake, self._woken = anyio.Event(), False
                    await self._wake.wait()
        finally:
            self._closed = True
            self._stopped.set()

    async def _flush_counted(self, batch: list[Slot]) -> None:
        try:
            await self._flush(batch)
        finally:
            self._batches -= 1
            self._wake.set()

    async def close(self) -> None:
        """Write everything queued, then refuse new writes (``SystemClosed``)."""
        self._closing = True
        self._wake.set()
        await self._stopped.wait()

    def _write_now(self, slot: Slot) -> bool:
        """Write one slot through the store's ``write_now``; False if it could not (then
        nothing was written)."""
        assert self._now is not None
        flat = list(slot.write.writes) if isinstance(slot.write, Group) else [slot.write]
        started = time.perf_counter()
        try:
            got = self._now(flat)
        except Exception as e:
            self._failed([slot], e)
        else:
            if got is None:
                return False
            self._settle([slot], [0], got)
        self._observer.committed(1, time.perf_counter() - started, slot.error is not None)
        self.batches += 1
        self.writes += 1
        return True

    def _take(self) -> list[Slot]:
        batch, self._queue = self._queue[: self._max], self._queue[self._max :]
        return batch

    async def flush_once(self) -> None:
        """Write one batch of what is queued."""
        batch = self._take()
        if batch:
            await self._flush(batch)

    async def _flush(self, batch: list[Slot]) -> None:
        """Write ``batch``, then settle each of its slots."""
        started = time.perf_counter()
        self._flushing += 1
        try:
            with anyio.CancelScope(shield=True):
                failed = await self._write(batch)
        finally:
            self._flushing -= 1
        self._observer.committed(len(batch), time.perf_counter() - started, failed)
        self.batches += 1
        self.writes += len(batch)
        try:
            for slot in batch:
                then = slot.then
                if then is not None:  # its writer's continuation (every outcome goes to it)
                    slot.then = None
                    try:
                        then(slot)
                    except Exception:  # a bug in the runtime: the other slots of the batch still settle
                        self._log.exception(
                            "the continuation of a %s write failed", type(slot.write).__name__
                        )
                elif isinstance(slot.error, ShardLost) and slot.done is None:
                    self._dropped(slot)  # its shard's new owner redoes it from what is stored
                elif slot.error is not None and slot.done is None:
                    self._retry_later(slot)
                elif slot.done is not None and not slot.done.done():
                    slot.done.set_result(None)
        finally:  # one count per queued write; none reaches zero before the last is settled
            self._work.dec(len(batch))

    async def _write(self, batch: Sequence[Slot]) -> bool:
        """Write ``batch`` in one transaction; on a failure that may be one write's own
        data, write each half again so the failure stays with the write it belongs to.
        Returns whether any write of it failed."""
        ranks = [_RANK[type(s.write)] for s in batch]
        order: Sequence[int]
        if min(ranks) == max(ranks):  # all of one kind (most batches: commits): as queued
            order = range(len(batch))
        else:
            order = sorted(range(len(batch)), key=ranks.__getitem__)
        flat: list[Write] = []
        for i in order:
            w = batch[i].write
            if isinstance(w, Group):
                flat.extend(w.writes)
            else:
                flat.append(w)
        try:
            got = await self._store.write(flat)
        except Exception as e:
            if len(batch) > 1 and not _environmental(e):
                if isinstance(e, ShardLost) and e.shards:
                    self._shards.lose(e.shards)  # the store dropped them from its fence
                half = len(batch) // 2
                first = await self._write(batch[:half])
                return await self._write(batch[half:]) or first
            self._failed(batch, e)
            return True
        self._settle(batch, order, got)
        return False

    def _failed(self, batch: Sequence[Slot], e: Exception) -> None:
        """Every write of ``batch`` failed with ``e`` (as a StoreError)."""
        err = e if isinstance(e, StoreError) else StoreError(f"store write failed: {e!r}")
        if err is not e:
            err.__cause__ = e
        if isinstance(err, ShardLost) and err.shards:
            self._shards.lose(err.shards)  # the store dropped them from its fence
        for slot in batch:
            slot.error = err
        if isinstance(err, ShardLost | SignalTaken):  # expected while shards move, or after a
            # commit whose answer was lost: the writer gives the shards up, or drops the repeat
            self._log.info("commit of %d writes refused: %s", len(batch), err)
        else:
            self._log.error("commit of %d writes failed: %s", len(batch), err)

    def _settle(self, batch: Sequence[Slot], order: Sequence[int], got: Sequence[WriteResult]) -> None:
        """Hand each slot its result (``got`` is in ``order``) and run its after-hook."""
        for i, r in zip(order, _per_slot(batch, order, got), strict=True):
            slot = batch[i]
            slot.result = r
            slot.error = None
            if slot.after is not None:
                try:
                    slot.after(r)
                except Exception as e:  # an after-hook bug must not lose other results
                    if slot.waited:
                        slot.error = e  # the write itself committed: never retried
                    self._log.exception("after-commit hook of %s failed", type(slot.write).__name__)

    def _dropped(self, slot: Slot) -> None:
        """An internal write of a shard this member lost: not retried here."""
        self._log.info("%s dropped: its shard moved to another member", type(slot.write).__name__)
        slot.error = None
        if slot.after is not None:
            try:
                slot.after(None)  # as if the store had found it done: hooks count it as settled
            except Exception:
                self._log.exception("after-commit hook of %s failed", type(slot.write).__name__)

    def _retry_later(self, slot: Slot) -> None:
        """Queue a failed write that nobody waits for again, after a backoff."""
        if self._closing or self._closed:
            return  # the next start redoes it from what is stored
        slot.tries += 1
        slot.error = None
        self.retries += 1
        delay = self._policy.backoff(slot.tries).total_seconds()
        self._log.warning("%s write failed; retry %d in %.3fs", type(slot.write).__name__, slot.tries, delay)

        async def again() -> None:
            await self._clock.sleep(delay)  # not busy meanwhile: a virtual clock may move
            self._push(slot)

        self._tasks.spawn(again)

    @property
    def pending(self) -> int:
        """Writes waiting for the next batch."""
        return len(self._queue)
