"""The Python client (`vidjobs.Client`, `vidjobs.AsyncClient`) against a running `vidjobs up`
with the real ffmpeg executor."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import vidjobs
from tests.e2e.conftest import credentials, embedded_env, start_embedded, stop_embedded
from tests.support.databases import require_service
from vidjobs import errors


def _ffmpeg() -> str:
    from workers.ffmpeg import FfmpegNotFound, find_ffmpeg

    try:
        return find_ffmpeg()
    except FfmpegNotFound as exc:
        require_service("ffmpeg", str(exc))
        raise


@pytest.fixture
def server(tmp_path: Path, source_root: Path) -> Iterator[tuple[str, str]]:
    """A real server (API + ffmpeg workers, embedded); yields (url, token)."""
    _ffmpeg()
    data = tmp_path / "data"
    proc = start_embedded(embedded_env(data, source_root), data, "--executor", "ffmpeg")
    creds = credentials(data)
    yield creds["url"], creds["token"]
    stop_embedded(proc)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    from workers.ffmpeg.testmedia import make_clip

    return make_clip(tmp_path / "clip.mp4", seconds=2, ffmpeg=_ffmpeg())


class LoseFirstAnswer(httpx.BaseTransport):
    """Sends every request to the real server, but loses the answer of the first POST /v1/jobs
    (the server acted on it; the client sees a broken connection)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        resp = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path == "/v1/jobs" and len([r for r in self.sent if r.url.path == "/v1/jobs"]) == 1:
            resp.read()
            raise httpx.ReadError("connection reset after the server answered", request=request)
        return resp


def test_importing_the_client_loads_nothing_of_the_server() -> None:
    code = "import sys, vidjobs; print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'sqlalchemy', 'sqlmodel', 'asyncpg', 'aiosqlite', 'aiokafka', 'jobs', 'workers', 'starlette', 'alembic'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_upload_submit_wait_download_and_duplicates(server: tuple[str, str], clip: Path, tmp_path: Path) -> None:
    url, token = server
    with vidjobs.Client(url, token) as vj:
        src = vj.upload(clip, media_type="video/mp4")
        assert src.digest == "sha256:" + hashlib.sha256(clip.read_bytes()).hexdigest()
        edit = {"source": {"digest": src.digest}, "operations": [{"op": "trim", "start": 0, "end": 1}]}
        job = vj.submit(edit)
        assert job.replayed is False and job.status in ("pending", "running")
        done = vj.wait(job.key, timeout=60)
        assert done.status == "succeeded", done.error
        again = vj.submit(dict(reversed(list(edit.items()))))
        assert again.key == job.key and again.replayed is True
        out = vj.download(job.key, tmp_path / "out.mp4")
        assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == done.output["digest"]
        assert not (tmp_path / "out.mp4.part").exists()
        assert [e.type for e in vj.events(job.key)][:1] == ["job.submitted"]
        assert vj.events(job.key)[-1].type == "job.succeeded"
        assert [j.key for j in vj.iter_jobs(status="succeeded", page_size=1)] == [job.key]


def test_a_lost_answer_retried_makes_one_job_and_is_not_taken_for_a_duplicate(server: tuple[str, str], clip: Path) -> None:
    """With on_duplicate=reject, a retry that carried a new Idempotency-Key would be answered
    409 for the job its own first attempt made; the same key is answered with that job."""
    url, token = server
    transport = LoseFirstAnswer()
    with vidjobs.Client(url, token, transport=transport) as vj:
        src = vj.upload(clip)
        edit = {"source": {"digest": src.digest}, "operations": [{"op": "thumbnail", "at": 0.5}], "output": {"container": "jpg"}}
        job = vj.submit(edit, on_duplicate="reject")
        posts = [r for r in transport.sent if r.url.path == "/v1/jobs"]
        assert len(posts) == 2
        assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
        with pytest.raises(errors.Conflict):  # a new logical call is a duplicate
            vj.submit(edit, on_duplicate="reject")
        assert len(vj.list().jobs) == 1
        assert [e.type for e in vj.events(job.key)].count("job.submitted") == 1


def test_resumed_download_sends_a_range_and_checks_the_digest(server: tuple[str, str], clip: Path, tmp_path: Path) -> None:
    url, token = server
    with vidjobs.Client(url, token) as vj:
        src = vj.upload(clip)
        job = vj.wait(vj.submit({"source": {"digest": src.digest}, "operations": [{"op": "scale", "width": 160}]}).key, timeout=60)
        whole = vj.download(job.key, tmp_path / "whole.mp4").read_bytes()
    part = tmp_path / "resumed.mp4.part"
    part.write_bytes(whole[:1000])
    recorder = Recording()
    with vidjobs.Client(url, token, transport=recorder) as vj:
        assert vj.download(job.key, tmp_path / "resumed.mp4").read_bytes() == whole
        ranges = [r.headers.get("Range") for r in recorder.sent if r.url.path.endswith("/output")]
        assert ranges == ["bytes=1000-"]
        (tmp_path / "corrupt.mp4.part").write_bytes(b"x" * 1000)  # not a prefix of the output
        with pytest.raises(errors.VidjobsError) as bad:
            vj.download(job.key, tmp_path / "corrupt.mp4")
    assert bad.value.code == "digest_mismatch"
    assert not (tmp_path / "corrupt.mp4").exists() and not (tmp_path / "corrupt.mp4.part").exists()


