"""The journal of one invocation: numbered steps, recorded durably, replayed on a re-run.
Internal."""

from __future__ import annotations

import json

import anyio

from actors._envelope import Envelope
from actors._ids import is_keyed
from actors._kernel import Kernel
from actors.errors import NonDeterminismError, SystemClosed
from persistence.store import Accept, Journal, JournalEntry


class StepJournal:
    """The steps of one run of a signal handler (activities, journaled asks)."""

    __slots__ = ("_kernel", "entries", "env", "has_journal", "loaded", "lock", "step")

    def __init__(self, kernel: Kernel, env: Envelope, attempt: int) -> None:
        self._kernel = kernel
        self.env = env
        self.step = 0
        self.entries: dict[int, JournalEntry] = {}
        self.loaded = False
        self.lock: anyio.Lock | None = None
        self.has_journal = attempt > 1

    def reserve_step(self) -> int:
        """Number the next journaled step. Called before any await, so concurrent
        branches started in order get their numbers in order on every run."""
        self.step += 1
        return self.step

    def check_open(self) -> None:
        """Raise SystemClosed when the system is closing: this invocation is paused, and
        what it would start now (a step, a message) must not begin. A system still
        starting runs what recovery routed (steps included), as a running one does."""
        if not self._kernel.tasks.live:
            raise SystemClosed(
                "the actor system is closing: this invocation is paused and resumes after the next start",
                accepted=self.env.from_inbox,
            )

    async def recorded(self, step: int, kind: str, name: str) -> JournalEntry | None:
        """What the journal holds for ``step`` (NonDeterminismError if another step)."""
        self.check_open()
        if not self.loaded:
            await self.load()
        entry = self.entries.get(step)
        if entry is not None:
            self._check_step(step, entry, kind, name)
        elif not self.env.from_inbox:
            await self._make_resumable()
        return entry

    async def load(self, *, force: bool = False) -> None:
        """Read the stored journal (once)."""
        if self.loaded:
            return
        if not (force or self.has_journal or self.env.from_inbox):
            self.loaded = True  # nothing can be stored yet
            return
        # concurrent branches (gather) wait for the one read, not see an empty journal
        if self.lock is None:
            self.lock = anyio.Lock()
        async with self.lock:
            if not self.loaded:
                s = self.env.signal
                found = await self._kernel.store.read_journal(s.entity_type, s.entity_id, s.signal_id)
                self.entries.update({e.step: e for e in found})
                self.has_journal = self.has_journal or bool(found)
                self.loaded = True

    def _check_step(self, step: int, recorded: JournalEntry, kind: str, name: str) -> None:
        """Raise NonDeterminismError when a journaled step differs from what is asked now."""
        if (recorded.kind, recorded.name) != (kind, name):
            s = self.env.signal
            raise NonDeterminismError(
                f"step {step} of {s.entity_type}/{s.entity_id}.{s.handler}: "
                f"the journal holds {recorded.kind} {recorded.name!r} but this run asks for "
                f"{kind} {name!r}"
            )

    async def _make_resumable(self) -> None:
        """Put a direct ask in the inbox before its first step takes effect.

        The step's effect (the callee's commit, the activity's side effect) comes
        before its journal write; were the invocation durable only from that write,
        a crash in between would lose it with the effect kept: a saga debited and
        never resumed, neither credited nor compensated.
        """
        if self.lock is None:
            self.lock = anyio.Lock()
        async with self.lock:  # once, even for concurrent branches (gather)
            if not self.env.from_inbox:
                s = self.env.signal
                await self._kernel.committer.submit(Accept(s, check_duplicate=is_keyed(s.signal_id)))
                self.env.from_inbox = True

    async def write(self, step: int, kind: str, name: str, result: str) -> None:
        """Record a step durably now; the first one also puts a direct ask in the inbox."""
        s = self.env.signal
        entry = JournalEntry(
            s.entity_type,
            s.entity_id,
            s.signal_id,
            step,
            kind,
            name,
            result,
            self._kernel.clock.now().timestamp(),
        )
        inbox = None if self.env.from_inbox else s
        self.env.from_inbox = True
        self.has_journal = True
        await self._kernel.committer.submit(Journal(entry, inbox))
        self.entries[step] = entry


CANCEL_STEP = -1
"""The journal step of an invocation's cancellation request."""


def cancel_reason(text: str) -> str:
    """The reason a stored cancellation request gives (empty if it cannot be read)."""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    return str(data.get("reason", "")) if isinstance(data, dict) else ""


async def request_cancel(
    kernel: Kernel, handle_id: str, entity_type: str, entity_id: str, reason: str
) -> None:
    """Record a cancellation request durably (in the invocation's journal) and reach the
    invocation if it is in memory here. Nothing happens if it already ended."""
    if await kernel.store.read_mark(entity_type, entity_id, handle_id) is not None:
        return
    entry = JournalEntry(
        entity_type,
        entity_id,
        handle_id,
        CANCEL_STEP,
        "cancel",
        "cancel",
        json.dumps({"reason": reason}),
        kernel.clock.now().timestamp(),
    )
    await kernel.committer.submit(Journal(entry))
    kernel.outcomes.cancel(handle_id, reason)
