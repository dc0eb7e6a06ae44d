"""OtelObserver driven directly, in the order the runtime calls it.

Spans go to the SDK's in-memory exporter and metrics to its in-memory reader; the
tests check names, attributes, parent/child links, the trace context carried from a
sender to the invocation its signal starts, and that the observer never raises.
"""

from __future__ import annotations

import contextvars
import logging
import re

import attrs
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from actors import InvalidArguments
from actors.observe import Observer
from actors.otel import (
    ACTIVE_ACTORS_METRIC,
    ACTIVITY_ATTEMPTS_METRIC,
    ACTIVITY_DURATION_METRIC,
    ACTIVITY_FAILURES_METRIC,
    ASK_DURATION_METRIC,
    COMMIT_BATCH_SIZE_METRIC,
    COMMIT_DURATION_METRIC,
    DEAD_LETTERS_METRIC,
    INBOX_DEPTH_METRIC,
    INVOCATION_DURATION_METRIC,
    INVOCATIONS_METRIC,
    PARKED_INVOCATIONS_METRIC,
    PENDING_WRITES_METRIC,
    RETRIES_METRIC,
    RUNNING_INVOCATIONS_METRIC,
    TIMER_LAG_METRIC,
    OtelObserver,
)
from tests.otel.support import attributes, chain, info, telemetry

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def traceparent(span: ReadableSpan | trace.Span) -> str:
    """The W3C traceparent of a span, built here independently of the propagator."""
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def test_it_is_an_observer() -> None:
    assert isinstance(telemetry().observer, Observer)


def test_carry_outside_any_span_is_none() -> None:
    assert telemetry().observer.carry() is None


def test_carry_gives_the_current_spans_traceparent() -> None:
    t = telemetry()
    with t.tracer_provider.get_tracer("app").start_as_current_span("request") as span:
        carried = t.observer.carry()
    assert carried is not None
    assert TRACEPARENT.match(carried)
    assert carried == traceparent(span)
    assert span.get_span_context().trace_flags.sampled


def test_an_invocation_span_is_the_child_of_the_carried_context() -> None:
    t = telemetry()
    with t.tracer_provider.get_tracer("app").start_as_current_span("request"):
        carried = t.observer.carry()
    run = t.observer.invocation_started(info(signal_id="sig-9", attempt=2, trace=carried))
    inside = t.observer.carry()
    t.observer.invocation_ended(run, "ok", None)
    request, span = t.span("request"), t.span("Account.deposit")
    assert span.parent is not None
    assert request.context is not None
    assert span.context is not None
    assert span.parent.span_id == request.context.span_id
    assert span.context.trace_id == request.context.trace_id
    assert span.kind is SpanKind.CONSUMER
    assert attributes(span) == {
        "actors.entity_type": "Account",
        "actors.entity_id": "alice",
        "actors.signal_id": "sig-9",
        "actors.handler": "deposit",
        "actors.attempt": 2,
        "actors.outcome": "ok",
    }
    assert span.status.status_code is StatusCode.UNSET
    # while it ran, its own span was the one carried with signals it sent
    assert inside == traceparent(span)
    # and after it ended, nothing is current any more
    assert t.observer.carry() is None


def test_without_a_carried_context_the_run_starts_a_new_trace() -> None:
    """The ambient span of the calling task is not the parent: only the carried context is."""
    t = telemetry()
    with t.tracer_provider.get_tracer("app").start_as_current_span("unrelated") as unrelated:
        t.observer.invocation_ended(t.observer.invocation_started(info()), "ok", None)
        assert trace.get_current_span() is unrelated  # the observer put it back
    span = t.span("Account.deposit")
    assert span.parent is None
    assert span.context is not None
    assert span.context.trace_id != unrelated.get_span_context().trace_id


