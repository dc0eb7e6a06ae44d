"""The invocation context: what ``self.emit``, ``self.now()`` and friends act on.

One :class:`Invocation` exists per run of a signal handler. It collects the events
(already applied to the entity), the timer changes and the journal steps; the
commit writes them with the processed mark in one transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from actors import outcome
from actors.errors import DeadlineExceeded, DefinitionError, InvalidArguments, Rejected, SystemClosed
from actors.ids import (
    check_text,
    derived_id,
    generated_id,
    internal_key_id,
    is_keyed,
    keyed_id,
)
from actors.timers import MAX_DUE, from_timestamp
from persistence.store import Accept, Journal, JournalEntry, NewEvent, SignalRecord, TimerRecord

if TYPE_CHECKING:
    from actors.entity import Entity, EntitySpec
    from actors.mailbox import Actor, Envelope

MAX_TIMER_KEY = 256
AUTO_TIMER_PREFIX = "auto:"
"""Keys of timers scheduled without a key; a handler's own keys may not start so."""

__all__ = ["Invocation", "generated_id", "is_keyed", "keyed_id"]


class Invocation:
    """The context of one run of a signal handler."""

    __slots__ = (
        "_now",
        "_rng",
        "actor",
        "applied",
        "applying",
        "attempt",
        "cancels",
        "env",
        "events",
        "has_journal",
        "journal",
        "journal_loaded",
        "journal_lock",
        "outbox",
        "parks",
        "signal",
        "step",
        "timers",
    )

    def __init__(self, actor: Actor, env: Envelope, attempt: int) -> None:
        self.actor = actor
        self.env = env
        self.signal: SignalRecord = env.signal
        self.attempt = attempt
        self.events: list[NewEvent] = []
        self.applied: list[object] = []
        """The event objects of ``events`` (to check the state against them)."""
        self.applying = False
        """An ``@applies`` method is running: field writes are allowed."""
        self.timers: dict[str, TimerRecord] = {}
        self.cancels: set[str] = set()
        self.step = 0
        self.journal: dict[int, JournalEntry] = {}
        self.journal_loaded = False
        self.journal_lock: anyio.Lock | None = None
        self.has_journal = attempt > 1
        self.outbox: list[SignalRecord] = []
        self.parks = 0
        self._now: dt.datetime | None = None
        self._rng: random.Random | None = None

    @property
    def now(self) -> dt.datetime:
        """The invocation's time: when its signal was accepted (a timer's: its due time)."""
        if self._now is None:
            self._now = from_timestamp(self.signal.accepted_at)
        return self._now

    @property
    def rng(self) -> random.Random:
        """A generator seeded from the signal id."""
        if self._rng is None:
            self._rng = random.Random(f"{self.signal.entity_id}/{self.signal.signal_id}")
        return self._rng

    @property
    def dirty(self) -> bool:
        """Whether committing this invocation writes more than the processed mark."""
        return bool(self.events or self.timers or self.cancels or self.has_journal or self.outbox)

    def drop_effects(self) -> None:
        """Forget events, timers and outbox messages (the handler refused)."""
        self.events.clear()
        self.applied.clear()
        self.timers.clear()
        self.cancels.clear()
        self.outbox.clear()

    @contextlib.asynccontextmanager
    async def parked(self) -> AsyncIterator[None]:
        """Count this invocation as waiting (not busy) while any of its branches waits."""
        self.parks += 1
        if self.parks == 1:
            self.actor.system.busy_dec()
        try:
            yield
        finally:
            self.parks -= 1
            if self.parks == 0:
                self.actor.system.busy_inc()

    # ------------------------------------------------------------ events
    def emit(self, entity: Entity, event: object) -> None:
        """Encode ``event``, apply it to ``entity`` and keep it for the commit."""
        actor = self.actor
        applier = actor.spec.appliers.get(type(event))
        if applier is None:
            raise DefinitionError(f"{actor.spec.name} has no @applies method for {type(event).__qualname__}")
        new = actor.system.codec.encode_event(event)
        if actor.backup is None:
            actor.before_first_emit()
        self.applying = True
        try:
            applier(entity, event)
        finally:
            self.applying = False
        self.events.append(new)
        self.applied.append(event)

    # ------------------------------------------------------------ timers
    def schedule(
        self,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        *,
        after: dt.timedelta | None,
        at: dt.datetime | None,
        every: dt.timedelta | None,
        key: str | None,
    ) -> str:
        """Schedule a signal to this entity; committed with the invocation. Returns the key."""
        actor = self.actor
        system = actor.system
        h = system.resolve(actor.spec, handler, "signal")
        given = [n for n, v in (("after", after), ("at", at)) if v is not None]
        if len(given) > 1:
            raise InvalidArguments("schedule() takes after= or at=, not both")
        if not given and every is None:
            raise InvalidArguments("schedule() needs after=timedelta, at=datetime or every=timedelta")
        for name, v in (("after", after), ("every", every)):
            if v is not None and (not isinstance(v, dt.timedelta) or v < dt.timedelta(0)):
                raise InvalidArguments(f"{name} must be a timedelta >= 0, got {v!r}")
        if every is not None and every <= dt.timedelta(0):
            raise InvalidArguments(f"every must be a positive timedelta, got {every!r}")
        if at is not None and (not isinstance(at, dt.datetime) or at.tzinfo is None):
            raise InvalidArguments(f"at must be a timezone-aware datetime, got {at!r}")
        if key is not None:
            _check_timer_key(key)
        values = h.bind(args, kwargs)
        text = h.encode(system.codec, values)
        try:
            due = at if at is not None else self.now + (after if after is not None else every)  # type: ignore[operator]
            due_ts = due.timestamp()
            ok = from_timestamp(due_ts) <= MAX_DUE
        except (OverflowError, ValueError, OSError):
            ok = False
        if not ok:
            raise InvalidArguments(f"timer due time is out of range (latest: {MAX_DUE.isoformat()})")
        if key is None:
            key = AUTO_TIMER_PREFIX + derived_id(
                "", self.signal.signal_id, len(self.timers) + len(self.cancels)
            )
        rec = TimerRecord(
            actor.spec.name,
            actor.id,
            key,
            h.name,
            text,
            due_ts,
            every.total_seconds() if every is not None else None,
        )
        self.cancels.discard(key)
        self.timers[key] = rec
        return key

    def cancel(self, key: str) -> None:
        """Cancel the timer ``key`` of this entity (no error if there is none)."""
        _check_timer_key(key)
        self.timers.pop(key, None)
        self.cancels.add(key)

    # ------------------------------------------------------------ journal
    def reserve_step(self) -> int:
        """Number the next journaled step. Called before any await, so concurrent
        branches started in order get their numbers in order on every run."""
        self.step += 1
        return self.step

    async def recorded(self, step: int, kind: str, name: str) -> JournalEntry | None:
        """What the journal holds for ``step`` (NonDeterminismError if another step)."""
        from actors.activities import check_step

        self.check_open()
        if not self.journal_loaded:
            if not (self.has_journal or self.env.from_inbox):
                self.journal_loaded = True  # nothing can be stored yet
            else:
                # concurrent branches (gather) wait for the one read, not see an empty journal
                if self.journal_lock is None:
                    self.journal_lock = anyio.Lock()
                async with self.journal_lock:
                    if not self.journal_loaded:
                        s = self.signal
                        store = self.actor.system.store
                        entries = await store.read_journal(s.entity_type, s.entity_id, s.signal_id)
                        self.journal.update({e.step: e for e in entries})
                        self.has_journal = self.has_journal or bool(entries)
                        self.journal_loaded = True
        entry = self.journal.get(step)
        if entry is not None:
            check_step(self, step, entry, kind, name)
        elif not self.env.from_inbox:
            await self._make_resumable()
        return entry

    async def _make_resumable(self) -> None:
        """Put a direct ask in the inbox before its first step takes effect.

        The step's effect (the callee's commit, the activity's side effect) comes
        before its journal write; were the invocation durable only from that write,
        a crash in between would lose it with the effect kept: a saga debited and
        never resumed, neither credited nor compensated.
        """
        if self.journal_lock is None:
            self.journal_lock = anyio.Lock()
        async with self.journal_lock:  # once, even for concurrent branches (gather)
            if not self.env.from_inbox:
                s = self.signal
                await self.actor.system.committer.submit(Accept(s, check_duplicate=is_keyed(s.signal_id)))
                self.env.from_inbox = True

    async def journal_write(self, step: int, kind: str, name: str, result: str) -> None:
        """Record a step durably now; the first one also puts a direct ask in the inbox."""
        system = self.actor.system
        s = self.signal
        entry = JournalEntry(
            s.entity_type, s.entity_id, s.signal_id, step, kind, name, result, system.clock.now().timestamp()
        )
        inbox = None if self.env.from_inbox else s
        self.env.from_inbox = True
        self.has_journal = True
        await system.committer.submit(Journal(entry, inbox))
        self.journal[step] = entry

    def check_open(self) -> None:
        """Raise SystemClosed when the system is closing: this invocation is paused, and
        what it would start now (a step, a message) must not begin."""
        if not self.actor.system.running:
            raise SystemClosed(
                "the actor system is closing: this invocation is paused and resumes after the next start",
                accepted=self.env.from_inbox,
            )

    def assert_async(self, call: str) -> None:
        """Refuse a call that must be awaited from a plain ``def`` handler (it could not be)."""
        h = self.env.handler
        if not h.is_async:
            raise DefinitionError(
                f"{h.entity}.{h.name} is a plain def: {call} must be awaited, so the handler "
                "must be an async def"
            )

    # ------------------------------------------------------------ other entities
    def _key_id(self, key: str) -> str:
        s = self.signal
        return internal_key_id(s.entity_type, s.entity_id, key)

    def outbox_tell(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
    ) -> None:
        """Queue a signal in the outbox; sent after (and only if) this invocation commits."""
        s = self.signal
        if key is not None:
            sid = self._key_id(key)
        else:
            sid = derived_id("o", s.entity_type, s.entity_id, s.signal_id, len(self.outbox))
        _h, _values, rec = self.actor.system.build_signal(
            spec, entity_id, handler, args, kwargs, signal_id=sid, accepted_at=self.now.timestamp()
        )
        self.outbox.append(rec)

    async def ask(
        self,
        spec: EntitySpec,
        entity_id: str,
        handler: object,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        key: str | None,
        timeout: float | None = None,
    ) -> Any:
        """A journaled ask to another entity (see ``EntityRef.ask``).

        ``timeout`` (wall seconds) bounds the wait; past it ``DeadlineExceeded`` is
        raised, and journaled, so a re-run takes the same branch.
        """
        step = self.reserve_step()
        system = self.actor.system
        s = self.signal
        if key is not None:
            sid = self._key_id(key)
        else:
            sid = derived_id("a", s.entity_type, s.entity_id, s.signal_id, step)
        h, values, rec = system.build_signal(
            spec, entity_id, handler, args, kwargs, signal_id=sid, accepted_at=system.clock.now().timestamp()
        )
        name = f"{spec.name}/{entity_id}.{h.name}"
        entry = await self.recorded(step, "ask", name)
        if entry is not None:
            return outcome.decode(system.codec, entry.result, h.returns)
        me = (self.actor.spec.name, self.actor.id)
        target = (spec.name, entity_id)
        if target == me:
            raise InvalidArguments(
                f"{me[0]}/{me[1]} asks itself ({h.name}): it would wait for its own mailbox; "
                "use self.ref(...).tell or call the logic directly"
            )
        system.check_cycle(me, target)
        from actors.mailbox import Envelope, Reply

        reply = Reply()
        system.actor(spec, entity_id).deliver(
            Envelope(h, rec, values=values, keyed=True, reply=reply, from_inbox=False)
        )
        try:
            with system.waiting(me, target):
                async with self.parked():
                    if timeout is None:
                        value = await reply.wait()
                    else:
                        with anyio.move_on_after(timeout) as waited:
                            value = await reply.wait()
                        if waited.cancelled_caught:
                            raise DeadlineExceeded(f"{name}: no answer within {timeout:g}s")
        except DeadlineExceeded as d:
            await self.journal_write(step, "ask", name, outcome.encode_error("deadline", d))
            raise
        except Rejected as r:
            await self.journal_write(step, "ask", name, outcome.encode_error("rejected", r))
            raise
        stored = outcome.encode_ok(system.codec, value, h.returns, f"answer of {name}")
        await self.journal_write(step, "ask", name, stored)
        return outcome.decode(system.codec, stored, h.returns)


def _check_timer_key(key: object) -> None:
    text = check_text(key, "timer key", max_length=MAX_TIMER_KEY)
    if text.startswith(AUTO_TIMER_PREFIX):
        raise InvalidArguments(
            f"timer keys starting with {AUTO_TIMER_PREFIX!r} are reserved, got {key!r:.80}"
        )
