"""OpenTelemetry for the vidjobs processes: set-up from the standard `OTEL_*` variables, and
the spans of a job's way through the fleet, one trace per job run:

    POST /v1/jobs                       server span (the FastAPI instrumentation)
      vidjobs.submit                    jobs.service; its traceparent is stored on the job
                                        row and in the `job.submitted` outbox payload
        vidjobs.job-events publish      the relay (PRODUCER); its traceparent goes into the
                                        message's `traceparent` header (Kafka or in-process)
          vidjobs.job-events process    each consumer group that handles it (CONSUMER)
        vidjobs.attempt                 the runner's claim, one per attempt (job_key, tenant,
                                        attempt, fencing_token): parent = the stored traceparent
          vidjobs.execute               the executor
            ffmpeg                      each ffmpeg process
          vidjobs.finish                the fenced recording of the attempt's outcome

Optional: without the `otel` extra, or with nothing configured, `setup` leaves tracing off
and every helper here is a no-op (`jobs.tracecontext.enabled()` is False).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jobs import tracecontext
from jobs.models import Job
from jobs.outcomes import Outcome
from workers.bus.base import Message, Record

if TYPE_CHECKING:
    from workers.executor import ExecutionContext, ExecutionResult, Executor

log = logging.getLogger("vidjobs.tracing")

TRACEPARENT = "traceparent"
EXPORTERS = ("otlp", "console", "none")


# --- set-up -----------------------------------------------------------------------------


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for: `OTEL_TRACES_EXPORTER` (a comma list of
    otlp, console, none), else otlp when an OTLP endpoint is set, else none."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if not raw:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise SystemExit(
            f"OTEL_TRACES_EXPORTER={raw!r}: unknown exporter {unknown[0]!r};"
            f" allowed: {', '.join(EXPORTERS)} (comma-separated)"
        )
    return [name for name in names if name != "none"]


def setup(process: str, env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on as the `OTEL_*` variables say; True when it is on.

    `service.name` is `OTEL_SERVICE_NAME`, else `vidjobs-<process>`; the SDK itself reads
    `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER*`, `OTEL_BSP_*` and the exporter's
    `OTEL_EXPORTER_OTLP_*` (endpoint, headers, timeout, protocol)."""
    env = os.environ if env is None else env
    names = exporter_names(env)
    if not names or tracecontext.enabled():
        return tracecontext.enabled()
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning(
            "the OTEL_* variables ask for traces, but OpenTelemetry is not installed"
            " (pip install 'vidjobs[otel]'): tracing is off"
        )
        return False
    attributes = {"vidjobs.process": process}
    if not env.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = f"vidjobs-{process}"
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        exporter = _otlp_exporter(env) if name == "otlp" else ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing is on (%s)", ", ".join(names))
    return True


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            raise SystemExit(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: not supported;"
                " allowed: http/protobuf (installed with vidjobs[otel]), grpc"
            )
    except ImportError:
        raise SystemExit(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: its exporter is not installed"
            " (http/protobuf comes with vidjobs[otel]; grpc needs"
            " opentelemetry-exporter-otlp-proto-grpc)"
        ) from None
    return OTLPSpanExporter()


# --- context ----------------------------------------------------------------------------


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer(tracecontext.TRACER)


def _parent(traceparent: str | None) -> Any:
    """The context a stored traceparent names (an empty one, a new trace, when None)."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {TRACEPARENT: traceparent} if traceparent else {}
    return TraceContextTextMapPropagator().extract(carrier, context=Context())


def _traceparent_of(span: Any) -> str | None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def current() -> Any:
    """The current trace context (to hand to a later span), or None when tracing is off."""
    if not tracecontext.enabled():
        return None
    from opentelemetry import context

    return context.get_current()


def _job_attributes(job: Job) -> dict[str, str | int]:
    return {
        "vidjobs.job_key": job.key,
        "vidjobs.tenant": job.tenant_id,
        "vidjobs.attempt": job.attempts,
        "vidjobs.fencing_token": job.fencing_token,
    }


def _error(span: Any, message: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, message))


# --- the relay and the consumers ----------------------------------------------------------


def _messaging(operation: str, topic: str, key: str, headers: Mapping[str, str]) -> dict[str, str]:
    """The attributes every message span has (semantic conventions, plus the job's)."""
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.destination.name": topic,
        "vidjobs.job_key": key,
        "vidjobs.event_type": headers.get("type", ""),
    }