@pytest.mark.parametrize(
    "garbage", ["", "not a traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "00-x" * 300]
)
def test_a_malformed_carried_context_starts_a_new_trace(garbage: str) -> None:
    t = telemetry()
    t.observer.invocation_ended(t.observer.invocation_started(info(trace=garbage)), "ok", None)
    assert t.span("Account.deposit").parent is None


def test_steps_are_children_of_their_invocation_with_errors_recorded() -> None:
    t = telemetry()
    o = t.observer
    run = o.invocation_started(info(handler="checkout"))
    first = o.step_started(run, "activity", "charge_card", 1)
    o.step_ended(first, "crashed", ConnectionError("bank down"))
    second = o.step_started(run, "activity", "charge_card", 2)
    o.step_ended(second, "ok", None)
    ask = o.step_started(run, "ask", "Inventory.reserve", 1)
    asked_with = o.carry()
    o.step_ended(ask, "ok", None)
    o.invocation_ended(run, "ok", None)

    spans = t.spans()
    parent = t.span("Account.checkout")
    assert parent.context is not None
    activity = [s for s in spans if s.name == "activity charge_card"]
    assert [attributes(s)["actors.attempt"] for s in activity] == [1, 2]
    for s in activity:
        assert s.parent is not None
        assert s.parent.span_id == parent.context.span_id
        assert s.kind is SpanKind.INTERNAL
    crashed, ok = activity
    assert attributes(crashed)["actors.outcome"] == "crashed"
    assert crashed.status.status_code is StatusCode.ERROR
    assert "ConnectionError: bank down" in (crashed.status.description or "")
    [event] = crashed.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "ConnectionError"
    assert ok.status.status_code is StatusCode.UNSET
    assert not ok.events
    assert {k: attributes(ok)[k] for k in ("actors.step.kind", "actors.step.name", "actors.signal_id")} == {
        "actors.step.kind": "activity",
        "actors.step.name": "charge_card",
        "actors.signal_id": "s1",
    }
    ask_span = t.span("ask Inventory.reserve")
    assert ask_span.kind is SpanKind.CLIENT
    assert list(chain(spans, ask_span)) == ["ask Inventory.reserve", "Account.checkout"]
    # a signal sent during the ask carries the ask's span: the callee nests under it
    assert ask_span.context is not None
    assert asked_with == traceparent(ask_span)


def test_a_saga_is_one_trace_across_entities_outbox_and_timers() -> None:
    """tell -> Order.place -> (outbox) Payment.charge -> (timer) Payment.expire."""
    t = telemetry()
    o = t.observer
    with t.tracer_provider.get_tracer("app").start_as_current_span("POST /orders"):
        told = o.carry()
    order = o.invocation_started(info("Order", "o1", "s1", "place", trace=told))
    outbox_trace = o.carry()  # kept with the outbox message
    o.invocation_ended(order, "ok", None)
    payment = o.invocation_started(info("Payment", "p1", "o1-pay", "charge", trace=outbox_trace))
    timer_trace = o.carry()  # kept with the timer the handler sets
    o.invocation_ended(payment, "ok", None)
    o.timer_fired("Payment", "p1", "expiry", 0.25)
    expire = o.invocation_started(info("Payment", "p1", "expiry@1", "expire", trace=timer_trace))
    o.invocation_ended(expire, "ok", None)

    spans = t.spans()
    assert len({s.context.trace_id for s in spans if s.context is not None}) == 1
    assert list(chain(spans, t.span("Payment.expire"))) == [
        "Payment.expire",
        "Payment.charge",
        "Order.place",
        "POST /orders",
    ]


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("rejected", StatusCode.UNSET),
        ("paused", StatusCode.UNSET),
        ("crashed", StatusCode.ERROR),
        ("dead_lettered", StatusCode.ERROR),
    ],
)
def test_an_invocations_outcome_sets_its_status(outcome: str, status: StatusCode) -> None:
    t = telemetry()
    error = ValueError("no") if outcome != "paused" else None
    t.observer.invocation_ended(t.observer.invocation_started(info()), outcome, error)  # type: ignore[arg-type]
    span = t.span("Account.deposit")
    assert attributes(span)["actors.outcome"] == outcome
    assert span.status.status_code is status
    assert [e.name for e in span.events] == (["exception"] if error else [])


def test_invocation_metrics_by_entity_type_handler_and_outcome() -> None:
    t = telemetry()
    o = t.observer
    for outcome in ("ok", "ok", "crashed", "rejected"):
        o.invocation_ended(o.invocation_started(info()), outcome, None)  # type: ignore[arg-type]
    o.invocation_ended(o.invocation_started(info("Order", handler="place")), "ok", None)
    labels = {"entity_type": "Account", "handler": "deposit"}
    assert t.value(INVOCATIONS_METRIC, **labels, outcome="ok") == 2
    assert t.value(INVOCATIONS_METRIC, **labels, outcome="crashed") == 1
    assert t.value(INVOCATIONS_METRIC, **labels, outcome="rejected") == 1
    assert t.value(INVOCATIONS_METRIC, entity_type="Order", handler="place", outcome="ok") == 1
    assert t.value(INVOCATION_DURATION_METRIC, **labels, outcome="ok") == 2  # histogram count
    # no entity id in any metric's attributes (unbounded cardinality)
    for name in t.metric_names():
        for a, _ in t.points(name):
            assert not {"entity_id", "actors.entity_id"} & set(a)


