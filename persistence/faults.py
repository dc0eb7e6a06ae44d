"""A store wrapper that injects faults: chosen calls fail or stall.

For tests of what the runtime does when the disk misbehaves, in the manner of
SQLite's I/O-error tests and Akka's PersistenceTestKit. The errors are the ones a
real driver raises, translated the way ``SqliteStore`` translates them.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import attrs

from persistence.errors import StoreError
from persistence.sqlite import translate
from persistence.store import (
    DeadLetter,
    InboxEntry,
    JournalEntry,
    OutboxEntry,
    ProcessedMark,
    SnapshotRecord,
    Store,
    StoredEvent,
    TimerRecord,
    Write,
    WriteResult,
)

Kind = Literal["io", "locked", "full"]
_MESSAGES: dict[str, str] = {
    "io": "disk I/O error",
    "locked": "database is locked",
    "full": "database or disk is full",
}


@attrs.define
class _Rule:
    method: str
    error: Kind | None
    stall: anyio.Event | None
    times: int
    when: Callable[[tuple[Any, ...]], bool] | None


class FaultyStore:
    """Wraps any Store; ``fail(...)`` and ``stall(...)`` arm faults on its methods.

    ``method`` is a Store method name (``"write"``, ``"read_events"``...) or ``"*"``.
    ``times`` is how many matching calls are hit (-1: all until ``clear()``);
    ``when`` gets the call's positional arguments (for ``write``: ``(batch,)``) and
    picks which calls match. ``calls`` counts calls per method.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._rules: list[_Rule] = []
        self.calls: Counter[str] = Counter()
        self.failures = 0

    def fail(
        self,
        method: str,
        error: Kind = "io",
        *,
        times: int = 1,
        when: Callable[[tuple[Any, ...]], bool] | None = None,
    ) -> None:
        """Make matching calls raise the StoreError a driver error of ``error`` gives."""
        if error not in _MESSAGES:
            raise ValueError(f"error must be one of {sorted(_MESSAGES)}, got {error!r}")
        self._rules.append(_Rule(method, error, None, times, when))

    def stall(
        self,
        method: str,
        until: anyio.Event,
        *,
        times: int = 1,
        when: Callable[[tuple[Any, ...]], bool] | None = None,
    ) -> None:
        """Make matching calls wait for ``until`` before they go through."""
        self._rules.append(_Rule(method, None, until, times, when))

    def clear(self) -> None:
        """Disarm every fault."""
        self._rules.clear()

    async def _gate(self, method: str, args: tuple[Any, ...]) -> None:
        self.calls[method] += 1
        for rule in list(self._rules):
            if rule.method not in (method, "*") or (rule.when is not None and not rule.when(args)):
                continue
            if rule.times > 0:
                rule.times -= 1
                if rule.times == 0:
                    self._rules.remove(rule)
            if rule.stall is not None:
                await rule.stall.wait()
            if rule.error is not None:
                self.failures += 1
                raise translate(sqlite3.OperationalError(_MESSAGES[rule.error]), method)
            return

    # ------------------------------------------------------------ the Store protocol
    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    async def write(self, batch: Sequence[Write]) -> list[WriteResult]:
        """Store.write, unless a fault hits."""
        await self._gate("write", (batch,))
        return await self.inner.write(batch)

    async def read_snapshots(self, entity_type: str, entity_id: str) -> list[SnapshotRecord]:
        """Store.read_snapshots, unless a fault hits."""
        await self._gate("read_snapshots", (entity_type, entity_id))
        return await self.inner.read_snapshots(entity_type, entity_id)

    async def read_events(
        self, entity_type: str, entity_id: str, *, after: int, limit: int
    ) -> list[StoredEvent]:
        """Store.read_events, unless a fault hits."""
        await self._gate("read_events", (entity_type, entity_id))
        return await self.inner.read_events(entity_type, entity_id, after=after, limit=limit)

    async def last_seq(self, entity_type: str, entity_id: str) -> int:
        """Store.last_seq, unless a fault hits."""
        await self._gate("last_seq", (entity_type, entity_id))
        return await self.inner.last_seq(entity_type, entity_id)

    async def read_mark(self, entity_type: str, entity_id: str, signal_id: str) -> ProcessedMark | None:
        """Store.read_mark, unless a fault hits."""
        await self._gate("read_mark", (entity_type, entity_id, signal_id))
        return await self.inner.read_mark(entity_type, entity_id, signal_id)

    async def read_inbox(self, *, after: int, limit: int) -> list[InboxEntry]:
        """Store.read_inbox, unless a fault hits."""
        await self._gate("read_inbox", ())
        return await self.inner.read_inbox(after=after, limit=limit)

    async def read_dead_letters(self, *, limit: int) -> list[DeadLetter]:
        """Store.read_dead_letters, unless a fault hits."""
        await self._gate("read_dead_letters", ())
        return await self.inner.read_dead_letters(limit=limit)

    async def read_timers(self, *, limit: int, after_due: float = float("-inf")) -> list[TimerRecord]:
        """Store.read_timers, unless a fault hits."""
        await self._gate("read_timers", ())
        return await self.inner.read_timers(limit=limit, after_due=after_due)

    async def read_journal(self, entity_type: str, entity_id: str, invocation_id: str) -> list[JournalEntry]:
        """Store.read_journal, unless a fault hits."""
        await self._gate("read_journal", (entity_type, entity_id, invocation_id))
        return await self.inner.read_journal(entity_type, entity_id, invocation_id)

    async def read_outbox(self, *, after: int, limit: int) -> list[OutboxEntry]:
        """Store.read_outbox, unless a fault hits."""
        await self._gate("read_outbox", ())
        return await self.inner.read_outbox(after=after, limit=limit)


def commits_for(entity_id: str) -> Callable[[tuple[Any, ...]], bool]:
    """A ``when`` picking write batches that commit an invocation of ``entity_id``."""
    from persistence.store import Commit

    def match(args: tuple[Any, ...]) -> bool:
        return any(isinstance(w, Commit) and w.entity_id == entity_id for w in args[0])

    return match


__all__ = ["FaultyStore", "StoreError", "commits_for"]
