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
        kernel = self._kernel
        store = kernel.store
        many: ReadMany | None = getattr(store, "read_marks", None)
        if many is None:
            return await store.read_mark(*key)
        now: ReadNow | None = getattr(store, "read_marks_now", None)
        if now is not None and not self._want and len(kernel.tasks.drains) + kernel.tasks.pumping <= 1:
            got = now([key])  # nobody to read with: at once, if the store can without waiting
            if got is not None:
                return got.get(key)
        fut: asyncio.Future[ProcessedMark | None] = asyncio.get_running_loop().create_future()
        self._want.setdefault(key, []).append(fut)
        if not self._flushing:
            if self._kernel.tasks.spawn_task(self._flush(many)) is None:  # closing: read alone
                self._want.pop(key, None)
                return await store.read_mark(*key)
            self._flushing = True
        return await fut

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
