"""An in-memory OpenTelemetry set-up for a test: every finished span of the test, by name.

The global tracer provider can be set once per process; the fixture sets it for one test
and unsets it afterwards (OpenTelemetry's private globals, test code only), so the rest of
the suite runs with tracing off, as production does unless configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

trace = pytest.importorskip("opentelemetry.trace", reason="needs the otel extra")
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.util._once import Once  # noqa: E402


class Spans:
    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str, **attributes: Any) -> ReadableSpan:
        found = [
            s
            for s in self.named(name)
            if all((s.attributes or {}).get(k) == v for k, v in attributes.items())
        ]
        names = sorted({s.name for s in self.all()})
        assert len(found) == 1, f"{len(found)} spans {name} {attributes}; spans seen: {names}"
        return found[0]


def _unset() -> None:
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]


@pytest.fixture
def spans() -> Iterator[Spans]:
    """Tracing on, for this test, into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _unset()
    trace.set_tracer_provider(provider)
    try:
        yield Spans(exporter)
    finally:
        provider.shutdown()
        _unset()


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id
