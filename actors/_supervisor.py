"""Supervision, the deciding half: what becomes of a crashed handler run.

:meth:`Supervisor.decide` takes the error, the attempt number and the actor's recent
crash times and returns a :data:`Decision`: :class:`Retry` after a delay,
:class:`DeadLetter` (out of attempts, or a bug in the code), or :class:`Stop` (the
restart intensity is exceeded). It needs no running system: unit tests drive it
directly. The actor loop calls it from one place and carries it out. Internal.
"""

from __future__ import annotations

import attrs

from actors._policies import SupervisorPolicy
from actors.errors import (
    CompensationFailed,
    DeadlockError,
    DefinitionError,
    InvalidArguments,
    NonDeterminismError,
    PayloadTooLarge,
    SerializationError,
    UnknownEntity,
    UnknownHandler,
)

CODE_BUGS: tuple[type[BaseException], ...] = (
    DefinitionError,
    SerializationError,
    PayloadTooLarge,
    InvalidArguments,
    UnknownEntity,
    UnknownHandler,
    DeadlockError,
    NonDeterminismError,
    CompensationFailed,
)
"""Failures that are the code's, not the world's: the same input fails the same way,
so they are dead-lettered at once, not retried, and do not count as restarts."""


@attrs.frozen
class Retry:
    """Run the signal again after ``delay`` seconds."""

    delay: float


@attrs.frozen
class DeadLetter:
    """Move the signal to the dead letters; ``code_bug``: at once, as a bug in the code."""

    code_bug: bool = False


@attrs.frozen
class Stop:
    """Stop the actor: ``crashes`` within the window exceed its restart intensity."""

    crashes: int


Decision = Retry | DeadLetter | Stop


class Supervisor:
    """Decides, for one policy, what a crash leads to."""

    __slots__ = ("policy",)

    def __init__(self, policy: SupervisorPolicy) -> None:
        self.policy = policy

    def decide(self, error: BaseException, attempt: int, crashes: list[float], now: float) -> Decision:
        """The decision for run number ``attempt`` crashing with ``error`` at ``now``
        (monotonic seconds). ``crashes`` holds the actor's earlier crash times; this
        crash is added to it and those out of the window dropped (a code bug, which
        counts as no restart, leaves it alone). Nothing else is read or changed."""
        if isinstance(error, CODE_BUGS):
            return DeadLetter(code_bug=True)
        policy = self.policy
        crashes.append(now)
        window = policy.within.total_seconds()
        while crashes and crashes[0] <= now - window:
            del crashes[0]
        if len(crashes) > policy.max_restarts:
            return Stop(len(crashes))
        if attempt >= policy.max_attempts:
            return DeadLetter()
        return Retry(policy.backoff(attempt).total_seconds())
