"""Traces across processes: `vidjobs serve`, `relay` and `worker` as separate processes on a
real PostgreSQL and a real Kafka broker, each exporting over OTLP/HTTP to a test receiver.
The worker's spans must carry the trace id of the API request that submitted the job."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import httpx
import pytest

from jobs import statements
from jobs.tenants import create_tenant
from tests.kafka.conftest import Fleet
from tests.support.otlp import Receiver, otlp  # noqa: F401

pytestmark = [pytest.mark.kafka, pytest.mark.ffmpeg]
# `vidjobs serve` probes path sources: the test makes a real (tiny) video
EDIT = {"source": {"path": "traced.mp4"}, "operations": [{"op": "trim", "start": 0, "end": 1}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_worker_spans_carry_the_api_requests_trace_id(
    fleet: Fleet,
    otlp: Receiver,  # noqa: F811
) -> None:
    tracing_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within a fraction of a second
    }
    video = fleet.settings.source_roots[0] / "traced.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=2",
         "-pix_fmt", "yuv420p", str(video)],
        check=True, timeout=60,
    )
    port = free_port()
    api = await fleet.spawn("api", "serve", "--port", str(port), **tracing_env)
    relay = await fleet.spawn("relay", "relay", **tracing_env)
    worker = await fleet.spawn(
        "worker", "worker", "--executor", "sleep", **tracing_env, VIDJOBS_SLEEP_SECONDS="0.05"
    )
    await relay.wait_for("relay is active", timeout=180)  # a loaded machine starts slowly
    await worker.wait_for("consuming", timeout=180)
    async with fleet.c.db.transaction() as conn:
        tenant, token = await create_tenant(conn, "traced")
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with asyncio.timeout(180):
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        answer = await http.post("/v1/jobs", json=EDIT, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.text
    key = answer.json()["key"]

    async def spans_arrived() -> bool:
        return bool(
            otlp.find("vidjobs-worker", "vidjobs.finish", **{"vidjobs.job_key": key})
            and otlp.find("vidjobs-relay", f"{fleet.settings.kafka_topic} publish")
            and otlp.find("vidjobs-serve", "vidjobs.submit", **{"vidjobs.job_key": key})
        )

    try:
        async with asyncio.timeout(120):
            while not await spans_arrived():
                await asyncio.sleep(0.2)
    except TimeoutError:
        seen = sorted({(s.service, s.name) for s in otlp.spans})
        raise AssertionError(f"spans missing after 120 s; received: {seen}") from None

    (request,) = otlp.find("vidjobs-serve", "POST /v1/jobs")
    (submit,) = otlp.find("vidjobs-serve", "vidjobs.submit", **{"vidjobs.job_key": key})
    (publish,) = otlp.find(
        "vidjobs-relay", f"{fleet.settings.kafka_topic} publish", **{"vidjobs.job_key": key,
        "vidjobs.event_type": "job.submitted"}
    )
    (attempt,) = otlp.find("vidjobs-worker", "vidjobs.attempt", **{"vidjobs.job_key": key})
    (execute,) = otlp.find("vidjobs-worker", "vidjobs.execute")
    (finish,) = otlp.find("vidjobs-worker", "vidjobs.finish", **{"vidjobs.job_key": key})
    process = otlp.find("vidjobs-worker", f"{fleet.settings.kafka_topic} process",
                        **{"vidjobs.job_key": key})
    assert process, "the worker's consumer span of the job.submitted message is missing"
    trace_id = request.trace_id
    assert {s.trace_id for s in (submit, publish, attempt, execute, finish, *process)} == {trace_id}
    assert request.parent_span_id == ""  # the API request started the trace
    assert submit.parent_span_id == request.span_id
    assert publish.parent_span_id == submit.span_id  # across the database (the stored context)
    assert process[0].parent_span_id == publish.span_id  # across Kafka (the message header)
    assert attempt.parent_span_id == submit.span_id  # the claim, in another process
    assert execute.parent_span_id == attempt.span_id
    assert finish.parent_span_id == attempt.span_id
    assert attempt.attributes["vidjobs.tenant"] == tenant.id
    assert attempt.attributes["vidjobs.attempt"] == 1
    assert attempt.attributes["vidjobs.fencing_token"] == 1
    async with fleet.c.db.reader.connect() as conn:
        job = await statements.select_job_by_key(conn, tenant.id, key)
    assert job is not None and job.status == "succeeded"
    for proc in (api, relay, worker):
        assert not proc.saw("Traceback"), "\n".join(proc.lines[-30:])
