"""Supervision policy: per-signal retries with backoff, and restart intensity.

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

import attrs

from actors.errors import InvalidArguments


def _positive_td(name: str) -> Callable[[object, attrs.Attribute[dt.timedelta], dt.timedelta], None]:
    def check(inst: object, attr: attrs.Attribute[dt.timedelta], value: dt.timedelta) -> None:
        if not isinstance(value, dt.timedelta) or value <= dt.timedelta(0):
            raise InvalidArguments(f"{name} must be a positive timedelta, got {value!r}")

    return check


def _int_at_least(name: str, low: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(inst: object, attr: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InvalidArguments(f"{name} must be an int >= {low}, got {value!r}")

    return check


@attrs.frozen
class SupervisorPolicy:
    """How the system treats crashing handlers. Defaults suit most services."""

    max_attempts: int = attrs.field(default=3, validator=_int_at_least("max_attempts", 1))
    """Attempts per signal (the first run included) before it is dead-lettered."""
    initial_backoff: dt.timedelta = attrs.field(
        default=dt.timedelta(milliseconds=100), validator=_positive_td("initial_backoff")
    )
    """Wait before the first retry."""
    backoff_coefficient: float = attrs.field(default=2.0)
    """Each retry waits this many times longer than the one before."""
    max_backoff: dt.timedelta = attrs.field(
        default=dt.timedelta(seconds=10), validator=_positive_td("max_backoff")
    )
    """Upper bound of one wait."""
    max_restarts: int = attrs.field(default=10, validator=_int_at_least("max_restarts", 1))
    """Crashes allowed within ``within`` before the actor is stopped."""
    within: dt.timedelta = attrs.field(default=dt.timedelta(minutes=1), validator=_positive_td("within"))
    """The restart-intensity window, and the stopped actor's cool-down."""

    @backoff_coefficient.validator
    def _check_coeff(self, attr: attrs.Attribute[float], value: float) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 1:
            raise InvalidArguments(f"backoff_coefficient must be a number >= 1, got {value!r}")

    def backoff(self, attempt: int) -> dt.timedelta:
        """The wait before retry number ``attempt`` (1 for the first retry)."""
        try:
            secs = self.initial_backoff.total_seconds() * self.backoff_coefficient ** (attempt - 1)
        except OverflowError:
            return self.max_backoff
        return self.max_backoff if secs >= self.max_backoff.total_seconds() else dt.timedelta(seconds=secs)
