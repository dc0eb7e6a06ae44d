"""Reads of processed marks, gathered into one store read per turn of the event loop.
Internal.

Keyed signals are checked for a repeat (a mark) before they run, and an ask whose
entity runs on another member is answered from the mark the owner commits: hundreds
of them in flight each read a mark. A store that can read many marks at once
(``read_marks``, :class:`~persistence.store.ReadsMarks`: all of this package's) gets
them all in one read; any other store is read one mark at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from actors._kernel import Kernel
from actors.errors import StoreError
from persistence.store import ProcessedMark

Key = tuple[str, str, str]
"""(entity type, entity id, signal id)."""

ReadMany = Callable[[Sequence[Key]], Awaitable[dict[Key, ProcessedMark]]]
ReadNow = Callable[[Sequence[Key]], dict[Key, ProcessedMark] | None]


class MarkReads:
    """Gathers the mark reads of one turn of the loop into one store read."""

    __slots__ = ("_flushing", "_kernel", "_want")

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._want: dict[Key, list[asyncio.Future[ProcessedMark | None]]] = {}
        self._flushing = False

    async def read(self, key: Key) -> ProcessedMark | None:
        """The processed mark of ``key``'s signal, if it was processed."""
        store = self._kernel.store
        many: ReadMany | None = getattr(store, "read_marks", None)
        fut = None if many is None else self._enqueue(key, many)
        if fut is None:  # a store that reads one at a time, or closing: read alone
            return await store.read_mark(*key)
        return await fut

    def gathers(self) -> bool:
        """Whether the store reads many marks at once (``read_marks``)."""
        return getattr(self._kernel.store, "read_marks", None) is not None

    def future(self, key: Key) -> asyncio.Future[ProcessedMark | None] | None:
        """:meth:`read` without a coroutine (a store that :meth:`gathers`): a future of the
        mark, done already if it was read at once; None if the system is closing."""
        many: ReadMany = self._kernel.store.read_marks  # type: ignore[attr-defined]
        return self._enqueue(key, many)

    def _enqueue(self, key: Key, many: ReadMany) -> asyncio.Future[ProcessedMark | None] | None:
        kernel = self._kernel
        fut: asyncio.Future[ProcessedMark | None] = kernel.tasks.loop.create_future()
        now: ReadNow | None = getattr(kernel.store, "read_marks_now", None)
        if now is not None and not self._want and len(kernel.tasks.drains) + kernel.tasks.pumping <= 1:
            try:  # nobody to read with: at once, if the store can without waiting
                got = now([key])
            except Exception as e:
                fut.set_exception(e)
                fut.exception()  # retrieved: its reader may be gone
                return fut
            if got is not None:
                fut.set_result(got.get(key))
                return fut
        if not self._flushing:
            if kernel.tasks.spawn_task(self._flush(many)) is None:  # closing
                return None
            self._flushing = True
        self._want.setdefault(key, []).append(fut)
        return fut

    async def _flush(self, many: ReadMany) -> None:
        await asyncio.sleep(0)  # the other readers of this turn join the batch
        want, self._want = self._want, {}
        self._flushing = False
        try:
            got: dict[Key, ProcessedMark] | None = await many(list(want))
        except Exception:  # one bad key must not fail the others: read each alone
            got = None
        for key, futs in want.items():
            if got is not None:
                _settle(futs, got.get(key))
                continue
            try:
                _settle(futs, await self._kernel.store.read_mark(*key))
            except Exception as e:  # whatever it is, it fails its own readers only
                err = (
                    e if isinstance(e, StoreError) else StoreError(f"read of the mark of {key!r:.120}: {e!r}")
                )
                for f in futs:
                    if not f.done():
                        f.set_exception(err)


def _settle(futs: list[asyncio.Future[ProcessedMark | None]], mark: ProcessedMark | None) -> None:
    for f in futs:
        if not f.done():  # its reader may have been cancelled meanwhile
            f.set_result(mark)
