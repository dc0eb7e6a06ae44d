"""The observer seam: what the runtime tells the outside about its work.

The runtime calls one :class:`Observer` (``ActorSystem(observer=...)``) at the points
people want to see: an invocation's start and end, each journaled step (activity
attempt, journaled ask), retries, dead letters, group commits and timer firings.
It also asks the observer for a trace context to carry with every new signal (a
``tell``, an ``ask``, an outbox message, a timer), and hands that context back when
the signal's invocation starts, so a trace follows a saga across entities.

The default, :data:`NO_OBSERVER`, does nothing and costs one attribute lookup and a
call per point. ``actors.otel`` (the ``otel`` extra) implements it with
OpenTelemetry metrics and spans. Observers must not raise: the runtime treats an
observer's exception as a bug of the observer, logs it once, and goes on.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import attrs

Outcome = Literal["ok", "rejected", "crashed", "dead_lettered", "paused", "failed", "duplicate"]
"""How an invocation or a step ended: ``crashed`` will be retried, ``dead_lettered``
will not, ``paused`` stopped at a system's close (it resumes after the next start),
``failed`` is a step (activity, journaled ask) that failed for good, ``duplicate`` is a
run of an inbox signal that an earlier run had processed already (its commit was
refused and its effects dropped: ``SignalTaken``)."""


@attrs.frozen
class InvocationInfo:
    """Which invocation an observation is about."""

    entity_type: str
    """Stable name of the entity type."""
    entity_id: str
    """The entity's id."""
    signal_id: str
    """The invocation's signal id."""
    handler: str
    """The ``@signal`` handler's name."""
    attempt: int
    """This run's number (1 for the first; retries and re-runs count up)."""
    trace: str | None = None
    """The trace context the signal carried (``carry()`` of its sender), if any."""


@runtime_checkable
class Observer(Protocol):
    """Receives the runtime's observations. Every method must return quickly and never raise."""

    def carry(self) -> str | None:
        """The current trace context, to store with a signal sent now (None: none)."""
        ...

    def invocation_started(self, info: InvocationInfo) -> object:
        """A handler run starts; the returned token comes back to the calls below."""
        ...

    def invocation_ended(self, token: object, outcome: Outcome, error: BaseException | None) -> None:
        """That run ended (after its commit, for ``ok`` and ``rejected``)."""
        ...

    def step_started(self, token: object, kind: str, name: str, attempt: int) -> object:
        """A journaled step of that run starts: ``kind`` is ``activity`` or ``ask``."""
        ...

    def step_ended(self, step: object, outcome: Outcome, error: BaseException | None) -> None:
        """That step ended (``ok``, ``crashed`` for an attempt to be retried, ``failed``)."""
        ...

    def retry_scheduled(self, info: InvocationInfo, delay: float, error: BaseException) -> None:
        """A crashed handler run will be retried after ``delay`` seconds."""
        ...

    def dead_lettered(self, info: InvocationInfo, error: BaseException) -> None:
        """A signal was moved to the dead letters."""
        ...

    def committed(self, writes: int, seconds: float, failed: bool) -> None:
        """One group commit of ``writes`` writes took ``seconds`` (``failed``: it raised)."""
        ...

    def timer_fired(self, entity_type: str, entity_id: str, key: str, lag: float) -> None:
        """A durable timer fired ``lag`` seconds after its due time."""
        ...


class _NoObserver:
    """The default observer: ignores everything."""

    __slots__ = ()

    def carry(self) -> str | None:
        return None

    def invocation_started(self, info: InvocationInfo) -> object:
        return None

    def invocation_ended(self, token: object, outcome: Outcome, error: BaseException | None) -> None:
        pass

    def step_started(self, token: object, kind: str, name: str, attempt: int) -> object:
        return None

    def step_ended(self, step: object, outcome: Outcome, error: BaseException | None) -> None:
        pass

    def retry_scheduled(self, info: InvocationInfo, delay: float, error: BaseException) -> None:
        pass

    def dead_lettered(self, info: InvocationInfo, error: BaseException) -> None:
        pass

    def committed(self, writes: int, seconds: float, failed: bool) -> None:
        pass

    def timer_fired(self, entity_type: str, entity_id: str, key: str, lag: float) -> None:
        pass


NO_OBSERVER: Observer = _NoObserver()
"""The observer used when none is given: does nothing."""