@contextmanager
def publishing(messages: Sequence[Message], topic: str) -> Iterator[list[Message]]:
    """A PRODUCER span for each message that carries a stored traceparent (its child);
    yields the messages with each span's traceparent in the header instead. The spans end
    when the block does (after the acks), with the error if it raised."""
    if not tracecontext.enabled():
        yield list(messages)
        return
    from opentelemetry.trace import SpanKind

    spans: list[Any] = []
    out: list[Message] = []
    for message in messages:
        stored = message.headers.get(TRACEPARENT)
        if stored is None:
            out.append(message)
            continue
        span = _tracer().start_span(
            f"{topic} publish",
            context=_parent(stored),
            kind=SpanKind.PRODUCER,
            attributes={
                **_messaging("publish", topic, message.key, message.headers),
                "messaging.kafka.message.key": message.key,
            },
        )
        spans.append(span)
        headers = {**message.headers, TRACEPARENT: _traceparent_of(span) or stored}
        out.append(replace(message, headers=headers))
    try:
        yield out
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            _error(span, f"publish failed: {exc!r}"[:200])
        raise
    finally:
        for span in spans:
            span.end()


@contextmanager
def consuming(record: Record, group: str, topic: str) -> Iterator[None]:
    """A CONSUMER span around one record's handling, continuing the trace of its header."""
    stored = record.headers.get(TRACEPARENT)
    if stored is None or not tracecontext.enabled():
        yield
        return
    from opentelemetry.trace import SpanKind

    with _tracer().start_as_current_span(
        f"{topic} process",
        context=_parent(stored),
        kind=SpanKind.CONSUMER,
        attributes={
            **_messaging("process", topic, record.key, record.headers),
            "messaging.consumer.group.name": group,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
        },
    ):
        yield


# --- the runner ---------------------------------------------------------------------------


async def attempt(job: Job, owner: str, work: Awaitable[None]) -> None:
    """Await a claimed job's `work` inside its attempt span, a child of the traceparent its
    submission stored (a new trace when it has none)."""
    if not tracecontext.enabled():
        await work
        return
    with _tracer().start_as_current_span(
        "vidjobs.attempt",
        context=_parent(job.traceparent),
        attributes={**_job_attributes(job), "vidjobs.worker": owner},
    ):
        await work


async def execute(executor: Executor, ctx: ExecutionContext) -> ExecutionResult:
    """`executor.execute(ctx)` inside a `vidjobs.execute` span."""
    if not tracecontext.enabled():
        return await executor.execute(ctx)
    with _tracer().start_as_current_span(
        "vidjobs.execute", attributes={"vidjobs.executor": type(executor).__name__}
    ) as span:
        result = await executor.execute(ctx)
        if result.media_type:
            span.set_attribute("vidjobs.media_type", result.media_type)
        return result


def finished(parent: Any, outcome: Outcome, row: Job | None, start_ns: int) -> None:
    """The `vidjobs.finish` span of one outcome the loop's statement just recorded (from
    `start_ns` to now), in the trace of the attempt that queued it (`parent`)."""
    if parent is None or not tracecontext.enabled():
        return
    attributes: dict[str, str | int | bool] = {
        **_job_attributes(outcome.job),
        "vidjobs.outcome": outcome.kind.value,
        "vidjobs.recorded": row is not None,
    }
    if row is not None:
        attributes["vidjobs.status"] = row.status
    if outcome.error_code:
        attributes["vidjobs.error_code"] = outcome.error_code
    span = _tracer().start_span(
        "vidjobs.finish", context=parent, start_time=start_ns, attributes=attributes
    )
    if row is None:
        _error(span, "not recorded: the fence moved on (the job was taken over)")
    span.end(end_time=time.time_ns())
