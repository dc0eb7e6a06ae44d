"""The invocation context: what ``self.emit``, ``self.now()`` and friends act on.

One :class:`Invocation` exists per run of a signal handler. It collects the events
(already applied to the entity), the timer changes and the journal steps; the
commit writes them with the processed mark in one transaction.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING

from actors.errors import DefinitionError, InvalidArguments
from actors.timers import from_timestamp
from persistence.store import Journal, JournalEntry, NewEvent, SignalRecord, TimerRecord

if TYPE_CHECKING:
    from actors.entity import Entity
    from actors.mailbox import Actor, Envelope

MAX_TIMER_KEY = 256


class Invocation:
    """The context of one run of a signal handler."""

    __slots__ = (
        "_now",
        "_rng",
        "actor",
        "attempt",
        "cancels",
        "env",
        "events",
        "has_journal",
        "journal",
        "journal_loaded",
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
        self.timers: dict[str, TimerRecord] = {}
        self.cancels: set[str] = set()
        self.step = 0
        self.journal: dict[int, JournalEntry] = {}
        self.journal_loaded = False
        self.has_journal = attempt > 1
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
        return bool(self.events or self.timers or self.cancels or self.has_journal)

    # ------------------------------------------------------------ events
    def emit(self, entity: Entity, event: object) -> None:
        """Encode ``event``, apply it to ``entity`` and keep it for the commit."""
        actor = self.actor
        applier = actor.spec.appliers.get(type(event))
        if applier is None:
            raise DefinitionError(f"{actor.spec.name} has no @applies method for {type(event).__qualname__}")
        new = actor.system.codec.encode_event(event)
        if not self.events:
            actor.before_first_emit()
        applier(entity, event)
        self.events.append(new)

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
        if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_TIMER_KEY):
            raise InvalidArguments(f"timer key must be a non-empty str up to {MAX_TIMER_KEY} chars")
        values = h.bind(args, kwargs)
        text = h.encode(system.codec, values)
        due = at if at is not None else self.now + (after if after is not None else every)  # type: ignore[operator]
        if key is None:
            key = f"auto:{self.signal.signal_id}:{len(self.timers) + len(self.cancels)}"
        rec = TimerRecord(
            actor.spec.name,
            actor.id,
            key,
            h.name,
            text,
            due.timestamp(),
            every.total_seconds() if every is not None else None,
        )
        self.cancels.discard(key)
        self.timers[key] = rec
        return key

    def cancel(self, key: str) -> None:
        """Cancel the timer ``key`` of this entity (no error if there is none)."""
        if not isinstance(key, str) or not key:
            raise InvalidArguments(f"timer key must be a non-empty str, got {key!r:.80}")
        self.timers.pop(key, None)
        self.cancels.add(key)

    # ------------------------------------------------------------ journal
    async def journal_step(self, kind: str, name: str) -> tuple[int, JournalEntry | None]:
        """Number the next step; return what the journal recorded for it, if anything."""
        from actors.activities import check_step

        self.step += 1
        if not self.journal_loaded:
            self.journal_loaded = True
            if self.has_journal or self.env.from_inbox:
                s = self.signal
                entries = await self.actor.system.store.read_journal(s.entity_type, s.entity_id, s.signal_id)
                self.journal = {e.step: e for e in entries}
                self.has_journal = self.has_journal or bool(entries)
        recorded = self.journal.get(self.step)
        if recorded is not None:
            check_step(self, self.step, recorded, kind, name)
        return self.step, recorded

    async def journal_write(self, step: int, kind: str, name: str, result: str) -> None:
        """Record a step durably now; the first one also puts a direct ask in the inbox."""
        system = self.actor.system
        s = self.signal
        entry = JournalEntry(
            s.entity_type, s.entity_id, s.signal_id, step, kind, name, result, system.clock.now().timestamp()
        )
        inbox = None if self.env.from_inbox else s
        await system.committer.submit(Journal(entry, inbox))
        self.env.from_inbox = True
        self.journal[step] = entry
        self.has_journal = True
