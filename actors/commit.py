"""Group commit: many actors' writes batched into one store transaction.

Callers :meth:`GroupCommitter.submit` a write and wait; one task drains the queue,
writing everything that arrived while the previous transaction ran (adaptive
batching: the busier the system, the larger the batch). Each caller gets its own
result, or the batch's StoreError. An ``after`` callback runs in the committer,
in submission order, before the caller wakes: routing accepted signals there keeps
them in acceptance order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from actors.errors import StoreError
from persistence.store import (
    Accept,
    Commit,
    FireTimer,
    Journal,
    Requeue,
    SaveSnapshot,
    Store,
    TakeOutbox,
    Write,
    WriteResult,
)

if TYPE_CHECKING:
    from actors.system import ActorSystem

After = Callable[[WriteResult], None]

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
}


class _Slot:
    __slots__ = ("after", "done", "error", "result", "write")

    def __init__(self, write: Write, after: After | None, done: asyncio.Future[None] | None) -> None:
        self.write = write
        self.after = after
        self.done = done
        self.result: WriteResult = None
        self.error: BaseException | None = None


class GroupCommitter:
    """Batches writes from many tasks into single store transactions."""

    def __init__(self, system: ActorSystem, store: Store, *, max_batch: int) -> None:
        self._system = system
        self._store = store
        self._max = max_batch
        self._queue: list[_Slot] = []
        self._wake = anyio.Event()
        self.batches = 0
        self.writes = 0

    async def submit(self, write: Write, after: After | None = None) -> WriteResult:
        """Write durably (batched with others); returns this write's own result."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot = _Slot(write, after, done)
        self._push(slot)
        await done  # a cancelled caller cancels only its own future; the write still goes out
        if slot.error is not None:
            raise slot.error
        return slot.result

    def submit_nowait(self, write: Write, after: After | None = None) -> None:
        """Queue a write whose outcome nobody waits for (failures are logged)."""
        self._push(_Slot(write, after, None))

    def _push(self, slot: _Slot) -> None:
        self._system.busy_inc()
        self._queue.append(slot)
        self._wake.set()

    async def run(self) -> None:
        """Drain the queue until cancelled."""
        while True:
            if not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
            await self.flush_once()

    async def flush_once(self) -> None:
        """Write one batch of what is queued."""
        batch, self._queue = self._queue[: self._max], self._queue[self._max :]
        if not batch:
            return
        order = sorted(range(len(batch)), key=lambda i: _RANK[type(batch[i].write)])
        try:
            with anyio.CancelScope(shield=True):
                results = await self._store.write([batch[i].write for i in order])
        except Exception as e:
            err = e if isinstance(e, StoreError) else StoreError(f"store write failed: {e!r}")
            if err is not e:
                err.__cause__ = e
            for slot in batch:
                slot.error = err
            self._system.log.error("commit of %d writes failed: %s", len(batch), err)
        else:
            self.batches += 1
            self.writes += len(batch)
            for i, r in zip(order, results, strict=True):
                slot = batch[i]
                slot.result = r
                if slot.after is not None:
                    try:
                        slot.after(r)
                    except Exception as e:  # an after-hook bug must not lose other results
                        slot.error = e
        for slot in batch:
            if slot.done is not None and not slot.done.done():
                slot.done.set_result(None)
            self._system.busy_dec()

    @property
    def pending(self) -> int:
        """Writes waiting for the next batch."""
        return len(self._queue)
