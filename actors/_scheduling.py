"""Timers set by a handler (``self.schedule``/``self.cancel``): checked here, kept
on the invocation, committed with it. Functions of the invocation. Internal."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from actors._clock import MAX_DUE, from_timestamp
from actors._ids import check_text, derived_id
from actors._kernel import Kernel
from actors._spec import EntitySpec
from actors.errors import InvalidArguments
from persistence.store import TimerRecord

MAX_TIMER_KEY = 256
AUTO_TIMER_PREFIX = "auto:"
"""Keys of timers scheduled without a key; a handler's own keys may not start so."""


class Owner(Protocol):
    """The entity a timer belongs to (the invocation's actor)."""

    @property
    def spec(self) -> EntitySpec:
        """The entity's spec."""
        ...

    @property
    def id(self) -> str:
        """The entity's id."""
        ...


class TimerHost(Protocol):
    """What scheduling needs of the invocation (implemented by ``Invocation``)."""

    kernel: Kernel
    signal: Any

    @property
    def actor(self) -> Owner:
        """The actor that runs the invocation."""
        ...

    @property
    def now(self) -> dt.datetime:
        """The invocation's time."""
        ...

    @property
    def timers(self) -> dict[str, TimerRecord]:
        """Timers set by the invocation, by key."""
        ...

    @property
    def cancels(self) -> set[str]:
        """Keys of timers cancelled by the invocation."""
        ...

    def set_timer(self, key: str, rec: TimerRecord) -> None:
        """Set (or replace) the timer ``key`` with the invocation's commit."""
        ...

    def cancel_timer(self, key: str) -> None:
        """Cancel the timer ``key`` with the invocation's commit."""
        ...


def schedule(
    inv: TimerHost,
    handler: object,
    args: tuple[object, ...],
    kwargs: dict[str, object],
    *,
    after: dt.timedelta | None,
    at: dt.datetime | None,
    every: dt.timedelta | None,
    key: str | None,
) -> str:
    """Schedule a signal to the invocation's entity; committed with it. Returns the key."""
    actor = inv.actor
    h = actor.spec.resolve(handler, "signal")
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
        check_timer_key(key)
    values = h.bind(args, kwargs)
    text = h.encode(inv.kernel.codec, values)
    try:
        due = at if at is not None else inv.now + (after if after is not None else every)  # type: ignore[operator]
        due_ts = due.timestamp()
        ok = from_timestamp(due_ts) <= MAX_DUE
    except (OverflowError, ValueError, OSError):
        ok = False
    if not ok:
        raise InvalidArguments(f"timer due time is out of range (latest: {MAX_DUE.isoformat()})")
    if key is None:
        key = AUTO_TIMER_PREFIX + derived_id("", inv.signal.signal_id, len(inv.timers) + len(inv.cancels))
    rec = TimerRecord(
        actor.spec.name,
        actor.id,
        key,
        h.name,
        text,
        due_ts,
        every.total_seconds() if every is not None else None,
        inv.kernel.observer.carry(),  # the firing carries the context that set it
    )
    inv.set_timer(key, rec)
    return key


def cancel(inv: TimerHost, key: str) -> None:
    """Cancel the timer ``key`` of the invocation's entity (no error if there is none)."""
    check_timer_key(key)
    inv.cancel_timer(key)


def check_timer_key(key: object) -> None:
    """InvalidArguments unless ``key`` is a valid timer key of a handler's own."""
    text = check_text(key, "timer key", max_length=MAX_TIMER_KEY)
    if text.startswith(AUTO_TIMER_PREFIX):
        raise InvalidArguments(
            f"timer keys starting with {AUTO_TIMER_PREFIX!r} are reserved, got {key!r:.80}"
        )