def test_step_retry_dead_letter_commit_and_timer_metrics() -> None:
    t = telemetry()
    o = t.observer
    run = o.invocation_started(info(handler="checkout"))
    for outcome in ("crashed", "crashed", "failed"):
        o.step_ended(o.step_started(run, "activity", "charge", 1), outcome, RuntimeError("x"))  # type: ignore[arg-type]
    o.step_ended(o.step_started(run, "activity", "ship", 1), "ok", None)
    o.step_ended(o.step_started(run, "ask", "Stock.take", 1), "ok", None)
    o.invocation_ended(run, "crashed", RuntimeError("x"))
    o.retry_scheduled(info(handler="checkout"), 0.5, RuntimeError("x"))
    o.retry_scheduled(info(handler="checkout"), 1.0, RuntimeError("x"))
    o.dead_lettered(info(handler="checkout"), RuntimeError("x"))
    o.committed(12, 0.004, False)
    o.committed(3, 0.002, False)
    o.committed(5, 0.1, True)
    o.timer_fired("Account", "alice", "tick", 0.3)
    o.timer_fired("Account", "bob", "tick", -0.001)  # early by clock skew: recorded as 0

    charge = {"entity_type": "Account", "activity": "charge"}
    assert t.value(ACTIVITY_ATTEMPTS_METRIC, **charge, outcome="crashed") == 2
    assert t.value(ACTIVITY_ATTEMPTS_METRIC, **charge, outcome="failed") == 1
    assert t.value(ACTIVITY_FAILURES_METRIC, **charge, outcome="crashed") == 2
    assert t.value(ACTIVITY_FAILURES_METRIC, **charge, outcome="failed") == 1
    assert t.value(ACTIVITY_ATTEMPTS_METRIC, entity_type="Account", activity="ship", outcome="ok") == 1
    assert not [a for a, _ in t.points(ACTIVITY_FAILURES_METRIC) if a.get("activity") == "ship"]
    assert t.value(ACTIVITY_DURATION_METRIC, **charge, outcome="crashed") == 2
    assert t.value(ASK_DURATION_METRIC, entity_type="Account", ask="Stock.take", outcome="ok") == 1
    assert t.value(RETRIES_METRIC, entity_type="Account", handler="checkout") == 2
    assert t.value(DEAD_LETTERS_METRIC, entity_type="Account", handler="checkout") == 1
    [(_, ok_sizes)] = [(a, p) for a, p in t.points(COMMIT_BATCH_SIZE_METRIC) if a == {"outcome": "ok"}]
    assert (ok_sizes.count, ok_sizes.sum, ok_sizes.max) == (2, 15, 12)  # type: ignore[attr-defined]
    assert t.value(COMMIT_BATCH_SIZE_METRIC, outcome="failed") == 1
    assert t.value(COMMIT_DURATION_METRIC, outcome="ok") == 2
    [(_, lag)] = t.points(TIMER_LAG_METRIC)
    assert (lag.count, lag.min, lag.max) == (2, 0.0, 0.3)  # type: ignore[attr-defined]


@attrs.frozen
class OldStatistics:
    """A statistics record without the newer fields: those gauges report nothing."""

    active_actors: int
    pending_writes: int


@attrs.frozen
class NewStatistics:
    active_actors: int
    pending_writes: int
    inbox_depth: int
    parked_invocations: int
    running_handlers: int


def test_gauges_read_the_statistics_record_defensively() -> None:
    stats: list[object] = [OldStatistics(3, 1)]
    t = telemetry(statistics=lambda: stats[-1])
    assert t.value(ACTIVE_ACTORS_METRIC) == 3
    assert t.value(PENDING_WRITES_METRIC) == 1
    assert t.points(INBOX_DEPTH_METRIC) == []
    stats.append(NewStatistics(4, 0, 17, 2, 5))
    assert t.value(INBOX_DEPTH_METRIC) == 17
    assert t.value(PARKED_INVOCATIONS_METRIC) == 2
    assert t.value(RUNNING_INVOCATIONS_METRIC) == 5
    assert t.value(ACTIVE_ACTORS_METRIC) == 4


def test_watch_sets_the_statistics_later() -> None:
    t = telemetry()
    assert t.points(ACTIVE_ACTORS_METRIC) == []
    t.observer.watch(lambda: OldStatistics(7, 0))
    assert t.value(ACTIVE_ACTORS_METRIC) == 7