class Recording(httpx.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self.inner.handle_request(request)


def test_errors_are_typed_and_carry_the_server_details(server: tuple[str, str], clip: Path) -> None:
    url, token = server
    with vidjobs.Client(url, token) as vj:
        with pytest.raises(errors.NotFound) as missing:
            vj.get("vj1_" + "0" * 64)
        assert missing.value.status == 404 and missing.value.code == "not_found"
        with pytest.raises(errors.InvalidRequest) as invalid:
            vj.submit({"source": {"path": "clip.mp4"}, "operations": [{"op": "scale", "width": -5}]})
        assert any(d.get("path") == "operations[0].width" for d in invalid.value.details)
        src = vj.upload(clip)
        job = vj.submit({"source": {"digest": src.digest}, "operations": [{"op": "trim", "start": 0, "end": 1}]})
        vj.wait(job.key, timeout=60)
        with pytest.raises(errors.Conflict):
            vj.submit({"source": {"digest": src.digest}, "operations": [{"op": "trim", "start": 0, "end": 1}]}, on_duplicate="reject")
    with vidjobs.Client(url, "vjt_not-a-real-token") as bad, pytest.raises(errors.AuthenticationError):
        bad.get(job.key)


async def test_async_client_does_what_the_sync_one_does(server: tuple[str, str], clip: Path, tmp_path: Path) -> None:
    url, token = server
    async with vidjobs.AsyncClient(url, token) as vj:
        src = await vj.upload(clip)
        job = await vj.submit({"source": {"digest": src.digest}, "operations": [{"op": "trim", "start": 0, "end": 1}]})
        done = await vj.wait(job.key, timeout=60)
        assert done.status == "succeeded"
        out = await vj.download(job.key, tmp_path / "a.mp4")
        assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == done.output["digest"]
        assert [j.key async for j in vj.iter_jobs()] == [job.key]


def test_cancel_and_retry(tmp_path: Path, source_root: Path) -> None:
    """Slow sleep jobs, two slots: the third job stays pending until cancelled."""
    data = tmp_path / "slow"
    env = {**embedded_env(data, source_root), "VIDJOBS_SLEEP_SECONDS": "30"}
    proc = start_embedded(env, data, "--executor", "sleep", "--concurrency", "2")
    try:
        creds = credentials(data)
        with vidjobs.Client(creds["url"], creds["token"]) as vj:
            jobs = [vj.submit({"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 0, "end": end}]}) for end in (1, 2, 3)]
            # Both slots taken first: a job read as pending before its claim would be running
            # by the time it is cancelled.
            deadline = time.monotonic() + 30
            while (seen := [vj.get(j.key) for j in jobs]) and time.monotonic() < deadline:
                if [j.status for j in seen].count("running") == 2:
                    break
                time.sleep(0.05)
            [pending] = [j for j in seen if j.status == "pending"]
            assert vj.cancel(pending.key).status == "cancelled"
            assert vj.cancel(pending.key).status == "cancelled"  # cancelling twice is harmless
            assert vj.retry(pending.key).status == "pending"
            with pytest.raises(errors.Conflict) as twice:
                vj.retry(pending.key)
            assert twice.value.code == "invalid_state"
            for j in jobs:
                vj.cancel(j.key)
            assert {vj.wait(j.key, timeout=30).status for j in jobs} == {"cancelled"}
    finally:
        stop_embedded(proc)


def test_ffmpeg_limits_are_settings(tmp_path: Path, source_root: Path, clip: Path) -> None:
    """A 1 s duration cap refuses a 2 s upload; a tiny ffmpeg timeout stops the run."""
    data = tmp_path / "limited"
    env = {**embedded_env(data, source_root), "VIDJOBS_MAX_SOURCE_DURATION_SECONDS": "1", "VIDJOBS_FFMPEG_TIMEOUT_SECONDS": "0.01", "VIDJOBS_DEFAULT_MAX_ATTEMPTS": "1"}
    proc = start_embedded(env, data, "--executor", "ffmpeg")
    try:
        creds = credentials(data)
        with vidjobs.Client(creds["url"], creds["token"]) as vj:
            with pytest.raises(errors.InvalidRequest) as long:
                vj.upload(clip)
            assert "over the limit of 1 s" in long.value.message
    finally:
        stop_embedded(proc)
    env |= {"VIDJOBS_MAX_SOURCE_DURATION_SECONDS": "60"}
    (data / "credentials.json").unlink()
    proc = start_embedded(env, data, "--executor", "ffmpeg")
    try:
        creds = credentials(data)
        with vidjobs.Client(creds["url"], creds["token"]) as vj:
            src = vj.upload(clip)
            job = vj.wait(vj.submit({"source": {"digest": src.digest}, "operations": [{"op": "scale", "width": 320}]}).key, timeout=60)
        assert job.status == "failed" and job.error is not None and job.error.code == "timeout"
    finally:
        stop_embedded(proc)


class DropFirstStream(httpx.BaseTransport):
    """The first followed stream breaks after its first event; the rest pass through."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.streams: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self.inner.handle_request(request)
        if request.url.params.get("follow") != "true":
            return resp
        self.streams.append(request)
        if len(self.streams) > 1:
            return resp

        def broken() -> Iterator[bytes]:
            buf = b""
            for chunk in resp.stream:
                buf += chunk
                end = 0
                for block in buf.split(b"\n\n")[:-1]:  # complete messages only
                    end += len(block) + 2
                    if any(line.startswith(b"id:") for line in block.split(b"\n")):
                        yield buf[:end]  # up to and with the first event, then the drop
                        raise httpx.ReadError("connection dropped mid-stream", request=request)
            yield buf

        return httpx.Response(resp.status_code, headers=resp.headers, stream=_Iter(broken()), request=request)


class _Iter(httpx.SyncByteStream):
    def __init__(self, it: Iterator[bytes]) -> None:
        self.it = it

    def __iter__(self) -> Iterator[bytes]:
        return self.it


def test_follow_resumes_after_a_dropped_stream_without_losing_or_repeating_events(server: tuple[str, str], clip: Path) -> None:
    url, token = server
    with vidjobs.Client(url, token) as plain:
        src = plain.upload(clip)
    transport = DropFirstStream()
    with vidjobs.Client(url, token, transport=transport) as vj:
        job = vj.submit({"source": {"digest": src.digest}, "operations": [{"op": "scale", "width": 240}]})
        got = [item for item in vj.follow(job.key) if isinstance(item, vidjobs.Event)]
        stored = vj.events(job.key)
    assert len(transport.streams) >= 2, "the stream was never dropped"
    assert "Last-Event-ID" not in transport.streams[0].headers
    assert transport.streams[1].headers["Last-Event-ID"]
    assert [e.event_id for e in got] == [e.event_id for e in stored]
    assert got[-1].type == "job.succeeded"


def test_webhook_endpoints_through_the_client_and_a_verified_ping(tmp_path: Path, source_root: Path) -> None:
    import http.server
    import threading

    from vidjobs.webhooks import Receiver

    got: list[tuple[bytes, dict[str, str]]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((body, dict(self.headers.items())))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    data = tmp_path / "hooks"
    env = {**embedded_env(data, source_root), "VIDJOBS_WEBHOOK_ALLOW_HTTP": "true", "VIDJOBS_WEBHOOK_ALLOW_PRIVATE": "true"}
    proc = start_embedded(env, data, "--executor", "sleep")
    try:
        creds = credentials(data)
        with vidjobs.Client(creds["url"], creds["token"]) as vj:
            hook = vj.create_webhook(f"http://127.0.0.1:{receiver.server_port}/hook", ["*"], description="ci")
            assert hook.secret is not None and hook.secret.startswith("whsec_")
            assert [w.id for w in vj.webhooks()] == [hook.id] and vj.get_webhook(hook.id).secret is None
            assert vj.update_webhook(hook.id, events=["job.succeeded"]).events == ["job.succeeded"]
            vj.ping_webhook(hook.id)
            deadline = time.monotonic() + 30
            while not got and time.monotonic() < deadline:
                time.sleep(0.1)
            event = Receiver(hook.secret).verify(*got[0])
            assert event.type == "webhook.test"
            deliveries = vj.webhook_deliveries(hook.id)["deliveries"]
            assert [d["type"] for d in deliveries] == ["webhook.test"]
            vj.replay_delivery(hook.id, deliveries[0]["id"])
            while len(got) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert got[1][1]["webhook-id"] == got[0][1]["webhook-id"]  # a replay keeps its id
            rotated = vj.rotate_webhook_secret(hook.id)
            assert rotated.secret and rotated.secret != hook.secret
            vj.delete_webhook(hook.id)
            with pytest.raises(errors.NotFound):
                vj.get_webhook(hook.id)
    finally:
        stop_embedded(proc)
        receiver.shutdown()
