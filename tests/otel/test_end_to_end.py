"""The runtime feeding an OtelObserver: one trace follows a saga across entities.

A request span outside the system tells a sender; the sender's run asks a bank
(journaled ask), runs an activity and tells a sink through the outbox; the sink
schedules a timer whose firing runs later. Every run must be in the request's trace,
each the child of what caused it, and the metrics must count what ran.
"""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from actors import ActorSystem, Entity, applies, query, signal
from actors.testing import VirtualClock
from persistence import MemoryStore

from .support import Telemetry, chain, telemetry

pytestmark = pytest.mark.anyio


@attrs.frozen
class Got:
    what: str


async def _lookup(name: str) -> str:
    return name.upper()


@attrs.define
class Bank(Entity):
    seen: tuple[str, ...] = ()

    @signal
    def credit(self, what: str) -> int:
        self.emit(Got(what))
        return len(self.seen)

    @applies
    def _got(self, e: Got) -> None:
        self.seen = (*self.seen, e.what)


@attrs.define
class Sink(Entity):
    seen: tuple[str, ...] = ()

    @signal
    def take(self, what: str) -> None:
        self.emit(Got(what))
        self.schedule(Sink.later, what, after=dt.timedelta(minutes=5), key="later")

    @signal
    def later(self, what: str) -> None:
        self.emit(Got(f"later {what}"))

    @query
    def got(self) -> tuple[str, ...]:
        return self.seen

    @applies
    def _got(self, e: Got) -> None:
        self.seen = (*self.seen, e.what)


@attrs.define
class Sender(Entity):
    @signal
    async def send(self, what: str) -> None:
        await self.ref(Bank, "b").ask(Bank.credit, what)
        shout = await self.run(_lookup, what)
        await self.ref(Sink, "s").tell(Sink.take, shout)


async def _run(t: Telemetry) -> None:
    clock = VirtualClock()
    async with ActorSystem(MemoryStore(), [Sender, Bank, Sink], clock=clock, observer=t.observer) as system:
        t.observer.watch(system.statistics)
        tracer = t.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("request"):
            await system.ref(Sender, "x").tell(Sender.send, "hi")
        await clock.advance(dt.timedelta(0))
        assert await system.ref(Sink, "s").query(Sink.got) == ("HI",)
        await clock.advance(dt.timedelta(minutes=5))
        assert await system.ref(Sink, "s").query(Sink.got) == ("HI", "later HI")


async def test_one_trace_follows_a_saga_through_asks_activities_outbox_and_timers() -> None:
    t = telemetry()
    await _run(t)
    spans = t.spans()
    request = t.span("request")
    assert request.context is not None
    trace_id = request.context.trace_id
    names = {s.name for s in spans}
    assert {"Sender.send", "Bank.credit", "Sink.take", "Sink.later"} <= names
    assert any(n.startswith("ask ") for n in names)
    assert any(n.startswith("activity ") for n in names)
    for name in ("Sender.send", "Bank.credit", "Sink.take", "Sink.later"):
        span = t.span(name)
        assert span.context is not None
        assert span.context.trace_id == trace_id, name
    assert list(chain(spans, t.span("Sink.later")))[-1] == "request"
    assert "Sender.send" in list(chain(spans, t.span("Sink.take")))
    assert "Sink.take" in list(chain(spans, t.span("Sink.later")))


async def test_the_metrics_count_what_ran() -> None:
    t = telemetry()
    await _run(t)
    names = t.metric_names()
    assert {
        "actors.invocations",
        "actors.invocation.duration",
        "actors.activity.attempts",
        "actors.ask.duration",
        "actors.commit.batch_size",
        "actors.commit.duration",
        "actors.timer.lag",
        "actors.actors.active",
        "actors.inbox.depth",
    } <= names
    assert t.value("actors.invocations", entity_type="Sink", handler="take", outcome="ok") == 1
    assert t.value("actors.invocations", entity_type="Sink", handler="later", outcome="ok") == 1
    assert t.value("actors.invocations", entity_type="Sender", handler="send", outcome="ok") == 1