def test_a_failing_statistics_callable_reports_nothing_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> object:
        raise RuntimeError("stats gone")

    t = telemetry(statistics=broken)
    with caplog.at_level(logging.ERROR, logger="actors.otel"):
        assert t.points(ACTIVE_ACTORS_METRIC) == []
        assert t.points(INBOX_DEPTH_METRIC) == []
    assert [r.name for r in caplog.records] == ["actors.otel"]


def test_the_observer_never_raises_and_logs_each_failure_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = telemetry()
    o = t.observer

    class Broken:
        def add(self, *_: object, **__: object) -> None:
            raise RuntimeError("exporter exploded")

    monkeypatch.setattr(o, "_invocations", Broken())
    with caplog.at_level(logging.ERROR, logger="actors.otel"):
        for _ in range(3):
            o.invocation_ended(o.invocation_started(info()), "ok", None)
    assert [r.getMessage() for r in caplog.records] == [
        "OtelObserver.invocation_ended failed (logged once; telemetry goes on)"
    ]
    # the spans still ended and the context was put back
    assert [s.name for s in t.spans()] == ["Account.deposit"] * 3
    assert o.carry() is None
    # tokens the observer did not make are ignored
    o.invocation_ended(None, "ok", None)
    o.invocation_ended(object(), "ok", None)
    o.step_ended(None, "ok", None)
    assert o.step_started(None, "activity", "x", 1) is None


def test_a_step_never_ended_ends_with_its_run_and_restores_the_context() -> None:
    """A step cut short (the run cancelled at a system's close) must not leak its span or context."""
    t = telemetry()
    o = t.observer
    run = o.invocation_started(info(handler="checkout"))
    o.step_started(run, "activity", "charge", 1)
    o.invocation_ended(run, "paused", None)
    assert o.carry() is None
    step = t.span("activity charge")
    assert attributes(step)["actors.outcome"] == "paused"
    assert t.value(ACTIVITY_ATTEMPTS_METRIC, entity_type="Account", activity="charge", outcome="paused") == 1
    assert t.points(ACTIVITY_FAILURES_METRIC) == []  # cut short is not a failure
    assert attributes(t.span("Account.checkout"))["actors.outcome"] == "paused"


def test_ending_twice_counts_once() -> None:
    t = telemetry()
    run = t.observer.invocation_started(info())
    t.observer.invocation_ended(run, "ok", None)
    t.observer.invocation_ended(run, "crashed", None)
    assert t.value(INVOCATIONS_METRIC, entity_type="Account", handler="deposit", outcome="ok") == 1
    assert len(t.spans()) == 1


def test_a_run_ended_in_another_context_does_not_disturb_either(caplog: pytest.LogCaptureFixture) -> None:
    """Started in one task, ended in another: no detach error, both contexts stay sane."""
    t = telemetry()
    started = contextvars.copy_context()
    run = started.run(t.observer.invocation_started, info())
    with caplog.at_level(logging.DEBUG):
        contextvars.copy_context().run(t.observer.invocation_ended, run, "ok", None)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(t.spans()) == 1
    assert t.observer.carry() is None  # this context never saw the run


def test_bad_constructor_arguments_are_refused() -> None:
    with pytest.raises(InvalidArguments, match="meter_provider"):
        OtelObserver(meter_provider="prometheus")  # type: ignore[arg-type]
    with pytest.raises(InvalidArguments, match="tracer_provider"):
        OtelObserver(tracer_provider=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArguments, match="statistics"):
        OtelObserver(statistics=3)  # type: ignore[arg-type]


def test_every_metric_name_is_registered() -> None:
    t = telemetry(statistics=lambda: NewStatistics(1, 1, 1, 1, 1))
    o = t.observer
    run = o.invocation_started(info())
    o.step_ended(o.step_started(run, "activity", "a", 1), "crashed", None)
    o.step_ended(o.step_started(run, "ask", "b", 1), "ok", None)
    o.invocation_ended(run, "ok", None)
    o.retry_scheduled(info(), 1.0, ValueError())
    o.dead_lettered(info(), ValueError())
    o.committed(1, 0.001, False)
    o.timer_fired("Account", "alice", "k", 0.0)
    import actors.otel as module

    names = {getattr(module, n) for n in module.__all__ if n.endswith("_METRIC")}
    assert len(names) == 16
    assert t.metric_names() == names
