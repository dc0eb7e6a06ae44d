"""OpenTelemetry metrics and spans for the runtime (the ``otel`` extra).

Turn it on with ``ActorSystem(..., observer=OtelObserver())``; with no providers
given it uses the global ones (``opentelemetry.metrics.set_meter_provider`` and
``opentelemetry.trace.set_tracer_provider``), so an app that already configures
OpenTelemetry gets the runtime's telemetry beside its own. Nothing here is imported
by ``import actors``: without the extra the runtime uses ``NO_OBSERVER`` and costs
nothing.

Spans: one per handler run, named ``<entity_type>.<handler>``, the child of the
span that was current when its signal was sent (the sender's W3C ``traceparent``
travels with the signal through the inbox, the outbox and timers), so one trace
follows a saga across entities; a child span per activity attempt and per journaled
ask. Metrics: see the ``*_METRIC`` names below and the README's "Observability"
section. Metric attributes never include an entity id (unbounded cardinality);
spans do.

The runtime calls :meth:`OtelObserver.invocation_started` in the task that runs the
handler: the invocation's span is made current there (and each step's span during
the step), so :meth:`~OtelObserver.carry` called for a signal sent by the handler
returns that span's context, and instrumented libraries used by an activity nest
their spans under it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Concatenate, Final, ParamSpec, TypeVar

import attrs

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as e:  # pragma: no cover - exercised in a subprocess without the extra
    raise ImportError("actors.otel needs OpenTelemetry: pip install 'durable-entity-actors[otel]'") from e

from actors.errors import InvalidArguments
from actors.observe import InvocationInfo, Observer, Outcome

__all__ = [
    "ACTIVE_ACTORS_METRIC",
    "ACTIVITY_ATTEMPTS_METRIC",
    "ACTIVITY_DURATION_METRIC",
    "ACTIVITY_FAILURES_METRIC",
    "ASK_DURATION_METRIC",
    "COMMIT_BATCH_SIZE_METRIC",
    "COMMIT_DURATION_METRIC",
    "DEAD_LETTERS_METRIC",
    "INBOX_DEPTH_METRIC",
    "INVOCATIONS_METRIC",
    "INVOCATION_DURATION_METRIC",
    "PARKED_INVOCATIONS_METRIC",
    "PENDING_WRITES_METRIC",
    "RETRIES_METRIC",
    "RUNNING_INVOCATIONS_METRIC",
    "SCOPE",
    "TIMER_LAG_METRIC",
    "OtelObserver",
]

log = logging.getLogger("actors.otel")

SCOPE: Final = "actors"
"""The instrumentation scope (meter and tracer name) of everything emitted here."""

INVOCATION_DURATION_METRIC: Final = "actors.invocation.duration"
"""Histogram (s) of handler runs, by ``entity_type``, ``handler`` and ``outcome``."""
INVOCATIONS_METRIC: Final = "actors.invocations"
"""Counter of handler runs, by ``entity_type``, ``handler`` and ``outcome``."""
RETRIES_METRIC: Final = "actors.retries"
"""Counter of crashed runs scheduled for a retry, by ``entity_type`` and ``handler``."""
DEAD_LETTERS_METRIC: Final = "actors.dead_letters"
"""Counter of signals moved to the dead letters, by ``entity_type`` and ``handler``."""
ACTIVITY_ATTEMPTS_METRIC: Final = "actors.activity.attempts"
"""Counter of activity attempts, by ``entity_type``, ``activity`` and ``outcome``."""
ACTIVITY_FAILURES_METRIC: Final = "actors.activity.failures"
"""Counter of activity attempts that raised (``crashed``: retried; ``failed``: for good)."""
ACTIVITY_DURATION_METRIC: Final = "actors.activity.duration"
"""Histogram (s) of activity attempts, by ``entity_type``, ``activity`` and ``outcome``."""
ASK_DURATION_METRIC: Final = "actors.ask.duration"
"""Histogram (s) of journaled asks, by ``entity_type`` (the asker), ``ask`` and ``outcome``."""
COMMIT_BATCH_SIZE_METRIC: Final = "actors.commit.batch_size"
"""Histogram of writes per group commit, by ``outcome`` (``ok`` or ``failed``)."""
COMMIT_DURATION_METRIC: Final = "actors.commit.duration"
"""Histogram (s) of group commits, by ``outcome`` (``ok`` or ``failed``)."""
TIMER_LAG_METRIC: Final = "actors.timer.lag"
"""Histogram (s) of how late durable timers fired, by ``entity_type``."""
INBOX_DEPTH_METRIC: Final = "actors.inbox.depth"
"""Gauge: accepted signals not yet processed (statistics field ``inbox_depth``)."""
PARKED_INVOCATIONS_METRIC: Final = "actors.invocations.parked"
"""Gauge: invocations waiting on a journaled step (statistics field ``parked_invocations``)."""
RUNNING_INVOCATIONS_METRIC: Final = "actors.invocations.running"
"""Gauge: handler runs in progress (statistics field ``running_handlers``)."""
ACTIVE_ACTORS_METRIC: Final = "actors.actors.active"
"""Gauge: actors in memory (statistics field ``active_actors``)."""
PENDING_WRITES_METRIC: Final = "actors.commit.pending"
"""Gauge: writes waiting for the next group commit (statistics field ``pending_writes``)."""

_GAUGES: Final = (
    (INBOX_DEPTH_METRIC, "inbox_depth", "{signal}", "Accepted signals not yet processed"),
    (PARKED_INVOCATIONS_METRIC, "parked_invocations", "{invocation}", "Invocations parked on a step"),
    (RUNNING_INVOCATIONS_METRIC, "running_handlers", "{invocation}", "Handler runs in progress"),
    (ACTIVE_ACTORS_METRIC, "active_actors", "{actor}", "Actors in memory"),
    (PENDING_WRITES_METRIC, "pending_writes", "{write}", "Writes waiting for the next commit"),
)
_SECONDS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SECONDS_LONG: Final = (*_SECONDS, 30.0, 60.0, 300.0)
"""Histogram buckets for durations: sub-millisecond commits up to minute-long asks."""
_WRITES: Final = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
_ERRORS: Final = frozenset(("crashed", "dead_lettered", "failed"))
_MAX_TRACE: Final = 512
"""A carried trace context longer than this is ignored (a traceparent is 55 characters)."""

try:
    _VERSION: str | None = importlib.metadata.version("durable-entity-actors")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    _VERSION = None

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _safe(
    fn: Callable[Concatenate[OtelObserver, _P], _R],
) -> Callable[Concatenate[OtelObserver, _P], _R | None]:
    """Observers never raise: log the first failure of each method, then return None."""

    def guarded(self: OtelObserver, /, *args: _P.args, **kwargs: _P.kwargs) -> _R | None:
        try:
            return fn(self, *args, **kwargs)
        except Exception:
            if fn.__name__ not in self._failed:
                self._failed.add(fn.__name__)
                log.exception("OtelObserver.%s failed (logged once; telemetry goes on)", fn.__name__)
            return None

    guarded.__name__ = fn.__name__
    guarded.__qualname__ = fn.__qualname__
    guarded.__doc__ = fn.__doc__
    return guarded


@attrs.define
class _Run:
    """The token of one handler run: its span and what its metrics need."""

    info: InvocationInfo
    span: trace.Span
    started: float
    attach: _Attached
    ended: bool = False
    steps: list[_Step] = attrs.Factory(list)
    """Its steps not ended yet (ended with the run if the runtime never ends them)."""


@attrs.define
class _Step:
    """The token of one journaled step of a run."""

    run: _Run
    kind: str
    name: str
    span: trace.Span
    started: float
    attach: _Attached
    ended: bool = False


@attrs.frozen
class _Attached:
    """A context made current, undone only where it is still the current one."""

    token: Token[otel_context.Context]
    context: otel_context.Context

    def undo(self) -> None:
        # Only in the task that attached it and only if nothing attached since: a run
        # ended from another task (or steps ended out of order) must not reset a
        # context that is not ours; that task's context then ends with the task.
        if otel_context.get_current() is self.context:
            otel_context.detach(self.token)


def _attach(span: trace.Span, parent: otel_context.Context) -> _Attached:
    ctx = trace.set_span_in_context(span, parent)
    token = otel_context.attach(ctx)
    return _Attached(token, otel_context.get_current())


class OtelObserver:
    """An :class:`~actors.observe.Observer` that reports through OpenTelemetry.

    ``meter_provider`` and ``tracer_provider`` default to the global providers.
    ``statistics`` is a callable returning the system's statistics record (usually
    ``lambda: system.statistics()``, or set it later with :meth:`watch`): the
    gauges read its fields ``inbox_depth``, ``parked_invocations``,
    ``running_handlers``, ``active_actors`` and ``pending_writes`` when they are
    collected, skipping any field the record lacks. It is called on the collecting
    thread (a periodic reader's or an HTTP scrape's).
    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        statistics: Callable[[], object] | None = None,
    ) -> None:
        if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
            raise InvalidArguments(f"meter_provider must be a MeterProvider, got {meter_provider!r:.80}")
        if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
            raise InvalidArguments(f"tracer_provider must be a TracerProvider, got {tracer_provider!r:.80}")
        self._failed: set[str] = set()
        self._statistics: Callable[[], object] | None = None
        self.watch(statistics)
        self._propagator = TraceContextTextMapPropagator()
        self._tracer = trace.get_tracer(SCOPE, _VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, _VERSION or "", meter_provider=meter_provider)
        self._inv_duration = meter.create_histogram(
            INVOCATION_DURATION_METRIC, "s", "Duration of handler runs",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )  # fmt: skip
        self._invocations = meter.create_counter(INVOCATIONS_METRIC, "{invocation}", "Handler runs")
        self._retries = meter.create_counter(RETRIES_METRIC, "{retry}", "Crashed runs scheduled for a retry")
        self._dead = meter.create_counter(DEAD_LETTERS_METRIC, "{signal}", "Signals dead-lettered")
        self._attempts = meter.create_counter(ACTIVITY_ATTEMPTS_METRIC, "{attempt}", "Activity attempts")
        self._failures = meter.create_counter(
            ACTIVITY_FAILURES_METRIC, "{attempt}", "Activity attempts that raised"
        )
        self._activity_duration = meter.create_histogram(
            ACTIVITY_DURATION_METRIC, "s", "Duration of activity attempts",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )  # fmt: skip
        self._ask_duration = meter.create_histogram(
            ASK_DURATION_METRIC, "s", "Duration of journaled asks",
            explicit_bucket_boundaries_advisory=_SECONDS_LONG,
        )  # fmt: skip
        self._batch_size = meter.create_histogram(
            COMMIT_BATCH_SIZE_METRIC, "{write}", "Writes per group commit",
            explicit_bucket_boundaries_advisory=_WRITES,
        )  # fmt: skip
        self._commit_duration = meter.create_histogram(
            COMMIT_DURATION_METRIC, "s", "Duration of group commits",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )  # fmt: skip
        self._timer_lag = meter.create_histogram(
            TIMER_LAG_METRIC, "s", "How late durable timers fired",
            explicit_bucket_boundaries_advisory=_SECONDS_LONG,
        )  # fmt: skip
        for name, field, unit, description in _GAUGES:
            meter.create_observable_gauge(name, [self._gauge(field)], unit, description)

    def watch(self, statistics: Callable[[], object] | None) -> None:
        """Read the gauges from ``statistics()`` from now on (``None``: report no gauges)."""
        if statistics is not None and not callable(statistics):
            raise InvalidArguments(f"statistics must be a callable (or None), got {statistics!r:.80}")
        self._statistics = statistics

    def _gauge(self, field: str) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
        def observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            read = self._statistics
            if read is None:
                return []
            try:
                value = getattr(read(), field, None)
            except Exception:
                if "statistics" not in self._failed:
                    self._failed.add("statistics")
                    log.exception("the statistics callable of OtelObserver failed (logged once)")
                return []
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return []
            return [metrics.Observation(value)]

        return observe

    # ------------------------------------------------------------ trace context
    @_safe
    def carry(self) -> str | None:
        """The current span's W3C ``traceparent`` (None when no span is current)."""
        if not trace.get_current_span().get_span_context().is_valid:
            return None
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get("traceparent")

    def _parent(self, carried: str | None) -> otel_context.Context:
        """The context a run's span starts in: the carried one, else a new trace.

        Never the ambient context: the task running the handler may have inherited
        an unrelated span from whoever started it.
        """
        if not carried or not isinstance(carried, str) or len(carried) > _MAX_TRACE:
            return otel_context.Context()
        return self._propagator.extract({"traceparent": carried}, context=otel_context.Context())

    # ------------------------------------------------------------ invocations
    @_safe
    def invocation_started(self, info: InvocationInfo) -> object:
        """Start the run's span (child of ``info.trace``) and make it current."""
        parent = self._parent(info.trace)
        span = self._tracer.start_span(
            f"{info.entity_type}.{info.handler}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "actors.entity_type": info.entity_type,
                "actors.entity_id": info.entity_id,
                "actors.signal_id": info.signal_id,
                "actors.handler": info.handler,
                "actors.attempt": info.attempt,
            },
        )
        return _Run(info, span, time.perf_counter(), _attach(span, parent))

    @_safe
    def invocation_ended(self, token: object, outcome: Outcome, error: BaseException | None) -> None:
        """Record the run's duration and outcome and end its span."""
        if not isinstance(token, _Run) or token.ended:
            return
        token.ended = True
        for step in reversed(token.steps):  # a step cut short (cancelled) ends with its run
            self.step_ended(step, outcome, None)
        token.attach.undo()  # before the metrics: whatever fails below, the context is restored
        info = token.info
        try:
            labels = {"entity_type": info.entity_type, "handler": info.handler, "outcome": outcome}
            self._inv_duration.record(time.perf_counter() - token.started, labels)
            self._invocations.add(1, labels)
        finally:
            _end(token.span, outcome, error)

    @_safe
    def step_started(self, token: object, kind: str, name: str, attempt: int) -> object:
        """Start a child span of the run for one activity attempt or journaled ask."""
        if not isinstance(token, _Run):
            return None
        info = token.info
        parent = trace.set_span_in_context(token.span, otel_context.Context())
        span = self._tracer.start_span(
            f"{kind} {name}",
            context=parent,
            kind=trace.SpanKind.CLIENT if kind == "ask" else trace.SpanKind.INTERNAL,
            attributes={
                "actors.entity_type": info.entity_type,
                "actors.entity_id": info.entity_id,
                "actors.signal_id": info.signal_id,
                "actors.step.kind": kind,
                "actors.step.name": name,
                "actors.attempt": attempt,
            },
        )
        step = _Step(token, kind, name, span, time.perf_counter(), _attach(span, parent))
        token.steps.append(step)
        return step

    @_safe
    def step_ended(self, step: object, outcome: Outcome, error: BaseException | None) -> None:
        """Record the step's metrics and end its span."""
        if not isinstance(step, _Step) or step.ended:
            return
        step.ended = True
        if step in step.run.steps:
            step.run.steps.remove(step)
        step.attach.undo()
        elapsed = time.perf_counter() - step.started
        entity_type = step.run.info.entity_type
        try:
            if step.kind == "activity":
                labels = {"entity_type": entity_type, "activity": step.name, "outcome": outcome}
                self._attempts.add(1, labels)
                self._activity_duration.record(elapsed, labels)
                if outcome in ("crashed", "failed"):
                    self._failures.add(1, labels)
            elif step.kind == "ask":
                labels = {"entity_type": entity_type, "ask": step.name, "outcome": outcome}
                self._ask_duration.record(elapsed, labels)
        finally:
            _end(step.span, outcome, error)

    # ------------------------------------------------------------ counters
    @_safe
    def retry_scheduled(self, info: InvocationInfo, delay: float, error: BaseException) -> None:
        """Count a retry of a crashed run."""
        self._retries.add(1, _handler_labels(info))

    @_safe
    def dead_lettered(self, info: InvocationInfo, error: BaseException) -> None:
        """Count a dead letter."""
        self._dead.add(1, _handler_labels(info))

    @_safe
    def committed(self, writes: int, seconds: float, failed: bool) -> None:
        """Record one group commit's size and duration."""
        labels = {"outcome": "failed" if failed else "ok"}
        self._batch_size.record(writes, labels)
        self._commit_duration.record(max(seconds, 0.0), labels)

    @_safe
    def timer_fired(self, entity_type: str, entity_id: str, key: str, lag: float) -> None:
        """Record how late a timer fired."""
        self._timer_lag.record(max(lag, 0.0), {"entity_type": entity_type})


def _handler_labels(info: InvocationInfo) -> Mapping[str, str]:
    return {"entity_type": info.entity_type, "handler": info.handler}


def _end(span: trace.Span, outcome: Outcome, error: BaseException | None) -> None:
    span.set_attribute("actors.outcome", outcome)
    if error is not None:
        span.record_exception(error)
    if outcome in _ERRORS:
        detail = f"{type(error).__name__}: {error}" if error is not None else outcome
        span.set_status(trace.Status(trace.StatusCode.ERROR, detail))
    span.end()


if TYPE_CHECKING:

    def _conforms(observer: OtelObserver) -> Observer:
        return observer  # mypy checks OtelObserver against the Observer protocol here
