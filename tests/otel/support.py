"""An OtelObserver wired to the SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import attrs
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors.observe import InvocationInfo
from actors.otel import OtelObserver


@attrs.define
class Telemetry:
    """An observer and what it emitted."""

    observer: OtelObserver
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def points(self, name: str) -> list[tuple[dict[str, object], object]]:
        """(attributes, point) of every data point of metric ``name``."""
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        out.extend((dict(p.attributes or {}), p) for p in m.data.data_points)
        return out

    def value(self, name: str, **attributes: object) -> float:
        """A counter's or gauge's value (a histogram's count) for exactly these attributes."""
        for attrs_, point in self.points(name):
            if attrs_ == attributes:
                count = getattr(point, "count", None)
                return float(count if count is not None else point.value)  # type: ignore[attr-defined]
        raise AssertionError(f"no point of {name} with {attributes}: {self.points(name)}")

    def metric_names(self) -> set[str]:
        data = self.reader.get_metrics_data()
        return {
            m.name
            for rm in (data.resource_metrics if data is not None else ())
            for sm in rm.scope_metrics
            for m in sm.metrics
        }


def telemetry(statistics: Callable[[], object] | None = None) -> Telemetry:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    observer = OtelObserver(meter_provider, tracer_provider, statistics=statistics)
    return Telemetry(observer, exporter, reader, tracer_provider)


def info(
    entity_type: str = "Account",
    entity_id: str = "alice",
    signal_id: str = "s1",
    handler: str = "deposit",
    attempt: int = 1,
    trace: str | None = None,
) -> InvocationInfo:
    return InvocationInfo(entity_type, entity_id, signal_id, handler, attempt, trace)


def attributes(span: ReadableSpan) -> Mapping[str, object]:
    return dict(span.attributes or {})


def chain(spans: list[ReadableSpan], leaf: ReadableSpan) -> Iterator[str]:
    """Names from ``leaf`` up through its parents (within ``spans``)."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    node: ReadableSpan | None = leaf
    while node is not None:
        yield node.name
        node = by_id.get(node.parent.span_id) if node.parent is not None else None
