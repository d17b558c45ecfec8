"""Logging for the vidjobs processes: structured lines through structlog.

Every library keeps logging through the standard library; one handler renders each record
with structlog's processors, as JSON (one object a line) or for a console
(`VIDJOBS_LOG_FORMAT=json|console`; console on a terminal, JSON otherwise). Values bound
with `job_context` (and the request's, in the API) join every line logged inside it, so
each line about a job names its key, tenant, attempt and fencing token.

While Kafka is down aiokafka logs the same connection error about a thousand times a
second; `Throttle` lets one of each through per interval and says how many it dropped.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import structlog
from structlog.typing import EventDict, Processor


class Throttle(logging.Filter):
    def __init__(self, seconds: float = 5.0, prefix: str = "aiokafka") -> None:
        super().__init__()
        self.seconds = seconds
        self.prefix = prefix
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last, dropped = self._last.get(key, (0.0, 0))
        if now - last < self.seconds:
            self._last[key] = (last, dropped + 1)
            return False
        if dropped:
            record.msg = f"{record.msg} (and {dropped} more like it in the last {self.seconds:g} s)"
        self._last[key] = (now, 0)
        if len(self._last) > 10_000:
            self._last.clear()
        return True


def job_context(job: Any) -> contextvars.Context:
    """A context for a job's task: every line the task logs names the job's key, tenant,
    attempt and fencing token (`asyncio.create_task(..., context=job_context(job))`). A task
    row of a job of several tasks is named as `task` (its key) and `task_kind` instead of
    `job_key`: one task can serve several jobs of its tenant (GET /v1/jobs/{key}/tasks)."""
    ctx = contextvars.copy_context()
    names: dict[str, Any] = {"job_key": job.key}
    if getattr(job, "role", "job") == "task":
        names = {"task": job.key, "task_kind": (job.spec or {}).get("kind", "edit")}
    ctx.run(
        structlog.contextvars.bind_contextvars,
        **names,
        tenant=job.tenant_id,
        attempt=job.attempts,
        fencing_token=job.fencing_token,
    )
    return ctx


def _trace_ids(_: Any, __: str, event: EventDict) -> EventDict:
    """The current OpenTelemetry trace and span, when tracing is on and a span is active."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event["trace_id"] = format(ctx.trace_id, "032x")
            event["span_id"] = format(ctx.span_id, "016x")
    return event


def resolve_format(wanted: str | None) -> str:
    if wanted in ("json", "console"):
        return wanted
    return "console" if sys.stderr.isatty() else "json"


def setup(verbose: bool = False, fmt: str | None = None) -> None:
    """Route every logger through one structlog-rendered handler on stderr."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _trace_ids,
    ]
    renderer: Processor
    if resolve_format(fmt) == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(Throttle())  # on the handler: it sees records from every aiokafka logger
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own handlers would print twice
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
