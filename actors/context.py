"""The invocation context: what ``self.emit``, ``self.now()`` and friends act on.

One :class:`Invocation` exists per handler run. It collects the events (already
applied to the entity), and later the timers, outbox messages and journal steps,
that the commit writes in one transaction.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING

from actors.errors import DefinitionError
from actors.timers import from_timestamp
from persistence.store import NewEvent, SignalRecord

if TYPE_CHECKING:
    from actors.entity import Entity
    from actors.mailbox import Actor


class Invocation:
    """The context of one run of a signal handler."""

    __slots__ = ("_now", "_rng", "actor", "events", "signal")

    def __init__(self, actor: Actor, signal: SignalRecord) -> None:
        self.actor = actor
        self.signal = signal
        self.events: list[NewEvent] = []
        self._now: dt.datetime | None = None
        self._rng: random.Random | None = None

    @property
    def now(self) -> dt.datetime:
        """The invocation's time: when its signal was accepted."""
        if self._now is None:
            self._now = from_timestamp(self.signal.accepted_at)
        return self._now

    @property
    def rng(self) -> random.Random:
        """A generator seeded from the signal id."""
        if self._rng is None:
            self._rng = random.Random(f"{self.signal.entity_id}/{self.signal.signal_id}")
        return self._rng

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
