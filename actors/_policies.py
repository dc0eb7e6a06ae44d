"""Policies: how crashing handlers (``SupervisorPolicy``) and activities (``RetryPolicy``)
are retried. Plain frozen values, checked when made; the runtime reads them.

A handler that raises anything but ``Rejected`` is a crash: the actor is rebuilt
from the store and the signal retried after an exponential backoff (on the
system's clock). After ``max_attempts`` the signal is dead-lettered and the actor
moves on. More than ``max_restarts`` crashes within ``within`` stop the actor
(OTP's restart intensity): its asks fail at once, its inbox keeps its signals,
and it resumes after a cool-down of ``within``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import attrs

from actors.errors import InvalidArguments


def positive_timedelta(name: str, *, optional: bool = False) -> Callable[[object, Any, Any], None]:
    """An attrs validator: ``value`` is a positive timedelta (or None when ``optional``)."""

    def check(inst: object, attr: Any, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, dt.timedelta) or value <= dt.timedelta(0):
            raise InvalidArguments(f"{name} must be a positive timedelta, got {value!r}")

    return check


def check_int(name: str, value: object, low: int) -> None:
    """InvalidArguments unless ``value`` is an int (not a bool) of at least ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InvalidArguments(f"{name} must be an int >= {low}, got {value!r}")


def _int_at_least(name: str, low: int) -> Callable[[object, Any, Any], None]:
    def check(inst: object, attr: Any, value: Any) -> None:
        check_int(name, value, low)

    return check


def _check_coefficient(value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 1:
        raise InvalidArguments(f"backoff_coefficient must be a number >= 1, got {value!r}")


@attrs.frozen
class SupervisorPolicy:
    """How the system treats crashing handlers. Defaults suit most services."""

    max_attempts: int = attrs.field(default=3, validator=_int_at_least("max_attempts", 1))
    """Attempts per signal (the first run included) before it is dead-lettered."""
    initial_backoff: dt.timedelta = attrs.field(
        default=dt.timedelta(milliseconds=100), validator=positive_timedelta("initial_backoff")
    )
    """Wait before the first retry."""
    backoff_coefficient: float = attrs.field(default=2.0)
    """Each retry waits this many times longer than the one before."""
    max_backoff: dt.timedelta = attrs.field(
        default=dt.timedelta(seconds=10), validator=positive_timedelta("max_backoff")
    )
    """Upper bound of one wait."""
    max_restarts: int = attrs.field(default=10, validator=_int_at_least("max_restarts", 1))
    """Crashes allowed within ``within`` before the actor is stopped."""
    within: dt.timedelta = attrs.field(
        default=dt.timedelta(minutes=1), validator=positive_timedelta("within")
    )
    """The restart-intensity window, and the stopped actor's cool-down."""

    @backoff_coefficient.validator
    def _check_coeff(self, attr: attrs.Attribute[float], value: float) -> None:
        _check_coefficient(value)

    def backoff(self, attempt: int) -> dt.timedelta:
        """The wait before retry number ``attempt`` (1 for the first retry)."""
        try:
            secs = self.initial_backoff.total_seconds() * self.backoff_coefficient ** (attempt - 1)
        except OverflowError:
            return self.max_backoff
        return self.max_backoff if secs >= self.max_backoff.total_seconds() else dt.timedelta(seconds=secs)


@attrs.frozen
class RetryPolicy:
    """How an activity is retried. Defaults: 1 s, doubling, at most 100 s, 5 attempts."""

    initial_interval: dt.timedelta = attrs.field(
        default=dt.timedelta(seconds=1), validator=positive_timedelta("initial_interval")
    )
    """Wait before the first retry."""
    backoff_coefficient: float = 2.0
    """Each wait is this many times the one before (>= 1)."""
    maximum_interval: dt.timedelta | None = attrs.field(
        default=None, validator=positive_timedelta("maximum_interval", optional=True)
    )
    """Upper bound of one wait; default 100 x ``initial_interval``."""
    maximum_attempts: int | None = 5
    """Attempts in all, the first included (>= 1); ``None``: retry until it succeeds
    (only a non-retryable error fails it)."""
    non_retryable: tuple[type[BaseException], ...] = ()
    """Exception types that fail the activity at once."""

    def __attrs_post_init__(self) -> None:
        _check_coefficient(self.backoff_coefficient)
        if self.maximum_attempts is not None:
            check_int("maximum_attempts", self.maximum_attempts, 1)
        if self.maximum_interval is not None and self.maximum_interval < self.initial_interval:
            raise InvalidArguments("maximum_interval must not be shorter than initial_interval")
        nr = self.non_retryable
        if not isinstance(nr, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in nr
        ):
            raise InvalidArguments(f"non_retryable must be a tuple of exception types, got {nr!r}")

    def exhausted(self, attempt: int) -> bool:
        """Whether failed attempt number ``attempt`` was the last one allowed."""
        return self.maximum_attempts is not None and attempt >= self.maximum_attempts

    def delay(self, attempt: int) -> dt.timedelta:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        cap = self.maximum_interval or self.initial_interval * 100
        try:
            secs = self.initial_interval.total_seconds() * self.backoff_coefficient ** (attempt - 1)
        except OverflowError:  # a long run of retries (compensations retry without end)
            return cap
        return cap if secs >= cap.total_seconds() else dt.timedelta(seconds=secs)


def _optional_count(name: str) -> Callable[[object, Any, Any], None]:
    def check(inst: object, attr: Any, value: Any) -> None:
        if value is not None:
            check_int(name, value, 0)

    return check


@attrs.frozen
class Retention:
    """How long a running system keeps what it only needs for a while.

    ``ActorSystem(retention=Retention(...))`` runs a job every ``every`` that prunes,
    in short transactions of at most ``batch`` rows: processed marks (the memory of
    idempotency keys) older than ``marks_for``, with journal steps of invocations that
    no longer exist; dead letters older than ``dead_letters_for``; all but the newest
    ``keep_dead_letters`` dead letters. ``None`` keeps that kind forever. A key
    repeated after its mark was pruned is applied again: keep marks longer than any
    client retries.
    """

    marks_for: dt.timedelta | None = attrs.field(
        default=dt.timedelta(days=30), validator=positive_timedelta("marks_for", optional=True)
    )
    """Keep processed marks (and orphaned journal steps) this long."""
    dead_letters_for: dt.timedelta | None = attrs.field(
        default=None, validator=positive_timedelta("dead_letters_for", optional=True)
    )
    """Keep dead letters this long (``None``: no age limit)."""
    keep_dead_letters: int | None = attrs.field(default=None, validator=_optional_count("keep_dead_letters"))
    """Keep only the newest this many dead letters (``None``: no cap)."""
    every: dt.timedelta = attrs.field(default=dt.timedelta(hours=1), validator=positive_timedelta("every"))
    """How often the job runs (the first run is one period after start)."""
    batch: int = attrs.field(default=10_000, validator=_int_at_least("batch", 1))
    """Rows of each kind one transaction removes at most; the job repeats while it is full."""
