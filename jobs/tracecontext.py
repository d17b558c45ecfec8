"""Trace context on the job side: the W3C `traceparent` a submission stores, and its spans.

OpenTelemetry is optional (`pip install vidjobs[otel]`). Without it, or while no SDK tracer
provider is set up (`workers.tracing.setup` reads the standard `OTEL_*` variables), every
function here is a no-op: `current_traceparent()` is None and `traced` calls straight
through. The traceparent is always the W3C one (whatever `OTEL_PROPAGATORS` says), since
it is stored in a column and read back by other processes.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar

try:
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the `otel` extra is not installed: tracing stays off
    otel_trace = None  # type: ignore[assignment]
    TraceContextTextMapPropagator = None  # type: ignore[assignment,misc]

P = ParamSpec("P")
R = TypeVar("R")
Attributes = Mapping[str, str | int | float | bool]
TRACER = "vidjobs"
# Probes and scrapes: no span for each (they would bury the job traces).
UNTRACED_URLS = "healthz,readyz,metrics"


def enabled() -> bool:
    """A tracer provider of the SDK is set up (tracing was configured and is not disabled)."""
    if otel_trace is None:
        return False
    provider = otel_trace.get_tracer_provider()
    return not isinstance(provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None when no span is recording."""
    if otel_trace is None or not otel_trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def traced(
    name: str, attributes: Callable[[Any], Attributes] | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Run an async function in a span `name`; `attributes(result)` are added at the end.

    An exception is recorded on the span (status error) and re-raised."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if not enabled():
                return await fn(*args, **kwargs)
            tracer = otel_trace.get_tracer(TRACER)
            with tracer.start_as_current_span(name) as span:
                result = await fn(*args, **kwargs)
                if attributes is not None:
                    span.set_attributes(dict(attributes(result)))
                return result

        return wrapper

    return decorate


def instrument_app(app: Any) -> None:
    """Server spans for every request (the official FastAPI instrumentation), when tracing
    is on and the instrumentation is installed; probes and /metrics are left out."""
    if not enabled():
        return
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:
        return
    FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_URLS)
