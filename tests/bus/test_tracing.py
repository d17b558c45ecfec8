"""One trace per job: the API request, the submission, the relay's publish, the consumers,
the worker's attempt, its execution and its finish, with the right parents. Spans go to an
in-memory exporter; the pipeline runs on the in-process bus and on a real Kafka broker."""

from __future__ import annotations

import httpx
import pytest

from jobs.models import Job
from jobs.tenants import create_tenant
from tests.bus.conftest import Stack
from tests.bus.helpers import read_topic, running, wait_until
from tests.bus.test_pipeline import all_published, relay, worker
from tests.support.kafka import unique
from tests.support.traces import Spans, hex_trace, parent_id, span_id, spans  # noqa: F401
from workers import tracing

EDIT = {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 1, "end": 2}]}


async def job_row(stack: Stack, key: str) -> Job:
    async with stack.db.reader.connect() as conn:
        from jobs import statements

        job = await statements.select_job_by_key(conn, stack.tenant.id, key)
    assert job is not None
    return job


async def test_spans_of_one_job_form_one_trace(stack: Stack, spans: Spans) -> None:  # noqa: F811
    async with stack.db.transaction() as conn:
        tenant, token = await create_tenant(conn, "traced")
    app = stack.c.app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.post(
            "/v1/jobs", json=EDIT, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 201, answer.text
    key = answer.json()["key"]

    async def succeeded() -> bool:
        async with stack.db.reader.connect() as conn:
            from jobs import statements

            job = await statements.select_job_by_key(conn, tenant.id, key)
        return job is not None and job.status == "succeeded"

    async with running(relay(stack), worker(stack)):
        await wait_until(succeeded, what="the job to succeed")
        for name in ("vidjobs.finish", f"{stack.bus.topic} publish", f"{stack.bus.topic} process"):
            await wait_until(lambda n=name: _has(spans, n), timeout=15, what=f"a span {name}")
        await wait_until(lambda: all_published(stack), what="the relay to publish every event")

    server = spans.one("POST /v1/jobs")
    submit = spans.one("vidjobs.submit")
    publish = spans.one(f"{stack.bus.topic} publish", **{"vidjobs.event_type": "job.submitted"})
    process = spans.one(
        f"{stack.bus.topic} process", **{"messaging.consumer.group.name": stack.settings.kafka_worker_group}
    )
    attempt = spans.one("vidjobs.attempt")
    execute = spans.one("vidjobs.execute")
    finish = spans.one("vidjobs.finish")
    trace_id = hex_trace(server)
    for span in (submit, publish, process, attempt, execute, finish):
        assert hex_trace(span) == trace_id, f"{span.name} is in another trace"

    assert server.parent is None  # the request started the trace
    assert parent_id(submit) == span_id(server)
    assert parent_id(publish) == span_id(submit)
    assert parent_id(process) == span_id(publish)
    assert parent_id(attempt) == span_id(submit)  # the claim continues the stored context
    assert parent_id(execute) == span_id(attempt)
    assert parent_id(finish) == span_id(attempt)

    assert submit.attributes is not None and submit.attributes["vidjobs.job_key"] == key
    assert submit.attributes["vidjobs.created"] is True
    assert dict(attempt.attributes or {}) | {"vidjobs.worker": ""} == {
        "vidjobs.job_key": key,
        "vidjobs.tenant": tenant.id,
        "vidjobs.attempt": 1,
        "vidjobs.fencing_token": 1,
        "vidjobs.worker": "",
    }
    assert finish.attributes is not None
    assert finish.attributes["vidjobs.outcome"] == "succeeded"
    assert finish.attributes["vidjobs.recorded"] is True
    assert (execute.attributes or {})["vidjobs.executor"] == "SleepExecutor"

    # The row and the event carry the submission's context; the message carries the publish's.
    async with stack.db.reader.connect() as conn:
        from jobs import statements

        job = await statements.select_job_by_key(conn, tenant.id, key)
        from jobs.outbox import select_job_events

        assert job is not None and job.id is not None
        events = await select_job_events(conn, job.id)
    stored = job.traceparent
    assert stored is not None and stored.startswith(f"00-{trace_id}-{span_id(submit):016x}-")
    assert events[0].type == "job.submitted" and events[0].payload["traceparent"] == stored
    records = await read_topic(stack.bus, unique("reader"), count=2)
    submitted = [r for r in records if r.key == key and r.headers["type"] == "job.submitted"]
    sent = submitted[0].headers[tracing.TRACEPARENT]
    assert sent.startswith(f"00-{trace_id}-{span_id(publish):016x}-")


async def _has(found: Spans, name: str) -> bool:
    return bool(found.named(name))


async def test_a_job_submitted_untraced_runs_untraced_without_errors(stack: Stack) -> None:
    """Tracing off (no provider): nothing is stored, no header is added, the job runs."""
    job = (await stack.service.submit(stack.tenant, _edit())).job
    assert job.traceparent is None

    async def succeeded() -> bool:
        return (await job_row(stack, job.key)).status == "succeeded"

    async with running(relay(stack), worker(stack)):
        await wait_until(succeeded, what="the job to succeed")
        await wait_until(lambda: all_published(stack), what="the relay to publish every event")
    records = await read_topic(stack.bus, unique("reader"), count=3)
    assert records and all(tracing.TRACEPARENT not in r.headers for r in records)


def _edit():  # type: ignore[no-untyped-def]
    from tests.bus.helpers import edit

    return edit(7)


@pytest.mark.ffmpeg
async def test_each_ffmpeg_process_is_a_span_of_the_execution(spans: Spans) -> None:  # noqa: F811
    from opentelemetry import trace

    from workers.ffmpeg.binary import find_ffmpeg
    from workers.ffmpeg.run import Limits, run_ffmpeg

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("vidjobs.execute") as parent:
        result = await run_ffmpeg([find_ffmpeg(), "-hide_banner", "-version"], Limits(), timeout_s=30)
    assert result.returncode == 0
    ffmpeg = spans.one("ffmpeg")
    assert parent_id(ffmpeg) == parent.get_span_context().span_id
    assert (ffmpeg.attributes or {})["process.exit.code"] == 0
